"""The Grafana dashboard, described as data and written as JSON (`make dashboard`).

The committed `deploy/grafana/subaccount-worker.json` is this module's output; a test fails when
the two differ, and another scrapes running processes to prove every metric a panel queries is
one the code exports. Edit the panels here, never the JSON.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DASHBOARD_PATH = (
    Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "subaccount-worker.json"
)
UID = "subaccount-worker"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
WIDTH = 24
PANEL_WIDTH = 12
PANEL_HEIGHT = 8


@dataclass(frozen=True)
class Panel:
    """One time-series or stat panel: a title, what it tells the reader, and its queries."""

    title: str
    description: str
    queries: tuple[tuple[str, str], ...]  # (PromQL, legend)
    unit: str = "short"
    kind: str = "timeseries"
    stack: bool = False


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...] = field(default_factory=tuple)


ROWS: tuple[Row, ...] = (
    Row(
        "Is it running?",
        (
            Panel(
                "Worker processes up",
                "Live Dramatiq processes per worker container (saw_worker_up).",
                (("sum by (instance) (saw_worker_up)", "{{instance}}"),),
            ),
            Panel(
                "Targets up",
                "Scrape health of every component (worker, ingress, monitor, console).",
                (
                    (
                        'up{component=~"worker|ingress|monitor|console"}',
                        "{{component}} {{instance}}",
                    ),
                ),
            ),
        ),
    ),
    Row(
        "The queue",
        (
            Panel(
                "Queue depth",
                "Messages ready, and messages delayed for a retry; every worker reports the same "
                "value, hence max().",
                (
                    ("max(saw_queue_depth)", "ready"),
                    ("max(saw_queue_delayed)", "delayed"),
                ),
            ),
            Panel(
                "Oldest ready message",
                "Age of the oldest message waiting at the head of the queue.",
                (("max(saw_queue_oldest_age_seconds)", "oldest ready"),),
                unit="s",
            ),
        ),
    ),
    Row(
        "Outcomes",
        (
            Panel(
                "Outcomes per minute",
                "Events finished, by outcome (applied, duplicate, superseded, dead_lettered, ...).",
                (("sum by (outcome) (rate(saw_events_total[5m])) * 60", "{{outcome}}"),),
                stack=True,
            ),
            Panel(
                "Latency to outcome",
                "From the door (first publish) to the outcome recorded: p50 / p95 / p99.",
                tuple(
                    (
                        f"histogram_quantile({q}, sum by (le) "
                        '(rate(saw_event_latency_seconds_bucket{since="door"}[5m])))',
                        f"p{round(q * 100)}",
                    )
                    for q in (0.5, 0.95, 0.99)
                ),
                unit="s",
            ),
            Panel(
                "Dead letters by reason",
                "Dead letters waiting for an operator; `dead-letters summary` says what to do "
                "for each reason.",
                (("max by (reason) (saw_dead_letters)", "{{reason}}"),),
                stack=True,
            ),
        ),
    ),
    Row(
        "The Subaccount API",
        (
            Panel(
                "API calls per second",
                "Calls by operation and result (ok or the error class).",
                (
                    (
                        "sum by (operation, result) (rate(saw_api_calls_total[5m]))",
                        "{{operation}} {{result}}",
                    ),
                ),
                unit="reqps",
            ),
            Panel(
                "API latency",
                "p50 / p95 / p99 of a call, over all operations.",
                tuple(
                    (
                        f"histogram_quantile({q}, sum by (le) "
                        "(rate(saw_api_call_seconds_bucket[5m])))",
                        f"p{round(q * 100)}",
                    )
                    for q in (0.5, 0.95, 0.99)
                ),
                unit="s",
            ),
            Panel(
                "API error ratio",
                "Share of calls that did not answer ok; a systemic rise opens the circuit.",
                (
                    (
                        'sum(rate(saw_api_calls_total{result!="ok"}[5m]))'
                        " / clamp_min(sum(rate(saw_api_calls_total[5m])), 1e-9)",
                        "errors",
                    ),
                ),
                unit="percentunit",
            ),
        ),
    ),
    Row(
        "The ingress",
        (
            Panel(
                "Ingress answers per second",
                "Requests answered by the ingress, by route and status.",
                (
                    (
                        "sum by (route, status) (rate(saw_ingress_requests_total[5m]))",
                        "{{route}} {{status}}",
                    ),
                ),
                unit="reqps",
            ),
            Panel(
                "Ingress enqueue latency",
                "p99 time to put an accepted request's events on the queue.",
                (
                    (
                        "histogram_quantile(0.99, sum by (le, route) "
                        "(rate(saw_ingress_enqueue_seconds_bucket[5m])))",
                        "p99 {{route}}",
                    ),
                ),
                unit="s",
            ),
        ),
    ),
    Row(
        "Credits",
        (
            Panel(
                "Subaccounts with low credits",
                "Open low-credit alerts by level.",
                (("max by (level) (saw_credits_subaccounts_below_threshold)", "{{level}}"),),
            ),
            Panel(
                "Credits remaining and runway trend",
                "Credits left over limited subaccounts, and the 3-day linear forecast.",
                (
                    ("max(saw_credits_remaining)", "remaining"),
                    ("max(predict_linear(saw_credits_remaining[6h], 3 * 86400))", "in 3 days"),
                ),
            ),
            Panel(
                "Drift",
                "Open reconcile drift by kind: what the API says differs from what we believe.",
                (("max by (kind) (saw_credits_drift)", "{{kind}}"),),
            ),
            Panel(
                "Monitor health",
                "Leader lease held, age of the oldest snapshot, scan read errors.",
                (
                    ("max(saw_credits_monitor_leader)", "leader"),
                    ("max(saw_credits_oldest_snapshot_age_seconds)", "oldest snapshot (s)"),
                    ("sum(increase(saw_credits_scan_read_errors_total[30m]))", "read errors /30m"),
                ),
            ),
        ),
    ),
)


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    custom: dict[str, Any] = {"stacking": {"mode": "normal" if panel.stack else "none"}}
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": PANEL_HEIGHT, "w": PANEL_WIDTH, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit, "custom": custom}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "expr": expr,
                "legendFormat": legend,
                "datasource": DATASOURCE,
            }
            for i, (expr, legend) in enumerate(panel.queries)
        ],
    }


def build() -> dict[str, Any]:
    """The whole dashboard as Grafana's JSON model (schema 39, Grafana 10/11)."""
    panels: list[dict[str, Any]] = []
    next_id, y = 1, 0
    for row in ROWS:
        panels.append(
            {
                "id": next_id,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": WIDTH, "x": 0, "y": y},
                "panels": [],
            }
        )
        next_id, y = next_id + 1, y + 1
        for index, panel in enumerate(row.panels):
            x = (index % 2) * PANEL_WIDTH
            panels.append(_panel_json(panel, next_id, x, y + (index // 2) * PANEL_HEIGHT))
            next_id += 1
        y += ((len(row.panels) + 1) // 2) * PANEL_HEIGHT
    return {
        "uid": UID,
        "title": "subaccount-worker",
        "description": "Queue, outcomes, dead letters, the Subaccount API, ingress and credits.",
        "tags": ["subaccount-worker"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "type": "datasource",
                    "query": "prometheus",
                    "label": "Prometheus",
                    "current": {},
                    "hide": 0,
                }
            ]
        },
        "annotations": {"list": []},
        "panels": panels,
    }


def render() -> str:
    """The dashboard's JSON text exactly as committed."""
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


METRIC = re.compile(r"\b(saw_[a-z0-9_]+|up)\b")


def queried_metrics(expressions: list[str]) -> set[str]:
    """Metric names used by PromQL expressions (ours and `up`)."""
    return {m for expr in expressions for m in METRIC.findall(expr)}


def dashboard_expressions(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def main() -> None:
    DASHBOARD_PATH.parent.mkdir(parents=True, exist_ok=True)
    DASHBOARD_PATH.write_text(render())
    print(f"wrote {DASHBOARD_PATH}")


if __name__ == "__main__":
    main()
