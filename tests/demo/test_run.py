"""Tests for rainbench.demo.run: the whole journey at a tiny size (small captures, two
NLCL steps) ends with a leaderboard listing every evaluated method on the real and the
synthetic splits; every stage leaves its mark; a second run redoes nothing."""

import csv
import errno
import json
import re
import signal
from dataclasses import replace

import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from PIL.ExifTags import Base

from rainbench.demo.run import (
    DEMO_NLCL,
    MARK,
    STAGES,
    DemoError,
    DemoOptions,
    _check_out,
    _Demo,
    _mark,
    run_demo,
)
from rainbench.metrics.registry import MetricError, create_metric
from rainbench.metrics.weights import WEIGHTS_ENV, status
from rainbench.models.registry import list_derainers
from rainbench.shards.dataset import Dataset
from rainbench.shards.verify import verify
from rainbench.synth import splits as splits_module
from rainbench.train.nlcl.trainer import NLCLMethod

# Weight files are tried from a port where nothing listens: the download fails at once.
TINY = DemoOptions(
    width=128,
    nlcl=replace(DEMO_NLCL, steps=2, checkpoint_every=1, log_every=1),
    workers=2,
    weights_url="http://127.0.0.1:1",
)
SYNTHETIC = ["syn-drizzle", "syn-fog-like", "syn-storm", "syn-streak"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo"
    return run_demo(out, TINY)


def _sections(markdown: str) -> dict[str, str]:
    """The leaderboard's Markdown split into its per-split sections, by title."""
    parts = re.split(r"^## (.+)$", markdown, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


@pytest.mark.slow
def test_leaderboard_lists_every_method_on_real_and_synthetic_splits(demo):
    expected = [s.name for s in list_derainers() if not s.needs_checkpoint or s.name == "nlcl"]
    assert demo.methods == expected and "nlcl" in expected
    assert demo.splits == ["test", *SYNTHETIC, "lab-pairs"]
    sections = _sections(demo.leaderboard_md.read_text(encoding="utf-8"))
    titles = {title.split(" (")[0]: title for title in sections}
    assert set(titles) == {f"demo / {split}" for split in demo.splits}
    assert "real rain" in titles["demo / test"]
    assert all("synthetic rain" in titles[f"demo / {s}"] for s in SYNTHETIC)
    # The tripod video's pairs, with how their ground truth was made and how good it is.
    assert "ground truth estimated from video" in titles["demo / lab-pairs"]
    assert "Ground truth by pairs:" in sections[titles["demo / lab-pairs"]]
    page = demo.leaderboard_html.read_text(encoding="utf-8")
    for title, section in sections.items():
        for method in demo.methods:
            # Unranked ("—") where the ranking metric is undefined on every image: NIQE,
            # when its parameters are installed, needs 96 px a side, more than TINY's.
            row = rf"^\| (\d+|—) \| {method} "
            assert re.search(row, section, re.MULTILINE), (method, title)
    for split in demo.splits:
        assert f"demo / {split}" in page
    for method in demo.methods:
        assert page.count(f">{method}<") >= len(demo.splits)


@pytest.mark.slow
def test_metrics_without_weights_are_left_out_and_named_with_the_fix(demo):
    missing = {}
    for name in ("niqe", "brisque", "piqe"):
        try:
            create_metric(name)
        except MetricError as error:
            missing[name] = str(error)
    assert demo.unavailable_metrics == missing
    markdown = demo.leaderboard_md.read_text(encoding="utf-8")
    for why in missing.values():
        assert why in markdown and "rainbench weights" in why
    assert "PIQE" in markdown  # it needs no weights


@pytest.mark.slow
def test_missing_weight_files_are_tried_and_the_demo_goes_on_without_them(demo):
    missing = {found.file.name for found in status() if not found.present}
    assert set(demo.weights) == missing & {"niqe_modelparameters.mat", "brisque_svm_weights.pth"}
    for name, outcome in demo.weights.items():
        assert outcome.startswith(f"cannot download {name} from http://127.0.0.1:1/{name}")
    stage = next(stage for stage in demo.stages if stage.name == "weights")
    assert all(f"{name}: not fetched, left out" in stage.detail for name in demo.weights)


def test_the_weights_stage_keeps_what_it_downloads(tmp_path, server, monkeypatch):
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "weights"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    folder, url = server
    (folder / "brisque_svm_weights.pth").write_bytes(b"svm")  # no checksum is published
    demo = _Demo(tmp_path / "demo", replace(TINY, weights_url=url), progress=False)
    detail = demo._weights()
    assert (tmp_path / "weights" / "brisque_svm_weights.pth").read_bytes() == b"svm"
    assert detail == (
        "niqe_modelparameters.mat: not fetched, left out; brisque_svm_weights.pth: fetched"
    )
    assert "HTTP 404" in demo.result.weights["niqe_modelparameters.mat"]
    off = _Demo(tmp_path / "demo", replace(TINY, fetch_weights=False), progress=False)
    assert off._weights() == "not downloading niqe_modelparameters.mat (--no-fetch)"


@pytest.mark.slow
def test_every_stage_leaves_its_mark(demo):
    assert [stage.name for stage in demo.stages] == list(STAGES)
    assert all(stage.detail and stage.seconds >= 0 for stage in demo.stages)
    capture = next((demo.raw / "rainy").rglob("SAM_0001.jpg"))
    assert Image.open(capture).getexif()[Base.Make] == "samsung"
    rainy = demo.ingest["rainy"]
    assert rainy.duplicates == 1 and rainy.near_duplicates >= 1
    assert sum(rainy.rejected.values()) == len(list((demo.raw / "rainy" / "bad").iterdir()))
    with open(demo.labels, encoding="utf-8") as handle:
        labels = list(csv.DictReader(handle))
    assert demo.tagging.manual == len(labels)
    assert all(row["note"].startswith(f"rendered as {row['rain_type']}") for row in labels)
    assert (demo.run / "nlcl.pt").is_file() and (demo.run / "losses.csv").is_file()
    for method in demo.methods:
        for split in demo.splits:
            assert (demo.results / method / "demo" / f"{split}.parquet").is_file()
    json.dumps(demo.to_dict())  # everything in it is JSON


@pytest.mark.slow
def test_running_again_redoes_nothing(demo):
    again = run_demo(demo.out, TINY)
    assert again.ingest["rainy"].accepted == again.ingest["clean"].accepted == 0
    details = {stage.name: stage.detail for stage in again.stages}
    assert "already written" in details["captures"]
    assert "already trained to step 2" in details["train"]
    assert " 0 images scored" in details["eval"] and ", 0 failed" in details["eval"]
    assert "already there" in details["synth"]


@pytest.mark.slow
def test_training_further_scores_nlcl_again(demo):
    longer = replace(TINY, nlcl=replace(TINY.nlcl, steps=3))
    again = run_demo(demo.out, longer)
    details = {stage.name: stage.detail for stage in again.stages}
    assert "trained to step 3" in details["train"] and "resumed at step 2" in details["train"]
    # Only nlcl's results were made with another checkpoint.
    images = sum(len(pq.read_table(path)) for path in (demo.results / "nlcl").rglob("*.parquet"))
    assert f" {images} images scored" in details["eval"]


def test_a_demo_killed_in_synth_goes_on_past_verify_and_finishes_it(tmp_path, monkeypatch):
    class Killed(BaseException):
        """Stands in for SIGKILL: nothing after the crash point runs."""

    def killed(tmp, path):  # the shard finished under its temporary name, not renamed
        raise Killed

    demo = _Demo(tmp_path / "demo", TINY, progress=False)
    for stage in ("captures", "ingest", "tag", "verify"):
        getattr(demo, f"_{stage}")()
    with monkeypatch.context() as patch:
        patch.setattr(splits_module, "publish", killed)
        with pytest.raises(Killed):
            demo._synth()
    dataset = Dataset(demo.result.dataset)
    assert [p.kind for p in verify(dataset, 1)] == ["stray-temporary"]
    again = _Demo(tmp_path / "demo", TINY, progress=False)
    for stage in ("captures", "ingest", "tag", "verify", "synth"):
        getattr(again, f"_{stage}")()  # the same command, to where it was killed and on
    assert verify(dataset, 1) == []


class Terminated(Exception):
    """Stands in for the end SIGTERM's default action brings the process."""


def _terminated(number, frame):
    raise Terminated


@pytest.mark.slow
@pytest.mark.parametrize(
    ("number", "ends_in"), [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)]
)
def test_a_signal_that_stops_training_stops_the_demo_and_a_run_again_resumes(
    tmp_path, monkeypatch, number, ends_in
):
    calls, original = [], NLCLMethod.step

    def step(self, *args) -> dict:
        calls.append(len(calls) + 1)
        if len(calls) == 2:
            signal.raise_signal(number)  # Ctrl-C or a scheduler, during the second step
        return original(self, *args)

    four = replace(TINY, nlcl=replace(TINY.nlcl, steps=4))
    demo = _Demo(tmp_path / "demo", four, progress=False)
    for stage in ("captures", "ingest", "tag", "verify"):
        getattr(demo, f"_{stage}")()
    # Python's own handlers, whatever this process inherited (a background job ignores SIGINT).
    handlers = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: _terminated}
    before = {each: signal.signal(each, handler) for each, handler in handlers.items()}
    try:
        with monkeypatch.context() as patch:
            patch.setattr(NLCLMethod, "step", step)
            with pytest.raises(ends_in):
                demo._train()  # not on to the weights, eval and leaderboard stages
    finally:
        for each, handler in before.items():
            signal.signal(each, handler)
    last = torch.load(demo.result.run / "checkpoints" / "last.pt", weights_only=True)
    assert last["step"] == 2
    again = _Demo(tmp_path / "demo", four, progress=False)._train()
    assert "trained to step 4" in again and "resumed at step 2" in again


def test_a_missing_requirement_is_one_line_saying_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(
        "rainbench.demo.run.find_spec", lambda name: None if name == "skimage" else object()
    )
    with pytest.raises(
        DemoError, match=r'^the demo needs scikit-image: pip install "rainbench\[demo\]"'
    ):
        run_demo(tmp_path / "demo", TINY)
    assert not (tmp_path / "demo").exists()


def test_a_full_disk_as_the_captures_are_written_names_the_demos_folder(tmp_path, file_size_limit):
    # The capture folder is the demo's own writing: its errors name no file by themselves.
    with pytest.raises(OSError) as full, file_size_limit(1000):
        run_demo(tmp_path / "demo", TINY)
    assert full.value.errno == errno.EFBIG and full.value.filename == str(tmp_path / "demo")
    assert sorted(path.name for path in (tmp_path / "demo").iterdir()) == [MARK, "raw.partial"]


def test_a_folder_of_the_users_is_refused_before_anything_is_written(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "labels.csv").write_text("key,rain_type\nmy,storm\n")  # a sheet the demo writes too
    with pytest.raises(DemoError, match=r"is not empty and not a demo's folder \(it holds labels"):
        run_demo(mine, TINY)
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(DemoError, match=r"\(it holds notes.txt\)"):
        run_demo(mine, TINY)
    with pytest.raises(DemoError, match="is not a folder"):
        run_demo(mine / "notes.txt", TINY)
    assert sorted(path.name for path in mine.iterdir()) == ["labels.csv", "notes.txt"]
    assert (mine / "labels.csv").read_text() == "key,rain_type\nmy,storm\n"


def test_a_folder_laid_out_as_a_demos_or_a_demo_of_other_captures_is_refused(tmp_path, demo):
    # A project of the user's, as the docs lay one out: its labels.csv is never replaced.
    mine = tmp_path / "project"
    (mine / "raw" / "rainy").mkdir(parents=True)
    (mine / "labels.csv").write_text("key,rain_type\nmy,storm\n")
    said = r"holds what a demo writes \(labels.csv, raw\) but not a demo's mark"
    with pytest.raises(DemoError, match=said):
        run_demo(mine, TINY)
    assert sorted(path.name for path in mine.iterdir()) == ["labels.csv", "raw"]
    # A demo resumes only on the captures it made: other ones would mix into its dataset.
    said = rf"holds a demo made with --width {TINY.width} --seed {TINY.seed}: run it again"
    with pytest.raises(DemoError, match=said):
        run_demo(demo.out, replace(TINY, seed=TINY.seed + 1))
    with pytest.raises(DemoError, match=said):
        run_demo(demo.out, replace(TINY, width=TINY.width * 2))


def test_a_demos_folder_is_still_its_once_its_captures_are_removed_to_be_written_again(tmp_path):
    # The captures stage says "remove it to write it again"; done, the folder was refused
    # as not a demo's, though it held the demo's mark and only what the demo writes.
    out = tmp_path / "demo"
    _mark(out, TINY)
    for name in ("ds", "runs", "results"):
        (out / name).mkdir()
    (out / "labels.csv").write_text("source_path,rain_type,note\n")
    _check_out(out, TINY)
    (out / MARK).unlink()
    with pytest.raises(DemoError, match=r"not a demo's folder \(it holds ds, labels.csv, res"):
        _check_out(out, TINY)
