"""The service images: one multi-stage Dockerfile for every service, the service named by its
build arguments (skaffold.yaml's, and the Makefile's `images`), built from the repository root.

No container engine here: the Dockerfile is parsed with each service's build arguments, and its
build stage's `uv sync` commands are run for real on a copy of what the stage copies in
(offline, from uv's cache).
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.support.charts import REPO

# `uv run` tells its children where uv is; otherwise PATH (the Makefile may use a private copy).
UV = os.environ.get("UV") or shutil.which("uv")
DOCKERFILE = REPO / "services" / "Dockerfile"
DEV_ONLY = ("pytest", "ruff", "mypy", "moto", "hypothesis", "devstack")
WEB = ("fastapi", "starlette", "uvicorn")
"""The HTTP services' framework: in ingest's and qa-sync's images, not in the worker's."""
ENTRY_MODULES = {"ingest": "app", "worker": "worker", "qa-sync": "app"}
"""A module of each service that imports the rest of it: it imports in the image's venv."""


def skaffold_builds() -> dict[str, dict[str, str]]:
    """Each service's build arguments, by its folder under services/, as skaffold builds it."""
    config = yaml.safe_load((REPO / "skaffold.yaml").read_text())
    builds = {}
    for artifact in config["build"]["artifacts"]:
        assert artifact["docker"]["dockerfile"] == "services/Dockerfile", artifact
        arguments = {name: str(value) for name, value in artifact["docker"]["buildArgs"].items()}
        builds[arguments["SERVICE"]] = arguments
    return builds


BUILDS = skaffold_builds()


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


@dataclass(frozen=True)
class Stage:
    base: str
    name: str | None
    instructions: tuple[Instruction, ...]

    def all(self, keyword: str) -> list[str]:
        return [i.arguments for i in self.instructions if i.keyword == keyword]


def parse(build_args: dict[str, str]) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with continuation lines joined and every `${NAME}`
    replaced by its build argument (or default), as the engine does for these instructions."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    arguments: dict[str, str] = {}
    stages: list[Stage] = []
    current: list[Instruction] = []

    def substituted(value: str) -> str:
        return re.sub(r"\$\{(\w+)\}", lambda m: {**arguments, **build_args}[m[1]], value)

    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), " ".join(rest.split())
        if keyword == "FROM":
            base, _, name = rest.partition(" AS ")
            stages.append(Stage(substituted(base), name or None, ()))
            current = []
        elif keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            arguments[name] = default
        elif keyword == "ARG":
            continue  # a stage taking a global argument in: substituted above
        elif stages:
            current.append(Instruction(keyword, substituted(rest)))
            stages[-1] = Stage(stages[-1].base, stages[-1].name, tuple(current))
    return arguments, stages


def member_name(service: str) -> str:
    pyproject = tomllib.loads((REPO / "services" / service / "pyproject.toml").read_text())
    name: str = pyproject["project"]["name"]
    return name


@pytest.fixture(params=sorted(BUILDS))
def service(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def test_every_service_is_built_and_each_build_names_its_own_package_and_module() -> None:
    runnable = {main.parents[2].name for main in REPO.glob("services/*/src/*/__main__.py")}
    assert BUILDS.keys() == runnable
    for service, arguments in BUILDS.items():
        assert arguments["PACKAGE"] == member_name(service)
        assert (REPO / "services" / service / "src" / arguments["MODULE"] / "__main__.py").is_file()


def test_the_makefile_builds_each_image_with_skaffolds_arguments() -> None:
    makefile = re.sub(r"\\\n", " ", (REPO / "Makefile").read_text())
    (line,) = re.findall(r"^IMAGES := (.+)$", makefile, re.MULTILINE)
    listed = [build.split(":") for build in line.split()]
    assert {
        service: {"SERVICE": service, "PACKAGE": package, "MODULE": module, "PORT": port}
        for service, package, module, port in listed
    } == BUILDS


def test_each_service_is_a_multi_stage_build_on_slim_python_3_11(service: str) -> None:
    arguments, stages = parse(BUILDS[service])
    assert len(stages) >= 2
    assert stages[-1].base == "python:3.11-slim"
    assert arguments["PYTHON_IMAGE"] == "python:3.11-slim"
    for stage in stages:
        assert re.fullmatch(r"[^:]+:[\w.-]+", stage.base), f"untagged: {stage.base}"
        assert not stage.base.endswith(":latest"), stage.base


def test_dependencies_are_locked_and_without_dev_groups(service: str) -> None:
    _, stages = parse(BUILDS[service])
    syncs = [run for stage in stages for run in stage.all("RUN") if "uv sync" in run]
    assert syncs
    for command in syncs:
        words = shlex.split(command)
        for flag in ("--frozen", "--no-dev", "--no-default-groups"):
            assert flag in words, command
        assert words[words.index("--package") + 1] == member_name(service)


def test_runtime_stage_is_non_root_read_only_friendly_and_runs_the_service(service: str) -> None:
    _, stages = parse(BUILDS[service])
    runtime = stages[-1]
    (user,) = runtime.all("USER")
    # Numeric, non-root: Kubernetes can only verify runAsNonRoot for a numeric UID.
    assert re.fullmatch(r"[1-9][0-9]*(:[1-9][0-9]*)?", user), user
    env = " ".join(runtime.all("ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert f"SERVICE_MODULE={BUILDS[service]['MODULE']}" in env.split()
    assert runtime.all("EXPOSE") == [BUILDS[service]["PORT"]]
    assert not runtime.all("RUN"), "nothing runs in the runtime stage: it only receives the venv"
    (copy,) = runtime.all("COPY")
    assert copy.startswith("--from=build /app/.venv ")
    (entrypoint,) = runtime.all("ENTRYPOINT")
    assert json.loads(entrypoint)[:2] == ["sh", "-c"]


def test_the_entrypoint_runs_the_module_with_the_containers_arguments_in_the_shells_place(
    tmp_path: Path,
) -> None:
    # The exec-form ENTRYPOINT with `SERVICE_MODULE` set, run as the engine runs it: the
    # module gets the container's arguments, and `exec` leaves no shell between it and SIGTERM.
    _, stages = parse(next(iter(BUILDS.values())))
    argv = json.loads(stages[-1].all("ENTRYPOINT")[0])
    probe = tmp_path / "probe_module.py"
    probe.write_text("import os, sys; print(os.getpid(), sys.argv[1:])")
    env = {**os.environ, "SERVICE_MODULE": "probe_module", "PYTHONPATH": str(tmp_path)}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    shell = subprocess.Popen(
        [*argv, "admin", "status", "a b"], env=env, stdout=subprocess.PIPE, text=True
    )
    out, _ = shell.communicate(timeout=30)
    pid, arguments = out.split(" ", 1)
    assert int(pid) == shell.pid
    assert arguments.strip() == "['admin', 'status', 'a b']"


def test_dockerignore_sends_only_what_the_builds_copy() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "**", "everything is excluded unless listed"
    reincluded = [p[1:] for p in patterns if p.startswith("!")]
    for private in (".venv", ".git", "tests", ".run", "charts", "k8s"):
        assert not [p for p in reincluded if p.startswith(private)], private


def _copy_build_context(stage: Stage, destination: Path) -> None:
    """What the stage's COPY instructions take from the context, under `destination`."""
    for copy in stage.all("COPY"):
        if copy.startswith("--from="):
            continue
        *sources, target = copy.split()
        for source in sources:
            source_path = REPO / source
            target_path = destination / target if target != "./" else destination
            if source_path.is_dir():
                shutil.copytree(
                    source_path,
                    target_path,
                    dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "Dockerfile"),
                )
            else:
                target_path.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source_path, target_path / source_path.name)


@pytest.mark.skipif(UV is None, reason="no uv binary: run the tests with `uv run`")
def test_build_stage_installs_the_service_and_nothing_from_the_dev_groups(
    service: str, tmp_path: Path
) -> None:
    _, stages = parse(BUILDS[service])
    (build,) = [stage for stage in stages if stage.name == "build"]
    context = tmp_path / "src"
    _copy_build_context(build, context)
    venv = tmp_path / "venv"
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv), "UV_OFFLINE": "1"}
    env.pop("VIRTUAL_ENV", None)
    for run in build.all("RUN"):
        words = shlex.split(run)
        command = [str(UV), *words[words.index("uv") + 1 :]]
        result = subprocess.run(
            command, cwd=context, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert result.returncode == 0, result.stderr
    site_packages = next(venv.glob("lib/python3.*/site-packages"))
    installed = {path.name.split("-")[0].lower() for path in site_packages.iterdir()}
    module = BUILDS[service]["MODULE"]
    assert module in installed
    assert not installed & set(DEV_ONLY), installed & set(DEV_ONLY)
    if service == "worker":
        assert not installed & set(WEB), installed & set(WEB)
    probe = subprocess.run(
        [str(venv / "bin" / "python"), "-c", f"import {module}.{ENTRY_MODULES[service]}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
