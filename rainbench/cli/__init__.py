"""The `rainbench` command: parse, call one library function, print.

One module per family of commands; a command's module, and what it imports, is loaded
only when that command runs or shows its help. Exit codes: 0 success, 1 a problem with
the input or dataset (one-line message), 2 a usage error, 141 stdout closed before the
command had written all of it (`rainbench stats ds | head -1`), quietly.
"""

import contextlib
import errno
import os
import select
import sys
from collections.abc import Iterator

import click

from rainbench import __version__
from rainbench.cli.group import Commands

# What a shell reports for a program that SIGPIPE ended (128 + 13), as `yes | head -1`
# does under `set -o pipefail`: the reader left, and the command did not finish.
CLOSED_STDOUT = 141


class Main(Commands):
    """The top group, which also ends a command whose reader closed stdout: quietly, with
    CLOSED_STDOUT, whichever command it was, its --help too (click would exit 1 without
    a word)."""

    def make_context(self, *args, **kwargs) -> click.Context:
        with _stdout_may_close():  # `rainbench --help` prints while its line is parsed
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: click.Context):
        with _stdout_may_close():
            result = super().invoke(ctx)
            sys.stdout.flush()  # what is still buffered meets a closed pipe here, not at exit
            return result


@contextlib.contextmanager
def _stdout_may_close() -> Iterator[None]:
    try:
        yield
    except OSError as error:
        if error.errno != errno.EPIPE or not _stdout_closed():
            raise  # another pipe: Commands and click say what they say of it
        # Python would flush stdout again at exit and complain of the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(CLOSED_STDOUT)


def _stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader has gone (an EPIPE may also come from a
    socket or a child's pipe)."""
    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
    except (AttributeError, OSError, ValueError):  # no file descriptor (a test's capture)
        return False
    return any(events & select.POLLERR for _, events in poll.poll(0))


# Each command: where it is defined, and the first paragraph of its help, which
# `rainbench --help` lists.
COMMANDS = {
    "analyze": (
        "rainbench.cli.analyze:analyze_group",
        "Measurements on a dataset's images that check claims made about rain.",
    ),
    "cclgan": ("rainbench.cli.train:cclgan_group", "CCLGAN utilities."),
    "demo": (
        "rainbench.cli.demo:demo_command",
        "The whole journey in one command, on built-in data.",
    ),
    "eval": (
        "rainbench.cli.leaderboard:eval_command",
        "Run a derainer over a dataset's splits and score every output.",
    ),
    "import-paired": (
        "rainbench.cli.synth:import_paired_command",
        "Store a public paired set found at PATH as the paired split NAME of DATASET.",
    ),
    "ingest": (
        "rainbench.cli.dataset:ingest_command",
        "Ingest camera captures under RAW... into the dataset OUT.",
    ),
    "label": (
        "rainbench.cli.label:label_command",
        "Write one self-contained HTML page for labelling DATASET's rainy captures.",
    ),
    "leaderboard": (
        "rainbench.cli.leaderboard:leaderboard_command",
        "Publish the results of rainbench eval as a table or a page.",
    ),
    "metrics": (
        "rainbench.cli.metrics:metrics_group",
        "List the metrics rainbench computes, by name; check the no-reference ones.",
    ),
    "models": (
        "rainbench.cli.models:models_command",
        "List the registered derainers (built-ins and installed plug-ins), by name.",
    ),
    "nlcl": ("rainbench.cli.train:nlcl_group", "NLCL utilities."),
    "pairs": (
        "rainbench.cli.pairs:pairs_command",
        "Pair DATASET's rain videos and bursts with clean frames estimated from time.",
    ),
    "score": (
        "rainbench.cli.metrics:score_command",
        "Score the images in --pred, against --ref when given; write one row per image.",
    ),
    "stats": (
        "rainbench.cli.dataset:stats_command",
        "Counts by split, layer, rain type and camera; bytes; capture dates.",
    ),
    "synth": (
        "rainbench.cli.synth:synth_command",
        "Render synthetic rain on clean captures of DATASET as paired splits syn-<recipe>.",
    ),
    "tag": (
        "rainbench.cli.dataset:tag_command",
        "Re-tag every capture's rain type from its stored features; apply a label sheet.",
    ),
    "tag-eval": (
        "rainbench.cli.dataset:tag_eval_command",
        "Measure the rain-type tagger where it never looked.",
    ),
    "train": ("rainbench.cli.train:train_group", "Train a derainer on a dataset's shards."),
    "verify": (
        "rainbench.cli.dataset:verify_command",
        "Check every shard and manifest row of DATASET; exit 1 naming each problem.",
    ),
    "weights": (
        "rainbench.cli.metrics:weights_group",
        "The weight files of the metrics: what is there, and how to add them.",
    ),
}


@click.group(cls=Main, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rainbench")
def main() -> None:
    """rainbench: real rain imagery — ingest, tag, benchmark.

    \b
    Start with:  rainbench demo --out demo
    """
