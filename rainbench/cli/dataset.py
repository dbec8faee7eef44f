"""The dataset's commands: ingest captures, verify and count what is stored, tag rain
types (and measure the tagger)."""

import shlex
import sys
from pathlib import Path

import click

from rainbench.cli import options
from rainbench.cli.output import emit, on_one_line, prepare_report, to_json, write_json
from rainbench.ingest import IngestOptions, IngestSummary, ingest
from rainbench.ingest.tag import TagSummary, tag_dataset
from rainbench.shards.dataset import DatasetBusy, open_dataset
from rainbench.shards.stats import dataset_stats
from rainbench.shards.verify import verify
from rainbench.wording import counted

# Which tagger `tag` and `tag-eval` use: the dataset's own (a fit, when it has one), or
# the one rainbench ships.
TAGGER_CHOICES = ("active", "shipped")


@click.command("ingest")
@click.argument("raw", nargs=-1, required=True, type=options.InputLocation())
@click.option(
    "--out",
    "-o",
    required=True,
    type=options.Location(path_type=Path),
    help="The dataset directory or object-store URL, s3://bucket/ds (created if missing).",
)
@click.option(
    "--layer",
    type=click.Choice(["rainy", "clean"]),
    default=IngestOptions.layer,
    show_default=True,
    help="What these captures show; clean captures feed unpaired training.",
)
@click.option(
    "--split",
    type=options.Fractions(),
    default=IngestOptions.split,
    help="Split fractions, fixed at the dataset's first ingest. "
    "[default: train=0.8,val=0.1,test=0.1]",
)
@options.shard_size(IngestOptions.shard_bytes)
@options.workers
@options.ray
@click.option(
    "--keep-gps",
    is_flag=True,
    help="Keep GPS in the stored bytes and the manifest (removed by default).",
)
@click.option(
    "--max-pixels",
    type=click.IntRange(min=1),
    default=IngestOptions.max_pixels,
    show_default=True,
    help="Refuse captures with more pixels (decompression bombs). Later commands read "
    "above 250 MP only with RAINBENCH_MAX_PIXELS set as high.",
)
@click.option(
    "--near-dup-bits",
    type=click.IntRange(0, 32),
    default=IngestOptions.near_dup_bits,
    show_default=True,
    help="pHash distance (of 64 bits) that marks a near-duplicate.",
)
@click.option(
    "--burst-gap",
    type=click.FloatRange(min=0),
    default=IngestOptions.burst_gap,
    show_default=True,
    metavar="SECONDS",
    help="Stills of one camera, size, format and folder this close in time (3 or more) are a "
    "burst, a sequence like a video; 0: no bursts.",
)
@click.option(
    "--tag/--no-tag",
    default=IngestOptions.tag,
    show_default=True,
    help="Measure and tag each capture's rain type as it goes in. --no-tag leaves both to "
    "a later `rainbench tag OUT`, which decodes each capture again at preview size: "
    "ingest itself costs less, the two together more (docs/ingest.md).",
)
@click.option("--name", help="Dataset name recorded in dataset.json (default: the folder name).")
@options.labels
@options.skip_bad_labels
@options.as_json()
@options.progress
def ingest_command(raw, out, shard_size, as_json, progress, **settings) -> None:
    """Ingest camera captures under RAW... into the dataset OUT.

    Re-running adds only new files; a killed run resumes where it stopped. Every
    capture is tagged with a rain type as it goes in (unless --no-tag); --labels
    applies a label sheet (collection/labels-template.csv) on top, and manual labels
    always win.

    \b
    Example:
      rainbench ingest photos/ --out ds --labels labels.csv
      rainbench ingest clear-days/ --out ds --layer clean
      rainbench ingest rain-videos/ --out ds --burst-gap 1.5
      rainbench ingest s3://lab/raw/ --out s3://lab/ds
      rainbench ingest /shared/photos/ --out /shared/ds --ray
      rainbench ingest photos/ --out ds --no-tag && rainbench tag ds -j 8
    """
    from rainbench.ingest.run import OptionsConflict
    from rainbench.ingest.tag import LabelsRejected

    ingest_options = IngestOptions(shard_bytes=shard_size, **settings)
    try:
        summary = ingest(list(raw), out, ingest_options, progress=progress)
    except OptionsConflict as conflict:
        raise click.UsageError(str(conflict)) from None
    except LabelsRejected as rejected:
        if rejected.summary is not None:  # the captures are in: say so before the problems
            emit(rejected.summary, as_json, lambda summary: [format_summary(summary, out)])
        raise
    emit(summary, as_json, lambda summary: [format_summary(summary, out)])


def format_summary(summary: IngestSummary, out: Path) -> str:
    rejected = sum(summary.rejected.values())
    reasons = ", ".join(f"{r}: {n}" for r, n in sorted(summary.rejected.items()))
    shards = f"{counted(summary.shards, 'shard')} written"
    lines = [
        f"{'resumed and finished; ' if summary.resumed else ''}{out}: "
        f"{summary.accepted} accepted, {counted(summary.duplicates, 'duplicate')}, "
        f"{counted(summary.near_duplicates, 'near-duplicate')} (kept, marked), "
        f"{rejected} rejected" + (f" ({reasons})" if reasons else ""),
        # The rate counts every file probed: stills, videos, and files refused.
        f"probed {counted(summary.scanned, 'file')} ({summary.scanned_bytes / 1e6:.1f} MB) in "
        f"{summary.seconds:.1f} s: {summary.images_per_second:.1f} files/s, "
        f"{summary.mb_per_second:.1f} MB/s; {shards}"
        if summary.scanned
        else "nothing new" + (f"; {shards}" if summary.shards else ""),
    ]
    if summary.ignored:
        lines.append(f"ignored {counted(summary.ignored, 'file')} without a capture extension")
    if rejected:
        lines.append(f"why each was refused: {out}/manifests/rejects.parquet")
    lines.extend(
        f"{counted(count, 'file')} rejected: {message}, then run the same ingest again to "
        f"take {'it' if count == 1 else 'them'} in"
        for message, count in summary.missing_libraries.items()
    )
    if summary.tagging:
        lines.extend(format_tagging(TagSummary(**summary.tagging), out))
    if summary.untagged:
        lines.append(
            f"{counted(summary.untagged, 'capture')} not yet measured for their rain type: "
            f"rainbench tag {out} measures and tags {'it' if summary.untagged == 1 else 'them'}"
        )
    return "\n".join(lines)


# verify's exit code when another process is writing to the dataset: nothing was judged.
BUSY = 3


@click.command("verify")
@options.dataset(url=True)
@options.workers
@options.as_json("Print the problems as JSON.")
def verify_command(dataset, workers, as_json) -> None:
    """Check every shard and manifest row of DATASET; exit 1 naming each problem.

    Exit 3, with one line naming the writer, when another rainbench command is writing
    to DATASET: its unfinished work is no damage; verify again once it has finished.

    \b
    Example:
      rainbench verify ds
      rainbench verify s3://lab/ds
    """
    try:
        problems = verify(open_dataset(dataset), workers)
    except DatasetBusy as busy:
        click.echo(f"error: {busy}", err=True)
        sys.exit(BUSY)
    if as_json:
        click.echo(to_json(problems))
    elif problems:
        for problem in problems:
            click.echo(on_one_line(problem), err=True)  # a tar member's name is any text
        click.echo(f"{dataset}: {counted(len(problems), 'problem')}", err=True)
    else:
        click.echo(f"{dataset}: ok")
    if problems:
        sys.exit(1)


@click.command("stats")
@options.dataset(url=True)
@options.as_json("Print as JSON.")
def stats_command(dataset, as_json) -> None:
    """Counts by split, layer, rain type and camera; bytes; capture dates.

    \b
    Example:
      rainbench stats ds --json
    """
    emit(dataset_stats(open_dataset(dataset)), as_json, _stats_lines)


def _stats_lines(stats: dict) -> list[str]:
    # samples: captures; the shards also hold the paired splits' pairs (synthetic,
    # imported, real), counted apart.
    pairs = sum(stats["paired_splits"].values())
    lines = [
        f"{on_one_line(stats['name'])}: {counted(stats['samples'], 'capture')}"
        + (f", {counted(pairs, 'pair')}" if pairs else "")
        + f" in {counted(stats['shards'], 'shard')}, {stats['shard_bytes'] / 1e6:.1f} MB"
    ]
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
            parts = ", ".join(f"{on_one_line(k)} {v}" for k, v in stats[title].items())
            lines.append(f"  {title.replace('_', ' ')}: {parts}")
    lines.append(f"  near-duplicates: {stats['near_duplicates']}")
    if stats["looks_rainy"]:
        lines.append(f"  clean captures that look rainy: {stats['looks_rainy']}")
    if stats["captured_from"]:
        lines.append(f"  captured: {stats['captured_from']} … {stats['captured_to']}")
    return lines


@click.command("tag")
@options.dataset(url=True)
@options.labels
@options.skip_bad_labels
@click.option(
    "--fit",
    is_flag=True,
    help="First refit the tagger to the dataset's manual labels (with --labels, the "
    "sheet's too), print its cross-validated agreement, keep it and make it the "
    "dataset's tagger (with a warning where it did not beat the shipped tagger there).",
)
@click.option(
    "--tagger",
    "which",
    type=click.Choice(TAGGER_CHOICES),
    default="active",
    show_default=True,
    help="The dataset's active tagger (fitted, if it has one), or the shipped one, "
    "which then becomes the active one again (fitted taggers stay in DATASET/taggers/).",
)
@options.workers
@options.as_json()
def tag_command(dataset, labels, skip_bad_labels, fit, which, workers, as_json) -> None:
    """Re-tag every capture's rain type from its stored features; apply a label sheet.

    Only manifests/samples.parquet changes; shards are never touched. Captures whose
    features are missing, no numbers (or far beyond any picture's) or from another
    tagger version are decoded again at preview size. Manual labels always win over
    the tagger. A tagger fitted with --fit is kept in DATASET/taggers/, named in
    dataset.json and used by later tag and ingest runs, until --tagger shipped (the
    output says whether it beat the shipped tagger on held-out labels).

    \b
    Example:
      rainbench tag ds --labels collection/labels.csv
      rainbench tag ds --labels collection/labels.csv --fit
      rainbench tag ds --tagger shipped
      rainbench tag s3://lab/ds --labels collection/labels.csv
    """
    if fit and which == "shipped":
        raise click.UsageError(
            "--fit and --tagger shipped: a fit is judged against the shipped tagger, give one"
        )
    summary = tag_dataset(dataset, labels, skip_bad_labels, workers, fit, which == "shipped")
    emit(summary, as_json, lambda summary: format_tagging(summary, dataset))


def format_tagging(summary: TagSummary, dataset: str | Path) -> list[str]:
    """What tagging `dataset` (as the user named it) did, in lines."""
    types = ", ".join(f"{on_one_line(name)} {count}" for name, count in summary.rain_types.items())
    lines = [*format_fit(summary.fit, dataset)] if summary.fit else []
    if summary.replaced:
        lines.append(
            "the shipped tagger is the dataset's tagger again, in place of "
            f"{on_one_line(summary.replaced)} (this removes no file from taggers/)"
        )
    elif summary.replaced is not None:
        lines.append("the shipped tagger was already the dataset's tagger")
    if summary.empty_sheet:
        lines.append(
            f"warning: {on_one_line(summary.empty_sheet)} has no label rows, only a header"
        )
    lines.append(
        f"tagged {counted(summary.samples, 'capture')}{f' ({types})' if types else ''}; "
        f"{summary.manual} by manual "
        f"label, {counted(summary.labelled, 'label')} applied now; tags changed on "
        f"{counted(summary.changed, 'capture')}, the rain type itself on "
        f"{summary.rain_types_changed}"
        + (f"; tagger {on_one_line(summary.tagger)}" if summary.tagger else "")
    )
    if summary.measured:
        lines.append(
            f"measured {counted(summary.measured, 'capture')} whose features were missing, "
            "of another version or no measurement"
        )
    if summary.unusable:
        lines.append(
            f"{counted(len(summary.unusable), 'capture')} had stored features that are no "
            "measurement (null, not a number or far beyond any picture's): measured again, "
            "not tagged from them"
        )
    if summary.looks_rainy:
        looks = "looks" if summary.looks_rainy == 1 else "look"
        lines.append(f"{counted(summary.looks_rainy, 'clean capture')} {looks} rainy (looks_rainy)")
    lines.extend(f"skipped: {on_one_line(problem)}" for problem in summary.label_problems)
    if summary.unmeasurable:
        lines.append(f"could not decode {len(summary.unmeasurable)}: run rainbench verify")
    return lines


def format_fit(fit: dict, dataset: str | Path) -> list[str]:
    """The fitted tagger, and its cross-validated agreement beside the shipped tagger's;
    `dataset` as the user named it, for the command that goes back."""
    counts = ", ".join(f"{name} {count}" for name, count in fit["labels"].items())
    ours, shipped = fit["cv_fitted"], fit["cv_shipped"]
    places = _places_apart(ours["macro_f1"], shipped["macro_f1"])
    penalty = (
        "the shipped weights kept: no penalty beat them in cross-validation on all the labels"
        if fit["penalty"] is None
        else f"penalty {fit['penalty']:g}"
    )
    lines = [
        f"{'already fitted to these labels' if fit['reused'] else 'fitted'}: tagger "
        f"{fit['version']} ({fit['path']}), from shipped {fit['base_version']}, on "
        f"{counts} labels; {penalty}",
        f"held out in {fit['folds']} folds (each judged by a fit that never saw it, its "
        f"penalty chosen again{_scenes_kept_whole(fit)}): macro-F1 "
        f"{ours['macro_f1']:.{places}f} fitted, {shipped['macro_f1']:.{places}f} shipped; "
        f"accuracy {ours['accuracy']:.{places}f} fitted, {shipped['accuracy']:.{places}f} "
        "shipped",
    ]
    if fit["beats_shipped"]:
        # Ahead by less than the figures show: said as they show it.
        ahead = f"{ours['macro_f1']:.{places}f}" != f"{shipped['macro_f1']:.{places}f}"
        lines.append(
            f"the fit {'beat' if ahead else 'matched'} the shipped tagger's macro-F1 on "
            "held-out labels: it is the dataset's tagger"
        )
    else:
        lines.append(
            "warning: the fit did not beat the shipped tagger on held-out labels; it is the "
            f"dataset's tagger as asked: rainbench tag {shlex.quote(str(dataset))} --tagger "
            "shipped goes back"
        )
    from rainbench.tagging.fit import MIN_PER_TYPE  # scipy: only when a fit is shown

    kept = [name for name, count in fit["labels"].items() if count < MIN_PER_TYPE]
    if kept and fit["penalty"] is not None:
        lines.append(
            f"{', '.join(kept)}: fewer than {MIN_PER_TYPE} labels, kept as shipped "
            "(a type without labels is not judged above)"
        )
    if fit["clean_labels_unused"]:
        lines.append(
            f"{fit['clean_labels_unused']} clean labels not used: the fit learns rain types"
        )
    return lines


def _places_apart(ours: float, shipped: float) -> int:
    """Decimal places to print two macro-F1s with: 2, or as many (up to 4) as show them
    apart, so a fit said to beat the shipped tagger is seen to; 2 for equal ones."""
    if ours == shipped:  # no places could show them apart
        return 2
    for places in (2, 3):
        if f"{ours:.{places}f}" != f"{shipped:.{places}f}":
            return places
    return 4


def _scenes_kept_whole(fit: dict) -> str:
    scenes = fit.get("scenes")
    if scenes is None or scenes == sum(fit["labels"].values()):
        return ""
    return f"; {scenes} scenes, a scene's captures held out together"


@click.command("tag-eval")
@options.dataset(required=False, url=True)
@click.option(
    "--tagger",
    "which",
    type=click.Choice(TAGGER_CHOICES),
    default="active",
    show_default=True,
    help="With DATASET: its active tagger (fitted, if it has one) or the shipped one.",
)
@click.option(
    "--per-cell",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Without DATASET: examples per background, rain type and rain model.",
)
@click.option("--seed", type=int, default=1, show_default=True)
@options.workers
@click.option("--out", type=click.Path(path_type=Path), help="Also write the result as JSON.")
@options.as_json("Print the result as JSON.")
@options.progress
def tag_eval_command(dataset, which, per_cell, seed, workers, out, as_json, progress) -> None:
    """Measure the rain-type tagger where it never looked.

    With DATASET: against its manual labels (rainbench label, rainbench tag
    --labels): rain types, the looks_rainy flag on rain and clean labels, and the
    calibration error of the confidence, from the stored features in seconds.

    Without: synthetic rain from each of four rain models, on every background
    photograph, judged by fits that never saw that rain model (nor that
    background), and from a fifth model no calibration uses, judged by fits on all
    four; needs scikit-image, matplotlib and scikit-learn (demo or test extra) for
    the photographs. It renders and measures every example: it takes minutes, not
    seconds, and about --per-cell times as long as at --per-cell 1.

    \b
    Example:
      rainbench tag-eval ds
      rainbench tag-eval --out tag-eval.json
    """
    # An option the chosen measurement does not read is a mistake, not a no-op.
    unread = {"per_cell": "--per-cell", "seed": "--seed"} if dataset else {"which": "--tagger"}
    context = click.get_current_context()
    given = [
        flag
        for name, flag in unread.items()
        if context.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
    ]
    if given:
        wanted = "without a DATASET" if dataset is not None else "with a DATASET"
        verb = "are" if len(given) > 1 else "is"
        raise click.UsageError(f"{' and '.join(given)} {verb} for tag-eval {wanted}")
    if out:
        prepare_report(out, dataset)  # before minutes of work
    if dataset is not None:
        from rainbench.ingest.agreement import label_agreement

        result = label_agreement(dataset, which)
    else:
        # Imported here: the calibration renders rain with scipy, which the rest never needs.
        from rainbench.train.tagger import evaluate_held_out

        if progress:
            click.echo(
                f"rendering and measuring synthetic rain on {workers} workers: this takes minutes",
                err=True,
            )
        result = evaluate_held_out(per_cell, seed, workers)
    if out:
        write_json(result, out)
    emit(result, as_json, lambda result: result.to_lines())
