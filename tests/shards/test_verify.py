"""`verify` catches every way a dataset can disagree with its manifests."""

import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import textwrap
import zlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from rainbench.cli import main
from rainbench.demo.captures import CaptureSpec, write_capture
from rainbench.ingest import IngestOptions, ingest
from rainbench.parallel import WorkerPool
from rainbench.shards import manifest
from rainbench.shards import verify as verify_module
from rainbench.shards.dataset import Dataset, DatasetBusy, DatasetError
from rainbench.shards.tar import ShardWriter
from rainbench.shards.verify import check_videos, verify
from rainbench.synth.build import SynthOptions, synthesize


@pytest.fixture(scope="module")
def _sound(tmp_path_factory, _capture_folder):
    ds = tmp_path_factory.mktemp("verify") / "ds"
    ingest([_capture_folder], ds, IngestOptions(workers=1, shard_bytes=300_000))
    return ds


@pytest.fixture
def ds(tmp_path, _sound):
    return shutil.copytree(_sound, tmp_path / "ds")


@pytest.fixture(scope="module")
def _paired(tmp_path_factory):
    """Two clean captures and the paired split syn-drizzle rendered on them."""
    root = tmp_path_factory.mktemp("paired")
    for index in range(2):
        write_capture(root / "clean", CaptureSpec(f"clean{index}.jpg", 64, 48, seed=index))
    ds = root / "ds"
    everything_test = {"train": 0.0, "val": 0.0, "test": 1.0}
    ingest([root / "clean"], ds, IngestOptions(workers=1, layer="clean", split=everything_test))
    synthesize(ds, SynthOptions(recipes=("drizzle",), workers=1))
    return ds


@pytest.fixture
def paired(tmp_path, _paired):
    return shutil.copytree(_paired, tmp_path / "ds")


def _kinds(ds) -> set[str]:
    return {p.kind for p in verify(Dataset(ds), workers=1)}


def _a_shard(ds):
    return ds / pd.read_parquet(ds / "manifests/shards.parquet").shard.iloc[0]


def test_sound_dataset_passes(ds):
    assert verify(Dataset(ds), workers=2) == []


def test_a_flipped_byte_is_caught(ds):
    shard = _a_shard(ds)
    data = bytearray(shard.read_bytes())
    data[1500] ^= 0x01  # inside the first member's content
    shard.write_bytes(bytes(data))
    assert _kinds(ds) == {"shard-sha256", "member-sha256"}


def test_a_truncated_shard_is_caught(ds):
    shard = _a_shard(ds)
    shard.write_bytes(shard.read_bytes()[:2000])
    assert "shard-corrupt" in _kinds(ds) or "shard-sha256" in _kinds(ds)
    problems = verify(Dataset(ds), workers=1)
    assert all(shard.name in p.where for p in problems)


def test_a_missing_shard_is_caught(ds):
    _a_shard(ds).unlink()
    assert _kinds(ds) == {"shard-missing"}


def test_a_shard_replaced_by_a_link_to_nothing_is_said_so(ds):
    shard = _a_shard(ds)
    shard.unlink()
    shard.symlink_to(shard.name)  # a loop: exists() says False, as for a missing file
    (problem,) = verify(Dataset(ds), workers=1)
    assert (problem.kind, problem.detail) == ("shard-missing", "a link that leads to no file")


def test_stray_members_and_shards_are_caught(ds):
    with ShardWriter(ds / "shards/train/train-999999.tar") as writer:
        writer.add("deadbeef.jpg", b"x")
        writer.commit()
    assert _kinds(ds) == {"stray-shard"}
    (ds / "shards/train/train-999999.tar").unlink()
    (ds / "shards/train/train-000000.tar.tmp").write_bytes(b"")
    assert _kinds(ds) == {"stray-temporary"}


def test_a_manifest_row_without_its_member_is_caught(ds):
    table = pq.read_table(ds / "manifests/samples.parquet").to_pandas()
    table.loc[0, "key"] = "0" * 24
    table.to_parquet(ds / "manifests/samples.parquet")
    assert {"member-missing", "stray-member"} <= _kinds(ds)


def test_not_a_dataset(tmp_path):
    with pytest.raises(DatasetError, match="not a rainbench dataset"):
        verify(Dataset(tmp_path))


def test_a_member_of_another_size_than_the_manifest_says_is_caught(ds):
    table = pq.read_table(ds / "manifests/samples.parquet").to_pandas()
    table.loc[0, "bytes"] += 1
    table.to_parquet(ds / "manifests/samples.parquet")
    assert _kinds(ds) == {"member-size"}


def test_a_first_ingest_killed_before_its_first_commit_is_pending(tmp_path):
    (tmp_path / ".ingest").mkdir()
    (tmp_path / ".ingest" / "run.json").write_text("{}")
    assert [p.kind for p in verify(Dataset(tmp_path))] == ["ingest-pending"]


# -- what readers trust beyond the hashes ----------------------------------------------------

_SCHEMAS = {"samples": manifest.SAMPLES, "shards": manifest.SHARDS, "synthetic": manifest.SYNTHETIC}


def _rows(ds, name: str) -> list[dict]:
    return pq.read_table(ds / "manifests" / f"{name}.parquet").to_pylist()


def _write_rows(ds, name: str, rows: list[dict]) -> None:
    pq.write_table(
        pa.Table.from_pylist(rows, schema=_SCHEMAS[name]), ds / f"manifests/{name}.parquet"
    )


def _problems(ds) -> list:
    return verify(Dataset(ds), workers=1)


def _replace_member(ds, shard: str, name: str, data: bytes) -> None:
    """Write `shard` again with member `name` holding `data`, and update its sha256 and
    size in shards.parquet, as a forger would."""
    with tarfile.open(ds / shard) as tar:
        members = [(info.name, tar.extractfile(info).read()) for info in tar]
    with ShardWriter(ds / shard) as writer:
        for member, content in members:
            writer.add(member, data if member == name else content)
        info = writer.commit()
    _write_rows(
        ds,
        "shards",
        [
            {**r, "sha256": info.sha256, "bytes": info.bytes} if r["shard"] == shard else r
            for r in _rows(ds, "shards")
        ],
    )


def _png_declaring(width: int, height: int) -> bytes:
    """A whole PNG whose IHDR declares width × height: rows of zeros, deflated."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(bytes((1 + 3 * width) * height), 9)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_a_capture_row_whose_size_its_header_does_not_declare_is_caught(ds, fmt):
    rows = _rows(ds, "samples")
    row = next(r for r in rows if r["format"] == fmt)
    _write_rows(ds, "samples", [{**r, "width": 99999} if r is row else r for r in rows])
    problems = _problems(ds)
    assert [p.kind for p in problems] == ["member-header"]
    assert row["key"] in problems[0].where and "99999" in problems[0].detail


def test_a_capture_turned_by_exif_is_checked_as_stored(ds):
    """width and height are upright: a JPEG stored on its side declares them swapped, and
    a row that gives the stored size instead is caught."""
    rows = _rows(ds, "samples")
    row = next(
        r
        for r in rows
        if r["format"] == "jpeg" and r["orientation"] in (5, 6, 7, 8) and r["width"] != r["height"]
    )
    assert _problems(ds) == []
    swapped = {**row, "width": row["height"], "height": row["width"]}
    _write_rows(ds, "samples", [swapped if r is row else r for r in rows])
    assert [p.kind for p in _problems(ds)] == ["member-header"]


def test_a_pair_row_whose_size_its_pngs_do_not_declare_is_caught(paired):
    assert _problems(paired) == []
    rows = _rows(paired, "synthetic")
    _write_rows(paired, "synthetic", [{**rows[0], "width": 99999}, *rows[1:]])
    problems = _problems(paired)
    assert {p.kind for p in problems} == {"member-header"}
    assert {p.where.rsplit(".", 2)[-2] for p in problems} >= {"rain", "gt"}


def test_a_picture_replaced_by_a_bomb_with_every_hash_updated_is_caught(paired):
    """A rain.png declaring 20000×20000 in a few hundred kilobytes: its header is read, the
    pixels never."""
    row = _rows(paired, "synthetic")[0]
    bomb = _png_declaring(20_000, 20_000)
    _replace_member(paired, row["shard"], f"{row['key']}.rain.png", bomb)
    digest = hashlib.sha256(bomb).hexdigest()
    rows = _rows(paired, "synthetic")
    _write_rows(
        paired,
        "synthetic",
        [{**r, "rain_sha256": digest} if r["key"] == row["key"] else r for r in rows],
    )
    problems = _problems(paired)
    assert [p.kind for p in problems] == ["member-header"]
    assert "20000×20000" in problems[0].detail


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        (b'{"evil": 1}', "does not name its row: no key"),
        (b"[1, 2]", "not a JSON object"),
        (b"{not json", "not JSON"),
        (b"[" * 100_000, "not JSON"),
    ],
)
@pytest.mark.parametrize("which", ["capture", "pair"])
def test_a_metadata_member_that_does_not_name_its_row_is_caught(paired, which, content, detail):
    row = _rows(paired, "samples" if which == "capture" else "synthetic")[0]
    _replace_member(paired, row["shard"], f"{row['key']}.json", content)
    problems = _problems(paired)
    assert [p.kind for p in problems] == ["member-metadata"]
    assert detail in problems[0].detail


def test_a_metadata_member_of_another_row_is_caught(paired):
    first, second = _rows(paired, "synthetic")[:2]
    with tarfile.open(paired / second["shard"]) as tar:
        other = tar.extractfile(f"{second['key']}.json").read()
    _replace_member(paired, first["shard"], f"{first['key']}.json", other)
    problems = _problems(paired)
    assert [p.kind for p in problems] == ["member-metadata"]
    assert "key" in problems[0].detail and "job" in problems[0].detail


def test_pair_counts_in_dataset_json_are_checked(paired):
    info = json.loads((paired / "dataset.json").read_text())
    info["counts"]["synthetic"]["syn-drizzle"] = 999
    (paired / "dataset.json").write_text(json.dumps(info))
    problems = _problems(paired)
    assert [p.kind for p in problems] == ["dataset-json"]
    assert "999" in problems[0].detail


def test_counts_of_another_type_in_dataset_json_are_said_as_written(paired):
    """A count written as text is no count: the message must not read "counts 2, has 2"."""
    info = json.loads((paired / "dataset.json").read_text())
    info["counts"]["samples"] = str(info["counts"]["samples"])
    (paired / "dataset.json").write_text(json.dumps(info))
    [problem] = _problems(paired)
    assert problem.kind == "dataset-json"
    assert problem.detail == 'counts "2" samples, samples.parquet has 2'


def test_a_shard_listed_twice_is_caught(ds):
    """Readers would count its samples and bytes twice (`stats` does)."""
    rows = _rows(ds, "shards")
    _write_rows(ds, "shards", [*rows, rows[0]])
    [problem] = _problems(ds)
    assert (problem.kind, problem.where) == ("duplicate-shard", rows[0]["shard"])
    assert problem.detail == "listed 2 times in shards.parquet"


def test_a_damaged_rejects_manifest_is_caught(ds):
    """No row or shard check needs it, but `stats` and every later ingest read it."""
    (ds / "manifests/rejects.parquet").write_bytes(b"PAR1 cut short")
    [problem] = _problems(ds)
    assert (problem.kind, problem.where) == ("manifest-unreadable", "manifests/rejects.parquet")
    assert "not a readable Parquet manifest" in problem.detail


def test_a_shard_this_user_may_not_open_is_a_problem_and_the_rest_is_checked(ds, monkeypatch):
    """One shard that cannot be opened (permissions, a disk error) is that shard's problem;
    verify goes on to the others rather than stop at it."""
    denied, other = _a_shard(ds), ds / _rows(ds, "shards")[-1]["shard"]
    data = bytearray(other.read_bytes())
    data[1500] ^= 0x01
    other.write_bytes(bytes(data))

    def refusing(path, *args, **kwargs):
        if os.path.samefile(path, denied):
            raise PermissionError(13, "Permission denied", str(path))
        return open(path, *args, **kwargs)

    monkeypatch.setattr(verify_module, "open", refusing, raising=False)
    denied_name, other_name = denied.relative_to(ds).as_posix(), other.relative_to(ds).as_posix()
    assert {(p.kind, p.where.split(":")[0], p.detail) for p in _problems(ds)} >= {
        ("shard-corrupt", denied_name, "unreadable: Permission denied")
    }
    assert {(p.kind, p.where.split(":")[0]) for p in _problems(ds)} == {
        ("shard-corrupt", denied_name),
        ("shard-sha256", other_name),
        ("member-sha256", other_name),
    }


@pytest.mark.skipif(os.geteuid() == 0, reason="permissions do not bar root")
def test_a_split_folder_this_user_may_not_read_is_a_problem_not_the_end(ds):
    """A shard whose folder refuses this user is unreadable, not missing, and not the end."""
    shard = _a_shard(ds)
    shard.parent.chmod(0)
    try:
        problems = _problems(ds)
    finally:
        shard.parent.chmod(0o755)
    name = shard.relative_to(ds).as_posix()
    assert ("shard-corrupt", name, "unreadable: Permission denied") in {
        (p.kind, p.where, p.detail) for p in problems
    }


# -- a dataset being written -----------------------------------------------------------------

_HOLD_LOCK = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from rainbench.shards.dataset import Dataset
    with Dataset(Path(sys.argv[1])).lock():
        print("locked", flush=True)
        sys.stdin.read()
    """
)


def test_a_dataset_being_written_is_not_judged_and_says_by_whom(ds):
    """The writer's unfinished shard is its work, not damage: verify exits 3 naming the
    writer; once it is gone, a temporary it left is damage again."""
    (ds / "shards/train/train-000009.tar.0123456789ab.tmp").write_bytes(b"")
    writer = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(ds)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout.readline() == "locked\n"
        with pytest.raises(DatasetBusy, match=rf"being written by pid {writer.pid} \(python -c "):
            verify(Dataset(ds), workers=1)
        result = CliRunner().invoke(main, ["verify", str(ds)])
        assert result.exit_code == 3
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and f"is being written by pid {writer.pid}" in lines[0]
        assert "stray-temporary" not in result.output
    finally:
        writer.communicate("")
    assert _kinds(ds) == {"stray-temporary"}


def test_a_writer_that_starts_during_verify_is_caught(ds, monkeypatch):
    from rainbench.shards import verify as verifying

    judged = verifying._verify

    def while_a_writer_starts(dataset, workers):
        problems = judged(dataset, workers)
        monkeypatch.setattr(Dataset, "writer", lambda self: "pid 1 (rainbench ingest)")
        return problems

    monkeypatch.setattr(verifying, "_verify", while_a_writer_starts)
    with pytest.raises(DatasetBusy, match="being written by pid 1"):
        verify(Dataset(ds), workers=1)


def test_looking_at_the_lock_leaves_it_free(ds):
    assert Dataset(ds).writer() is None
    with Dataset(ds).lock():
        assert Dataset(ds).writer().startswith("pid ")
    assert Dataset(ds).writer() is None


@pytest.mark.parametrize("chunk", [1, 5, 4096, 1 << 22])
def test_a_jpeg_header_is_found_past_large_segments_in_any_chunking(chunk):
    """The frame header after 300 KB of application segments (EXIF, ICC, XMP in a real
    file), fed in chunks that cut segments anywhere: the segments are skipped unread."""
    from PIL import Image

    from rainbench.shards.verify import _Header

    out = io.BytesIO()
    Image.new("RGB", (37, 21)).save(out, "JPEG")
    plain = out.getvalue()
    segment = b"\xff\xef" + struct.pack(">H", 65535) + bytes(65533)
    jpeg = plain[:2] + segment * 5 + b"\xff\xff" + plain[2:]  # and a fill byte
    app0 = 4 + struct.unpack(">H", jpeg[4:6])[0]  # junk after it, which Pillow passes over
    jpeg = jpeg[:app0] + b"\x00\x00" + jpeg[app0:]
    assert Image.open(io.BytesIO(jpeg)).size == (37, 21)
    for data, size in ((jpeg, (37, 21)), (_png_declaring(9, 4), (9, 4))):
        header = _Header("jpg" if data is jpeg else "png")
        for at in range(0, len(data), chunk):
            header.feed(data[at : at + chunk])
        assert header.result() == size
    header = _Header("jpg")
    header.feed(jpeg[:200_000])
    assert header.result() == "it ends before its header gives the size"


@pytest.mark.parametrize(
    ("column", "value", "said"),
    [
        ("layer", "bogus", "a layer none of rainy, clean"),
        ("split", "nosuch", "split 'nosuch' is none of train, val, test"),
        ("rain_type", "hail", "a rain_type none of drizzle, streak, storm, fog-like"),
        ("rain_type_source", "guess", "a rain_type_source none of auto, manual"),
        ("rain_type_confidence", 7.5, "rain_type_confidence 7.5 is outside [0, 1]"),
        ("gps_lat", 47.37, "gps_lat kept, in a dataset made without --keep-gps"),
    ],
)
def test_a_label_outside_what_its_column_may_hold_is_caught(ds, column, value, said):
    path = ds / "manifests" / "samples.parquet"
    table = pd.read_parquet(path)
    table[column] = table[column].astype(object)
    table.loc[0, column] = value
    pq.write_table(pa.Table.from_pandas(table, preserve_index=False), path)
    [problem] = [p for p in verify(Dataset(ds), workers=1) if p.kind == "row-value"]
    assert problem.where == table.key[0] and said in problem.detail


@pytest.mark.parametrize(
    ("value", "said"),
    [
        (float("nan"), "feat_brightness nan"),
        (float("inf"), "feat_brightness inf"),
        (float("-inf"), "feat_brightness -inf"),
        (1e308, "feat_brightness 1e+308"),  # beyond FAR_BEYOND: no picture gives it
        (None, "feat_brightness None"),  # measured, says its features_version
    ],
)
def test_stored_features_that_are_no_measurement_are_caught(ds, value, said):
    rows = _rows(ds, "samples")
    rows[0]["feat_brightness"] = value
    _write_rows(ds, "samples", rows)
    [problem] = _problems(ds)
    assert (problem.kind, problem.where) == ("row-features", rows[0]["key"])
    assert problem.detail.startswith(f"{said}: no measurement")
    result = CliRunner().invoke(main, ["verify", str(ds), "--workers", "1"])
    assert result.exit_code == 1 and f"row-features: {rows[0]['key']}: {said}" in result.stderr


def test_unmeasured_captures_and_older_features_are_no_problem(ds):
    rows = _rows(ds, "samples")
    for row in rows[1:]:  # as an ingest with --no-tag leaves them
        row.update({name: None for name in row if name.startswith("feat_")}, features_version=None)
    # Features version 1 had no thin-line features; `tag` measures such a row again.
    rows[0].update(
        {name: None for name in rows[0] if name.startswith(("feat_thin_", "feat_ridge_"))},
        features_version="1",
    )
    _write_rows(ds, "samples", rows)
    assert _problems(ds) == []


@pytest.mark.parametrize("format", ["png", "jpeg", "mp4", "tiff"])
def test_a_format_its_member_is_not_is_caught_not_read_as_one(ds, format):
    # A row whose format names another kind of file than its member: once a KeyError,
    # looking for a PNG or JPEG header where none was read.
    rows = _rows(ds, "samples")
    if rows[0]["format"] == format:
        pytest.skip(f"the first capture is a {format} already")
    ext = rows[0]["members"][0]
    rows[0]["format"] = format
    _write_rows(ds, "samples", rows)
    [problem] = _problems(ds)
    assert (problem.kind, problem.where) == ("row-value", rows[0]["key"])
    assert problem.detail.startswith(f"format {format!r} is kept as .")
    assert problem.detail.endswith(f", not .{ext}")


def test_a_clean_capture_with_a_rain_type_is_caught(paired):
    path = paired / "manifests" / "samples.parquet"
    table = pd.read_parquet(path)
    table["rain_type"] = table["rain_type"].astype(object)
    table.loc[0, "rain_type"] = "storm"
    pq.write_table(pa.Table.from_pandas(table, preserve_index=False), path)
    [problem] = verify(Dataset(paired), workers=1)
    assert problem.kind == "row-value" and "a clean capture has rain_type 'storm'" in problem.detail


def test_a_missing_manifest_or_column_is_said_once(paired):
    synthetic = paired / "manifests" / "synthetic.parquet"
    kept = synthetic.read_bytes()
    synthetic.unlink()
    assert [(p.kind, p.where) for p in verify(Dataset(paired), workers=1)] == [
        ("manifest-missing", "manifests/synthetic.parquet")
    ]
    synthetic.write_bytes(kept)
    samples = paired / "manifests" / "samples.parquet"
    pq.write_table(pq.read_table(samples).drop_columns(["sha256"]), samples)
    [problem] = verify(Dataset(paired), workers=1)
    assert (problem.kind, problem.detail) == ("manifest-column", "has no sha256")


@pytest.mark.parametrize(
    ("name", "change", "said"),
    [
        ("samples", {"layer": None}, "no layer"),
        ("samples", {"height": None}, "no width or height"),
        ("samples", {"bytes": None}, "no bytes"),
        ("samples", {"kind": "video", "frames": None}, "no frames, which a video's row must"),
        ("synthetic", {"height": None}, "no width or height"),
        ("synthetic", {"recipe": None}, "no recipe"),
        ("synthetic", {"recipe": "pairs:median"}, "no frame_index or window_start or window_end"),
    ],
)
def test_a_null_where_the_format_requires_a_value_is_caught(paired, name, change, said):
    """Other readers refuse such a manifest; verify names each row."""
    rows = _rows(paired, name)
    _write_rows(paired, name, [{**rows[0], **change}, *rows[1:]])
    [problem] = [p for p in _problems(paired) if p.kind == "row-value"]
    assert problem.where == rows[0]["key"] and said in problem.detail


@pytest.mark.parametrize(
    ("name", "column"),
    [
        ("samples", "sha256"),
        ("synthetic", "rain_sha256"),
        ("synthetic", "gt_sha256"),
        ("synthetic", "job"),
    ],
)
def test_a_null_a_member_is_checked_against_is_said_once(paired, name, column):
    """Not again as a member whose bytes or <key>.json disagree with a null."""
    rows = _rows(paired, name)
    _write_rows(paired, name, [{**rows[0], column: None}, *rows[1:]])
    assert [(p.kind, p.where) for p in _problems(paired)] == [("row-value", rows[0]["key"])]


def test_a_row_naming_its_members_twice_is_said_once_and_each_member_checked_once(ds):
    rows = _rows(ds, "samples")
    damaged = {**rows[0], "members": rows[0]["members"] * 2, "sha256": "0" * 64}
    _write_rows(ds, "samples", [damaged, *rows[1:]])
    problems = [(p.kind, p.detail) for p in _problems(ds)]
    twice = ", ".join(rows[0]["members"])
    assert problems[0] == ("row-value", f"members names {twice} more than once")
    assert [kind for kind, _ in problems] == ["row-value", "member-sha256", "member-metadata"]


def test_problems_come_in_the_order_shards_are_listed_however_workers_finish(ds, monkeypatch):
    # Workers that finish in reverse order, which a pool of several may do.
    def reversed_map(pool, fn, units):
        return reversed([fn(unit) for unit in units])

    monkeypatch.setattr(WorkerPool, "map_unordered", reversed_map)
    shards = [row["shard"] for row in _rows(ds, "shards")]
    for shard in shards:
        with open(ds / shard, "r+b") as handle:
            handle.seek(600)  # inside the first member
            byte = handle.read(1)
            handle.seek(600)
            handle.write(bytes([byte[0] ^ 1]))
    found = [p.where for p in _problems(ds) if p.kind == "shard-sha256"]
    assert len(shards) > 1 and found == shards


def test_a_time_beyond_what_python_holds_is_caught(ds):
    path = ds / "manifests" / "samples.parquet"
    table = pq.read_table(path)
    index = table.schema.get_field_index("captured_at")
    stamps = pa.array([-(2**62)] + [None] * (len(table) - 1), pa.int64())
    pq.write_table(table.set_column(index, "captured_at", stamps.cast(pa.timestamp("us"))), path)
    [problem] = _problems(ds)
    assert (problem.kind, problem.where) == ("row-value", table["key"][0].as_py())
    assert problem.detail == "a captured_at outside the years 1 to 9999"


def _forge(ds, shard: str, headers: dict[str, str] | None = None, junk: bool = False) -> str:
    """Write `shard` again, its first member with PAX `headers`, or (`junk`) stored
    twice, junk first; update its sha256 and size in shards.parquet. Its first member."""
    with tarfile.open(ds / shard) as tar:
        members = [(info.name, tar.extractfile(info).read()) for info in tar]
    if junk:
        members.insert(0, (members[0][0], b"not the capture"))
    with tarfile.open(ds / shard, "w", format=tarfile.PAX_FORMAT) as tar:
        for index, (name, data) in enumerate(members):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.pax_headers = headers if headers and index == 0 else {}
            tar.addfile(info, io.BytesIO(data))
    data = (ds / shard).read_bytes()
    update = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    rows = _rows(ds, "shards")
    _write_rows(ds, "shards", [{**r, **update} if r["shard"] == shard else r for r in rows])
    return members[0][0]


def test_a_member_stored_twice_is_caught(paired):
    """Readers take the last copy, `tar x` and first-match readers the first, and
    webdataset refuses the shard."""
    shard = _rows(paired, "samples")[0]["shard"]
    member = _forge(paired, shard, junk=True)
    [problem] = _problems(paired)
    assert (problem.kind, problem.where) == ("member-repeated", f"{shard}:{member}")
    assert "stored 2 times" in problem.detail


@pytest.mark.parametrize(
    "headers",
    [
        {"size": str(2**64)},  # no seek reaches it
        {  # GNU sparse 1.0, whose data is then no sparse map
            "GNU.sparse.major": "1",
            "GNU.sparse.minor": "0",
            "GNU.sparse.name": "x.jpg",
            "GNU.sparse.realsize": "999",
        },
    ],
)
def test_a_tar_header_tarfile_cannot_use_is_a_corrupt_shard(paired, headers):
    shard = _rows(paired, "samples")[0]["shard"]
    _forge(paired, shard, headers)
    [problem] = _problems(paired)
    assert (problem.kind, problem.where) == ("shard-corrupt", shard)


def _video(av, frames: int) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as output:
        stream = output.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        for _ in range(frames):
            picture = np.zeros((16, 16, 3), dtype=np.uint8)
            output.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        output.mux(stream.encode())
    return buffer.getvalue()


def test_a_shard_cut_short_in_its_video_is_said_once(tmp_path):
    """As shard-corrupt, not again as a video that cannot be read to its end."""
    av = pytest.importorskip("av", reason="videos need rainbench[video]")
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "rain.mp4").write_bytes(_video(av, 24))
    ds = tmp_path / "ds"
    ingest([tmp_path / "raw"], ds, IngestOptions(workers=1))
    [shard] = [row["shard"] for row in _rows(ds, "shards")]
    with tarfile.open(ds / shard) as tar:
        video = tar.getmembers()[0]
    data = (ds / shard).read_bytes()
    (ds / shard).write_bytes(data[: video.offset_data + video.size // 2])
    assert [(p.kind, p.where) for p in _problems(ds)] == [("shard-corrupt", shard)]


def test_a_shards_videos_are_found_by_name_without_a_scan_per_video(tmp_path, monkeypatch):
    # tarfile's getmember walks the member list for each name: N² for a shard of videos.
    av = pytest.importorskip("av", reason="videos need rainbench[video]")
    shard = "shards/train/train-000000.tar"
    one, two = _video(av, 1), _video(av, 2)
    with ShardWriter(tmp_path / shard) as writer:
        for index in range(30):
            writer.add(f"{index:02d}.mp4", one)
        writer.add("00.mp4", two)  # a name twice: the last one counts, as in tarfile
        writer.commit()
    listed = []
    members = tarfile.TarFile.getmembers
    monkeypatch.setattr(
        tarfile.TarFile, "getmembers", lambda tar: listed.append(tar) or members(tar)
    )
    videos = [(f"{index:02d}.mp4", 1, None) for index in range(30)] + [("30.mp4", 1, None)]
    problems = check_videos((tmp_path.as_posix(), shard, videos))
    assert [(p.kind, p.where, p.detail) for p in problems] == [
        ("video-frames", f"{shard}:00.mp4", "2 frames, the manifest says 1")
    ]
    assert len(listed) == 1
