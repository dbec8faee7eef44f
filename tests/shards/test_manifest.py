"""The documented schema and the code's schema are the same list of columns, and a
manifest is read only when every name in it matches its documented pattern and it
decodes to no more than its size allows."""

import hashlib
import os
import re
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rainbench.shards import manifest
from rainbench.shards.dataset import Dataset, DatasetError, initial_info
from rainbench.synth.importers import ESTIMATED
from rainbench.tagging.features import FEATURE_NAMES, feature_column

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
        "sha256": "0123456789abcdef01234567" + "0" * 40,
        "shard": "shards/test/test-000000.tar",
        "split": "test",
        "layer": "rainy",
        "width": 64,
        "height": 48,
        "format": "jpeg",
        "bytes": 1000,
        "members": ["jpg", "json"],
        **changes,
    }
    manifest.write_manifest(path, manifest.rows_to_table([row], manifest.SAMPLES))


def _pair(**changes) -> dict:
    return {
        "key": "0" * 24,
        "split": "syn-drizzle",
        "recipe": "drizzle",
        "shard": "shards/synthetic/syn-drizzle/syn-drizzle-000000.tar",
        "job": "drizzle@1:" + "a" * 24 + ":0:0",
        "width": 64,
        "height": 48,
        "members": ["rain.png", "gt.png", "json"],
        "rain_sha256": "1" * 64,
        "gt_sha256": "2" * 64,
        **changes,
    }


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


@pytest.mark.parametrize("column", ["key", "camera_model"])
def test_text_that_is_no_utf8_refuses_the_whole_manifest(tmp_path, column):
    path = tmp_path / "samples.parquet"
    _write_samples(path, **{column: "x"})
    table = pq.read_table(path)
    text = pa.array([b"0123456789abcdef0123\xff\xfe45"]).view(pa.string())
    pq.write_table(table.set_column(table.schema.get_field_index(column), column, text), path)
    with pytest.raises(DatasetError, match=f"{path}: not a readable .*Invalid UTF8"):
        manifest.read_manifest(path, manifest.SAMPLES)


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


def test_a_fifo_in_a_manifests_place_is_refused_unopened_by_a_hashed_read(tmp_path):
    # Hashing it before the read opened it, and an open FIFO waits for a writer forever.
    path = tmp_path / "samples.parquet"
    os.mkfifo(path)
    outcome = []

    def read():
        try:
            manifest.read_hashed(path, manifest.SAMPLES, "tag-eval")
        except DatasetError as error:
            outcome.append(str(error))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(5)
    waited = reader.is_alive()
    if waited:  # let the waiting open return, so the thread ends
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(5)
    assert not waited, "the read waited on the FIFO"
    assert len(outcome) == 1
    assert "not a readable Parquet manifest (not a regular file" in outcome[0]


def test_the_patterns_are_the_documented_ones():
    trusts = DOC.read_text().split("## What a reader trusts\n", 1)[1]
    assert f"`{manifest.KEY}`" in trusts and f"`{manifest.SPLIT}`" in trusts
    assert f"`{manifest.STORED_SPLIT}`" in trusts
    assert f"`{manifest.MEMBER}`" in trusts


def test_a_new_split_name_is_at_most_100_characters():
    assert re.fullmatch(manifest.SPLIT, "a" * manifest.SPLIT_MAX)
    assert not re.fullmatch(manifest.SPLIT, "a" * (manifest.SPLIT_MAX + 1))


def _write_pairs(path: Path, split: str) -> None:
    row = _pair(split=split, shard=f"shards/synthetic/{split}/{split}-000000.tar")
    pq.write_table(pa.Table.from_pylist([row]), path)


def test_a_stored_split_name_longer_than_a_new_one_still_reads(tmp_path):
    """The cap of 100 is on names a command is given, not on what a dataset from before
    it holds."""
    split = "b" * manifest.STORED_SPLIT_MAX
    path = tmp_path / "synthetic.parquet"
    _write_pairs(path, split)
    assert manifest.read_manifest(path, manifest.SYNTHETIC)["split"].to_pylist() == [split]


@pytest.mark.parametrize("name", ["synthetic", "samples"])
def test_a_split_name_too_long_for_its_files_refuses_the_manifest(tmp_path, name):
    """eval's <split>.parquet.tmp of a 250-character split would not fit a file name."""
    split = "b" * (manifest.STORED_SPLIT_MAX + 1)
    path = tmp_path / f"{name}.parquet"
    if name == "synthetic":
        _write_pairs(path, split)
    else:
        _write_samples(path, split=split, shard=f"shards/{split}/{split}-000000.tar")
    schema = manifest.SYNTHETIC if name == "synthetic" else manifest.SAMPLES
    with pytest.raises(DatasetError, match=f"{path}: split 'b+'… has 201 characters") as caught:
        manifest.read_manifest(path, schema)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("split", manifest.RESERVED_PAIRED)
def test_a_paired_split_named_like_a_capture_split_refuses_the_manifest(tmp_path, split):
    """A paired split `test` would stand for the real test split in eval --split test."""
    path = tmp_path / "synthetic.parquet"
    _write_pairs(path, split)
    with pytest.raises(DatasetError, match=f"{path}: paired split '{split}'") as caught:
        manifest.read_manifest(path, manifest.SYNTHETIC)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("split", manifest.RESERVED_PAIRED)
def test_the_commands_that_name_a_paired_split_refuse_what_a_reader_refuses(tmp_path, split):
    from rainbench.pairs.build import PairsOptions, build_pairs
    from rainbench.synth.imports import import_paired

    ds = tmp_path / "ds"
    ds.mkdir()
    Dataset(ds).write_info(initial_info("ds", {}))
    (tmp_path / "set").mkdir()
    with pytest.raises(DatasetError, match="--name"):
        import_paired(tmp_path / "set", "rain100", split, ds, 10**9, 1)
    with pytest.raises(DatasetError, match="--name"):
        build_pairs(ds, PairsOptions(name=split, workers=1))
    assert not Dataset(ds).synthetic_manifest.exists()


def test_a_too_long_split_name_is_refused_before_anything_is_written(tmp_path):
    from rainbench.synth.imports import import_paired

    (tmp_path / "set").mkdir()
    with pytest.raises(DatasetError, match="--name") as caught:
        import_paired(tmp_path / "set", "rain100", "a" * 250, tmp_path / "ds", 10**9, 1)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "ds").exists()


_REAL_PAIR = {
    "recipe": "pairs:percentile",
    "frame_index": 4,
    "window_start": 0,
    "window_end": 30,
    "confidence_mean": 0.9,
}


@pytest.mark.parametrize(
    ("schema", "row", "column"),
    [
        ("samples", {"layer": None}, "layer"),
        ("samples", {"height": None}, "width or height"),
        ("samples", {"sha256": None}, "sha256"),
        ("samples", {"bytes": None}, "bytes"),
        ("samples", {"kind": "video", "format": "mp4", "members": ["mp4", "json"]}, "frames"),
        ("synthetic", {"recipe": None}, "recipe"),
        ("synthetic", {"job": None}, "job"),
        ("synthetic", {"width": None}, "width or height"),
        ("synthetic", {**_REAL_PAIR, "window_start": None}, "frame_index or window_start"),
    ],
)
def test_a_null_where_a_value_is_required_refuses_the_manifest(tmp_path, schema, row, column):
    path = tmp_path / f"{schema}.parquet"
    if schema == "samples":
        _write_samples(path, **row)
    else:
        pq.write_table(pa.Table.from_pylist([_pair(**row)], manifest.SYNTHETIC), path)
    key = pq.read_table(path)["key"][0].as_py()
    schema = manifest.SAMPLES if schema == "samples" else manifest.SYNTHETIC
    with pytest.raises(
        DatasetError, match=f"{path}: 1 row has no {column}.*first: {key}"
    ) as caught:
        manifest.read_manifest(path, schema)
    assert "\n" not in str(caught.value)
    table = manifest.read_manifest(path, schema, check_values=False)
    assert list(manifest.row_faults(table, schema)) == [0]


@pytest.mark.parametrize(
    ("change", "fault"),
    [
        ({"window_start": 5, "window_end": -3}, "its frames out of order"),
        ({"window_start": -1}, "its frames out of order"),
        ({"frame_index": -1}, "its frames out of order"),
        ({"confidence_mean": float("nan")}, "a confidence_mean outside"),
        ({"confidence_mean": 1.5}, "a confidence_mean outside"),
    ],
)
def test_a_real_pair_of_impossible_figures_refuses_the_manifest(tmp_path, change, fault):
    # eval sizes the ground truth's window from them, and averages the confidence.
    path = tmp_path / "synthetic.parquet"
    rows = [_pair(**_REAL_PAIR), _pair(key="1" * 24, **{**_REAL_PAIR, **change})]
    pq.write_table(pa.Table.from_pylist(rows, manifest.SYNTHETIC), path)
    with pytest.raises(DatasetError, match=f"1 row has {fault}.*first: {'1' * 24}"):
        manifest.read_manifest(path, manifest.SYNTHETIC)
    table = manifest.read_manifest(path, manifest.SYNTHETIC, check_values=False)
    assert list(manifest.row_faults(table, manifest.SYNTHETIC)) == [1]


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("layer", "bogus"),
        ("rain_type", "hail"),
        ("rain_type_auto", "Storm"),
        ("rain_type_source", "guess"),
    ],
)
def test_a_label_none_of_its_columns_values_refuses_the_manifest(tmp_path, column, value):
    # tag, tag-eval and --fit index the four types by them; verify reports the row.
    path = tmp_path / "samples.parquet"
    _write_samples(path, **{column: value})
    with pytest.raises(DatasetError, match=f"1 row has a {column} none of .*first: 0123"):
        manifest.read_manifest(path, manifest.SAMPLES)
    table = manifest.read_manifest(path, manifest.SAMPLES, check_values=False)
    assert list(manifest.row_faults(table, manifest.SAMPLES)) == [0]


def test_a_rain_free_pair_after_its_window_is_read(tmp_path):
    # Its ground truth came from the dry frames before the rain: its window.
    path = tmp_path / "synthetic.parquet"
    row = {**_REAL_PAIR, "recipe": "pairs:rain-free", "frame_index": 40, "window_end": 8}
    pq.write_table(pa.Table.from_pylist([_pair(**row)], manifest.SYNTHETIC), path)
    assert manifest.read_manifest(path, manifest.SYNTHETIC).num_rows == 1


def test_columns_the_format_leaves_optional_may_be_null(tmp_path):
    """Camera fields, GPS, features, a still's video fields; a pair's estimate fields
    unless it is a real pair, a real pair's figures besides its frames."""
    path = tmp_path / "samples.parquet"
    _write_samples(path, kind="still", frames=None, camera_make=None, captured_at=None)
    assert manifest.read_manifest(path, manifest.SAMPLES).num_rows == 1
    path = tmp_path / "synthetic.parquet"
    rows = [_pair(), _pair(key="1" * 24, **{**_REAL_PAIR, "confidence_mean": None})]
    pq.write_table(pa.Table.from_pylist(rows, manifest.SYNTHETIC), path)
    assert manifest.read_manifest(path, manifest.SYNTHETIC).num_rows == 2


def test_a_wrongly_typed_column_is_refused_where_its_nulls_are(tmp_path):
    """Parquet's cast reads 7 as "7"; a null still has no recipe."""
    path = tmp_path / "synthetic.parquet"
    table = pa.Table.from_pylist([_pair(), _pair(key="1" * 24)], manifest.SYNTHETIC)
    index = table.schema.get_field_index("recipe")
    pq.write_table(table.set_column(index, "recipe", pa.array([7, None], pa.int64())), path)
    with pytest.raises(DatasetError, match="1 row has no recipe"):
        manifest.read_manifest(path, manifest.SYNTHETIC)


def test_a_time_beyond_what_python_holds_refuses_the_manifest(tmp_path):
    path = tmp_path / "samples.parquet"
    _write_samples(path, captured_at=datetime.max)
    assert manifest.read_manifest(path, manifest.SAMPLES)["captured_at"][0].as_py() == datetime.max
    table = pq.read_table(path)
    index = table.schema.get_field_index("captured_at")
    stamps = pa.array([-(2**62)], pa.int64()).cast(pa.timestamp("us"))
    pq.write_table(table.set_column(index, "captured_at", stamps), path)
    with pytest.raises(DatasetError, match="1 row has a captured_at outside the years 1 to 9999"):
        manifest.read_manifest(path, manifest.SAMPLES)
    table = manifest.read_manifest(path, manifest.SAMPLES, check_values=False)
    assert manifest.row_faults(table, manifest.SAMPLES) == {
        0: ["a captured_at outside the years 1 to 9999"]
    }


def test_a_real_pairs_recipe_prefix_is_the_one_pairs_writes():
    assert manifest.REAL_PAIR == ESTIMATED


def _samples(rows: int) -> pa.Table:
    """A samples.parquet's rows as ingest writes them: unique digests, a split and a shard
    each, a root repeated on every row, a few cameras, tagger features, lists."""
    rng = np.random.default_rng(5)
    digests = [hashlib.sha256(str(row).encode()).hexdigest() for row in range(rows)]
    splits = rng.choice(["train", "val", "test"], rows, p=[0.8, 0.1, 0.1])
    columns = {
        "key": [digest[:24] for digest in digests],
        "sha256": digests,
        "source_sha256": digests,
        "split": splits,
        "shard": [
            f"shards/{split}/{split}-{row // 500:06d}.tar" for row, split in enumerate(splits)
        ],
        "layer": rng.choice(["rainy", "clean"], rows),
        "width": [6000] * rows,
        "height": [4000] * rows,
        "format": ["jpeg"] * rows,
        "bytes": rng.integers(1 << 20, 12 << 20, rows),
        "members": [["jpg", "json"]] * rows,
        "source_path": [
            f"DCIM/{100 + row // 9999}CANON/IMG_{row % 9999:04d}.JPG" for row in range(rows)
        ],
        "source_root": ["/srv/lab/captures/camera-3"] * rows,
        "camera_make": rng.choice(["Canon", "Apple", "FUJIFILM"], rows),
        "tag_caveats": [[] if row % 9 else ["grey"] for row in range(rows)],
        "phash": [digest[-16:] for digest in digests],
        **{feature_column(name): rng.random(rows) for name in FEATURE_NAMES},
    }
    return pa.table(
        [
            pa.array(columns[f.name], f.type) if f.name in columns else pa.nulls(rows, f.type)
            for f in manifest.SAMPLES
        ],
        schema=manifest.SAMPLES,
    )


def test_a_manifest_of_many_rows_reads_as_pyarrow_reads_it(tmp_path):
    path = tmp_path / "samples.parquet"
    manifest.write_manifest(path, _samples(40_000))
    read = manifest.read_manifest(path, manifest.SAMPLES)
    assert read.equals(pq.read_table(path, schema=manifest.SAMPLES)) and read.num_rows == 40_000


def _dictionary_bomb(path: Path) -> None:
    """A hundred thousand rows of one 16 MiB string: 1.6 TB decoded, from 2 kB."""
    rows = 100_000
    root = pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, np.int32)), ["/" * (16 << 20)])
    table = pa.table({"key": ["0" * 24] * rows, "source_root": root})
    pq.write_table(table, path, compression="zstd", store_schema=False)


def _row_bomb(path: Path) -> None:
    """Four million rows in a few hundred bytes: each of samples.parquet's columns holds a
    value a row once read, 3 GB."""
    pq.write_table(pa.table({"key": pa.nulls(1 << 22, pa.string())}), path)


def _list_bomb(path: Path) -> None:
    """One row whose members are two million of one 16 kB string: 32 GB decoded."""
    values = 1 << 21
    members = pa.DictionaryArray.from_arrays(pa.array(np.zeros(values, np.int32)), ["j" * 16000])
    lists = pa.ListArray.from_arrays(pa.array([0, values], pa.int32()), members)
    pq.write_table(pa.table({"key": ["0" * 24], "members": lists}), path, store_schema=False)


# Read a manifest in a process whose memory is capped, so that a bomb read as it says
# fails there and not on the machine; print the one line of its refusal, the peak of
# the process's resident memory in kB (VmHWM: its own, not its parent's) and the seconds
# the reading took.
_READ_CAPPED = """
import re, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, resource.RLIM_INFINITY))
from pathlib import Path
from rainbench.shards import manifest
from rainbench.shards.dataset import DatasetError
start = time.monotonic()
try:
    manifest.read_manifest(Path(sys.argv[1]), manifest.SAMPLES)
except DatasetError as error:
    print(error)
peak = re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text())[1]
print(peak, time.monotonic() - start)
"""


@pytest.mark.parametrize("bomb", [_dictionary_bomb, _row_bomb, _list_bomb])
def test_a_manifest_that_decodes_to_far_more_than_its_size_is_refused_quickly(tmp_path, bomb):
    path = tmp_path / "samples.parquet"
    bomb(path)
    assert path.stat().st_size < 16 << 10
    read = subprocess.run(
        [sys.executable, "-c", _READ_CAPPED, str(path)], capture_output=True, text=True
    )
    assert read.returncode == 0, read.stderr
    refused, used = read.stdout.splitlines()
    assert refused.startswith(f"{path}: refused: decoding it would take ")
    assert refused.endswith(
        "; the manifest is damaged or was not written by rainbench (see docs/dataset-format.md)"
    )
    peak_kb, seconds = used.split()
    assert int(peak_kb) < 512 << 10 and float(seconds) < 30  # under 512 MiB, in seconds
