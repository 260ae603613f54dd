"""subaccount-worker: business events in, Subaccount API calls out; once, in order."""
