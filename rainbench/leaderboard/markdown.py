"""The leaderboard as Markdown: a glossary of the metrics, then per split a table of the
shared cells (cells.py), on paired splits with rows of each no-reference metric's
agreement with the full-reference ones (validity.py) and its warnings, and the run's
provenance as a list. Every name from the results is escaped so that it renders as its
plain text.
"""

import math
import re

from rainbench import __version__
from rainbench.leaderboard.cells import (
    CONTROL,
    VERSION_NOTE,
    RowCells,
    ValueCell,
    arrow,
    conventions,
    failures_text,
    ground_truth_text,
    hardware_text,
    images_text,
    infinite_text,
    kind_label,
    metric_glossary,
    metric_label,
    missing_text,
    primary_label,
    short_sha,
    table_cells,
    unavailable_text,
    unranked_text,
)
from rainbench.leaderboard.ranking import Row, SplitTable, leaderboard_tables
from rainbench.leaderboard.results import Results
from rainbench.leaderboard.validity import (
    AgreementRow,
    SplitValidity,
    agreement_rows,
    correlation_text,
    discordance_text,
    flagged,
    real_split_note,
    validity_by_split,
    validity_caveats,
    validity_note,
)
from rainbench.wording import counted


def render_markdown(results: Results) -> str:
    tables = leaderboard_tables(results)
    lines = [
        f"# rainbench leaderboard: {_md(' + '.join(results.names))}",
        "",
        "Each cell is a mean with its 95% bootstrap interval in brackets; **bold** is the "
        f"best in its column. Rows are ranked by the split's primary metric. {VERSION_NOTE} "
        "After it, (imported weights) marks weights imported from a published release and "
        "(incomplete) a run that has not finished.",
        "",
        "Metrics:",
        "",
        *(
            _glossary_line(m, lower, description)
            for m, lower, description in metric_glossary(tables)
        ),
    ]
    unavailable = unavailable_text(tables)
    if unavailable:
        lines += ["", _md(unavailable)]
    validities = validity_by_split(tables)
    if validities:
        lines += ["", _md(validity_note())]
    for table in tables:
        validity = validities.get((table.dataset, table.split))
        note = real_split_note(table, list(validities.values()))
        lines += ["", *_markdown_table(table, validity, note)]
    files = counted(len(results.runs), "result file")
    lines += ["", f"Made by rainbench {__version__} from {files}."]
    return "\n".join(lines) + "\n"


def _glossary_line(metric: str, lower_is_better: bool, description: str) -> str:
    line = f"- {_md(metric_label(metric))} {arrow(lower_is_better)} ({_md_code(metric)})"
    return f"{line}: {_md(description)}" if description else line


def _markdown_table(
    table: SplitTable, validity: SplitValidity | None, real_note: str | None
) -> list[str]:
    images = counted(table.images, "image")
    lines = [f"## {_md(table.title)} ({kind_label(table)}, {images})", ""]
    if table.primary:
        lines += [f"Ranked by {_md(primary_label(table))}.", ""]
    warned = flagged(validity)
    header = ["rank", "model"]
    header += [
        f"{_md(metric_label(m))} {arrow(table.lower_is_better[m])}{' ⚠' * (m in warned)} (95% CI)"
        for m in table.metrics
    ]
    header += [_md(f"{t}: {primary_label(table)}") for t in table.rain_types]
    header += ["s/MP", "images"]
    lines += ["| " + " | ".join(header) + " |"]
    lines += ["|" + "|".join(["---:", "---", *["---:"] * (len(header) - 2)]) + "|"]
    lines += ["| " + " | ".join(_markdown_row(cells)) + " |" for cells in table_cells(table)]
    if validity:
        extra = len(table.rain_types) + 2
        lines += [
            "| " + " | ".join(_agreement_row(row, extra)) + " |"
            for row in agreement_rows(table, validity)
        ]
    lines += ["", f"Conventions: {_md(conventions(table))}."]
    if validity:
        caveats = validity_caveats(validity)
        lines += ["", _md(" ".join(caveats))] if caveats else []
        warnings = [f"- {_md(discordance_text(d))}." for d in validity.discordances]
        lines += ["", *warnings] if warnings else []
    if real_note:
        lines += ["", _md(real_note)]
    truth = ground_truth_text(table)
    if truth:
        lines += ["", _md(truth)]
    for text in (
        unranked_text(table),
        failures_text(table),
        missing_text(table),
        infinite_text(table),
    ):
        lines += ["", _md(text)] if text else []
    lines += ["", "Provenance:", ""]
    lines += [f"- {_md(_provenance_text(row))}" for row in table.rows]
    return lines


def _markdown_row(cells: RowCells) -> list[str]:
    return [
        str(cells.row.rank or "—"),
        _md(cells.model),
        *(
            f"{_markdown_value(cell)} [{cell.low}, {cell.high}]" if cell.present else "—"
            for cell in cells.metrics
        ),
        *(
            f"{_markdown_value(cell)} (n={cell.n})" if cell.present else "—"
            for cell in cells.rain_types
        ),
        cells.speed,
        images_text(cells.row),
    ]


def _agreement_row(row: AgreementRow, extra: int) -> list[str]:
    """The statistic under each no-reference column; `extra` empty cells end the row."""
    cells = []
    for found in row.cells:
        if found is None:
            cells.append("")
            continue
        value, low, high = correlation_text(found)
        shown = f"{value} [{low}, {high}]" if math.isfinite(found.value) else "—"
        cells.append(f"{shown} (n={found.n})")
    return ["", f"*{_md(row.label)}*", *cells, *[""] * extra]


def _markdown_value(cell: ValueCell) -> str:
    return f"**{cell.mean}**" if cell.best else cell.mean


def _provenance_text(row: Row) -> str:
    provenance = row.run.provenance or {}
    checkpoint = (provenance.get("checkpoint") or {}).get("sha256")
    dataset = provenance.get("dataset") or {}
    parts = [
        f"{row.model} {row.run.version or ''}".rstrip() + ":",
        f"checkpoint {short_sha(checkpoint)},",
        f"manifest {short_sha(dataset.get('manifest_sha256'))},",
        # Recorded since 2026-12: older results name only the manifest.
        *([f"split {short_sha(dataset['split_sha256'])},"] if dataset.get("split_sha256") else []),
        f"hardware {hardware_text(provenance)},",
        f"finished {provenance.get('finished_at') or 'no (incomplete)'}",
    ]
    if not row.run.path.is_file():
        parts.append("— no Parquet yet")
    elif not provenance:
        parts.append("— no JSON provenance")
    return " ".join(parts)


# Markdown that a name must not start: inline markup is escaped wherever it stands, and
# what would open a block (a list, a heading) where the name starts a line.
_MD_ESCAPED = frozenset("\\`*[]|~$")
_MD_HTML = {"<": "&lt;", ">": "&gt;"}
_MD_ENTITY = re.compile(r"&(#[0-9]+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);")
_MD_BLOCK_START = re.compile(r"^(\s*)([-+#=]|\d+(?=[.)]))")


def _md(text: str) -> str:
    """`text` as Markdown that renders as the same plain text, in a table cell or a
    list item: no HTML, link, emphasis, code or math, and no line break or `|` to end
    the cell. `&` and intra-word `_` stay as they are where they cannot be markup."""
    text = CONTROL.sub(" ", text)
    out = []
    for index, char in enumerate(text):
        if char in _MD_ESCAPED:
            out.append("\\" + char)
        elif char in _MD_HTML:
            out.append(_MD_HTML[char])
        elif char == "&" and _MD_ENTITY.match(text, index):
            out.append("&amp;")
        elif char == "_" and not _between_word_characters(text, index):
            out.append("\\_")
        else:
            out.append(char)
    escaped = "".join(out)
    block = _MD_BLOCK_START.match(escaped)
    if block is None:
        return escaped
    lead, marker = block.groups()
    if marker.isdigit():  # "1." or "1)" would start a numbered list
        end = block.end()
        return f"{escaped[:end]}\\{escaped[end:]}"
    return f"{lead}\\{escaped[len(lead) :]}"


def _between_word_characters(text: str, index: int) -> bool:
    """Whether text[index] has a letter or digit on both sides: an `_` there is no
    emphasis in CommonMark."""
    return 0 < index < len(text) - 1 and text[index - 1].isalnum() and text[index + 1].isalnum()


def _md_code(text: str) -> str:
    """`text` as a Markdown code span, fenced by more backticks than it holds in a row."""
    text = CONTROL.sub(" ", text)
    fence = "`" * (1 + max((len(run) for run in re.findall("`+", text)), default=0))
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"
