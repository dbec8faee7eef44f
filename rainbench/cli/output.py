"""How a command prints its result: lines of text for people, or with --json the
result's to_dict() as indented JSON. stdout carries only the result; warnings,
problems and progress go to stderr."""

import json
import math
import os
import stat
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click

from rainbench.errors import RainbenchError
from rainbench.files import leads_inside, write_atomic
from rainbench.shards.dataset import read_json


def to_json(result: Any) -> str:
    """A result (anything with to_dict(), a list of them, or plain data) as JSON that
    any parser reads: an infinite float as the string "inf" or "-inf", NaN as null
    (Python's json would write the non-standard Infinity and NaN)."""
    return json.dumps(_plain(result), indent=2, allow_nan=False)


def _plain(result: Any) -> Any:
    if hasattr(result, "to_dict"):
        result = result.to_dict()
    if isinstance(result, dict):
        return {key: _plain(value) for key, value in result.items()}
    if isinstance(result, list | tuple):
        return [_plain(item) for item in result]
    if isinstance(result, float) and not math.isfinite(result):
        return None if math.isnan(result) else ("inf" if result > 0 else "-inf")
    return result


def emit(result: Any, as_json: bool, text: Callable[[Any], Iterable[str]]) -> None:
    """Print `result` as JSON, or as the lines `text` makes of it."""
    if as_json:
        click.echo(to_json(result))
        return
    for line in text(result):
        click.echo(line.translate(_SHOWN))


# Control characters in what a line quotes (a camera name from EXIF, a file name) are
# shown escaped, so a terminal escape in data cannot restyle or rewrite the output. Line
# breaks stay (a result may print a block); where data could hold one, its lines
# escape it themselves (`on_one_line`).
_SHOWN = {code: f"\\x{code:02x}" for code in (*range(32), 127, *range(0x80, 0xA0)) if code != 10}


def on_one_line(value: object) -> str:
    """`value` (a name from data) as text on one line: a line break or any other control
    character in it shown escaped."""
    return str(value).replace("\n", "\\n").translate(_SHOWN)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning rainbench itself gives (a plug-in skipped, …) is news for the user,
    printed as one `warning:` line; any other keeps Python's form, source line and all."""
    if category.__module__.split(".")[0] == "rainbench":
        click.echo(f"warning: {on_one_line(message)}", err=True)
        return
    _python_show_warning(message, category, filename, lineno, file, line)


_python_show_warning = warnings.showwarning
warnings.showwarning = _show_warning


def prepare_out(out: Path, what: str, ours: Callable[[Path], bool]) -> None:
    """Make the folder of an --out file, and refuse in one line an --out that exists and
    is not `what` (`ours` judges a regular file: an earlier run's output, safe to
    replace), so that a file of the user's there is never overwritten, nor a FIFO
    blocked on. A command that computes long calls it first, so that a folder it may
    not make, or a file it may not replace, stops it before the work."""
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = os.stat(out).st_mode  # through a link: what it leads to
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode) or not ours(out):
        raise OutRefused(
            f"{out} exists and is not {what}: not replaced (give another --out, or remove it)"
        )


class OutRefused(RainbenchError):
    """An --out that holds something other than what the command writes."""


def prepare_report(out: Path, dataset: Path | str | None = None) -> None:
    """prepare_out for the JSON report of write_json: an --out that is one (a JSON
    object) is replaced, any other file refused, and so is any file of the `dataset`
    the report is of (its dataset.json is a JSON object too)."""

    def ours(path: Path) -> bool:
        return _json_object(path) and not (local and leads_inside(path, dataset))

    local = isinstance(dataset, Path)
    prepare_out(out, "a JSON report" + (f" outside the dataset {dataset}" if local else ""), ours)


def _json_object(path: Path) -> bool:
    try:
        return isinstance(read_json(path, _LARGEST_REPORT), dict)
    except (OSError, ValueError):
        return False


_LARGEST_REPORT = 1 << 24  # bytes: no report is larger; a larger file is not one


def write_json(result: Any, out: Path) -> None:
    """Also keep the result as a JSON file (--out of tag-eval and analyze), replaced
    atomically: an interrupted write leaves the earlier report whole."""
    prepare_report(out)
    # Shared: no lock is held, and two commands may keep reports in one file at once.
    write_atomic(out, (to_json(result) + "\n").encode("utf-8"), shared=True)
