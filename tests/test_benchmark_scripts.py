"""Benchmark scripts that have no test of their own run, as a user runs them, at a tiny
size: their figures are not checked here (they are the benchmarks' to print), only that
they still print them."""

import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from rainbench.demo.captures import sample_specs, write_capture
from rainbench.synth.recipes import RECIPES

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(
    str(path.relative_to(BENCHMARKS))
    for path in BENCHMARKS.rglob("*.py")
    if 'if __name__ == "__main__":' in path.read_text()
)


def run(script: str, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *arguments],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_driver_memory_prints_a_peak_per_count_and_the_growth_between():
    found = run("driver_memory.py", "--counts", "6", "3", "-j", "1")
    assert found.returncode == 0, found.stderr
    rows = [line for line in found.stdout.splitlines() if re.match(r"\| \d", line)]
    assert [row.split("|")[1].strip() for row in rows] == ["3", "6"]
    assert re.fullmatch(r"\| 6 \| \d+ MB \| -?\d+\.\d kB \|", rows[1])


def test_driver_memory_into_existing_datasets_prints_a_peak_per_dataset_size():
    found = run("driver_memory.py", "--existing", "40", "0", "--batch", "2", "-j", "1")
    assert found.returncode == 0, found.stderr
    rows = [line for line in found.stdout.splitlines() if re.match(r"\| \d", line)]
    assert [row.split("|")[1].strip() for row in rows] == ["0", "40"]
    assert re.fullmatch(r"\| 40 \| \d+ MB \| -?\d+\.\d kB \|", rows[1])


def test_render_speed_times_every_recipe_of_the_version_asked_for():
    for version, extra in (("1", ()), ("2", ("--no-camera-chain",))):
        found = run(
            "render_speed.py", "--size", "64", "48", "--passes", "1", "--version", version, *extra
        )
        assert found.returncode == 0, found.stderr
        timed = re.findall(r"^  (\S+) +\d+\.\d\d s$", found.stdout, re.M)
        assert timed == [name for name, recipe in RECIPES.items() if recipe.version == version]
    refused = run("render_speed.py", "--no-camera-chain")
    assert refused.returncode == 2 and "for --version 2" in refused.stderr


def test_physical_v2_errata_prints_a_row_per_version_2_recipe_in_each_table():
    found = run("physical_v2_errata.py", "--seeds", "3", "--size", "64", "48", "--renders", "1")
    assert found.returncode == 0, found.stderr
    version_2 = [name for name, recipe in RECIPES.items() if recipe.version == "2"]
    for recipe in version_2:
        assert len(re.findall(rf"^\| {recipe} \|", found.stdout, re.M)) == 2
    assert re.findall(r"^\| (\d+) \| \d\.\d\de-\d\d \|", found.stdout, re.M) == [
        "240",
        "480",
        "1080",
    ]


def test_manifest_read_prints_each_manifest_its_size_ratio_and_read_times():
    found = run("manifest_read.py", "--rows", "50", "--reads", "1")
    assert found.returncode == 0, found.stderr
    rows = [line for line in found.stdout.splitlines() if line.startswith("| ") and "ms" in line]
    assert len(rows) == 7
    timed = r"\| \d+ ms \| \d+ ms \| \d+ ms \| \d+\.\d\d \|"
    for row in rows:
        assert re.fullmatch(r"\| [^|]+ \| \d+\.\d\d MB \| \d+\.\d× " + timed, row), row


def test_commit_cost_prints_one_commit_per_dataset_size():
    found = run("commit_cost.py", "--rows", "50", "20", "--commits", "1")
    assert found.returncode == 0, found.stderr
    rows = [line for line in found.stdout.splitlines() if re.match(r"\| \d", line)]
    assert [row.split("|")[1].strip() for row in rows] == ["20", "50"]
    assert re.fullmatch(r"\| 50 \| \d+\.\d MB \| \d+\.\d\d s \| \d+\.\d ms \|", rows[1])


def test_busy_threads_times_one_thread_and_one_per_cpu_and_their_ratio():
    found = run("busy_threads.py", "--spinners", "1", "--steps", "1")
    assert found.returncode == 0, found.stderr
    assert re.search(r"^  1 thread: \d+\.\d{3} s$", found.stdout, re.M)
    ratio = re.search(r"^  \d+ threads / 1 thread: \d+\.\d\d×$", found.stdout, re.M)
    assert ratio or found.stdout.startswith("1 usable CPUs")


def test_write_steps_times_each_write_step_beside_the_floor(tmp_path):
    for spec in sample_specs(2, size=(64, 48)):
        name = Path(spec.name).with_suffix(".jpg").as_posix()
        write_capture(tmp_path, replace(spec, fmt="jpeg", mode="RGB", name=name))
    found = run("write_steps.py", str(tmp_path), "--passes", "1")
    assert found.returncode == 0, found.stderr
    timed = re.findall(r"^(\S.*?) +\d+\.\d\d ms$", found.stdout, re.M)
    assert timed[0].startswith("floor") and timed[-1].startswith("write (all")
    assert re.search(r"^write \(all\) / floor: \d+\.\d\d$", found.stdout, re.M)


@pytest.mark.slow
def test_metric_cost_times_each_metric_and_marks_the_stand_ins(tmp_path, monkeypatch):
    """With no weight file anywhere (an empty --weights-dir, pyiqa's cache moved), brisque
    and musiq are left out, or with --stand-ins timed, each by its own path."""
    pytest.importorskip("pyiqa", reason="no-reference metrics need rainbench[eval]")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    common = ["--sizes", "64x48", "--repeats", "1", "--weights-dir", str(tmp_path)]
    found = run("metric_cost.py", *common, "--metrics", "piqe,brisque,musiq", "--stand-ins")
    assert found.returncode == 0, found.stderr
    rows = re.findall(r"^\| `(\S+)`(\S?) \| [\d.]+ \|$", found.stdout, re.M)
    assert rows == [("piqe", ""), ("brisque", "*"), ("musiq", "†")]
    assert re.search(r"^\* timed with a stand-in .* through create_metric", found.stdout, re.M)
    assert re.search(
        r"^† timed with a stand-in .* pyiqa\.create_metric directly", found.stdout, re.M
    )
    left_out = run("metric_cost.py", *common, "--metrics", "brisque", "--json")
    assert left_out.returncode == 0, left_out.stderr
    document = json.loads(left_out.stdout)
    assert document["rows"] == []
    assert document["left_out"]["brisque"].startswith("brisque needs brisque_svm_weights.pth")


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_help_describes_the_benchmark_in_whole_sentences_and_runs_nothing(script):
    """On any machine (gpu_agreement.py's CUDA check comes after), and the description
    is not cut at the docstring's first line break."""
    found = run(script, "--help")
    assert found.returncode == 0, found.stderr
    assert found.stdout.startswith("usage: ")
    description = found.stdout.split("\n\n")[1]
    assert description.endswith((".", "?")), description


@pytest.mark.parametrize(
    ("script", "name"), [("nlcl_learns", "nlcl-learns.json"), ("train_budget", "train-budget.json")]
)
def test_the_json_goes_under_work_unless_out_names_a_file(load_benchmark, tmp_path, script, name):
    arguments = load_benchmark(script).arguments
    assert arguments(["--work", str(tmp_path)]).out == tmp_path / name
    given = ["--work", str(tmp_path), "--out", "here.json"]
    assert arguments(given).out == Path("here.json")


def test_nlcl_learns_reads_no_curve_from_a_run_shorter_than_validate_every(
    load_benchmark, tmp_path
):
    """A run of fewer steps than --validate-every (--steps 200, or --minutes choosing
    them) logs no validation.csv: its scores are still written, with no curve."""
    validation_curve = load_benchmark("nlcl_learns").validation_curve
    assert validation_curve(tmp_path) == []
    (tmp_path / "validation.csv").write_text("step,psnr_y\n250,20.12345\n")
    assert validation_curve(tmp_path) == [{"step": 250, "psnr_y": 20.123}]


def test_nlcl_learns_scores_beside_its_run_where_training_again_accepts_it(
    load_benchmark, tmp_path
):
    """The trainer refuses a run folder that holds anything but a run: scores inside it
    made the same command, run again, stop before they were written."""
    results_folder = load_benchmark("nlcl_learns").results_folder
    run = tmp_path / "regions" / "run-cpu-64-4-2"
    assert results_folder(run).parent == run.parent
    assert results_folder(run) != run


def test_the_side_by_side_json_goes_under_work_unless_out_names_a_file(load_benchmark, tmp_path):
    release = tmp_path / "release"
    release.mkdir()
    (release / "train.py").touch()
    arguments = load_benchmark("nlcl_side_by_side").arguments
    given = ["--release", str(release), "--work", str(tmp_path)]
    assert arguments(given).out == tmp_path / "nlcl-side-by-side.json"
    assert arguments([*given, "--out", "here.json"]).out == Path("here.json")
