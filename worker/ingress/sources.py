"""The CloudEvents sources the ingress assigns to verified webhooks, reserved for them.

An event's dedupe key is sha256(source + id). If anyone but the ingress could publish under a
webhook's source, a holder of an `/events` token could post `source=urn:subaccount-worker:stripe`
with the id of a future Stripe event, and the genuine signed webhook would then be recorded a
`duplicate` and never applied. So the whole `urn:subaccount-worker:` namespace is reserved:
`/events` refuses it, and `send` refuses it unless the operator passes `--allow-reserved-source`.
A source is normalised before the check (spaces stripped, NFKC, zero-width and control characters
removed, dashes read as `-`), so a look-alike (` urn:subaccount-worker:stripe`, a zero-width
space inside, fullwidth letters) is refused too: its key would differ, but it would show as a
verified webhook's source.
"""

from __future__ import annotations

import re
import unicodedata

NAMESPACE = "urn:subaccount-worker:"
STRIPE = NAMESPACE + "stripe"
CRM = NAMESPACE + "crm"


# Invisible or formatting characters: zero-width, joiners, bidi marks and overrides, BOM, soft
# hyphen, and every control character (C0, C1, DEL).
INVISIBLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff]"
)


def normalized(source: str) -> str:
    """`source` as it looks: NFKC (fullwidth and compatibility forms folded), every dash read
    as `-`, invisible and control characters removed, surrounding spaces stripped."""
    folded = unicodedata.normalize("NFKC", source)
    dashes = "".join("-" if unicodedata.category(c) == "Pd" else c for c in folded)
    return INVISIBLE.sub("", dashes).strip()


def is_reserved(source: str) -> bool:
    """Whether `source`, or what it looks like, lies in the webhooks' namespace (compared as
    URNs are: case-blind)."""
    return normalized(source).casefold().startswith(NAMESPACE)


def reserved_reason(source: str) -> str:
    """The refusal of an event that claims a webhook source (or one that looks like it)."""
    looks = "" if normalized(source) == source else f" (it reads as {normalized(source)[:100]!r})"
    return (
        f"source: {source[:100]!r}{looks} is reserved for the ingress's verified webhooks"
        f" ({NAMESPACE}*); publish under your own system's source"
    )
