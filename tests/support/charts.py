"""Render the chart with the helm binary and look into what it produced.

Rendering is `helm template` exactly as an install would do it (schema validation included);
the helpers below only walk the resulting Kubernetes objects.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs in the dev group
import kubernetes_validate  # type: ignore[import-untyped]
import yaml

Manifest = dict[str, Any]

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "feedback-platform"
MINIMAL_VALUES = CHART / "ci" / "minimal-values.yaml"
SCENARIOS_DIR = REPO / "tests" / "charts" / "scenarios"
CRD_SCHEMAS_DIR = REPO / "tests" / "charts" / "schemas"
RELEASE = "feedback"
NAMESPACE = "feedback"

# The Kubernetes minor versions the chart supports (docs/deploying.md);
# kubernetes-validate ships schemas for each of them.
SUPPORTED_KUBERNETES = ("1.31", "1.32", "1.33", "1.34", "1.35")

# Variables whose values are secrets: they may only ever come from a Secret.
SECRET_VARIABLES = frozenset(
    {
        "INGEST_API_KEYS",
        "CALLBACK_SECRET",
        "LLM_API_KEY",
        "DATABASE_URL",
        "OPENAI_API_KEY",
        "OPENAI_WEBHOOK_SECRET",
        "QA_SYNC_API_KEYS",
        "HF_TOKEN",
        "VLLM_API_KEY",
        "OTEL_EXPORTER_OTLP_HEADERS",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    }
)

SELECTOR_KEYS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
)
COMPONENTS = ("ingest", "worker", "qa-sync", "vllm")


class HelmError(Exception):
    """helm exited non-zero; the message is its stderr."""


@dataclass(frozen=True)
class Helm:
    binary: Path
    home: Path
    """Helm keeps no state for `template` and `lint`: its home directories point here."""

    def run(self, *args: str) -> str:
        env = {
            **os.environ,
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }
        result = subprocess.run(
            [str(self.binary), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            env=env,
        )
        if result.returncode != 0:
            raise HelmError(result.stderr.strip())
        return result.stdout

    def template(
        self,
        *values_files: Path,
        sets: Mapping[str, str] | None = None,
        release: str = RELEASE,
        namespace: str = NAMESPACE,
        api_versions: tuple[str, ...] = (),
    ) -> list[Manifest]:
        """The objects an install with these values files (and --set pairs) would create on a
        cluster that also serves `api_versions` (e.g. "monitoring.coreos.com/v1/PrometheusRule")."""
        args = ["template", release, str(CHART), "--namespace", namespace]
        for api_version in api_versions:
            args += ["--api-versions", api_version]
        for values_file in values_files:
            args += ["--values", str(values_file)]
        for key, value in (sets or {}).items():
            args += ["--set", f"{key}={value}"]
        return [doc for doc in yaml.safe_load_all(self.run(*args)) if doc]


def scenario_files(name: str) -> tuple[Path, ...]:
    """A scenario is the minimal site values plus its own overlay (tests/charts/scenarios)."""
    if name == "defaults":
        return (MINIMAL_VALUES,)
    if name == "eks-irsa":
        return (CHART / "examples" / "eks-irsa-values.yaml",)
    if name == "dev":
        return (REPO / "k8s" / "dev" / "chart-values.yaml",)
    return (MINIMAL_VALUES, SCENARIOS_DIR / f"{name}.yaml")


SCENARIOS = (
    "defaults",
    "all-on",
    "external-llm",
    "keda-off",
    "min-replicas-0",
    "ingress-off",
    "eks-irsa",
    "dev",
)


def objects(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def one(manifests: list[Manifest], kind: str, component: str) -> Manifest:
    """The single object of `kind` that belongs to `component`."""
    found = [m for m in objects(manifests, kind) if component_of(m) == component]
    assert len(found) == 1, f"expected one {kind} for {component}, found {len(found)}"
    return found[0]


def component_of(manifest: Manifest) -> str | None:
    labels: dict[str, str] = manifest["metadata"].get("labels", {})
    return labels.get("app.kubernetes.io/component")


def pod_specs(manifests: list[Manifest]) -> Iterator[tuple[str, Manifest]]:
    """(object name, pod spec) of every workload and bare pod."""
    for manifest in manifests:
        name = f"{manifest['kind']}/{manifest['metadata']['name']}"
        if manifest["kind"] == "Pod":
            yield name, manifest["spec"]
        elif manifest["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield name, manifest["spec"]["template"]["spec"]


def containers(pod_spec: Manifest) -> list[Manifest]:
    init: list[Manifest] = pod_spec.get("initContainers", [])
    regular: list[Manifest] = pod_spec["containers"]
    return init + regular


def env_of(container: Manifest) -> dict[str, Manifest]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def config_of(manifests: list[Manifest], component: str) -> dict[str, str]:
    """The component's env ConfigMap (the one its Deployment's envFrom names)."""
    deployment = one(manifests, "Deployment", component)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    names = {source["configMapRef"]["name"] for source in container.get("envFrom", [])}
    maps = [m for m in objects(manifests, "ConfigMap") if m["metadata"]["name"] in names]
    data: dict[str, str] = {}
    for config_map in maps:
        data.update(config_map["data"])
    return data


# --- schema validation -------------------------------------------------------------------


def validate_builtin(manifest: Manifest, kubernetes_version: str) -> None:
    """Strict validation against the Kubernetes OpenAPI schema (unknown fields rejected)."""
    kubernetes_validate.validate(manifest, kubernetes_version, strict=True)


def strict(schema: Any) -> Any:
    """A CRD schema as the API server applies it with strict field validation (kubectl's
    default): objects with declared properties reject undeclared ones, unless the schema
    itself says they are open (additionalProperties or x-kubernetes-preserve-unknown-fields)."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    tightened = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        tightened["additionalProperties"] = False
    return tightened


@cache
def crd_schema(api_version: str, kind: str) -> Any:
    group, _, version = api_version.rpartition("/")
    path = CRD_SCHEMAS_DIR / f"{group}_{version}_{kind}.json"
    return strict(json.loads(path.read_text()))


def has_crd_schema(manifest: Manifest) -> bool:
    group, _, version = manifest["apiVersion"].rpartition("/")
    return (CRD_SCHEMAS_DIR / f"{group}_{version}_{manifest['kind']}.json").exists()


def validate_custom(manifest: Manifest) -> None:
    jsonschema.validate(manifest, crd_schema(manifest["apiVersion"], manifest["kind"]))
