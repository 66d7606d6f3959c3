"""Every rendered object is valid for every supported Kubernetes version (strict: unknown
fields rejected); KEDA and prometheus-operator objects against their CRD schemas."""

from collections.abc import Callable

import jsonschema  # type: ignore[import-untyped]  # no stubs in the dev group
import pytest

from tests.support.charts import (
    SCENARIOS,
    SUPPORTED_KUBERNETES,
    Manifest,
    has_crd_schema,
    one,
    validate_builtin,
    validate_custom,
)

CUSTOM_GROUPS = ("keda.sh/", "monitoring.coreos.com/")


@pytest.mark.parametrize("kubernetes_version", SUPPORTED_KUBERNETES)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_builtin_objects_are_valid(
    render_scenario: Callable[[str], list[Manifest]], scenario: str, kubernetes_version: str
) -> None:
    builtin = [
        m for m in render_scenario(scenario) if not m["apiVersion"].startswith(CUSTOM_GROUPS)
    ]
    assert builtin
    for manifest in builtin:
        validate_builtin(manifest, kubernetes_version)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_custom_objects_match_their_crd_schema(
    render_scenario: Callable[[str], list[Manifest]], scenario: str
) -> None:
    for manifest in render_scenario(scenario):
        if manifest["apiVersion"].startswith(CUSTOM_GROUPS):
            assert has_crd_schema(manifest), f"no vendored schema for {manifest['kind']}"
            validate_custom(manifest)


def test_every_custom_kind_is_rendered_by_some_scenario(
    render_scenario: Callable[[str], list[Manifest]],
) -> None:
    kinds = {
        m["kind"]
        for scenario in SCENARIOS
        for m in render_scenario(scenario)
        if m["apiVersion"].startswith(CUSTOM_GROUPS)
    }
    assert kinds == {"ScaledObject", "TriggerAuthentication", "ServiceMonitor", "PrometheusRule"}


def test_the_crd_check_rejects_a_field_keda_does_not_know(
    render_scenario: Callable[[str], list[Manifest]],
) -> None:
    scaled_object = one(render_scenario("defaults"), "ScaledObject", "worker")
    broken = {**scaled_object, "spec": {**scaled_object["spec"], "minReplicas": 0}}
    with pytest.raises(jsonschema.ValidationError, match="minReplicas"):
        validate_custom(broken)
