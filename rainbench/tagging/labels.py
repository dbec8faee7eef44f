"""Manual rain-type labels: reading a label sheet (a CSV a person filled in) and matching
each row to the capture it names in samples.parquet. A mistake on one row is reported
with its line, never raised, so one bad row does not cost the rest of the sheet.
"""

import csv
import io
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from rainbench.errors import RainbenchError
from rainbench.files import regular_file

LABEL_TYPES = ("drizzle", "streak", "storm", "fog-like", "clean")  # clean: no rain visible
# A note starting so is a formula to a spreadsheet: the label page exports it after a
# single quote, shown as text, which reading the sheet takes off.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

# A sheet's size read at most: a million rows of key, type and note take about 110 MB,
# and reading them about ten times that in memory.
MAX_SHEET_BYTES = 256 << 20

# Rows that name no capture, listed one by one at most; the rest are counted in one line.
SHOWN_UNMATCHED = 5

# The columns that name a capture, most precise first: a row uses the first it fills.
IDENTS = ("key", "sha256", "source_path")
_HEX_DIGITS = {"key": 24, "sha256": 64}
_ALLOWED = f"allowed: {', '.join(LABEL_TYPES)}"
_ANY_IDENT = f"{', '.join(IDENTS[:-1])} or {IDENTS[-1]}"
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# What a spreadsheet may separate cells with: a comma, or a semicolon where the decimal
# separator is a comma (Excel in much of Europe), or a tab.
_DELIMITERS = (",", ";", "\t")


@dataclass(frozen=True)
class Label:
    line: int  # 1-based line in the sheet; the header is line 1 unless comments precede it
    ident: str  # the identifying column used: one of IDENTS
    # Its value: hex lowercased; a source_path as given, spaces included, without a
    # leading ./ (matching tries it exactly first, then stripped, then in other spellings).
    value: str
    rain_type: str  # one of LABEL_TYPES
    note: str | None


@dataclass(frozen=True)
class LabelProblem:
    sheet: str
    line: int
    message: str
    rows: int = 1  # the sheet's rows it stands for: several that name no capture, said once

    def __str__(self) -> str:
        if not self.sheet:
            return f"line {self.line}: {self.message}"
        return f"{self.sheet}:{self.line}: {self.message}"


class LabelSheetError(RainbenchError, ValueError):
    """The whole sheet is unusable; the message is one line naming the file. A
    RainbenchError, caught with rainbench's other expected failures."""


@dataclass
class LabelMatch:
    labels: dict[str, Label]  # sample key -> the label that applies
    problems: list[LabelProblem]


def read_label_sheet(path: Path) -> tuple[list[Label], list[LabelProblem]]:
    """The sheet's labels, and a problem for each row that cannot be one."""
    text = _read_text(path)
    # The lines as the reader counts them: only a line that starts with # as written is
    # a comment, not a row whose first cell, quoted, does.
    raw_lines = io.StringIO(text, newline="").readlines()
    delimiter = _delimiter(raw_lines)
    start = 1  # the line the row being read starts on

    def uncommented() -> Iterator[str]:
        # A comment never reaches the reader (a blank line stands in, keeping the line
        # numbers), so a quote in it opens no cell that would take label rows into it;
        # a line inside a quoted cell is that cell's text, # or not.
        for number, raw in enumerate(raw_lines, 1):
            yield "\n" if number == start and _comment(raw) else raw

    reader = csv.reader(uncommented(), delimiter=delimiter, strict=True)
    columns: dict[str, int] | None = None
    labels: list[Label] = []
    problems: list[LabelProblem] = []
    try:
        for cells in reader:
            # A quoted cell may span lines: a row is numbered by the line it starts on.
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue
            if columns is None:
                if any(_LINE_BREAK.search(cell) for cell in cells):
                    raise LabelSheetError(f'{path}:{line}: a quote (") in the header is not closed')
                columns = _header(path, cells)
                continue
            swallowed = _swallowed_row(line, cells, columns, delimiter)
            if swallowed is not None:
                raise LabelSheetError(
                    f'{path}:{line}: a quote (") opened on this line is not closed: its cell '
                    f"runs on over line {swallowed}, which reads as a label row"
                )
            result = _row(line, cells, columns)
            if isinstance(result, Label):
                labels.append(result)
            else:
                problems.append(LabelProblem(str(path), line, result))
    except csv.Error as err:
        # Strict, so a quote left open that runs to the end of the sheet, or to a later
        # quote with text after it, is an error instead of one long cell.
        if "end of data" in str(err):
            message = 'a quote (") opened on this line is never closed'
        else:
            where = "" if reader.line_num == start else f" on line {reader.line_num}"
            message = f"not a readable CSV ({err}{where})"
        raise LabelSheetError(f"{path}:{start}: {message}") from err
    if columns is None:
        raise LabelSheetError(f"{path}: no header row (it needs rain_type and one of {_ANY_IDENT})")
    return labels, problems


def match_labels(
    labels: list[Label], samples: pa.Table, rejects: pa.Table | None = None, sheet: str = ""
) -> LabelMatch:
    """The capture each label names. Labels that name no capture, or several, or that
    disagree with an earlier label of the same capture, become problems instead; those
    that name no capture are listed up to SHOWN_UNMATCHED, then counted (`_unmatched_said`)."""
    index, clean_layer = _index(samples)
    refused = _refused(rejects)
    first: dict[str, Label] = {}
    conflicting: set[str] = set()
    problems: list[LabelProblem] = []
    nowhere: list[LabelProblem] = []  # rows naming no capture, nor one refused at ingest
    for label in sorted(labels, key=lambda label: label.line):
        keys = _named(index, label)
        if len(keys) != 1:
            message = _unmatched(label, len(keys), refused)
            if message is None:
                message = f"no capture has {_named_as(label)}"
                nowhere.append(LabelProblem(sheet, label.line, message))
            else:
                problems.append(LabelProblem(sheet, label.line, message))
            continue
        key = keys[0]
        if key in clean_layer and label.rain_type != "clean":
            # The contract keeps rain_type null for the clean layer.
            message = f"capture {key} is in the clean layer, which takes no rain type"
            problems.append(LabelProblem(sheet, label.line, message))
        elif key not in first:
            first[key] = label
        elif first[key].rain_type != label.rain_type:
            earlier = first[key]
            message = (
                f"conflicts with line {earlier.line} for capture {key} "
                f"({earlier.rain_type} there, {label.rain_type} here): neither is applied"
            )
            problems.append(LabelProblem(sheet, label.line, message))
            conflicting.add(key)
    applied = {key: label for key, label in first.items() if key not in conflicting}
    problems = sorted([*problems, *_unmatched_said(nowhere, len(labels))], key=lambda p: p.line)
    return LabelMatch(applied, problems)


def _unmatched_said(nowhere: list[LabelProblem], labels: int) -> list[LabelProblem]:
    """The problems of the rows that name no capture, as few lines as say them: each of
    the first SHOWN_UNMATCHED, then one counting the rest; one line alone when no row of
    the sheet names a capture, as a sheet of another dataset does."""
    if len(nowhere) <= SHOWN_UNMATCHED:
        return nowhere
    first = nowhere[0]
    if len(nowhere) == labels:
        message = (
            f"none of the sheet's {labels} label rows names a capture of this dataset (the "
            f"first: {first.message}): is it another dataset's sheet?"
        )
        return [LabelProblem(first.sheet, first.line, message, rows=labels)]
    rest = nowhere[SHOWN_UNMATCHED:]
    message = f"and {len(rest)} more rows from here on that name no capture of this dataset"
    return [*nowhere[:SHOWN_UNMATCHED], LabelProblem(first.sheet, rest[0].line, message, len(rest))]


def _named(index: dict[tuple[str, str], list[str]], label: Label) -> list[str]:
    """The keys of the captures `label` names: for a source_path, those of the first of
    its spellings (`_spellings`) that names any."""
    if label.ident != "source_path":
        return index.get((label.ident, label.value), [])
    for spelling in _spellings(label.value):
        keys = index.get(("source_path", spelling)) or index.get((_NFC, _nfc(spelling)))
        if keys:
            return keys
    return []


# The index's entries by a source_path in Unicode's composed form (NFC): macOS stores
# "Café" decomposed (NFD), while a sheet typed or saved elsewhere holds it composed.
_NFC = "source_path NFC"


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def _spellings(value: str) -> Iterator[str]:
    """The paths a sheet's source_path may mean, most exact first: as given (a name may
    begin or end with a space), stripped of spaces around it, and for each, when it holds
    backslashes (a name may hold one), with a "/" for each: a path typed the Windows
    way. Each is looked up exactly, then in composed Unicode."""
    given = [value, value.strip().removeprefix("./")]
    given += [path.replace("\\", "/").removeprefix("./") for path in given if "\\" in path]
    yield from dict.fromkeys(given)


def _comment(line: str) -> bool:
    return line.lstrip(" \t").startswith("#")


def _delimiter(lines: list[str]) -> str:
    """The separator whose reading of the first line that is neither blank nor a comment
    (the header) has a rain_type column; a comma when none does."""
    header = next((line for line in lines if line.strip() and not _comment(line)), "")
    for delimiter in _DELIMITERS:
        cells = next(csv.reader([header], delimiter=delimiter), [])
        if "rain_type" in (cell.strip().lower() for cell in cells):
            return delimiter
    return ","


def _read_text(path: Path) -> str:
    try:
        with open(regular_file(path), "rb") as handle:  # a FIFO would block the reader
            data = handle.read(MAX_SHEET_BYTES + 1)
    except FileNotFoundError as err:
        raise LabelSheetError(f"{path}: no such label sheet") from err
    except OSError as err:
        raise LabelSheetError(f"{path}: cannot read the label sheet ({err.strerror})") from err
    if len(data) > MAX_SHEET_BYTES:
        raise LabelSheetError(
            f"{path}: larger than {MAX_SHEET_BYTES >> 20} MiB; refused (a label sheet is a "
            "short row per capture: split it)"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        # err.object, not data: the offsets count from after a BOM.
        line = err.object[: err.start].count(b"\n") + 1
        byte = err.object[err.start]
        raise LabelSheetError(
            f"{path}:{line}: not UTF-8 text (byte 0x{byte:02x}); save it as UTF-8 CSV"
        ) from err


def _swallowed_row(
    line: int, cells: list[str], columns: dict[str, int], delimiter: str
) -> int | None:
    """The line of the first label row inside a cell that spans lines: a quote left open
    takes the rows after it into its cell until another quote closes it; None if none."""
    for cell in cells:
        parts = _LINE_BREAK.split(cell)
        for offset, text in enumerate(parts[1:], 1):
            inner = next(csv.reader([text], delimiter=delimiter), [])
            if isinstance(_row(line + offset, inner, columns), Label):
                return line + offset
        line += len(parts) - 1
    return None


def _header(path: Path, cells: list[str]) -> dict[str, int]:
    """Where each column this module reads sits; headers are case-insensitive."""
    names = [cell.strip().lower() for cell in cells]
    columns = {name: names.index(name) for name in (*IDENTS, "rain_type", "note") if name in names}
    found = ",".join(cells)
    twice = [name for name in columns if names.count(name) > 1]
    if twice:  # which of the two would be meant cannot be told
        raise LabelSheetError(
            f"{path}: the column {twice[0]} appears twice (the header is: {found})"
        )
    if "rain_type" not in columns:
        raise LabelSheetError(f"{path}: no rain_type column (the header is: {found})")
    if not any(ident in columns for ident in IDENTS):
        raise LabelSheetError(
            f"{path}: no column naming the capture: needs {_ANY_IDENT} (the header is: {found})"
        )
    return columns


def _row(line: int, cells: list[str], columns: dict[str, int]) -> Label | str:
    """The row's label, or why it cannot be one."""
    values = {
        name: cells[index].strip() if index < len(cells) else "" for name, index in columns.items()
    }
    rain_type = values["rain_type"].lower()
    if rain_type not in LABEL_TYPES:
        if not rain_type:
            return f"no rain type ({_ALLOWED})"
        # repr, as _named_as: a zero-width space or control character in the cell shows.
        return f"unknown rain type {values['rain_type']!r} ({_ALLOWED})"
    filled = [ident for ident in IDENTS if values.get(ident)]
    if not filled:
        return f"no {' or '.join(ident for ident in IDENTS if ident in columns)} on this row"
    ident = filled[0]
    value = values[ident]
    if ident in _HEX_DIGITS:
        value = value.lower()
        digits = _HEX_DIGITS[ident]
        if not re.fullmatch(f"[0-9a-f]{{{digits}}}", value):
            return f"{ident} {values[ident]!r} is not {digits} hex digits"
    else:  # as given: a name may begin or end with a space
        value = cells[columns[ident]].removeprefix("./")
    note = values.get("note") or None
    if note and note.startswith("'") and note[1:].startswith(FORMULA_START):
        note = note[1:]  # the guard an exported sheet puts before a formula's start
    return Label(line, ident, value, rain_type, note)


def _index(samples: pa.Table) -> tuple[dict[tuple[str, str], list[str]], set[str]]:
    """(ident, value) -> the keys of the captures it names; and the clean layer's keys."""
    # A sha256 may be of the stored bytes or of the file as found (they differ when
    # ingest removed GPS), and the user can only hash the latter.
    by_column = {
        "key": "key",
        "sha256": "sha256",
        "source_sha256": "sha256",
        "source_path": "source_path",
    }
    names = [name for name in (*by_column, "layer") if name in samples.column_names]
    index: dict[tuple[str, str], list[str]] = {}
    clean_layer: set[str] = set()
    for row in samples.select(names).to_pylist():
        for column, ident in by_column.items():
            value = row.get(column)
            if value is None:
                continue
            entries = [(ident, value)]
            if ident == "source_path":
                entries.append((_NFC, _nfc(value)))
            for entry in entries:
                keys = index.setdefault(entry, [])
                if row["key"] not in keys:
                    keys.append(row["key"])
        if row.get("layer") == "clean":
            clean_layer.add(row["key"])
    return index, clean_layer


def _refused(rejects: pa.Table | None) -> dict[str, dict]:
    """source_path -> its reject row (the first, when several roots refused that path)."""
    if rejects is None:
        return {}
    refused: dict[str, dict] = {}
    for row in rejects.select(["source_path", "reason", "duplicate_of"]).to_pylist():
        refused.setdefault(row["source_path"], row)
        refused.setdefault(_nfc(row["source_path"]), row)
    return refused


def _unmatched(label: Label, count: int, refused: dict[str, dict]) -> str | None:
    """Why `label` names not one capture; None when it names nothing in the dataset at
    all, not even a file ingest refused."""
    what = _named_as(label)
    if count > 1:
        # Only a more precise identifier can tell the captures apart.
        precise = " or ".join(IDENTS[: IDENTS.index(label.ident)])
        return f"ambiguous: {count} captures have {what}; use {precise}"
    reject = None
    if label.ident == "source_path":
        spellings = list(_spellings(label.value))
        reject = next(
            (refused[name] for name in (*spellings, *map(_nfc, spellings)) if name in refused),
            None,
        )
    if reject is None:
        return None
    if reject["reason"] == "duplicate":
        return (
            f"{what} was refused at ingest (duplicate): "
            f"label the capture it repeats by key {reject['duplicate_of']}"
        )
    return f"{what} was refused at ingest ({reject['reason']})"


def _named_as(label: Label) -> str:
    # repr: the value as given, so that a space around it or a control character shows.
    return f"{label.ident} {label.value!r}"
