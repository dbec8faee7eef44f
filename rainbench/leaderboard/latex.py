"""The leaderboard as LaTeX: one booktabs table per split of the shared cells (cells.py),
best values in bold, every name escaped, and why a row is not ranked under it; on paired
splits, rows of each no-reference metric's agreement with the full-reference ones
(validity.py) and its warnings.
"""

import math
import re

from rainbench import __version__
from rainbench.leaderboard.cells import (
    CONTROL,
    INFINITY,
    RowCells,
    ValueCell,
    kind_label,
    metric_label,
    missing_text,
    table_cells,
    unique_names,
    unranked_text,
)
from rainbench.leaderboard.ranking import SplitTable, leaderboard_tables
from rainbench.leaderboard.results import Results
from rainbench.leaderboard.validity import (
    AgreementRow,
    SplitValidity,
    agreement_rows,
    correlation_text,
    discordance_text,
    validity_by_split,
    validity_caveats,
)
from rainbench.wording import counted


def render_latex(results: Results) -> str:
    """One booktabs table per split (needs \\usepackage{booktabs}); best values in bold."""
    tables = leaderboard_tables(results)
    validities = validity_by_split(tables)
    blocks = [
        f"% rainbench leaderboard, made by rainbench {__version__}; needs \\usepackage{{booktabs}}"
    ]
    blocks += [
        _latex_table(table, validities.get((table.dataset, table.split)), label)
        for table, label in zip(tables, _labels(tables), strict=True)
    ]
    return "\n\n".join(blocks) + "\n"


def _latex_table(table: SplitTable, validity: SplitValidity | None, label: str) -> str:
    ranked = f", ranked by {metric_label(table.primary)}" if table.primary else ""
    images = counted(table.images, "image")
    caption = (
        f"{_tex(table.title)} ({kind_label(table)}, {images}{_tex(ranked)}): mean and "
        f"95\\% bootstrap interval over the images each model processed; best in bold."
    )
    if validity:
        references = " and ".join(_tex(metric_label(r)) for r in validity.references)
        caption += (
            f" Last rows: each no-reference metric's agreement with {references} (+1: it "
            "calls better what they do), Kendall $\\tau$ between the methods' means and "
            "Spearman $\\rho$ over every (method, image), with 95\\% bootstrap intervals "
            "resampling images."
        )
    columns = "rl" + "c" * len(table.metrics) + "r" * len(table.rain_types) + "rr"
    header = ["Rank", "Model"]
    header += [
        f"{_tex(metric_label(m))} {_tex_arrow(table.lower_is_better[m])}" for m in table.metrics
    ]
    header += [_tex(t) for t in table.rain_types]
    header += ["s/MP", "Images"]
    lines = [
        "\\begin{table}[t]",
        "\\centering",
        f"\\caption{{{caption}}}",
        f"\\label{{tab:{label}}}",
        f"\\begin{{tabular}}{{{columns}}}",
        "\\toprule",
    ]
    if table.rain_types:
        first = 3 + len(table.metrics)
        lines += [
            " & " * (first - 1)
            + f"\\multicolumn{{{len(table.rain_types)}}}{{c}}{{{_tex(metric_label(table.primary))} "
            + f"{_tex_arrow(table.lower_is_better[table.primary])} by rain type}} & & \\\\",
            f"\\cmidrule(lr){{{first}-{first + len(table.rain_types) - 1}}}",
        ]
    lines.append(" & ".join(header) + " \\\\")
    lines.append("\\midrule")
    lines += [" & ".join(_latex_row(cells)) + " \\\\" for cells in table_cells(table)]
    if validity and (found := agreement_rows(table, validity)):
        extra = len(table.rain_types) + 2
        lines.append("\\midrule")
        lines += [" & ".join(_agreement_row(row, extra)) + " \\\\" for row in found]
    lines += ["\\bottomrule", "\\end{tabular}"]
    notes = [
        f"\\textbf{{Warning:}} {_tex(discordance_text(d).removeprefix('⚠ '))}.\\par"
        for d in (validity.discordances if validity else ())
    ]
    # The caveats under the agreement rows (a method left out of them, or too few for τ),
    # then why a metric was not measured, as Markdown and HTML say them.
    notes += [f"{_tex(text)}\\par" for text in (validity_caveats(validity) if validity else ())]
    notes += [f"{_tex(text)}\\par" for text in (unranked_text(table), missing_text(table)) if text]
    if notes:
        lines += ["\\par\\smallskip\\footnotesize", *notes]
    lines.append("\\end{table}")
    return "\n".join(lines)


def _agreement_row(row: AgreementRow, extra: int) -> list[str]:
    """The statistic under each no-reference column; `extra` empty cells end the row."""
    symbol = {"τ": "$\\tau$", "ρ": "$\\rho$"}[row.symbol]
    label = f"{symbol} with {_tex(metric_label(row.reference))} across {row.across}"
    cells = []
    for found in row.cells:
        if found is None:
            cells.append("")
        elif not math.isfinite(found.value):
            cells.append(f"-- ($n={found.n}$)")
        else:
            value, low, high = correlation_text(found)
            cells.append(f"${value}$ [${low}$, ${high}$] ($n={found.n}$)")
    return [f"\\multicolumn{{2}}{{l}}{{{label}}}", *cells, *[""] * extra]


def _latex_row(cells: RowCells) -> list[str]:
    failed = cells.row.images_failed
    return [
        str(cells.row.rank or "--"),
        _tex(cells.model),
        *(
            f"{_latex_value(cell)} [{_latex_number(cell.low)}, {_latex_number(cell.high)}]"
            if cell.present
            else "--"
            for cell in cells.metrics
        ),
        *(_latex_value(cell) if cell.present else "--" for cell in cells.rain_types),
        cells.speed.replace("—", "--"),
        f"{cells.row.images_ok}" + (f" (+{failed} failed)" if failed else ""),
    ]


def _latex_value(cell: ValueCell) -> str:
    mean = _latex_number(cell.mean)
    return f"\\textbf{{{mean}}}" if cell.best else mean


def _latex_number(text: str) -> str:
    """A formatted value as LaTeX: infinity as the symbol."""
    return text.replace("−", "-").replace(INFINITY, "$\\infty$")


_TEX_ESCAPES = {
    "\\": "\\textbackslash{}",
    "&": "\\&",
    "%": "\\%",
    "$": "\\$",
    "#": "\\#",
    "_": "\\_",
    "{": "\\{",
    "}": "\\}",
    "~": "\\textasciitilde{}",
    "^": "\\textasciicircum{}",
    # Under the default OT1 font encoding these three print as other glyphs (—, ¡, ¿).
    "|": "\\textbar{}",
    "<": "\\textless{}",
    ">": "\\textgreater{}",
    # The agreement notes' statistics and signs, which pdfLaTeX's text fonts lack.
    "τ": "$\\tau$",
    "ρ": "$\\rho$",
    "−": "$-$",
}


def _tex(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(c, c) for c in CONTROL.sub(" ", text))


def _tex_arrow(lower_is_better: bool) -> str:
    return "$\\downarrow$" if lower_is_better else "$\\uparrow$"


def _labels(tables: list[SplitTable]) -> list[str]:
    # Unique: 雨 / test and 雪 / test both give test, and a \ref finds only one of them.
    return unique_names(
        [re.sub(r"[^A-Za-z0-9]+", "-", table.title).strip("-").lower() for table in tables]
    )
