"""The whole journey in one command, on built-in data."""

from pathlib import Path

import click

from rainbench.cli import options
from rainbench.cli.output import emit
from rainbench.demo.run import DemoOptions, DemoResult, run_demo


@click.command("demo")
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
    # At most a 24 MP camera's: the demo trains NLCL on its captures and scores them,
    # and from about 19 400 px they pass the readers' pixel cap.
    type=click.IntRange(min=96, max=6000),
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
@click.option(
    "--device",
    callback=options.torch_device,
    help="cpu, cuda, cuda:1, …  [default: cuda when there is a GPU]",
)
@click.option(
    "--no-fetch",
    is_flag=True,
    help="Never try downloading the metrics' weight files (NIQE, BRISQUE); without them "
    "those metrics are left out.",
)
@options.workers
@options.threads
@options.as_json("Print the result as JSON.")
@options.progress
def demo_command(out, width, seed, device, no_fetch, workers, threads, as_json, progress) -> None:
    """The whole journey in one command, on built-in data.

    Makes a folder of rainy and clean captures (with EXIF, a duplicate, a near-duplicate
    and bad files) from scikit-image's photographs, ingests and tags it, builds the
    synthetic splits, trains NLCL briefly, downloads NIQE's and BRISQUE's weight files
    where there is network (else leaves them out), evaluates every derainer on the real
    and synthetic test splits and publishes the leaderboard as Markdown and HTML. Under
    10 minutes on two CPU cores; needs the demo extra (pip install "rainbench[demo]").

    \b
    Example:
      rainbench demo --out demo
    """
    options.require_device(device)
    demo_options = DemoOptions(
        width=width,
        seed=seed,
        device=device,
        workers=workers,
        threads=threads,
        fetch_weights=not no_fetch,
    )
    emit(run_demo(out, demo_options, progress), as_json, _demo_lines)


def _demo_lines(result: DemoResult) -> list[str]:
    lines = [f"rainbench demo: done in {_duration(result.seconds)} on {result.device}"]
    width = max(len(stage.name) for stage in result.stages)
    lines += [
        f"  {stage.name:<{width}} {stage.seconds:6.1f} s  {stage.detail}" for stage in result.stages
    ]
    lines += [f"not evaluated: {name}: {why}" for name, why in result.skipped_methods.items()]
    lines += [
        f"not downloaded: {why}" for why in result.weights.values() if not why.startswith("fetched")
    ]
    lines += [f"not computed: {why}" for why in result.unavailable_metrics.values()]
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
    lines.append("\nLook at:")
    lines += [f"  {path!s:<{width}}  {what}" for path, what in places]
    lines.append(
        f"Then try:\n"
        f"  rainbench stats {data}\n"
        f"  rainbench eval {data} --model guided --option radius=8 --name guided-r8 "
        f"--split test --results {result.results}\n"
        f"  rainbench leaderboard --results {result.results} --format latex\n"
        f"  rainbench weights status\n"
        f"and the documentation: docs/README.md"
    )
    return lines


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"
