"""The Subaccount API boundary: typed models, the two surfaces, the client and its rate limiter."""
