"""Paired splits: render synthetic rain on a dataset's clean captures, or import a
public paired set."""

from pathlib import Path

import click

from rainbench.capture.decode import DEFAULT_MAX_PIXELS
from rainbench.capture.reject import CaptureRejected
from rainbench.cli import options
from rainbench.cli.group import fail
from rainbench.cli.output import emit, on_one_line, prepare_out
from rainbench.synth.build import (
    SHEET_SUFFIXES,
    SynthOptions,
    is_sheet,
    preview_sheet,
    synthesize,
)
from rainbench.synth.importers import LAYOUTS
from rainbench.synth.recipes import RECIPES
from rainbench.synth.splits import PairsSummary
from rainbench.wording import counted


def _recipe_list(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    """The comma-separated recipes, each once, in the order given."""
    recipes = tuple(dict.fromkeys(name.strip() for name in value.split(",") if name.strip()))
    if not recipes:
        raise click.BadParameter(f"name at least one recipe, of: {', '.join(RECIPES)}")
    return recipes


def _sheet_file(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """--out of --preview: a file whose suffix names a format the sheet is written in."""
    if value is not None and value.suffix.lower() not in SHEET_SUFFIXES:
        raise click.BadParameter(
            f"{value.name}: name the sheet's image file: .png, .jpg, .webp or .tif"
        )
    return value


@click.command("synth")
@options.dataset(required=False, url=True)
@click.option(
    "--recipes",
    default=",".join(SynthOptions.recipes),
    show_default=True,
    callback=_recipe_list,
    help=f"Comma-separated recipes, of: {', '.join(RECIPES)}.",
)
@click.option(
    "--seed",
    type=int,
    default=SynthOptions.seed,
    show_default=True,
    help="Base seed; each render's seed derives from it, the source key and recipe.",
)
@click.option(
    "--source-split",
    default=SynthOptions.source_split,
    show_default=True,
    help="Split of the clean captures to render on.",
)
@click.option(
    "--source-layer",
    type=click.Choice(["clean", "rainy"]),
    default=SynthOptions.source_layer,
    show_default=True,
    help="Layer of the captures to render on.",
)
@click.option(
    "--renders",
    type=click.IntRange(min=1),
    default=SynthOptions.renders,
    show_default=True,
    help="Renders per source capture and recipe.",
)
@click.option(
    "--max-side",
    type=click.IntRange(min=16),
    default=SynthOptions.max_side,
    help="Shrink sources to this longest side first.  [default: full resolution]",
)
@click.option(
    "--suffix",
    help="Name the splits syn-<recipe>-SUFFIX: renders made with other sources, seed or "
    "size than a split already holds go to splits of their own, e.g. --source-split train "
    "--suffix train.",
)
@options.shard_size(SynthOptions.shard_bytes)
@options.workers
@click.option(
    "--preview",
    type=options.InputPath(dir_okay=False),
    help="Instead: render every recipe on this one image into a contact sheet.",
)
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    callback=_sheet_file,
    help="Where --preview writes the sheet (.png, .jpg, .webp or .tif): an earlier sheet "
    "there is replaced, any other file refused.",
)
@click.option(
    "--max-pixels",
    type=click.IntRange(min=1),
    help="With --preview: refuse a picture with more pixels, read from its header "
    f"(decompression bombs).  [default: {DEFAULT_MAX_PIXELS}]",
)
@options.as_json()
@options.progress
def synth_command(
    dataset, recipes, shard_size, preview, out, max_pixels, as_json, progress, **settings
) -> None:
    """Render synthetic rain on clean captures of DATASET as paired splits syn-<recipe>.

    Re-running is a no-op; the same inputs and seed give byte-identical shards. A split
    holds one set of renders: other sources, seed or size need --suffix.

    \b
    Example:
      rainbench synth ds --recipes drizzle,streak,storm,fog-like --seed 0
      rainbench synth ds --source-split train --max-side 512 --suffix train
      rainbench synth --preview photo.jpg --out sheet.png --max-side 1024
    """
    if preview:
        if out is None:
            raise click.UsageError("--preview needs --out SHEET.png")
        if out.exists() and out.samefile(preview):
            raise click.BadParameter(
                f"{out} is the --preview image itself; name another file for the sheet",
                param_hint="--out",
            )
        try:
            prepare_out(out, "a contact sheet of synth --preview", is_sheet)
            cap = max_pixels or DEFAULT_MAX_PIXELS
            click.echo(preview_sheet(preview, out, settings["seed"], settings["max_side"], cap))
        except CaptureRejected as error:
            fail(f"{preview}: {error.message}")
        except MemoryError:
            fail(f"{preview}: too large to render every recipe on in the memory there is")
        return
    if dataset is None:
        raise click.UsageError("give a DATASET, or --preview IMAGE --out SHEET.png")
    if max_pixels is not None:  # a dataset's captures were held to ingest's cap
        raise click.UsageError("--max-pixels goes with --preview")
    synth_options = SynthOptions(recipes=recipes, shard_bytes=shard_size, **settings)
    summary = synthesize(dataset, synth_options, progress=progress)
    emit(summary, as_json, pairs_lines)
    fail_if_nothing_made(summary, "every render failed", as_json)


_IMPORT_HELP = """Store a public paired set found at PATH as the paired split NAME of DATASET.

Pairs follow the layout's naming rules; a missing partner or a size mismatch is
reported and left out, never guessed. DATASET is created if missing. A real-paired
set's scene already in another split of the same layout is refused.

With --protocol and --split, the set is imported as that leaderboard split (its
layout and name) and checked against the split's pair count and checksum list; any
mismatch is reported and nothing is stored. --write-checksums writes the list, once,
from this download.

\b
Example:
  rainbench import-paired Rain100L/ ds --layout rain100 --name rain100l
  rainbench import-paired GT-RAIN_test/ ds --split gt-rain-test \\
      --protocol benchmarks/leaderboard/v2.toml

\b
Layouts:
""" + "\n".join(f"  {layout.name}: {layout.description}" for layout in LAYOUTS.values())


@click.command("import-paired", help=_IMPORT_HELP)
@click.argument("path", type=options.InputPath(file_okay=False))
@options.dataset("--into", url=True)
@click.option(
    "--layout",
    type=click.Choice(list(LAYOUTS)),
    help="How the set names its pairs.  [default: the --split's]",
)
@click.option("--name", help="The split's name, e.g. rain100l.  [default: the --split's]")
@click.option(
    "--protocol",
    type=options.InputPath(dir_okay=False),
    help="A leaderboard definition naming public real test splits, e.g. v2.toml.",
)
@click.option("--split", "split_name", help="The --protocol split PATH holds, e.g. gt-rain-test.")
@click.option(
    "--write-checksums",
    is_flag=True,
    help="Write the --split's checksum list from PATH first (once, when it has none; the "
    "same list again is accepted, so a stopped import resumes).",
)
@click.option(
    "--max-pixels",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_PIXELS,
    show_default=True,
    help="Leave out images with more pixels, read from the header (decompression bombs).",
)
@options.shard_size(SynthOptions.shard_bytes)
@options.workers
@options.as_json("Print the summary and the problems as JSON.")
@options.progress
def import_paired_command(
    path,
    dataset,
    layout,
    name,
    protocol,
    split_name,
    write_checksums,
    max_pixels,
    shard_size,
    workers,
    as_json,
    progress,
) -> None:
    from rainbench.synth.imports import CHANGED_SOURCE, import_paired
    from rainbench.synth.protocol import MISMATCHES, protocol_split

    split = None
    if protocol or split_name:
        if not (protocol and split_name):
            raise click.UsageError("--protocol FILE and --split NAME go together")
        split = protocol_split(protocol, split_name)
        layout, name = layout or split.layout, name or split.name
    elif write_checksums:
        raise click.UsageError("--write-checksums needs --protocol FILE --split NAME")
    if layout is None or name is None:
        raise click.UsageError("give --layout and --name, or --protocol FILE --split NAME")
    listed = split is not None and split.checksums.exists()
    summary, problems = import_paired(
        path, layout, name, dataset, shard_size, workers, progress, split, write_checksums,
        max_pixels,
    )  # fmt: skip
    shown = [problem.to_dict() for problem in problems]
    for problem in shown:
        click.echo(
            on_one_line(f"{problem['kind']}: {problem['path']}: {problem['detail']}"), err=True
        )
    report = {**summary.to_dict(), "problems": shown}
    # The list this run wrote, which the lab proposes to the project: said where it is.
    written = write_checksums and not listed and split.checksums.exists()
    if write_checksums:
        report["checksums_written"] = str(split.checksums) if written else None
    said = (
        [
            f"checksum list of {split.title} written from this download: {split.checksums}; "
            "propose it to the project, so that every lab's import is checked against it"
        ]
        if written
        else []
    )
    emit(report, as_json, lambda _: pairs_lines(summary) + said)
    kinds = {problem.kind for problem in problems}
    if kinds & MISMATCHES:
        fail(f"{path} does not match {split.title}: nothing stored")
    if CHANGED_SOURCE in kinds:
        fail(f"{path} holds other files than split {name} was imported from: nothing stored")
    if "mixed-partitions" in kinds:
        fail(f"{path} holds several of the set's partitions: nothing stored")
    if not sum(summary.stored.values()) and not sum(summary.existing.values()):
        found = (
            f"none of its {len(summary.failed)} pairs could be read"
            if summary.failed
            else (f"no pairs found for layout {layout}")
        )
        fail(f"{path}: {found}")
    if summary.failed:
        failed = f"{counted(len(summary.failed), 'pair')} of {path} could not be read"
        fail(f"{failed} ({failed_where(as_json)})")


def fail_if_nothing_made(summary: PairsSummary, why: str, as_json: bool) -> None:
    """Exit 1 with `why` when this run reported failures and no split holds a pair:
    a run that made nothing is a failure; failed pairs beside stored ones are reported
    only (`failed:` lines, exit 0), as eval reports failed images."""
    if summary.failed and not sum(summary.stored.values()) + sum(summary.existing.values()):
        fail(f"no pair stored: {why} ({failed_where(as_json)})")


def failed_where(as_json: bool) -> str:
    """Where the failed pairs are listed: `failed:` lines above the error, or with --json
    (stderr then holds the error alone) the JSON's `failed`."""
    return "failed: in the JSON" if as_json else "failed: above"


def pairs_lines(summary: PairsSummary) -> list[str]:
    """Pairs stored and already there, per split; failed renders go to stderr."""
    for job, why in summary.failed:
        click.echo(on_one_line(f"failed: {job}: {why}"), err=True)
    lines = [
        f"{split}: {counted(summary.stored[split], 'pair')} stored, "
        f"{summary.existing[split]} already there"
        for split in sorted(set(summary.stored) | set(summary.existing))
    ]
    lines += [
        f"{split}: its {counted(count, 'pair')} of an earlier version of rainbench pairs "
        f"{'was' if count == 1 else 'were'} made again"
        for split, count in sorted(summary.replaced.items())
        if count
    ]
    return lines
