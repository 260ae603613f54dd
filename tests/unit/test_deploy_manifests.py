"""The deployment files agree with each other and with the code (deploy/, Dockerfile).

The overlays are rendered by kustomize (`kubectl kustomize`, tests/deploy_support.py);
test_deploy_render.py checks namespaces, selectors and schemas of every rendered resource.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy_support import documents, find, render, validate_custom
from worker import keys
from worker.settings import ENV_PREFIX, Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
APP_COMPONENTS = {"worker", "ingress", "monitor", "console"}
SCRAPED = {"worker", "ingress", "monitor"}  # the console serves no /metrics
COMPOSE_DEFAULT = re.compile(r"\$\{\w+:-(.*)\}")

BROKER_DB_DEFAULT = Settings.model_fields["broker_redis_db"].default


def overlay(name: str) -> list[dict[str, Any]]:
    """The overlay as kustomize renders it (tests/deploy_support.py)."""
    return render(name)


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


@pytest.fixture(scope="module")
def production() -> list[dict[str, Any]]:
    return overlay("production")


@pytest.fixture(scope="module")
def config() -> dict[str, str]:
    return dict(
        find(documents(K8S / "base" / "configmap.yaml"), "ConfigMap", "subaccount-worker")["data"]
    )


# --- the custom resources ---------------------------------------------------------------------


def test_custom_resources_fit_their_operators_crds(production: list[dict[str, Any]]) -> None:
    """Against the vendored CRD schemas, unknown fields refused (deploy/crds)."""
    kinds = {"ScaledObject", "TriggerAuthentication", "PodMonitor", "PrometheusRule"}
    custom = [d for d in production if d["kind"] in kinds]
    assert {d["kind"] for d in custom} == kinds
    for doc in custom:
        validate_custom(doc)
    broken = copy.deepcopy(find(production, "ScaledObject", "subaccount-worker"))
    broken["spec"]["minReplicas"] = 2  # HPA's spelling, not KEDA's: refused
    with pytest.raises(jsonschema.ValidationError):
        validate_custom(broken)


def test_keda_scales_the_worker_on_the_ready_queue_list(
    production: list[dict[str, Any]], config: dict[str, str]
) -> None:
    scaled = find(production, "ScaledObject", "subaccount-worker")
    trigger = scaled["spec"]["triggers"][0]["metadata"]
    queue = config["SUBACCOUNT_WORKER_QUEUE_NAME"]
    assert trigger["listName"] == keys.dramatiq_queue(config["SUBACCOUNT_WORKER_KEY_PREFIX"], queue)
    assert not trigger["listName"].endswith(".DQ")
    broker_db = config.get("SUBACCOUNT_WORKER_BROKER_REDIS_DB", BROKER_DB_DEFAULT)
    assert int(trigger["databaseIndex"]) == int(broker_db)  # where Dramatiq's keys are
    find(production, "Deployment", scaled["spec"]["scaleTargetRef"]["name"])
    auth = find(production, "TriggerAuthentication", "subaccount-worker-redis")
    secret = find(
        documents(K8S / "base" / "secret.example.yaml"), "Secret", "subaccount-worker-redis"
    )
    assert auth["spec"]["secretTargetRef"][0]["key"] in secret["stringData"]


def test_pod_monitor_scrapes_each_component_on_a_port_it_has(
    production: list[dict[str, Any]],
) -> None:
    monitor = find(production, "PodMonitor", "subaccount-worker")
    scraped_ports = {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]}
    selector = monitor["spec"]["selector"]["matchExpressions"]
    assert {"key": "app.kubernetes.io/component", "operator": "In", "values": sorted(SCRAPED)} in [
        {**e, "values": sorted(e["values"])} for e in selector
    ]
    for component in SCRAPED:
        pod = _deployment_of(production, component)
        names = {p["name"] for p in container(pod)["ports"]}
        assert names & scraped_ports, f"{component} has no port the PodMonitor scrapes"
        assert pod["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] in {
            str(p["containerPort"]) for p in container(pod)["ports"]
        }


def _deployment_of(docs: list[dict[str, Any]], component: str) -> dict[str, Any]:
    found = [
        d
        for d in docs
        if d["kind"] == "Deployment"
        and d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component")
        == component
    ]
    assert len(found) == 1, component
    return found[0]


# --- overlays and NetworkPolicies ------------------------------------------------------------


def test_the_sandbox_is_in_staging_never_in_production(production: list[dict[str, Any]]) -> None:
    def components(docs: list[dict[str, Any]]) -> set[str]:
        return {d["metadata"]["labels"].get("app.kubernetes.io/component", "") for d in docs}

    assert "sandbox" not in components(production)
    assert "sandbox" in components(overlay("staging"))
    assert not any("sandbox" in d["metadata"]["name"] for d in production)


def test_redis_takes_connections_only_from_the_application_pods(
    production: list[dict[str, Any]],
) -> None:
    policy = find(production, "NetworkPolicy", "redis-from-app")
    (rule,) = policy["spec"]["ingress"]
    (peer,) = rule["from"]
    assert set(peer) == {"podSelector"}  # this namespace only
    allowed = {e["key"]: set(e["values"]) for e in peer["podSelector"]["matchExpressions"]}
    assert allowed["app.kubernetes.io/component"] == APP_COMPONENTS
    for component in APP_COMPONENTS:
        labels = _deployment_of(production, component)["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] in allowed["app.kubernetes.io/name"]
    deny = find(production, "NetworkPolicy", "default-deny")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def test_every_secret_key_a_pod_reads_is_in_the_example(production: list[dict[str, Any]]) -> None:
    example = find(documents(K8S / "base" / "secret.example.yaml"), "Secret", "subaccount-worker")
    for deployment in (d for d in production if d["kind"] == "Deployment"):
        for env in container(deployment).get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref and ref["name"] == "subaccount-worker":
                assert ref["key"] in example["stringData"], (deployment["metadata"], ref)


# --- settings, ports and timings ---------------------------------------------------------------


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings a container with exactly `env` would read."""
    for name in [n for n in os.environ if n.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, str(value))
    return load_settings()


def test_the_config_map_is_valid_settings_and_fits_the_grace_period(
    production: list[dict[str, Any]], config: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_from(config, monkeypatch)
    worker = find(production, "Deployment", "subaccount-worker")
    grace_s = worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert settings.worker_shutdown_timeout_ms / 1000 < grace_s
    assert container(worker)["ports"][0]["containerPort"] == settings.metrics_port
    acl = (ROOT / "deploy" / "redis" / "users.acl.template").read_text()
    assert f"~{settings.key_prefix}:* " in acl


def test_compose_settings_are_valid_and_fit_the_grace_period(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    worker = compose["services"]["worker"]
    # ${NAME:-default} is Compose's substitution: take the default.
    env = {k: COMPOSE_DEFAULT.sub(r"\1", v) for k, v in worker["environment"].items()}
    settings = settings_from(env, monkeypatch)
    grace_s = int(worker["stop_grace_period"].removesuffix("s"))
    assert settings.worker_shutdown_timeout_ms / 1000 < grace_s


def test_compose_allows_plain_http_only_towards_the_sandbox(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The real-API command (compose.yaml alone, an https URL) never allows plain http; the
    sandbox override points every role at the sandbox and allows it there only."""
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    sandbox = yaml.safe_load((ROOT / "deploy" / "compose.sandbox.yaml").read_text())
    assert not any("ALLOW_INSECURE" in key for key in compose["x-settings"])
    for name in ("worker", "ingress", "monitor", "console"):
        env = {k: COMPOSE_DEFAULT.sub(r"\1", v) for k, v in _environment(compose, name).items()}
        env["SUBACCOUNT_WORKER_API_BASE_URL"] = "https://api.example.test/v6"
        assert settings_from(env, monkeypatch).api_allow_insecure_http is False
        env.update(sandbox["services"][name]["environment"])
        staged = settings_from(env, monkeypatch)
        assert staged.api_base_url == "http://sandbox:8025/v6"
    assert set(sandbox["services"]) == {"worker", "ingress", "monitor", "console"}


def _environment(compose: dict[str, Any], service: str) -> dict[str, str]:
    env = compose["services"][service]["environment"]
    return {k: str(v) for k, v in env.items()}


def test_compose_services_are_hardened_and_keep_their_secrets_apart() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    for name, service in compose["services"].items():
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert service["mem_limit"], name
        env_file = service.get("env_file")
        if env_file:
            assert (ROOT / "deploy" / f"{env_file}.example").exists(), name
    sandbox_env = (ROOT / "deploy" / "env" / "sandbox.env.example").read_text()
    assert "REDIS_URL" not in sandbox_env
    assert not any(k.endswith("REDIS_URL") for k in compose["x-settings"])


def test_images_are_pinned_by_digest_with_their_tag() -> None:
    """Every base image is `name:exact-version@sha256:<digest>`: the digest decides, the tag is
    for people (deploy/README.md "Base images" says how to refresh both)."""
    pinned = re.compile(r"^[\w./-]+:v?\d+\.\d+\.\d+(-[\w.-]+)?@sha256:[0-9a-f]{64}$")
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    images = [s["image"] for s in compose["services"].values() if "build" not in s]
    redis_set = find(documents(K8S / "base" / "redis-statefulset.yaml"), "StatefulSet", "redis")
    images.append(container(redis_set)["image"])
    dockerfile = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.MULTILINE)
    assert base is not None
    images.append(base.group(1))
    assert all(pinned.match(image) for image in images), images
    assert base.group(1).startswith("python:3.11.")
    assert "-slim-bookworm@" in base.group(1)
    assert "syntax=" not in dockerfile
    readme = (ROOT / "deploy" / "README.md").read_text()
    assert all(image in readme for image in images), "deploy/README.md lists every pin"


def test_rollouts_drain_a_worker_within_its_grace_period(
    production: list[dict[str, Any]], config: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The numbers of deploy/README.md "Rollouts and scale-down": two of the longest calls fit
    in the shutdown timeout, which leaves the supervisor room inside the grace period; a
    rollout surges before it stops a pod; KEDA removes one pod per grace period."""
    settings = settings_from(config, monkeypatch)
    worker = find(production, "Deployment", "subaccount-worker")
    grace_s = worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    shutdown_s = settings.worker_shutdown_timeout_ms / 1000
    assert 2 * settings.max_call_s <= shutdown_s <= grace_s - 5
    assert worker["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    scaled = find(production, "ScaledObject", "subaccount-worker")
    down = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    for policy in down["policies"]:
        assert policy["type"] == "Pods"
        assert policy["value"] == 1
        assert policy["periodSeconds"] >= grace_s
    assert down["stabilizationWindowSeconds"] == scaled["spec"]["cooldownPeriod"]
    readme = (ROOT / "deploy" / "README.md").read_text()
    for figure in (f"{grace_s} s", f"{shutdown_s:.0f} s", f"{settings.max_call_s:.0f} s"):
        assert figure in readme


def test_the_readme_lists_what_the_base_applies() -> None:
    """deploy/README.md's list of the base, in the kustomization's order, and what it leaves out."""
    readme = (ROOT / "deploy" / "README.md").read_text()
    start = readme.index("`kubernetes/base` applies")
    applied, _, rest = readme[start : readme.index("\n\n", start)].partition("does not apply")
    base = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    listed = re.findall(r"`([\w.-]+\.(?:yaml|conf))`", applied)
    generated = [f for g in base["configMapGenerator"] for f in g["files"]]
    assert listed == base["resources"] + generated
    assert all(f"`{g['name']}`" in applied for g in base["configMapGenerator"])
    left_out = re.findall(r"`([\w.-]+\.yaml)`", rest)
    on_disk = {p.name for p in (K8S / "base").glob("*.yaml")} - {"kustomization.yaml"}
    assert set(base["resources"]) | set(left_out) == on_disk
    assert not set(left_out) & set(base["resources"])
