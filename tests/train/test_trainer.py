"""The NLCL training loop at a tiny size on the CPU: every loss term logged, validation,
checkpoints, an exact resume (an earlier trainer's checkpoint refused), the public
code's defects as switches, and the checkpoint scored through the leaderboard."""

import csv
import json
import math
import os
import shutil
import warnings
from dataclasses import replace
from importlib.metadata import version

import pyarrow as pa
import pytest
import torch

from rainbench.leaderboard.eval import EvalSettings, evaluate
from rainbench.leaderboard.sources import DerainerSource
from rainbench.models.registry import create_derainer
from rainbench.shards import manifest
from rainbench.shards.dataset import DatasetError
from rainbench.train.core import loop as loop_module
from rainbench.train.core.config import SettingsError
from rainbench.train.core.loop import plain, set_lr
from rainbench.train.nlcl.config import NLCLConfig
from rainbench.train.nlcl.model import NLCLModel
from rainbench.train.nlcl.trainer import (
    LOSS_TERMS,
    NLCLMethod,
    _train_step,
    build_optimizers,
    train,
)

TINY = NLCLConfig(
    steps=4,
    crop=48,
    channels=8,
    blocks=2,
    window=16,
    patch=8,
    positives=4,
    negatives=16,
    nce_layers=(0, 1, 2, 3),
    nce_locations=32,
    workers=0,
    checkpoint_every=2,
    log_every=1,
    validate_every=2,
    val_split="syn-streak",
    val_images=2,
)


def _rows(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_training_logs_every_term_validates_and_checkpoints(tmp_path, _dataset):
    run = tmp_path / "run"
    report = train(_dataset, run, TINY)
    assert report.step == 4 and report.resumed_from is None
    losses = _rows(run / "losses.csv")
    assert [int(r["step"]) for r in losses] == [1, 2, 3, 4]
    for row in losses:
        for term in LOSS_TERMS:
            assert math.isfinite(float(row[term])), term
    validation = _rows(run / "validation.csv")
    assert [int(r["step"]) for r in validation] == [2, 4]
    assert all(float(r["psnr_y"]) > 0 for r in validation)
    assert {p.name for p in (run / "checkpoints").iterdir()} == {
        "step-0000002.pt", "step-0000004.pt", "last.pt"
    }  # fmt: skip
    assert (run / "config.json").exists() and (run / "nlcl.pt").exists()


def test_validation_scores_niqe_on_real_rain_and_pairs_of_another_dataset(
    tmp_path, _dataset, any_niqe_parameters
):
    elsewhere = tmp_path / "paired"
    shutil.copytree(_dataset, elsewhere)
    settings = {"steps": 2, "val_real": "train", "val_dataset": str(elsewhere)}
    train(_dataset, tmp_path / "run", NLCLConfig(**{**TINY.to_json(), **settings}))
    [row] = _rows(tmp_path / "run" / "validation.csv")
    assert set(row) == {"step", "psnr_y", "psnr_y_identity", "niqe", "niqe_identity"}
    assert all(math.isfinite(float(value)) for value in row.values())
    shutil.rmtree(elsewhere)  # the pairs are read from there, not from the training set
    with pytest.raises(DatasetError):
        train(_dataset, tmp_path / "other", NLCLConfig(**{**TINY.to_json(), **settings}))


def test_niqe_validation_without_its_parameters_stops_before_training(
    tmp_path, _dataset, monkeypatch
):
    monkeypatch.setenv("RAINBENCH_WEIGHTS", str(tmp_path / "no-weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    config = NLCLConfig(**{**TINY.to_json(), "val_real": "train"})
    with pytest.raises(DatasetError, match=r"^validation \(--val-real\): niqe needs niqe_model"):
        train(_dataset, tmp_path / "run", config)
    assert not (tmp_path / "run" / "losses.csv").exists()


def test_resume_gives_the_same_next_steps_as_an_uninterrupted_run(tmp_path, _dataset):
    whole = tmp_path / "whole"
    train(_dataset, whole, TINY)
    halves = tmp_path / "halves"
    train(_dataset, halves, NLCLConfig(**{**TINY.to_json(), "steps": 2}))
    report = train(_dataset, halves, TINY)
    assert report.resumed_from == 2
    # The same losses at steps 3 and 4, and the same weights at the end.
    assert _rows(whole / "losses.csv")[2:] == _rows(halves / "losses.csv")[2:]
    ours = torch.load(halves / "checkpoints" / "last.pt", weights_only=True)
    theirs = torch.load(whole / "checkpoints" / "last.pt", weights_only=True)
    for part in ("background", "rain", "discriminator"):
        for name, tensor in theirs[part].items():
            assert torch.equal(ours[part][name], tensor), f"{part}.{name}"


def test_other_settings_are_refused_on_resume(tmp_path, _dataset):
    run = tmp_path / "run"
    train(_dataset, run, NLCLConfig(**{**TINY.to_json(), "steps": 1, "validate_every": 0}))
    with pytest.raises(DatasetError, match="other settings"):
        train(_dataset, run, NLCLConfig(**{**TINY.to_json(), "steps": 2, "crop": 40}))
    storms = NLCLConfig(**{**TINY.to_json(), "steps": 2, "rain_types": ("fog-like", "storm")})
    with pytest.raises(DatasetError, match=r"\(rain_types: none → storm,fog-like\)"):
        train(_dataset, run, storms)


def test_what_the_sampler_cannot_honour_is_refused_before_anything_is_made(tmp_path, _dataset):
    from click.testing import CliRunner

    from rainbench.cli import main

    with pytest.raises(SettingsError, match=r"--patch 64 is larger than --crop 48: .*at most 48"):
        replace(TINY, patch=64)
    # 48 px, window 16, patch 8: a reference near a border has 12 × 12 candidates.
    for field in ("positives", "negatives", "nce_locations"):
        flag = "--" + field.replace("_", "-")
        with pytest.raises(SettingsError, match=rf"^{flag} 1000 is more than the 144 centres"):
            train(_dataset, tmp_path / "run", replace(TINY, **{field: 1000}))
    assert not (tmp_path / "run").exists()
    args = ["train", "nlcl", str(_dataset), "--out", str(tmp_path / "run"), "--crop", "48"]
    result = CliRunner().invoke(main, [*args, "--patch", "64"])
    assert result.exit_code == 2 and "Error: --patch 64 is larger than --crop 48" in result.output


def test_fewer_steps_than_trained_are_refused_and_the_settings_kept(tmp_path, _dataset):
    run = tmp_path / "run"
    train(_dataset, run, NLCLConfig(**{**TINY.to_json(), "steps": 2, "validate_every": 0}))
    before = (run / "config.json").read_text()
    fewer = NLCLConfig(**{**TINY.to_json(), "steps": 1, "validate_every": 0})
    with pytest.raises(DatasetError, match=r"has trained 2 steps already, more than the 1"):
        train(_dataset, run, fewer)
    assert (run / "config.json").read_text() == before


def test_a_batch_no_loader_process_can_fill_is_refused_not_waited_for(tmp_path, _dataset):
    # Each loader process drops its partial batch: with every one short of a batch, an
    # epoch would give nothing and training would wait forever.
    config = NLCLConfig(**{**TINY.to_json(), "steps": 1, "batch": 1000, "validate_every": 0})
    with pytest.raises(DatasetError, match=r"--batch 1000 is more than the \d+ crops each"):
        train(_dataset, tmp_path / "run", config)


def test_another_methods_run_is_refused_in_one_line(tmp_path, _dataset):
    run = tmp_path / "run"
    run.mkdir()
    theirs = {**TINY.to_json(), "random_encoder": True}  # as CCLGAN's config.json has
    (run / "config.json").write_text(json.dumps(theirs))
    with pytest.raises(DatasetError, match=r"is a run of another method .*random_encoder"):
        train(_dataset, run, TINY)


def test_a_run_records_its_captures_and_refuses_to_resume_on_others(tmp_path, _dataset):
    run = tmp_path / "run"
    one_step = NLCLConfig(**{**TINY.to_json(), "steps": 1, "validate_every": 0})
    train(_dataset, run, one_step, threads=2)
    record = json.loads((run / "run.json").read_text())
    assert record["captures"]["rainy"]["count"] > 1 and record["captures"]["clean"]["count"] > 0
    assert record["versions"]["torch"] == torch.__version__ and record["device"] == "cpu"
    # Pillow decodes the captures; torch's threads change a step's rounding.
    assert record["versions"]["pillow"] == version("pillow") and record["threads"] == 2
    # The same captures elsewhere: the run goes on.
    moved = tmp_path / "moved"
    shutil.copytree(_dataset, moved)
    two_steps = replace(one_step, steps=2)
    assert train(moved, run, two_steps).resumed_from == 1
    # One rainy capture fewer: another training set, refused.
    path = moved / "manifests" / "samples.parquet"
    table = manifest.read_manifest(path, manifest.SAMPLES)
    rainy = table["layer"].to_pylist().index("rainy")
    manifest.write_manifest(path, pa.concat_tables([table.slice(0, rainy), table.slice(rainy + 1)]))
    with pytest.raises(DatasetError, match="trained on other captures"):
        train(moved, run, replace(one_step, steps=3))


def test_the_checkpoint_scores_on_the_leaderboard(tmp_path, _dataset):
    run = tmp_path / "run"
    train(_dataset, run, NLCLConfig(**{**TINY.to_json(), "steps": 2, "validate_every": 0}))
    derainer = create_derainer("nlcl", checkpoint=run / "nlcl.pt")
    batch = torch.rand(2, 3, 37, 53)
    whole = derainer.derain(batch)
    assert whole.shape == batch.shape
    assert torch.allclose(derainer.derain_in_tiles(batch, tile=16, overlap=0), whole, atol=1e-5)
    source = DerainerSource(derainer, "cpu", None, 32)
    settings = EvalSettings(metrics=("psnr_y", "ssim_y"))
    [report] = evaluate(source, _dataset, "syn-streak", tmp_path / "res", settings)
    assert report.scored == 3 and report.failed == 0


def test_a_checkpoint_of_an_earlier_trainer_is_refused(tmp_path, _dataset):
    run = tmp_path / "run"
    train(_dataset, run, NLCLConfig(**{**TINY.to_json(), "steps": 1, "validate_every": 0}))
    last = run / "checkpoints" / "last.pt"
    state = torch.load(last, weights_only=True)
    torch.save({**state, "version": 1}, last)
    with pytest.raises(DatasetError, match="earlier nlcl trainer"):
        train(_dataset, run, NLCLConfig(**{**TINY.to_json(), "steps": 2, "validate_every": 0}))
    # A later trainer's is not called earlier (the advice differs: that rainbench resumes it).
    torch.save({**state, "version": 3}, last)
    later = r"by a later nlcl trainer \(checkpoint version 3; this rainbench reads 2\); resume"
    with pytest.raises(DatasetError, match=later):
        train(_dataset, run, NLCLConfig(**{**TINY.to_json(), "steps": 2, "validate_every": 0}))


def _one_step(config: NLCLConfig, compile_backend: str | None = None) -> tuple[dict, NLCLModel]:
    """The weights before and the model after one training step on fixed random crops."""
    torch.manual_seed(0)
    model = NLCLModel(config)
    if compile_backend:
        NLCLMethod().compile(model, compile_backend)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    g_opt, d_opt = build_optimizers(model, config)
    set_lr((g_opt, d_opt), config, 0)
    crops = torch.rand(2, 1, 3, config.crop, config.crop, generator=torch.Generator())
    batch = {"rain": crops[0], "clean": crops[1]}
    _train_step(model, batch, g_opt, d_opt, torch.Generator().manual_seed(1), config, "cpu")
    return before, model


def test_public_heads_freeze_two_head_sets_and_step_the_rain_heads_twice():
    # The public code's optimiser defects (docs/nlcl.md); tests/train/test_nlcl_reference.py
    # checks them against that code itself.
    config = replace(TINY, validate_every=0)
    before, fixed = _one_step(config)
    _, public = _one_step(replace(config, public_heads=True))
    for name, parameter in public.named_parameters():
        mine = fixed.get_parameter(name)
        if name.startswith(("image_heads", "nce_heads")):
            assert torch.equal(parameter, before[name]), name
            assert not torch.equal(mine, before[name]), name
        elif name.startswith("rain_heads"):
            step = (mine - before[name]).detach()
            assert torch.allclose(parameter - before[name], 2 * step, atol=1e-9), name
        else:  # the same gradients: a step changes only where the heads are
            assert torch.equal(parameter, mine), name


def test_compiled_generators_take_the_same_step():
    """`--compile`'s path (torch.compile of both generators), traced by the eager backend
    so that it costs seconds on the CPU; the GPU benchmark compiles with inductor."""
    config = replace(TINY, validate_every=0)
    _, eager = _one_step(config)
    _, compiled = _one_step(config, compile_backend="eager")
    assert compiled.background is not plain(compiled.background)  # wrapped, so compiled
    method = NLCLMethod()
    for part, module in method.parts(eager).items():
        theirs = plain(method.parts(compiled)[part]).state_dict()
        for name, value in module.state_dict().items():
            torch.testing.assert_close(theirs[name], value, rtol=0, atol=1e-6, msg=name)


def test_public_levels_leave_out_the_deepest_discriminator_level():
    fixed, public = NLCLModel(TINY), NLCLModel(replace(TINY, public_levels=True))
    assert [h.mlp[0].in_features for h in fixed.image_heads] == [3, 64, 128, 256, 512]
    assert [h.mlp[0].in_features for h in public.rain_heads] == [3, 64, 128, 256]
    image = torch.rand(1, 3, 48, 48)
    assert [f.shape[1] for f in public._levels(image)] == [3, 64, 128, 256]


def test_training_on_an_empty_split_fails_clearly(tmp_path, _dataset):
    with pytest.raises(DatasetError, match=r"cannot train on .*no captures in split test.*"):
        train(_dataset, tmp_path / "run", NLCLConfig(**{**TINY.to_json(), "split": "test"}))


def test_the_cli_trains_resumes_and_imports(tmp_path, _dataset):
    from click.testing import CliRunner

    from rainbench.cli import main
    from rainbench.models.nlcl.generator import Generator

    runner = CliRunner()
    args = ["train", "nlcl", "--dataset", str(_dataset), "--out", str(tmp_path / "run")]
    args += ["--crop", "48", "--channels", "8", "--blocks", "2", "-j", "0", "--no-progress"]
    first = runner.invoke(main, [*args, "--steps", "1"])
    assert first.exit_code == 0, first.output
    again = runner.invoke(main, [*args, "--steps", "2"])
    assert "resumed at step 1" in again.output
    published = tmp_path / "published.pth"
    torch.save({"netG_B": Generator().state_dict()}, published)
    imported = runner.invoke(
        main, ["nlcl", "import-checkpoint", str(published), "--out", str(tmp_path / "n.pt")]
    )
    assert imported.exit_code == 0, imported.output
    assert create_derainer("nlcl", checkpoint=tmp_path / "n.pt").derain(
        torch.rand(1, 3, 8, 8)
    ).shape == (1, 3, 8, 8)
    # A trained run's checkpoints have the imported one's format, but no import made them.
    for trained in (tmp_path / "run" / "nlcl.pt", tmp_path / "run" / "checkpoints" / "last.pt"):
        before = trained.read_bytes()
        refused = runner.invoke(
            main, ["nlcl", "import-checkpoint", str(published), "--out", str(trained)]
        )
        assert refused.exit_code == 1 and "earlier import: not replaced" in refused.output
        assert trained.read_bytes() == before
        # Given as the file to import, it needs none: said so, not its state dicts listed.
        out = tmp_path / "again.pt"
        needless = runner.invoke(
            main, ["nlcl", "import-checkpoint", str(trained), "--out", str(out)]
        )
        assert needless.exit_code == 1 and not out.exists()
        assert needless.output == (
            f"error: {trained} is already a rainbench NLCL checkpoint: nothing to import, use "
            f"it as it is: rainbench eval --model nlcl --checkpoint {trained}\n"
        )
        derained = create_derainer("nlcl", checkpoint=trained).derain(torch.rand(1, 3, 8, 8))
        assert derained.shape == (1, 3, 8, 8)


def test_the_cli_sets_every_loss_weight_and_contrast_setting(tmp_path, _dataset):
    from click.testing import CliRunner

    from rainbench.cli import main

    run = tmp_path / "run"
    args = ["train", "nlcl", "--dataset", str(_dataset), "--out", str(run), "--steps", "1"]
    args += ["--crop", "48", "--channels", "8", "--blocks", "2", "-j", "0", "--no-progress"]
    chosen = {"adversarial": 0.5, "consistency": 2.0, "sparsity": 1.0, "layer_contrast": 0.25,
              "location_contrast": 0.0, "temperature": 0.1, "rain_weight": 3.0, "positives": 4,
              "negatives": 16, "window": 24, "patch": 8, "nce_locations": 64}  # fmt: skip
    for field, value in chosen.items():
        args += ["--" + field.replace("_", "-"), str(value)]
    result = CliRunner().invoke(main, [*args, "--no-identity"])
    assert result.exit_code == 0, result.output
    config = NLCLConfig.from_json(json.loads((run / "config.json").read_text()))
    assert {field: getattr(config, field) for field in chosen} == chosen
    assert config.identity is False
    assert NLCLConfig().sparsity == 0.1  # the paper's weights stay the defaults


def test_a_killed_training_resumes_to_the_same_weights(tmp_path, _dataset):
    import signal
    import subprocess
    import sys
    import time

    def command(run):
        return [sys.executable, "-m", "rainbench", "train", "nlcl", "--dataset", str(_dataset),
                "--out", str(run), "--crop", "48", "--channels", "8", "--blocks", "2",
                "-j", "0", "--steps", "6", "--checkpoint-every", "1", "--no-progress"]  # fmt: skip

    killed = tmp_path / "killed"
    process = subprocess.Popen(command(killed), start_new_session=True)
    deadline = time.monotonic() + 120
    while not (killed / "checkpoints" / "step-0000003.pt").exists():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed / "checkpoints" / "step-0000006.pt").exists()
    subprocess.run(command(killed), check=True, capture_output=True)
    subprocess.run(command(tmp_path / "whole"), check=True, capture_output=True)
    ours = torch.load(killed / "nlcl.pt", weights_only=True)
    theirs = torch.load(tmp_path / "whole" / "nlcl.pt", weights_only=True)
    assert ours["step"] == theirs["step"] == 6
    for name, tensor in theirs["background"].items():
        assert torch.equal(ours["background"][name], tensor), name
    assert (killed / "losses.csv").read_text() == (tmp_path / "whole" / "losses.csv").read_text()


@pytest.mark.parametrize("negatives", ["cut", "hcsc"])
def test_two_processes_under_torchrun_train_in_step_and_resume(tmp_path, _dataset, negatives):
    """Data parallelism on the CPU (gloo): both ranks start from rank 0's weights, stay
    identical (the trainer refuses to checkpoint otherwise), only rank 0 writes, and the
    checkpoint holds both ranks' loader positions, random states and hcsc's key memories
    (each rank remembers its own keys; before, both resumed rank 0's): the resumed run
    ends with the weights of an uninterrupted one."""
    import subprocess
    import sys

    run = tmp_path / "ddp"

    def torchrun(steps: int, run=run) -> None:
        finished = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
             "2", "-m", "rainbench", "train", "nlcl", "--dataset", str(_dataset), "--out",
             str(run), "--crop", "48", "--channels", "8", "--blocks", "2", "-j", "0",
             "--steps", str(steps), "--checkpoint-every", "1", "--log-every", "1", "--no-progress",
             "--nce-negatives", negatives],
            capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
        )  # fmt: skip
        assert finished.returncode == 0, finished.stderr[-4000:]  # the ranks' own errors
        assert finished.stdout.count("trained to step") == 1  # rank 0 alone says so

    torchrun(2)
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 2
    assert sorted(state["loader"]["consumed"]) == [0, 1]  # rank 0's slot and rank 1's
    torchrun(3)
    steps = [int(row["step"]) for row in _rows(run / "losses.csv")]
    assert steps == [1, 2, 3]  # one writer, and the resumed step follows on
    # Each rank resumes its own random states (rank 1 took rank 0's before, and so drew
    # other sampler positions than it would have).
    torchrun(3, tmp_path / "whole")
    ours = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    theirs = torch.load(tmp_path / "whole" / "checkpoints" / "last.pt", weights_only=True)
    parts = ("background", "rain", "discriminator") + (("memories",) if negatives == "hcsc" else ())
    for part in parts:
        for name, tensor in theirs[part].items():
            assert torch.equal(ours[part][name], tensor), f"{part}.{name}"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("amp", ["off", "bf16"])
def test_training_on_the_gpu_resumes_and_scores(tmp_path, _dataset, amp):
    config = NLCLConfig(**{**TINY.to_json(), "batch": 2, "amp": amp})
    train(_dataset, tmp_path / "run", NLCLConfig(**{**config.to_json(), "steps": 2}), "cuda")
    report = train(_dataset, tmp_path / "run", config, "cuda")
    assert report.resumed_from == 2 and report.step == 4
    for row in _rows(tmp_path / "run" / "losses.csv"):
        assert all(math.isfinite(float(row[term])) for term in LOSS_TERMS)
    derainer = create_derainer("nlcl", checkpoint=tmp_path / "run" / "nlcl.pt", device="cuda")
    batch = torch.rand(1, 3, 40, 56, device="cuda")
    whole = derainer.derain(batch)
    assert whole.is_cuda and whole.shape == batch.shape
    assert torch.allclose(derainer.derain_in_tiles(batch, tile=16, overlap=0), whole, atol=1e-4)


def test_real_rain_validation_on_pictures_niqe_cannot_score_warns_in_one_line(
    _dataset, monkeypatch
):
    # Before: numpy's "Mean of empty slice" warnings, in several lines, and nan logged.
    from rainbench.metrics.registry import MetricError
    from rainbench.train.core import validation

    def undefined(image):
        raise MetricError("niqe is undefined on a flat picture")

    monkeypatch.setattr(validation, "check_niqe", lambda device: undefined)
    config = replace(TINY, val_split=None, val_real="train")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", ResourceWarning)  # the reader's, left mid-shard
        scores = validation.validate(lambda x: x, torch.nn.Identity(), _dataset, config, "cpu")
    assert scores == {}  # the row's niqe left empty, not nan
    assert [w.category for w in caught] == [validation.ValidationWarning]
    assert "niqe is undefined on every capture tried of split train" in str(caught[0].message)


def test_a_diverged_networks_validation_is_nan_said_in_one_line(_dataset):
    # Before: NaN outputs became 8-bit pixels (black on this CPU), and a finite psnr_y
    # was logged beside the run's NaN losses as if it were a score.
    from rainbench.train.core import validation

    def diverged(x):
        return torch.full_like(x, math.nan)

    config = replace(TINY, val_real=None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", ResourceWarning)  # the reader's, left mid-shard
        scores = validation.validate(diverged, torch.nn.Identity(), _dataset, config, "cpu")
    assert math.isnan(scores["psnr_y"]) and math.isfinite(scores["psnr_y_identity"])
    assert [w.category for w in caught] == [validation.ValidationWarning]
    assert "values that are no number (NaN or infinite) on 2 of 2 pictures" in str(
        caught[0].message
    )


def _group_of_one(tmp_path, device: str) -> bool:
    """A gloo group of this process alone, as torchrun's ranks start theirs."""
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1
    )
    return True


def test_the_process_group_training_started_is_torn_down_before_it_returns(
    tmp_path, _dataset, monkeypatch
):
    # Left to the interpreter's exit, gloo's threads ended a rank with SIGABRT
    # ("terminate called without an active exception"), now and then.
    monkeypatch.setattr(
        loop_module, "_start_distributed", lambda device: _group_of_one(tmp_path, device)
    )
    try:
        train(_dataset, tmp_path / "run", NLCLConfig(**{**TINY.to_json(), "steps": 1}))
        assert not torch.distributed.is_initialized()
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
