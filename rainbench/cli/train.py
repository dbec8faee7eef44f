"""Training: NLCL and CCLGAN on a dataset's shards, and published checkpoints converted
for rainbench eval."""

import contextlib
import math
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from rainbench.cli import options
from rainbench.cli.output import OutRefused, emit, prepare_out
from rainbench.errors import RainbenchError, first_line
from rainbench.tagging.tagger import RAIN_TYPES
from rainbench.train.cclgan.config import SEMANTIC_ENCODERS, CCLGANConfig
from rainbench.train.core.config import MIN_CROP, NEGATIVE_SELECTIONS, RunConfig, SettingsError
from rainbench.train.nlcl.config import NLCLConfig

if TYPE_CHECKING:
    from rainbench.train.core.loop import TrainReport


@click.group("train")
def train_group() -> None:
    """Train a derainer on a dataset's shards."""


# What a run may resume with (rainbench.train.core.loop's resume check), for both methods.
_RESUMES = """only with other -j, --compile, --*-every, --keep-checkpoints, --val-* or
--on-error (how it is run, logged and validated), and other --steps and --decay-steps
while no step it trained would have had another learning rate; any other change is
refused"""

_TRAIN_HELP = f"""Train NLCL (unsupervised, non-local contrastive deraining) on DATASET.

Rainy captures of --split and the clean captures of the same split are drawn as
unpaired random crops. RUN gets config.json, run.json (the captures trained on
and the versions), losses.csv (every loss term), TensorBoard logs, checkpoints/
(exact resume: run the same command again; on other captures it is refused) and
nlcl.pt for rainbench eval --model nlcl --checkpoint RUN/nlcl.pt (which names
the captures trained on: eval does not rank it on images from them). It resumes
{_RESUMES}. Ctrl-C or SIGTERM stops it after the step under way, with a checkpoint
there (exit 130 or 143); exit 3 when another command is training into RUN.

\b
Example:
  rainbench train nlcl ds --out runs/nlcl --steps 20000 --device cuda --amp bf16
  torchrun --nproc-per-node 4 -m rainbench train nlcl ds --out runs/nlcl --device cuda
"""


def _option(config: type[RunConfig], field: str, *flags: str, **settings):
    """An option for a config field, named after it unless `flags` are given, with the
    field's default."""
    flags = flags or ("--" + field.replace("_", "-"),)
    default = getattr(config, field)
    return click.option(*flags, field, default=default, show_default=True, **settings)


def _config(field: str, *flags: str, **settings):
    return _option(NLCLConfig, field, *flags, **settings)


class _Finite(click.FloatRange):
    """A float range that refuses nan and ±inf too, which every range lets through (nan
    compares false with either bound): a weight, rate or temperature of either makes
    every loss nan, or Adam fail with a traceback."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value} is not a finite number.", param, ctx)
        return number


_WEIGHT = _Finite(min=0)
_POSITIVE = _Finite(min=0, min_open=True)
_COUNT = click.IntRange(min=2)
# NLCL's loss weights and contrast settings, each an option named after its NLCLConfig
# field, with the public code's default (docs/nlcl.md, "What is trained").
_NLCL_LOSS_OPTIONS = (
    ("adversarial", _WEIGHT, "Weight of the adversarial (LSGAN) term on B̂."),
    ("consistency", _WEIGHT, "Weight of the consistency term mean((R̂ + B̂ − O)²)."),
    ("sparsity", _WEIGHT, "Weight of the sparsity term mean|O − B̂|."),
    ("layer_contrast", _WEIGHT, "Weight of the layer contrast (image vs rain patches)."),
    ("location_contrast", _WEIGHT, "Weight of the location contrast (PatchNCE)."),
    ("temperature", _POSITIVE, "Temperature of both contrasts."),
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


def _rain_types(ctx: click.Context, param: click.Parameter, value: str | None):
    return tuple(name.strip() for name in value.split(",")) if value else None


def _run_options(config: type[RunConfig], min_crop: int, crop_help: str):
    """The options every trainer has: data, length, optimiser, machinery, validation and
    the location contrast's negative selection, with `config`'s defaults."""

    def option(field: str, *flags: str, **settings):
        return _option(config, field, *flags, **settings)

    decorators = [
        options.dataset("--dataset", url=True),
        click.option(
            "--out",
            "run",
            required=True,
            metavar="RUN",
            type=click.Path(file_okay=False, path_type=Path),
            help="The run's folder: a new one, or one to resume.",
        ),
        click.option(
            "--rain-types",
            callback=_rain_types,
            help=f"Comma-separated rain types to train on, of {', '.join(RAIN_TYPES)} "
            "(default: all).",
        ),
        option("split"),
        option("steps", type=click.IntRange(min=1)),
        option(
            "decay_steps",
            type=click.IntRange(min=0),
            help="Decay the learning rate linearly over the last N steps, as CUT does over "
            "epochs: they run at N/(N+1), …, 1/(N+1) of --lr. The rate is a function of the "
            "step: a run resumes with other --steps or --decay-steps only if no step it "
            "trained would have had another rate.",
        ),
        option("batch", type=click.IntRange(min=1)),
        option("crop", type=click.IntRange(min=min_crop), help=crop_help),
        option("lr", type=_POSITIVE),
        option(
            "nce_negatives",
            type=click.Choice(NEGATIVE_SELECTIONS),
            help="The location contrast's negatives: cut (other locations of the input), "
            "domain (other locations of the output: Kahana & Hoshen), hcsc (keys of other "
            "k-means prototypes; own key and prototype positive: Guo et al. 2022).",
        ),
        option("prototypes", type=click.IntRange(min=2), help="hcsc: k-means prototypes."),
        option(
            "prototype_memory",
            type=click.IntRange(min=2),
            help="hcsc: recent keys per layer the prototypes are clustered over.",
        ),
        option("amp", type=click.Choice(["off", "bf16"])),
        click.option("--compile", "compile", is_flag=True, help="torch.compile the generators."),
        click.option("--device", default="cpu", show_default=True, callback=options.torch_device),
        option(
            "workers", "--workers", "-j", type=click.IntRange(min=0), help="DataLoader workers."
        ),
        # 32 bits, as numpy's legacy generator takes them and Lightning's seed_everything
        # bounds them: a larger one ended in an overflow traceback from torch.
        option("seed", type=click.IntRange(0, 2**32 - 1)),
        option(
            "on_error",
            type=click.Choice(["raise", "skip"]),
            help="A capture that does not read: raise stops the run; skip replaces it in "
            "the epoch with the next that reads, with a warning. A run stopped by one "
            "resumes with --on-error skip.",
        ),
        option("checkpoint_every", type=click.IntRange(min=1)),
        option(
            "keep_checkpoints",
            type=click.IntRange(min=0),
            help="Keep the newest N checkpoints/step-*.pt (0: every one); checkpoints/last.pt "
            "and RUN's derainer file always stay.",
        ),
        option("log_every", type=click.IntRange(min=1)),
        option(
            "validate_every",
            type=click.IntRange(min=0),
            help="Validate on --val-split and --val-real every N steps (0: never; each of "
            "those needs it).",
        ),
        click.option("--val-split", help="A paired split for validation psnr_y, e.g. syn-streak."),
        click.option(
            "--val-real",
            help="A split whose real rainy captures get validation niqe, e.g. val "
            "(needs the NIQE parameters: rainbench weights status).",
        ),
        click.option(
            "--val-dataset",
            type=options.Location(file_okay=False, path_type=Path),
            help="The dataset holding --val-split (default: DATASET), e.g. an imported "
            "public paired set.",
        ),
        option("val_images", type=click.IntRange(min=1)),
        options.threads,
        options.as_json(),
        options.progress,
    ]

    def apply(command):
        for decorator in reversed(decorators):
            command = decorator(command)
        return command

    return apply


def _run(train: Callable[..., "TrainReport"], name: str, as_json: bool) -> None:
    """Call `train` (which makes the config, then trains) and say how it went. Settings
    that cannot be honoured are usage errors (exit 2); a run folder another command is
    training into exits 3, as verify does for a dataset being written; a run stopped by
    SIGINT or SIGTERM, 128 + the signal, as a shell reports it."""
    from rainbench.train.core.loop import RunBusy

    try:
        report = train()
    except SettingsError as error:
        raise click.UsageError(str(error)) from None
    except RunBusy as busy:
        from rainbench.cli.dataset import BUSY

        click.echo(f"error: {busy}", err=True)
        sys.exit(BUSY)
    if _first_rank() and (as_json or report.stopped_by is None):
        emit(report, as_json, lambda r: _trained_lines(r, name))
    if report.stopped_by is None:
        return
    if _first_rank():
        click.echo(
            f"{report.run}: stopped by {report.stopped_by} after step {report.step}, with a "
            "checkpoint there; the same command resumes",
            err=True,
        )
    sys.exit(128 + signal.Signals[report.stopped_by])


@contextlib.contextmanager
def _needs_torch(command: str, extra: str) -> Iterator[None]:
    """Around the import of what runs `command` under torch: without torch, one line
    naming the extra to install instead of a traceback, as rainbench eval says it."""
    try:
        yield
    except ImportError as error:
        raise RainbenchError(
            f"rainbench {command} needs torch ({first_line(error)}): "
            f"pip install 'rainbench[{extra}]'"
        ) from None


def _val_dataset(val_dataset: str | Path | None) -> str | None:
    return str(val_dataset) if val_dataset else None


def _check_validation(settings: dict, val_dataset: str | Path | None) -> None:
    """Validation options that would be silently left unused, refused as usage errors:
    an empty split name, --validate-every with nothing to validate, and --val-* without
    --validate-every (validation runs only every N steps)."""
    named = {"--val-split": settings["val_split"], "--val-real": settings["val_real"]}
    for flag, value in named.items():
        if value is not None and not value.strip():
            raise click.UsageError(f"{flag} is empty: give a split's name")
    every = settings["validate_every"]
    if every and not any(named.values()):
        raise click.UsageError(
            f"--validate-every {every} has nothing to validate: give --val-split (a paired "
            "split, e.g. syn-streak) or --val-real (a split of real rainy captures, e.g. val)"
        )
    given = [flag for flag, value in {**named, "--val-dataset": val_dataset}.items() if value]
    if given and not every:
        raise click.UsageError(
            f"{' and '.join(given)} would never be used: validation runs every "
            "--validate-every N steps, 0 by default (never); give --validate-every"
        )
    if val_dataset and not settings["val_split"]:
        raise click.UsageError("--val-dataset holds the pairs of --val-split: give --val-split")


@train_group.command("nlcl", help=_TRAIN_HELP)
@_run_options(NLCLConfig, min_crop=48, crop_help="Side of the square crops, px.")
@_config("channels", type=click.IntRange(min=4))
@_config("blocks", type=click.IntRange(min=1))
@click.option(
    "--rain-temperature",
    type=_POSITIVE,
    default=NLCLConfig.rain_temperature,
    help="Asymmetric layer contrast: the rain anchors' temperature (default: --temperature).",
)
@_nlcl_loss_options
def train_nlcl_command(
    dataset, run, rain_types, val_dataset, device, threads, as_json, progress, **settings
) -> None:
    _check_validation(settings, val_dataset)
    # Imported here, as in import-checkpoint: torch, which `--help` does without.
    with _needs_torch("train nlcl", "train"):
        from rainbench.train.nlcl.trainer import train

    def trained() -> "TrainReport":
        config = NLCLConfig(
            # The paper's layers, as far as a smaller generator has them.
            nce_layers=tuple(n for n in (0, 2, 4, 8, 12) if n <= settings["blocks"] + 1),
            rain_types=rain_types,
            val_dataset=_val_dataset(val_dataset),
            **settings,
        )
        options.require_device(device)
        return train(dataset, run, config, device, progress, threads)

    _run(trained, "nlcl", as_json)


_CCLGAN_HELP = f"""Train CCLGAN (unsupervised, cycle contrastive adversarial deraining) on DATASET.

Two ResNet generators (rainy→clean, clean→rainy) and two PatchGAN discriminators with
hinge loss, PatchNCE on the four translation and cycle directions, identity terms,
and cycle contrast in a frozen encoder's space (VGG16, or CLIP) and in the
discriminators'. The encoder's published weights must be in the weights directory
(unless --semantic-contrast 0): rainbench weights import vgg16-397923af.pth. RUN gets
what rainbench train nlcl writes, with cclgan.pt for rainbench eval --model cclgan
--checkpoint RUN/cclgan.pt, and resumes as it does, {_RESUMES}.

\b
Example:
  rainbench train cclgan ds --out runs/cclgan --steps 20000 --device cuda
"""

_CCLGAN_LOSS_OPTIONS = (
    ("adversarial", _WEIGHT, "Weight of the mean of the two hinge GAN terms."),
    ("location_contrast", _WEIGHT, "Weight of the mean of the four PatchNCE terms."),
    ("identity", _WEIGHT, "Weight of L1(G(clean), clean) + L1(F(rainy), rainy)."),
    ("semantic_contrast", _WEIGHT, "Weight of the cycle contrast in the encoder's space."),
    ("discriminator_contrast", _WEIGHT, "Weight of the cycle contrast in the discriminators'."),
    ("weak_negative", _WEIGHT, "The translated image's share of a cycle ratio's denominator."),
    ("temperature", _POSITIVE, "Temperature of PatchNCE."),
    ("nce_locations", _COUNT, "Random locations PatchNCE compares per layer."),
    ("discriminator_locations", _COUNT, "Random locations of the discriminator-space contrast."),
    ("discriminator_levels", click.IntRange(1, 4), "Discriminator levels that contrast reads."),
)


def _cclgan_options(command):
    for field, kind, text in reversed(_CCLGAN_LOSS_OPTIONS):
        command = _option(CCLGANConfig, field, type=kind, help=text)(command)
    return command


@train_group.command("cclgan", help=_CCLGAN_HELP)
@_run_options(CCLGANConfig, min_crop=MIN_CROP,
              crop_help="Side of the square crops, px: a multiple of 4.")  # fmt: skip
@_option(CCLGANConfig, "channels", type=click.IntRange(min=4))
@_option(CCLGANConfig, "blocks", type=click.IntRange(min=1))
@_cclgan_options
@_option(CCLGANConfig, "semantic_encoder", type=click.Choice(SEMANTIC_ENCODERS),
         help="The frozen encoder of the semantic cycle contrast.")  # fmt: skip
@_option(CCLGANConfig, "random_encoder", "--random-encoder/--pretrained-encoder",
         help="Random encoder weights (smoke tests only: no semantics).")  # fmt: skip
@_option(CCLGANConfig, "flip", "--flip/--no-flip", help="Random horizontal flips of the crops.")
@options.weights_dir
def train_cclgan_command(
    dataset, run, rain_types, val_dataset, device, threads, as_json, progress, weights_dir,
    **settings,
) -> None:  # fmt: skip
    _check_validation(settings, val_dataset)
    with _needs_torch("train cclgan", "train"):
        from rainbench.train.cclgan.trainer import train

    def trained() -> "TrainReport":
        config = CCLGANConfig(
            # CUT's layers 4, 8, 12 in CycleGAN's layout, as far as the generator has them.
            nce_layers=tuple(layer for layer in (4, 7, 10) if layer <= 9 + settings["blocks"]),
            rain_types=rain_types,
            val_dataset=_val_dataset(val_dataset),
            **settings,
        )
        options.require_device(device)
        return train(dataset, run, config, device, progress, threads, weights_dir)

    _run(trained, "cclgan", as_json)


def _trained_lines(report: "TrainReport", name: str) -> list[str]:
    resumed = f" (resumed at step {report.resumed_from})" if report.resumed_from else ""
    return [
        f"{report.run}: trained to step {report.step}{resumed} in {report.seconds:.0f} s "
        f"({report.threads} CPU threads); "
        f"derainer: rainbench eval --model {name} --checkpoint {report.run / f'{name}.pt'}"
    ]


@click.group("nlcl")
def nlcl_group() -> None:
    """NLCL utilities."""


def _first_rank() -> bool:
    """Whether this process prints the summary: under torchrun, rank 0 alone does."""
    return os.environ.get("RANK", "0") == "0"


@nlcl_group.command("import-checkpoint")
@click.argument("file", type=options.InputPath(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
def nlcl_import_command(file, out) -> None:
    """Convert the published NLCL release's background generator into a checkpoint
    for rainbench eval --model nlcl.

    \b
    Example:
      rainbench nlcl import-checkpoint net_G_B.pth --out nlcl-published.pt
    """
    from rainbench.files import file_sha256, regular_file

    with _needs_torch("nlcl import-checkpoint", "eval"):
        from rainbench.models.nlcl.checkpoint import CHECKPOINT_FORMAT
        from rainbench.models.nlcl.published import import_published, save_generator_checkpoint

    _prepare_checkpoint_out(out, file, CHECKPOINT_FORMAT)
    state = import_published(file)
    save_generator_checkpoint(state, out, file_sha256(regular_file(file)))
    click.echo(f"wrote {out}: rainbench eval --model nlcl --checkpoint {out}")


@click.group("cclgan")
def cclgan_group() -> None:
    """CCLGAN utilities."""


@cclgan_group.command("import-checkpoint")
@click.argument("file", type=options.InputPath(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
def cclgan_import_command(file, out) -> None:
    """Convert a CycleGAN-layout rainy→clean generator (CycleGAN's, or CCLGAN's
    latest_net_G_A.pth trained without anti-aliasing) into a checkpoint for rainbench
    eval --model cclgan.

    \b
    Example:
      rainbench cclgan import-checkpoint latest_net_G_A.pth --out cclgan-published.pt
    """
    from rainbench.files import file_sha256, regular_file

    with _needs_torch("cclgan import-checkpoint", "eval"):
        from rainbench.models.cclgan import CHECKPOINT_FORMAT, import_cyclegan_generator

    _prepare_checkpoint_out(out, file, CHECKPOINT_FORMAT)
    # Hashed before it is loaded: a FIFO is refused, not waited on.
    import_cyclegan_generator(file, out, file_sha256(regular_file(file)))
    click.echo(f"wrote {out}: rainbench eval --model cclgan --checkpoint {out}")


def _prepare_checkpoint_out(out: Path, source: Path, checkpoint_format: str) -> None:
    """An --out that exists is replaced only when it is an earlier import's checkpoint
    (of `checkpoint_format`), never the file imported, nor any other file: a trained
    run's checkpoint has the same format, but no `imported_from`."""
    from rainbench.models.base import CheckpointError, load_weights

    if out.exists() and out.samefile(source):  # a link to it too
        raise OutRefused(
            f"--out {out} is the file being imported: give --out a new file name, e.g. "
            f"{out.with_name(out.stem + '-rainbench.pt')}"
        )

    def ours(path: Path) -> bool:
        try:
            state = load_weights(path)
        except CheckpointError:
            return False
        return (
            isinstance(state, dict)
            and state.get("format") == checkpoint_format
            and bool(state.get("imported_from"))
        )

    prepare_out(out, f"a {checkpoint_format} checkpoint from an earlier import", ours)
