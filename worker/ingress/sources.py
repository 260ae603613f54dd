"""The CloudEvents sources the ingress assigns to verified webhooks, reserved for them.

An event's dedupe key is sha256(source + id). If anyone but the ingress could publish under a
webhook's source, a holder of an `/events` token could post `source=urn:subaccount-worker:stripe`
with the id of a future Stripe event, and the genuine signed webhook would then be recorded a
`duplicate` and never applied. So the whole `urn:subaccount-worker:` namespace is reserved:
`/events` refuses it, and `send` refuses it unless the operator passes `--allow-reserved-source`.
"""

from __future__ import annotations

NAMESPACE = "urn:subaccount-worker:"
STRIPE = NAMESPACE + "stripe"
CRM = NAMESPACE + "crm"


def is_reserved(source: str) -> bool:
    """Whether `source` lies in the webhooks' namespace (compared as URNs are: case-blind)."""
    return source.casefold().startswith(NAMESPACE)


def reserved_reason(source: str) -> str:
    """The refusal of an event that claims a webhook source."""
    return (
        f"source: {source[:100]!r} is reserved for the ingress's verified webhooks"
        f" ({NAMESPACE}*); publish under your own system's source"
    )
