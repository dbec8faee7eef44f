"""`rainbench pairs`: real pairs from a dataset's rain videos and bursts of stills."""

import click

from rainbench.cli import options
from rainbench.cli.output import emit
from rainbench.cli.synth import fail_if_nothing_made, pairs_lines
from rainbench.pairs.build import (
    DEFAULT_NAME,
    DEFAULT_SHARD_BYTES,
    PairsOptions,
    RealPairsSummary,
    build_pairs,
)
from rainbench.pairs.estimate import METHODS, EstimateOptions
from rainbench.wording import counted

_DEFAULTS = EstimateOptions()


@click.command("pairs")
@options.dataset(url=True)
@click.option(
    "--name",
    default=DEFAULT_NAME,
    show_default=True,
    help="The real-paired split's name.",
)
@click.option(
    "--method",
    type=click.Choice(METHODS),
    default=_DEFAULTS.method,
    show_default=True,
    help="The temporal statistic: a low percentile, the median, or low-rank + sparse.",
)
@click.option(
    "--percentile",
    type=click.FloatRange(0, 100),
    default=_DEFAULTS.percentile,
    show_default=True,
    help="Which percentile --method percentile takes (rain only adds light).",
)
@click.option(
    "--window",
    type=click.IntRange(min=_DEFAULTS.min_frames),
    default=_DEFAULTS.window,
    show_default=True,
    help="Frames each background is estimated from.",
)
@click.option(
    "--stride",
    type=click.IntRange(min=1),
    default=_DEFAULTS.stride,
    show_default=True,
    help="Pair every STRIDE-th frame.",
)
@click.option(
    "--register/--no-register",
    default=_DEFAULTS.register,
    show_default=True,
    help="Undo small camera shake before the statistic.",
)
@click.option(
    "--max-moving",
    type=click.FloatRange(0, 1, min_open=True),
    default=_DEFAULTS.max_moving,
    show_default=True,
    help="Leave out a frame with more of its area moving (cars, people, leaves).",
)
@click.option(
    "--min-confident",
    type=click.FloatRange(0, 1),
    default=_DEFAULTS.min_confident,
    show_default=True,
    help="Leave out a frame with less of its area confident (too few frames without rain).",
)
@click.option(
    "--rain-free/--no-rain-free",
    "prefer_rain_free",
    default=_DEFAULTS.prefer_rain_free,
    show_default=True,
    help="Take the sequence's rain-free frames, when it has them, as ground truth.",
)
@click.option(
    "--sequence",
    "sequences",
    multiple=True,
    help="Only this sequence: a video's key or a burst's first still's (repeatable).",
)
@options.shard_size(DEFAULT_SHARD_BYTES)
@options.workers
@options.as_json()
@options.progress
def pairs_command(
    dataset, name, sequences, shard_size, workers, as_json, progress, **estimate
) -> None:
    """Pair DATASET's rain videos and bursts with clean frames estimated from time.

    The pairs are stored as the real-paired split NAME. Each sequence's frames are
    registered (small shake undone), moving things are masked, and the background is a
    temporal statistic over a window of frames that knows rain only adds light;
    rain-free frames of the same sequence, when present, are preferred. Every pair
    keeps its confidence map, which its metrics use. Re-running is a no-op; the same
    inputs give byte-identical shards.

    \b
    Example:
      rainbench ingest videos/ --out ds
      rainbench pairs ds
      rainbench eval ds --model guided --split all --results res
    """
    pairs_options = PairsOptions(
        name=name,
        estimate=EstimateOptions(**estimate),
        sequences=tuple(sequences),
        shard_bytes=shard_size,
        workers=workers,
    )
    summary = build_pairs(dataset, pairs_options, progress=progress)
    emit(summary, as_json, _lines)
    fail_if_nothing_made(summary, "no frame of any sequence could be paired", as_json)


def _lines(summary: RealPairsSummary) -> list[str]:
    return pairs_lines(summary) + [
        f"{split}: {counted(count, 'pair')} of sequences whose frames changed since "
        f"{'was' if count == 1 else 'were'} replaced"
        for split, count in sorted(summary.changed.items())
        if count
    ]
