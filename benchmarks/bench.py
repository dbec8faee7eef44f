"""What the benchmark scripts share: progress on stderr and the machine's CPU model."""

import platform
import sys
from pathlib import Path


def log(line: str) -> None:
    """Progress goes to stderr, so stdout holds only the results (and parses with --json)."""
    print(line, file=sys.stderr, flush=True)


def cpu_model() -> str:
    return next(
        (
            line.partition(":")[2].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
