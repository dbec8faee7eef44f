"""The `rainbench` command: parse, call one library function, print.

One module per family of commands; a command's module, and what it imports, is loaded
only when that command runs or shows its help. Exit codes: 0 success, 1 a problem with
the input or dataset (one-line message), 2 a usage error.
"""

import click

from rainbench import __version__
from rainbench.cli.group import Commands

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


@click.group(cls=Commands, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rainbench")
def main() -> None:
    """rainbench: real rain imagery — ingest, tag, benchmark.

    \b
    Start with:  rainbench demo --out demo
    """
