"""`rainbench demo`: the journey so far on generated data — write a folder of
realistic captures (with a duplicate, near-duplicates and bad files among them),
ingest it, verify the result and summarise it.
"""

import shutil
from dataclasses import dataclass
from pathlib import Path

from rainbench.demo.captures import (
    CaptureSpec,
    write_bad_corpus,
    write_near_duplicates,
    write_sample_captures,
)
from rainbench.ingest import IngestOptions, IngestSummary, ingest
from rainbench.shards.dataset import Dataset
from rainbench.shards.stats import dataset_stats
from rainbench.shards.verify import Problem, verify


@dataclass
class DemoResult:
    raw: Path
    dataset: Path
    summary: IngestSummary
    problems: list[Problem]
    stats: dict


def run_demo(
    out: Path,
    count: int = 24,
    size: tuple[int, int] = (4000, 3000),
    workers: int | None = None,
    progress: bool = False,
) -> DemoResult:
    raw, dataset = out / "raw", out / "ds"
    if not raw.exists():  # the captures are deterministic: written once
        first = write_sample_captures(raw / "captures", count, seed=0, size=size)[0]
        shutil.copy(first, raw / f"copy of {first.name}")  # an exact duplicate
        write_near_duplicates(raw / "near-duplicates", CaptureSpec("burst.jpg", *size, seed=1))
        write_bad_corpus(raw / "bad")
    options = IngestOptions() if workers is None else IngestOptions(workers=workers)
    summary = ingest([raw], dataset, options, progress=progress)
    return DemoResult(
        raw, dataset, summary, verify(Dataset(dataset)), dataset_stats(Dataset(dataset))
    )
