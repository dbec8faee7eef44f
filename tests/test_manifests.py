"""The repository's manifests/ folder is in step with the code: schema.md is what
manifests/regenerate.py renders now, and each CSV has the manifest's columns less the
ones left out as run-specific."""

import csv
import importlib.util
from pathlib import Path

import pytest

FOLDER = Path(__file__).resolve().parents[1] / "manifests"


@pytest.fixture(scope="module")
def regenerate():
    spec = importlib.util.spec_from_file_location("regenerate", FOLDER / "regenerate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_schema_md_is_up_to_date(regenerate):
    assert (FOLDER / "schema.md").read_text(encoding="utf-8") == regenerate.schema_markdown(), (
        "manifests/schema.md is stale: python manifests/regenerate.py"
    )


def test_every_column_has_a_meaning(regenerate):
    rows = [line for line in regenerate.schema_markdown().splitlines() if line.startswith("| ")]
    assert all(not line.endswith("|  |") for line in rows)


@pytest.mark.parametrize("name", ["samples", "shards", "rejects", "synthetic"])
def test_csv_has_the_manifests_columns(regenerate, name):
    schema, order = regenerate.MANIFESTS[name]
    with open(FOLDER / f"{name}.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == [c for c in schema.names if c not in regenerate.VOLATILE]
    assert len(rows) > 1
    column = rows[0].index(order)
    assert [row[column] for row in rows[1:]] == sorted(row[column] for row in rows[1:])
