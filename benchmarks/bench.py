"""What the benchmark scripts share: progress on stderr and the machine's CPU model
(the same description `rainbench eval` records in its provenance)."""

import sys

from rainbench.metrics.report import cpu_model

__all__ = ["cpu_model", "log"]


def log(line: str) -> None:
    """Progress goes to stderr, so stdout holds only the results (and parses with --json)."""
    print(line, file=sys.stderr, flush=True)
