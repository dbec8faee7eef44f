"""The `rainbench` command: parse, call one library function, print.

Exit codes: 0 success, 1 a problem with the input or dataset (one-line message),
2 a usage error.
"""

import errno
import json
import os
import re
import sys
from pathlib import Path
from typing import NoReturn

import click

from rainbench import __version__
from rainbench.capture.decode import DEFAULT_MAX_PIXELS
from rainbench.demo.run import DemoOptions, run_demo
from rainbench.ingest import IngestOptions, IngestSummary, ingest
from rainbench.ingest.run import DEFAULT_NEAR_DUP_BITS, DEFAULT_SHARD_BYTES
from rainbench.ingest.split import parse_fractions
from rainbench.metrics.engine import DEFAULT_CACHE
from rainbench.metrics.registry import MetricError
from rainbench.models.registry import DerainerError
from rainbench.shards.dataset import Dataset, DatasetError
from rainbench.shards.stats import dataset_stats
from rainbench.shards.verify import problems_to_json, verify
from rainbench.synth.importers import LAYOUTS
from rainbench.synth.recipes import DEFAULT_RECIPES, RECIPES
from rainbench.tagging.tag import LabelsRejected, TagSummary, tag_dataset
from rainbench.train.nlcl.config import NLCLConfig

_UNITS = {"": 1, "B": 1, "K": 10**3, "KB": 10**3, "M": 10**6, "MB": 10**6, "G": 10**9, "GB": 10**9}


class ByteSize(click.ParamType):
    name = "size"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        match = re.fullmatch(r"\s*([\d.]+)\s*([KMG]?B?)\s*", str(value).upper())
        if not match:
            self.fail(f"{value!r} is not a size like 1GB, 500MB or 1000000", param, ctx)
        return int(float(match.group(1)) * _UNITS[match.group(2)])


class Fractions(click.ParamType):
    name = "fractions"

    def convert(self, value, param, ctx):
        try:
            return parse_fractions(value) if isinstance(value, str) else value
        except ValueError as error:
            self.fail(str(error), param, ctx)


# Options several commands share.
_workers = click.option(
    "--workers",
    "-j",
    type=click.IntRange(min=1),
    default=os.cpu_count() or 1,
    # Shown as words, not this machine's count, so the help (and docs/cli.md) is the same
    # everywhere.
    show_default="all cores",
    help="Worker processes.",
)
_shard_size = click.option(
    "--shard-size",
    type=ByteSize(),
    default=DEFAULT_SHARD_BYTES,
    help="Roll to a new shard after this many bytes.  [default: 1GB]",
)
_progress = click.option(
    "--progress/--no-progress", default=True, help="Show progress bars on stderr."
)
_labels = click.option(
    "--labels",
    type=click.Path(path_type=Path),
    help="A label sheet (CSV: key, sha256 or source_path; rain_type; note) to apply.",
)
_skip_bad_labels = click.option(
    "--skip-bad-labels",
    is_flag=True,
    help="Apply a sheet's good labels even when others have problems (still reported).",
)


# Expected failures of modules that import torch or scipy: (module, class), looked up
# only once the module is loaded, as no error of theirs can exist before.
_LAZY_ERRORS = (
    ("rainbench.tagging.calibration", "CalibrationError"),
    ("rainbench.train.nlcl.checkpoint_import", "CheckpointError"),
)


def _expected_errors() -> tuple[type[Exception], ...]:
    """The failures a command expects, each raised with a one-line message saying what
    to do."""
    lazy = (
        getattr(sys.modules[module], name) for module, name in _LAZY_ERRORS if module in sys.modules
    )
    return (DatasetError, MetricError, DerainerError, *lazy)


class _Commands(click.Group):
    """The top group: an expected failure in any command below it, or an OSError (a
    full disk, a file the user named that is missing or not theirs), ends the command
    with `error: <one line>` on stderr and exit code 1 instead of a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except LabelsRejected as error:
            for problem in error.problems:
                click.echo(str(problem), err=True)
            _fail(str(error))
        except OSError as error:
            if error.errno == errno.EPIPE:
                raise  # click quiets a closed pipe (`rainbench … | head`) itself
            _fail(_os_error_text(error))
        except Exception as error:
            if not isinstance(error, _expected_errors()):
                raise
            _fail(str(error))


def _fail(message: str) -> NoReturn:
    text = " ".join(line.strip() for line in message.splitlines() if line.strip())
    click.echo(f"error: {text}", err=True)
    sys.exit(1)


def _os_error_text(error: OSError) -> str:
    """'PATH: No space left on device', as the OS words it, naming both paths of a move."""
    why = error.strerror or str(error) or type(error).__name__
    paths = [str(path) for path in (error.filename, error.filename2) if path is not None]
    return f"{' -> '.join(paths)}: {why}" if paths else why


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rainbench")
def main() -> None:
    """rainbench: real rain imagery — ingest, tag, benchmark.

    \b
    Start with:  rainbench demo --out demo
    """


@main.command("demo")
@click.option(
    "--out",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo"),
    show_default=True,
    help="Where everything goes; run again with the same folder to resume.",
)
@click.option(
    "--width",
    type=click.IntRange(min=96),
    default=DemoOptions.width,
    show_default=True,
    help="Width of the captures in px (3:2).",
)
@click.option(
    "--seed",
    type=int,
    default=DemoOptions.seed,
    show_default=True,
    help="Picks the captures' cameras, names and EXIF, and so their splits.",
)
@click.option("--device", help="cpu, cuda, cuda:1, …  [default: cuda when there is a GPU]")
@_workers
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@_progress
def demo_command(out, width, seed, device, workers, as_json, progress) -> None:
    """The whole journey in one command, on built-in data.

    Makes a folder of rainy and clean captures (with EXIF, a duplicate, a near-duplicate
    and bad files) from scikit-image's photographs, ingests and tags it, builds the
    synthetic splits, trains NLCL briefly, evaluates every derainer on the real and
    synthetic test splits and publishes the leaderboard as Markdown and HTML. Under
    10 minutes on two CPU cores; needs the demo extra (pip install "rainbench[demo]").

    \b
    Example:
      rainbench demo --out demo
    """
    options = DemoOptions(width=width, seed=seed, device=device, workers=workers)
    result = run_demo(out, options, progress)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    click.echo(f"rainbench demo: done in {_duration(result.seconds)} on {result.device}")
    width = max(len(stage.name) for stage in result.stages)
    for stage in result.stages:
        click.echo(f"  {stage.name:<{width}} {stage.seconds:6.1f} s  {stage.detail}")
    for name, why in result.skipped_methods.items():
        click.echo(f"not evaluated: {name}: {why}")
    for why in result.unavailable_metrics.values():
        click.echo(f"not computed: {why}")
    data = result.dataset
    places = [
        (result.leaderboard_html, "the leaderboard: open it in a browser"),
        (result.leaderboard_md, "the same tables in Markdown"),
        (data, "the dataset: shards/, manifests/*.parquet, dataset.json"),
        (result.labels, "the label sheet the tag stage applied"),
        (result.run, "the NLCL run: config.json, losses.csv, checkpoints/, nlcl.pt"),
        (result.results, "eval's results: a Parquet (a row per image) and JSON per method, split"),
    ]
    width = max(len(str(path)) for path, _ in places)
    click.echo("\nLook at:")
    for path, what in places:
        click.echo(f"  {path!s:<{width}}  {what}")
    click.echo(
        f"Then try:\n"
        f"  rainbench stats {data}\n"
        f"  rainbench eval --model guided --option radius=8 --dataset {data} --split test "
        f"--results {result.out / 'results-radius-8'}\n"
        f"  rainbench leaderboard --results {result.results} --format latex\n"
        f"  rainbench weights status\n"
        f"and the documentation: docs/README.md"
    )


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


@main.command("ingest")
@click.argument("raw", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out",
    "-o",
    required=True,
    type=click.Path(path_type=Path),
    help="The dataset directory (created if missing).",
)
@click.option(
    "--layer",
    type=click.Choice(["rainy", "clean"]),
    default="rainy",
    show_default=True,
    help="What these captures show; clean captures feed unpaired training.",
)
@click.option(
    "--split",
    type=Fractions(),
    default=None,
    help="Split fractions, fixed at the dataset's first ingest. "
    "[default: train=0.8,val=0.1,test=0.1]",
)
@_shard_size
@_workers
@click.option(
    "--keep-gps",
    is_flag=True,
    help="Keep GPS in the stored bytes and the manifest (removed by default).",
)
@click.option(
    "--max-pixels",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_PIXELS,
    show_default=True,
    help="Refuse captures with more pixels (decompression bombs).",
)
@click.option(
    "--near-dup-bits",
    type=click.IntRange(0, 32),
    default=DEFAULT_NEAR_DUP_BITS,
    show_default=True,
    help="pHash distance (of 64 bits) that marks a near-duplicate.",
)
@click.option("--name", help="Dataset name recorded in dataset.json (default: the folder name).")
@_labels
@_skip_bad_labels
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@_progress
def ingest_command(
    raw,
    out,
    layer,
    split,
    shard_size,
    workers,
    keep_gps,
    max_pixels,
    near_dup_bits,
    name,
    labels,
    skip_bad_labels,
    as_json,
    progress,
) -> None:
    """Ingest camera captures under RAW... into the dataset OUT.

    Re-running adds only new files; a killed run resumes where it stopped. Every
    capture is tagged with a rain type as it goes in; --labels applies a label sheet
    (collection/labels-template.csv) on top, and manual labels always win.

    \b
    Example:
      rainbench ingest photos/ --out ds --labels labels.csv
      rainbench ingest clear-days/ --out ds --layer clean
    """
    options = IngestOptions(
        layer=layer,
        keep_gps=keep_gps,
        max_pixels=max_pixels,
        shard_bytes=shard_size,
        split=split,
        near_dup_bits=near_dup_bits,
        workers=workers,
        name=name,
        labels=labels,
        skip_bad_labels=skip_bad_labels,
    )
    summary = ingest(list(raw), out, options, progress=progress)
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        click.echo(format_summary(summary, out))


def format_summary(summary: IngestSummary, out: Path) -> str:
    rejected = sum(summary.rejected.values())
    reasons = ", ".join(f"{r}: {n}" for r, n in sorted(summary.rejected.items()))
    lines = [
        f"{'resumed and finished; ' if summary.resumed else ''}{out}: "
        f"{summary.accepted} accepted, {summary.duplicates} duplicates, "
        f"{summary.near_duplicates} near-duplicates (kept, marked), "
        f"{rejected} rejected" + (f" ({reasons})" if reasons else ""),
        f"probed {summary.scanned} files ({summary.scanned_bytes / 1e6:.1f} MB) in "
        f"{summary.seconds:.1f} s: {summary.images_per_second:.1f} images/s, "
        f"{summary.mb_per_second:.1f} MB/s; {summary.shards} shards written",
    ]
    if summary.ignored:
        lines.append(f"ignored {summary.ignored} files without a capture extension")
    if rejected:
        lines.append(f"why each was refused: {out / 'manifests' / 'rejects.parquet'}")
    if summary.tagging:
        lines.extend(format_tagging(summary.tagging))
    return "\n".join(lines)


@main.command("verify")
@click.argument("dataset", type=click.Path(path_type=Path))
@_workers
@click.option("--json", "as_json", is_flag=True, help="Print the problems as JSON.")
def verify_command(dataset, workers, as_json) -> None:
    """Check every shard and manifest row of DATASET; exit 1 naming each problem.

    \b
    Example:
      rainbench verify ds
    """
    problems = verify(Dataset(dataset), workers)
    if as_json:
        click.echo(problems_to_json(problems))
    elif problems:
        for problem in problems:
            click.echo(str(problem), err=True)
    else:
        click.echo(f"{dataset}: ok")
    if problems:
        if not as_json:
            click.echo(f"{dataset}: {len(problems)} problems", err=True)
        sys.exit(1)


@main.command("stats")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def stats_command(dataset, as_json) -> None:
    """Counts by split, layer, rain type and camera; bytes; capture dates.

    \b
    Example:
      rainbench stats ds --json
    """
    stats = dataset_stats(Dataset(dataset))
    if as_json:
        click.echo(json.dumps(stats, indent=2))
        return
    click.echo(
        f"{stats['name']}: {stats['samples']} samples in {stats['shards']} shards, "
        f"{stats['shard_bytes'] / 1e6:.1f} MB"
    )
    for title in (
        "splits",
        "layers",
        "rain_types",
        "rain_type_sources",
        "formats",
        "cameras",
        "rejects",
        "paired_splits",
    ):
        if stats[title]:
            parts = ", ".join(f"{k} {v}" for k, v in stats[title].items())
            click.echo(f"  {title.replace('_', ' ')}: {parts}")
    click.echo(f"  near-duplicates: {stats['near_duplicates']}")
    if stats["looks_rainy"]:
        click.echo(f"  clean captures that look rainy: {stats['looks_rainy']}")
    if stats["captured_from"]:
        click.echo(f"  captured: {stats['captured_from']} … {stats['captured_to']}")


@main.command("tag")
@click.argument("dataset", type=click.Path(path_type=Path))
@_labels
@_skip_bad_labels
@_workers
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def tag_command(dataset, labels, skip_bad_labels, workers, as_json) -> None:
    """Re-tag every capture's rain type from its stored features; apply a label sheet.

    Only manifests/samples.parquet changes; shards are never touched. Captures whose
    features are missing (or from another tagger version) are decoded again at
    preview size. Manual labels always win over the tagger.

    \b
    Example:
      rainbench tag ds --labels collection/labels.csv
    """
    summary = tag_dataset(dataset, labels, skip_bad_labels, workers)
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2))
        return
    click.echo("\n".join(format_tagging(summary.to_dict())))


def format_tagging(tagging: dict) -> list[str]:
    summary = TagSummary(**tagging)
    types = ", ".join(f"{name} {count}" for name, count in summary.rain_types.items())
    lines = [
        f"tagged {summary.samples} captures ({types}); {summary.manual} by manual label, "
        f"{summary.labelled} labels applied now, {summary.changed} tags changed",
    ]
    if summary.measured:
        lines.append(f"measured {summary.measured} captures whose features were missing")
    if summary.looks_rainy:
        lines.append(f"{summary.looks_rainy} clean captures look rainy (looks_rainy)")
    lines.extend(f"skipped: {problem}" for problem in summary.label_problems)
    if summary.unmeasurable:
        lines.append(f"could not decode {len(summary.unmeasurable)}: run rainbench verify")
    return lines


@main.command("tag-eval")
@click.option(
    "--per-image",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Examples of each class rendered on each held-out photograph.",
)
@click.option("--seed", type=int, default=1, show_default=True)
@_workers
@click.option("--out", type=click.Path(path_type=Path), help="Also write the result as JSON.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def tag_eval_command(per_image, seed, workers, out, as_json) -> None:
    """Measure the rain-type tagger on held-out labelled examples.

    Synthetic rain of each type is rendered on photographs the tagger was not
    calibrated on, at several sizes and JPEG qualities, and tagged through ingest's
    own decode. Prints the confusion matrix and macro-F1 (needs scikit-image, in
    the demo and test extras, for the photographs).

    \b
    Example:
      rainbench tag-eval --out tag-eval.json
    """
    from rainbench.tagging.calibration import evaluate_held_out

    result = evaluate_held_out(per_image, seed, workers)
    if out:
        out.write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
    click.echo(json.dumps(result.to_json(), indent=2) if as_json else result.to_markdown())


@main.command("synth")
@click.argument("dataset", required=False, type=click.Path(path_type=Path))
@click.option(
    "--recipes",
    default=",".join(DEFAULT_RECIPES),
    show_default=True,
    help=f"Comma-separated recipes, of: {', '.join(RECIPES)}.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Base seed; each render's seed derives from it, the source key and recipe.",
)
@click.option(
    "--source-split",
    default="test",
    show_default=True,
    help="Split of the clean captures to render on.",
)
@click.option(
    "--source-layer",
    type=click.Choice(["clean", "rainy"]),
    default="clean",
    show_default=True,
    help="Layer of the captures to render on.",
)
@click.option(
    "--renders",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Renders per source capture and recipe.",
)
@click.option(
    "--max-side",
    type=click.IntRange(min=16),
    default=None,
    help="Shrink sources to this longest side first.  [default: full resolution]",
)
@_shard_size
@_workers
@click.option(
    "--preview",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Instead: render every recipe on this one image into a contact sheet.",
)
@click.option(
    "--out", "-o", type=click.Path(path_type=Path), help="Where --preview writes the sheet (PNG)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@_progress
def synth_command(
    dataset,
    recipes,
    seed,
    source_split,
    source_layer,
    renders,
    max_side,
    shard_size,
    workers,
    preview,
    out,
    as_json,
    progress,
) -> None:
    """Render synthetic rain on clean captures of DATASET as paired splits syn-<recipe>.

    Re-running is a no-op; the same inputs and seed give byte-identical shards.

    \b
    Example:
      rainbench synth ds --recipes drizzle,streak,storm,fog-like --seed 0
      rainbench synth --preview photo.jpg --out sheet.png
    """
    # Imported here: the renderer pulls in scipy, which ingest and the rest never need.
    from rainbench.synth.build import SynthOptions, preview_sheet, synthesize

    if preview:
        if out is None:
            raise click.UsageError("--preview needs --out SHEET.png")
        click.echo(preview_sheet(preview, out, seed))
        return
    if dataset is None:
        raise click.UsageError("give a DATASET, or --preview IMAGE --out SHEET.png")
    options = SynthOptions(
        recipes=tuple(r.strip() for r in recipes.split(",") if r.strip()),
        seed=seed,
        source_split=source_split,
        source_layer=source_layer,
        renders=renders,
        max_side=max_side,
        shard_bytes=shard_size,
        workers=workers,
    )
    summary = synthesize(dataset, options, progress=progress)
    _echo_pairs(summary, as_json)


_IMPORT_HELP = """Store a public paired set found at PATH as the paired split NAME of a dataset.

Pairs follow the layout's naming rules; a missing partner or a size mismatch is
reported and left out, never guessed.

\b
Example:
  rainbench import-paired Rain100L/ --layout rain100 --name rain100l --into ds

\b
Layouts:
""" + "\n".join(f"  {layout.name}: {layout.description}" for layout in LAYOUTS.values())


@main.command("import-paired", help=_IMPORT_HELP)
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--layout", required=True, type=click.Choice(list(LAYOUTS)), help="How the set names its pairs."
)
@click.option("--name", required=True, help="The split's name, e.g. rain100l.")
@click.option(
    "--into",
    "into",
    required=True,
    type=click.Path(path_type=Path),
    help="The dataset (created if missing).",
)
@_shard_size
@_workers
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@_progress
def import_paired_command(path, layout, name, into, shard_size, workers, as_json, progress) -> None:
    from rainbench.synth.imports import import_paired

    summary, problems = import_paired(path, layout, name, into, shard_size, workers, progress)
    for problem in problems:
        click.echo(f"{problem.kind}: {problem.path}: {problem.detail}", err=True)
    if not summary.stored and not summary.existing:
        _fail(f"no pairs found in {path} for layout {layout}")
    _echo_pairs(summary, as_json)


@main.command("metrics")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def metrics_command(as_json) -> None:
    """List the metrics rainbench computes, by name.

    \b
    Example:
      rainbench metrics
    """
    from rainbench.metrics import list_metrics

    specs = list_metrics()
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "name": s.name,
                        "full_reference": s.full_reference,
                        "lower_is_better": s.lower_is_better,
                        "description": s.description,
                    }
                    for s in specs
                ],
                indent=2,
            )
        )
        return
    for spec in specs:
        kind = "full-reference" if spec.full_reference else "no-reference"
        better = "lower is better" if spec.lower_is_better else "higher is better"
        click.echo(f"{spec.name:10s} {kind:15s} {better:17s} {spec.description}")


_weights_dir = click.option(
    "--weights-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where metric weights are.  [default: $RAINBENCH_WEIGHTS or ~/.cache/rainbench/weights]",
)


@main.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def models_command(as_json) -> None:
    """List the registered derainers (built-ins and installed plug-ins), by name.

    \b
    Example:
      rainbench models
    """
    from rainbench.models.registry import list_derainers

    specs = list_derainers()
    if as_json:
        rows = [
            {
                "name": s.name,
                "description": s.description,
                "needs_checkpoint": s.needs_checkpoint,
                "source": s.source,
            }
            for s in specs
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    width = max((len(s.name) for s in specs), default=0)
    for spec in specs:
        origin = "" if spec.source == "built-in" else f"  [{spec.source}]"
        click.echo(f"{spec.name:<{width}}  {spec.description}{origin}")


_EVAL_HELP = """Run a derainer over a dataset's splits and score every output.

Real splits get the no-reference metrics (niqe, brisque, piqe), broken down by rain
type on the leaderboard; synthetic splits also psnr_y, ssim_y, psnr and ssim. One
row per image (metrics, s per megapixel, peak memory, status) goes to
RESULTS/<model>/<dataset>/<split>.parquet with a provenance JSON beside it. A failing
image is recorded and the run goes on; a killed run resumes; a re-run is a no-op.

\b
Example:
  rainbench eval --model guided --dataset ds --split all --results res
  rainbench eval --model-cmd "python test.py --in {input_dir} --out {output_dir}" \\
      --name theirs --dataset ds --split syn-streak --results res
  rainbench eval --outputs derained/ --name theirs --dataset ds --split test --results res
"""


@main.command("eval", help=_EVAL_HELP)
@click.option("--model", help="A registered derainer (rainbench models).")
@click.option(
    "--model-cmd",
    help="An external command with {input_dir} and {output_dir} placeholders.",
)
@click.option(
    "--outputs",
    type=click.Path(file_okay=False, path_type=Path),
    help="Outputs computed elsewhere: DIR/<key>.png (or DIR/<split>/<key>.png).",
)
@click.option("--name", help="The method's name, with --model-cmd or --outputs.")
@click.option(
    "--option",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    help="An option of the derainer (repeatable), e.g. --option radius=8.",
)
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dataset", required=True, type=click.Path(path_type=Path))
@click.option("--split", default="all", show_default=True, help="A split's name, or all.")
@click.option("--results", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1, …")
@click.option(
    "--tile",
    type=click.IntRange(min=64),
    help="Derain images larger than this in overlapping tiles of this side.",
)
@click.option("--overlap", type=click.IntRange(min=0), default=32, show_default=True)
@click.option("--batch", type=click.IntRange(min=1), default=4, show_default=True)
@click.option(
    "--crops",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    help="Images per split whose crops are kept for the leaderboard's comparison strip.",
)
@click.option("--metrics", "metric_names", help="Comma-separated metrics instead of the defaults.")
@_weights_dir
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@_progress
def eval_command(
    model,
    model_cmd,
    outputs,
    name,
    options,
    checkpoint,
    dataset,
    split,
    results,
    device,
    tile,
    overlap,
    batch,
    crops,
    metric_names,
    weights_dir,
    as_json,
    progress,
) -> None:
    from rainbench.leaderboard.eval import EvalSettings, evaluate

    if sum(x is not None for x in (model, model_cmd, outputs)) != 1:
        raise click.UsageError("give exactly one of --model, --model-cmd or --outputs")
    if (model_cmd or outputs) and not name:
        raise click.UsageError("--model-cmd and --outputs need --name")
    settings = EvalSettings(
        metrics=tuple(m.strip() for m in metric_names.split(",")) if metric_names else None,
        device=device,
        tile=tile,
        overlap=overlap,
        batch=batch,
        crops=crops,
        weights_dir=weights_dir,
    )

    if options and model is None:
        raise click.UsageError("--option is for --model: a registered derainer's options")
    derainer_options = _key_values(options)
    source = _eval_source(model, model_cmd, outputs, name, checkpoint, settings, derainer_options)
    reports = evaluate(source, dataset, split, results, settings, checkpoint, progress)
    if as_json:
        rows = [{**r.__dict__, "path": str(r.path)} for r in reports]
        click.echo(json.dumps(rows, indent=2))
        return
    for report in reports:
        for metric, reason in report.unavailable_metrics.items():
            click.echo(f"warning: {metric} not computed: {reason}", err=True)
        click.echo(
            f"{report.dataset}/{report.split} ({report.kind}): {report.scored} scored, "
            f"{report.failed} failed, {report.skipped} already done -> {report.path}"
        )


def _key_values(pairs: tuple[str, ...]) -> dict:
    """KEY=VALUE pairs; a VALUE that reads as JSON (8, 0.02, true, null) is taken as such,
    and the derainer checks its type and range when it is built."""
    found = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--option")
        if key in found:
            raise click.BadParameter(f"{key} is given twice", param_hint="--option")
        try:
            found[key] = json.loads(value)
        except ValueError:
            found[key] = value
    return found


def _eval_source(model, model_cmd, outputs, name, checkpoint, settings, options):
    from rainbench.leaderboard.sources import DerainerSource, FolderSource

    if outputs is not None:
        return FolderSource(outputs, name)
    if model_cmd is not None:
        from rainbench.models.external import CommandDerainer

        derainer = CommandDerainer(model_cmd, name=name)
    else:
        from rainbench.models.registry import create_derainer

        derainer = create_derainer(model, checkpoint=checkpoint, device=settings.device, **options)
    return DerainerSource(derainer, settings.device, settings.tile, settings.overlap)


@main.command("leaderboard")
@click.option("--results", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["md", "csv", "latex", "html"]),
    default="md",
    show_default=True,
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Default: stdout.")
def leaderboard_command(results, fmt, out) -> None:
    """Publish the results of rainbench eval as a table or a page.

    Per split: each method's mean with a 95 % bootstrap interval, its rank, per rain
    type columns on real splits, and speed. HTML is one self-contained page with plots
    and a visual comparison of the same crops across methods.

    \b
    Example:
      rainbench leaderboard --results res --format html --out lb.html
    """
    from rainbench.leaderboard.publish import render_leaderboard, write_leaderboard

    if out is None:
        click.echo(render_leaderboard(results, fmt), nl=False)
        return
    click.echo(f"wrote {write_leaderboard(results, fmt, out)}")


@main.group("train")
def train_group() -> None:
    """Train a derainer on a dataset's shards."""


_TRAIN_HELP = """Train NLCL (unsupervised, non-local contrastive deraining) on DATASET.

Rainy captures of --split and the clean captures of the same split are drawn as
unpaired random crops. RUN gets config.json, losses.csv (every loss term),
TensorBoard logs, checkpoints/ (exact resume: run the same command again) and
nlcl.pt for rainbench eval --model nlcl --checkpoint RUN/nlcl.pt.

\b
Example:
  rainbench train nlcl --dataset ds --out runs/nlcl --steps 20000 --device cuda --amp bf16
  torchrun --nproc-per-node 4 -m rainbench train nlcl --dataset ds --out runs/nlcl --device cuda
"""


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
        flag = "--" + field.replace("_", "-")
        default = getattr(NLCLConfig, field)
        command = click.option(flag, field, type=kind, default=default, show_default=True,
                               help=text)(command)  # fmt: skip
    identity = "Location contrast: also map clean crops to themselves (CUT's identity term)."
    return click.option("--identity/--no-identity", default=True, show_default=True,
                        help=identity)(command)  # fmt: skip


@train_group.command("nlcl", help=_TRAIN_HELP)
@click.option("--dataset", required=True, type=click.Path(path_type=Path))
@click.option("--out", "run", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--rain-types", help="Comma-separated rain types to train on (default: all).")
@click.option("--split", default="train", show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=100_000, show_default=True)
@click.option(
    "--decay-steps",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Decay the learning rate linearly to 0 over the last N steps.",
)
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--crop", type=click.IntRange(min=48), default=256, show_default=True)
@click.option("--lr", type=float, default=2e-4, show_default=True)
@click.option("--channels", type=click.IntRange(min=4), default=32, show_default=True)
@click.option("--blocks", type=click.IntRange(min=1), default=16, show_default=True)
@click.option(
    "--rain-temperature",
    type=float,
    help="Asymmetric layer contrast: the rain anchors' temperature (default: --temperature).",
)
@_nlcl_loss_options
@click.option("--amp", type=click.Choice(["off", "bf16"]), default="off", show_default=True)
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the generators.")
@click.option("--device", default="cpu", show_default=True)
@click.option(
    "--workers",
    "-j",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="DataLoader workers.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("--log-every", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--validate-every", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--val-split", help="A paired split for validation psnr_y, e.g. syn-streak.")
@click.option(
    "--val-real",
    help="A split whose real rainy captures get validation niqe, e.g. val "
    "(needs the NIQE parameters: rainbench weights status).",
)
@click.option(
    "--val-dataset",
    type=click.Path(file_okay=False, path_type=Path),
    help="The dataset holding --val-split (default: --dataset), e.g. an imported public "
    "paired set.",
)
@click.option("--val-images", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@_progress
def train_nlcl_command(
    dataset,
    run,
    rain_types,
    split,
    steps,
    decay_steps,
    batch,
    crop,
    lr,
    channels,
    blocks,
    rain_temperature,
    amp,
    compile_,
    device,
    workers,
    seed,
    checkpoint_every,
    log_every,
    validate_every,
    val_split,
    val_real,
    val_dataset,
    val_images,
    as_json,
    progress,
    **losses,
) -> None:
    from rainbench.train.nlcl.trainer import train

    config = NLCLConfig(
        steps=steps,
        decay_steps=decay_steps,
        batch=batch,
        crop=crop,
        lr=lr,
        channels=channels,
        blocks=blocks,
        # The paper's layers, as far as a smaller generator has them.
        nce_layers=tuple(layer for layer in (0, 2, 4, 8, 12) if layer <= blocks + 1),
        rain_temperature=rain_temperature,
        rain_types=tuple(t.strip() for t in rain_types.split(",")) if rain_types else None,
        split=split,
        workers=workers,
        seed=seed,
        amp=amp,
        compile=compile_,
        checkpoint_every=checkpoint_every,
        log_every=log_every,
        validate_every=validate_every,
        val_split=val_split,
        val_real=val_real,
        val_dataset=str(val_dataset) if val_dataset else None,
        val_images=val_images,
        **losses,
    )
    report = train(dataset, run, config, device, progress)
    if as_json:
        summary = {**report.__dict__, "run": str(report.run)}
        click.echo(json.dumps(summary, indent=2))
        return
    resumed = f" (resumed at step {report.resumed_from})" if report.resumed_from else ""
    click.echo(
        f"{run}: trained to step {report.step}{resumed} in {report.seconds:.0f} s; "
        f"derainer: rainbench eval --model nlcl --checkpoint {run / 'nlcl.pt'}"
    )


@main.group("nlcl")
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
    from rainbench.shards.tar import file_sha256
    from rainbench.train.nlcl.checkpoint_import import import_published, save_generator_checkpoint

    state = import_published(file)
    save_generator_checkpoint(state, out, file_sha256(file))
    click.echo(f"wrote {out}: rainbench eval --model nlcl --checkpoint {out}")


@main.group("analyze")
def analyze_group() -> None:
    """Measurements on a dataset's images that check claims made about rain.

    \b
    Example:
      rainbench analyze intrinsic-dim --dataset ds --split syn-streak
    """


@analyze_group.command("intrinsic-dim")
@click.option(
    "--dataset",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="A rainbench dataset with a paired split (rainbench synth).",
)
@click.option("--split", required=True, help="The paired split, e.g. syn-streak.")
@click.option(
    "--limit", type=click.IntRange(min=1), help="Only the first N pairs, by shard and key."
)
@click.option(
    "--references",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Reference patches per image, each with its 7 most similar in a 40×40 window.",
)
@click.option(
    "--unit-norm", is_flag=True, help="Also scale each patch to unit norm (shape, not contrast)."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Where the references fall.")
@_progress
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Also write the report as JSON."
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def analyze_intrinsic_dim_command(
    dataset, split, limit, references, unit_norm, seed, progress, out, as_json
) -> None:
    """Intrinsic dimension of background and rain patches of a paired split.

    Checks the NLCL journal's claim that non-local image patches have a higher
    intrinsic dimension than rain patches: on each pair, NLCL's non-local groups of
    16×16 patches are sampled from the ground truth and from the rain layer
    (rainy − ground truth), and TwoNN and the Levina–Bickel MLE estimate each
    layer's dimension. Prints the median and inter-quartile range over images.

    \b
    Example:
      rainbench analyze intrinsic-dim --dataset ds --split syn-streak --limit 50
      rainbench analyze intrinsic-dim --dataset ds --split syn-storm --json --out id.json
    """
    from rainbench.analysis.intrinsic_dim import Settings, analyze, from_synthetic_split

    settings = Settings(references=references, unit_norm=unit_norm, seed=seed)
    report = analyze(from_synthetic_split(dataset, split, limit), settings, progress)
    result = {"dataset": str(dataset), "split": split, **report.to_json()}
    if out:
        out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    click.echo(json.dumps(result, indent=2) if as_json else report.to_markdown())


@main.group("weights")
def weights_group() -> None:
    """The offline weight files of the metrics: what is there, and how to add them.

    \b
    Example:
      rainbench weights status
      rainbench weights extract-niqe basicsr-1.4.2.tar.gz
    """


@weights_group.command("status")
@_weights_dir
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def weights_status_command(weights_dir, as_json) -> None:
    """Which weight files are present, where, and whether their checksums hold.

    \b
    Example:
      rainbench weights status --json
    """
    from rainbench.metrics.weights import resolve_dir, status

    found = status(weights_dir)
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "file": s.file.name,
                        "metrics": list(s.file.metrics),
                        "state": s.state,
                        "path": str(s.path) if s.path else None,
                        "sha256": s.sha256,
                        "expected": s.file.expected,
                        "provide": s.file.command,
                    }
                    for s in found
                ],
                indent=2,
            )
        )
        return
    click.echo(f"weights directory: {resolve_dir(weights_dir)}")
    for s in found:
        where = str(s.path) if s.path else f"missing — {s.file.command}"
        click.echo(f"  {s.state:10s} {s.file.name} ({', '.join(s.file.metrics)}): {where}")


@weights_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_weights_dir
def weights_import_command(file, weights_dir) -> None:
    """Check FILE against the known weight files and copy it into the weights directory.

    \b
    Example:
      rainbench weights import brisque_svm_weights.pth
    """
    from rainbench.metrics.weights import import_file

    click.echo(import_file(file, weights_dir))


@weights_group.command("extract-niqe")
@click.argument("archive", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_weights_dir
def weights_extract_niqe_command(archive, weights_dir) -> None:
    """Take the published NIQE parameters out of BasicSR's source archive and check them.

    \b
    Example:
      pip download basicsr==1.4.2 --no-deps --no-binary :all: --no-build-isolation
      rainbench weights extract-niqe basicsr-1.4.2.tar.gz
    """
    from rainbench.metrics.weights import extract_niqe

    click.echo(extract_niqe(archive, weights_dir))


@main.command("score")
@click.option(
    "--pred",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder of images to score (a derainer's outputs).",
)
@click.option(
    "--ref",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder of ground truths, paired with --pred by file name.",
)
@click.option(
    "--metrics",
    "metric_names",
    default=None,
    help="Comma-separated metric names.  [default: psnr_y,ssim_y,psnr,ssim with "
    "--ref, else niqe,brisque,piqe]",
)
@click.option(
    "--out",
    "-o",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The scores, one row per image (Parquet); provenance goes beside it (.json).",
)
@_weights_dir
@click.option(
    "--device",
    default="cpu",
    show_default=True,
    help="cpu, or cuda for the learned and no-reference metrics.",
)
@click.option(
    "--cache",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_CACHE,
    help="Score cache (SQLite), keyed by image hashes and protocol.  "
    "[default: $XDG_CACHE_HOME/rainbench/scores.sqlite, ~/.cache without it]",
)
@click.option("--no-cache", is_flag=True, help="Neither read nor write the cache.")
@_workers
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def score_command(
    pred, ref, metric_names, out, weights_dir, device, cache, no_cache, workers, as_json
) -> None:
    """Score the images in --pred, against --ref when given; write one row per image.

    \b
    Example:
      rainbench score --pred derained/ --ref gt/ --metrics psnr_y,ssim_y --out scores.parquet
      rainbench score --pred derained/ --metrics niqe,piqe --out nr.parquet
    """
    from rainbench.metrics.engine import ScoreSettings, pair_folders, score
    from rainbench.metrics.report import provenance, summary, write_scores

    default = "psnr_y,ssim_y,psnr,ssim" if ref else "niqe,brisque,piqe"
    metrics = tuple(m.strip() for m in (metric_names or default).split(",") if m.strip())
    options = {"weights_dir": str(weights_dir)} if weights_dir else {}
    if device != "cpu":
        options["device"] = device
    pairing = pair_folders(pred, ref)
    for name in pairing.unmatched_pred:
        click.echo(f"unmatched prediction: {name}", err=True)
    for name in pairing.unmatched_ref:
        click.echo(f"unmatched reference: {name}", err=True)
    if not pairing.jobs:
        _fail(f"no images to score in {pred}")
    settings = ScoreSettings(metrics, options, None if no_cache else str(cache))
    rows = score(pairing.jobs, settings, workers if device == "cpu" else 1)
    write_scores(out, rows, metrics, provenance(pred, ref, metrics, pairing, options))
    lines = summary(rows, metrics)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "out": str(out),
                    "summary": lines,
                    "errors": [r for r in rows if r["status"] != "ok"],
                },
                indent=2,
            )
        )
        return
    for line in lines:
        mean = "—" if line["mean"] is None else f"{line['mean']:.4f}"
        extra = f", {line['infinite']} identical (inf)" if line["infinite"] else ""
        failed = f", {line['failed']} failed" if line["failed"] else ""
        click.echo(
            f"{line['metric']:10s} mean {mean:>10s} over {line['images']} images{extra}{failed}"
        )
    for row in rows:
        if row["status"] != "ok":
            click.echo(f"{row['name']}: {row['status']}", err=True)
    click.echo(f"scores: {out}")


def _echo_pairs(summary, as_json: bool) -> None:
    if as_json:
        click.echo(
            json.dumps(
                {
                    "stored": dict(summary.stored),
                    "existing": dict(summary.existing),
                    "failed": summary.failed,
                    "shards": summary.shards,
                },
                indent=2,
            )
        )
        return
    for split in sorted(set(summary.stored) | set(summary.existing)):
        click.echo(
            f"{split}: {summary.stored[split]} pairs stored, "
            f"{summary.existing[split]} already there"
        )
    for job, why in summary.failed:
        click.echo(f"failed: {job}: {why}", err=True)
