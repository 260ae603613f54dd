"""The deployment files agree with each other and with the code (deploy/, Dockerfile).

kubernetes-validate (make lint-deploy) checks each built-in kind against its schema; it has none
for KEDA's and the Prometheus Operator's kinds, which are checked here against the fields we use.
No kustomize binary is at hand, so the overlays' structure is checked here as well.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from worker import keys
from worker.settings import ENV_PREFIX, Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
APP_COMPONENTS = {"worker", "ingress", "monitor", "console"}
SCRAPED = {"worker", "ingress", "monitor"}  # the console serves no /metrics
COMPOSE_DEFAULT = re.compile(r"\$\{\w+:-(.*)\}")

BROKER_DB_DEFAULT = Settings.model_fields["broker_redis_db"].default


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def overlay(name: str) -> list[dict[str, Any]]:
    """Every resource a kustomization lists, following directories (as kustomize would)."""
    return list(_resources(K8S / "overlays" / name))


def _resources(folder: Path) -> Iterator[dict[str, Any]]:
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    for entry in kustomization["resources"]:
        target = (folder / entry).resolve()
        assert target.exists(), f"{folder}/kustomization.yaml lists missing {entry}"
        yield from _resources(target) if target.is_dir() else documents(target)


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


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


# --- the custom resources, against the fields we use ------------------------------------------

_NAME = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
CRD_SCHEMAS: dict[str, dict[str, Any]] = {
    "ScaledObject": {
        "type": "object",
        "required": ["scaleTargetRef", "triggers", "minReplicaCount", "maxReplicaCount"],
        "additionalProperties": False,
        "properties": {
            "scaleTargetRef": _NAME,
            "minReplicaCount": {"type": "integer", "minimum": 1},
            "maxReplicaCount": {"type": "integer", "minimum": 1},
            "pollingInterval": {"type": "integer"},
            "cooldownPeriod": {"type": "integer"},
            "advanced": {"type": "object"},
            "triggers": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["type", "metadata"],
                    "additionalProperties": False,
                    "properties": {
                        "type": {"const": "redis"},
                        "authenticationRef": _NAME,
                        "metadata": {
                            "type": "object",
                            "required": ["address", "listName", "listLength"],
                            "additionalProperties": {"type": "string"},
                        },
                    },
                },
            },
        },
    },
    "TriggerAuthentication": {
        "type": "object",
        "required": ["secretTargetRef"],
        "additionalProperties": False,
        "properties": {
            "secretTargetRef": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["parameter", "name", "key"],
                    "additionalProperties": False,
                    "properties": {k: {"type": "string"} for k in ("parameter", "name", "key")},
                },
            }
        },
    },
    "PodMonitor": {
        "type": "object",
        "required": ["selector", "podMetricsEndpoints"],
        "additionalProperties": False,
        "properties": {
            "selector": {"type": "object"},
            "podMetricsEndpoints": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["port"],
                    "additionalProperties": False,
                    "properties": {
                        "port": {"type": "string"},
                        "path": {"type": "string"},
                        "interval": {"type": "string", "pattern": "^[0-9]+[smh]$"},
                        "relabelings": {"type": "array"},
                    },
                },
            },
        },
    },
}


def test_custom_resources_have_the_fields_their_operators_read(
    production: list[dict[str, Any]],
) -> None:
    custom = [d for d in production if d["kind"] in CRD_SCHEMAS]
    assert {d["kind"] for d in custom} == set(CRD_SCHEMAS)
    for doc in custom:
        jsonschema.validate(doc["spec"], CRD_SCHEMAS[doc["kind"]])


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
    deny = find(production, "NetworkPolicy", "default-deny-ingress")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}


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


def test_images_are_pinned_to_exact_versions() -> None:
    exact = re.compile(r"^[\w./-]+:v?\d+\.\d+\.\d+(-[\w.]+)?$")
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    images = [s["image"] for s in compose["services"].values() if "build" not in s]
    redis_set = find(documents(K8S / "base" / "redis-statefulset.yaml"), "StatefulSet", "redis")
    images.append(container(redis_set)["image"])
    assert all(exact.match(image) for image in images), images
    dockerfile = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.MULTILINE)
    assert base is not None
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base.group(1))
    assert "syntax=" not in dockerfile
