"""What the benchmark scripts share: progress on stderr, the machine's CPU model (the
same description `rainbench eval` records in its provenance), and the tagging
benchmarks' choice of examples."""

import argparse
import sys
from pathlib import Path

from rainbench.metrics.report import cpu_model

__all__ = ["add_example_arguments", "cpu_model", "log"]


def log(line: str) -> None:
    """Progress goes to stderr, so stdout holds only the results (and parses with --json)."""
    print(line, file=sys.stderr, flush=True)


def add_example_arguments(
    parser: argparse.ArgumentParser, seed: int, features_file: bool = True
) -> None:
    """--per-cell, --seed, --workers and (with `features_file`) --features: which tagging
    examples to measure (rainbench.train.tagger.measured_examples), and where to keep
    them."""
    parser.add_argument(
        "--per-cell", type=int, default=4, help="examples per background, rain type and model"
    )
    parser.add_argument("--seed", type=int, default=seed)
    if features_file:
        parser.add_argument(
            "--features",
            type=Path,
            help="keep the measured examples here, or reuse them (same code only: delete the "
            "file after changing a renderer)",
        )
    parser.add_argument("-j", "--workers", type=int, default=2)
