"""The command-line reference: docs/cli.md is what rainbench.cli_reference renders from
the commands as they are now, and the rendering does not depend on the terminal."""

from pathlib import Path

import click

from rainbench.cli import main
from rainbench.cli_reference import render_reference

PAGE = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def test_docs_cli_md_is_up_to_date():
    assert PAGE.read_text(encoding="utf-8") == render_reference(), (
        "docs/cli.md is stale: python -m rainbench.cli_reference docs/cli.md"
    )


def test_every_command_has_its_help_section():
    page = render_reference()
    context = click.Context(main)
    for name in main.list_commands(context):
        command = main.get_command(context, name)
        assert f"## `rainbench {name}`" in page
        if isinstance(command, click.Group):
            for sub in command.commands:
                assert f"## `rainbench {name} {sub}`" in page
    assert "Usage: rainbench train nlcl [OPTIONS]" in page
    assert "-h, --help" in page  # the group's context settings reach every command


def test_the_terminal_does_not_change_the_page(monkeypatch):
    page = render_reference()
    monkeypatch.setenv("COLUMNS", "40")
    monkeypatch.setenv("XDG_CACHE_HOME", "/elsewhere")
    assert render_reference() == page
