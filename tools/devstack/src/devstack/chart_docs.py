"""The chart's configuration follows from the services' settings: one source, written out here.

A service's settings class (services/*/src/*/settings.py) decides what the service accepts. The
chart kept the same facts by hand in values.schema.json and its README, and they had drifted: the
schema let `worker.visibilityTimeoutSeconds` be 1 where the worker requires 2, so the chart
installed a pod that crash-looped. Here, for every chart value that a configmap template turns into
a setting (`value_paths`: `LLM_TIMEOUT_SECONDS: {{ $values.llm.timeoutSeconds ... }}`), the
schema's type, bounds and description are the setting's (`constraints`), and the README's value
tables are the schema's descriptions beside values.yaml's defaults.

    python -m devstack.chart_docs          # rewrite values.schema.json and the README's tables
    python -m devstack.chart_docs --check  # exit 1 naming what is out of date (make lint)

tests/charts/test_chart_settings.py renders every chart scenario and validates each service's
environment with its own settings class.
"""

import argparse
import json
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import annotated_types
import yaml
from feedback_ingest.settings import IngestSettings
from feedback_worker.settings import WorkerSettings
from llm_common.settings import ServiceSettings
from pydantic import SecretStr
from pydantic.fields import FieldInfo
from qa_sync.settings import QaSyncSettings

CHART = Path(__file__).resolve().parents[4] / "charts" / "feedback-platform"
SCHEMA = CHART / "values.schema.json"
VALUES = CHART / "values.yaml"
README = CHART / "README.md"

SETTINGS: dict[str, type[ServiceSettings]] = {
    "ingest": IngestSettings,
    "worker": WorkerSettings,
    "qa-sync": QaSyncSettings,
}
COMPONENTS = tuple(SETTINGS)
COMPONENT_VALUES = {"ingest": "ingest", "worker": "worker", "qa-sync": "qaSync"}
"""The values.yaml block of each component (`$values` in its templates)."""

NOT_SETTINGS = {
    "AWS_ENDPOINT_URL": "read by boto3 itself (an emulator's address)",
    "OTEL_SERVICE_NAME": "read by the OpenTelemetry SDK",
    "OTEL_SDK_DISABLED": "read by the OpenTelemetry SDK",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "read by the OpenTelemetry SDK",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "read by the OpenTelemetry SDK",
    "OTEL_EXPORTER_OTLP_HEADERS": "read by the OpenTelemetry SDK",
    "OTEL_TRACES_SAMPLER": "read by the OpenTelemetry SDK",
    "OTEL_TRACES_SAMPLER_ARG": "read by the OpenTelemetry SDK",
    "OTEL_RESOURCE_ATTRIBUTES": "read by the OpenTelemetry SDK",
    "K8S_POD_NAME": "the downward API, for OTEL_RESOURCE_ATTRIBUTES",
    "K8S_NAMESPACE_NAME": "the downward API, for OTEL_RESOURCE_ATTRIBUTES",
    "K8S_NODE_NAME": "the downward API, for OTEL_RESOURCE_ATTRIBUTES",
}
"""Variables the chart sets that no settings class reads, and why."""

_ASSIGNMENT = re.compile(r"^\s+([A-Z][A-Z0-9_]*): (.*)$")
_BLOCK = re.compile(r"\{\{-? (with|if|range) (\S+)")
_END = re.compile(r"\{\{-? end -?\}\}")
_DOT = re.compile(r"[\s(]\.[\s)]")
_VALUE = re.compile(r"(\$values|\.Values)((?:\.\w+)+)")


def value_paths(component: str) -> dict[str, str]:
    """{variable: dotted value path} of the component's configmap template: the values that
    become settings one for one (a variable the template computes, such as LLM_BASE_URL, has
    none)."""
    template = CHART / "templates" / f"configmap-{component}.yaml"
    paths: dict[str, str] = {}
    blocks: list[str] = []  # what `.` is in each open block: a `with`'s value, else ""
    for line in template.read_text().splitlines():
        if opened := _BLOCK.search(line):
            blocks.append(opened.group(2) if opened.group(1) == "with" else "")
        elif _END.search(line) and blocks:
            blocks.pop()
        within = next((value for value in reversed(blocks) if value), "")
        assignment = _ASSIGNMENT.match(line)
        if assignment is None:
            continue
        variable, expression = assignment.groups()
        if variable in NOT_SETTINGS:
            continue
        if _DOT.search(expression):  # `.` is the value `with` opened (`{{ toJson . | quote }}`)
            expression = within
        if found := _VALUE.search(expression):
            root = COMPONENT_VALUES[component] if found.group(1) == "$values" else ""
            paths[variable] = f"{root}{found.group(2)}".lstrip(".")
    return paths


def constraints(field: FieldInfo) -> dict[str, Any]:
    """The JSON-schema keywords that say what the setting accepts, and its meaning."""
    found: dict[str, Any] = {"type": json_type(field.annotation)}
    for rule in field.metadata:
        if isinstance(rule, annotated_types.Ge):
            found["minimum"] = rule.ge
        elif isinstance(rule, annotated_types.Gt):
            found["exclusiveMinimum"] = rule.gt
        elif isinstance(rule, annotated_types.Le):
            found["maximum"] = rule.le
        elif isinstance(rule, annotated_types.Lt):
            found["exclusiveMaximum"] = rule.lt
    found["description"] = " ".join((field.description or "").split())
    return found


def json_type(annotation: Any) -> str | list[str]:
    """The values.yaml type that renders into a value of this Python type."""
    if get_origin(annotation) in (Union, types.UnionType):
        members = [json_type(arg) for arg in get_args(annotation) if arg is not type(None)]
        return [*(m for m in members if isinstance(m, str)), "null"]
    if get_origin(annotation) is not None:
        return json_type(get_origin(annotation))
    named = {bool: "boolean", int: "integer", float: "number", list: "array"}
    if annotation in named:
        return named[annotation]
    if annotation in (str, Path, SecretStr) or isinstance(annotation, type):
        return "string"
    raise TypeError(f"no values.yaml type for {annotation!r}")


def mapped_settings() -> Iterator[tuple[str, FieldInfo]]:
    """(value path, the setting it becomes) for every component; a value that feeds several
    services (aws.region) comes once per service."""
    for component, cls in SETTINGS.items():
        for variable, path in value_paths(component).items():
            yield path, cls.model_fields[variable.lower()]


def schema_node(schema: dict[str, Any], path: str) -> dict[str, Any]:
    node = schema
    for key in path.split("."):
        node = node["properties"][key]
    return node


def generated_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with each mapped value's node replaced by its setting's constraints (keeping
    what the setting does not say, such as a URL's pattern)."""
    result: dict[str, Any] = json.loads(json.dumps(schema))
    written: dict[str, dict[str, Any]] = {}
    for path, field in mapped_settings():
        wanted = constraints(field)
        if path in written and written[path] != wanted:
            raise ValueError(f"{path} feeds settings that disagree: {written[path]} / {wanted}")
        written[path] = wanted
        node = schema_node(result, path)
        node.pop("$ref", None)
        for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            node.pop(key, None)
        node.update({key: value for key, value in wanted.items() if value != ""})
    return result


def leaves(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, default) of values.yaml's leaves: a list or an empty map is a leaf."""
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from leaves(value, f"{path}.{key}" if path else key)
    else:
        yield path, node


_KEY = re.compile(r"^( *)([A-Za-z][\w./-]*):(?= |$)")
"""A mapping key, label keys included (`kubernetes.io/metadata.name:`)."""


def _opens_a_map(values: Any, path: list[str]) -> bool:
    """Whether the key at `path` holds a non-empty map; a block list (`policies:`) is a leaf."""
    node = values
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return isinstance(node, dict) and bool(node)


def comments(values_text: str) -> dict[str, str]:
    """{dotted path: the comment block right above its key} of values.yaml, one line each."""
    values = yaml.safe_load(values_text)
    found: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    block: list[str] = []
    for line in values_text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            block.append(stripped.lstrip("#").strip())
            continue
        key = _KEY.match(line)
        if key is None:
            block = []
            continue
        indent, name = len(key.group(1)), key.group(2)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, name))
        if block and _opens_a_map(values, [n for _, n in stack]):
            # A map's comment tells its first value's meaning (`fallback:` → failureThreshold).
            continue
        inline = line.partition(" # ")[2].strip()
        if block or inline:
            found[".".join(n for _, n in stack)] = " ".join([*block, inline]).strip()
        block = []
    return found


def meaning(schema: dict[str, Any], notes: dict[str, str], path: str) -> str:
    """A value's meaning: its setting's (the schema's description, written from the settings
    class) or, for a value no setting reads, its comment in values.yaml."""
    try:
        described = str(schema_node(schema, path).get("description", ""))
    except KeyError:  # under a map the schema leaves open (resources, annotations)
        described = ""
    return (described or notes.get(path, "")).replace("|", "\\|")


_TABLE_HEAD = "| value | default | meaning |\n|---|---|---|\n"
_SECTION = re.compile(r"^### `([^`]+)`$", re.MULTILINE)


def generated_readme(readme: str, values_text: str, schema: dict[str, Any]) -> str:
    """`readme` with every section's value table rewritten from values.yaml and the schema; the
    prose around the tables stays as written."""
    values = yaml.safe_load(values_text)
    notes = comments(values_text)
    parts = _SECTION.split(readme)
    result = [parts[0]]
    for key, body in zip(parts[1::2], parts[2::2], strict=True):
        if key in values and _TABLE_HEAD in body:
            before, _, after = body.partition(_TABLE_HEAD)
            _, blank, following = after.partition("\n\n")  # the old rows, then the rest
            rows = "".join(
                f"| `{path}` | `{json.dumps(default, ensure_ascii=False)}` "
                f"| {meaning(schema, notes, path)} |\n"
                for path, default in leaves({key: values[key]})
            )
            body = before + _TABLE_HEAD + rows + (blank[1:] + following if blank else "")
        result += [f"### `{key}`", body]
    return "".join(result)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.chart_docs", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only say what is out of date")
    args = parser.parse_args(argv)
    schema = generated_schema(json.loads(SCHEMA.read_text()))
    outputs = {
        SCHEMA: json.dumps(schema, indent=2, ensure_ascii=False) + "\n",
        README: generated_readme(README.read_text(), VALUES.read_text(), schema),
    }
    stale = [path for path, text in outputs.items() if path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"{path} is out of date: run `make chart-docs`", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.write_text(outputs[path])
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
