"""The chart's README lists every value of values.yaml and every top-level key of the schema."""

import json
import re
from collections.abc import Iterator
from typing import Any

import yaml
from devstack import chart_docs

from tests.support.charts import CHART

README = CHART / "README.md"


def _leaves(node: Any, path: str = "") -> Iterator[str]:
    """Dotted paths of values.yaml's leaves (a list or an empty map is a leaf)."""
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from _leaves(value, f"{path}.{key}" if path else key)
    else:
        yield path


def _documented() -> set[str]:
    return set(re.findall(r"^\| `([^`]+)` \|", README.read_text(), flags=re.MULTILINE))


def test_every_value_is_documented() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    missing = sorted(set(_leaves(values)) - _documented())
    assert not missing, f"add to {README.name}: {missing}"


def test_every_documented_value_exists() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    stale = sorted(_documented() - set(_leaves(values)))
    assert not stale, f"{README.name} lists values that values.yaml no longer has: {stale}"


def test_every_documented_value_has_a_meaning() -> None:
    """A row with no meaning: the value has no comment in values.yaml and no setting behind it."""
    rows = re.findall(r"^\| `([^`]+)` \|(.*)$", README.read_text(), flags=re.MULTILINE)
    # The meaning is the last cell: a pipe inside it is escaped, one in a default is not.
    unexplained = sorted(
        path for path, cells in rows if not re.split(r"(?<!\\)\|", cells)[-2].strip()
    )
    assert rows
    assert not unexplained, f"comment these in values.yaml, then `make chart-docs`: {unexplained}"


def test_every_top_level_key_the_schema_allows_has_a_section() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    sections = set(re.findall(r"^### `([^`]+)`$", README.read_text(), flags=re.MULTILINE))
    missing = sorted(set(schema["properties"]) - sections)
    assert not missing, f"add a section to {README.name}: {missing}"


def test_the_value_tables_and_schema_are_written_from_the_settings() -> None:
    """`make chart-docs` after changing a setting, values.yaml or a configmap template."""
    assert chart_docs.main(["--check"]) == 0
