"""Training: NLCL on a dataset's shards, and NLCL's published checkpoint converted for
rainbench eval."""

from pathlib import Path
from typing import TYPE_CHECKING

import click

from rainbench.cli import options
from rainbench.cli.output import emit
from rainbench.train.nlcl.config import NLCLConfig

if TYPE_CHECKING:
    from rainbench.train.nlcl.trainer import TrainReport


@click.group("train")
def train_group() -> None:
    """Train a derainer on a dataset's shards."""


_TRAIN_HELP = """Train NLCL (unsupervised, non-local contrastive deraining) on DATASET.

Rainy captures of --split and the clean captures of the same split are drawn as
unpaired random crops. RUN gets config.json, losses.csv (every loss term),
TensorBoard logs, checkpoints/ (exact resume: run the same command again) and
nlcl.pt for rainbench eval --model nlcl --checkpoint RUN/nlcl.pt.

\b
Example:
  rainbench train nlcl ds --out runs/nlcl --steps 20000 --device cuda --amp bf16
  torchrun --nproc-per-node 4 -m rainbench train nlcl ds --out runs/nlcl --device cuda
"""


def _config(field: str, *flags: str, **settings):
    """An option for an NLCLConfig field, named after it unless `flags` are given, with
    the field's default."""
    flags = flags or ("--" + field.replace("_", "-"),)
    default = getattr(NLCLConfig, field)
    return click.option(*flags, field, default=default, show_default=True, **settings)


_WEIGHT = click.FloatRange(min=0)
_COUNT = click.IntRange(min=2)
# NLCL's loss weights and contrast settings, each an option named after its NLCLConfig
# field, with the public code's default (docs/nlcl.md, "What is trained").
_NLCL_LOSS_OPTIONS = (
    ("adversarial", _WEIGHT, "Weight of the adversarial (LSGAN) term on B̂."),
    ("consistency", _WEIGHT, "Weight of the consistency term mean((R̂ + B̂ − O)²)."),
    ("sparsity", _WEIGHT, "Weight of the sparsity term mean|O − B̂|."),
    ("layer_contrast", _WEIGHT, "Weight of the layer contrast (image vs rain patches)."),
    ("location_contrast", _WEIGHT, "Weight of the location contrast (PatchNCE)."),
    ("temperature", click.FloatRange(min=0, min_open=True), "Temperature of both contrasts."),
    ("rain_weight", _WEIGHT, "Asymmetric layer contrast: the rain anchors' weight."),
    ("positives", _COUNT, "Self-similar image patches the layer contrast draws from B̂."),
    ("negatives", _COUNT, "Self-similar rain patches the layer contrast draws from R̂."),
    ("window", click.IntRange(min=1), "Side of the non-local sampler's search window, px."),
    ("patch", click.IntRange(min=1), "Side of the patches the sampler compares, px."),
    ("nce_locations", _COUNT, "Locations the location contrast compares per image."),
)


def _nlcl_loss_options(command):
    for field, kind, text in reversed(_NLCL_LOSS_OPTIONS):
        command = _config(field, type=kind, help=text)(command)
    identity = "Location contrast: also map clean crops to themselves (CUT's identity term)."
    return _config("identity", "--identity/--no-identity", help=identity)(command)


@train_group.command("nlcl", help=_TRAIN_HELP)
@options.dataset("--dataset")
@click.option("--out", "run", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--rain-types", help="Comma-separated rain types to train on (default: all).")
@_config("split")
@_config("steps", type=click.IntRange(min=1))
@_config(
    "decay_steps",
    type=click.IntRange(min=0),
    help="Decay the learning rate linearly to 0 over the last N steps.",
)
@_config("batch", type=click.IntRange(min=1))
@_config("crop", type=click.IntRange(min=48))
@_config("lr", type=float)
@_config("channels", type=click.IntRange(min=4))
@_config("blocks", type=click.IntRange(min=1))
@click.option(
    "--rain-temperature",
    type=float,
    default=NLCLConfig.rain_temperature,
    help="Asymmetric layer contrast: the rain anchors' temperature (default: --temperature).",
)
@_nlcl_loss_options
@_config("amp", type=click.Choice(["off", "bf16"]))
@click.option("--compile", "compile", is_flag=True, help="torch.compile the generators.")
@click.option("--device", default="cpu", show_default=True)
@_config("workers", "--workers", "-j", type=click.IntRange(min=0), help="DataLoader workers.")
@_config("seed", type=int)
@_config("checkpoint_every", type=click.IntRange(min=1))
@_config("log_every", type=click.IntRange(min=1))
@_config("validate_every", type=click.IntRange(min=0))
@click.option("--val-split", help="A paired split for validation psnr_y, e.g. syn-streak.")
@click.option(
    "--val-real",
    help="A split whose real rainy captures get validation niqe, e.g. val "
    "(needs the NIQE parameters: rainbench weights status).",
)
@click.option(
    "--val-dataset",
    type=click.Path(file_okay=False, path_type=Path),
    help="The dataset holding --val-split (default: DATASET), e.g. an imported public paired set.",
)
@_config("val_images", type=click.IntRange(min=1))
@options.threads
@options.as_json()
@options.progress
def train_nlcl_command(
    dataset, run, rain_types, val_dataset, device, threads, as_json, progress, **settings
) -> None:
    # Imported here, as in import-checkpoint: torch, which `--help` does without.
    from rainbench.train.nlcl.trainer import train

    config = NLCLConfig(
        # The paper's layers, as far as a smaller generator has them.
        nce_layers=tuple(layer for layer in (0, 2, 4, 8, 12) if layer <= settings["blocks"] + 1),
        rain_types=tuple(t.strip() for t in rain_types.split(",")) if rain_types else None,
        val_dataset=str(val_dataset) if val_dataset else None,
        **settings,
    )
    report = train(dataset, run, config, device, progress, threads)
    emit(report, as_json, _trained_lines)


def _trained_lines(report: "TrainReport") -> list[str]:
    resumed = f" (resumed at step {report.resumed_from})" if report.resumed_from else ""
    return [
        f"{report.run}: trained to step {report.step}{resumed} in {report.seconds:.0f} s "
        f"({report.threads} CPU threads); "
        f"derainer: rainbench eval --model nlcl --checkpoint {report.run / 'nlcl.pt'}"
    ]


@click.group("nlcl")
def nlcl_group() -> None:
    """NLCL utilities."""


@nlcl_group.command("import-checkpoint")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
def nlcl_import_command(file, out) -> None:
    """Convert the published NLCL release's background generator into a checkpoint
    for rainbench eval --model nlcl.

    \b
    Example:
      rainbench nlcl import-checkpoint net_G_B.pth --out nlcl-published.pt
    """
    from rainbench.files import file_sha256
    from rainbench.models.nlcl.published import import_published, save_generator_checkpoint

    state = import_published(file)
    save_generator_checkpoint(state, out, file_sha256(file))
    click.echo(f"wrote {out}: rainbench eval --model nlcl --checkpoint {out}")
