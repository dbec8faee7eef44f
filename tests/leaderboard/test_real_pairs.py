"""A real-paired split made by `rainbench pairs`: eval scores only the confident pixels
of each pair, records how the ground truth was made, and the leaderboard states it."""

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from rainbench.leaderboard.cells import ground_truth_text
from rainbench.leaderboard.eval import EvalSettings, evaluate
from rainbench.leaderboard.publish import render_leaderboard
from rainbench.leaderboard.sources import DerainerSource
from rainbench.metrics.fullref import psnr_y
from rainbench.models.registry import create_derainer
from rainbench.parallel import WorkerPool
from rainbench.shards import manifest
from rainbench.shards.dataset import Dataset, initial_info
from rainbench.shards.layout import CONFIDENCE, GROUND_TRUTH, RAIN
from rainbench.synth.png import encode_png
from rainbench.synth.splits import MadePair, PairJob, write_pairs

SIZE = (48, 64)


def _window(seed: int) -> list[MadePair]:
    """Two pairs of one window: the rain is the truth plus noise, except in the left
    half, where the ground truth is wrong (a moving object) and the confidence is 0."""
    rng = np.random.default_rng(seed)
    made = []
    for frame in (0, 4):
        gt = rng.integers(40, 200, (*SIZE, 3), dtype=np.uint8)
        rain = np.clip(gt + rng.normal(0, 3, gt.shape), 0, 255).astype(np.uint8)
        gt[:, : SIZE[1] // 2] = 0
        confidence = np.full(SIZE, 255, np.uint8)
        confidence[:, : SIZE[1] // 2] = 0
        members = {RAIN: encode_png(rain), GROUND_TRUTH: encode_png(gt)}
        members[CONFIDENCE] = encode_png(confidence)
        metadata = {
            "width": SIZE[1],
            "height": SIZE[0],
            "recipe": "pairs:percentile",
            "frame_index": frame,
            "window_start": 0,
            "window_end": 30,
            "confidence_mean": 0.5,
            "moving_fraction": 0.5,
            "gt_psnr_estimate": 41.0,
        }
        made.append(MadePair(members, metadata, part=str(frame)))
    return made


@pytest.fixture
def ds(tmp_path):
    dataset = Dataset(tmp_path / "ds")
    dataset.write_info(initial_info("ds", {}))
    jobs = [
        PairJob(
            "lab-pairs",
            f"pairs@1:{'a' * 24}:0-30:{seed}",
            {"source_key": "a" * 24, "group": f"video-{seed}"},  # a sequence per window
            seed,
        )
        for seed in range(2)
    ]
    with WorkerPool(1) as pool:
        summary = write_pairs(dataset, jobs, _window, pool, 10**9, "run")
    assert summary.stored["lab-pairs"] == 4
    with WorkerPool(1) as pool:  # a job already stored is not made again
        again = write_pairs(dataset, jobs, _window, pool, 10**9, "run")
    assert again.stored["lab-pairs"] == 0 and again.existing["lab-pairs"] == 4
    return dataset.root


def test_only_confident_pixels_are_scored_and_the_ground_truth_is_stated(tmp_path, ds):
    source = DerainerSource(create_derainer("identity"), "cpu", None, 32)
    settings = EvalSettings(metrics=("psnr_y", "ssim_y"), batch=2, crops=1)
    (report,) = evaluate(source, ds, "all", tmp_path / "res", settings)
    assert report.kind == "real-paired" and report.scored == 4
    table = pd.read_parquet(tmp_path / "res" / "identity" / "ds" / "lab-pairs.parquet")
    assert (table.status == "ok").all()
    # Each row names its sequence: the leaderboard's intervals draw whole sequences.
    assert sorted(table.group) == ["video-0", "video-0", "video-1", "video-1"]
    # The left half's wrong ground truth would bring psnr_y far below 30 dB.
    expected = []
    for seed in range(2):
        for pair in _window(seed):
            rain, gt = (np.asarray(_decode(pair.members[name])) for name in (RAIN, GROUND_TRUTH))
            half = SIZE[1] // 2
            expected.append(psnr_y(rain[:, half:], gt[:, half:]))
    assert sorted(table.psnr_y) == pytest.approx(sorted(expected))
    assert table.psnr_y.min() > 35
    info = json.loads((tmp_path / "res" / "identity" / "ds" / "lab-pairs.json").read_text())
    truth = info["ground_truth"]
    assert truth["methods"] == {"pairs:percentile": 4}
    assert truth["gt_psnr_estimate_median"] == 41.0 and truth["window_frames_max"] == 31
    page = render_leaderboard(tmp_path / "res", "md")
    assert "Ground truth by pairs:percentile (4)" in page
    assert "median 41.0 dB psnr_y" in page


def _decode(data: bytes):
    import io

    from PIL import Image

    return Image.open(io.BytesIO(data)).convert("RGB")


def test_a_pair_without_every_estimate_figure_is_left_out_of_the_ground_truth(tmp_path, ds):
    """A real pair may lack its estimate's figures (an imported set's, an earlier
    version's): it counts among the methods, and the figures are those of the rest."""
    path = Dataset(ds).synthetic_manifest
    rows = manifest.read_manifest(path, manifest.SYNTHETIC).to_pylist()
    rows[0].update(confidence_mean=None, gt_psnr_estimate=12.0)
    manifest.write_manifest(path, manifest.rows_to_table(rows, manifest.SYNTHETIC))
    source = DerainerSource(create_derainer("identity"), "cpu", None, 32)
    (report,) = evaluate(source, ds, "all", tmp_path / "res", EvalSettings(metrics=("psnr_y",)))
    assert report.scored == 4
    info = json.loads((tmp_path / "res" / "identity" / "ds" / "lab-pairs.json").read_text())
    truth = info["ground_truth"]
    assert truth["methods"] == {"pairs:percentile": 4}
    assert truth["gt_psnr_estimate_median"] == 41.0 and truth["confidence_mean"] == 0.5


@pytest.mark.parametrize(
    ("methods", "said"),
    [
        ({"pairs:percentile": 4}, "estimated from time over windows of up to 31 frames: "),
        ({"pairs:rain-free": 4}, "taken from rain-free frames of the same sequences, up to 31"),
        (
            {"pairs:percentile": 2, "pairs:rain-free": 2},
            "up to 31 frames, or from rain-free frames where a sequence has them: ",
        ),
    ],
)
def test_the_ground_truth_says_whether_it_came_from_rainy_or_rain_free_frames(methods, said):
    truth = {
        "methods": methods,
        "confident_from": 0.5,
        "confidence_mean": 0.8,
        "moving_mean": 0.01,
        "gt_psnr_estimate_median": 41.0,
        "window_frames_max": 31,
    }
    run = SimpleNamespace(provenance={"ground_truth": truth})
    table = SimpleNamespace(kind="real-paired", rows=[SimpleNamespace(run=run)])
    assert said in ground_truth_text(table)
