"""The documented schema and the code's schema are the same list of columns."""

import re
from pathlib import Path

import pytest

from rainbench.shards import manifest

DOC = Path(__file__).resolve().parents[2] / "docs" / "dataset-format.md"


def _documented(section: str) -> list[str]:
    section_text = DOC.read_text().split(f"## {section}\n", 1)[1]
    first_table = section_text.split("\n\n", 1)[0]
    return re.findall(r"^\| (\w+) \| [^|]*\| [^|]*\|$", first_table, flags=re.M)[1:]


@pytest.mark.parametrize(
    ("section", "schema"),
    [
        ("samples.parquet", manifest.SAMPLES),
        ("shards.parquet", manifest.SHARDS),
        ("rejects.parquet", manifest.REJECTS),
        ("synthetic.parquet", manifest.SYNTHETIC),
    ],
)
def test_every_column_is_documented(section, schema):
    assert _documented(section) == schema.names
