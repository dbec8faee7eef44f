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
        click.echo(line)


def write_json(result: Any, out: Path) -> None:
    """Also keep the result as a JSON file (--out of tag-eval and analyze)."""
    out.write_text(to_json(result) + "\n", encoding="utf-8")
