"""Every reader against every hostile dataset (conftest.py): each ends in a one-line
error, a recorded problem or a failed row, never a traceback, and writes nothing
outside the dataset and results folders it was given."""

import json
import os
import shutil
import stat
import tarfile
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from rainbench.analysis.intrinsic_dim import from_synthetic_split
from rainbench.cli import main
from rainbench.data import RainDataset
from rainbench.shards.dataset import DatasetError

PAIRED = "syn-drizzle"
READERS = ("verify", "stats", "eval", "tag", "synth", "loader", "intrinsic-dim", "score")
# A broken samples.parquet: what reads it stops at once; what does not, reads on.
_MANIFEST = {reader: "error" for reader in READERS} | {"intrinsic-dim": "ok", "score": "ok"}
# A rainy capture's member or shard that cannot be read: a failed row where there are rows.
_MEMBER = {
    "stats": "ok",
    "eval": "failed",
    "tag": "failed",
    "synth": "ok",
    "loader": "error",
    "intrinsic-dim": "ok",
    "score": "ok",
}
EXPECTED = {
    "traversal-split": _MANIFEST,
    "traversal-key": _MANIFEST,
    "dotdot-shard": _MANIFEST,
    "absolute-shard": _MANIFEST,
    "not-parquet": _MANIFEST,
    "wrong-schema": _MANIFEST,
    "unknown-format": _MANIFEST,
    "linked-shard": {**_MEMBER, "verify": "problem:shard-outside"},
    "sparse-member": {**_MEMBER, "verify": "problem:member-type"},
    "symlink-member": {**_MEMBER, "verify": "problem:member-type"},
    "hardlink-member": {**_MEMBER, "verify": "problem:member-type"},
    "truncated-tar": {**_MEMBER, "verify": "problem:shard-corrupt"},
    # Hashes updated: verify finds the header's size is not the row's (and a capture's
    # <key>.json still naming the bytes it replaced); the readers refuse them before
    # decoding.
    "bomb-pair": {
        **dict.fromkeys(("stats", "tag", "synth"), "ok"),
        "verify": "problem:member-header",
        **dict.fromkeys(("eval", "score"), "failed"),
        **dict.fromkeys(("loader", "intrinsic-dim"), "error"),
    },
    "bomb-capture": {
        **_MEMBER,
        "verify": "problem:member-header,member-metadata",
        "score": "failed",
    },
    # tag reads dataset.json for the dataset's own fitted tagger.
    "not-json": {
        **dict.fromkeys(("verify", "stats", "eval", "tag", "synth", "intrinsic-dim"), "error"),
        **dict.fromkeys(("loader", "score"), "ok"),
    },
    "fifo-shard": {**_MEMBER, "verify": "problem:shard-corrupt"},
    "fifo-manifest": _MANIFEST,
    "killed-first-ingest": {
        **{reader: "error" for reader in READERS},
        "verify": "problem:ingest-pending",
        "score": "ok",
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


def _run(reader: str, ds: Path, results: Path, pred: Path) -> str:
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
            "--results", str(results), "--metrics", "psnr_y", "--crops", "2", "--json",
        ],
        "tag": ["tag", str(ds), *workers, "--json"],
        "synth": ["synth", str(ds), "--recipes", "streak", "--max-side", "64", *workers, "--json"],
        "score": [
            "score", "--pred", str(pred), "--ref", str(pred), "--metrics", "psnr_y",
            "--out", str(results / "scores.parquet"), "--no-cache", *workers, "--json",
        ],
    }[reader]  # fmt: skip
    return _cli(args, reader)


@pytest.mark.parametrize("reader", READERS)
def test_a_reader_refuses_or_records_and_writes_nothing_outside(
    hostile, reader, hostile_corpus, tmp_path
):
    # Four folders deep, so a name that climbs out of the results lands in tmp_path.
    base = tmp_path / "l1" / "l2" / "l3" / "l4"
    ds, results, pred = base / "ds", base / "results", base / "pred"
    shutil.copytree(hostile_corpus[hostile], ds, symlinks=True, copy_function=_copy)
    _pictures(ds, pred)
    before = _files(tmp_path)

    outcome = _run(reader, ds, results, pred)

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
