"""Development helpers: the demo and the local servers it, the tests and the benchmarks start."""
