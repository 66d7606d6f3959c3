"""The chart configures each service only with what its settings class accepts, and every setting
has a chart value: the settings classes are the one source of the services' configuration.

What a service accepts is decided by its pydantic settings (services/*/src/*/settings.py); the
chart's values.schema.json, configmaps and README follow from them. Each rendered scenario's
environment (the ConfigMap plus the container's own `env`, secrets filled with stand-ins) is
validated by the service's own settings class, and each schema node that feeds a setting has the
setting's type, bounds and meaning (`tools/devstack/src/devstack/chart_docs.py` writes them;
`make chart-docs`).
"""

import json
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from devstack.chart_docs import (
    COMPONENT_VALUES,
    COMPONENTS,
    NOT_SETTINGS,
    SCHEMA,
    SETTINGS,
    constraints,
    schema_node,
    value_paths,
)

from tests.support.charts import (
    SCENARIOS,
    Helm,
    HelmError,
    Manifest,
    component_of,
    config_of,
    env_of,
    one,
    scenario_files,
)

SECRET_STAND_INS = {
    "DATABASE_URL": "postgresql+psycopg://qa:secret@db:5432/qa",
    "INGEST_API_KEYS": "key-one,key-two",
    "QA_SYNC_API_KEYS": "key-one",
    "OPENAI_WEBHOOK_SECRET": "whsec_c3RhbmQtaW4=",
    "CALLBACK_SECRET": "whsec_c3RhbmQtaW4=",
}
"""What a Secret would hold, for the variables whose format a settings class checks."""


def service_env(manifests: list[Manifest], component: str) -> dict[str, str]:
    """The environment the component's container starts with: its ConfigMap, then its `env`
    (a secret reference read as a stand-in, as the Secret would hold one)."""
    deployment = one(manifests, "Deployment", component)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = dict(config_of(manifests, component))
    for name, entry in env_of(container).items():
        if "value" in entry:
            env[name] = entry["value"]
        elif "secretKeyRef" in entry.get("valueFrom", {}):
            env[name] = SECRET_STAND_INS.get(name, f"stand-in-{name.lower()}")
    return env


def extra_env(scenario: str, component: str) -> set[str]:
    """The variables a scenario adds through `extraEnv`: the operator's own, not the chart's."""
    names: set[str] = set()
    for values_file in scenario_files(scenario):
        block = (yaml.safe_load(values_file.read_text()) or {}).get(COMPONENT_VALUES[component])
        names |= {entry["name"] for entry in (block or {}).get("extraEnv", [])}
    return names


def settings_of(component: str, env: dict[str, str]) -> Any:
    """The component's settings from `env` alone (not this process's environment)."""
    cls = SETTINGS[component]
    fields = {k.lower(): v for k, v in env.items() if k.lower() in cls.model_fields}
    return cls.model_validate(fields)


@pytest.mark.parametrize("component", COMPONENTS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_scenario_starts_each_service_with_settings_it_accepts(
    render_scenario: Callable[[str], list[Manifest]], scenario: str, component: str
) -> None:
    manifests = render_scenario(scenario)
    if not [m for m in manifests if m["kind"] == "Deployment" and component_of(m) == component]:
        pytest.skip(f"{component} is not enabled in {scenario}")
    settings_of(component, service_env(manifests, component))


@pytest.mark.parametrize("component", COMPONENTS)
def test_every_setting_has_a_chart_value_and_every_variable_a_setting(
    render_scenario: Callable[[str], list[Manifest]], component: str
) -> None:
    rendered: set[str] = set()
    for scenario in SCENARIOS:
        manifests = render_scenario(scenario)
        if any(m["kind"] == "Deployment" and component_of(m) == component for m in manifests):
            rendered |= set(service_env(manifests, component)) - extra_env(scenario, component)
    rendered |= set(value_paths(component))  # what only some values render (WORKER_PREFETCH)
    fields = {name.upper() for name in SETTINGS[component].model_fields}
    assert sorted(fields - rendered - NOT_SETTINGS.keys()) == [], "settings the chart cannot set"
    assert sorted(rendered - fields - NOT_SETTINGS.keys()) == [], "variables no setting reads"


@pytest.mark.parametrize("component", COMPONENTS)
def test_the_schema_bounds_each_value_as_its_setting_does(component: str) -> None:
    schema = json.loads(SCHEMA.read_text())
    wrong = {}
    for variable, path in value_paths(component).items():
        field = SETTINGS[component].model_fields[variable.lower()]
        node = schema_node(schema, path)
        expected = constraints(field)
        found = {key: node.get(key) for key in expected}
        if found != expected:
            wrong[path] = {"schema": found, "setting": expected}
    assert wrong == {}


def test_a_disabled_worker_metrics_endpoint_is_off_in_the_worker(helm: Helm) -> None:
    manifests = helm.template(*scenario_files("defaults"), sets={"worker.metrics.enabled": "false"})
    assert settings_of("worker", service_env(manifests, "worker")).metrics_port == 0


def test_a_value_the_worker_would_refuse_is_refused_at_install(helm: Helm) -> None:
    """The schema, not the worker's start-up, refuses it: `helm install` fails instead of a
    crash-looping pod."""
    with pytest.raises(HelmError, match="visibilityTimeoutSeconds"):
        helm.template(*scenario_files("defaults"), sets={"worker.visibilityTimeoutSeconds": "1"})
