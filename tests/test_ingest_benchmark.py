"""benchmarks/ingest_without_features.py, the benchmark's context row: the stand-in for
the rain-type features must reach every worker, or the row silently measures ingest as
it is (its first version did not: the workers' fork server had bound the real one)."""

import subprocess
import sys
from pathlib import Path

import pandas as pd

from rainbench.demo.captures import CaptureSpec, write_capture
from rainbench.tagging.features import FEATURE_NAMES, feature_column

ROOT = Path(__file__).resolve().parents[1]


def test_stubbed_ingest_stores_no_measured_feature_from_any_worker(tmp_path):
    raw = tmp_path / "raw"
    for seed in range(6):
        write_capture(raw, CaptureSpec(f"capture-{seed}.jpg", 320, 240, seed=seed))
    script = ROOT / "benchmarks" / "ingest_without_features.py"
    command = [sys.executable, script, "ingest", raw, "--out", tmp_path / "ds", "-j", "2"]
    subprocess.run([str(part) for part in command], check=True, capture_output=True)
    rows = pd.read_parquet(tmp_path / "ds" / "manifests" / "samples.parquet")
    assert len(rows) == 6
    features = rows[[feature_column(name) for name in FEATURE_NAMES]]
    assert (features == 0).all().all()
