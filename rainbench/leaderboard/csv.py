"""The leaderboard as tidy CSV: one line per (dataset, split, model, metric) over all
images, plus one per rain type for the primary metric of real splits, from the shared
cells (cells.py) with full-precision numbers. No cell starts a spreadsheet formula.
"""

import csv
import io
import math
import re

from rainbench.leaderboard.bootstrap import Estimate
from rainbench.leaderboard.cells import CONTROL, table_cells
from rainbench.leaderboard.ranking import leaderboard_tables
from rainbench.leaderboard.results import Results

CSV_COLUMNS = (
    "dataset",
    "split",
    "kind",
    "model",
    "model_version",
    "complete",
    "rank",
    "metric",
    "lower_is_better",
    "primary",
    "rain_type",
    "mean",
    "low",
    "high",
    "n",
    "images_ok",
    "images_failed",
    "s_per_mp",
    "metric_protocol_version",
)


def render_csv(results: Results) -> str:
    """Tidy: one line per (dataset, split, model, metric), rain_type 'all', plus one per
    rain type for the primary metric of real splits."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for table in leaderboard_tables(results):
        for cells in table_cells(table):
            row = cells.row
            # A run without the primary metric has no rain-type values at all: no lines.
            values = [*cells.metrics, *(c for c in cells.rain_types if c.estimate is not None)]
            for cell in values:
                found = cell.estimate or Estimate(math.nan, math.nan, math.nan, 0)
                writer.writerow(
                    [
                        _csv_text(table.dataset),
                        _csv_text(table.split),
                        table.kind,
                        _csv_text(row.model),
                        _csv_text(row.run.version or ""),
                        str(row.run.complete).lower(),
                        row.rank or "",
                        _csv_text(cell.metric),
                        str(table.lower_is_better[cell.metric]).lower(),
                        str(cell.metric == table.primary).lower(),
                        _csv_text("all" if cell.rain_type is None else cell.rain_type),
                        _csv_float(found.mean),
                        _csv_float(found.low),
                        _csv_float(found.high),
                        found.n,
                        row.images_ok,
                        row.images_failed,
                        _csv_float(row.s_per_mp),
                        _csv_text((row.run.provenance or {}).get("metric_protocol_version", "")),
                    ]
                )
    return buffer.getvalue()


def _csv_float(value: float) -> str:
    """A number as Python, pandas and spreadsheets read it back: `inf` for infinity,
    empty for none."""
    return "" if math.isnan(value) else repr(value)


# A spreadsheet runs a cell starting with one of these as a formula (OWASP, "CSV
# injection"); a plain number such as -1.5 it reads as a number, so that stays.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _csv_text(value: object) -> str:
    """A name as a CSV cell no spreadsheet runs: one that would start a formula gets a
    leading single quote, shown as text; a control character but a tab or line break
    becomes a space."""
    text = CONTROL.sub(lambda found: found[0] if found[0] in "\t\r\n" else " ", str(value))
    if text.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text
