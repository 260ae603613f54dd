"""What each role may connect to and be reached from, computed from the rendered NetworkPolicies
as a CNI enforces them (a pod selected by no policy of a direction is open in that direction;
otherwise only the union of its policies' rules is allowed), against the table in
deploy/kubernetes/base/networkpolicies.yaml."""

from __future__ import annotations

import pytest

from tests.deploy_support import Doc, component, namespace_of, pods, render, selected_pods

INTERNET = "internet"  # 0.0.0.0/0 but private, link-local and loopback ranges
PRIVATE = {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "127.0.0.0/8"}
DNS = {"dns:53/UDP", "dns:53/TCP"}
REDIS = {"redis:6379/TCP"}
API = {f"{INTERNET}:443/TCP"}
CONTROLLER = "ns(subaccount-worker/ingress-controller=true)"
MONITORING = "ns(subaccount-worker/monitoring=true)"

EGRESS = {
    "worker": DNS | REDIS | API,
    "monitor": DNS | REDIS | API,
    "ingress": DNS | REDIS,
    "console": DNS | REDIS,
    "redis": set(),
}
INGRESS = {
    "worker": {f"{MONITORING}:9191/TCP", f"{MONITORING}:9192/TCP", f"{MONITORING}:9193/TCP"},
    "monitor": {f"{MONITORING}:9191/TCP", f"{MONITORING}:9192/TCP", f"{MONITORING}:9193/TCP"},
    "ingress": {
        f"{CONTROLLER}:8080/TCP",
        f"{MONITORING}:9191/TCP",
        f"{MONITORING}:9192/TCP",
        f"{MONITORING}:9193/TCP",
    },
    "console": {f"{CONTROLLER}:8090/TCP"},
    "redis": {f"{c}:6379/TCP" for c in ("worker", "ingress", "monitor", "console")},
}
PRODUCTION_EXTRA = {("redis", "ingress"): {"ns(kubernetes.io/metadata.name=keda):6379/TCP"}}
STAGING_EXTRA = {
    ("worker", "egress"): {"sandbox:8025/TCP"},
    ("monitor", "egress"): {"sandbox:8025/TCP"},
    ("sandbox", "egress"): set(),
    ("sandbox", "ingress"): {"worker:8025/TCP", "monitor:8025/TCP"},
}


def _peer(docs: list[Doc], ns: str | None, peer: Doc) -> set[str]:
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        if block["cidr"] == "0.0.0.0/0" and set(block.get("except", [])) == PRIVATE:
            return {INTERNET}
        return {block["cidr"]}
    if "namespaceSelector" in peer:
        labels = peer["namespaceSelector"].get("matchLabels", {})
        if labels == {"kubernetes.io/metadata.name": "kube-system"} and peer.get(
            "podSelector", {}
        ).get("matchLabels") == {"k8s-app": "kube-dns"}:
            return {"dns"}
        return {"ns(" + ",".join(f"{k}={v}" for k, v in sorted(labels.items())) + ")"}
    return {component(p) for p in selected_pods(docs, ns, peer["podSelector"])}


def allowed(docs: list[Doc], pod: Doc, direction: str) -> set[str] | None:
    """Peers and ports `pod` may use in `direction` ("ingress"/"egress"); None = unrestricted."""
    policy_type = direction.capitalize()
    rules: set[str] = set()
    restricted = False
    for policy in (d for d in docs if d["kind"] == "NetworkPolicy"):
        ns = namespace_of(policy)
        if pod not in selected_pods(docs, ns, policy["spec"]["podSelector"]):
            continue
        if policy_type not in policy["spec"]["policyTypes"]:
            continue
        restricted = True
        for rule in policy["spec"].get(direction, []):
            side = "to" if direction == "egress" else "from"
            # A rule without peers allows every peer; without ports, every port.
            peers = (
                set().union(*(_peer(docs, ns, p) for p in rule[side])) if side in rule else {"any"}
            )
            if "ports" not in rule:
                rules |= {f"{peer}:any" for peer in peers}
            for port in rule.get("ports", []):
                rules |= {f"{peer}:{port['port']}/{port.get('protocol', 'TCP')}" for peer in peers}
    return rules if restricted else None


@pytest.mark.parametrize("overlay", ["production", "staging"])
def test_each_role_reaches_and_is_reached_by_only_what_the_table_says(overlay: str) -> None:
    docs = render(overlay)
    expected: dict[tuple[str, str], set[str]] = {}
    for role in EGRESS:
        expected[(role, "egress")] = set(EGRESS[role])
        expected[(role, "ingress")] = set(INGRESS[role])
    extra = PRODUCTION_EXTRA if overlay == "production" else STAGING_EXTRA
    for key, more in extra.items():
        expected[key] = expected.get(key, set()) | more
    found = {
        (component(pod), direction): allowed(docs, pod, direction)
        for pod in pods(docs, "subaccount-worker")
        for direction in ("egress", "ingress")
    }
    assert found == expected
