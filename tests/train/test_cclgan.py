"""The CCLGAN trainer at a tiny size on the CPU, with a randomly initialised encoder of
VGG16's architecture: every loss term logged, validation, an exact resume (also with
hcsc negatives, whose key memories the checkpoint holds), a SIGKILL and resume through
the CLI, the missing encoder file named, the encoders' published layouts, the import of
a CycleGAN-layout generator, and cclgan beside nlcl on one leaderboard."""

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
import zipfile

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from rainbench.cli import main
from rainbench.files import file_sha256
from rainbench.models.cclgan import CCLGANDerainer, ResnetGenerator, translate_any_size
from rainbench.models.registry import create_derainer
from rainbench.shards.dataset import DatasetError
from rainbench.train.cclgan import encoders
from rainbench.train.cclgan.config import CCLGANConfig
from rainbench.train.cclgan.encoders import CLIPImageEncoder, VGG16Features
from rainbench.train.cclgan.trainer import LOSS_TERMS, train
from rainbench.train.core.config import SettingsError

TINY = CCLGANConfig(
    steps=4,
    crop=32,
    channels=8,
    blocks=2,
    nce_locations=32,
    discriminator_locations=16,
    random_encoder=True,
    workers=0,
    checkpoint_every=2,
    log_every=1,
    validate_every=2,
    val_split="syn-streak",
    val_images=2,
    prototypes=4,
    prototype_memory=128,
)
# The CLI's sizes for the same tiny run.
TINY_ARGS = ["--crop", "32", "--channels", "8", "--blocks", "2", "--nce-locations", "32",
             "--discriminator-locations", "16", "--random-encoder"]  # fmt: skip


def _rows(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _with(**settings) -> CCLGANConfig:
    return CCLGANConfig(**{**TINY.to_json(), **settings})


def test_training_logs_every_term_validates_and_checkpoints(tmp_path, _dataset):
    run = tmp_path / "run"
    report = train(_dataset, run, TINY, threads=1)
    assert report.step == 4 and report.resumed_from is None
    losses = _rows(run / "losses.csv")
    assert [int(r["step"]) for r in losses] == [1, 2, 3, 4]
    for row in losses:
        for term in LOSS_TERMS:
            assert math.isfinite(float(row[term])), term
    validation = _rows(run / "validation.csv")
    assert [int(r["step"]) for r in validation] == [2, 4]
    assert all(float(r["psnr_y"]) > 0 and float(r["psnr_y_identity"]) > 0 for r in validation)
    assert {p.name for p in (run / "checkpoints").iterdir()} == {
        "step-0000002.pt", "step-0000004.pt", "last.pt"
    }  # fmt: skip
    weights = torch.load(run / "cclgan.pt", weights_only=True)
    assert set(weights) == {"format", "version", "config", "step", "derain", "rain", "trained_on"}
    assert weights["config"]["random_encoder"] is True  # a smoke test's weights say so
    derainer = CCLGANDerainer(run / "cclgan.pt")
    assert derainer.options() == {"step": 4, "random_encoder": True}
    assert len(derainer.trained_on) == 7  # the four rainy and three clean captures


@pytest.mark.parametrize("crop", [31, 33, 50, 65])
def test_crops_the_generators_cannot_take_are_refused_naming_those_they_can(crop):
    below = crop - crop % 4
    with pytest.raises(SettingsError, match=rf"multiple of 4 \({below} or {below + 4}\)$"):
        _with(crop=crop)


def test_the_cli_refuses_such_crops_and_locations_as_usage_errors(tmp_path, _dataset):
    args = ["train", "cclgan", str(_dataset), "--out", str(tmp_path / "run"), *TINY_ARGS]
    for crop, says in (("16", "16 is not in the range x>=24"), ("31", "multiple of 4 (28 or 32)")):
        result = CliRunner().invoke(main, [*args, "--crop", crop])
        assert result.exit_code == 2 and says in result.output, result.output
    # 32 px crops: generator layers 7 and 10 are 8×8, discriminator level 2 15×15.
    result = CliRunner().invoke(main, [*args, "--nce-locations", "100"])
    says = ("--nce-locations 100 is more than the 64 locations of generator layer 7 (8×8 at "
            "--crop 32): at most 64")  # fmt: skip
    assert result.exit_code == 2 and says in result.output, result.output
    with pytest.raises(SettingsError, match=r"the 225 locations of discriminator level 2 \(15×"):
        train(_dataset, tmp_path / "run", _with(discriminator_locations=226))
    assert not (tmp_path / "run").exists()


def test_no_semantic_contrast_needs_no_encoder_weights(tmp_path, _dataset, monkeypatch):
    monkeypatch.setenv("RAINBENCH_WEIGHTS", str(tmp_path / "no-weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    config = _with(random_encoder=False, semantic_contrast=0.0, steps=1, validate_every=0)
    assert train(_dataset, tmp_path / "run", config, threads=1).step == 1
    [row] = _rows(tmp_path / "run" / "losses.csv")
    assert row["semantic_contrast"] == "" and math.isfinite(float(row["total"]))  # left out


@pytest.mark.parametrize("negatives", ["cut", "hcsc"])
def test_resume_gives_the_same_next_steps_as_an_uninterrupted_run(tmp_path, _dataset, negatives):
    config = _with(nce_negatives=negatives, validate_every=0)
    train(_dataset, tmp_path / "whole", config, threads=1)
    train(_dataset, tmp_path / "halves", _with(nce_negatives=negatives, validate_every=0, steps=2),
          threads=1)  # fmt: skip
    report = train(_dataset, tmp_path / "halves", config, threads=1)
    assert report.resumed_from == 2
    assert _rows(tmp_path / "whole" / "losses.csv") == _rows(tmp_path / "halves" / "losses.csv")
    ours = torch.load(tmp_path / "halves" / "checkpoints" / "last.pt", weights_only=True)
    theirs = torch.load(tmp_path / "whole" / "checkpoints" / "last.pt", weights_only=True)
    parts = ["derain", "rain", "judge_clean", "judge_rainy", "heads_rainy", "heads_clean"]
    assert ("memories" in theirs) == (negatives == "hcsc")
    for part in parts + (["memories"] if negatives == "hcsc" else []):
        for name, tensor in theirs[part].items():
            assert torch.equal(ours[part][name], tensor), f"{part}.{name}"


def test_a_missing_encoder_file_is_named_before_training(tmp_path, _dataset, monkeypatch):
    monkeypatch.setenv("RAINBENCH_WEIGHTS", str(tmp_path / "no-weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(DatasetError, match=r"vgg16-397923af\.pth") as error:
        train(_dataset, tmp_path / "run", _with(random_encoder=False), threads=1)
    assert "\n" not in str(error.value)
    assert "rainbench weights import vgg16-397923af.pth" in str(error.value)
    assert not (tmp_path / "run" / "losses.csv").exists()
    with pytest.raises(DatasetError, match=r"ViT-B-32\.pt"):
        train(_dataset, tmp_path / "clip", _with(random_encoder=False, semantic_encoder="clip"))


def test_vgg16_reads_torchvisions_layout(tmp_path):
    published = VGG16Features()
    # torchvision's file: every `features.N` layer of VGG16 and the classifier.
    state = {f"features.{k}": v for k, v in published.features.state_dict().items()}
    state |= {"features.17.weight": torch.zeros(512, 256, 3, 3),
              "classifier.0.weight": torch.zeros(4, 4)}  # fmt: skip
    torch.save(state, tmp_path / "vgg16.pth")
    encoder = VGG16Features()
    encoder.load_published(tmp_path / "vgg16.pth")
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    levels = encoder(image)
    assert [level.shape[1:] for level in levels] == [(64, 32, 32), (128, 16, 16), (256, 8, 8)]
    assert all(torch.equal(a, b) for a, b in zip(levels, published(image), strict=True))


def test_clip_reads_the_visual_tower_of_a_clip_state_dict(tmp_path):
    tiny = {"width": 32, "layers": 2, "heads": 4, "patch": 8, "resolution": 32, "output": 16}
    published = CLIPImageEncoder(**tiny)
    state = {f"visual.{k}": v for k, v in published.state_dict().items()}
    state["transformer.resblocks.0.ln_1.weight"] = torch.zeros(8)  # the text tower's: left out
    torch.save(state, tmp_path / "clip.pt")
    encoder = CLIPImageEncoder(**tiny)
    encoder.load_published(tmp_path / "clip.pt")
    image = torch.rand(2, 3, 24, 40) * 2 - 1
    [embedding] = encoder(image)
    assert embedding.shape == (2, 16)
    assert torch.equal(embedding, published(image)[0])


def test_clip_weights_that_would_inflate_beyond_memory_are_refused_unread(tmp_path):
    # CLIP's state dicts have no published sha256: a small file torch.load would inflate
    # whole (its members recompressed, which torch.save never does) is not loaded.
    torch.save({"visual.proj": torch.zeros(1 << 22)}, tmp_path / "plain.pt")
    with (
        zipfile.ZipFile(tmp_path / "plain.pt") as source,
        zipfile.ZipFile(tmp_path / "clip.pt", "w") as bomb,
    ):
        for member in source.infolist():
            bomb.writestr(member.filename, source.read(member), zipfile.ZIP_DEFLATED)
    tiny = CLIPImageEncoder(width=32, layers=2, heads=4, patch=8, resolution=32, output=16)
    with pytest.raises(DatasetError, match="nor a state dict of plain tensors"):
        tiny.load_published(tmp_path / "clip.pt")


def test_clip_runs_no_torchscript_but_openais_own(tmp_path, monkeypatch):
    # A TorchScript archive is a program: one not known by OpenAI's sha256 is refused
    # unrun; OpenAI's (here: this archive, its sha256 taken as theirs) is loaded.
    tiny = {"width": 32, "layers": 2, "heads": 4, "patch": 8, "resolution": 32, "output": 16}
    published = CLIPImageEncoder(**tiny)
    with pytest.warns(FutureWarning):  # torch.jit.script is deprecated; OpenAI's file is one
        scripted = torch.jit.script(_Visual(_parameters_only(published)))
    scripted.save(str(tmp_path / "ViT-B-32.pt"))
    encoder = CLIPImageEncoder(**tiny)
    with pytest.raises(DatasetError, match=r"neither OpenAI's ViT-B-32\.pt \(sha256 40d36571…\)"):
        encoder.load_published(tmp_path / "ViT-B-32.pt")
    own = file_sha256(tmp_path / "ViT-B-32.pt")
    monkeypatch.setattr(encoders, "OPENAI_VIT_B_32_SHA256", own)
    encoder.load_published(tmp_path / "ViT-B-32.pt")
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    assert torch.equal(encoder(image)[0], published(image)[0])


def _parameters_only(module: nn.Module) -> nn.Module:
    """`module`'s parameters in modules of the same names, its buffers left out (as in
    OpenAI's archive, which holds no normalisation)."""
    copy = _Holder()
    for name, parameter in module.named_parameters(recurse=False):
        copy.register_parameter(name, parameter)
    for name, child in module.named_children():
        copy.add_module(name, _parameters_only(child))
    return copy


class _Holder(nn.Module):
    """Parameters and modules only."""


class _Visual(nn.Module):
    """A CLIP model whose image tower is `visual`, as OpenAI's archive holds it."""

    def __init__(self, visual: nn.Module) -> None:
        super().__init__()
        self.visual = visual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_a_cyclegan_generator_imports_and_derains_any_size(tmp_path):
    generator = ResnetGenerator(channels=8, blocks=3)
    torch.save({f"module.{k}": v for k, v in generator.state_dict().items()}, tmp_path / "G_A.pth")
    result = CliRunner().invoke(
        main, ["cclgan", "import-checkpoint", str(tmp_path / "G_A.pth"), "--out",
               str(tmp_path / "c.pt")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    derainer = create_derainer("cclgan", checkpoint=tmp_path / "c.pt")
    assert derainer.name == "cclgan-published"
    batch = torch.rand(2, 3, 37, 53)
    out = derainer.derain(batch)
    assert out.shape == batch.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    torch.save({"something": torch.zeros(1)}, tmp_path / "other.pth")
    refused = CliRunner().invoke(
        main, ["cclgan", "import-checkpoint", str(tmp_path / "other.pth"), "--out",
               str(tmp_path / "d.pt")],
    )  # fmt: skip
    assert refused.exit_code == 1 and "not a CycleGAN-layout generator" in refused.output


@pytest.mark.parametrize("size", [(1, 1), (3, 7), (4, 4), (2, 40), (8, 5)])
def test_the_generator_derains_pictures_a_few_pixels_across(size):
    # Padded only to multiples of 4, a side of 4 or less was 1 px at the residual
    # blocks, whose reflection padding and instance norm raised: eval failed the picture,
    # a validation split holding one stopped training in a traceback.
    generator = ResnetGenerator(channels=4, blocks=1).eval()
    x = torch.rand(1, 3, *size) * 2 - 1
    with torch.no_grad():
        assert translate_any_size(generator, x).shape == x.shape


_SHARED = torch.zeros(1, 3, 7, 7)


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"model.1.weight": 5}, "not a CycleGAN-layout generator"),
        ({"model.1.weight": torch.tensor(1.0)}, "not a CycleGAN-layout generator"),
        # A dictionary, not a state dict: a key that is no name.
        ({"model.1.weight": torch.zeros(8, 3, 7, 7), 1: torch.zeros(1)}, "not a CycleGAN"),
        # Tensors without values of their own.
        ({"model.1.weight": torch.zeros(8, 3, 7, 7).to_sparse()}, "a torch.sparse_coo tensor"),
        ({"model.1.weight": torch.empty(8, 3, 7, 7, device="meta")}, "a meta device tensor"),
        # 1.6 kB asking for a generator 20,000 wide (29 GB for one convolution)...
        ({"model.1.weight": torch.zeros(1).expand(20_000, 3, 7, 7)}, "share their values"),
        # ... or 10,000 blocks deep, every weight the same few bytes.
        (
            dict.fromkeys(
                ["model.1.weight", *(f"model.{n}.conv_block.1.weight" for n in range(10**4))],
                _SHARED,
            ),
            "share their values",
        ),
    ],
)
def test_an_import_is_no_larger_than_the_weights_it_holds(tmp_path, state, message):
    torch.save(state, tmp_path / "G_A.pth")
    refused = CliRunner().invoke(
        main, ["cclgan", "import-checkpoint", str(tmp_path / "G_A.pth"), "--out",
               str(tmp_path / "c.pt")],
    )  # fmt: skip
    assert refused.exit_code == 1 and message in refused.output, refused.output
    assert refused.output.count("\n") == 1 and not (tmp_path / "c.pt").exists()


def test_cclgan_and_nlcl_on_one_leaderboard(tmp_path, _dataset):
    runner = CliRunner()
    sizes = {"cclgan": TINY_ARGS, "nlcl": ["--crop", "48", "--channels", "8", "--blocks", "2"]}
    for model, args in sizes.items():
        trained = runner.invoke(main, ["train", model, "--dataset", str(_dataset), "--out",
                                       str(tmp_path / model), "--steps", "1", *args, "-j", "0",
                                       "--no-progress"])  # fmt: skip
        assert trained.exit_code == 0, trained.output
        assert f"rainbench eval --model {model} --checkpoint" in trained.output
    results = tmp_path / "res"
    for model in ("cclgan", "nlcl"):
        scored = runner.invoke(main, ["eval", str(_dataset), "--model", model, "--checkpoint",
                                      str(tmp_path / model / f"{model}.pt"), "--split",
                                      "syn-streak", "--results", str(results)])  # fmt: skip
        assert scored.exit_code == 0, scored.output
    board = runner.invoke(main, ["leaderboard", "--results", str(results)])
    assert board.exit_code == 0, board.output
    assert "cclgan" in board.output and "nlcl" in board.output


def test_the_cli_sets_every_cclgan_weight_and_refuses_other_settings_on_resume(tmp_path, _dataset):
    run = tmp_path / "run"
    args = ["train", "cclgan", "--dataset", str(_dataset), "--out", str(run), *TINY_ARGS,
            "-j", "0", "--no-progress"]  # fmt: skip
    chosen = {"adversarial": 0.5, "location_contrast": 1.0, "identity": 0.25,
              "semantic_contrast": 0.0, "discriminator_contrast": 0.01, "weak_negative": 0.2,
              "temperature": 0.1, "nce_negatives": "domain"}  # fmt: skip
    for field, value in chosen.items():
        args += ["--" + field.replace("_", "-"), str(value)]
    result = CliRunner().invoke(main, [*args, "--steps", "1", "--no-flip"])
    assert result.exit_code == 0, result.output
    config = CCLGANConfig.from_json(json.loads((run / "config.json").read_text()))
    assert {field: getattr(config, field) for field in chosen} == chosen
    assert config.flip is False and config.nce_layers == (4, 7, 10)
    defaults = CCLGANConfig()  # the research note's weights stay the defaults
    assert (defaults.semantic_contrast, defaults.discriminator_contrast) == (0.5, 0.005)
    again = CliRunner().invoke(main, [*args, "--steps", "2", "--flip"])
    assert again.exit_code == 1 and "other settings (flip: False → True)" in again.output


def test_a_killed_training_resumes_to_the_same_weights(tmp_path, _dataset):
    def command(run):
        return [sys.executable, "-m", "rainbench", "train", "cclgan", "--dataset", str(_dataset),
                "--out", str(run), *TINY_ARGS, "-j", "0", "--steps", "5", "--checkpoint-every", "1",
                "--threads", "1", "--no-progress"]  # fmt: skip

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = tmp_path / "killed"
    process = subprocess.Popen(command(killed), start_new_session=True, env=env)
    deadline = time.monotonic() + 120
    while not (killed / "checkpoints" / "step-0000002.pt").exists():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed / "checkpoints" / "step-0000005.pt").exists()
    subprocess.run(command(killed), check=True, capture_output=True, env=env)
    subprocess.run(command(tmp_path / "whole"), check=True, capture_output=True, env=env)
    ours = torch.load(killed / "cclgan.pt", weights_only=True)
    theirs = torch.load(tmp_path / "whole" / "cclgan.pt", weights_only=True)
    assert ours["step"] == theirs["step"] == 5
    for name, tensor in theirs["derain"].items():
        assert torch.equal(ours["derain"][name], tensor), name
    assert (killed / "losses.csv").read_text() == (tmp_path / "whole" / "losses.csv").read_text()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("amp", ["off", "bf16"])
def test_training_on_the_gpu_resumes_and_scores(tmp_path, _dataset, amp):
    config = _with(batch=2, amp=amp, nce_negatives="hcsc")
    train(
        _dataset, tmp_path / "run", _with(batch=2, amp=amp, nce_negatives="hcsc", steps=2), "cuda"
    )
    report = train(_dataset, tmp_path / "run", config, "cuda")
    assert report.resumed_from == 2 and report.step == 4
    for row in _rows(tmp_path / "run" / "losses.csv"):
        assert all(math.isfinite(float(row[term])) for term in LOSS_TERMS)
    derainer = create_derainer("cclgan", checkpoint=tmp_path / "run" / "cclgan.pt", device="cuda")
    batch = torch.rand(1, 3, 40, 56, device="cuda")
    assert derainer.derain(batch).shape == batch.shape


def test_a_run_that_cannot_start_leaves_no_settings_behind(tmp_path, _dataset, monkeypatch):
    monkeypatch.setenv("RAINBENCH_WEIGHTS", str(tmp_path / "no-weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    run = tmp_path / "run"
    with pytest.raises(DatasetError, match="vgg16"):
        train(_dataset, run, _with(random_encoder=False, steps=1))
    train(_dataset, run, _with(steps=1, validate_every=0), threads=1)  # other settings: fine
    assert json.loads((run / "config.json").read_text())["random_encoder"] is True


def test_an_import_replaces_only_an_earlier_import_never_its_source(tmp_path):
    generator = ResnetGenerator(channels=8, blocks=2)
    source = tmp_path / "G_A.pth"
    torch.save(generator.state_dict(), source)
    published, photo = source.read_bytes(), tmp_path / "photo.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n my photo")
    (tmp_path / "link.pt").symlink_to(source)
    runner = CliRunner()
    for out in ("c.pt", "c.pt"):  # an earlier import is replaced
        argv = ["cclgan", "import-checkpoint", str(source), "--out", str(tmp_path / out)]
        assert runner.invoke(main, argv).exit_code == 0
    for out, said in (
        (source, f"error: --out {source} is the file being imported: give --out a new file"),
        (tmp_path / "link.pt", f"error: --out {tmp_path / 'link.pt'} is the file being imported"),
        (photo, f"error: {photo} exists and is not a rainbench-cclgan checkpoint from an "
                "earlier import: not replaced (give another --out, or remove it)"),
    ):  # fmt: skip
        refused = runner.invoke(
            main, ["cclgan", "import-checkpoint", str(source), "--out", str(out)]
        )
        assert refused.exit_code == 1 and refused.output.startswith(said), refused.output
        assert refused.output.count("\n") == 1
    assert source.read_bytes() == published and photo.read_bytes().endswith(b"my photo")
    # An NLCL import does not replace a CCLGAN checkpoint either.
    refused = runner.invoke(
        main, ["nlcl", "import-checkpoint", str(source), "--out", str(tmp_path / "c.pt")]
    )
    assert refused.exit_code == 1 and "not a rainbench-nlcl checkpoint" in refused.output
