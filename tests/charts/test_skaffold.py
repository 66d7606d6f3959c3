"""skaffold.yaml: the three images, the helm release that receives them, dev and prod."""

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.charts import CHART, REPO, Helm

SKAFFOLD = REPO / "skaffold.yaml"
ARTIFACTS = {
    "feedback-ingest": ("ingest", "ingest"),
    "feedback-worker": ("worker", "worker"),
    "feedback-qa-sync": ("qa-sync", "qaSync"),
}
"""Each image: the service it builds (services/Dockerfile's SERVICE) and its chart values key."""


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(SKAFFOLD.read_text())
    return loaded


def _profile(config: dict[str, Any], name: str) -> dict[str, Any]:
    (profile,) = [p for p in config["profiles"] if p["name"] == name]
    found: dict[str, Any] = profile
    return found


def _template_key(image: str) -> str:
    """Skaffold's name for an image in templates: non-alphanumerics become underscores."""
    return re.sub(r"[^A-Za-z0-9]", "_", image)


def _values_path_exists(values: dict[str, Any], dotted: str) -> bool:
    node: Any = values
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def test_three_artifacts_built_from_the_repository_root(config: dict[str, Any]) -> None:
    artifacts = {a["image"]: a for a in config["build"]["artifacts"]}
    assert artifacts.keys() == ARTIFACTS.keys()
    for image, (service, _) in ARTIFACTS.items():
        assert artifacts[image]["context"] == "."
        assert artifacts[image]["docker"]["dockerfile"] == "services/Dockerfile"
        assert artifacts[image]["docker"]["buildArgs"]["SERVICE"] == service
    assert (REPO / "services" / "Dockerfile").is_file()


def _releases(config: dict[str, Any]) -> list[dict[str, Any]]:
    releases: list[dict[str, Any]] = list(config["deploy"]["helm"]["releases"])
    dev = _profile(config, "dev")
    releases += dev["deploy"]["helm"]["releases"]
    return releases


def test_every_release_gets_each_built_image(config: dict[str, Any]) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for release in _releases(config):
        assert (REPO / release["chartPath"]).resolve() == CHART
        templates = release["setValueTemplates"]
        for image, (_, key) in ARTIFACTS.items():
            name = _template_key(image)
            assert templates[f"{key}.image.repository"] == f"{{{{.IMAGE_REPO_{name}}}}}"
            assert templates[f"{key}.image.tag"] == f"{{{{.IMAGE_TAG_{name}}}}}"
        for dotted in templates:
            assert _values_path_exists(values, dotted), dotted


def test_dev_profile_runs_without_gpu_on_the_emulator_and_the_cpu_llm(
    config: dict[str, Any],
) -> None:
    dev = _profile(config, "dev")
    assert {"command": "dev"} in dev["activation"]
    raw = dev["manifests"]["rawYaml"]
    for path in raw:
        assert (REPO / path).is_file(), path
    manifests = [doc for path in raw for doc in _load_all(REPO / path)]
    services = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "Service"}
    assert {"moto", "cpu-llm"} <= services.keys()

    (release,) = dev["deploy"]["helm"]["releases"]
    (values_file,) = release["valuesFiles"]
    values = yaml.safe_load((REPO / values_file).read_text())
    assert values["vllm"]["enabled"] is False
    llm_port = services["cpu-llm"]["spec"]["ports"][0]["port"]
    assert values["worker"]["llm"]["externalBaseUrl"] == f"http://cpu-llm:{llm_port}/v1"
    (llm,) = [
        m for m in manifests if m["kind"] == "Deployment" and m["metadata"]["name"] == "cpu-llm"
    ]
    args = llm["spec"]["template"]["spec"]["containers"][0]["args"]
    assert values["worker"]["llm"]["model"] == args[args.index("--alias") + 1]
    moto_port = services["moto"]["spec"]["ports"][0]["port"]
    assert values["aws"]["endpointUrl"] == f"http://moto:{moto_port}"
    namespaces = [m for m in manifests if m["kind"] == "Namespace"]
    assert [n["metadata"]["name"] for n in namespaces] == [release["namespace"]]
    assert dev["deploy"]["kubectl"]["defaultNamespace"] == release["namespace"]


def test_prod_profile_pushes_and_takes_a_values_file(config: dict[str, Any]) -> None:
    patches = {p["path"]: p["value"] for p in _profile(config, "prod")["patches"]}
    assert patches["/build/local/push"] is True
    assert patches["/deploy/helm/releases/0/valuesFiles"] == ["{{.FEEDBACK_VALUES}}"]


def test_dev_port_forwards_name_services_that_exist(config: dict[str, Any], helm: Helm) -> None:
    dev = _profile(config, "dev")
    (release,) = dev["deploy"]["helm"]["releases"]
    rendered = helm.template(
        *(REPO / path for path in release["valuesFiles"]),
        release=release["name"],
        namespace=release["namespace"],
    )
    raw = [doc for path in dev["manifests"]["rawYaml"] for doc in _load_all(REPO / path)]
    services = {
        (m["metadata"]["name"], port["port"])
        for m in rendered + raw
        if m["kind"] == "Service"
        for port in m["spec"]["ports"]
    }
    for forward in dev["portForward"]:
        assert forward["namespace"] == release["namespace"]
        assert (forward["resourceName"], forward["port"]) in services, forward


def _load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
