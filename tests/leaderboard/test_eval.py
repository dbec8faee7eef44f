"""`rainbench eval`: scores per image from the shards, failures per image, resume,
external commands and outputs computed elsewhere."""

import contextlib
import errno
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
from dataclasses import replace
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import rainbench
from rainbench.cli import leaderboard as leaderboard_cli
from rainbench.cli import main
from rainbench.demo.captures import sample_specs, write_capture
from rainbench.files import file_sha256
from rainbench.ingest import IngestOptions, ingest
from rainbench.leaderboard import eval as eval_module
from rainbench.leaderboard.eval import EvalError, EvalSettings, Output, evaluate
from rainbench.leaderboard.html import render_html
from rainbench.leaderboard.markdown import render_markdown
from rainbench.leaderboard.results import LeaderboardError, load_results
from rainbench.leaderboard.sources import DerainerSource, FolderSource
from rainbench.metrics.fullref import psnr, psnr_y, ssim, ssim_y
from rainbench.metrics.registry import MetricError
from rainbench.models import registry
from rainbench.models.base import Derainer
from rainbench.models.external import CommandDerainer
from rainbench.models.registry import (
    DerainerError,
    DerainerSpec,
    create_derainer,
    list_derainers,
    register,
)
from rainbench.shards import manifest
from rainbench.shards.dataset import DatasetError
from rainbench.synth.build import SynthOptions, synthesize
from rainbench.synth.imports import import_paired

FULL_REFERENCE = ("psnr_y", "ssim_y", "psnr", "ssim")
FAST = EvalSettings(metrics=(*FULL_REFERENCE, "piqe"), batch=2, crops=2)


@pytest.fixture(scope="module")
def _dataset(tmp_path_factory):
    """Rainy captures (split test) and clean ones rendered into syn-streak pairs."""
    root = tmp_path_factory.mktemp("eval")
    everything_test = {"train": 0.0, "val": 0.0, "test": 1.0}
    for spec in sample_specs(4, seed=2, size=(160, 120)):
        write_capture(root / "rainy", spec)
    for spec in sample_specs(3, seed=9, size=(160, 120)):
        write_capture(root / "clean", spec)
    ds = root / "ds"
    ingest([root / "rainy"], ds, IngestOptions(workers=1, split=everything_test))
    ingest([root / "clean"], ds, IngestOptions(workers=1, layer="clean", split=everything_test))
    synthesize(ds, SynthOptions(recipes=("streak",), workers=1))
    return ds


@pytest.fixture
def ds(tmp_path, _dataset):
    return shutil.copytree(_dataset, tmp_path / "ds")


def _source(name: str) -> DerainerSource:
    return DerainerSource(create_derainer(name), "cpu", None, 32)


def _table(results, model, split):
    return pd.read_parquet(results / model / "ds" / f"{split}.parquet").set_index("key")


def test_identity_reproduces_the_input_against_ground_truth_scores(tmp_path, ds):
    results = tmp_path / "res"
    reports = evaluate(_source("identity"), ds, "syn-streak", results, FAST)
    assert [(r.scored, r.failed) for r in reports] == [(3, 0)]
    table = _table(results, "identity", "syn-streak")
    pairs = eval_module._SplitRun(
        _source("identity"), eval_module.Dataset(ds), "ds", "syn-streak", "synthetic",
        results, FAST, None,
    )  # fmt: skip
    for item in pairs._items(pairs._manifest_rows()):
        row = table.loc[item.key]
        assert row.status == "ok" and row.rain_type == "streak"
        for name, metric in (
            ("psnr_y", psnr_y),
            ("ssim_y", ssim_y),
            ("psnr", psnr),
            ("ssim", ssim),
        ):
            assert row[name] == metric(item.rain, item.gt), name
    info = json.loads((results / "identity" / "ds" / "syn-streak.json").read_text())
    assert info["finished_at"] and info["images"] == {"ok": 3, "failed": 0}
    assert info["metrics"] == [*FULL_REFERENCE, "piqe"] and info["kind"] == "synthetic"
    assert len(info["dataset"]["manifest_sha256"]) == 64
    assert len(info["dataset"]["split_sha256"]) == 64
    assert len(list((results / "identity" / "ds" / "syn-streak.crops").glob("*.png"))) == 2
    assert len(list((results / "_reference" / "ds" / "syn-streak.crops").glob("*.gt.png"))) == 2


def test_tiled_evaluation_matches_whole_images_for_identity(tmp_path, ds):
    whole = evaluate(_source("identity"), ds, "syn-streak", tmp_path / "a", FAST)
    tiled_source = DerainerSource(create_derainer("identity"), "cpu", 64, 16)
    tiled = evaluate(tiled_source, ds, "syn-streak", tmp_path / "b", FAST)
    assert whole[0].scored == tiled[0].scored == 3
    pd.testing.assert_frame_equal(
        _table(tmp_path / "a", "identity", "syn-streak")[list(FULL_REFERENCE)],
        _table(tmp_path / "b", "identity", "syn-streak")[list(FULL_REFERENCE)],
    )


@pytest.mark.parametrize("overlap", [64, 100])
def test_tiles_that_cannot_be_laid_out_are_refused_before_any_image(tmp_path, ds, overlap):
    # Found only at the first image larger than a tile, every such image would fail, and
    # the run with the overlap corrected be refused as made with other tiles.
    settings = replace(FAST, tile=64, overlap=overlap)
    source = DerainerSource(create_derainer("identity"), "cpu", 64, overlap)
    with pytest.raises(EvalError, match=rf"^tiles need .*: --overlap {overlap} with --tile 64$"):
        evaluate(source, ds, "syn-streak", tmp_path / "res", settings)
    assert not (tmp_path / "res").exists()


def test_all_splits_and_real_ones_get_no_reference_metrics_only(tmp_path, ds):
    results = tmp_path / "res"
    reports = evaluate(_source("identity"), ds, "all", results, FAST)
    assert {r.split: r.kind for r in reports} == {"test": "real", "syn-streak": "synthetic"}
    real = _table(results, "identity", "test")
    assert len(real) == 4 and (real.status == "ok").all()
    assert "psnr_y" not in real.columns and real.piqe.notna().all()
    assert real.rain_type.notna().all()  # from the tagger, joined at eval time
    assert (real.s_per_mp >= 0).all() and real.peak_mem_mb.notna().all()


def _png(path, seed):
    pixels = np.random.default_rng(seed).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def test_imported_sets_are_scored_as_their_kind_of_paired_split(tmp_path, ds):
    for n in range(2):
        _png(tmp_path / "spa" / "rain" / f"{n:03d}.png", n)
        _png(tmp_path / "spa" / "gt" / f"{n:03d}gt.png", 10 + n)
        _png(tmp_path / "rain100" / f"rain-{n + 1}.png", 20 + n)
        _png(tmp_path / "rain100" / f"norain-{n + 1}.png", 30 + n)
    import_paired(tmp_path / "spa", "spa", "spa-test", ds, 10**9, workers=1)
    import_paired(tmp_path / "rain100", "rain100", "rain100l", ds, 10**9, workers=1)
    results = tmp_path / "res"
    reports = evaluate(_source("identity"), ds, "all", results, FAST)
    assert {r.split: r.kind for r in reports} == {
        "test": "real",
        "syn-streak": "synthetic",
        "spa-test": "real-paired",
        "rain100l": "imported",
    }
    spa = _table(results, "identity", "spa-test")
    assert set(spa.kind) == {"real-paired"} and spa.psnr_y.notna().all()
    assert set(spa.rain_type) == {"import:spa"}
    info = json.loads((results / "identity" / "ds" / "spa-test.json").read_text())
    assert info["kind"] == "real-paired" and "psnr_y" in info["metrics"]


def test_rows_from_before_groups_were_recorded_gain_theirs_on_resume(tmp_path, ds):
    # Read back, a results file without the group column gives null groups: a resumed
    # run kept them null beside the new rows' scenes, and the leaderboard's bootstrap drew
    # those frames one by one instead of with their scene.
    for scene in ("alley", "bridge"):
        _png(tmp_path / "set" / scene / f"{scene}-C-000.png", len(scene))
        for n in range(2):
            _png(tmp_path / "set" / scene / f"{scene}-R-{n:03d}.png", 10 * len(scene) + n)
    import_paired(tmp_path / "set", "gt-rain", "scenes", ds, 10**9, workers=1)
    results = tmp_path / "res"
    evaluate(_source("identity"), ds, "scenes", results, FAST)
    table_path = results / "identity" / "ds" / "scenes.parquet"
    grouped = pq.read_table(table_path)
    assert sorted(grouped["group"].to_pylist()) == ["alley", "alley", "bridge", "bridge"]
    # As such a run left it when killed after two images.
    pq.write_table(grouped.drop(["group"]).slice(0, 2), table_path)
    _edit(table_path.with_suffix(".json"), lambda info: info.update(finished_at=None))
    [report] = evaluate(_source("identity"), ds, "scenes", results, FAST)
    assert (report.scored, report.skipped) == (2, 2)
    resumed = pq.read_table(table_path)
    assert resumed["group"].to_pylist() == grouped["group"].to_pylist()


class _Flaky(Derainer):
    """Refuses batches; of single images it raises on the first, returns NaN on the
    second, the wrong shape on the third, and derains (identity) the rest."""

    name, version = "flaky", "1"

    def __init__(self):
        self.singles = 0

    def derain(self, batch: torch.Tensor) -> torch.Tensor:
        if batch.shape[0] > 1:
            raise RuntimeError("batches are not supported")  # then every image runs alone
        self.singles += 1
        if self.singles == 1:
            raise ValueError("too dark for me\nsecond line")
        if self.singles == 2:
            return batch * float("nan")
        if self.singles == 3:
            return batch[:, :, :-1]
        return batch.clone()

    def info(self) -> dict:
        return {"name": self.name, "version": self.version, "options": {}}


def test_a_failing_derainer_is_recorded_per_image_and_the_run_goes_on(tmp_path, ds):
    results = tmp_path / "res"
    [report] = evaluate(DerainerSource(_Flaky(), "cpu", None, 32), ds, "test", results, FAST)
    assert (report.scored, report.failed) == (4, 3)
    table = _table(results, "flaky", "test")
    failed = table[table.status == "failed"]
    assert sorted(failed.error) == [
        "ValueError: too dark for me",
        "returned NaN or infinite values",
        "returned shape (1, 3, 119, 160), expected (1, 3, 120, 160)",
    ]
    assert failed.piqe.isna().all()
    assert table[table.status == "ok"].piqe.notna().all()


def _damage_first_member(ds, split: str, suffix: str) -> str:
    """Flip bytes in the middle of one member of `split`, keeping its size and the tar
    sound: what a bad disk or a tampered copy does. Returns the member's key."""
    samples = manifest.read_manifest(ds / "manifests" / "samples.parquet", manifest.SAMPLES)
    pairs = manifest.read_manifest(ds / "manifests" / "synthetic.parquet", manifest.SYNTHETIC)
    rows = [r for t in (samples, pairs) for r in t.to_pylist() if r["split"] == split]
    row = rows[0]
    path = ds / row["shard"]
    with tarfile.open(path) as tar:
        info = tar.getmember(f"{row['key']}{suffix}")
    data = bytearray(path.read_bytes())
    middle = info.offset_data + info.size // 2
    data[middle : middle + 64] = bytes(64)
    path.write_bytes(bytes(data))
    return row["key"]


@pytest.mark.parametrize(("split", "suffix"), [("test", ".jpg"), ("syn-streak", ".gt.png")])
def test_a_member_whose_bytes_are_not_the_manifests_fails_its_image(tmp_path, ds, split, suffix):
    key = _damage_first_member(ds, split, suffix)
    [report] = evaluate(_source("identity"), ds, split, tmp_path / "res", FAST)
    assert report.failed == 1
    row = _table(tmp_path / "res", "identity", split).loc[key]
    assert row.status == "failed"
    assert "its bytes are not the manifest's" in row.error


def test_resume_after_a_kill_scores_only_the_rest_and_a_rerun_is_a_no_op(tmp_path, ds, monkeypatch):
    results = tmp_path / "res"
    calls = []
    real_run = DerainerSource.run

    def dying(self, items, split):
        calls.append(len(items))
        if len(calls) == 2:
            raise KeyboardInterrupt  # as good as a kill: nothing after this is written
        return real_run(self, items, split)

    monkeypatch.setattr(eval_module, "_FLUSH_SECONDS", 0.0)
    with monkeypatch.context() as patch:
        patch.setattr(DerainerSource, "run", dying)
        with pytest.raises(KeyboardInterrupt):
            evaluate(_source("identity"), ds, "test", results, FAST)
    partial = _table(results, "identity", "test")
    assert len(partial) == 2
    info = json.loads((results / "identity" / "ds" / "test.json").read_text())
    assert info["finished_at"] is None

    [report] = evaluate(_source("identity"), ds, "test", results, FAST)
    assert (report.scored, report.skipped) == (2, 2)
    folder = results / "identity" / "ds"
    finished = {path.name: path.read_bytes() for path in folder.glob("test.*") if path.is_file()}
    [again] = evaluate(_source("identity"), ds, "test", results, FAST)
    assert (again.scored, again.skipped) == (0, 4)
    assert len(_table(results, "identity", "test")) == 4
    # Nothing is written again: the provenance still says when the scoring finished.
    assert {p.name: p.read_bytes() for p in folder.glob("test.*") if p.is_file()} == finished


def test_a_second_eval_of_the_split_into_the_same_results_is_refused_while_one_runs(
    tmp_path, ds, monkeypatch
):
    results, alone = tmp_path / "res", tmp_path / "alone"
    evaluate(_source("identity"), ds, "test", alone, FAST)
    refusals = []
    real_run = DerainerSource.run

    def second_starts(self, items, split):
        if not refusals:  # the first batch of the first run: a second run starts now
            refusals.append(None)
            with pytest.raises(EvalError) as refused:
                evaluate(_source("identity"), ds, "test", results, FAST)
            refusals[0] = str(refused.value)
        return real_run(self, items, split)

    monkeypatch.setattr(DerainerSource, "run", second_starts)
    [report] = evaluate(_source("identity"), ds, "test", results, FAST)
    assert f"pid {os.getpid()}" in refusals[0] and "\n" not in refusals[0]
    assert report.scored == 4
    timings = ["seconds", "s_per_mp", "peak_mem_mb"]
    pd.testing.assert_frame_equal(
        _table(results, "identity", "test").drop(columns=timings),
        _table(alone, "identity", "test").drop(columns=timings),
    )


def test_the_reference_crops_leave_another_models_eval_writing_them_alone(tmp_path, ds):
    results = tmp_path / "res"
    evaluate(_source("identity"), ds, "syn-streak", tmp_path / "alone", FAST)
    reference = results / "_reference" / "ds" / "syn-streak.crops"
    reference.mkdir(parents=True)
    key = sorted(p.name for p in (tmp_path / "alone" / "identity" / "ds").glob("*.crops/*"))[0]
    # Another model's eval, halfway through writing the same crop as this one.
    theirs = reference / f".{key.removesuffix('.png')}.input.png.tmp"
    theirs.write_bytes(b"half a PNG")
    evaluate(_source("identity"), ds, "syn-streak", results, FAST)
    assert theirs.read_bytes() == b"half a PNG"
    assert sorted(p.name for p in reference.glob("*.png")) == sorted(
        p.name for p in (tmp_path / "alone" / "_reference" / "ds" / "syn-streak.crops").glob("*")
    )


def test_failed_images_are_kept_unless_retried(tmp_path, ds):
    results = tmp_path / "res"
    [first] = evaluate(DerainerSource(_Flaky(), "cpu", None, 32), ds, "test", results, FAST)
    assert (first.scored, first.failed) == (4, 3)
    [again] = evaluate(DerainerSource(_Flaky(), "cpu", None, 32), ds, "test", results, FAST)
    assert (again.scored, again.skipped) == (0, 4)
    healed = _Flaky()
    healed.singles = 3  # past its failures: what a retry after an out-of-memory meets
    retry = replace(FAST, retry_failed=True)
    [retried] = evaluate(DerainerSource(healed, "cpu", None, 32), ds, "test", results, retry)
    assert (retried.scored, retried.failed, retried.skipped) == (3, 0, 1)
    assert set(_table(results, "flaky", "test")["status"]) == {"ok"}


def test_a_metric_that_failed_on_an_output_is_counted_and_retried(tmp_path, ds, monkeypatch):
    """An out-of-memory in a metric leaves the row ok with the value null: the summary
    says so, a re-run keeps it as a failure, and --retry-failed scores it again."""
    built = eval_module.create_metric
    failures = [2]  # the first two psnr_y calls fail, as on a GPU out of memory

    def create_metric(name, **options):
        metric = built(name, **options)
        if name != "psnr_y":
            return metric

        class Failing:
            spec = metric.spec

            def __call__(self, *images):
                if failures[0]:
                    failures[0] -= 1
                    raise RuntimeError("CUDA out of memory")
                return metric(*images)

        return Failing()

    monkeypatch.setattr(eval_module, "create_metric", create_metric)
    results = tmp_path / "res"
    [first] = evaluate(_source("identity"), ds, "syn-streak", results, FAST)
    assert (first.scored, first.failed, first.metric_failed) == (3, 0, 2)
    table = _table(results, "identity", "syn-streak")
    assert table["psnr_y"].isna().sum() == 2 and table["ssim_y"].notna().all()
    [line] = leaderboard_cli._report_lines([first])
    assert "3 scored (2 with a metric that failed: the error column), 0 failed" in line
    [again] = evaluate(_source("identity"), ds, "syn-streak", results, FAST)
    assert (again.scored, again.skipped, again.failed_before) == (0, 3, 2)
    retry = replace(FAST, retry_failed=True)
    [retried] = evaluate(_source("identity"), ds, "syn-streak", results, retry)
    assert (retried.scored, retried.metric_failed, retried.skipped) == (2, 0, 1)
    table = _table(results, "identity", "syn-streak")
    assert table["psnr_y"].notna().all() and table["error"].isna().all()


def test_results_of_another_dataset_of_the_same_name_are_refused(tmp_path, ds):
    results = tmp_path / "res"
    evaluate(_source("identity"), ds, "test", results, FAST)
    other = shutil.copytree(ds, tmp_path / "elsewhere" / "ds")  # a copy is the same dataset
    [again] = evaluate(_source("identity"), other, "test", results, FAST)
    assert again.scored == 0
    info = json.loads((other / "dataset.json").read_text())
    info["created_at"] = "2020-01-01T00:00:00+00:00"  # another ingest that named it ds too
    (other / "dataset.json").write_text(json.dumps(info))
    with pytest.raises(EvalError, match="made on another dataset named ds"):
        evaluate(_source("identity"), other, "test", results, FAST)


def test_a_rerun_with_nothing_to_score_records_where_it_read_its_inputs(tmp_path, ds):
    """A dataset, outputs and checkpoint moved, and a manifest whose other rows changed:
    a re-run of finished results scores nothing, and its provenance says where and what
    the inputs are now, still when the scoring ran."""
    results, checkpoint = tmp_path / "res", tmp_path / "a.pt"
    checkpoint.write_bytes(b"weights")
    outputs = tmp_path / "outputs"
    pairs = manifest.read_manifest(ds / "manifests/synthetic.parquet", manifest.SYNTHETIC)
    for key in pairs["key"].to_pylist():
        _png(outputs / f"{key}.png", 0)  # of another size: failed rows, kept on re-runs
    evaluate(_source("identity"), ds, "test", results, FAST, checkpoint)
    evaluate(FolderSource(outputs, "theirs"), ds, "syn-streak", results, FAST)
    info_path = results / "identity" / "ds" / "test.json"
    before = json.loads(info_path.read_text())

    moved = shutil.move(ds, tmp_path / "elsewhere" / "ds")
    checkpoint = shutil.move(checkpoint, tmp_path / "b.pt")
    outputs = shutil.move(outputs, tmp_path / "outputs2")
    path = moved / "manifests" / "samples.parquet"
    rows = manifest.read_manifest(path, manifest.SAMPLES).to_pylist()
    for row in rows:  # the clean captures re-tagged: the test split's images as they were
        if row["layer"] == "clean":
            row["tagger_version"] = "another"
    manifest.write_manifest(path, pa.Table.from_pylist(rows, manifest.SAMPLES))
    [again] = evaluate(_source("identity"), moved, "test", results, FAST, checkpoint)
    [theirs] = evaluate(FolderSource(outputs, "theirs"), moved, "syn-streak", results, FAST)
    assert (again.scored, again.skipped, theirs.scored, theirs.skipped) == (0, 4, 0, 3)
    info = json.loads(info_path.read_text())
    dataset, earlier = info["dataset"], before["dataset"]
    assert dataset["path"] == str(moved) and dataset["manifest_sha256"] == file_sha256(path)
    assert dataset["manifest_sha256"] != earlier["manifest_sha256"]
    assert dataset["split_sha256"] == earlier["split_sha256"]
    assert info["checkpoint"] == {"path": str(checkpoint), "sha256": file_sha256(checkpoint)}
    # The scoring's own record is the run's that scored.
    unchanged = ("started_at", "finished_at", "images", "crops", "hardware", "versions")
    assert {k: info[k] for k in unchanged} == {k: before[k] for k in unchanged}
    info = json.loads((results / "theirs" / "ds" / "syn-streak.json").read_text())
    assert (info["model"]["folder"], info["dataset"]["path"]) == (str(outputs), str(moved))


def _evaluate_killed_after_write(results, ds, settings, monkeypatch, kill_after: int) -> int:
    """Evaluate, killed (KeyboardInterrupt) once the `kill_after`-th write of the JSON or
    the Parquet is on disk (never when 0); returns how many writes there were."""
    writes = []
    write_json, write_manifest = eval_module._SplitRun._write_json, manifest.write_manifest

    def counted(write):
        def wrapper(*args):
            write(*args)
            writes.append(write)
            if len(writes) == kill_after:
                raise KeyboardInterrupt

        return wrapper

    with monkeypatch.context() as patch:
        patch.setattr(eval_module._SplitRun, "_write_json", counted(write_json))
        patch.setattr(manifest, "write_manifest", counted(write_manifest))
        evaluate(_source("identity"), ds, "test", results, settings)
    return len(writes)


def test_a_run_killed_at_any_write_resumes_to_the_same_crops(tmp_path, ds, monkeypatch):
    monkeypatch.setattr(eval_module, "_FLUSH_SECONDS", -1.0)  # a flush after every batch
    settings = EvalSettings(metrics=("piqe",), batch=1, crops=3)
    whole = tmp_path / "whole"
    writes = _evaluate_killed_after_write(whole, ds, settings, monkeypatch, 0)
    expected = json.loads((whole / "identity" / "ds" / "test.json").read_text())["crops"]
    assert len(expected) == 3 and writes > 6  # the first JSON, two per flush, the last JSON
    for kill_after in range(1, writes):
        results = tmp_path / f"killed-{kill_after}"
        with pytest.raises(KeyboardInterrupt):
            _evaluate_killed_after_write(results, ds, settings, monkeypatch, kill_after)
        evaluate(_source("identity"), ds, "test", results, settings)
        folder = results / "identity" / "ds"
        info = json.loads((folder / "test.json").read_text())
        assert info["crops"] == expected, f"killed after write {kill_after}"
        assert info["finished_at"] and info["images"] == {"ok": 4, "failed": 0}
        assert sorted(path.stem for path in (folder / "test.crops").glob("*.png")) == sorted(
            expected
        )
        assert sorted(_table(results, "identity", "test").index) == sorted(
            _table(whole, "identity", "test").index
        )


class _Failing(DerainerSource):
    """The identity, as its provenance says, failing on every image (out of memory)."""

    def __init__(self):
        super().__init__(create_derainer("identity"), "cpu", None, 32)

    def run(self, items, split):
        return [Output(None, "RuntimeError: CUDA out of memory", None, None) for _ in items]


def _crop_keys(results, split):
    return {path.stem for path in (results / "identity" / "ds" / f"{split}.crops").glob("*.png")}


def test_no_crop_of_an_earlier_output_stays_beside_the_rows_that_replaced_it(tmp_path, ds):
    # The leaderboard's strip shows every output crop in the folder: one of results made
    # otherwise, or of an image gone from the split, would pass for this run's output.
    results = tmp_path / "res"
    settings = replace(FAST, crops=3)
    evaluate(_source("identity"), ds, "syn-streak", results, settings)
    assert len(_crop_keys(results, "syn-streak")) == 3
    path = ds / "manifests" / "synthetic.parquet"
    rows = manifest.read_manifest(path, manifest.SYNTHETIC).to_pylist()
    gone = min(row["key"] for row in rows if row["split"] == "syn-streak")
    kept = [row for row in rows if row["key"] != gone]
    manifest.write_manifest(path, pa.Table.from_pylist(kept, manifest.SYNTHETIC))
    [shrunk] = evaluate(_source("identity"), ds, "syn-streak", results, settings)
    assert shrunk.dropped == 1 and len(_crop_keys(results, "syn-streak")) == 2
    assert gone not in _crop_keys(results, "syn-streak")
    stale = replace(settings, metrics=("psnr",), rescore_stale=True)
    [again] = evaluate(_Failing(), ds, "syn-streak", results, stale)
    assert (again.scored, again.failed) == (2, 2)
    assert _crop_keys(results, "syn-streak") == set()


def test_a_retried_image_that_fails_keeps_no_crop_of_its_earlier_output(tmp_path, ds, monkeypatch):
    built = eval_module.create_metric

    def create_metric(name, **options):  # psnr_y out of memory on every output
        metric = built(name, **options)

        class Failing:
            spec = metric.spec

            def __call__(self, *images):
                raise RuntimeError("CUDA out of memory")

        return Failing() if name == "psnr_y" else metric

    monkeypatch.setattr(eval_module, "create_metric", create_metric)
    results = tmp_path / "res"
    settings = replace(FAST, crops=3)
    [first] = evaluate(_source("identity"), ds, "syn-streak", results, settings)
    assert (first.metric_failed, len(_crop_keys(results, "syn-streak"))) == (3, 3)
    retry = replace(settings, retry_failed=True)
    [retried] = evaluate(_Failing(), ds, "syn-streak", results, retry)
    assert (retried.scored, retried.failed) == (3, 3)
    assert _crop_keys(results, "syn-streak") == set()


@pytest.mark.parametrize("full_at", [1, 2, 3])
def test_a_crop_the_disk_had_no_room_for_is_saved_when_the_run_resumes(
    tmp_path, ds, monkeypatch, full_at
):
    # The first image's crops are three files (output, input, ground truth): the disk
    # fills at one of them. Its row must not be kept without them.
    monkeypatch.setattr(eval_module, "_FLUSH_SECONDS", -1.0)  # a flush after every batch
    settings = EvalSettings(metrics=("psnr",), batch=1, crops=2)
    whole, results = tmp_path / "whole", tmp_path / "full"
    evaluate(_source("identity"), ds, "syn-streak", whole, settings)
    save_png, saves = eval_module._save_png, []

    def disk_fills(path, pixels, shared=False):
        saves.append(path)
        if len(saves) == full_at:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        save_png(path, pixels, shared)

    with monkeypatch.context() as patch:
        patch.setattr(eval_module, "_save_png", disk_fills)
        with pytest.raises(OSError):
            evaluate(_source("identity"), ds, "syn-streak", results, settings)
    evaluate(_source("identity"), ds, "syn-streak", results, settings)
    crops = sorted(p.relative_to(results) for p in results.rglob("*.png"))
    assert crops == sorted(p.relative_to(whole) for p in whole.rglob("*.png"))
    info = json.loads((results / "identity" / "ds" / "syn-streak.json").read_text())
    assert len(info["crops"]) == 2


class _EndsAfter(DerainerSource):
    """The identity, until a batch after the first `batches` raises what ends a run (an
    interrupt, a cluster lost)."""

    def __init__(self, batches: int, error: BaseException):
        super().__init__(create_derainer("identity"), "cpu", None, 32)
        self.batches, self.error = batches, error

    def run(self, items, split):
        if self.batches == 0:
            raise self.error
        self.batches -= 1
        return super().run(items, split)


@pytest.mark.parametrize("error", [KeyboardInterrupt(), EvalError("the cluster is gone")])
def test_a_run_ended_early_keeps_the_rows_it_made(tmp_path, ds, error):
    # Between flushes (every 10 s): the rows of the batches done are written as it ends.
    results = tmp_path / "res"
    settings = EvalSettings(metrics=("piqe",), batch=1, crops=0)
    with pytest.raises(type(error)):
        evaluate(_EndsAfter(2, error), ds, "test", results, settings)
    assert len(_table(results, "identity", "test")) == 2
    [report] = evaluate(_source("identity"), ds, "test", results, settings)
    assert (report.scored, report.skipped) == (2, 2)


def test_earlier_rows_eval_would_not_write_are_scored_again(tmp_path, ds):
    results = tmp_path / "res"
    evaluate(_source("identity"), ds, "test", results, FAST)
    table_path = results / "identity" / "ds" / "test.parquet"
    table = pq.read_table(table_path)
    rows = table.to_pylist()
    rows[0]["status"], rows[1]["status"] = None, "skipped"  # neither ok nor failed
    rows[2]["kind"], rows[3]["split"] = "synthetic", "syn-streak"  # another split's
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), table_path)
    [again] = evaluate(_source("identity"), ds, "test", results, FAST)
    assert (again.scored, again.skipped, again.dropped) == (4, 0, 4)
    [line] = leaderboard_cli._report_lines([again])
    assert "4 earlier results dropped: the image left the split or changed, or the row was not" in (
        line
    )
    scored = _table(results, "identity", "test")
    assert set(scored.status) == {"ok"}
    assert set(scored.split) == {"test"} and set(scored.kind) == {"real"}
    assert [run.split for run in load_results(results).runs] == ["test"]


def _killed_after_two(results, ds, settings) -> Path:
    """The test split's results, two of its four images scored before the run ended;
    returns their provenance's path."""
    with pytest.raises(KeyboardInterrupt):
        evaluate(_EndsAfter(2, KeyboardInterrupt()), ds, "test", results, settings)
    return results / "identity" / "ds" / "test.json"


def _edit(sidecar: Path, change) -> None:
    """The provenance `sidecar` as `change` leaves it (a dict edited in place)."""
    info = json.loads(sidecar.read_text())
    change(info)
    sidecar.write_text(json.dumps(info))


def _gpu(info: dict) -> None:
    info["device"] = "cuda:0"
    info["hardware"]["gpu"] = "NVIDIA H100 80GB HBM3"


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (
            lambda info: info["versions"].update(torch="2.0.0+cu118"),
            rf"made with other versions \(torch 2\.0\.0\+cu118 → {re.escape(torch.__version__)}\)",
        ),
        (
            lambda info: info["versions"].update(pyiqa="0.1.10", numpy="1.26.4"),
            r"made with other versions \(numpy 1\.26\.4 → .*, pyiqa 0\.1\.10 → ",
        ),
        (
            lambda info: info["versions"].update(rainbench="0.0.9"),
            rf"other versions \(rainbench 0\.0\.9 → {re.escape(rainbench.__version__)}\)",
        ),
        (
            lambda info: info["versions"].pop("pyiqa"),
            r"made with other versions \(pyiqa none → ",
        ),
        (
            _gpu,
            r"made on another device \(device 'cuda' → 'cpu', gpu 'NVIDIA H100 80GB HBM3' → "
            r"None\)",
        ),
        (
            lambda info: info["hardware"].update(cpu="Another CPU"),
            r"made on another device \(cpu 'Another CPU' → ",
        ),
    ],
    ids=["torch", "libraries", "rainbench", "library-missing", "gpu", "cpu"],
)
def test_a_resume_where_the_values_could_differ_is_refused(tmp_path, ds, change, said):
    """Rows scored with other versions or on another device are not joined by rows
    scored here: the file would hold values of two environments, and record one."""
    results, settings = tmp_path / "res", EvalSettings(metrics=("piqe",), batch=1, crops=0)
    sidecar = _killed_after_two(results, ds, settings)
    _edit(sidecar, change)
    with pytest.raises(EvalError, match=said) as refused:
        evaluate(_source("identity"), ds, "test", results, settings)
    message = str(refused.value)
    assert message.startswith(f"{sidecar}: ") and message.endswith(eval_module._REMEDY)
    assert "\n" not in message
    assert len(_table(results, "identity", "test")) == 2  # nothing derained, nothing written
    [again] = evaluate(
        _source("identity"), ds, "test", results, replace(settings, rescore_stale=True)
    )
    assert (again.scored, again.skipped) == (4, 0)
    now = json.loads(sidecar.read_text())
    assert now["versions"] == {"rainbench": rainbench.__version__, **eval_module.versions()}
    assert now["device"] == "cpu" and now["hardware"]["gpu"] is None


def test_what_does_not_change_the_values_does_not_refuse_a_resume(tmp_path, ds):
    """Threads, batch size, cores and the OS: eval does not hold them fixed in one run
    either (threads are chosen from the free CPUs; a batch is the images of one size)."""
    results, settings = tmp_path / "res", EvalSettings(metrics=("piqe",), batch=1, crops=0)
    sidecar = _killed_after_two(results, ds, settings)
    info = json.loads(sidecar.read_text())
    info.update(threads=64, batch=16)
    info["hardware"].update(cores=128, os="Linux-6.1-other")
    sidecar.write_text(json.dumps(info))
    [report] = evaluate(_source("identity"), ds, "test", results, replace(settings, batch=2))
    assert (report.scored, report.skipped) == (2, 2)


def test_the_same_metrics_in_another_order_do_not_refuse_a_resume(tmp_path, ds):
    # --metrics piqe,psnr_y after psnr_y,piqe: the same columns, refused as "another
    # metrics" and, with --rescore-stale, every image scored again for nothing.
    settings = EvalSettings(metrics=("psnr_y", "piqe"), batch=1, crops=0)
    results = tmp_path / "res"
    with pytest.raises(KeyboardInterrupt):
        evaluate(_EndsAfter(1, KeyboardInterrupt()), ds, "syn-streak", results, settings)
    reordered = replace(settings, metrics=("piqe", "psnr_y"))
    [report] = evaluate(_source("identity"), ds, "syn-streak", results, reordered)
    assert (report.scored, report.skipped) == (2, 1)
    assert _table(results, "identity", "syn-streak").piqe.notna().all()
    [again] = evaluate(_source("identity"), ds, "syn-streak", results, settings)
    assert (again.scored, again.skipped) == (0, 3)
    with pytest.raises(EvalError, match=r"another metrics \(\['piqe', 'psnr_y'\] → \['piqe'\]\)"):
        evaluate(
            _source("identity"), ds, "syn-streak", results, replace(settings, metrics=("piqe",))
        )


def test_a_finished_run_rerun_elsewhere_scores_nothing_and_keeps_its_record(tmp_path, ds):
    """Nothing to score, nothing mixed: not refused, and the provenance keeps the
    versions and device its rows were scored with."""
    results, settings = tmp_path / "res", EvalSettings(metrics=("piqe",), batch=1, crops=0)
    evaluate(_source("identity"), ds, "test", results, settings)
    sidecar = results / "identity" / "ds" / "test.json"
    info = json.loads(sidecar.read_text())
    info["versions"]["torch"] = "2.0.0+cu118"
    _gpu(info)
    sidecar.write_text(json.dumps(info))
    [again] = evaluate(_source("identity"), ds, "test", results, settings)
    assert (again.scored, again.skipped) == (0, 4)
    assert json.loads(sidecar.read_text()) == info
    # One image more to score (--retry-failed, a split grown): refused.
    table_path = results / "identity" / "ds" / "test.parquet"
    pq.write_table(pq.read_table(table_path).slice(1), table_path)
    with pytest.raises(EvalError, match=r"made with other versions \(torch 2\.0\.0\+cu118 → "):
        evaluate(_source("identity"), ds, "test", results, settings)


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (lambda t: t.drop_columns(["piqe"]), r"no column for piqe listed in test\.json"),
        (
            lambda t: t.set_column(
                t.schema.get_field_index("piqe"), "piqe", t["piqe"].cast(pa.string())
            ),
            r"column 'piqe' is not numeric",
        ),
        (
            lambda t: t.set_column(
                t.schema.get_field_index("s_per_mp"),
                "s_per_mp",
                t["s_per_mp"].cast(pa.string()),
            ),
            r"column 's_per_mp' is not numeric",
        ),
        (lambda t: t.drop_columns(["status"]), r"missing column\(s\) status"),
    ],
    ids=["metric-dropped", "metric-text", "speed-text", "status-dropped"],
)
def test_results_the_leaderboard_would_refuse_are_refused_not_resumed(tmp_path, ds, change, said):
    """A metric column dropped or turned to text by hand: not taken as done (nulls, or
    text read back as numbers), but refused as the leaderboard refuses it."""
    results, settings = tmp_path / "res", EvalSettings(metrics=("piqe",), batch=1, crops=0)
    sidecar = _killed_after_two(results, ds, settings)
    table_path = sidecar.with_suffix(".parquet")
    pq.write_table(change(pq.read_table(table_path)), table_path)
    with pytest.raises(LeaderboardError, match=said):
        load_results(results)
    for again in (settings, replace(settings, rescore_stale=True, retry_failed=True)):
        with pytest.raises(
            EvalError, match=f"^{re.escape(str(table_path))}: {said}; move it away$"
        ):
            evaluate(_source("identity"), ds, "test", results, again)


def test_results_made_otherwise_are_refused(tmp_path, ds):
    results = tmp_path / "res"
    evaluate(_source("identity"), ds, "syn-streak", results, FAST)
    other = EvalSettings(metrics=("piqe",))
    with pytest.raises(EvalError, match="another metrics"):
        evaluate(_source("identity"), ds, "syn-streak", results, other)


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"[" * 100_000, "nested too deep"),
        (b"[1, 2]", "expected a JSON object, got list"),
        (b"{", "not valid JSON"),
    ],
)
def test_earlier_results_that_eval_could_not_have_written_are_refused_in_one_line(
    tmp_path, ds, content, said
):
    results = tmp_path / "res"
    evaluate(_source("identity"), ds, "syn-streak", results, FAST)
    (results / "identity" / "ds" / "syn-streak.json").write_bytes(content)
    with pytest.raises(EvalError, match=said) as refused:
        evaluate(_source("identity"), ds, "syn-streak", results, FAST)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (lambda info: info.update(checkpoint="x"), "checkpoint must be an object or null"),
        (lambda info: info.update(dataset="x"), "dataset must be an object"),
        (lambda info: info.update(model=["x"]), "model must be an object"),
        (lambda info: info.update(crops=[1, 2]), "crops must be an object"),
        (lambda info: info.update(weights=["x"]), "weights must be an object or null"),
        (
            lambda info: [info.pop(key) for key in ("dataset", "model", "metrics", "kind")],
            r"not an evaluation's provenance \(no model, dataset, kind, metrics\)",
        ),
    ],
    ids=["checkpoint", "dataset", "model", "crops", "weights", "missing"],
)
def test_an_earlier_provenance_of_another_shape_is_refused_in_one_line(tmp_path, ds, change, said):
    results = tmp_path / "res"
    evaluate(_source("identity"), ds, "syn-streak", results, FAST)
    sidecar = results / "identity" / "ds" / "syn-streak.json"
    _edit(sidecar, change)
    with pytest.raises(EvalError, match=said) as refused:
        evaluate(_source("identity"), ds, "syn-streak", results, FAST)
    message = str(refused.value)
    assert message.startswith(f"{sidecar}: ") and message.endswith("; move it away")
    assert "\n" not in message


def test_a_file_where_the_rows_go_without_their_provenance_is_not_replaced(tmp_path, ds):
    table = tmp_path / "res" / "identity" / "ds" / "syn-streak.parquet"
    table.parent.mkdir(parents=True)
    table.write_text("a file of the user's\n")  # eval writes the provenance before any row
    with pytest.raises(EvalError, match=r"syn-streak\.parquet: no syn-streak\.json beside"):
        evaluate(_source("identity"), ds, "syn-streak", tmp_path / "res", FAST)
    assert table.read_text() == "a file of the user's\n"


def test_results_scored_with_other_metric_weights_are_refused(tmp_path, ds, monkeypatch):
    results = tmp_path / "res"
    files = {"brisque_svm_weights.pth": "a" * 64}  # as if a chosen metric loaded it
    monkeypatch.setattr(eval_module, "loaded_weights", lambda metrics, folder: dict(files))
    [first] = evaluate(_source("identity"), ds, "syn-streak", results, FAST)
    recorded = json.loads((results / "identity" / "ds" / "syn-streak.json").read_text())
    assert recorded["weights"] == files
    [again] = evaluate(_source("identity"), ds, "syn-streak", results, FAST)
    assert (again.scored, again.skipped) == (0, first.scored)
    files["brisque_svm_weights.pth"] = "b" * 64  # the file replaced: other values
    with pytest.raises(EvalError, match="another weights"):
        evaluate(_source("identity"), ds, "syn-streak", results, FAST)


def test_results_follow_their_split_as_it_grows_shrinks_and_changes(tmp_path, ds):
    results = tmp_path / "res"
    path = ds / "manifests" / "samples.parquet"
    rows = manifest.read_manifest(path, manifest.SAMPLES).to_pylist()
    rainy = [i for i, row in enumerate(rows) if row["split"] == "test" and row["layer"] == "rainy"]
    held_back = rows.pop(rainy[-1])  # the split first without it, as if ingested later
    manifest.write_manifest(path, pa.Table.from_pylist(rows, manifest.SAMPLES))
    [first] = evaluate(_source("identity"), ds, "test", results, FAST)
    scored = _table(results, "identity", "test")
    assert scored["image_sha256"].str.len().eq(64).all()

    for row in rows:  # a re-tag that changes no rain type: the images are as they were
        row["tagger_version"] = "another"
    manifest.write_manifest(path, pa.Table.from_pylist([*rows, held_back], manifest.SAMPLES))
    [grown] = evaluate(_source("identity"), ds, "test", results, FAST)
    assert (grown.scored, grown.skipped, grown.dropped) == (1, first.scored, 0)

    changed = rows[rainy[0]]  # another rain type: its per-type cell would be wrong
    retyped = "fog-like" if changed["rain_type"] != "fog-like" else "storm"
    changed["rain_type"] = retyped
    gone = rows.pop(rainy[1])
    manifest.write_manifest(path, pa.Table.from_pylist([*rows, held_back], manifest.SAMPLES))
    [again] = evaluate(_source("identity"), ds, "test", results, FAST)
    assert (again.scored, again.skipped, again.dropped) == (1, first.scored - 1, 2)
    now = _table(results, "identity", "test")
    assert gone["key"] not in now.index and now.loc[changed["key"], "rain_type"] == retyped
    info = json.loads((results / "identity" / "ds" / "test.json").read_text())
    assert info["images"]["ok"] == len(now)


def _called_from(function: str) -> bool:
    frame = sys._getframe()
    while frame and frame.f_code.co_name != function:
        frame = frame.f_back
    return frame is not None


def test_the_provenance_names_the_manifest_the_rows_were_read_from(tmp_path, ds, monkeypatch):
    # An ingest replacing the manifest while eval reads it: the rows scored and the
    # manifest_sha256 recorded must come from one and the same file.
    path = ds / "manifests" / "synthetic.parquet"
    shrunk = manifest.read_manifest(path, manifest.SYNTHETIC).slice(1)
    read, replaced = manifest.read_manifest, []

    def read_then_replace(where, schema, *args, **kwargs):
        table = read(where, schema, *args, **kwargs)
        if _called_from("_manifest_rows") and not replaced:
            replaced.append(True)
            manifest.write_manifest(path, shrunk)
        return table

    monkeypatch.setattr(manifest, "read_manifest", read_then_replace)
    [report] = evaluate(_source("identity"), ds, "syn-streak", tmp_path / "res", FAST)
    info = json.loads((tmp_path / "res" / "identity" / "ds" / "syn-streak.json").read_text())
    assert report.scored == shrunk.num_rows == 2
    assert info["dataset"]["manifest_sha256"] == file_sha256(path)


def test_the_provenance_records_torchs_build_and_what_decodes_the_inputs(tmp_path, ds):
    evaluate(_source("identity"), ds, "syn-streak", tmp_path / "res", FAST)
    info = json.loads((tmp_path / "res" / "identity" / "ds" / "syn-streak.json").read_text())
    assert info["versions"]["torch"] == torch.__version__  # '2.5.1+cpu', not '2.5.1'
    assert info["versions"]["pillow-heif"] == version("pillow-heif")
    assert info["versions"]["rainbench"] == rainbench.__version__


def test_a_manifest_replaced_at_every_read_is_refused_in_one_line(tmp_path, ds, monkeypatch):
    path = ds / "manifests" / "synthetic.parquet"
    tables = [manifest.read_manifest(path, manifest.SYNTHETIC)]
    tables.append(tables[0].slice(1))
    read = manifest.read_manifest

    def read_then_replace(where, schema, *args, **kwargs):
        table = read(where, schema, *args, **kwargs)
        if _called_from("_manifest_rows"):
            tables.reverse()
            manifest.write_manifest(path, tables[0])
        return table

    monkeypatch.setattr(manifest, "read_manifest", read_then_replace)
    with pytest.raises(DatasetError, match=r"synthetic.parquet: replaced 5 times while eval read"):
        evaluate(_source("identity"), ds, "syn-streak", tmp_path / "res", FAST)


def test_results_from_before_rows_named_their_images_need_the_manifest_unchanged(tmp_path, ds):
    results = tmp_path / "res"
    [first] = evaluate(_source("identity"), ds, "test", results, FAST)
    table_path = results / "identity" / "ds" / "test.parquet"
    old = pq.read_table(table_path)
    pq.write_table(old.drop_columns(["image_sha256"]), table_path)  # as an earlier version wrote
    [again] = evaluate(_source("identity"), ds, "test", results, FAST)
    assert (again.scored, again.skipped, again.dropped) == (0, first.scored, 0)
    assert pq.read_table(table_path)["image_sha256"].null_count == 0  # named from now on
    pq.write_table(old.drop_columns(["image_sha256"]), table_path)
    path = ds / "manifests" / "samples.parquet"
    table = manifest.read_manifest(path, manifest.SAMPLES)
    manifest.write_manifest(path, table.slice(1))
    with pytest.raises(EvalError, match=r"samples.parquet changed since .* --rescore-stale"):
        evaluate(_source("identity"), ds, "test", results, FAST)


def test_a_checkpoint_is_recognised_by_its_bytes_not_its_path(tmp_path, ds):
    results, first, moved = tmp_path / "res", tmp_path / "a.pt", tmp_path / "b" / "a.pt"
    first.write_bytes(b"weights")
    [report] = evaluate(_source("identity"), ds, "test", results, FAST, first)
    moved.parent.mkdir()
    shutil.copy(first, moved)
    [again] = evaluate(_source("identity"), ds, "test", results, FAST, moved)
    assert (again.scored, again.skipped) == (0, report.scored)
    moved.write_bytes(b"trained further")
    with pytest.raises(EvalError, match="another checkpoint"):
        evaluate(_source("identity"), ds, "test", results, FAST, moved)


def test_results_made_otherwise_are_scored_again_when_asked(tmp_path, ds):
    results = tmp_path / "res"
    [first] = evaluate(_source("identity"), ds, "syn-streak", results, FAST)
    other = EvalSettings(metrics=("piqe",), crops=2, rescore_stale=True)
    [again] = evaluate(_source("identity"), ds, "syn-streak", results, other)
    assert (again.scored, again.skipped) == (first.scored, 0)
    table = _table(results, "identity", "syn-streak")
    assert "piqe" in table.columns and "psnr_y" not in table.columns
    info = json.loads((results / "identity" / "ds" / "syn-streak.json").read_text())
    assert info["metrics"] == ["piqe"] and info["finished_at"] is not None
    [third] = evaluate(_source("identity"), ds, "syn-streak", results, other)
    assert (third.scored, third.skipped) == (0, first.scored)


def test_an_output_path_outside_the_results_is_refused(tmp_path, ds):
    # Split names are checked where the manifest is read; this is the second guard.
    with pytest.raises(EvalError, match="outside the results folder"):
        eval_module._SplitRun(
            _source("identity"), eval_module.Dataset(ds), "ds", "../../../x", "real",
            tmp_path / "res", FAST, None,
        )  # fmt: skip


def test_a_split_none_of_the_metrics_applies_to_is_left_out_and_said(tmp_path, ds):
    # Real rain has no ground truth: a full-reference metric cannot score it, and
    # derained for no metric at all, it would fill the leaderboard with empty rows.
    results, only = tmp_path / "res", replace(FAST, metrics=("psnr_y", "ssim_y"))
    with pytest.warns(eval_module.EvalWarning) as warned:
        reports = evaluate(_source("identity"), ds, "all", results, only)
    assert [r.split for r in reports] == ["syn-streak"]
    [message] = [str(w.message) for w in warned]
    assert message.startswith(
        "ds/test (real) not evaluated: psnr_y, ssim_y need a ground truth, which it has not; "
        "--metrics with any of "
    )
    assert "niqe" in message and "psnr" not in message.split("any of")[1]
    assert not list((results / "identity" / "ds").glob("*test*"))
    with pytest.raises(
        EvalError,
        match=r"nothing to evaluate: psnr_y needs a ground truth, "
        r"which its real split 'test' has not; give --metrics with any of .*niqe",
    ):
        evaluate(_source("identity"), ds, "test", results, replace(FAST, metrics=("psnr_y",)))
    assert not list((results / "identity" / "ds").glob("*test*"))  # nothing written
    # A metric that applies to it keeps the split in, scored with that metric alone.
    [report] = evaluate(
        _source("identity"), ds, "test", results, replace(FAST, metrics=("psnr_y", "piqe"))
    )
    assert report.scored == 4 and _table(results, "identity", "test").piqe.notna().all()


def test_a_split_none_of_whose_metrics_can_run_here_is_refused_before_any_image(
    tmp_path, ds, monkeypatch
):
    # Derained for no score, its results would then refuse the run that has the weights.
    def create_metric(name, **options):
        raise MetricError(f"{name} needs its_weights.pth, found nowhere")

    monkeypatch.setattr(eval_module, "create_metric", create_metric)
    results = tmp_path / "res"
    with pytest.raises(EvalError) as refused:
        evaluate(_Failing(), ds, "test", results, replace(FAST, metrics=("piqe",)))
    assert str(refused.value) == (
        "no metric can score ds/test here, so nothing was derained: "
        "piqe needs its_weights.pth, found nowhere"
    )
    assert not results.exists()


def test_the_cli_says_which_split_is_left_out_and_refuses_when_all_are(tmp_path, ds):
    def run(split):
        return subprocess.run(
            [sys.executable, "-m", "rainbench", "eval", "--model", "identity", "--dataset",
             str(ds), "--split", split, "--results", str(tmp_path / "res"), "--metrics",
             "psnr_y", "--no-progress"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip

    left_out = run("all")
    assert left_out.returncode == 0, left_out.stderr
    assert left_out.stderr.startswith("warning: ds/test (real) not evaluated: psnr_y needs ")
    assert left_out.stderr.count("\n") == 1 and "ds/syn-streak (synthetic)" in left_out.stdout
    refused = run("test")
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.startswith(f"error: {ds}: nothing to evaluate: psnr_y needs")
    assert refused.stderr.count("\n") == 1


def test_a_method_named_as_the_reference_crops_folder_is_refused(tmp_path, ds):
    source = DerainerSource(create_derainer("identity"), "cpu", None, 32, name="._reference")
    with pytest.raises(EvalError, match=r"cannot be named '._reference': _reference/ holds"):
        evaluate(source, ds, "test", tmp_path / "res", FAST)
    assert not (tmp_path / "res").exists()


def test_an_unknown_split_names_the_known_ones(tmp_path, ds):
    with pytest.raises(EvalError, match="known: syn-streak, test"):
        evaluate(_source("identity"), ds, "nope", tmp_path / "res", FAST)


def test_without_torch_eval_says_what_to_install(tmp_path, ds, monkeypatch):
    # Every derainer runs under torch: without it, one line naming the extra, and
    # nothing written, not a traceback (nor a results file of failed rows).
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(EvalError, match=r"needs torch .*pip install 'rainbench\[eval\]'$"):
        evaluate(_source("guided"), ds, "test", tmp_path / "res", FAST)
    assert not (tmp_path / "res").exists()


def test_a_split_with_nothing_to_derain_says_so(tmp_path):
    # The split is there (stats lists it), but holds only clean captures (or videos,
    # scored through their pairs): not "no split", but why and what can be evaluated.
    for spec in sample_specs(2, seed=9, size=(160, 120)):
        write_capture(tmp_path / "clean", spec)
    ds = tmp_path / "ds"
    everything_test = {"train": 0.0, "val": 0.0, "test": 1.0}
    ingest([tmp_path / "clean"], ds, IngestOptions(workers=1, layer="clean", split=everything_test))
    synthesize(ds, SynthOptions(recipes=("streak",), workers=1))
    with pytest.raises(EvalError, match=r"'test' holds no rainy stills.*evaluate: syn-streak$"):
        evaluate(_source("identity"), ds, "test", tmp_path / "res", FAST)


def test_an_external_command_derainer(tmp_path, ds):
    script = tmp_path / "theirs.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys
            from pathlib import Path
            from PIL import Image, ImageOps
            source, target = Path(sys.argv[1]), Path(sys.argv[2])
            for path in source.glob("*.png"):
                ImageOps.invert(Image.open(path).convert("RGB")).save(target / path.name)
            """
        )
    )
    command = f"{sys.executable} {script} {{input_dir}} {{output_dir}}"
    source = DerainerSource(CommandDerainer(command, name="inverter"), "cpu", None, 32)
    [report] = evaluate(source, ds, "syn-streak", tmp_path / "res", FAST)
    assert (report.scored, report.failed) == (3, 0)
    table = _table(tmp_path / "res", "inverter", "syn-streak")
    assert (table.psnr_y < 15).all()  # inverted pictures are far from the ground truth


def test_outputs_computed_elsewhere(tmp_path, ds):
    identity = tmp_path / "identity"
    evaluate(_source("identity"), ds, "syn-streak", identity, FAST)
    expected = _table(identity, "identity", "syn-streak")
    # Write the rainy inputs as someone's outputs, one missing.
    outputs = tmp_path / "outputs"
    run = eval_module._SplitRun(
        _source("identity"), eval_module.Dataset(ds), "ds", "syn-streak", "synthetic",
        identity, FAST, None,
    )  # fmt: skip
    items = list(run._items(run._manifest_rows()))
    for item in items[1:]:
        eval_module._save_png(outputs / f"{item.key}.png", item.rain)
    [report] = evaluate(FolderSource(outputs, "theirs"), ds, "syn-streak", tmp_path / "r", FAST)
    assert (report.scored, report.failed) == (3, 1)
    table = _table(tmp_path / "r", "theirs", "syn-streak")
    assert table.loc[items[0].key].status == "failed"
    for item in items[1:]:
        assert table.loc[item.key].psnr_y == expected.loc[item.key].psnr_y


def test_the_cli_runs_eval_and_reports(tmp_path, ds):
    """Without --results, both commands use the folder `results` where they run."""
    result = subprocess.run(
        [sys.executable, "-m", "rainbench", "eval", "--model", "identity", "--dataset", str(ds),
         "--split", "syn-streak", "--metrics", "psnr_y", "--no-progress"],
        capture_output=True, text=True, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "ds/syn-streak (synthetic): 3 scored, 0 failed, 0 already done" in result.stdout
    np.testing.assert_array_equal(
        _table(tmp_path / "results", "identity", "syn-streak").status.to_numpy(), ["ok"] * 3
    )
    board = subprocess.run(
        [sys.executable, "-m", "rainbench", "leaderboard"],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    )  # fmt: skip
    assert "identity" in board.stdout and "PSNR-Y" in board.stdout


def test_batches_hold_one_size_each_and_never_pile_up(tmp_path, ds, monkeypatch):
    run = eval_module._SplitRun(
        _source("identity"), eval_module.Dataset(ds), "ds", "test", "real",
        tmp_path, EvalSettings(batch=3), None,
    )  # fmt: skip
    shapes = [(8 + index % 5, 8, 3) for index in range(40)]  # five sizes, interleaved
    held = []

    def items(rows):
        for index, shape in enumerate(shapes):
            held.append(index)
            yield eval_module.Item(str(index), None, np.zeros(shape, np.uint8), None)

    monkeypatch.setattr(run, "_items", items)
    seen = []
    for batch in run._batches([]):
        assert len({item.rain.shape for item in batch}) == 1 and len(batch) <= 3
        seen.extend(int(item.key) for item in batch)
        assert len(held) - len(seen) <= 3  # read but not yet handed out
    assert sorted(seen) == list(range(40))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_the_gpu_the_scores_are_those_of_the_cpu(tmp_path, ds):
    evaluate(_source("identity"), ds, "syn-streak", tmp_path / "cpu", FAST)
    gpu = DerainerSource(create_derainer("identity", device="cuda"), "cuda", 64, 16)
    settings = EvalSettings(metrics=FAST.metrics, device="cuda", batch=2, tile=64, overlap=16)
    evaluate(gpu, ds, "syn-streak", tmp_path / "gpu", settings)
    cpu_table = _table(tmp_path / "cpu", "identity", "syn-streak")
    gpu_table = _table(tmp_path / "gpu", "identity", "syn-streak")
    pd.testing.assert_frame_equal(cpu_table[list(FULL_REFERENCE)], gpu_table[list(FULL_REFERENCE)])
    # PIQE's thresholds: float32 on both, not TF32 on the GPU (noref.full_float32).
    np.testing.assert_allclose(gpu_table.piqe, cpu_table.piqe, atol=1e-3)
    assert gpu_table.peak_mem_mb.notna().all()


def test_torch_threads_are_chosen_or_given_recorded_and_given_back(tmp_path, ds):
    # The run derains on the count its provenance records; its caller (a notebook's
    # session) has its own count back when it returns, also when it fails.
    seen = []

    def notes(batch: torch.Tensor) -> torch.Tensor:
        seen.append(torch.get_num_threads())
        return batch.clone()

    source = DerainerSource(_Returns(notes), "cpu", None, 32)
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        evaluate(source, ds, "test", tmp_path / "a", FAST)
        chosen = json.loads((tmp_path / "a" / "returns" / "ds" / "test.json").read_text())
        # Chosen: what $OMP_NUM_THREADS asks for (tests/conftest.py), not the caller's 3.
        assert set(seen) == {chosen["threads"]} == {1} and torch.get_num_threads() == 3
        seen.clear()
        given = EvalSettings(metrics=FAST.metrics, threads=2)
        evaluate(source, ds, "test", tmp_path / "b", given)
        info = json.loads((tmp_path / "b" / "returns" / "ds" / "test.json").read_text())
        assert set(seen) == {info["threads"]} == {2} and torch.get_num_threads() == 3
        stops = DerainerSource(_Returns(_raises(KeyboardInterrupt())), "cpu", None, 32)
        with pytest.raises(KeyboardInterrupt):
            evaluate(stops, ds, "test", tmp_path / "c", given)
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


# --- the method's name, its origin, and why earlier results are refused -----------------


class _Unnamed(Derainer):
    """A plug-in's class that keeps the base class's `name`."""

    version = "1"

    def __init__(self, device: str = "cpu", gain: float = 1.0):
        super().__init__(device)
        self.gain = gain

    def derain(self, batch: torch.Tensor) -> torch.Tensor:
        return batch * self.gain

    def options(self) -> dict:
        return {"gain": self.gain}


@pytest.fixture
def unnamed_derainers(monkeypatch):
    """Two registered derainers, `plain` and `dimmed`, whose class has one `name`."""
    list_derainers()  # the built-ins first
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    for name, gain in (("plain", 1.0), ("dimmed", 0.5)):
        register(
            DerainerSpec(
                name,
                "a test derainer",
                lambda checkpoint, device, gain=gain, **options: _Unnamed(device, gain, **options),
            )
        )


def _registered(model, name=None, **options):
    return DerainerSource.from_registry(model, name, None, "cpu", None, 32, options)


def test_results_are_filed_under_the_registered_name_not_the_class_name(
    tmp_path, ds, unnamed_derainers
):
    results = tmp_path / "res"
    [plain] = evaluate(_registered("plain"), ds, "test", results, FAST)
    [dimmed] = evaluate(_registered("dimmed"), ds, "test", results, FAST)
    assert (plain.scored, dimmed.scored, dimmed.skipped) == (4, 4, 0)
    assert sorted(p.name for p in results.iterdir()) == ["_reference", "dimmed", "plain"]
    info = json.loads((results / "dimmed" / "ds" / "test.json").read_text())
    assert info["model"]["name"] == info["model"]["registered"] == "dimmed"
    # Where the code came from: a built-in here, rainbench's own module and version.
    assert info["model"]["source"] == {
        "package": "rainbench",
        "version": rainbench.__version__,
        "module": __name__,
    }


def test_a_variant_is_filed_under_its_own_name_beside_the_method(tmp_path, ds, unnamed_derainers):
    results = tmp_path / "res"
    evaluate(_registered("plain"), ds, "test", results, FAST)
    [variant] = evaluate(_registered("plain", "plain-dim", gain=0.25), ds, "test", results, FAST)
    assert variant.scored == 4 and variant.path == results / "plain-dim" / "ds" / "test.parquet"
    info = json.loads((results / "plain-dim" / "ds" / "test.json").read_text())
    assert info["model"]["name"] == "plain-dim" and info["model"]["registered"] == "plain"
    assert info["model"]["options"] == {"gain": 0.25}
    # Another derainer under a name in use is refused, naming the derainers.
    with pytest.raises(EvalError, match=r"registered 'plain' → 'dimmed'"):
        evaluate(_registered("dimmed", "plain-dim", gain=0.25), ds, "test", results, FAST)


def test_a_variant_the_derainer_names_itself_is_filed_apart(tmp_path, ds, unnamed_derainers):
    # As NLCL does with a published release's weights: nlcl-published beside nlcl.
    class Published(_Unnamed):
        name = "plain-published"

    register(DerainerSpec("plain", "a test derainer", lambda c, d, **o: Published(d, **o)))
    assert _registered("plain").name == "plain-published"
    assert _registered("plain", "mine").name == "mine"  # --name still decides
    register(DerainerSpec("plain", "a test derainer", lambda c, d, **o: _Unnamed(d, **o)))
    assert _registered("plain").name == "plain"


def test_a_derainer_built_in_another_folder_is_put_back(
    tmp_path, unnamed_derainers, capsys, monkeypatch
):
    def moves(checkpoint, device, **options):
        print("loading weights")
        os.chdir("/")
        return _Unnamed(device)

    register(DerainerSpec("mover", "a test derainer", moves))
    monkeypatch.chdir(tmp_path)
    with pytest.warns(eval_module.EvalWarning, match="mover changed the working directory"):
        _registered("mover")
    assert os.getcwd() == str(tmp_path)
    assert capsys.readouterr().out == ""


class _Kernel(_Unnamed):
    def options(self) -> dict:
        return {"kernel": (3, 3)}


def test_a_derainer_with_a_tuple_option_resumes_its_results(tmp_path, ds, unnamed_derainers):
    # The provenance holds the tuple as a list: compared as it was, the finished run
    # run again was refused as made with another model.
    register(DerainerSpec("kernel", "a test derainer", lambda c, device: _Kernel(device)))
    results = tmp_path / "res"
    evaluate(_registered("kernel"), ds, "test", results, FAST)
    [again] = evaluate(_registered("kernel"), ds, "test", results, FAST)
    assert (again.scored, again.skipped) == (0, 4)


class _Unrecorded(_Unnamed):
    def __init__(self, device, options):
        super().__init__(device)
        self.recorded = options

    def options(self) -> dict:
        if isinstance(self.recorded, Exception):
            raise self.recorded
        return self.recorded


@pytest.mark.parametrize(
    ("made", "said"),
    [
        (lambda device: None, "could not be built: its factory returned NoneType, not a Derainer"),
        (lambda device: _Unrecorded(device, {"f": open}), "TypeError: Object of type builtin_"),
        (lambda device: _Unrecorded(device, {"a": math.nan}), "ValueError: Out of range float"),
        (lambda device: _Unrecorded(device, RuntimeError("no\nrecord")), "RuntimeError: no$"),
    ],
    ids=["no-derainer", "not-json", "nan", "raises"],
)
def test_a_plugin_whose_derainer_eval_cannot_use_is_one_line(unnamed_derainers, made, said):
    register(DerainerSpec("odd", "a test derainer", lambda c, device: made(device)))
    with pytest.raises(
        DerainerError,
        match=rf"^derainer odd \(built-in\)(: its info\(\) is no JSON record: )?.*{said}",
    ):
        _registered("odd")


def test_a_refusal_names_what_differs(tmp_path, ds, unnamed_derainers):
    results = tmp_path / "res"
    evaluate(_registered("plain"), ds, "test", results, FAST)
    with pytest.raises(
        EvalError, match=r"another model \(options \{'gain': 1.0\} → \{'gain': 0.5\}\)"
    ):
        evaluate(_registered("plain", gain=0.5), ds, "test", results, FAST)
    evaluate(_registered("plain"), ds, "syn-streak", results, FAST)
    other = replace(FAST, metrics=("piqe",))
    with pytest.raises(EvalError, match=r"another metrics \(\['psnr_y', .*'piqe'\] → \['piqe'\]\)"):
        evaluate(_registered("plain"), ds, "syn-streak", results, other)
    weights = tmp_path / "a.pt"
    weights.write_bytes(b"trained")
    sha = eval_module.file_sha256(weights)
    with pytest.raises(EvalError, match=rf"another checkpoint \(sha256 none → {sha[:12]}…\)"):
        evaluate(_registered("plain"), ds, "test", results, FAST, weights)


def test_every_split_is_checked_before_any_image_is_derained(tmp_path, ds, monkeypatch):
    results, weights = tmp_path / "res", tmp_path / "a.pt"
    weights.write_bytes(b"trained")
    evaluate(_source("identity"), ds, "test", results, FAST)
    derained = []
    monkeypatch.setattr(DerainerSource, "run", lambda self, items, split: derained.append(split))
    # syn-streak, first in order, could be scored; test's results are of no checkpoint.
    with pytest.raises(EvalError, match=r"test.json: made with another checkpoint"):
        evaluate(_source("identity"), ds, "all", results, FAST, weights)
    assert derained == [] and not (results / "identity" / "ds" / "syn-streak.json").exists()
    monkeypatch.undo()
    evaluate(_source("identity"), ds, "syn-streak", results, FAST)
    with pytest.raises(EvalError) as refused:
        evaluate(_source("identity"), ds, "all", results, FAST, weights)
    message = str(refused.value)
    assert "the earlier results of 2 splits" in message and "\n" not in message
    assert "syn-streak.json made with another checkpoint" in message
    assert "test.json made with another checkpoint" in message
    # A variant goes beside them under its own --name, as docs/evaluation.md files one.
    assert message.endswith(
        "; give another --name (a variant beside them) or --results folder, or "
        "--rescore-stale to score them again"
    )


def test_outputs_elsewhere_are_known_by_each_file_not_the_folder(tmp_path, ds):
    run = eval_module._SplitRun(
        _source("identity"), eval_module.Dataset(ds), "ds", "syn-streak", "synthetic",
        tmp_path, FAST, None,
    )  # fmt: skip
    items = list(run._items(run._manifest_rows()))
    outputs = tmp_path / "outputs"
    for item in items:
        eval_module._save_png(outputs / "syn-streak" / f"{item.key}.png", item.rain)
    results = tmp_path / "res"
    [first] = evaluate(FolderSource(outputs, "theirs"), ds, "syn-streak", results, FAST)
    assert (first.scored, first.failed) == (3, 0)
    table = _table(results, "theirs", "syn-streak")
    # Not timed here: no speed, rather than a speed of 0 that would rank first.
    assert table.seconds.isna().all() and table.s_per_mp.isna().all()

    moved = shutil.copytree(outputs, tmp_path / "elsewhere" / "outputs")
    eval_module._save_png(moved / "test" / "another-split.png", items[0].rain)
    [again] = evaluate(FolderSource(moved, "theirs"), ds, "syn-streak", results, FAST)
    assert (again.scored, again.skipped, again.dropped) == (0, 3, 0)

    eval_module._save_png(moved / "syn-streak" / f"{items[0].key}.png", items[1].rain)
    [changed] = evaluate(FolderSource(moved, "theirs"), ds, "syn-streak", results, FAST)
    assert (changed.scored, changed.skipped, changed.dropped) == (1, 2, 1)


class _Returns(Derainer):
    """Returns what `answer(batch)` makes of the batch."""

    name, version = "returns", "1"

    def __init__(self, answer):
        super().__init__()
        self.answer = answer

    def derain(self, batch: torch.Tensor):
        return self.answer(batch)


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (lambda b: b * 255, r"returned values up to 2\d\d(\.\d+)?: expected \[0, 1\]"),
        (lambda b: (b * 255).round().to(torch.uint8), "returned uint8 values, expected floats"),
        (lambda b: b - 2, r"returned values down to -\d(\.\d+)?: expected \[0, 1\]"),
        (lambda b: b.numpy(), r"returned ndarray, expected a torch.Tensor of shape \(1, 3, 8, 8\)"),
        (lambda b: (b, None), "returned tuple, expected a torch.Tensor"),
    ],
)
def test_outputs_of_the_wrong_type_or_range_fail_their_images(answer, error):
    rng = np.random.default_rng(0)
    pixels = [rng.integers(30, 230, (8, 8, 3), dtype=np.uint8) for _ in range(2)]
    items = [eval_module.Item(str(i), None, image, None) for i, image in enumerate(pixels)]
    outputs = DerainerSource(_Returns(answer), "cpu", None, 32).run(items, "test")
    assert [output.image for output in outputs] == [None, None]
    for output in outputs:
        assert re.fullmatch(error + ".*", output.error), output.error


def _grey_items(*levels: int) -> list:
    return [
        eval_module.Item(str(i), None, np.full((8, 8, 3), level, np.uint8), None)
        for i, level in enumerate(levels)
    ]


def test_a_batch_answered_with_the_wrong_shape_is_run_again_one_image_at_a_time():
    def answer(batch):
        if len(batch) > 1:
            return batch[:1]
        return batch[:, :, :-1] if batch.mean() > 0.5 else batch  # only the bright image

    outputs = DerainerSource(_Returns(answer), "cpu", None, 32).run(_grey_items(200, 50), "test")
    assert [output.error for output in outputs] == [
        "returned shape (1, 3, 7, 8), expected (1, 3, 8, 8)",
        None,
    ]
    assert outputs[0].image is None and outputs[1].image is not None


class _Unprintable(Exception):
    def __str__(self):
        raise ValueError("no words for it")


def _raises(error: BaseException):
    def answer(batch):
        raise error

    return answer


@pytest.mark.parametrize(
    ("error", "said"), [(_Unprintable(), "_Unprintable"), (SystemExit(3), "SystemExit: 3")]
)
def test_an_exception_without_words_or_an_exit_fails_its_images(error, said):
    outputs = DerainerSource(_Returns(_raises(error)), "cpu", None, 32).run(
        _grey_items(200, 50), "test"
    )
    # No time is recorded for work that did not finish: a row says 0 s for none.
    assert [(output.image, output.error, output.seconds) for output in outputs] == [
        (None, said, None)
    ] * 2


def test_an_interrupt_in_a_derainer_ends_the_run():
    source = DerainerSource(_Returns(_raises(KeyboardInterrupt())), "cpu", None, 32)
    with pytest.raises(KeyboardInterrupt):
        source.run(_grey_items(200), "test")


def _meddles(batch: torch.Tensor) -> torch.Tensor:
    """A derainer that prints, moves to another folder and changes torch's threads."""
    print("derained", len(batch))
    os.chdir("/")
    torch.set_num_threads(torch.get_num_threads() + 1)
    return batch.clone()


def test_what_a_derainer_prints_or_changes_of_the_process_is_kept_from_the_run(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    source = DerainerSource(_Returns(_meddles), "cpu", None, 32)
    with pytest.warns(eval_module.EvalWarning) as warned:
        outputs = source.run(_grey_items(9), "test") + source.run(_grey_items(9), "test")
    assert [output.error for output in outputs] == [None, None]
    assert (os.getcwd(), torch.get_num_threads()) == (str(tmp_path), threads)
    assert [str(warning.message) for warning in warned] == [
        # once each, not once per batch
        f"returns changed the working directory to /: put back to {tmp_path}",
        f"returns set torch's CPU threads to {threads + 1}: put back to {threads}, as the "
        "provenance records",
    ]
    printed = capsys.readouterr()
    assert printed.out == ""  # stdout is the command's: --json
    assert printed.err == "derained 1\n" * 2


def _moves(batch: torch.Tensor) -> torch.Tensor:
    os.chdir("/")
    return batch.clone()


def test_a_derainer_changing_folder_leaves_the_results_where_they_were_asked(
    tmp_path, ds, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # the dataset and the results by relative paths
    with pytest.warns(eval_module.EvalWarning, match="changed the working directory"):
        [report] = evaluate(
            DerainerSource(_Returns(_moves), "cpu", None, 32), "ds", "test", Path("res"), FAST
        )
    assert (report.scored, report.failed) == (4, 0)
    assert sorted(p.name for p in (tmp_path / "res" / "returns" / "ds").glob("test.*")) == [
        "test.crops",
        "test.json",
        "test.parquet",
    ]


def test_a_small_overshoot_is_clipped_and_scored():
    image = np.full((8, 8, 3), 200, np.uint8)
    item = eval_module.Item("k", None, image, None)
    source = DerainerSource(_Returns(lambda b: b + 0.3), "cpu", None, 32)
    [output] = source.run([item], "test")
    assert output.error is None and output.image.max() == 255


# --- what the command line says ------------------------------------------------------


def test_the_summary_counts_scored_and_failed_apart_and_names_kept_failures(tmp_path, ds):
    all_failed = eval_module.SplitReport("ds", "test", "real", tmp_path, scored=3, failed=3)
    assert (
        "ds/test (real): 0 scored, 3 failed, 0 already done ->"
        in (leaderboard_cli._report_lines([all_failed])[0])
    )
    results = tmp_path / "res"
    evaluate(DerainerSource(_Flaky(), "cpu", None, 32), ds, "test", results, FAST)
    [again] = evaluate(DerainerSource(_Flaky(), "cpu", None, 32), ds, "test", results, FAST)
    assert again.failed_before == 3
    [line] = leaderboard_cli._report_lines([again])
    assert "0 scored, 0 failed, 4 already done (3 of them failed before: --retry-failed" in line


def test_a_split_of_one_image_trained_on_is_said_in_the_singular(tmp_path):
    report = eval_module.SplitReport(
        "ds", "train", "real", tmp_path, scored=1, model="nlcl", trained_on={"images": 1, "of": 1}
    )
    [_, line] = leaderboard_cli._report_lines([report])
    assert line == "nlcl on ds/train: trained on 1 of its 1 image — shown, not ranked"


def test_a_run_whose_one_image_failed_says_so_in_the_singular(tmp_path, capsys):
    path = tmp_path / "test.parquet"
    one = eval_module.SplitReport("ds", "test", "real", path, scored=1, failed=1)
    with pytest.raises(SystemExit) as stopped:
        leaderboard_cli._fail_when_every_image_failed([one])
    assert stopped.value.code == 1
    assert capsys.readouterr().err == (
        f"error: the one image derained failed (why: the error column of {one.path})\n"
    )


def test_each_report_line_stays_one_line_whatever_the_names_hold(tmp_path):
    """A --name (the results folder) or a model name holding a line break."""
    path = tmp_path / "x\ny" / "ds" / "test.parquet"
    report = eval_module.SplitReport(
        "ds", "test", "real", path, scored=2, model="x\ny", trained_on={"images": 1, "of": 2}
    )
    lines = leaderboard_cli._report_lines([report])
    assert len(lines) == 2 and not any("\n" in line for line in lines)
    assert "x\\ny" in lines[0] and lines[1].startswith("x\\ny on ds/test: trained on 1")


def test_name_files_a_registered_derainer_and_timeout_goes_to_the_command(tmp_path, ds):
    runner = CliRunner()
    results = tmp_path / "res"
    common = ["--dataset", str(ds), "--split", "syn-streak", "--metrics", "psnr_y"]
    common += ["--no-progress", "--results", str(results)]
    named = runner.invoke(main, ["eval", "--model", "identity", "--name", "ident-2", *common])
    assert named.exit_code == 0, named.output
    assert (results / "ident-2" / "ds" / "syn-streak.parquet").is_file()
    assert not (results / "identity").exists()
    slow = f"{sys.executable} -c 'import time; time.sleep(5)' {{input_dir}} {{output_dir}}"
    timed = runner.invoke(
        main,
        ["eval", "--model-cmd", slow, "--name", "slow", "--timeout", "0.5", *common],
    )  # fmt: skip
    # Every image failed: results kept, and the run fails, saying where to look.
    assert timed.exit_code == 1, timed.output
    assert "0 scored, 3 failed, 0 already done" in timed.stdout
    parquet = results / "slow" / "ds" / "syn-streak.parquet"
    assert timed.stderr == (
        f"error: every one of the 3 images derained failed (why: the error column of {parquet})\n"
    )
    errors = set(_table(results, "slow", "syn-streak").error)
    assert errors == {"DerainerError: slow: the command ran past its 0.5 s timeout"}
    # Results from when the timeout was one of the command's options, or made with
    # another timeout, are of the same model.
    sidecar = results / "slow" / "ds" / "syn-streak.json"
    record = json.loads(sidecar.read_text())
    record["model"]["options"] = {"timeout": record["model"].pop("timeout")}
    sidecar.write_text(json.dumps(record))
    again = runner.invoke(
        main, ["eval", "--model-cmd", slow, "--name", "slow", "--timeout", "2", *common]
    )
    assert again.exit_code == 0 and "already done" in again.output, again.output
    wrong = runner.invoke(main, ["eval", "--model", "identity", "--timeout", "5", *common])
    assert wrong.exit_code == 2 and "--timeout is for --model-cmd" in wrong.output


def test_tile_with_outputs_made_elsewhere_is_a_usage_error(tmp_path, ds):
    # Nothing is derained here: a provenance saying it was tiled would be false, and would
    # refuse the same run without --tile as made otherwise.
    results = tmp_path / "res"
    args = ["eval", "--dataset", str(ds), "--outputs", str(tmp_path), "--name", "theirs"]
    tiled = CliRunner().invoke(main, [*args, "--tile", "64", "--results", str(results)])
    assert tiled.exit_code == 2 and "--tile is for --model and --model-cmd" in tiled.output
    assert not results.exists()


# --- several results folders on one leaderboard ----------------------------------------


def test_several_results_folders_make_one_leaderboard(tmp_path, write_run):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    write_run(ours, "guided", "ds", "test", kind="real", metrics={"niqe": [5.0] * 3})
    write_run(theirs, "median", "ds", "test", kind="real", metrics={"niqe": [4.0] * 3})
    merged = load_results([ours, theirs])
    assert sorted(run.model for run in merged.runs) == ["guided", "median"]
    # Named after both folders, not the first alone: its files are in both.
    assert render_markdown(merged).startswith("# rainbench leaderboard: ours + theirs\n")
    page = render_html(merged)
    assert "<title>rainbench leaderboard: ours + theirs</title>" in page
    assert "from 2 result files in <code>ours</code> and <code>theirs</code>." in page
    board = CliRunner().invoke(
        main, ["leaderboard", "--results", str(ours), "--results", str(theirs)]
    )
    assert board.exit_code == 0, board.output
    assert "guided" in board.output and "median" in board.output
    write_run(theirs, "guided", "ds", "test", kind="real", metrics={"niqe": [3.0] * 3})
    clash = CliRunner().invoke(
        main, ["leaderboard", "--results", str(ours), "--results", str(theirs)]
    )
    assert clash.exit_code == 1
    assert f"guided/ds/test is in both {ours} and {theirs}" in clash.output


def test_one_results_folder_named_twice_is_read_once(tmp_path, write_run):
    ours = tmp_path / "ours"
    write_run(ours, "guided", "ds", "test", kind="real", metrics={"niqe": [5.0] * 3})
    (tmp_path / "link").symlink_to(ours)
    with contextlib.chdir(tmp_path):
        for again in (ours, Path("link")):
            board = CliRunner().invoke(
                main, ["leaderboard", "--results", "ours", "--results", str(again)]
            )
            assert board.exit_code == 0, board.output
            assert board.output.count("| guided 1.0 |") == 1


def test_on_ray_the_actors_find_the_outputs_named_here(tmp_path, ds, monkeypatch):
    # An actor builds its source in its worker's folder: `--outputs derained/` must not
    # be looked for there.
    for folder in ("derained", "elsewhere", "weights"):
        (tmp_path / folder).mkdir()
    built = []

    def on_ray(build, address, dataset, split, results, settings, checkpoint, progress):
        with contextlib.chdir(tmp_path / "elsewhere"):
            built.append((build(settings), settings.weights_dir))
        return []

    monkeypatch.setattr(leaderboard_cli, "evaluate_on_ray", on_ray)
    monkeypatch.chdir(tmp_path)
    args = ["eval", str(ds), "--outputs", "derained", "--name", "theirs", "--results", "res"]
    result = CliRunner().invoke(main, [*args, "--weights-dir", "weights", "--ray", "auto"])
    assert result.exit_code == 0, result.output
    assert isinstance(built[0][0], FolderSource) and built[0][1] == tmp_path / "weights"


class _TwoActors:
    """RayActors, in this process: two actors taking the units in turn (each split's
    one shard), the second on a node without what piqe needs; questions go to the first."""

    def __init__(self, address, build, gpu, most):
        self.actors = [build(), build()]
        built, unavailable = eval_module._build_metrics("real", self.actors[1].settings)
        without = [(name, metric) for name, metric in built if name != "piqe"]
        self.actors[1].metrics["real"] = (without, {**unavailable, "piqe": "piqe needs X.pth"})
        self.calls = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def ask(self, fn, question):
        return fn(self.actors[0], question)

    def map_unordered(self, fn, units, split=None, lost=None):
        for unit in units:
            actor = self.actors[self.calls % 2]
            self.calls += 1
            yield fn(actor, unit)


def test_on_ray_a_metric_an_actor_cannot_run_fails_its_rows(tmp_path, ds, monkeypatch):
    # The first actor says piqe runs; rows of the one whose node lacks its weights had a
    # null piqe, status ok and no error: taken as done, even by --retry-failed.
    monkeypatch.setattr(eval_module, "RayActors", _TwoActors)
    settings = replace(FAST, metrics=("psnr_y", "piqe"))

    def build(settings):
        return _source("identity")

    reports = eval_module.evaluate_on_ray(build, "ray", ds, "all", tmp_path / "res", settings)
    real = next(report for report in reports if report.kind == "real")
    assert (real.scored, real.failed, real.metric_failed) == (4, 0, 4)
    table = _table(tmp_path / "res", "identity", "test")
    assert table.piqe.isna().all() and (table.status == "ok").all()
    assert set(table.error) == {
        "piqe: cannot run on the Ray worker that scored it: piqe needs X.pth"
    }
    paired = _table(tmp_path / "res", "identity", "syn-streak")
    assert paired.piqe.notna().all() and paired.error.isna().all()
