"""Policies every rendered workload must meet, in every scenario."""

import re
from collections.abc import Callable

import pytest

from tests.support.charts import (
    SCENARIOS,
    SECRET_VARIABLES,
    Manifest,
    containers,
    env_of,
    objects,
    pod_specs,
)

Render = Callable[[str], list[Manifest]]

# A reference is pinned when it has a tag other than "latest" or a digest.
TAGGED = re.compile(r"^[^@]+:(?P<tag>[\w][\w.-]{0,127})(@sha256:[a-f0-9]{64})?$")


def _workloads(render: Render, scenario: str) -> list[tuple[str, Manifest]]:
    found = list(pod_specs(render(scenario)))
    assert found
    return found


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_pods_run_as_non_root_with_the_runtime_seccomp_profile(
    render_scenario: Render, scenario: str
) -> None:
    for name, spec in _workloads(render_scenario, scenario):
        pod = spec.get("securityContext", {})
        assert pod.get("runAsNonRoot") is True, name
        assert pod.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
        assert spec.get("automountServiceAccountToken") is False, name


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_containers_are_locked_down(render_scenario: Render, scenario: str) -> None:
    for name, spec in _workloads(render_scenario, scenario):
        for container in containers(spec):
            context = container.get("securityContext", {})
            where = f"{name}/{container['name']}"
            assert context.get("readOnlyRootFilesystem") is True, where
            assert context.get("allowPrivilegeEscalation") is False, where
            assert context.get("capabilities", {}).get("drop") == ["ALL"], where
            assert context.get("privileged") is not True, where
            assert "add" not in context.get("capabilities", {}), where


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_container_has_requests_and_limits(render_scenario: Render, scenario: str) -> None:
    for name, spec in _workloads(render_scenario, scenario):
        for container in containers(spec):
            resources = container.get("resources", {})
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(bound, {})), (
                    f"{name}/{container['name']} {bound}"
                )


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_long_running_containers_have_probes(render_scenario: Render, scenario: str) -> None:
    deployments = objects(render_scenario(scenario), "Deployment")
    assert deployments
    for deployment in deployments:
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            where = f"{deployment['metadata']['name']}/{container['name']}"
            assert "livenessProbe" in container, where
            assert "readinessProbe" in container, where


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_images_are_pinned(render_scenario: Render, scenario: str) -> None:
    for name, spec in _workloads(render_scenario, scenario):
        for container in containers(spec):
            match = TAGGED.match(container["image"])
            assert match, f"{name}: untagged image {container['image']}"
            assert match["tag"] != "latest", f"{name}: {container['image']}"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_secret_variables_come_only_from_secrets(render_scenario: Render, scenario: str) -> None:
    manifests = render_scenario(scenario)
    assert not objects(manifests, "Secret"), "the chart must never carry secrets"
    for config_map in objects(manifests, "ConfigMap"):
        assert not SECRET_VARIABLES & set(config_map["data"]), config_map["metadata"]["name"]
    for name, spec in _workloads(render_scenario, scenario):
        for container in containers(spec):
            for variable, entry in env_of(container).items():
                if variable in SECRET_VARIABLES:
                    assert "secretKeyRef" in entry.get("valueFrom", {}), f"{name}: {variable}"


def test_the_secrets_each_component_needs_are_wired(render_scenario: Render) -> None:
    expected = {
        "ingest": {"INGEST_API_KEYS"},
        "worker": {"CALLBACK_SECRET", "LLM_API_KEY"},
        "qa-sync": {"DATABASE_URL", "OPENAI_API_KEY", "OPENAI_WEBHOOK_SECRET", "QA_SYNC_API_KEYS"},
        "vllm": {"HF_TOKEN", "VLLM_API_KEY"},
    }
    for deployment in objects(render_scenario("all-on"), "Deployment"):
        component = deployment["metadata"]["labels"]["app.kubernetes.io/component"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        from_secrets = {
            variable
            for variable, entry in env_of(container).items()
            if "secretKeyRef" in entry.get("valueFrom", {})
        }
        assert expected[component] <= from_secrets, component
