"""The command-line reference, docs/cli.md, rendered from the click commands themselves:
every command's --help, in the order `rainbench --help` lists them. Regenerate it with

    python -m rainbench.cli_reference docs/cli.md

and tests/test_cli_reference.py fails while it is stale.
"""

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import click

from rainbench.cli import main

# Help is wrapped to this many columns whatever the terminal, so the page is the same
# wherever it is made.
WIDTH = 100

INTRO = """\
# Command-line reference

Every `rainbench` command with its `--help`, generated from the commands themselves by
`python -m rainbench.cli_reference docs/cli.md` (a test fails when this page is stale).
Exit codes: 0 success, 1 a problem with the input or dataset (one line on stderr
saying what to do), 2 a usage error. Commands that run long show progress bars on
stderr when it is a terminal (`--progress` or `--no-progress` decide otherwise); stdout
carries only the result, and `--json` prints it for scripts to read. If the reader closes
stdout early (`rainbench stats ds | head -1`), the command stops quietly with exit code
141, as a shell reports a program ended by SIGPIPE. Ctrl-C stops a command with one line
(`error: interrupted; run the same command again to finish …`) and exit code 130
(`rainbench train` first saves a checkpoint at the end of the step under way). A
command's dataset is its positional DATASET.
"""


def render_reference(group: click.Group = main, name: str = "rainbench") -> str:
    """The reference page for `group` (Markdown): a list of the commands, then each
    one's help as `--help` prints it."""
    root = click.Context(
        group,
        info_name=name,
        terminal_width=WIDTH,
        max_content_width=WIDTH,
        **group.context_settings,
    )
    commands = list(_walk(root))
    lines = [INTRO + _aliases_text(commands)]
    lines += [f"- [`{ctx.command_path}`](#{_anchor(ctx.command_path)})" for ctx in commands]
    for ctx in commands:
        lines += ["", f"## `{ctx.command_path}`", "", "```text", ctx.get_help(), "```"]
    return "\n".join(lines) + "\n"


def _aliases_text(commands: list[click.Context]) -> str:
    """Which commands still take their dataset by the flag an older release named it by
    (a hidden option, see rainbench.cli.options.dataset): read from the commands, so the
    page never promises a flag a command does not take."""
    taken = [
        f"`{ctx.command_path} {flag}`"
        for ctx in commands
        for param in ctx.command.params
        if param.name == "dataset_alias"
        for flag in param.opts
    ]
    if not taken:
        return ""
    text = (
        "These also take it by the flag an older release named it by, kept so that old "
        f"command lines run: {', '.join(taken)}. Every other command takes it only as DATASET."
    )
    return "\n" + textwrap.fill(text, 88, break_on_hyphens=False, break_long_words=False) + "\n"


def _walk(ctx: click.Context) -> Iterator[click.Context]:
    """`ctx` and the contexts of every command below it, depth first."""
    yield ctx
    command = ctx.command
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            child = command.get_command(ctx, name)
            if child is not None and not child.hidden:
                context = click.Context(child, info_name=name, parent=ctx, **child.context_settings)
                yield from _walk(context)


def _anchor(title: str) -> str:
    """The id GitHub gives a heading: lower case, spaces to hyphens, punctuation dropped."""
    kept = "".join(c for c in title.lower() if c.isalnum() or c in " -_")
    return kept.replace(" ", "-")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m rainbench.cli_reference docs/cli.md")
    Path(sys.argv[1]).write_text(render_reference(), encoding="utf-8")
