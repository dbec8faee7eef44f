"""The documented schema and the code's schema are the same list of columns, and a
manifest is read only when every name in it matches its documented pattern."""

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rainbench.shards import manifest
from rainbench.shards.dataset import DatasetError

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


def _write_samples(path: Path, **changes) -> None:
    row = {
        "key": "0123456789abcdef01234567",
        "shard": "shards/test/test-000000.tar",
        "split": "test",
        "format": "jpeg",
        "members": ["jpg", "json"],
        **changes,
    }
    manifest.write_manifest(path, manifest.rows_to_table([row], manifest.SAMPLES))


def test_a_sound_manifest_reads_back(tmp_path):
    path = tmp_path / "samples.parquet"
    _write_samples(path, near_dup_of=None)
    assert manifest.read_manifest(path, manifest.SAMPLES).num_rows == 1


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("key", "../../../../../y"),
        ("key", "0123456789ABCDEF01234567"),
        ("key", None),
        ("split", "../../../../x"),
        ("split", "Test"),
        ("shard", "../../../../etc/passwd"),
        ("shard", "/etc/passwd"),
        ("shard", "shards/test/../../../x-000000.tar"),
        ("shard", "shards\\test\\test-000000.tar"),
        ("shard", "shards/test/test-000000.tar.gz"),
        ("near_dup_of", "../y"),
        ("sequence", "../y"),
        ("format", "gif"),
        ("members", ["../../x"]),
        ("members", []),
    ],
)
def test_a_name_off_its_pattern_refuses_the_whole_manifest(tmp_path, column, value):
    path = tmp_path / "samples.parquet"
    _write_samples(path, **{column: value})
    with pytest.raises(DatasetError, match=f"{path}: .*{column}") as caught:
        manifest.read_manifest(path, manifest.SAMPLES)
    assert "\n" not in str(caught.value)


def test_a_manifest_from_before_videos_reads_with_the_new_columns_null(tmp_path):
    path = tmp_path / "samples.parquet"
    _write_samples(path)
    new = ["kind", "codec", "frame_rate", "duration_s", "frames", "rotation"]
    new += ["sequence", "sequence_index"]
    pq.write_table(pq.read_table(path).drop_columns(new), path)
    table = manifest.read_manifest(path, manifest.SAMPLES)
    assert table.schema == manifest.SAMPLES
    assert all(table[name].null_count == 1 for name in new)


def test_a_file_that_is_no_manifest_is_one_line(tmp_path):
    path = tmp_path / "samples.parquet"
    path.write_bytes(b"PAR1 not Parquet PAR1")
    with pytest.raises(DatasetError, match="not a readable Parquet manifest"):
        manifest.read_manifest(path, manifest.SAMPLES)
    pq.write_table(pa.table({"name": ["a"]}), path)
    with pytest.raises(DatasetError, match="not a rainbench manifest: none of its columns"):
        manifest.read_manifest(path, manifest.SAMPLES)
    pq.write_table(pa.table({"split": ["test"]}), path)
    with pytest.raises(DatasetError, match="not a rainbench manifest: it has no key column"):
        manifest.read_manifest(path, manifest.SAMPLES)


def test_the_patterns_are_the_documented_ones():
    trusts = DOC.read_text().split("## What a reader trusts\n", 1)[1]
    assert f"`{manifest.KEY}`" in trusts and f"`{manifest.SPLIT}`" in trusts
    assert f"`{manifest._STORED_SPLIT}`" in trusts
    assert f"`{manifest.MEMBER}`" in trusts


def test_a_new_split_name_is_at_most_100_characters():
    assert re.fullmatch(manifest.SPLIT, "a" * manifest.SPLIT_MAX)
    assert not re.fullmatch(manifest.SPLIT, "a" * (manifest.SPLIT_MAX + 1))


def test_a_stored_split_name_of_any_length_still_reads(tmp_path):
    """The cap is on names a command is given, not on what a dataset already holds."""
    split = "b" * 150
    path = tmp_path / "synthetic.parquet"
    row = {
        "key": "0" * 24,
        "split": split,
        "shard": f"shards/synthetic/{split}/{split}-000000.tar",
        "members": ["rain.png", "gt.png", "json"],
    }
    pq.write_table(pa.Table.from_pylist([row]), path)
    assert manifest.read_manifest(path, manifest.SYNTHETIC)["split"].to_pylist() == [split]


def test_a_too_long_split_name_is_refused_before_anything_is_written(tmp_path):
    from rainbench.synth.imports import import_paired

    (tmp_path / "set").mkdir()
    with pytest.raises(DatasetError, match="--name") as caught:
        import_paired(tmp_path / "set", "rain100", "a" * 250, tmp_path / "ds", 10**9, 1)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "ds").exists()
