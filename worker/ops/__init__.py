"""Operations: what operators (the CLI and the console alike) use to see and steer the worker:
dead letters, replay, the outcome stream, metrics and the process supervisor."""
