"""Every reader against every hostile dataset (conftest.py): each ends in a one-line
error, a recorded problem or a failed row, never a traceback, and writes nothing
outside the dataset and results folders it was given."""

import io
import json
import os
import shutil
import stat
import tarfile
from hashlib import sha256
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from rainbench.analysis.intrinsic_dim import from_synthetic_split
from rainbench.cli import main
from rainbench.data import RainDataset
from rainbench.demo.captures import CaptureSpec, render_scene, write_capture
from rainbench.ingest import IngestOptions, ingest
from rainbench.shards.dataset import DatasetError
from rainbench.synth.video import render_rain_video
from rainbench.tagging.tagger import load_tagger

PAIRED = "syn-drizzle"
READERS = (
    "verify",
    "stats",
    "eval",
    "tag",
    "synth",
    "loader",
    "intrinsic-dim",
    "score",
    "label",
    "ingest",  # a new capture, into the hostile dataset
    "import-paired",  # a public paired set, into the hostile dataset
)
# A broken samples.parquet: what reads it stops at once; what does not, reads on.
_MANIFEST = {reader: "error" for reader in READERS} | dict.fromkeys(
    ("intrinsic-dim", "score", "import-paired"), "ok"
)
# A manifest's shard path that leads out of the dataset: shards.parquet names it too.
_SHARD_PATH = {**_MANIFEST, "import-paired": "error"}
# A rainy capture's member or shard that cannot be read: a failed row where there are
# rows; what only adds to the dataset reads no member.
_MEMBER = {
    "stats": "ok",
    "eval": "failed",
    "tag": "failed",
    "synth": "ok",
    "loader": "error",
    "intrinsic-dim": "ok",
    "score": "ok",
    "label": "failed",
    "ingest": "ok",
    "import-paired": "ok",
}
EXPECTED = {
    "traversal-split": _MANIFEST,
    "traversal-key": _MANIFEST,
    "dotdot-shard": _SHARD_PATH,
    "absolute-shard": _SHARD_PATH,
    "url-shard": _SHARD_PATH,
    "not-parquet": _MANIFEST,
    "wrong-schema": _MANIFEST,
    "unknown-format": _MANIFEST,
    "linked-shard": {**_MEMBER, "verify": "problem:shard-outside"},
    "sparse-member": {**_MEMBER, "verify": "problem:member-type"},
    "symlink-member": {**_MEMBER, "verify": "problem:member-type"},
    "hardlink-member": {**_MEMBER, "verify": "problem:member-type"},
    "device-member": {**_MEMBER, "verify": "problem:member-type"},
    "fifo-member": {**_MEMBER, "verify": "problem:member-type"},
    "truncated-tar": {**_MEMBER, "verify": "problem:shard-corrupt"},
    # Hashes updated: verify finds the header's size is not the row's (and a capture's
    # <key>.json still naming the bytes it replaced); the readers refuse them before
    # decoding.
    "bomb-pair": {
        **dict.fromkeys(("stats", "tag", "synth", "label", "ingest", "import-paired"), "ok"),
        "verify": "problem:member-header",
        **dict.fromkeys(("eval", "score"), "failed"),
        **dict.fromkeys(("loader", "intrinsic-dim"), "error"),
    },
    "bomb-capture": {
        **_MEMBER,
        "verify": "problem:member-header,member-metadata",
        "score": "failed",
    },
    # tag reads dataset.json for the dataset's own fitted tagger; the loader reads it as
    # every command does.
    "not-json": {**{reader: "error" for reader in READERS}, "score": "ok"},
    "fifo-shard": {**_MEMBER, "verify": "problem:shard-corrupt"},
    "fifo-manifest": _MANIFEST,
    # An ingest into it finishes the one killed.
    "killed-first-ingest": {
        **{reader: "error" for reader in READERS},
        "verify": "problem:ingest-pending",
        **dict.fromkeys(("score", "ingest", "import-paired"), "ok"),
    },
}


def test_every_hostile_dataset_has_expectations(hostile_corpus):
    assert set(EXPECTED) == set(hostile_corpus)
    assert all(set(outcomes) == set(READERS) for outcomes in EXPECTED.values())


def _files(root: Path) -> dict[str, tuple[int, int]]:
    return {
        path.relative_to(root).as_posix(): (path.lstat().st_size, path.lstat().st_mtime_ns)
        for path in root.rglob("*")
        if not path.is_dir() or path.is_symlink()
    }


def _copy(source: str, target: str) -> None:
    """As copytree's own copy, but a FIFO is made again instead of read."""
    if stat.S_ISFIFO(os.lstat(source).st_mode):
        os.mkfifo(target)
    else:
        shutil.copy2(source, target)


def _one_line_error(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: "), (
        result.stderr
    )
    return "error"


def _cli(args: list[str], reader: str) -> str:
    result = CliRunner().invoke(main, args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback: the test fails showing it
    if reader == "verify" and result.stdout.startswith("["):
        kinds = sorted({problem["kind"] for problem in json.loads(result.stdout)})
        assert result.exit_code == (1 if kinds else 0)
        return "problem:" + ",".join(kinds) if kinds else "ok"
    if result.exit_code != 0:
        return _one_line_error(result)
    summary = json.loads(result.stdout)
    failed = {
        "eval": lambda: any(report["failed"] for report in summary),
        "tag": lambda: summary["unmeasurable"],
        "synth": lambda: summary["failed"],
        "score": lambda: summary["errors"],
        "stats": lambda: False,
        "label": lambda: summary["unreadable"],
        "ingest": lambda: summary["rejected"],
        "import-paired": lambda: summary["failed"] or summary["problems"],
    }[reader]()
    return "failed" if failed else "ok"


def _pictures(ds: Path, out: Path) -> None:
    """The picture members of every shard, as `tar x` would leave them (regular files
    only, flat names): what `rainbench score` is given."""
    out.mkdir()
    for shard in sorted(ds.glob("shards/**/*.tar")):
        if not shard.is_file():  # the FIFO: `tar x` would wait on it
            continue
        try:
            with tarfile.open(shard) as tar:
                for info in tar:
                    if info.isreg() and not info.issparse() and info.name.endswith(("jpg", "png")):
                        name = info.name.replace("/", "_").lstrip("._")
                        (out / name).write_bytes(tar.extractfile(info).read())
        except (tarfile.TarError, OSError):
            continue  # the truncated shard: what came out before the cut


def _library(call) -> str:
    try:
        call()
    except DatasetError as error:
        assert "\n" not in str(error), str(error)
        return "error"
    return "ok"


def _read_loader(ds: Path) -> None:
    list(RainDataset(ds, crop=32, shuffle=False))
    list(RainDataset(ds, mode="paired", paired_split=PAIRED, crop=32, shuffle=False))


@pytest.fixture(scope="session")
def sources(tmp_path_factory) -> Path:
    """What the writers add to a hostile dataset: a new capture (raw/) and a public paired
    set of one pair (rain100/)."""
    root = tmp_path_factory.mktemp("sources")
    write_capture(root / "raw", CaptureSpec("new.jpg", 64, 48, seed=20))
    for name, seed in (("rain-1.png", 21), ("norain-1.png", 22)):
        write_capture(root / "rain100", CaptureSpec(name, 64, 48, fmt="png", seed=seed))
    return root


def _run(reader: str, ds: Path, results: Path, pred: Path, sources: Path | None = None) -> str:
    if reader == "loader":
        return _library(lambda: _read_loader(ds))
    if reader == "intrinsic-dim":
        return _library(lambda: list(from_synthetic_split(ds, PAIRED)))
    workers = ["--workers", "1"]
    args = {
        "verify": ["verify", str(ds), *workers, "--json"],
        "stats": ["stats", str(ds), "--json"],
        "eval": [
            "eval", "--model", "identity", "--dataset", str(ds), "--split", "all",
            # piqe: real splits too are derained (a split none of --metrics applies to is not).
            "--results", str(results), "--metrics", "psnr_y,piqe", "--crops", "2", "--json",
        ],
        "tag": ["tag", str(ds), *workers, "--json"],
        # The page goes beside the results: a folder the reader was given.
        "label": ["label", str(ds), "--out", str(results / "labels.html"), *workers, "--json"],
        "synth": ["synth", str(ds), "--recipes", "streak", "--max-side", "64", *workers, "--json"],
        "score": [
            "score", "--pred", str(pred), "--ref", str(pred), "--metrics", "psnr_y",
            "--out", str(results / "scores.parquet"), "--no-cache", *workers, "--json",
        ],
    }  # fmt: skip
    if sources is not None:  # what the writers add to the dataset
        args |= {
            "ingest": ["ingest", str(sources / "raw"), "--out", str(ds), *workers, "--json"],
            "import-paired": [
                "import-paired", str(sources / "rain100"), str(ds), "--layout", "rain100",
                "--name", "rain100-x", *workers, "--json",
            ],
        }  # fmt: skip
    return _cli(args[reader], reader)


@pytest.mark.parametrize("reader", READERS)
def test_a_reader_refuses_or_records_and_writes_nothing_outside(
    hostile, reader, hostile_corpus, sources, tmp_path
):
    # Four folders deep, so a name that climbs out of the results lands in tmp_path.
    base = tmp_path / "l1" / "l2" / "l3" / "l4"
    ds, results, pred = base / "ds", base / "results", base / "pred"
    shutil.copytree(hostile_corpus[hostile], ds, symlinks=True, copy_function=_copy)
    _pictures(ds, pred)
    before = _files(tmp_path)

    outcome = _run(reader, ds, results, pred, sources)

    created = {
        name: stat
        for name, stat in _files(tmp_path).items()
        if before.get(name) != stat
        and not name.startswith(("l1/l2/l3/l4/ds/", "l1/l2/l3/l4/results/"))
    }
    assert not created, f"{reader} wrote outside its folders: {sorted(created)}"
    assert outcome == EXPECTED[hostile][reader]


def test_eval_records_the_unreadable_image_and_scores_the_rest(hostile_corpus, tmp_path):
    ds, results = tmp_path / "ds", tmp_path / "results"
    shutil.copytree(hostile_corpus["symlink-member"], ds, symlinks=True)
    assert _run("eval", ds, results, tmp_path) == "failed"
    table = pd.read_parquet(results / "identity" / "good" / "test.parquet")
    assert sorted(table.status) == ["failed", "ok"]
    [error] = table.loc[table.status == "failed", "error"]
    assert error.startswith("unreadable: ") and "symbolic link" in error
    assert os.path.exists(results / "identity" / "good" / f"{PAIRED}.parquet")


def _null_layer(table: pa.Table) -> pa.Table:
    rows = table.to_pylist()
    return pa.Table.from_pylist([{**rows[0], "layer": None}, *rows[1:]], schema=table.schema)


def _null_recipe(table: pa.Table) -> pa.Table:
    index = table.schema.get_field_index("recipe")
    return table.set_column(index, "recipe", pa.nulls(len(table), pa.string()))


def _time_beyond_python(table: pa.Table) -> pa.Table:
    """A captured_at Arrow holds and a Python datetime cannot (-2**62 µs)."""
    index = table.schema.get_field_index("captured_at")
    stamps = pa.array([-(2**62)] + [None] * (len(table) - 1), pa.int64())
    return table.set_column(index, "captured_at", stamps.cast(pa.timestamp("us")))


# A row without a value its column requires, or with one Python cannot hold: verify
# names the row; every reader of that manifest stops in one line; the rest read on.
_ROW_FAULTS = {
    "null-layer": ("samples", _null_layer),
    "null-recipe": ("synthetic", _null_recipe),
    "time-beyond-python": ("samples", _time_beyond_python),
}
_READS = {
    "samples": {"stats", "eval", "tag", "synth", "loader"},
    "synthetic": {"stats", "eval", "synth", "loader", "intrinsic-dim"},
}


@pytest.mark.parametrize("fault", sorted(_ROW_FAULTS))
@pytest.mark.parametrize("reader", ["verify", *sorted(_READS["samples"] | _READS["synthetic"])])
def test_a_row_fault_is_reported_or_refused_in_one_line(fault, reader, hostile_corpus, tmp_path):
    good = next(iter(hostile_corpus.values())).parents[6] / "good"  # conftest.py's layout
    base = tmp_path / "l1" / "l2" / "l3" / "l4"
    ds = shutil.copytree(good, base / "ds")
    name, edit = _ROW_FAULTS[fault]
    path = ds / "manifests" / f"{name}.parquet"
    pq.write_table(edit(pq.read_table(path)), path)

    outcome = _run(reader, ds, base / "results", base / "pred")

    if reader == "verify":
        assert outcome == "problem:row-value"
    else:
        assert outcome == ("error" if reader in _READS[name] else "ok")


# -- what a dataset's own small files hold: dataset.json, a fitted tagger, its folders ----------


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Path:
    """A rainy and a clean capture, their features cleared so `tag` measures them."""

    root = tmp_path_factory.mktemp("plain")
    write_capture(root / "rainy", CaptureSpec("rain.jpg", 64, 48, seed=1))
    write_capture(root / "clean", CaptureSpec("clean.jpg", 64, 48, seed=2))
    ds = root / "ds"
    test = {"train": 0.0, "val": 0.0, "test": 1.0}
    ingest([root / "rainy"], ds, IngestOptions(workers=1, split=test))
    ingest([root / "clean"], ds, IngestOptions(workers=1, layer="clean", split=test))
    table = pd.read_parquet(ds / "manifests" / "samples.parquet").assign(features_version=None)
    table.to_parquet(ds / "manifests" / "samples.parquet", index=False)
    return ds


def _shipped_edited(edit) -> bytes:

    data = json.loads(json.dumps(load_tagger().to_json()))
    edit(data)
    return json.dumps({**data, "version": "5-fit-1-x"}).encode()


def _every(name: str, value):
    """Every number of the shipped tagger's `name` (a list or a matrix) set to `value`."""

    def edit(data: dict) -> None:
        data[name] = np.full(np.shape(data[name]), value, dtype=object).tolist()

    return edit


def _fit(report):
    def edit(data: dict) -> None:
        data["calibration"]["fit"] = report

    return edit


FITTED = {
    "text-for-scale": lambda: _shipped_edited(_every("scale", "x")),
    "text-for-bias": lambda: _shipped_edited(_every("bias", "x")),
    "temperature-0": lambda: _shipped_edited(lambda data: data.update(temperature=0.0)),
    "scale-0": lambda: _shipped_edited(_every("scale", 0.0)),
    "weights-infinite": lambda: _shipped_edited(_every("weights", float("inf"))),
    "unknown-transform": lambda: _shipped_edited(_every("transforms", "cube")),
    "threshold-nan": lambda: _shipped_edited(lambda data: data.update(flag_threshold=float("nan"))),
    "weights-of-another-shape": lambda: _shipped_edited(lambda data: data.update(weights=[[1.0]])),
    # The report of the fit, which tag-eval adds up: counts that are not numbers.
    "fit-labels-text": lambda: _shipped_edited(_fit({"labels": {"drizzle": "12"}})),
    "fit-labels-null": lambda: _shipped_edited(_fit({"labels": {"drizzle": None}})),
    "fit-not-an-object": lambda: _shipped_edited(_fit(["labels"])),
    "nested-deep": lambda: b"[" * 100_000 + b"]" * 100_000,
    "two-mib": lambda: b'{"pad": "' + b"x" * (2 << 20) + b'"}',
}


@pytest.mark.parametrize("fitted", sorted(FITTED))
def test_a_hostile_fitted_tagger_stops_tag_and_tag_eval_in_one_line(plain, fitted, tmp_path):
    ds = shutil.copytree(plain, tmp_path / "ds")
    (ds / "taggers").mkdir()
    (ds / "taggers" / "tagger-fit-1.json").write_bytes(FITTED[fitted]())
    info = json.loads((ds / "dataset.json").read_text())
    info["tagger"] = {"version": "5-fit-1-x", "path": "taggers/tagger-fit-1.json"}
    (ds / "dataset.json").write_text(json.dumps(info))
    before = (ds / "manifests" / "samples.parquet").read_bytes()
    result = CliRunner().invoke(main, ["tag", str(ds), "--workers", "1"])
    assert _one_line_error(result) and "tagger-fit-1.json: cannot read" in result.stderr
    assert (ds / "manifests" / "samples.parquet").read_bytes() == before
    evaluated = CliRunner().invoke(main, ["tag-eval", str(ds)])
    assert _one_line_error(evaluated) and "tagger-fit-1.json: cannot read" in evaluated.stderr
    # An ingest into the dataset tags with its fitted tagger: it stops before storing.
    write_capture(tmp_path / "new", CaptureSpec("new.jpg", 64, 48, seed=3))
    ingested = CliRunner().invoke(main, ["ingest", str(tmp_path / "new"), "-o", str(ds), "-j", "1"])
    assert _one_line_error(ingested) and "tagger-fit-1.json: cannot read" in ingested.stderr
    assert (ds / "manifests" / "samples.parquet").read_bytes() == before
    checked = CliRunner().invoke(main, ["verify", str(ds), "--workers", "1"])
    assert checked.exit_code == 1
    assert f"tagger: dataset.json: {ds}/taggers/tagger-fit-1.json: cannot read" in checked.stderr


@pytest.mark.parametrize("value", [1e308, -1e308])
def test_a_stored_feature_no_picture_gives_is_measured_again_not_judged(plain, value, tmp_path):
    ds = shutil.copytree(plain, tmp_path / "ds")
    assert CliRunner().invoke(main, ["tag", str(ds), "--workers", "1"]).exit_code == 0
    path = ds / "manifests" / "samples.parquet"
    table = pd.read_parquet(path)
    measured = table.loc[0, "feat_brightness"]
    table.loc[0, "feat_brightness"] = value  # measured, so tag would read it as it is
    table.to_parquet(path, index=False)

    result = CliRunner().invoke(main, ["tag", str(ds), "--workers", "1", "--json"])

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["unusable"] == [table.loc[0, "key"]]
    assert pd.read_parquet(path).loc[0, "feat_brightness"] == measured


INFOS = {
    "no-counts": b"{}",
    "nested-deep": b"[" * 100_000 + b"]" * 100_000,
    "past-the-cap": b'{"counts": {}, "runs": [], "pad": "' + b"x" * (32 << 20) + b'"}',
    "split-of-zeros": b'{"counts": {}, "runs": [], "options": {"split": {"train": 0}}}',
}


@pytest.mark.parametrize("reader", ["verify", "stats", "tag", "synth"])
@pytest.mark.parametrize("content", sorted(INFOS))
def test_a_dataset_json_of_the_wrong_shape_stops_readers_and_writers_in_one_line(
    plain, content, reader, tmp_path
):
    ds = shutil.copytree(plain, tmp_path / "ds")
    (ds / "dataset.json").write_bytes(INFOS[content])
    assert _run(reader, ds, tmp_path / "results", tmp_path) == "error"


@pytest.mark.parametrize("reader", ["verify", "stats", "tag", "synth", "loader"])
@pytest.mark.parametrize("name", ["manifests", "manifests/samples.parquet", "dataset.json"])
def test_a_dataset_file_linked_outside_is_neither_read_nor_written(plain, name, reader, tmp_path):
    base = tmp_path / "l1" / "l2"
    ds = shutil.copytree(plain, base / "ds")
    outside = tmp_path / "elsewhere"
    (ds / name).rename(outside)
    (ds / name).symlink_to(outside)
    before = _files(tmp_path)
    if reader == "loader":
        assert _library(lambda: list(RainDataset(ds, crop=32, shuffle=False))) == "error"
    else:
        assert _run(reader, ds, base / "results", base / "pred") == "error"
    changed = {name for name, stat in _files(tmp_path).items() if before.get(name) != stat}
    assert not {name for name in changed if not name.startswith("l1/l2/")}


# PAX records tarfile takes as given, forged on a rainy capture's member: a negative
# size, a GNU sparse 1.0 member whose data is no sparse map, a size no seek can pass.
FORGED_HEADERS = {
    "negative-size": {"size": "-5"},
    "sparse-1.0-without-a-map": {
        "GNU.sparse.major": "1",
        "GNU.sparse.minor": "0",
        "GNU.sparse.realsize": "999",
    },
    "size-past-any-offset": {"size": str(2**64)},
}


@pytest.mark.parametrize("records", FORGED_HEADERS.values(), ids=FORGED_HEADERS)
@pytest.mark.parametrize("reader", ["eval", "tag", "loader"])
def test_a_forged_member_header_is_a_failed_row_or_one_line(
    hostile_corpus, reader, records, tmp_path
):
    # The sparse member of sparse-member (never inflated here) written again as 512
    # bytes under the forged records: the shard's other members stay as they were.
    ds, results = tmp_path / "ds", tmp_path / "results"
    shutil.copytree(hostile_corpus["sparse-member"], ds)
    samples = pd.read_parquet(ds / "manifests" / "samples.parquet")
    row = samples[(samples.layer == "rainy") & (samples.format == "jpeg")].iloc[0]
    forged, shard = f"{row.key}.jpg", ds / row.shard
    with tarfile.open(shard) as tar:
        members = [
            (i.name, bytes(512) if i.name == forged else tar.extractfile(i).read()) for i in tar
        ]
    with tarfile.open(shard, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.pax_headers = records if name == forged else {}
            tar.addfile(info, io.BytesIO(data))
    assert _run(reader, ds, results, tmp_path) == _MEMBER[reader]


# -- `rainbench pairs` on a burst one frame of which a stranger replaced ------------------------


@pytest.fixture(scope="module")
def burst(tmp_path_factory, write_burst) -> Path:
    """A dataset of one burst of eight stills: what `pairs` pairs (the corpus has none)."""
    root = tmp_path_factory.mktemp("burst")
    rendered = render_rain_video(render_scene(96, 64, 5), "drizzle", 8, seed=2, shake=0.0)
    write_burst(root / "raw", rendered.frames)
    test = {"train": 0.0, "val": 0.0, "test": 1.0}
    ingest([root / "raw"], root / "ds", IngestOptions(workers=1, split=test))
    return root / "ds"


def _symlink(name: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    return info, None


def _regular(data: bytes):
    def member(name: str) -> tuple[tarfile.TarInfo, bytes]:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        return info, data

    return member


# Each the reason a frame is refused, which `pairs` records beside its sequence.
BURST_FRAMES = {
    "symlink": (_symlink, "a symbolic link, not a regular file; refused"),
    # Other bytes than the manifest's are refused before they are decoded.
    "not-a-jpeg": (_regular(b"\xff\xd8 not a jpeg"), "its bytes are not the manifest's"),
}


@pytest.mark.parametrize("frame", sorted(BURST_FRAMES))
def test_pairs_records_a_frame_it_cannot_read_and_stops_in_one_line(burst, frame, tmp_path):
    ds = shutil.copytree(burst, tmp_path / "ds")
    samples = pd.read_parquet(ds / "manifests" / "samples.parquet").sort_values("key")
    row = samples.iloc[2]
    replaced, (make, reason) = f"{row.key}.jpg", BURST_FRAMES[frame]
    with tarfile.open(ds / row.shard) as tar:
        members = [(i.name, tar.extractfile(i).read()) for i in tar]
    with tarfile.open(ds / row.shard, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info, content = make(name) if name == replaced else _regular(data)(name)
            tar.addfile(info, None if content is None else io.BytesIO(content))
    result = CliRunner().invoke(main, ["pairs", str(ds), "--workers", "1", "--json"])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert _one_line_error(result) and "no pair stored" in result.stderr
    [(_, failure)] = json.loads(result.stdout)["failed"]
    assert failure.startswith(f"{row.shard}:{replaced}: ") and reason in failure


# Names a tar member may have that no reader must take as a path, nor as a capture's:
# verify reports such a member; readers pass it by.
STRAY_NAMES = {
    "dotdot": "../../../../../evil.jpg",
    "absolute": "/tmp/evil.jpg",
    "four-kb": "a" * 4096 + ".jpg",
    "nul": "evil\x00.jpg",
    # NFD of a name beside a capture's member ("é" + the key): the same to a Mac's eye.
    "normalisation-twin": "e\u0301{member}",
}


@pytest.mark.parametrize("stray", sorted(STRAY_NAMES))
def test_a_stray_member_of_any_name_is_reported_and_written_nowhere(
    hostile_corpus, stray, tmp_path
):
    good = next(iter(hostile_corpus.values())).parents[6] / "good"  # conftest.py's layout
    base = tmp_path / "l1" / "l2" / "l3" / "l4"
    ds = shutil.copytree(good, base / "ds")
    row = pd.read_parquet(ds / "manifests" / "samples.parquet").iloc[0]
    name = STRAY_NAMES[stray].format(member=f"{row.key}.{row.format.replace('jpeg', 'jpg')}")
    with tarfile.open(ds / row.shard, "a", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = 5
        tar.addfile(info, io.BytesIO(b"evil!"))
    shards = pd.read_parquet(ds / "manifests" / "shards.parquet")
    data = (ds / row.shard).read_bytes()
    shards.loc[shards.shard == row.shard, ["sha256", "bytes"]] = [
        sha256(data).hexdigest(),
        len(data),
    ]
    shards.to_parquet(ds / "manifests" / "shards.parquet", index=False)
    before = _files(tmp_path)

    checked = CliRunner().invoke(main, ["verify", str(ds), "--workers", "1", "--json"])
    assert _run("loader", ds, base / "results", base / "pred") == "ok"

    assert checked.exit_code == 1
    [problem] = json.loads(checked.stdout)
    assert problem["kind"] == "stray-member" and problem["where"].startswith(f"{row.shard}:")
    assert {name for name, stat in _files(tmp_path).items() if before.get(name) != stat} == set()
