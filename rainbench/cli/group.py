"""The top command group: it imports a command's module only when that command runs or
shows its help, and turns an expected failure in any command into `error: <one line>`
on stderr and exit code 1 instead of a traceback."""

import errno
import sys
from importlib import import_module
from typing import NoReturn

import click

from rainbench.cli.output import on_one_line
from rainbench.errors import RainbenchError
from rainbench.store import from_store_client

INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command Ctrl-C stopped


def _labels_rejected(error: RainbenchError) -> list:
    """The problems of a label sheet refused whole, listed one per line before the error;
    looked up only when tagging is loaded, as no such error exists before."""
    tag = sys.modules.get("rainbench.ingest.tag")
    return error.problems if tag and isinstance(error, tag.LabelsRejected) else []


class Commands(click.Group):
    """`lazy` maps each command's name to where it is defined ("module:attribute") and
    the first paragraph of its help, which `rainbench --help` lists without importing
    anything (tests/cli/test_group.py keeps the two the same).

    An expected failure (a RainbenchError) in any command below it, or an OSError (a
    full disk, a file the user named that is missing or not theirs), ends the command
    with `error: <one line>` on stderr and exit code 1; Ctrl-C with one line and 130."""

    def __init__(self, *args, lazy: dict[str, tuple[str, str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.lazy)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.lazy:
            return None
        module, _, attribute = self.lazy[name][0].partition(":")
        return getattr(import_module(module), attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # As click.Group lists them, from the summaries here instead of the commands.
        limit = formatter.width - 6 - max(len(name) for name in self.lazy)
        rows = [
            (name, click.Command(name, help=self.lazy[name][1]).get_short_help_str(limit))
            for name in self.list_commands(ctx)
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except OSError as error:
            if error.errno == errno.EPIPE:
                raise  # click quiets a closed pipe (`rainbench … | head`) itself
            fail(_os_error_text(error))
        except RainbenchError as error:
            for problem in _labels_rejected(error):
                click.echo(on_one_line(problem), err=True)
            fail(str(error))
        except Exception as error:
            if not from_store_client(error):
                raise
            fail(_store_client_text(error))
        except KeyboardInterrupt:  # Ctrl-C: said in a line, exit 128 + SIGINT as a shell has it
            click.echo(
                "error: interrupted; run the same command again to finish (ingest, synth, "
                "pairs and eval go on from where they stopped)",
                err=True,
            )
            sys.exit(INTERRUPTED)


def fail(message: str) -> NoReturn:
    """End the command with `error: <message on one line>` on stderr and exit code 1; a
    control character the message quotes (a name from data) shown escaped."""
    text = " ".join(line.strip() for line in message.splitlines() if line.strip())
    click.echo(f"error: {on_one_line(text)}", err=True)
    sys.exit(1)


def _os_error_text(error: OSError) -> str:
    """'PATH: No space left on device', as the OS words it, naming both paths of a move."""
    why = error.strerror or str(error) or type(error).__name__
    paths = [str(path) for path in (error.filename, error.filename2) if path is not None]
    return f"{' -> '.join(paths)}: {why}" if paths else why


def _store_client_text(error: Exception) -> str:
    text = f"object store: {error}"
    if type(error).__name__ == "NoCredentialsError":
        text += (
            " (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE; with --ray "
            "the workers need them too, in the environment `ray start` ran in: docs/cluster.md)"
        )
    return text
