"""`rainbench metrics`: a group that still lists the metrics by itself, and `metrics
validity` on the committed reference results (benchmarks/leaderboard/results)."""

import json
import re
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from rainbench.cli import main
from rainbench.leaderboard.results import load_results
from rainbench.leaderboard.validity import results_validity

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "leaderboard" / "results"


@pytest.fixture
def runner():
    return CliRunner()


def test_metrics_alone_still_lists_the_metrics(runner):
    text = runner.invoke(main, ["metrics"])
    assert text.exit_code == 0
    assert text.output.splitlines()[0].split()[:2] == ["psnr", "full-reference"]
    listed = json.loads(runner.invoke(main, ["metrics", "--json"]).output)
    assert {"name": "piqe", "full_reference": False, "lower_is_better": True}.items() <= next(
        m for m in listed if m["name"] == "piqe"
    ).items()
    assert "validity" in runner.invoke(main, ["metrics", "--help"]).output


def test_validity_prints_each_paired_split_and_its_warnings(runner):
    result = runner.invoke(main, ["metrics", "validity", str(RESULTS), "--resamples", "200"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "reference / syn-drizzle (synthetic): 95% intervals, 200 resamples, seed 0"
    assert " ".join(lines[1].split()) == "metric against τ across methods ρ across images"
    assert lines[2].startswith("  NIQE ↓     PSNR-Y   ") and "(3 methods)" in lines[2]
    assert "(4 images)" in lines[2]
    assert "reference / test" not in result.output  # a real split: no ground truth
    assert "\n  ⚠ NIQE ranks dcp above guided, which beats it by " in result.output


def test_validity_as_json_is_the_library_result(runner):
    args = ["metrics", "validity", str(RESULTS), "--json", "--resamples", "200", "--seed", "3"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    expected = results_validity(load_results(RESULTS), seed=3, resamples=200)
    assert found == json.loads(json.dumps([v.to_dict() for v in expected]))
    assert [v["split"] for v in found] == ["syn-drizzle", "syn-fog-like", "syn-storm", "syn-streak"]
    assert {(v["seed"], v["resamples"]) for v in found} == {(3, 200)}


def test_validity_without_a_paired_split_says_so(runner, tmp_path):
    for model in ("identity", "guided"):
        folder = tmp_path / model / "reference"
        folder.mkdir(parents=True)
        for suffix in (".parquet", ".json"):
            shutil.copy(RESULTS / model / "reference" / f"test{suffix}", folder)
    result = runner.invoke(main, ["metrics", "validity", str(tmp_path)])
    assert result.exit_code == 0
    assert (
        result.output == "no paired split scored with a no-reference metric and psnr_y or ssim_y\n"
    )
    assert (
        json.loads(runner.invoke(main, ["metrics", "validity", str(tmp_path), "--json"]).output)
        == []
    )


def test_validity_counts_one_method_and_one_image_in_the_singular(runner, tmp_path):
    folder = tmp_path / "identity" / "reference"
    folder.mkdir(parents=True)
    provenance = json.loads((RESULTS / "identity" / "reference" / "syn-drizzle.json").read_text())
    provenance["images"] = {"ok": 1, "failed": 0}
    (folder / "syn-drizzle.json").write_text(json.dumps(provenance))
    scores = pq.read_table(RESULTS / "identity" / "reference" / "syn-drizzle.parquet")
    pq.write_table(scores.slice(0, 1), folder / "syn-drizzle.parquet")
    result = runner.invoke(main, ["metrics", "validity", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "(1 method)" in result.output and "(1 image)" in result.output
    assert "(1 methods)" not in result.output and "(1 images)" not in result.output


def test_validity_of_one_sequence_shows_its_empty_interval_as_the_leaderboard(runner, tmp_path):
    """Frames of one video: the correlations are there, their intervals `[—, —]`."""
    for model in ("identity", "guided", "dcp"):
        folder = tmp_path / model / "reference"
        folder.mkdir(parents=True)
        shutil.copy(RESULTS / model / "reference" / "syn-drizzle.json", folder)
        scores = pq.read_table(RESULTS / model / "reference" / "syn-drizzle.parquet")
        scores = scores.append_column("group", pa.array(["video-1"] * scores.num_rows))
        pq.write_table(scores, folder / "syn-drizzle.parquet")
    result = runner.invoke(main, ["metrics", "validity", str(tmp_path)])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith("  NIQE")]
    assert rows and all(re.search(r"\d \[—, —\] \(3 methods\)", row) for row in rows), rows
    board = runner.invoke(main, ["leaderboard", "--results", str(tmp_path)]).output
    assert " [—, —] (n=3) |" in board


def test_validity_of_a_missing_directory_is_one_line(runner, tmp_path):
    result = runner.invoke(main, ["metrics", "validity", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert result.output == f"error: {tmp_path / 'nope'}: no such results directory\n"


def test_the_leaderboard_shows_the_validity(runner):
    result = runner.invoke(main, ["leaderboard", "--results", str(RESULTS)])
    assert result.exit_code == 0
    assert "| *τ with PSNR-Y across methods* |" in result.output
    assert "- ⚠ NIQE ranks dcp above guided, which beats it by " in result.output
