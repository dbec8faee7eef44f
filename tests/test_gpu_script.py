"""benchmarks/gpu.sh's CPU dry run, as CI runs it, so the first GPU's script cannot rot:
one JSON with every part, each with its figures or the reason it was skipped, none
failing. And the public trainer's timing, on a stand-in train.py that prints its
per-iteration lines (the release itself has no licence and is not in CI)."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("pytest_gpu", "train", "train_compiled", "cclgan", "reference", "inference", "loader",
         "agreement")  # fmt: skip
# The public train.py's part in the timing: its options as given, then a loss line per
# iteration (one per picture of trainA), 0.05 s apart.
TIMED_STAND_IN = """
import argparse, os, time
parser = argparse.ArgumentParser()
for name in ("dataroot", "gpu_ids", "crop_size", "batch_size", "print_freq"):
    parser.add_argument("--" + name)
options, _ = parser.parse_known_args()
assert (options.gpu_ids, options.crop_size, options.batch_size) == ("-1", "32", "1")
pictures = len(os.listdir(os.path.join(options.dataroot, "trainA")))
for iteration in range(1, pictures + 1):
    time.sleep(0.05)
    print("0:00:00.010000")
    print(f"(epoch: 1, iters: {iteration}, time: 0.100, data: 0.001) G_GAN: 0.5 ")
"""


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("gpu") / "gpu.json"
    env = {key: value for key, value in os.environ.items() if key != "RAINBENCH_NLCL_REFERENCE"}
    env.update(OMP_NUM_THREADS="1", PYTHON=sys.executable)
    finished = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--dry-run", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,  # beyond the dry run's own budget
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "PASS" in finished.stdout or "MISS" in finished.stdout
    return json.loads(out.read_text())


def test_the_dry_run_records_every_part_and_none_fails(dry_run):
    assert dry_run["mode"] == "dry-run" and dry_run["device"] == "cpu"
    assert tuple(dry_run["parts"]) == PARTS
    for name, part in dry_run["parts"].items():
        assert part["status"] in ("ok", "skipped"), (name, part)
        assert part["seconds"] >= 0 and part["timeout_s"] > 0
        if part["status"] == "ok":
            assert part["figures"] and part["summary"], name
        else:
            assert part["reason"], name
    # Without RAINBENCH_NLCL_REFERENCE only the public trainer is skipped, saying why,
    # and on the CPU the GPU's agreement with it.
    skipped = [name for name, part in dry_run["parts"].items() if part["status"] == "skipped"]
    assert skipped == ["reference", "agreement"]
    assert "RAINBENCH_NLCL_REFERENCE" in dry_run["parts"]["reference"]["reason"]
    assert "only on a GPU run" in dry_run["parts"]["agreement"]["reason"]
    seconds = sum(part["seconds"] for part in dry_run["parts"].values())
    rounding = 0.05 * (len(dry_run["parts"]) + 1)  # each figure is rounded to 0.1 s
    assert seconds <= dry_run["total_seconds"] + rounding
    assert dry_run["total_seconds"] <= dry_run["budget_s"]


def test_the_dry_run_figures(dry_run):
    parts = dry_run["parts"]
    tests = parts["pytest_gpu"]["figures"]
    assert tests["skipped"] > 0 and tests["passed"] == tests["failed"] == tests["errors"] == 0
    train = parts["train"]["figures"]
    assert {(row["batch"], row["amp"]) for row in train["rows"]} == {(1, "off"), (16, "bf16")}
    assert train["ratio"] > 0
    compiled = parts["train_compiled"]["figures"]
    assert compiled["backend"] == "eager" and compiled["ratio"] > 0
    assert compiled["compiled_batch16_bf16"]["compiled"] == "eager"
    assert compiled["compiled_batch16_bf16"]["first_step_s"] > 0
    cclgan = parts["cclgan"]["figures"]
    assert [(row["batch"], row["amp"]) for row in cclgan["rows"]] == [(1, "off"), (16, "bf16")]
    assert all(row["samples_per_s"] > 0 for row in cclgan["rows"])
    inference = parts["inference"]["figures"]
    assert inference["shape"][:2] == [1, 3] and inference["median_s"] > 0
    loader = parts["loader"]["figures"]
    assert set(loader["crops_per_s"]) == {"pillow", "cpu"}
    assert all(speed > 0 for speed in loader["crops_per_s"].values())
    for goal, verdict in dry_run["goals"].items():
        assert goal.split(".")[0] in PARTS and verdict in ("PASS", "MISS")
    machine = dry_run["machine"]
    assert machine["torch"] and machine["cores"] >= 1 and "gpu" in machine


@pytest.fixture
def gpu_script(load_benchmark):
    return load_benchmark("gpu")


def _stand_in(folder: Path, body: str) -> Path:
    folder.mkdir()
    (folder / "train.py").write_text(body)
    return folder


def test_the_public_trainer_is_timed_between_its_iteration_lines(gpu_script, tmp_path, monkeypatch):
    release = _stand_in(tmp_path / "release", TIMED_STAND_IN)
    monkeypatch.setenv("RAINBENCH_NLCL_REFERENCE", str(release))
    plan = dataclasses.replace(gpu_script.DRY_RUN, reference_iterations=6, reference_warmup=2)
    (tmp_path / "work").mkdir()
    result = gpu_script.reference_speed(plan, tmp_path / "work")
    figures = result["figures"]
    assert figures["iterations"] == 6 and figures["timed_iterations"] == 4
    assert 0.04 <= figures["seconds_per_iteration"] <= 0.5
    ours = {"batch": 16, "amp": "bf16", "samples_per_s": 40 * figures["samples_per_s"]}
    records = {
        "train": {"status": "ok", "figures": {"rows": [ours]}},
        "reference": {"status": "ok", **result},
    }
    gpu_script.compare_with_reference(records)
    assert records["reference"]["goals"]["ours_over_reference"]["verdict"] == "PASS"


def test_a_public_trainer_that_fails_is_one_line_naming_why(gpu_script, tmp_path, monkeypatch):
    release = _stand_in(tmp_path / "release", "import dominate_not_installed\n")
    monkeypatch.setenv("RAINBENCH_NLCL_REFERENCE", str(release))
    (tmp_path / "work").mkdir()
    with pytest.raises(RuntimeError, match="No module named 'dominate_not_installed'"):
        gpu_script.reference_speed(gpu_script.DRY_RUN, tmp_path / "work")
    monkeypatch.delenv("RAINBENCH_NLCL_REFERENCE")
    with pytest.raises(gpu_script.Skipped, match="RAINBENCH_NLCL_REFERENCE is not set"):
        gpu_script.reference_speed(gpu_script.DRY_RUN, tmp_path / "work")


def test_modules_skipped_whole_are_no_tests_unless_they_hold_gpu_tests(gpu_script, tmp_path):
    """A real junit report of `pytest -m gpu`: a GPU test that passes, one that fails
    with a multi-line message, a module that fails to import, and two skipped whole
    (a package this machine lacks), one of which holds GPU tests."""
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_runs.py").write_text(
        "import pytest\n"
        "@pytest.mark.gpu\n"
        "def test_passes(): pass\n"
        "@pytest.mark.gpu\n"
        "def test_fails(): raise RuntimeError('nvjpeg failed\\nframe #0: decode')\n"
    )
    (tests / "test_broken.py").write_text("import no_such_package\n")
    (tests / "test_video.py").write_text("import pytest\npytest.importorskip('no_av')\n")
    (tests / "test_hidden.py").write_text(
        "import pytest\npytest.importorskip('no_iqa')\n@pytest.mark.gpu\ndef test_x(): pass\n"
    )
    report = tmp_path / "junit.xml"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "gpu", "-p", "no:cacheprovider", "-q",
         "-o", "markers=gpu", "--continue-on-collection-errors", f"--junitxml={report}",
         "tests"],
        cwd=tmp_path, capture_output=True, check=False,
    )  # fmt: skip
    gpu_script.ROOT = tmp_path
    outcomes = gpu_script.junit_outcomes(report)
    assert (outcomes["passed"], outcomes["failed"], outcomes["errors"]) == (1, 1, 1)
    assert outcomes["skipped"] == 0
    broken, fails = sorted(outcomes["failing"])
    assert broken.endswith("ModuleNotFoundError: No module named 'no_such_package'")
    assert fails == "tests.test_runs::test_fails: RuntimeError: nvjpeg failed"
    assert set(outcomes["modules_skipped"]) == {"tests.test_video", "tests.test_hidden"}
    assert outcomes["gpu_tests_in_skipped_modules"] == ["tests.test_hidden"]


def test_the_agreement_reads_pyiqas_distorted_calibration_image(load_benchmark):
    """The `agreement` part runs only on a GPU; its CPU half is checked here. pyiqa's
    wheel holds two I04.bmp (reference and distorted): the first GPU run found both."""
    pytest.importorskip("pyiqa")
    path = load_benchmark("gpu_agreement").calibration_image()
    assert path.parts[-2:] == ("dist_dir", "I04.bmp") and path.is_file()
