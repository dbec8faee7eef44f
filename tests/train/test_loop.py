"""The shared trainer core: NLCL, moved onto it, logs the very losses it logged before
the move (same seed, sizes and thread count). On the machine that recorded them they
are byte for byte the same; another CPU's vector units may round float32 sums
differently, so the test allows that (1e-5 relative), and no more.

Then, on NLCL at that size, the core's run folders (refused when not a run, locked,
started afresh without a checkpoint), its checkpoints (a bad last.pt, how many are
kept), the learning rate's schedule, settings changed on resume, and SIGINT/SIGTERM."""

import csv
import errno
import io
import json
import os
import re
import shutil
import signal
import tarfile
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

from rainbench.data import SkippedSample
from rainbench.shards.dataset import DatasetError
from rainbench.shards.members import ShardError
from rainbench.train.core import loop
from rainbench.train.core.config import SettingsError
from rainbench.train.core.loop import RunBusy, TrainWarning, set_lr
from rainbench.train.nlcl.config import NLCLConfig
from rainbench.train.nlcl.trainer import NLCLMethod, train

# losses.csv of 3 steps of the previous, self-contained NLCL trainer on the tiny dataset
# (tests/train/conftest.py) with the settings below, one CPU thread.
BEFORE_THE_MOVE = """\
step,epoch,lr,total,adversarial,consistency,sparsity,layer_contrast,location_contrast,discriminator
1,0,0.0002,8.655750274658203,0.7154314517974854,0.445627361536026,0.47521549463272095,2.804703950881958,4.6424665451049805,0.49981582164764404
2,0,0.0002,6.550394058227539,0.4136500954627991,0.23118069767951965,0.324518084526062,2.386188507080078,3.4869232177734375,0.2483142912387848
3,0,0.0002,7.163961410522461,0.8488708138465881,0.4175424873828888,0.5352157354354858,2.3861947059631348,3.457831859588623,0.15802830457687378
"""

SETTINGS = NLCLConfig(
    steps=3, crop=48, channels=8, blocks=2, window=16, patch=8, positives=4, negatives=16,
    nce_layers=(0, 1, 2, 3), nce_locations=32, workers=0, checkpoint_every=3, log_every=1,
)  # fmt: skip


def test_nlcl_on_the_core_logs_byte_identical_losses(tmp_path: Path, _dataset):
    train(_dataset, tmp_path / "run", SETTINGS, threads=1)
    logged = (tmp_path / "run" / "losses.csv").read_text()
    before, now = (list(csv.DictReader(io.StringIO(text))) for text in (BEFORE_THE_MOVE, logged))
    assert logged.splitlines()[0] == BEFORE_THE_MOVE.splitlines()[0]  # the same columns
    assert len(now) == len(before)
    for old, new in zip(before, now, strict=True):
        assert {k: float(v) for k, v in new.items()} == pytest.approx(
            {k: float(v) for k, v in old.items()}, rel=1e-5
        )


# The core's handling of run folders, checkpoints and settings, on NLCL at the size above.
def _with(**changes) -> NLCLConfig:
    return replace(SETTINGS, **{"steps": 2, "checkpoint_every": 1, **changes})


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _steps(run: Path) -> list[int]:
    return sorted(int(path.stem.split("-")[1]) for path in (run / "checkpoints").glob("step-*"))


def test_a_bad_validation_split_stops_the_run_before_anything_is_written(tmp_path, _dataset):
    run = tmp_path / "run"
    typo = _with(validate_every=1, val_split="syn-strek")
    with pytest.raises(DatasetError, match=r"validation \(--val-split\): no pairs in split"):
        train(_dataset, run, typo, threads=1)
    assert not run.exists()  # the folder it made, and its lock, gone again
    with pytest.raises(DatasetError, match=r"cannot train on .*nowhere does not exist"):
        train(tmp_path / "nowhere", tmp_path / "runs" / "first", _with(), threads=1)
    assert sorted(os.listdir(tmp_path)) == []


def test_a_run_stopped_by_a_capture_that_does_not_read_resumes_with_on_error_skip(
    tmp_path, _dataset
):
    ds = shutil.copytree(_dataset, tmp_path / "ds")
    samples = pd.read_parquet(ds / "manifests" / "samples.parquet")
    row = samples[samples.layer == "rainy"].iloc[0]
    with tarfile.open(ds / row.shard, "a") as tar:  # a later member of the name wins
        info = tarfile.TarInfo(f"{row.key}.{row.members[0]}")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"junk!"))
    run = tmp_path / "run"
    with pytest.raises(ShardError, match=f"{row.key}.{row.members[0]}: does not decode"):
        train(ds, run, _with(steps=4), threads=1)
    with pytest.warns(SkippedSample, match=f"skipped: sample {row.key} replaced by "):
        report = train(ds, run, _with(steps=4, on_error="skip"), threads=1)
    assert report.step == 4
    with pytest.raises(SettingsError, match="on_error must be raise or skip, not 'ignore'"):
        _with(on_error="ignore")


def test_a_run_without_checkpoints_starts_afresh_whatever_its_settings(tmp_path, _dataset):
    # What a run that stopped before its first checkpoint leaves: settings and logs.
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(_with(crop=56, val_split="x").to_json()))
    (run / "run.json").write_text(json.dumps({"captures": "of another dataset"}))
    (run / "losses.csv").write_text("step,epoch,lr\n1,0,0.1\n")
    report = train(_dataset, run, _with(steps=1), threads=1)
    assert report.resumed_from is None
    assert json.loads((run / "config.json").read_text())["crop"] == 48
    assert json.loads((run / "run.json").read_text())["captures"]["rainy"]["count"] == 4
    assert [row["lr"] for row in _rows(run / "losses.csv")] == ["0.0002"]


def test_a_log_row_cut_short_by_a_full_disk_is_dropped_on_resume(tmp_path):
    # The disk filled as step 12's row was appended, after 1 of its digits; the run
    # resumes from its checkpoint at step 2.
    log = tmp_path / "losses.csv"
    log.write_text("step,epoch,lr\n1,0,0.1\n2,0,0.1\n11,1,0.1\n1", encoding="utf-8")
    loop._truncate(log, 2)
    assert log.read_text(encoding="utf-8").splitlines() == ["step,epoch,lr", "1,0,0.1", "2,0,0.1"]


def test_a_log_row_the_disk_had_no_room_for_names_the_log(tmp_path, file_size_limit):
    log = tmp_path / "losses.csv"
    with pytest.raises(OSError) as full, file_size_limit(20):
        loop._Log._append(log, {"step": 1, "epoch": 0, "lr": 0.0002, "loss": 0.123456789})
    assert full.value.errno == errno.EFBIG and full.value.filename == str(log)


# The board's thread ends with the error the writer raises again: its traceback, which
# pytest turns into this warning, would say the same once more at length.
@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_tensorboard_on_a_full_disk_is_one_error_naming_its_folder(tmp_path, file_size_limit):
    log = loop._Log(tmp_path, ("loss",), enabled=True, resumed_at=0)
    # Room for losses.csv's rows (≈ 20 bytes a step), not for the board's (≈ 70).
    with pytest.raises(OSError) as full, file_size_limit(1000):
        for step in range(1, 40):  # the board's thread writes; a later call says it failed
            log.write(step, 0, 0.0002, {"loss": 0.5})
        log.close()
    assert full.value.errno == errno.EFBIG
    assert full.value.filename == str(tmp_path / "tensorboard")


def test_a_run_folder_is_new_empty_or_a_run(tmp_path, _dataset):
    with pytest.raises(DatasetError, match=r"is a rainbench dataset; give --out a folder"):
        train(_dataset, _dataset, _with(), threads=1)
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "IMG_0001.JPG").write_bytes(b"a photo")
    (photos / ".DS_Store").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"not empty and not a nlcl run \(it holds IMG_0001"):
        train(_dataset, photos, _with(), threads=1)
    assert sorted(p.name for p in photos.iterdir()) == [".DS_Store", "IMG_0001.JPG"]
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / ".hidden").write_bytes(b"")
    assert train(_dataset, empty, _with(steps=1), threads=1).step == 1


def test_a_run_being_trained_is_refused_naming_its_holder(tmp_path, _dataset):
    from click.testing import CliRunner

    from rainbench.cli import main
    from rainbench.shards.dataset import writer_lock

    run = tmp_path / "run"
    run.mkdir()
    with writer_lock(run / ".lock"):  # as a trainer in another process holds it
        with pytest.raises(RunBusy, match=r"another rainbench command is training into .*: pid"):
            train(_dataset, run, _with(steps=1), threads=1)
        args = ["train", "nlcl", str(_dataset), "--out", str(run), "--crop", "48", "--channels",
                "8", "--blocks", "2", "-j", "0", "--steps", "1", "--no-progress"]  # fmt: skip
        busy = CliRunner().invoke(main, args)
    assert busy.exit_code == 3 and "is training into" in busy.output, busy.output
    assert not (run / "config.json").exists()
    assert train(_dataset, run, _with(steps=1), threads=1).step == 1  # let go: it trains


def test_a_bad_last_checkpoint_resumes_from_the_newest_step_checkpoint(tmp_path, _dataset):
    run = tmp_path / "run"
    train(_dataset, run, _with(steps=3), threads=1)
    last = run / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])  # cut short
    with pytest.warns(TrainWarning, match=r"last\.pt cannot be read .*from step-0000003\.pt"):
        assert train(_dataset, run, _with(steps=4), threads=1).resumed_from == 3
    last.unlink()
    (run / "checkpoints" / "step-0000004.pt").write_text("not a checkpoint\n")
    with pytest.warns(TrainWarning, match=r"last\.pt is missing; resuming from step-0000003"):
        assert train(_dataset, run, _with(steps=5), threads=1).resumed_from == 3
    for path in (run / "checkpoints").iterdir():
        path.write_text("damaged\n")
    with pytest.raises(DatasetError, match=r"no checkpoint of .* can be read \(last\.pt: dam"):
        train(_dataset, run, _with(steps=6), threads=1)
    assert (run / "checkpoints" / "step-0000005.pt").read_text() == "damaged\n"  # not overwritten


def test_a_last_checkpoint_that_is_a_fifo_or_of_other_networks_is_not_resumed(tmp_path, _dataset):
    run = tmp_path / "run"
    train(_dataset, run, _with(steps=3), threads=1)
    last = run / "checkpoints" / "last.pt"
    state = torch.load(last, weights_only=True)
    last.unlink()
    os.mkfifo(last)  # read, it would wait for a writer forever
    with pytest.warns(TrainWarning, match=r"last\.pt cannot be read .*from step-0000003\.pt"):
        assert train(_dataset, run, _with(steps=4), threads=1).resumed_from == 3
    # Torch's own first line names no difference: "Error(s) in loading state_dict for …".
    weights = state["background"]
    first = next(iter(weights))
    fits = r"last\.pt does not fit this run's networks \("
    for change, why in (
        ({first: torch.zeros(1, 2, 3)},  # a tensor of another network
         rf"its background weights hold shape \(1, 2, 3\) for '{re.escape(first)}', this run's "
         r"network \(\d+(, \d+)*\)"),
        ({first: None}, rf"its background weights hold no tensor for '{re.escape(first)}'"),
        ({"extra.weight": torch.zeros(1)},
         r"its background weights hold 'extra\.weight', which this run's network has not"),
    ):  # fmt: skip
        torch.save({**state, "background": {**weights, **change}}, last)
        with pytest.raises(DatasetError, match=fits + why):
            train(_dataset, run, _with(steps=5), threads=1)
    lacking = {**weights}
    del lacking[first]
    for background, why in ((lacking, rf"lack '{re.escape(first)}'"), ([], "are a list")):
        torch.save({**state, "background": background}, last)
        with pytest.raises(DatasetError, match=rf"its background weights {why}\); delete it"):
            train(_dataset, run, _with(steps=5), threads=1)
    del state["background"]
    torch.save(state, last)
    with pytest.raises(DatasetError, match=r"\(its background weights are missing\)"):
        train(_dataset, run, _with(steps=5), threads=1)


def test_a_checkpoint_of_another_device_or_malformed_is_refused_in_one_line(tmp_path, _dataset):
    # Before: tracebacks (a CUDA run resumed with --device cpu among them).
    run = tmp_path / "run"
    train(_dataset, run, _with(steps=1), threads=1)
    (run / "checkpoints" / "step-0000001.pt").unlink()
    last = run / "checkpoints" / "last.pt"
    state = torch.load(last, weights_only=True)
    cuda = {**state["rng"], "sampler": torch.zeros(16, dtype=torch.uint8)}  # seed, offset
    malformed = [
        ({"rng": cuda}, r"last\.pt holds the random state of a sampler on another kind of "
                        r"device than cpu: resume with the --device the run trained on"),
        ({"step": "1"}, r"last\.pt: its step is '1', not a count of steps"),
        ({"step": -1}, r"last\.pt: its step is -1, not a count of steps"),
        ({"config": [1]}, r"last\.pt: its config is not what this trainer writes"),
        ({"loader": {"epoch": 0}}, r"last\.pt holds a loader position or random states this "
                                   r"trainer cannot restore \(no 'consumed'\)"),
        ({"rng": {"torch": 1}}, r"cannot restore \(no 'sampler'\)"),
        ({"layout": "1 × 1"}, r"cannot restore \(string indices must be integers"),
    ]  # fmt: skip
    for change, says in malformed:
        torch.save({**state, **change}, last)
        with pytest.raises(DatasetError, match=says):
            train(_dataset, run, _with(steps=2), threads=1)


def test_only_the_newest_step_checkpoints_are_kept(tmp_path, _dataset):
    run = tmp_path / "run"
    train(_dataset, run, _with(steps=4, keep_checkpoints=2), threads=1)
    assert _steps(run) == [3, 4]
    assert (run / "checkpoints" / "last.pt").exists() and (run / "nlcl.pt").exists()
    with pytest.warns(TrainWarning, match=r"keep_checkpoints: 2 → 0"):  # 0: all from now on
        train(_dataset, run, _with(steps=5, keep_checkpoints=0), threads=1)
    assert _steps(run) == [3, 4, 5]


class _Killed(BaseException):
    """Stands in for SIGKILL: nothing after the crash point runs, no handler catches it."""


def test_a_run_killed_while_saving_its_last_step_ends_with_that_steps_derainer(
    tmp_path, _dataset, monkeypatch
):
    run, config = tmp_path / "run", _with(steps=2)
    original = loop.save_atomic

    def save_atomic(state, path):
        if path.name == "nlcl.pt" and state["step"] == 2:
            raise _Killed  # at the last step, killed as it saves the derainer
        original(state, path)

    with monkeypatch.context() as patch:
        patch.setattr(loop, "save_atomic", save_atomic)
        with pytest.raises(_Killed):
            train(_dataset, run, config, threads=1)
    train(_dataset, run, config, threads=1)  # the same command again
    derainer = torch.load(run / "nlcl.pt", weights_only=True)
    last = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert derainer["step"] == last["step"] == 2
    for name, tensor in last["background"].items():
        assert torch.equal(derainer["background"][name], tensor), name


def test_a_step_checkpoint_cut_short_by_a_kill_leaves_no_temporary_file(tmp_path, _dataset):
    # Before: a resume with another --checkpoint-every never saved that step again, and
    # its temporary file (up to CCLGAN's 348 MB) stayed in checkpoints/ for good.
    run = tmp_path / "run"
    train(_dataset, run, _with(steps=1), threads=1)
    cut_short = run / "checkpoints" / ".step-0000002.pt.tmp"  # killed as it saved step 2
    cut_short.write_bytes(bytes(1000))
    with pytest.warns(TrainWarning, match="checkpoint_every: 1 → 3"):
        train(_dataset, run, _with(steps=3, checkpoint_every=3), threads=1)
    assert not cut_short.exists()
    assert _steps(run) == [1, 3]


def test_a_run_killed_as_it_validates_resumes_with_that_validation(tmp_path, _dataset, monkeypatch):
    # Validation follows the checkpoint of its step: before, the resumed run went on from
    # that checkpoint and its validation row was never written.
    config = _with(steps=4, checkpoint_every=2, validate_every=2, val_split="syn-streak",
                   val_images=1)  # fmt: skip
    train(_dataset, tmp_path / "whole", config, threads=1)

    def validate(*args):
        raise _Killed  # at step 2, its checkpoint saved

    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(loop, "validate", validate)
        with pytest.raises(_Killed):
            train(_dataset, run, config, threads=1)
    assert train(_dataset, run, config, threads=1).resumed_from == 2
    assert _rows(run / "validation.csv") == _rows(tmp_path / "whole" / "validation.csv")
    assert [int(row["step"]) for row in _rows(run / "validation.csv")] == [2, 4]


def test_tensorboard_shows_the_steps_a_resumed_run_trains_again_once(tmp_path, _dataset):
    events = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    run = tmp_path / "run"
    train(_dataset, run, _with(steps=4, checkpoint_every=2), threads=1)
    for name in ("last.pt", "step-0000004.pt"):  # as if killed before step 4's checkpoint
        (run / "checkpoints" / name).unlink()
    with pytest.warns(TrainWarning, match=r"last\.pt is missing; resuming from step-0000002"):
        train(_dataset, run, _with(steps=4, checkpoint_every=2), threads=1)
    board = events.EventAccumulator(str(run / "tensorboard"))
    board.Reload()
    # Steps 3 and 4 were logged by both runs; the first run's are dropped, as in losses.csv.
    totals = {event.step: event.value for event in board.Scalars("loss/total")}
    assert [event.step for event in board.Scalars("loss/total")] == [1, 2, 3, 4]
    assert totals == {int(row["step"]): float(row["total"]) for row in _rows(run / "losses.csv")}


def test_a_resume_killed_while_it_drops_log_rows_keeps_the_log(tmp_path, monkeypatch):
    log = tmp_path / "losses.csv"
    log.write_text("step,total\r\n1,0.5\r\n2,0.4\r\n3,0.3\r\n")
    before = log.read_bytes()

    def killed(self, rows):
        raise _Killed  # while the rows up to the checkpoint's step are written back

    with monkeypatch.context() as patch:
        patch.setattr(csv.DictWriter, "writerows", killed)
        with pytest.raises(_Killed):
            loop._truncate(log, 2)
    assert log.read_bytes() == before
    loop._truncate(log, 2)
    assert log.read_bytes() == b"step,total\r\n1,0.5\r\n2,0.4\r\n"


def test_a_resume_that_validates_on_other_things_keeps_each_score_in_its_column(tmp_path):
    # --val-split and --val-real may change on resume: a niqe row under a psnr_y header
    # would read as psnr_y, and a row shorter than the header as one cut short (dropped).
    for resumed_at, scores in ((0, {"psnr_y": 20.0, "psnr_y_identity": 19.0}),
                               (2, {"niqe": 7.0, "niqe_identity": 6.0}),
                               (4, {"psnr_y": 21.0, "psnr_y_identity": 19.0})):  # fmt: skip
        log = loop._Log(tmp_path, (), enabled=True, resumed_at=resumed_at)
        log.validation(resumed_at + 2, scores)
        log.close()
    loop._Log(tmp_path, (), enabled=True, resumed_at=6).close()
    with open(tmp_path / "validation.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows == [
        {"step": "2", "psnr_y": "20.0", "psnr_y_identity": "19.0", "niqe": "", "niqe_identity": ""},
        {"step": "4", "psnr_y": "", "psnr_y_identity": "", "niqe": "7.0", "niqe_identity": "6.0"},
        {"step": "6", "psnr_y": "21.0", "psnr_y_identity": "19.0", "niqe": "", "niqe_identity": ""},
    ]


def test_the_learning_rate_is_a_function_of_the_step():
    model = torch.nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    rates = []
    for step in range(6):
        set_lr([optimizer], _with(steps=6, decay_steps=3, lr=1.0), step)
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates == [1.0, 1.0, 1.0, 0.75, 0.5, 0.25]  # decays over the last 3, as CUT's


def test_steps_and_decay_change_on_resume_only_before_the_decay(tmp_path, _dataset):
    run = tmp_path / "run"
    train(_dataset, run, _with(steps=2), threads=1)
    # Step 3 on decays: the two steps trained had lr under both schedules.
    train(_dataset, run, _with(steps=4, decay_steps=2), threads=1)
    assert [float(row["lr"]) for row in _rows(run / "losses.csv")] == pytest.approx(
        [2e-4, 2e-4, 2e-4 * 2 / 3, 2e-4 / 3]
    )
    with pytest.raises(DatasetError, match=r"steps: 4 → 8 the learning rate of step 3 on"):
        train(_dataset, run, _with(steps=8, decay_steps=2), threads=1)


def test_settings_of_how_a_run_is_run_may_change_on_resume_others_not(tmp_path, _dataset):
    run = tmp_path / "run"
    train(_dataset, run, _with(steps=1), threads=1)
    with pytest.raises(DatasetError, match=r"other settings \(crop: 48 → 40, lr: 0.0002 → 0.001\)"):
        train(_dataset, run, _with(steps=2, crop=40, lr=1e-3), threads=1)
    changed = {"log_every": 2, "checkpoint_every": 2, "keep_checkpoints": 1, "validate_every": 2,
               "val_split": "syn-streak", "val_images": 1}  # fmt: skip
    with pytest.warns(TrainWarning, match=r"resuming at step 1 with log_every: 1 → 2, ") as heard:
        assert train(_dataset, run, _with(steps=2, **changed), threads=1).resumed_from == 1
    [warned] = [str(w.message) for w in heard if "resuming" in str(w.message)]
    assert "val_split: none → syn-streak," in warned  # not Python's None
    [resumed] = json.loads((run / "run.json").read_text())["resumes"]
    assert resumed["step"] == 1
    assert resumed["changed"] == {
        "steps": [1, 2], "log_every": [1, 2], "checkpoint_every": [1, 2],
        "keep_checkpoints": [3, 1], "validate_every": [0, 2], "val_split": [None, "syn-streak"],
        "val_images": [8, 1],
    }  # fmt: skip
    assert json.loads((run / "config.json").read_text())["log_every"] == 2
    assert [int(row["step"]) for row in _rows(run / "validation.csv")] == [2]


def test_other_loader_processes_on_resume_go_on_with_the_next_epoch(tmp_path, _dataset):
    run = tmp_path / "run"
    train(_dataset, run, _with(steps=1), threads=1)
    with pytest.warns(TrainWarning) as heard:
        train(_dataset, run, _with(steps=2, workers=2), threads=1)
    resumed, skipped = (str(warning.message) for warning in heard)
    assert resumed.endswith("run: resuming at step 1 with workers: 0 → 2")
    assert skipped.endswith(
        "last.pt was saved by 1 × 1 loader processes (ranks × workers), this run has 1 × 2: "
        "the rest of epoch 0 is skipped, training goes on with epoch 1"
    )
    assert [row["epoch"] for row in _rows(run / "losses.csv")] == ["0", "1"]


def test_a_resume_over_the_captures_in_other_shards_goes_on_with_the_next_epoch(tmp_path):
    # The same captures ingested again into other shards are ordered otherwise. Before:
    # the loader refused the state in a line that named neither the checkpoint nor a way
    # on (other captures are refused before, as captures the run was not trained on).
    from rainbench.demo.captures import sample_specs, write_capture
    from rainbench.ingest import IngestOptions, ingest

    for layer, seed in (("rainy", 6), ("clean", 12)):
        for spec in sample_specs(3, seed=seed, size=(128, 96)):
            write_capture(tmp_path / layer, spec)

    def ingested(**options) -> Path:
        dataset = tmp_path / "ds"
        shutil.rmtree(dataset, ignore_errors=True)
        for layer in ("rainy", "clean"):
            settings = IngestOptions(workers=1, split={"train": 1.0}, layer=layer, **options)
            ingest([tmp_path / layer], dataset, settings)
        return dataset

    run = tmp_path / "run"
    train(ingested(), run, _with(steps=1), threads=1)
    dataset = ingested(shard_bytes=1)  # a shard each
    with pytest.warns(TrainWarning) as heard:
        train(dataset, run, _with(steps=2), threads=1)
    [skipped] = [str(w.message) for w in heard]
    assert skipped.endswith(
        "last.pt was saved over the same captures in other shards (ingested again since): "
        "the rest of epoch 0 is skipped, training goes on with epoch 1"
    )
    assert [row["epoch"] for row in _rows(run / "losses.csv")] == ["0", "1"]


def test_every_rank_has_as_many_batches_an_epoch_and_none_has_none(_dataset, monkeypatch):
    # Ranks train in step. Before: with 4 captures over 3 ranks, rank 0 had 2 batches an
    # epoch and ranks 1 and 2 one, so they went through their epochs apart, and a
    # checkpoint saved rank 0's epoch with the others' counts (its resume was not
    # exact); over 5 ranks, rank 4 had none and looped over empty epochs while the
    # others waited for it, forever.
    monkeypatch.setenv("WORLD_SIZE", "3")
    lengths = []
    for rank in range(3):
        monkeypatch.setenv("RANK", str(rank))
        lengths.append(len(loop._loader(_dataset, _with())))
    assert lengths == [1, 1, 1]
    monkeypatch.setenv("WORLD_SIZE", "5")
    says = r"^--batch 1 is more than the 0 crops each of rank 4 of 5's 1 loader processes"
    with pytest.raises(DatasetError, match=says):
        loop._loader(_dataset, _with())


class _Stopped(NLCLMethod):
    """NLCL, which gets `signal` during its second step of this process."""

    def __init__(self, number: signal.Signals):
        self.number, self.steps = number, 0

    def step(self, *args) -> dict:
        self.steps += 1
        if self.steps == 2:
            signal.raise_signal(self.number)
        return super().step(*args)


def test_a_stop_signal_saves_at_the_step_and_the_run_resumes_exactly(tmp_path, _dataset):
    config = _with(steps=4, checkpoint_every=100)
    train(_dataset, tmp_path / "whole", config, threads=1)
    run = tmp_path / "stopped"
    before = signal.getsignal(signal.SIGTERM)  # another test's library may have set one
    report = loop.train(_Stopped(signal.SIGTERM), _dataset, run, config, threads=1)
    assert (report.stopped_by, report.step) == ("SIGTERM", 2)
    assert _steps(run) == [2]
    assert signal.getsignal(signal.SIGTERM) == before  # given back
    assert train(_dataset, run, config, threads=1).resumed_from == 2
    assert _rows(run / "losses.csv") == _rows(tmp_path / "whole" / "losses.csv")
    ours = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    theirs = torch.load(tmp_path / "whole" / "checkpoints" / "last.pt", weights_only=True)
    for part in ("background", "rain", "discriminator"):
        for name, tensor in theirs[part].items():
            assert torch.equal(ours[part][name], tensor), f"{part}.{name}"
    # The random states too, so a checkpoint of a resumed run is the uninterrupted one's.
    assert torch.equal(ours["rng"]["torch"], theirs["rng"]["torch"])
    assert torch.equal(ours["rng"]["sampler"], theirs["rng"]["sampler"])


def test_ctrl_c_exits_130_with_one_line_after_saving(tmp_path, _dataset, monkeypatch):
    from click.testing import CliRunner

    from rainbench.cli import main

    calls, original = [], NLCLMethod.step

    def step(self, *args) -> dict:
        calls.append(len(calls) + 1)
        if len(calls) == 2:
            signal.raise_signal(signal.SIGINT)  # as Ctrl-C would, during the second step
        return original(self, *args)

    monkeypatch.setattr(NLCLMethod, "step", step)
    run = tmp_path / "run"
    args = ["train", "nlcl", str(_dataset), "--out", str(run), "--crop", "48", "--channels", "8",
            "--blocks", "2", "-j", "0", "--steps", "5", "--threads", "1"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 130, result.output
    assert result.output == (
        f"{run}: stopped by SIGINT after step 2, with a checkpoint there; the same command "
        "resumes\n"
    )
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"] == 2


def test_training_runs_on_its_threads_and_leaves_the_callers_as_they_were(
    tmp_path, _dataset, monkeypatch
):
    # Called from a notebook, training must not change the session's thread count (not
    # even when it fails); from the CLI, the steps run on the count --threads asks for.
    from click.testing import CliRunner

    from rainbench.cli import main

    seen, original = [], NLCLMethod.step

    def step(self, *args) -> dict:
        seen.append(torch.get_num_threads())
        return original(self, *args)

    monkeypatch.setattr(NLCLMethod, "step", step)
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        assert train(_dataset, tmp_path / "run", _with(steps=1), threads=2).threads == 2
        assert seen == [2] and torch.get_num_threads() == 3
        with pytest.raises(DatasetError, match="nowhere does not exist"):
            train(tmp_path / "nowhere", tmp_path / "other", _with(), threads=2)
        assert torch.get_num_threads() == 3
        args = ["train", "nlcl", str(_dataset), "--out", str(tmp_path / "cli"), "--crop", "48",
                "--channels", "8", "--blocks", "2", "-j", "0", "--steps", "1",
                "--threads", "2"]  # fmt: skip
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        assert seen == [2, 2]
    finally:
        torch.set_num_threads(before)


def test_rain_types_are_checked_against_the_taggers(tmp_path, _dataset):
    from click.testing import CliRunner

    from rainbench.cli import main

    with pytest.raises(SettingsError, match=r"snow is not a rain type; the rain types are driz"):
        _with(rain_types=("streak", "snow"))
    args = ["train", "nlcl", str(_dataset), "--out", str(tmp_path / "run"), "--rain-types",
            "snow", "--steps", "1"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "snow is not a rain type" in result.output
    assert not (tmp_path / "run").exists()


def test_rain_types_are_a_set_in_any_order(tmp_path):
    # Before: a run resumed with --rain-types storm,streak after streak,storm was refused
    # as trained with other settings, though it trains on the same captures.
    given = _with(rain_types=("storm", "streak", "storm"))
    assert given.rain_types == ("streak", "storm")  # as the tagger lists them
    assert not given.differences(_with(rain_types=("streak", "storm")))
    assert NLCLConfig.from_json({**given.to_json(), "rain_types": ["storm", "streak"]}) == given


def test_a_split_whose_rainy_captures_are_all_videos_is_refused_as_such(tmp_path):
    # Training reads stills; videos are pairs' material (rainbench pairs), not its.
    pytest.importorskip("av", reason="videos need rainbench[video]")
    import numpy as np

    from rainbench.demo.captures import sample_specs, write_capture
    from rainbench.ingest import IngestOptions, ingest
    from rainbench.synth.video import encode_h264

    (tmp_path / "raw").mkdir()
    encode_h264([np.full((48, 64, 3), 40 * n, np.uint8) for n in range(4)], tmp_path / "raw/a.mp4")
    ds = tmp_path / "ds"
    ingest([tmp_path / "raw"], ds, IngestOptions(workers=1, split={"train": 1.0}))
    videos = (
        r"^cannot train on .*ds: the {}captures of split train are all videos, which training "
        r"does not read \(it learns from still pictures\): choose a split of stills with "
        r"--split, or ingest rainy stills; rainbench pairs makes real pairs of the videos' "
        r"frames, for --val-split and rainbench eval$"
    )
    with pytest.raises(DatasetError, match=videos.format("")):
        train(ds, tmp_path / "run", _with(), threads=1)
    for spec in sample_specs(2, seed=9, size=(64, 48)):
        write_capture(tmp_path / "clean", spec)
    ingest([tmp_path / "clean"], ds, IngestOptions(workers=1, layer="clean", split={"train": 1.0}))
    with pytest.raises(DatasetError, match=videos.format("rainy ")):
        train(ds, tmp_path / "run", _with(), threads=1)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--validate-every", "1"], "--validate-every 1 has nothing to validate: give --val-split"),
        (["--val-split", "syn-streak"], "--val-split would never be used: validation runs every"),
        (["--val-real", "train"], "--val-real would never be used"),
        (["--val-split", "", "--validate-every", "1"], "--val-split is empty"),
        (["--validate-every", "1", "--val-real", "train", "--val-dataset", "."],
         "--val-dataset holds the pairs of --val-split"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("method", ["nlcl", "cclgan"])
def test_validation_options_that_would_go_unused_are_usage_errors(tmp_path, method, options, says):
    # Before: trained without validating, or logged a validation.csv of steps alone.
    from click.testing import CliRunner

    from rainbench.cli import main

    args = ["train", method, str(tmp_path / "ds"), "--out", str(tmp_path / "run"), *options]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and f"Error: {says}" in result.output, result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--lr", "-1", "-1.0 is not in the range x>0"),  # was Adam's traceback
        ("--lr", "nan", "nan is not a finite number"),
        ("--rain-temperature", "0", "0.0 is not in the range x>0"),  # was nan losses
        ("--rain-temperature", "nan", "nan is not a finite number"),
        ("--adversarial", "inf", "inf is not a finite number"),
        ("--temperature", "inf", "inf is not a finite number"),
    ],
)
def test_rates_weights_and_temperatures_are_finite_and_in_range(tmp_path, option, value, says):
    from click.testing import CliRunner

    from rainbench.cli import main

    for method in ("nlcl", "cclgan"):
        if option == "--rain-temperature" and method == "cclgan":
            continue
        args = ["train", method, str(tmp_path / "ds"), "--out", str(tmp_path / "run"), option,
                value]  # fmt: skip
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2 and says in result.output, result.output
        assert not (tmp_path / "run").exists()
