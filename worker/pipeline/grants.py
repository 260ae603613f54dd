"""Grants judged in the order they were made: our other grants accounted for, dangling ones first.

Evidence of a grant (allocated, or the balance, before and after; `worker.pipeline.steps`) is
read net of this system's other grants of the client that started after it (the client's grants
record, `keys.grants`, written with each grant's in-progress record before its call). And when a
client's lease is taken while another event's grant of that client is still in progress (its
worker died mid-call), that grant is judged and settled in its own ledger before anything else
touches the client's credits, so its redelivery finds it settled rather than judging it later,
after other grants moved the readings.
"""

from __future__ import annotations

from handlers.plan import AddCredits, Apply, Decision
from worker.errors import ApiError
from worker.log import get_logger
from worker.pipeline.attempts import AttemptStore, Dangling, Grant
from worker.pipeline.in_doubt import Window
from worker.pipeline.ledger import StepRecord, StepState
from worker.pipeline.steps import Applied, NotApplied, OurGrants, Resolution, StepRunner

log = get_logger(__name__)


def ours_since(store: AttemptStore, client_id: str, judged: Grant) -> OurGrants:
    """Our other grants of `client_id` that began after `judged`: applied credits, and how many
    are still undecided (unknown, if `judged` is no longer in the client's record)."""
    seen = store.grants_since(client_id, judged)
    if seen is None:
        return OurGrants(known=False)
    applied = undecided = 0
    for grant, state in seen:
        if state == StepState.DONE:
            applied += grant.amount
        elif state == StepState.IN_PROGRESS:
            undecided += 1
    return OurGrants(applied, undecided)


def settle_dangling(
    store: AttemptStore,
    runner: StepRunner,
    client_id: str,
    username: str,
    dangling: tuple[Dangling, ...],
    now_ms: int,
    window: Window,
) -> int:
    """Judge other events' dangling grants of this client, oldest first, and record each one's
    outcome in its own ledger: done, or forgotten (proven not applied: its event sends it again).
    An undecidable one, or one whose reading fails, is left for its own event to judge. One
    still in its in-doubt window stops the judging: returns when that window ends (else 0), and
    the caller touches nothing of the client before then."""
    for item in sorted(dangling, key=lambda d: d.record.at_ms):
        until = window.until(item.record)
        if until > now_ms:
            log.info("grant.dangling_in_doubt", dangling=item.grant.event_key, until_ms=until)
            return until
        resolution = _judge(store, runner, client_id, username, item)
        if resolution is None:
            continue
        record = None
        if isinstance(resolution, Applied):
            result = {**resolution.result, "resolved_by": "a later event of the client"}
            record = StepRecord(StepState.DONE, item.record.owner, now_ms, item.record.evidence,
                                result)  # fmt: skip
        elif not isinstance(resolution, NotApplied):
            log.warning("grant.dangling_undecided", dangling=item.grant.event_key,
                        readings=resolution.readings)  # fmt: skip
            continue
        settled = store.settle(item, record)
        log.info("grant.dangling_settled", dangling=item.grant.event_key, settled=settled,
                 resolution=type(resolution).__name__)  # fmt: skip
    return 0


def _judge(
    store: AttemptStore, runner: StepRunner, client_id: str, username: str, item: Dangling
) -> Resolution | None:
    grant = item.grant
    # The ledger keeps no plan step; the grant's username and amount are all a judgment reads.
    step = AddCredits.model_validate(
        {"request": {"username": username, "amount": grant.amount},
         "business_key": "-"}
    )  # fmt: skip
    ours = ours_since(store, client_id, grant)
    try:
        return runner.resolve(step, item.record.evidence, ours)
    except ApiError as exc:
        log.warning("grant.dangling_unread", dangling=grant.event_key, error=str(exc))
        return None


def grant_of(decision: Decision) -> AddCredits | None:
    """The plan's grant, if any (a plan holds at most one)."""
    if isinstance(decision, Apply):
        return next((step for step in decision.steps if isinstance(step, AddCredits)), None)
    return None
