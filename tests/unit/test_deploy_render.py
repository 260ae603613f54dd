"""Each overlay as kustomize renders it: every resource in the namespace, every selector selecting
something in the same render, the worker's replica floor, every Secret accounted for, and every
resource valid against its schema (built-in kinds: kubernetes-validate; KEDA and Prometheus
Operator kinds: their vendored CRDs).
"""

from __future__ import annotations

import re

import pytest
from kubernetes_validate import utils as k8s_validate

from tests.deploy_support import (
    CLUSTER_SCOPED,
    NAMESPACE,
    OVERLAYS,
    ROOT,
    Doc,
    component,
    container_ports,
    documents,
    find,
    is_builtin,
    namespace_of,
    pods,
    render,
    selected_pods,
    validate_custom,
)

K8S_VERSION = "1.31"
README = (ROOT / "deploy" / "README.md").read_text()


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> list[Doc]:
    return render(request.param)


def _where(doc: Doc) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def test_every_namespaced_resource_is_in_the_project_namespace(rendered: list[Doc]) -> None:
    """`kubectl apply -k` must not drop anything into the context's namespace."""
    strays = [
        _where(d)
        for d in rendered
        if d["kind"] not in CLUSTER_SCOPED and namespace_of(d) != NAMESPACE
    ]
    assert strays == [], f"resources outside {NAMESPACE}: {strays}"
    assert find(rendered, "Namespace", NAMESPACE)


def test_every_resource_fits_its_schema(rendered: list[Doc]) -> None:
    for doc in rendered:
        if is_builtin(doc):
            k8s_validate.validate(doc, K8S_VERSION, strict=True)
        else:
            validate_custom(doc)


def test_services_and_disruption_budgets_select_pods(rendered: list[Doc]) -> None:
    for doc in rendered:
        if doc["kind"] == "Service":
            selector = {"matchLabels": doc["spec"]["selector"]}
            found = selected_pods(rendered, namespace_of(doc), selector)
            assert found, f"{_where(doc)} selects no pod"
            for port in doc["spec"]["ports"]:
                target = port.get("targetPort", port["port"])
                for pod in found:
                    names = {p.get("name") for p in container_ports(pod)}
                    numbers = {p["containerPort"] for p in container_ports(pod)}
                    assert target in names | numbers, (_where(doc), target)
        if doc["kind"] == "PodDisruptionBudget":
            assert selected_pods(rendered, namespace_of(doc), doc["spec"]["selector"])


def test_scaled_objects_target_a_deployment_with_a_replica_floor(rendered: list[Doc]) -> None:
    """KEDA's HPA owns the worker's replicas: at least 2, and a drain leaves at least one."""
    worker = find(rendered, "Deployment", "subaccount-worker")
    scaled = [d for d in rendered if d["kind"] == "ScaledObject"]
    budget = find(rendered, "PodDisruptionBudget", "subaccount-worker")
    if not scaled:
        floor = worker["spec"]["replicas"]
    else:
        (one,) = scaled
        assert namespace_of(one) == namespace_of(worker)
        target = one["spec"]["scaleTargetRef"]
        assert target.get("kind", "Deployment") == "Deployment"
        assert target["name"] == worker["metadata"]["name"]
        for trigger in one["spec"]["triggers"]:
            auth = trigger["authenticationRef"]
            assert auth.get("kind", "TriggerAuthentication") == "TriggerAuthentication"
            find(rendered, "TriggerAuthentication", auth["name"])
        # The applied Deployment must not carry replicas (apply would reset the HPA's count).
        assert "replicas" not in worker["spec"]
        floor = one["spec"]["minReplicaCount"]
    assert floor >= 2
    assert selected_pods(rendered, namespace_of(budget), budget["spec"]["selector"]) == [
        p for p in pods(rendered, NAMESPACE) if p["owner"] is worker
    ]
    assert budget["spec"]["maxUnavailable"] <= floor - 1


def test_pod_monitors_select_pods_with_the_ports_they_scrape(rendered: list[Doc]) -> None:
    for monitor in (d for d in rendered if d["kind"] == "PodMonitor"):
        assert "namespaceSelector" not in monitor["spec"]  # its own namespace
        found = selected_pods(rendered, namespace_of(monitor), monitor["spec"]["selector"])
        assert found, f"{_where(monitor)} selects no pod"
        wanted = {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]}
        for pod in found:
            names = {p.get("name") for p in container_ports(pod)}
            assert names & wanted, f"{component(pod)} has none of the ports {wanted}"


def test_network_policies_select_pods_and_peers_that_exist(rendered: list[Doc]) -> None:
    for policy in (d for d in rendered if d["kind"] == "NetworkPolicy"):
        ns = namespace_of(policy)
        targets = selected_pods(rendered, ns, policy["spec"]["podSelector"])
        assert targets, f"{_where(policy)} selects no pod"
        for rule in policy["spec"].get("ingress", []):
            for port in rule.get("ports", []):
                assert any(
                    port["port"]
                    in {p["containerPort"] for p in container_ports(t)}
                    | {p.get("name") for p in container_ports(t)}
                    for t in targets
                ), f"{_where(policy)}: no selected pod listens on {port['port']}"
            _peers_exist(rendered, ns, policy, rule.get("from", []))
        for rule in policy["spec"].get("egress", []):
            _peers_exist(rendered, ns, policy, rule.get("to", []))


def _peers_exist(rendered: list[Doc], ns: str | None, policy: Doc, peers: list[Doc]) -> None:
    for peer in peers:
        if "podSelector" in peer and "namespaceSelector" not in peer:
            assert selected_pods(rendered, ns, peer["podSelector"]), (
                f"{_where(policy)}: peer {peer} matches no pod of this namespace"
            )


def _secret_refs(doc: Doc) -> set[tuple[str, str | None]]:
    """(secret name, key or None) of every Secret a resource reads."""
    refs: set[tuple[str, str | None]] = set()
    if doc["kind"] in {"Deployment", "StatefulSet"}:
        spec = doc["spec"]["template"]["spec"]
        for c in spec["containers"]:
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.add((ref["name"], ref["key"]))
            for source in c.get("envFrom", []):
                if "secretRef" in source:
                    refs.add((source["secretRef"]["name"], None))
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                items = volume["secret"].get("items") or [{"key": None}]
                refs |= {(volume["secret"]["secretName"], i["key"]) for i in items}
    if doc["kind"] == "TriggerAuthentication":
        refs |= {(r["name"], r["key"]) for r in doc["spec"].get("secretTargetRef", [])}
    return refs


def test_every_secret_read_is_rendered_or_documented_as_provided(rendered: list[Doc]) -> None:
    """A Secret not in the render must be one deploy/README.md tells the operator to create, and
    its keys must be in secret.example.yaml (the documented shape)."""
    example = {
        d["metadata"]["name"]: d
        for d in documents(ROOT / "deploy" / "kubernetes" / "base" / "secret.example.yaml")
    }
    created = set(re.findall(r"create secret generic ([\w-]+)", README))
    rendered_secrets = {d["metadata"]["name"]: d for d in rendered if d["kind"] == "Secret"}
    refs = set().union(*(_secret_refs(d) for d in rendered))
    assert refs, "no Secret read at all?"
    for name, key in sorted(refs, key=str):
        if name in rendered_secrets:
            continue
        assert name in created, f"Secret {name} is neither rendered nor created in the README"
        assert name in example, f"Secret {name} has no example in secret.example.yaml"
        if key is not None:
            assert key in example[name]["stringData"], f"{name}: key {key} undocumented"
