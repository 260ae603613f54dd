"""Render the kustomize overlays and check rendered resources as a cluster would.

Rendering uses `kubectl kustomize` (kustomize v5 built into kubectl; the machine has kubectl, no
stand-alone kustomize), so namespaces, patches, generators and name suffixes are kustomize's own.
Custom resources are validated against their operators' CRD schemas vendored in deploy/crds
(with strict field validation, as `kubectl apply --validate=strict` does server-side); label
selectors are evaluated as the API server does (matchLabels and matchExpressions).
"""

from __future__ import annotations

import copy
import functools
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "kubernetes"
CRDS = ROOT / "deploy" / "crds"
NAMESPACE = "subaccount-worker"
OVERLAYS = ("production", "staging")
# Kinds of this project that are cluster-scoped; every other kind must carry the namespace.
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
WORKLOAD_KINDS = {"Deployment", "StatefulSet"}

Doc = dict[str, Any]


def kubectl() -> str:
    """The kubectl binary, or a failure saying what is missing (never a skip)."""
    found = shutil.which("kubectl")
    assert found, "kubectl (with its built-in kustomize) is needed to render the overlays"
    return found


@functools.cache
def _render(path: str) -> str:
    done = subprocess.run(
        [kubectl(), "kustomize", path], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"kubectl kustomize {path}: {done.stderr}"
    return done.stdout


def documents(path: Path) -> list[Doc]:
    """The YAML documents of a manifest file (empty ones left out)."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def render(overlay: str) -> list[Doc]:
    """The resources `kubectl apply -k deploy/kubernetes/overlays/<overlay>` would send."""
    text = _render(str(K8S / "overlays" / overlay))
    return [doc for doc in yaml.safe_load_all(text) if doc]


def find(docs: list[Doc], kind: str, name: str) -> Doc:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def namespace_of(doc: Doc) -> str | None:
    return doc["metadata"].get("namespace")


# --- label selectors ------------------------------------------------------------------------


def selects(selector: Doc | None, labels: dict[str, str]) -> bool:
    """Whether a LabelSelector matches `labels` (an empty selector matches everything)."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


def pods(docs: list[Doc], namespace: str | None) -> list[Doc]:
    """Pod templates (as pseudo-pods: labels, containers) of the workloads in `namespace`."""
    found = []
    for doc in docs:
        if doc["kind"] in WORKLOAD_KINDS and namespace_of(doc) == namespace:
            template = doc["spec"]["template"]
            found.append({"owner": doc, "labels": template["metadata"]["labels"], **template})
    return found


def selected_pods(docs: list[Doc], namespace: str | None, selector: Doc | None) -> list[Doc]:
    return [p for p in pods(docs, namespace) if selects(selector, p["labels"])]


def container_ports(pod: Doc) -> list[Doc]:
    return [p for c in pod["spec"]["containers"] for p in c.get("ports", [])]


def component(pod: Doc) -> str:
    return str(
        pod["labels"].get("app.kubernetes.io/component")
        or pod["labels"].get("app.kubernetes.io/name")
    )


# --- custom resources against their CRDs ----------------------------------------------------


@functools.cache
def crd_schemas() -> dict[tuple[str, str], Doc]:
    """(apiVersion, kind) -> the served version's openAPIV3Schema, made strict."""
    schemas: dict[tuple[str, str], Doc] = {}
    for path in sorted(CRDS.rglob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        spec = crd["spec"]
        for version in spec["versions"]:
            if version.get("served"):
                api_version = f"{spec['group']}/{version['name']}"
                schema = _strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
                schemas[(api_version, spec["names"]["kind"])] = schema
    return schemas


def _strict(schema: Any) -> Any:
    """Unknown fields are errors where the schema lists properties and keeps no unknown ones."""
    if isinstance(schema, dict):
        for value in schema.values():
            _strict(value)
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        for item in schema:
            _strict(item)
    return schema


def validate_custom(doc: Doc) -> None:
    """Raise jsonschema.ValidationError unless `doc` fits its CRD (which must be vendored)."""
    key = (doc["apiVersion"], doc["kind"])
    schema = crd_schemas().get(key)
    assert schema is not None, f"no vendored CRD for {key} (deploy/crds)"
    jsonschema.Draft7Validator(schema).validate(doc)


def is_builtin(doc: Doc) -> bool:
    group = doc["apiVersion"].rpartition("/")[0]
    return group in ("", "apps", "policy", "batch", "autoscaling") or group.endswith(".k8s.io")
