"""Measurements on a dataset's images that check claims made about rain."""

from pathlib import Path

import click

from rainbench import __version__
from rainbench.analysis.intrinsic_dim import (
    LIBRARIES,
    MIN_PATCHES,
    MOST_REFERENCES,
    Settings,
    analyze,
    from_synthetic_split,
)
from rainbench.cli import options
from rainbench.cli.output import emit, prepare_report, write_json
from rainbench.versions import installed_versions


@click.group("analyze")
def analyze_group() -> None:
    """Measurements on a dataset's images that check claims made about rain.

    \b
    Example:
      rainbench analyze intrinsic-dim ds --split syn-streak
    """


@analyze_group.command("intrinsic-dim")
@options.dataset("--dataset", url=True, file_okay=False)
@click.option("--split", required=True, help="The paired split, e.g. syn-streak.")
@click.option(
    "--limit", type=click.IntRange(min=1), help="Only the first N pairs, by shard and key."
)
@click.option(
    "--references",
    type=click.IntRange(min=Settings().fewest_references, max=MOST_REFERENCES),
    default=Settings.references,
    show_default=True,
    help="Reference patches per image, each with its 7 most similar in a 40×40 window "
    f"(at least {Settings().fewest_references}: {MIN_PATCHES} patches).",
)
@click.option(
    "--unit-norm", is_flag=True, help="Also scale each patch to unit norm (shape, not contrast)."
)
@click.option(
    "--seed", type=int, default=Settings.seed, show_default=True, help="Where the references fall."
)
@options.progress
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Also write the report as JSON."
)
@options.as_json("Print the report as JSON.")
def analyze_intrinsic_dim_command(
    dataset, split, limit, references, unit_norm, seed, progress, out, as_json
) -> None:
    """Intrinsic dimension of background and rain patches of a paired split.

    Checks the NLCL journal's claim that non-local image patches have a higher
    intrinsic dimension than rain patches: on each pair, NLCL's non-local groups of
    16×16 patches are sampled from the ground truth and from the rain layer
    (rainy − ground truth), and TwoNN and the Levina–Bickel MLE estimate each
    layer's dimension. Prints the median and inter-quartile range over images, and
    concludes only from a sign test over images (too few images: no conclusion).

    DATASET is a rainbench dataset with a paired split (rainbench synth).

    \b
    Example:
      rainbench analyze intrinsic-dim ds --split syn-streak --limit 50
      rainbench analyze intrinsic-dim ds --split syn-storm --json --out id.json
    """
    settings = Settings(references=references, unit_norm=unit_norm, seed=seed)
    if out:
        prepare_report(out, dataset)
    pairs = from_synthetic_split(dataset, split, limit)
    report = analyze(pairs, settings, progress)
    # What a reader needs to make the same report again: the pairs taken and the tool.
    result = {
        "dataset": str(dataset),
        "split": split,
        "limit": limit,
        "manifest_sha256": pairs.manifest_sha256,
        **report.to_dict(),
        "tool": {"name": "rainbench", "version": __version__},
        "versions": installed_versions(LIBRARIES),
    }
    if out:
        write_json(result, out)
    emit(result, as_json, lambda result: [report.to_markdown()])
