"""The benchmark: run a derainer over a dataset's splits and score it, then publish
the results as tables or a page."""

import json
from dataclasses import replace
from functools import partial
from pathlib import Path

import click

from rainbench.cli import options
from rainbench.cli.group import fail
from rainbench.cli.output import emit, on_one_line, prepare_out
from rainbench.leaderboard.eval import EvalSettings, SplitReport, evaluate, evaluate_on_ray
from rainbench.leaderboard.publish import is_leaderboard, render_leaderboard, write_leaderboard
from rainbench.leaderboard.sources import DerainerSource, FolderSource
from rainbench.models.external import CommandDerainer
from rainbench.wording import counted

_EVAL_HELP = """Run a derainer over a dataset's splits and score every output.

Real splits get the no-reference metrics (niqe, brisque, piqe), broken down by rain
type on the leaderboard; synthetic splits also psnr_y, ssim_y, psnr and ssim. One
row per image (metrics, s per megapixel, peak memory, status) goes to
RESULTS/<model>/<dataset>/<split>.parquet with a provenance JSON beside it. A failing
image is recorded and the run goes on; a killed run resumes; a re-run is a no-op.

A checkpoint of rainbench train names the captures it learnt from: a split whose images
come from them (train, pairs rendered on its clean captures) is scored, counted in the
provenance (trained_on) and shown on the leaderboard, not ranked.

\b
Example:
  rainbench eval ds --model guided --split all --results res
  rainbench eval ds --model nlcl --checkpoint runs/nlcl/nlcl.pt --split test --results res
  rainbench eval ds --model guided --option radius=8 --name guided-r8 --results res
  rainbench eval ds --model-cmd "python test.py --in {input_dir} --out {output_dir}" \\
      --name theirs --split syn-streak --results res
  rainbench eval ds --outputs derained/ --name theirs --split test --results res
  rainbench eval /shared/ds --model nlcl --checkpoint /shared/runs/nlcl/nlcl.pt \\
      --device cuda --results /shared/res --ray
"""


@click.command("eval", help=_EVAL_HELP)
@options.dataset("--dataset", url=True)
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
@click.option(
    "--name",
    help="The method's name: needed with --model-cmd or --outputs; with --model, files a "
    "variant (other options) beside the method's own results.",
)
@click.option(
    "--option",
    "options_",
    multiple=True,
    metavar="KEY=VALUE",
    help="An option of the derainer (repeatable), e.g. --option radius=8.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="With --model-cmd: the most one batch's command may run; past it, the batch's "
    "images fail.",
)
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--split", default="all", show_default=True, help="A split's name, or all.")
@click.option(
    "--results",
    default="results",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The folder results go to (RESULTS/<model>/<dataset>/<split>.parquet).",
)
@click.option(
    "--device",
    default=EvalSettings.device,
    show_default=True,
    callback=options.torch_device,
    help="cpu, cuda, cuda:1, …",
)
@click.option(
    "--tile",
    type=click.IntRange(min=64),
    default=EvalSettings.tile,
    help="Derain images larger than this in overlapping tiles of this side.",
)
@click.option(
    "--overlap", type=click.IntRange(min=0), default=EvalSettings.overlap, show_default=True
)
@click.option("--batch", type=click.IntRange(min=1), default=EvalSettings.batch, show_default=True)
@click.option(
    "--crops",
    type=click.IntRange(min=0),
    default=EvalSettings.crops,
    show_default=True,
    help="Images per split whose crops are kept for the leaderboard's comparison strip.",
)
@click.option(
    "--metrics",
    "metric_names",
    callback=options.metric_list,
    help="Comma-separated metrics instead of the defaults.",
)
@click.option(
    "--rescore-stale",
    is_flag=True,
    help="Score results made otherwise (another checkpoint, metrics, weights, or images "
    "of the split) again from the start instead of refusing them.",
)
@click.option(
    "--retry-failed",
    is_flag=True,
    help="Derain and score again the images that failed in an earlier run.",
)
@options.weights_dir
@options.threads
@options.ray
@options.as_json()
@options.progress
def eval_command(
    dataset,
    model,
    model_cmd,
    outputs,
    name,
    options_,
    timeout,
    checkpoint,
    split,
    results,
    metric_names,
    ray,
    as_json,
    progress,
    **settings,
) -> None:
    if sum(x is not None for x in (model, model_cmd, outputs)) != 1:
        raise click.UsageError("give exactly one of --model, --model-cmd or --outputs")
    if (model_cmd or outputs) and not name:
        raise click.UsageError("--model-cmd and --outputs need --name")
    eval_settings = EvalSettings(metrics=metric_names, **settings)
    if options_ and model is None:
        raise click.UsageError(
            "--option is for --model: a registered derainer's options (--model-cmd takes --timeout)"
        )
    if timeout is not None and model_cmd is None:
        raise click.UsageError("--timeout is for --model-cmd: the external command's limit")
    if outputs is not None and eval_settings.tile:  # the provenance would say it was tiled
        raise click.UsageError(
            "--tile is for --model and --model-cmd: --outputs were made elsewhere"
        )
    derainer_options = _key_values(options_)
    if ray is not None:  # each of the cluster's actors builds the source in its own folder
        outputs = outputs.absolute() if outputs else None
        checkpoint = checkpoint.absolute() if checkpoint else None
        if eval_settings.weights_dir is not None:
            weights = Path(eval_settings.weights_dir).absolute()
            eval_settings = replace(eval_settings, weights_dir=weights)
    build = partial(
        _eval_source, model, model_cmd, outputs, name, checkpoint, derainer_options, timeout
    )
    if ray is None:  # on a cluster, the GPUs are the cluster's
        options.require_device(settings["device"])
        source = build(eval_settings)
        reports = evaluate(source, dataset, split, results, eval_settings, checkpoint, progress)
    else:
        reports = evaluate_on_ray(
            build, ray, dataset, split, results, eval_settings, checkpoint, progress
        )
    emit(reports, as_json, _report_lines)
    _fail_when_every_image_failed(reports)


def _fail_when_every_image_failed(reports: list[SplitReport]) -> None:
    """Exit 1 when every image this run derained failed: a run that scored nothing is a
    failure (a derainer that cannot load, a command past its timeout), though failed
    images beside scored ones are results, reported only."""
    derained = sum(report.scored for report in reports)
    if derained and sum(report.failed for report in reports) == derained:
        where = ", ".join(str(report.path) for report in reports if report.failed)
        images = "the one image" if derained == 1 else f"every one of the {derained} images"
        fail(f"{images} derained failed (why: the error column of {where})")


def _report_lines(reports: list[SplitReport]) -> list[str]:
    lines = []
    warned = set()  # each metric's reason once, not once per split
    for report in reports:
        for metric, reason in report.unavailable_metrics.items():
            if (metric, reason) not in warned:
                click.echo(on_one_line(f"warning: {metric} not computed: {reason}"), err=True)
                warned.add((metric, reason))
        # `scored` counts every image this run derained; those that failed are apart.
        line = (
            f"{report.dataset}/{report.split} ({report.kind}): "
            f"{report.scored - report.failed} scored"
            + (
                f" ({report.metric_failed} with a metric that failed: the error column)"
                if report.metric_failed
                else ""
            )
            + f", {report.failed} failed, {report.skipped} already done"
        )
        if report.failed_before:
            line += (
                f" ({report.failed_before} of them failed before: --retry-failed derains "
                f"{'it' if report.failed_before == 1 else 'them'} again)"
            )
        line += f" -> {report.path}"
        if report.dropped:
            line += (
                f"; {report.dropped} earlier result{'s' if report.dropped > 1 else ''} dropped: "
                "the image left the split or changed, or the row was not as eval writes it"
            )
        if report.videos:
            line += (
                f"; {report.videos} video{'s' if report.videos > 1 else ''} not scored here: "
                "a video is scored through its real pairs (rainbench pairs)"
            )
        lines.append(on_one_line(line))  # a --name or dataset name may hold a line break
        seen = report.trained_on or {}
        if seen.get("images"):  # the leaderboard shows the row, unranked (ranking.py)
            lines.append(
                on_one_line(
                    f"{report.model} on {report.dataset}/{report.split}: trained on "
                    f"{seen['images']} of its {counted(seen['of'], 'image')} — shown, not ranked"
                )
            )
    return lines


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


def _eval_source(model, model_cmd, outputs, name, checkpoint, derainer_options, timeout, settings):
    if outputs is not None:
        return FolderSource(outputs, name)
    if model_cmd is not None:
        derainer = CommandDerainer(model_cmd, name=name, timeout=timeout)
        return DerainerSource(derainer, settings.device, settings.tile, settings.overlap)
    return DerainerSource.from_registry(
        model, name, checkpoint, settings.device, settings.tile, settings.overlap, derainer_options
    )


@click.command("leaderboard")
@click.option(
    "--results",
    default=("results",),
    show_default=True,
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="A results folder of rainbench eval; repeat it to publish several as one.",
)
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
    type columns on real splits, and speed. On paired splits, rows under the table show
    how far each no-reference metric agrees with psnr_y and ssim_y, with a warning for
    each pair of methods it ranks against both (as `rainbench metrics validity`). HTML
    is one self-contained page with plots and a visual comparison of the same crops
    across methods.

    \b
    Example:
      rainbench leaderboard --results res --format html --out lb.html
      rainbench leaderboard --results res --results their-res --format md
    """
    if out is None:
        click.echo(render_leaderboard(results, fmt), nl=False)
        return
    # A results file, or any other file of the user's, is never overwritten.
    prepare_out(out, "a leaderboard", is_leaderboard)
    click.echo(f"wrote {write_leaderboard(results, fmt, out)}")
