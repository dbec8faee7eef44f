"""`rainbench ingest --no-tag`: captures go in unmeasured and untagged, and a later
`rainbench tag` makes the dataset a tagged ingest would have made."""

import json

import pytest
from click.testing import CliRunner

from rainbench.cli import main
from rainbench.ingest import IngestOptions, ingest
from rainbench.ingest.tag import TAG_COLUMNS, tag_dataset
from rainbench.shards.dataset import DatasetError
from rainbench.tagging.features import FEATURE_NAMES, feature_column

from .test_resume import fingerprint

UNTAGGED = IngestOptions(workers=1, tag=False)
MEASURED = ["features_version", *(feature_column(name) for name in FEATURE_NAMES)]


def test_untagged_then_tagged_is_a_tagged_ingest(tmp_path, capture_folder):
    ingest([capture_folder], tmp_path / "tagged", IngestOptions(workers=1))
    reference = fingerprint(tmp_path / "tagged")
    ds = tmp_path / "untagged"
    summary = ingest([capture_folder], ds, UNTAGGED)

    found = fingerprint(ds)
    assert summary.untagged == len(found["samples"]) > 0
    for row in found["samples"]:
        assert all(row[name] is None for name in MEASURED), row["key"]
        assert all(row[name] is None for name in TAG_COLUMNS), row["key"]
    runs = json.loads((ds / "dataset.json").read_text())["runs"]
    assert [run["tag"] for run in runs] == [False]
    # What is stored does not depend on tagging.
    assert found["files"] == reference["files"]

    tagged = tag_dataset(ds)

    assert tagged.measured == summary.untagged and not tagged.unmeasurable
    assert fingerprint(ds) == reference


def test_no_tag_with_labels_is_refused_before_any_work(tmp_path, capture_folder):
    sheet = tmp_path / "labels.csv"
    sheet.write_text("source_path,sha256,key,rain_type,note\n")
    ds = tmp_path / "ds"
    options = IngestOptions(workers=1, tag=False, labels=sheet)

    with pytest.raises(DatasetError, match=r"rainbench tag .* --labels"):
        ingest([capture_folder], ds, options)

    assert not ds.exists()


def test_no_tag_with_labels_is_a_usage_error_on_the_command_line(tmp_path):
    sheet = tmp_path / "labels.csv"
    sheet.write_text("source_path,sha256,key,rain_type,note\n")
    command = ["ingest", str(tmp_path), "--out", str(tmp_path / "ds"), "--no-tag"]

    result = CliRunner().invoke(main, [*command, "--labels", str(sheet)])

    assert result.exit_code == 2
    assert "Error: --no-tag with --labels: a sheet is applied by tagging" in result.output


def test_the_cli_says_what_is_left_to_tag(tmp_path, capture_folder):
    ds = tmp_path / "ds"
    command = ["ingest", str(capture_folder), "--out", str(ds), "-j", "2", "--no-tag"]

    result = CliRunner().invoke(main, command)

    assert result.exit_code == 0, result.output
    count = len(fingerprint(ds)["samples"])
    assert f"{count} captures not yet measured for their rain type: rainbench tag {ds}" in (
        result.output
    )
    tagged = CliRunner().invoke(main, ["ingest", str(capture_folder), "--out", str(ds)])
    assert "not yet measured" in tagged.output  # nothing new read: still untagged
