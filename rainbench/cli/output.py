"""How a command prints its result: lines of text for people, or with --json the
result's to_dict() as indented JSON. stdout carries only the result; warnings,
problems and progress go to stderr."""

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click


def to_json(result: Any) -> str:
    """A result (anything with to_dict(), a list of them, or plain data) as JSON."""
    return json.dumps(_plain(result), indent=2)


def _plain(result: Any) -> Any:
    if isinstance(result, list):
        return [_plain(item) for item in result]
    return result.to_dict() if hasattr(result, "to_dict") else result


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


def write_json(result: Any, out: Path) -> None:
    """Also keep the result as a JSON file (--out of tag-eval and analyze)."""
    out.write_text(to_json(result) + "\n", encoding="utf-8")
