"""The metrics: list them, check the no-reference ones against ground truth, score
folders of images, and manage the offline weight files the no-reference metrics need."""

import math
from pathlib import Path

import click

from rainbench.cli import options
from rainbench.cli.group import fail
from rainbench.cli.output import emit, on_one_line, prepare_out
from rainbench.leaderboard.bootstrap import CONFIDENCE, RESAMPLES
from rainbench.leaderboard.cells import metric_label
from rainbench.leaderboard.results import load_results
from rainbench.leaderboard.validity import (
    DEFAULT_SEED,
    Correlation,
    SplitValidity,
    correlation_text,
    discordance_text,
    results_validity,
    validity_caveats,
)
from rainbench.metrics import list_metrics
from rainbench.metrics.engine import (
    DEFAULT_CACHE,
    Pairing,
    ScoreSettings,
    pair_folders,
    plan_scoring,
    run_plan,
)
from rainbench.metrics.registry import MetricSpec
from rainbench.metrics.report import (
    is_provenance,
    is_scores,
    provenance,
    provenance_path,
    summary,
    write_scores,
)
from rainbench.metrics.weights import (
    WeightStatus,
    extract_niqe,
    fetch,
    import_file,
    resolve_dir,
    status,
)
from rainbench.wording import counted

# The 2.5th and 97.5th percentiles of fewer resamples are the extreme few, which need not
# even hold the estimate (1 resample: an "interval" of one point beside it).
MIN_RESAMPLES = 100


@click.group("metrics", invoke_without_command=True)
@options.as_json("Print as JSON.")
@click.pass_context
def metrics_group(ctx: click.Context, as_json) -> None:
    """List the metrics rainbench computes, by name; check the no-reference ones.

    Without a command, lists every metric: its name, whether it needs a ground truth,
    and which way is better.

    \b
    Example:
      rainbench metrics
      rainbench metrics validity res
    """
    if ctx.invoked_subcommand is None:
        emit(list_metrics(), as_json, _metric_lines)


def _metric_lines(specs: list[MetricSpec]) -> list[str]:
    lines = []
    for spec in specs:
        kind = "full-reference" if spec.full_reference else "no-reference"
        better = "lower is better" if spec.lower_is_better else "higher is better"
        lines.append(f"{spec.name:10s} {kind:15s} {better:17s} {spec.description}")
    return lines


@metrics_group.command("validity")
@click.argument("results", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--seed", type=int, default=DEFAULT_SEED, show_default=True, help="Seed of the bootstrap."
)
@click.option(
    "--resamples",
    type=click.IntRange(min=MIN_RESAMPLES),
    default=RESAMPLES,
    show_default=True,
    help=f"Bootstrap resamples of the images (at least {MIN_RESAMPLES}).",
)
@options.as_json("Print as JSON.")
@click.pass_context
def metrics_validity_command(ctx: click.Context, results, seed, resamples, as_json) -> None:
    """Check each no-reference metric against psnr_y and ssim_y on the paired splits.

    On every paired split of RESULTS (a `rainbench eval` results directory): Kendall τ
    between the methods' means, Spearman ρ over every (method, image), both +1 when the
    no-reference metric calls better what the full-reference one does, with bootstrap
    intervals that resample images; and a warning for each pair of methods it ranks
    against both psnr_y and ssim_y by more than the bootstrap noise.

    \b
    Example:
      rainbench metrics validity res
      rainbench metrics validity res --json --seed 1
    """
    found = results_validity(load_results(results), seed, resamples)
    # `rainbench metrics --json validity` means the same as `validity --json`.
    emit(found, as_json or ctx.parent.params["as_json"], _validity_lines)


def _validity_lines(found: list[SplitValidity]) -> list[str]:
    if not found:
        return ["no paired split scored with a no-reference metric and psnr_y or ssim_y"]
    lines = []
    for split in found:
        lines.append(
            f"{split.title} ({split.kind}): {CONFIDENCE:.0%} intervals, "
            f"{split.resamples} resamples, seed {split.seed}"
        )
        if split.metrics:
            lines.append(
                f"  {'metric':10s} {'against':8s} {'τ across methods':34s} ρ across images"
            )
        for metric in split.metrics:
            name = f"{metric_label(metric.metric)} {'↓' if metric.lower_is_better else '↑'}"
            for agreement in metric.agreements:
                lines.append(
                    f"  {name:10s} {metric_label(agreement.reference):8s} "
                    f"{_correlation(agreement.across_methods, 'method'):34s} "
                    f"{_correlation(agreement.across_images, 'image')}"
                )
        lines += [f"  {caveat}" for caveat in validity_caveats(split)]
        lines += [f"  {discordance_text(d)}" for d in split.discordances]
    return lines


def _correlation(found: Correlation, item: str) -> str:
    value, low, high = correlation_text(found)
    # As the leaderboard: an interval beside every value, `[—, —]` where there is none.
    interval = f" [{low}, {high}]" if math.isfinite(found.value) else ""
    return f"{value}{interval} ({counted(found.n, item)})"


@click.command("score")
@click.option(
    "--pred",
    required=True,
    type=options.InputPath(file_okay=False),
    help="Folder of images to score (a derainer's outputs).",
)
@click.option(
    "--ref",
    type=options.InputPath(file_okay=False),
    help="Folder of ground truths, paired with --pred by file name.",
)
@click.option(
    "--metrics",
    "metric_names",
    default=None,
    callback=options.metric_list,
    help="Comma-separated metric names.  [default: psnr_y,ssim_y,psnr,ssim with "
    "--ref, else niqe,brisque,piqe]",
)
@click.option(
    "--out",
    "-o",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The scores, one row per image: a .parquet file; provenance goes beside it (.json).",
)
@options.weights_dir
@click.option(
    "--device",
    default="cpu",
    show_default=True,
    callback=options.torch_device,
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
@options.workers
@options.ray
@options.as_json()
def score_command(
    pred, ref, metric_names, out, weights_dir, device, cache, no_cache, workers, ray, as_json
) -> None:
    """Score the images in --pred, against --ref when given; write one row per image.

    \b
    Example:
      rainbench score --pred derained/ --ref gt/ --metrics psnr_y,ssim_y --out scores.parquet
      rainbench score --pred derained/ --metrics niqe,piqe --out nr.parquet
      rainbench score --pred /shared/out/ --ref /shared/gt/ --out scores.parquet --ray
    """
    # Parquet only: the table keeps its provenance in its own metadata, and a CSV would
    # lose the infinite PSNR and the failed images' nulls. Any other name (s.csv, or
    # s.json, which its own provenance would overwrite) is refused rather than written
    # as Parquet under it.
    if out.suffix.lower() != ".parquet":
        fail(
            f"--out {out}: rainbench score writes Parquet, its provenance beside it as .json; "
            f"name it .parquet ({out.with_suffix('.parquet')})"
        )
    sidecar = provenance_path(out)
    # Before the scoring: only an earlier run's scores and provenance are replaced.
    prepare_out(out, "a scores table of rainbench score", is_scores)
    prepare_out(sidecar, f"the provenance of the scores {out}", is_provenance)
    default = ("psnr_y", "ssim_y", "psnr", "ssim") if ref else ("niqe", "brisque", "piqe")
    metrics = metric_names or default
    metric_options = {"weights_dir": str(weights_dir)} if weights_dir else {}
    if device != "cpu":
        metric_options["device"] = device
    if ray is None:  # on a cluster, the GPUs are the cluster's
        options.require_device(device)
    pairing = pair_folders(pred, ref)
    for side, names, twice in (
        ("prediction", pairing.unmatched_pred, pairing.ambiguous_pred),
        ("reference", pairing.unmatched_ref, pairing.ambiguous_ref),
    ):
        for name in names:
            why = f" ({_AMBIGUOUS})" if name in twice else ""
            click.echo(f"unmatched {side}: {on_one_line(name)}{why}", err=True)
    for side, names in (
        ("prediction", pairing.unsupported_pred),
        ("reference", pairing.unsupported_ref),
    ):
        for name in names:
            click.echo(
                f"unsupported {side} (not an image file rainbench reads): {on_one_line(name)}",
                err=True,
            )
    for side, names in (("prediction", pairing.outside_pred), ("reference", pairing.outside_ref)):
        for name in names:
            click.echo(
                f"left out: {side} {on_one_line(name)} is a link leading out of its folder",
                err=True,
            )
    if not pairing.jobs:
        fail(_nothing_to_score(pred, ref, pairing))
    settings = ScoreSettings(metrics, metric_options, None if no_cache else str(cache))
    plan = plan_scoring(pairing.jobs, settings, workers if device == "cpu" else 1, ray)
    rows = run_plan(plan)
    cached = None if no_cache else str(cache)
    record = provenance(pred, ref, metrics, pairing, metric_options, cached, plan)
    write_scores(out, rows, metrics, record)
    result = {
        "out": str(out),
        "summary": summary(rows, metrics),
        "errors": [r for r in rows if r["status"] != "ok"],
        # The files not scored, as the provenance records them: with the rows, every file
        # of the folders is accounted for in what a script reads.
        **{key: record[key] for key in LEFT_OUT},
    }
    emit(result, as_json, _score_lines)
    if rows and not any(line["images"] for line in result["summary"]):  # no value at all
        images = "the one image" if len(rows) == 1 else f"every one of the {len(rows)} images"
        fail(f"{images} failed to score (why: above; rows in {out})")


# The provenance's lists of files that were not scored, which --json also gives.
LEFT_OUT = (
    "unmatched_pred",
    "unmatched_ref",
    "unsupported_pred",
    "unsupported_ref",
    "outside_pred",
    "outside_ref",
)


# Why a file is left unmatched though its name may well be on the other side.
_AMBIGUOUS = "ambiguous: another file there has the same path without extension"


def _nothing_to_score(pred: Path, ref: Path | None, pairing: Pairing) -> str:
    """Why nothing is scored: no image in --pred, two of one stem on a side, or none with a
    reference of its name (an example of each side's names, so a suffix like `_derained`
    shows)."""
    skipped = len(pairing.unsupported_pred)
    others = f" ({skipped} other file{'s' if skipped > 1 else ''} unsupported)" if skipped else ""
    if not pairing.unmatched_pred:
        return f"no images to score in {pred}{others}"
    # Before a missing name: the names may well be there, twice on one side.
    for folder, twice in ((pred, pairing.ambiguous_pred), (ref, pairing.ambiguous_ref)):
        if twice:
            return (
                f"{on_one_line(twice[0])} and {on_one_line(twice[1])} in {folder} have the same "
                "path without extension, by which files are paired: neither is scored (keep one)"
            )
    if not pairing.unmatched_ref:
        return f"no images in {ref} to score the {len(pairing.unmatched_pred)} in {pred} against"
    count = len(pairing.unmatched_pred)
    which = f"none of the {count} images" if count > 1 else "the one image"
    has = "has a" if count > 1 else "has no"
    return (
        f"{which} in {pred} {has} reference of the same name in {ref} (paired by path "
        f"without extension): e.g. prediction {on_one_line(pairing.unmatched_pred[0])}, "
        f"reference {on_one_line(pairing.unmatched_ref[0])}"
    )


def _score_lines(result: dict) -> list[str]:
    lines = []
    for line in result["summary"]:
        mean = "—" if line["mean"] is None else f"{line['mean']:.4f}"
        # The mean keeps an infinite value, as the leaderboard's does; the finite
        # values' own mean is said beside it. "Infinite", not "identical": psnr_y is
        # infinite wherever the Y planes agree, whatever R, G and B do.
        extra = ""
        if line["infinite"]:
            finite = line["images"] - line["infinite"]
            extra = f" ({line['infinite']} infinite"
            if finite:
                extra += f"; {line['finite_mean']:.4f} over the other {finite}"
            extra += ")"
        failed = f", {line['failed']} failed" if line["failed"] else ""
        images = f"{line['images']} image{'s' if line['images'] != 1 else ''}"
        lines.append(f"{line['metric']:10s} mean {mean:>10s} over {images}{extra}{failed}")
    for row in result["errors"]:
        click.echo(on_one_line(f"{row['name']}: {row['status']}"), err=True)
    return [*lines, f"scores: {result['out']}"]


@click.group("weights")
def weights_group() -> None:
    """The weight files of the metrics: what is there, and how to add them.

    \b
    Example:
      rainbench weights status
      rainbench weights fetch niqe brisque
      rainbench weights extract-niqe basicsr-1.4.2.tar.gz
    """


@weights_group.command("status")
@options.weights_dir
@options.as_json("Print as JSON.")
def weights_status_command(weights_dir, as_json) -> None:
    """Which weight files are present, where, and whether their checksums hold.

    \b
    Example:
      rainbench weights status --json
    """
    emit(status(weights_dir), as_json, lambda found: _status_lines(found, weights_dir))


def _status_lines(found: list[WeightStatus], weights_dir: Path | None) -> list[str]:
    folder = resolve_dir(weights_dir)
    # A folder that is not there is most often a mistyped --weights-dir: said at once.
    if folder.is_dir():
        absent = ""
    elif folder.exists():
        absent = " (not a folder: import, fetch and extract-niqe cannot write there)"
    else:
        absent = " (does not exist; import, fetch and extract-niqe make it)"
    lines = [f"weights directory: {folder}{absent}"]
    for s in found:
        where = str(s.path) if s.path else f"provide it: {s.file.provide(weights_dir)}"
        if s.state == "mismatch":  # found, but not the published file: said how to mend
            where += f" (not the published file; replace it: {s.file.provide(weights_dir)})"
        lines.append(f"  {s.state:10s} {s.file.name} ({', '.join(s.file.metrics)}): {where}")
    return lines


@weights_group.command("import")
@click.argument("file", type=options.InputPath(dir_okay=False))
@options.weights_dir
def weights_import_command(file, weights_dir) -> None:
    """Check FILE against the known weight files and copy it into the weights directory.

    \b
    Example:
      rainbench weights import brisque_svm_weights.pth
    """
    click.echo(import_file(file, weights_dir))


@weights_group.command("fetch")
@click.argument("names", nargs=-1, required=True)
@click.option(
    "--from",
    "base_url",
    metavar="URL",
    help="Download from this folder URL (a mirror of pyiqa's file names).  "
    "[default: $RAINBENCH_WEIGHTS_URL, else pyiqa's published location]",
)
@options.weights_dir
def weights_fetch_command(names, base_url, weights_dir) -> None:
    """Download the weight files of the metrics NAMES (or file names) and check them.

    A file whose published checksum does not hold is refused; brisque's has none
    published, so it is kept and marked unverified.

    \b
    Example:
      rainbench weights fetch niqe brisque musiq topiq_nr
    """
    for found in fetch(list(names), weights_dir, base_url):
        click.echo(f"{found.path}  {found.state}")


@weights_group.command("extract-niqe")
@click.argument("archive", type=options.InputPath(dir_okay=False))
@options.weights_dir
def weights_extract_niqe_command(archive, weights_dir) -> None:
    """Take the published NIQE parameters out of BasicSR's source archive and check them.

    \b
    Example:
      pip download basicsr==1.4.2 --no-deps --no-binary :all: --no-build-isolation
      rainbench weights extract-niqe basicsr-1.4.2.tar.gz
    """
    click.echo(extract_niqe(archive, weights_dir))
