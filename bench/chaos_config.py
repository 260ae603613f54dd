"""What a chaos run is configured with (`ChaosConfig`), and the sandbox's faults it sets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.chaos_scenario import ScenarioSize

MUTATING = ["create", "update", "add_credits", "set_recurring", "enable", "disable", "delete"]


@dataclass(frozen=True)
class ChaosConfig:
    seed: int = 7
    size: ScenarioSize = field(default_factory=ScenarioSize)
    kills: int = 5
    redis_restarts: int = 1
    api_pause_s: float = 4.0
    emails_per_s: float = 400.0
    send_rate: float = 150.0  # deliveries per second while sending
    heartbeat_timeout_ms: int = 60_000  # the default setting
    lock_ttl_ms: int = 60_000  # the default setting
    maintenance_chance: int = 1_000  # the default setting: in a million broker commands
    threads: int = 4
    drain_timeout_s: float = 900.0
    settle_s: float = 3.0  # the in-doubt window: > the read timeout + late_ms
    late_rate: float = 0.03  # of the calls of every kind: applied late_ms after the read timeout
    late_ms: float = 800.0
    rate_limit_rps: float = 100.0  # the workers' client-side limit (the sandbox's 429s at 400)
    top_ups: int = 10  # out-of-band top-ups of random subaccounts, of amounts no grant has

    @property
    def unknown_client_wait_s(self) -> int:
        return (self.heartbeat_timeout_ms + self.lock_ttl_ms) // 1000 + 15

    @staticmethod
    def small(seed: int = 7) -> ChaosConfig:
        """What `make test` runs: a few clients, one kill, one Redis restart, short timeouts."""
        size = ScenarioSize(clients=8, events_per_client=6, ghosts=1, invalid=2, window=6)
        return ChaosConfig(
            seed=seed, size=size, kills=1, api_pause_s=1.0, emails_per_s=100.0, send_rate=40.0,
            heartbeat_timeout_ms=1_500, lock_ttl_ms=15_000, threads=2, drain_timeout_s=150.0,
            rate_limit_rps=30.0, top_ups=3, late_rate=0.1,
            # A killed worker's messages come back at the next maintenance pass after its
            # heartbeat times out: on every broker command here, not one in a thousand.
            maintenance_chance=1_000_000,
        )  # fmt: skip


def faults(cfg: ChaosConfig, *, paused: bool = False) -> dict[str, Any]:
    """The sandbox's faults: slow, flaky and rate-limited everywhere; hanging when paused."""
    flaky = {"latency_ms": 2, "jitter_ms": 15, "error_rate": 0.10, "error_status": 503,
             "drop_rate": 0.02, "late_rate": cfg.late_rate, "late_ms": cfg.late_ms}  # fmt: skip
    default: dict[str, Any] = {"latency_ms": 2, "jitter_ms": 15}
    if paused:
        default = {"hang_rate": 1.0, "hang_s": cfg.api_pause_s}
        return {"seed": cfg.seed, "default": default}
    return {
        "seed": cfg.seed,
        "default": default,
        "operations": dict.fromkeys(MUTATING, flaky),
        "rate_limit": {"rps": 400, "retry_after_s": 1},
    }
