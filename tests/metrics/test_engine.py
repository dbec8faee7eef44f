"""The scoring engine: pairing by name, one decode per image, per-image errors,
the cache, and the same rows whatever the number of workers."""

import numpy as np
import pytest
from PIL import Image

from rainbench.metrics import registry
from rainbench.metrics.engine import ScoreSettings, pair_folders, score
from rainbench.metrics.registry import MetricSpec, register


def _mean_abs(pred, ref):
    return float(np.abs(pred.astype(int) - ref.astype(int)).mean())


def _brightness(pred):
    return float(pred.mean())


# Test metrics, registered in this process only (worker processes do not import
# this module): the tests that use them score in process.
register(MetricSpec("test_mad", True, True, "mean absolute difference", lambda: _mean_abs))
register(MetricSpec("test_mean", False, False, "mean brightness", lambda: _brightness))


def _save(path, value, size=(32, 24)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, dtype=np.uint8)).save(path)


@pytest.fixture
def folders(tmp_path):
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    for i in range(10):
        _save(pred / f"img{i}.png", 10 * i)
        _save(ref / f"img{i}.jpg" if i % 2 else ref / f"img{i}.png", 10 * i + 3)
    _save(pred / "only-pred.png", 0)
    _save(ref / "sub" / "only-ref.png", 0)
    _save(pred / "small.png", 0, size=(16, 16))
    _save(ref / "small.png", 0, size=(20, 16))
    (pred / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    _save(ref / "broken.png", 0)
    return pred, ref


def test_pairing_by_stem_reports_the_unmatched(folders):
    pairing = pair_folders(*folders)
    assert [job.name for job in pairing.jobs][:3] == ["broken.png", "img0.png", "img1.png"]
    assert len(pairing.jobs) == 12
    assert pairing.unmatched_pred == ["only-pred.png"]
    assert pairing.unmatched_ref == ["sub/only-ref.png"]


def test_rows_errors_and_cache(folders, tmp_path, monkeypatch):
    cache = str(tmp_path / "cache.sqlite")
    settings = ScoreSettings(("test_mad", "test_mean"), {}, cache)
    rows = {r["name"]: r for r in score(pair_folders(*folders).jobs, settings, workers=1)}
    assert rows["img0.png"]["test_mad"] == pytest.approx(3, abs=1)  # JPEG refs are lossy
    assert rows["img2.png"]["test_mad"] == 3.0 and rows["img2.png"]["test_mean"] == 20.0
    assert rows["img2.png"]["status"] == "ok" and rows["img2.png"]["width"] == 32
    assert "differ in size" in rows["small.png"]["status"]
    assert rows["small.png"]["test_mean"] == 0.0  # the other metric still ran
    assert "does not decode" in rows["broken.png"]["status"]

    def fail(*args):
        raise AssertionError("computed again instead of read from the cache")

    monkeypatch.setattr(registry.Metric, "__call__", fail)
    scored = [j for j in pair_folders(*folders).jobs if rows[j.name]["status"] == "ok"]
    again = {r["name"]: r for r in score(scored, settings, workers=1)}
    for name in ("img0.png", "img2.png", "img9.png"):
        assert again[name] == rows[name]


def test_same_rows_on_two_workers(folders):
    settings = ScoreSettings(("psnr", "ssim_y"), {}, None)
    jobs = pair_folders(*folders).jobs
    one = list(score(jobs, settings, workers=1))
    two = list(score(jobs, settings, workers=2))
    assert one == two


def test_no_reference_scoring_without_ref(folders):
    pairing = pair_folders(folders[0], None)
    rows = list(score(pairing.jobs, ScoreSettings(("test_mean",), {}, None), workers=1))
    assert len(rows) == 13 and rows[0]["ref_sha256"] is None


def test_a_perfect_prediction_is_cached_as_infinite(tmp_path):
    for folder in ("p", "r"):
        _save(tmp_path / folder / "x.png", 77)
    settings = ScoreSettings(("psnr",), {}, str(tmp_path / "c.sqlite"))
    jobs = pair_folders(tmp_path / "p", tmp_path / "r").jobs
    first = score(jobs, settings, workers=1)
    assert first[0]["psnr"] == float("inf") and first[0]["status"] == "ok"
    assert score(jobs, settings, workers=1) == first
