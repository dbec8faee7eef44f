"""The leaderboard as LaTeX: one booktabs table per split of the shared cells (cells.py),
best values in bold, every name escaped.
"""

import re

from rainbench.leaderboard.cells import (
    RowCells,
    ValueCell,
    kind_label,
    metric_label,
    table_cells,
)
from rainbench.leaderboard.ranking import SplitTable, leaderboard_tables
from rainbench.leaderboard.results import Results


def render_latex(results: Results) -> str:
    """One booktabs table per split (needs \\usepackage{booktabs}); best values in bold."""
    blocks = ["% rainbench leaderboard; needs \\usepackage{booktabs}"]
    blocks += [_latex_table(table) for table in leaderboard_tables(results)]
    return "\n\n".join(blocks) + "\n"


def _latex_table(table: SplitTable) -> str:
    ranked = f", ranked by {metric_label(table.primary)}" if table.primary else ""
    caption = (
        f"{_tex(table.title)} ({kind_label(table)}, {table.images} images{_tex(ranked)}): mean and "
        f"95\\% bootstrap interval over the images each model processed; best in bold."
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
        f"\\label{{tab:{_label(table)}}}",
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
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines)


def _latex_row(cells: RowCells) -> list[str]:
    failed = cells.row.images_failed
    return [
        str(cells.row.rank or "--"),
        _tex(cells.model),
        *(
            f"{_latex_value(cell)} [{cell.low}, {cell.high}]" if cell.present else "--"
            for cell in cells.metrics
        ),
        *(_latex_value(cell) if cell.present else "--" for cell in cells.rain_types),
        cells.speed.replace("—", "--"),
        f"{cells.row.images_ok}" + (f" (+{failed} failed)" if failed else ""),
    ]


def _latex_value(cell: ValueCell) -> str:
    return f"\\textbf{{{cell.mean}}}" if cell.best else cell.mean


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
}


def _tex(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(c, c) for c in text)


def _tex_arrow(lower_is_better: bool) -> str:
    return "$\\downarrow$" if lower_is_better else "$\\uparrow$"


def _label(table: SplitTable) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", table.title).strip("-").lower()
