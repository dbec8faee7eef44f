"""`rainbench score`, `metrics` and `weights` as a user runs them."""

import json
import os

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from rainbench.cli import main
from rainbench.metrics.registry import versions


@pytest.fixture
def folders(tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    rng = np.random.default_rng(0)
    for i in range(3):
        truth = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        for folder, image in ((gt, truth), (pred, np.clip(truth.astype(int) + 5, 0, 255))):
            folder.mkdir(exist_ok=True)
            Image.fromarray(image.astype(np.uint8)).save(folder / f"{i}.png")
    Image.fromarray(truth).save(pred / "unpaired.png")
    return pred, gt


def test_score_writes_rows_and_provenance(tmp_path, folders):
    out = tmp_path / "scores.parquet"
    result = CliRunner().invoke(
        main,
        [
            "score",
            "--pred",
            str(folders[0]),
            "--ref",
            str(folders[1]),
            "--metrics",
            "psnr,ssim_y",
            "--out",
            str(out),
            "--cache",
            str(tmp_path / "c.sqlite"),
            "-j",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "unmatched prediction: unpaired.png" in result.output
    scores = pd.read_parquet(out)
    assert list(scores.name) == ["0.png", "1.png", "2.png"]
    assert (scores.status == "ok").all() and scores.psnr.notna().all()
    provenance = json.loads(out.with_suffix(".json").read_text())
    assert provenance["protocol_version"] == "1" and provenance["unmatched_pred"] == [
        "unpaired.png"
    ]
    assert "numpy" in provenance["versions"]
    assert provenance["versions"] == versions()  # torch's build tag, pillow-heif's
    # The cache it read from, and only the weight files its metrics load (none here).
    assert provenance["cache"] == str(tmp_path / "c.sqlite") and provenance["weights"] == {}


def test_unknown_metric_and_empty_folder_exit_one(tmp_path, folders):
    runner = CliRunner()
    unknown = runner.invoke(
        main,
        [
            "score",
            "--pred",
            str(folders[0]),
            "--metrics",
            "vibes",
            "--out",
            str(tmp_path / "x.parquet"),
            "--no-cache",
        ],
    )
    assert unknown.exit_code == 1 and "unknown metric 'vibes'" in unknown.output
    (tmp_path / "empty").mkdir()
    empty = runner.invoke(
        main,
        [
            "score",
            "--pred",
            str(tmp_path / "empty"),
            "--metrics",
            "psnr",
            "--out",
            str(tmp_path / "x.parquet"),
        ],
    )
    assert empty.exit_code == 1


def test_a_full_reference_metric_without_ref_is_refused_before_scoring(tmp_path, folders):
    out = tmp_path / "scores.parquet"
    args = ["score", "--pred", str(folders[0]), "--metrics", "psnr,piqe,ssim_y"]
    result = CliRunner().invoke(main, [*args, "--out", str(out), "--no-cache", "-j", "1"])
    assert result.exit_code == 1 and not out.exists()
    assert result.stderr.endswith(
        "error: psnr, ssim_y are full-reference: score against a folder of ground truths "
        "(--ref), or name no-reference metrics (rainbench metrics lists them)\n"
    )
    assert "0.png" not in result.output  # no image's own failure


def _score_psnr_y(pred, gt, out):
    args = ["score", "--pred", str(pred), "--ref", str(gt), "--metrics", "psnr_y"]
    return CliRunner().invoke(main, [*args, "--out", str(out), "--no-cache"])


def test_a_run_whose_every_image_fails_exits_one_and_keeps_its_rows(tmp_path, folders):
    pred, gt = folders
    for path in pred.glob("*.png"):
        path.write_bytes(b"not a picture")
    out = tmp_path / "scores.parquet"
    result = _score_psnr_y(pred, gt, out)
    assert result.exit_code == 1
    assert result.stderr.endswith(
        f"error: every one of the 3 images failed to score (why: above; rows in {out})\n"
    )
    assert len(pd.read_parquet(out)) == 3
    # One that scores beside the failures: reported, exit 0.
    Image.open(gt / "0.png").save(pred / "0.png")
    partly = _score_psnr_y(pred, gt, out)
    assert partly.exit_code == 0 and "over 1 image (1 infinite), 2 failed" in partly.stdout


def test_a_run_of_one_image_that_fails_says_so_in_the_singular(tmp_path, folders):
    pred, gt = folders
    for path in pred.glob("*.png"):
        path.unlink()
    (pred / "0.png").write_bytes(b"not a picture")
    out = tmp_path / "scores.parquet"
    result = _score_psnr_y(pred, gt, out)
    assert result.exit_code == 1
    assert result.stderr.endswith(
        f"error: the one image failed to score (why: above; rows in {out})\n"
    )


def test_metrics_and_weights_status(tmp_path):
    runner = CliRunner()
    names = {m["name"] for m in json.loads(runner.invoke(main, ["metrics", "--json"]).output)}
    assert {"psnr_y", "ssim_y", "psnr", "ssim", "niqe", "brisque", "piqe"} <= names
    status = runner.invoke(main, ["weights", "status", "--weights-dir", str(tmp_path), "--json"])
    files = {f["file"]: f for f in json.loads(status.output)}
    assert files["niqe_modelparameters.mat"]["provide"].startswith("rainbench weights extract-niqe")
    # The command says where the file must go, as the text does.
    assert files["brisque_svm_weights.pth"]["provide"] == (
        f"rainbench weights import brisque_svm_weights.pth --weights-dir {tmp_path}"
    )


def test_score_a_folder_with_special_files_and_names_that_are_not_utf8(tmp_path, folders):
    pred, gt = folders
    for folder in folders:
        (folder / "0.png").rename(folder / os.fsdecode(b"bad\xff.png"))
    os.mkfifo(pred / "pipe.png")  # reading it would block for ever
    (pred / "zero.png").symlink_to("/dev/zero")  # endless
    (pred / "loop.png").symlink_to("loop.png")
    out = tmp_path / "scores.parquet"
    options = ["--metrics", "psnr", "--out", str(out), "--no-cache", "-j", "1"]
    result = CliRunner().invoke(main, ["score", "--pred", str(pred), "--ref", str(gt), *options])
    assert result.exit_code == 0, result.output
    scores = pd.read_parquet(out)
    assert list(scores.name) == ["1.png", "2.png", r"bad\xff.png"]
    assert (scores.status == "ok").all()


def test_weights_status_says_missing_once_and_names_an_absent_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    absent = tmp_path / "no-such-folder"
    result = CliRunner().invoke(main, ["weights", "status", "--weights-dir", str(absent)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"weights directory: {absent} (does not exist; import, fetch and " + (
        "extract-niqe make it)"
    )
    brisque = next(line for line in lines if "brisque_svm_weights.pth" in line)
    assert brisque.split() == [
        "missing",
        "brisque_svm_weights.pth",
        "(brisque):",
        "provide",
        "it:",
        "rainbench",
        "weights",
        "import",
        "brisque_svm_weights.pth",
        "--weights-dir",  # where the file must go for status to find it
        str(absent),
    ]
    absent.write_bytes(b"")  # named by the environment (--weights-dir takes folders only)
    monkeypatch.setenv("RAINBENCH_WEIGHTS", str(absent))
    a_file = CliRunner().invoke(main, ["weights", "status"])
    assert a_file.output.splitlines()[0] == f"weights directory: {absent} (not a folder: " + (
        "import, fetch and extract-niqe cannot write there)"
    )
    absent.unlink()
    absent.mkdir()
    present = CliRunner().invoke(main, ["weights", "status", "--weights-dir", str(absent)])
    assert present.output.splitlines()[0] == f"weights directory: {absent}"


def test_weights_status_says_how_to_replace_a_file_that_is_not_the_published_one(tmp_path):
    (tmp_path / "brisque_svm_weights.pth").write_bytes(b"not brisque")
    (tmp_path / "niqe_modelparameters.mat").write_bytes(b"not niqe")
    result = CliRunner().invoke(main, ["weights", "status", "--weights-dir", str(tmp_path)])
    niqe = next(line for line in result.output.splitlines() if "niqe_modelparameters" in line)
    assert niqe.split()[0] == "mismatch"
    assert niqe.endswith(
        "(not the published file; replace it: rainbench weights extract-niqe "
        f"basicsr-1.4.2.tar.gz --weights-dir {tmp_path})"
    )


def test_validity_refuses_too_few_resamples_and_takes_json_from_the_group(tmp_path, monkeypatch):
    runner = CliRunner()
    few = runner.invoke(main, ["metrics", "validity", str(tmp_path), "--resamples", "1"])
    assert few.exit_code == 2 and "1 is not in the range x>=100" in few.output
    monkeypatch.setattr("rainbench.cli.metrics.load_results", lambda results: None)
    monkeypatch.setattr("rainbench.cli.metrics.results_validity", lambda *args: [])
    for args in (["metrics", "--json", "validity"], ["metrics", "validity", "--json"]):
        result = runner.invoke(main, [*args, str(tmp_path)])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output) == []
    text = runner.invoke(main, ["metrics", "validity", str(tmp_path)])
    assert text.output.startswith("no paired split scored")
