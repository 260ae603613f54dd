"""The console-sso overlay fits together: the console only on loopback, the header it trusts is
the one the proxy sets, the proxy's port is the only one the NetworkPolicy opens, and the
settings it gives the console start a console (no kustomize binary needed: the JSON patches of
its kustomization are read directly)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from worker.console.auth import Authenticator
from worker.console.sessions import SessionStore
from worker.settings import load_settings

OVERLAY = Path(__file__).parents[2] / "deploy" / "kubernetes" / "overlays" / "console-sso"


def patch_ops(kind: str, name: str) -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())
    for patch in kustomization["patches"]:
        if patch["target"] == {"kind": kind, "name": name}:
            ops: list[dict[str, Any]] = yaml.safe_load(patch["patch"])
            return ops
    raise AssertionError(f"no patch of {kind}/{name}")


def test_the_console_is_reachable_only_through_the_proxy() -> None:
    ops = patch_ops("Deployment", "subaccount-worker-console")
    args = next(op["value"] for op in ops if op["path"].endswith("/0/args"))
    assert args[args.index("--host") + 1] == "127.0.0.1"
    assert {"op": "remove", "path": "/spec/template/spec/containers/0/ports"} in ops
    proxy = next(op["value"] for op in ops if op["path"] == "/spec/template/spec/containers/-")
    flags = dict(a.removeprefix("--").split("=", 1) for a in proxy["args"])
    assert flags["upstream"] == f"http://127.0.0.1:{args[args.index('--port') + 1]}/"
    assert flags["pass-user-headers"] == "true"
    [port] = proxy["ports"]
    assert port["name"] == "http"  # the Service's targetPort: the proxy, not the console
    policy = patch_ops("NetworkPolicy", "subaccount-worker-console-http")
    [rule] = policy[0]["value"]
    assert [p["port"] for p in rule["ports"]] == [port["containerPort"]]
    assert rule["from"][0]["namespaceSelector"]  # the Ingress controller's namespace only


def test_the_overlays_settings_start_a_console_in_trusted_header_mode(redis_client: Any) -> None:
    ops = patch_ops("Deployment", "subaccount-worker-console")
    env = {
        op["value"]["name"].removeprefix("SUBACCOUNT_WORKER_").lower(): op["value"]["value"]
        for op in ops
        if op["path"].endswith("/0/env/-")
    }
    assert env["console_trusted_user_header"] == "X-Forwarded-Email"  # what oauth2-proxy sets
    settings = load_settings(**env)
    auth = Authenticator(settings, SessionStore(redis_client, "t", 60, 60))
    assert not auth.accepts_tokens
    assert auth.by_header("ana@example.com", True, None) is not None
    assert auth.by_header("ana@example.com", False, None) is None
    ingress = yaml.safe_load((OVERLAY / "console-ingress.yaml").read_text())
    assert [r["host"] for r in ingress["spec"]["rules"]] == settings.console_allowed_hosts
