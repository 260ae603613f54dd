"""`python -m worker.cli`: the same as the `subaccount-worker` command."""

from worker.cli import app

app()
