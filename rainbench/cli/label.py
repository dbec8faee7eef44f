"""`rainbench label`: the page for labelling a dataset's rainy captures by eye."""

from pathlib import Path

import click

from rainbench.cli import options
from rainbench.cli.output import emit
from rainbench.ingest.label_page import DEFAULT_LIMIT, KEY_LABELS, LabelPage, write_label_page


@click.command("label")
@options.dataset(url=True)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("labels.html"),
    show_default=True,
    help="The page to write.",
)
@click.option("--split", "splits", multiple=True, help="Only this split (repeatable).")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=DEFAULT_LIMIT,
    show_default=True,
    help="At most this many captures, those the tagger is least sure of.",
)
@options.workers
@options.as_json()
@options.progress
def label_command(dataset, out, splits, limit, workers, as_json, progress) -> None:
    """Write one self-contained HTML page for labelling DATASET's rainy captures.

    Each capture shows a thumbnail and a 1:1 crop where the rain is most visible,
    with the tagger's pick, least confident first. In the page, keys 1–5 set
    the label and move on; Export CSV saves a label sheet for rainbench tag --labels.
    The page works offline; labels are kept in the browser until exported.

    \b
    Example:
      rainbench label ds --out labels.html
      rainbench tag ds --labels labels-ds.csv   # the sheet's name, as label printed it
    """
    page = write_label_page(dataset, out, tuple(splits), limit, workers, progress)
    emit(page, as_json, format_page)


def format_page(page: LabelPage) -> list[str]:
    keys = ", ".join(f"{number} {label}" for number, label in enumerate(KEY_LABELS, 1))
    lines = [
        f"wrote {page.out}: {page.cards} of {page.rainy} rainy captures, least sure first",
        f"keys: {keys}; Export CSV saves the label sheet as {page.sheet}",
    ]
    if page.unreadable:
        # The first one's reason, which is not always damage that verify would find (a
        # picture past the readers' pixel cap reads as sound there).
        lines.append(
            f"could not show {len(page.unreadable)} (the page says why of each); the "
            f"first: {page.first_problem}"
        )
    return lines
