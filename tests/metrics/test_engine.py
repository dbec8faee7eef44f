"""The scoring engine: pairing by name, one decode per image, per-image errors,
the cache, the same rows whatever the number of workers, metrics built once per
process, and the worker count capped by memory."""

import os
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from rainbench.errors import RainbenchError
from rainbench.metrics import engine, registry
from rainbench.metrics.engine import ScoreSettings, pair_folders, score
from rainbench.metrics.registry import MetricError, MetricSpec, register
from rainbench.parallel import WorkerPool
from rainbench.threads import choose_threads


def _mean_abs(pred, ref):
    return float(np.abs(pred.astype(int) - ref.astype(int)).mean())


def _brightness(pred):
    return float(pred.mean())


# Test metrics, registered in this process only (worker processes do not import
# this module): the tests that use them score in process.
register(MetricSpec("test_mad", True, True, "mean absolute difference", lambda **_: _mean_abs))
# (test_mean takes the options a worker passes, threads and device: unused here.)
register(MetricSpec("test_mean", False, False, "mean brightness", lambda **_: _brightness))


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


def test_a_link_leading_out_of_its_folder_is_left_out_and_said(folders, tmp_path):
    # As ingest refuses such a link (link-outside); one to a file inside is read.
    pred, ref = folders
    _save(tmp_path / "elsewhere" / "secret.png", 255)
    (pred / "img3.png").unlink()
    (pred / "img3.png").symlink_to(tmp_path / "elsewhere" / "secret.png")
    (ref / "img4.png").unlink()
    (ref / "img4.png").symlink_to("../elsewhere/secret.png")
    (pred / "again.png").symlink_to(pred / "img5.png")
    _save(ref / "again.png", 0)
    pairing = pair_folders(pred, ref)
    assert (pairing.outside_pred, pairing.outside_ref) == (["img3.png"], ["img4.png"])
    names = [job.name for job in pairing.jobs]
    assert "img3.png" not in names and "img4.png" not in names and "again.png" in names
    assert "img4.png" in pairing.unmatched_pred
    assert pair_folders(pred, None).outside_pred == ["img3.png"]


def test_a_stem_found_twice_is_reported_and_names_pair_in_either_unicode_form(folders):
    pred, ref = folders
    _save(pred / "img3.jpg", 0)  # beside img3.png: which one is the prediction?
    _save(pred / "Stra\u00dfe u\u0308.png", 0)  # ü decomposed, as macOS writes names
    _save(ref / "Stra\u00dfe \u00fc.png", 0)
    pairing = pair_folders(pred, ref)
    assert pairing.unmatched_pred == ["img3.jpg", "img3.png", "only-pred.png"]
    assert "img3.jpg" in pairing.unmatched_ref
    assert "Stra\u00dfe u\u0308.png" in [job.name for job in pairing.jobs]
    assert pairing.ambiguous_pred == ["img3.jpg", "img3.png"] and pairing.ambiguous_ref == []
    alone = pair_folders(pred, None)
    assert alone.unmatched_pred == alone.ambiguous_pred == ["img3.jpg", "img3.png"]


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


def test_a_cache_that_cannot_be_written_is_named_and_left_usable(
    folders, tmp_path, file_size_limit
):
    """A full disk under the cache: one line naming it; and the empty file its first
    write left is no cache at all, not an error in every later run."""
    cache = tmp_path / "cache.sqlite"
    settings = ScoreSettings(("test_mad",), {}, str(cache))
    jobs = pair_folders(*folders).jobs
    with (
        pytest.raises(MetricError, match=r"cache\.sqlite: the score cache cannot be written"),
        file_size_limit(0),
    ):
        score(jobs, settings, workers=1)
    assert cache.stat().st_size == 0
    uncached = ScoreSettings(settings.metrics, {}, None)
    assert score(jobs, settings, workers=1) == score(jobs, uncached, workers=1)


def test_a_cache_whose_folder_cannot_be_made_is_named(folders, tmp_path):
    # A file where the cache's folder should be: before, the line named only that file
    # ("afile: File exists"), not the cache nor what to do.
    (tmp_path / "afile").write_text("")
    cache = tmp_path / "afile" / "scores.sqlite"
    settings = ScoreSettings(("test_mad",), {}, str(cache))
    with pytest.raises(
        MetricError,
        match=r"afile/scores\.sqlite: the score cache cannot be written \(File exists: .*afile\)",
    ):
        score(pair_folders(*folders).jobs, settings, workers=1)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_cache_that_is_no_database_is_named_in_one_line_and_left_as_it_is(
    folders, tmp_path, workers
):
    """A damaged cache, or --cache naming some other file: read as no cache, and the first
    value stored ends the run in one line, the file untouched."""
    cache = tmp_path / "notes.sqlite"
    cache.write_bytes(b"not a database, some notes of the user's\n" * 100)
    settings = ScoreSettings(("psnr",), {}, str(cache))  # registered in a worker too
    with pytest.raises(MetricError, match=r"notes\.sqlite: not a score cache, or a damaged one"):
        score(pair_folders(*folders).jobs, settings, workers=workers)
    assert cache.read_bytes() == b"not a database, some notes of the user's\n" * 100


def test_a_cache_another_process_holds_is_waited_for_then_left(folders, tmp_path, monkeypatch):
    import sqlite3

    cache = tmp_path / "cache.sqlite"
    settings = ScoreSettings(("test_mad",), {}, str(cache))
    jobs = pair_folders(*folders).jobs
    first = score(jobs, settings, workers=1)
    monkeypatch.setattr(engine, "_CACHE_WAIT_S", 0.2)
    monkeypatch.setattr(engine, "_CACHE_READ_WAIT_S", 0.05)
    other = sqlite3.connect(cache, isolation_level=None)
    try:
        other.execute("begin immediate")  # another score, in the middle of its write
        fresh = ScoreSettings(("test_mean",), {}, str(cache))
        with pytest.warns(engine.CacheWarning, match=r"another process held the score cache"):
            rows = score(jobs, fresh, workers=1)
        assert rows == score(jobs, ScoreSettings(fresh.metrics, {}, None), workers=1)
        other.execute("rollback")
        other.execute("begin exclusive")  # ... committing: not even readable
        with pytest.warns(engine.CacheWarning):
            assert score(jobs, settings, workers=1) == first  # computed again, not read
    finally:
        other.execute("rollback")
        other.close()


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


def test_a_value_cached_with_other_weights_is_computed_again(tmp_path, monkeypatch):
    for folder in ("p", "r"):
        _save(tmp_path / folder / "x.png", 77)
    jobs = pair_folders(tmp_path / "p", tmp_path / "r").jobs
    settings = ScoreSettings(("test_mean",), {}, str(tmp_path / "c.sqlite"))
    loaded = {"sha256": "a" * 64}

    def weight_file(metric, weights_dir=None):  # as if test_mean loaded a weight file
        return SimpleNamespace(sha256=loaded["sha256"])

    monkeypatch.setattr(engine.weights, "required", weight_file)
    first = score(jobs, settings, workers=1)
    calls = []
    original = registry.Metric.__call__

    def counted(self, *args, **kwargs):
        calls.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(registry.Metric, "__call__", counted)
    assert score(jobs, settings, workers=1) == first and calls == []  # read from the cache
    loaded["sha256"] = "b" * 64  # the weight file replaced
    assert score(jobs, settings, workers=1) == first and len(calls) == 1  # computed again


def test_a_cached_value_that_is_no_number_is_computed_again(tmp_path):
    # The value column takes any type: a cache written by something else may hold a text
    # of GBs there, which would be read into every worker.
    import sqlite3

    for folder in ("p", "r"):
        _save(tmp_path / folder / "x.png", 77)
    jobs = pair_folders(tmp_path / "p", tmp_path / "r").jobs
    settings = ScoreSettings(("test_mean",), {}, str(tmp_path / "c.sqlite"))
    first = score(jobs, settings, workers=1)
    with sqlite3.connect(settings.cache) as cache:
        cache.execute("update scores set value = ?", ("x" * 1000,))
    assert score(jobs, settings, workers=1) == first


def test_a_prediction_larger_than_any_picture_within_the_cap_is_refused_unread(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("RAINBENCH_MAX_PIXELS", "100")  # a bound of 16 MiB and 1600 bytes
    for folder in ("p", "r"):
        _save(tmp_path / folder / "x.png", 77)
    with (tmp_path / "p" / "x.png").open("r+b") as file:
        file.truncate((16 << 20) + 1601)  # sparse: takes no disk
    jobs = pair_folders(tmp_path / "p", tmp_path / "r").jobs
    (row,) = score(jobs, ScoreSettings(("test_mean",), {}, None), workers=1)
    assert row["status"] == (
        f"error: a still of {(16 << 20) + 1601} bytes, more than a picture of 100 pixels "
        "takes (16 bytes a pixel, 16 MiB besides); not read (the pixel cap readers keep: "
        "RAINBENCH_MAX_PIXELS)"
    )


def test_score_keeps_the_readers_cap_rainbench_max_pixels(tmp_path, monkeypatch):
    # A derainer's output of a capture ingested under a --max-pixels above the readers'
    # cap: refused, saying what raises the cap, and scored once that is raised.
    _save(tmp_path / "p" / "x.png", 77)  # 32×24
    jobs = pair_folders(tmp_path / "p", None).jobs
    settings = ScoreSettings(("test_mean",), {}, None)
    monkeypatch.setenv("RAINBENCH_MAX_PIXELS", str(32 * 24 - 1))
    (row,) = score(jobs, settings, workers=1)
    assert row["status"] == (
        "error: x.png is not decoded: its header declares more than the 767 pixels cap "
        "readers keep (RAINBENCH_MAX_PIXELS)"
    )
    monkeypatch.setenv("RAINBENCH_MAX_PIXELS", str(32 * 24))
    (row,) = score(jobs, settings, workers=1)
    assert (row["status"], row["test_mean"]) == ("ok", 77.0)
    monkeypatch.setenv("RAINBENCH_MAX_PIXELS", "-1")
    with pytest.raises(RainbenchError, match=r"^RAINBENCH_MAX_PIXELS='-1' is not a positive"):
        engine.plan_scoring(jobs, settings, workers=1)  # before any image is read


def test_the_cache_keys_values_by_the_metric_libraries_only(monkeypatch):
    # Outputs record more (av for ingest; pillow-heif and torch's build tag for score
    # and eval); the cache's key stays the metrics' own five, as their metadata says,
    # so that no cached value is computed again for them.
    found = {"numpy": "1", "scipy": "2", "pillow": "3", "torch": "4", "pyiqa": "5", "av": "6"}
    monkeypatch.setattr("rainbench.versions.version", {**found, "pillow-heif": "7"}.__getitem__)
    monkeypatch.setattr(registry, "torch_version", lambda: "4+cu130")
    monkeypatch.setattr(engine.weights, "required", lambda metric, weights_dir=None: None)
    identities = engine.cache_identities(ScoreSettings(("test_mean",), {}, None))
    assert identities == {
        "test_mean": f"{registry.PROTOCOL_VERSION}; weights none; "
        "numpy 1, scipy 2, pillow 3, torch 4, pyiqa 5"
    }


def test_outputs_record_torchs_build_and_the_heic_decoder_beside_the_keys_versions(
    monkeypatch,
):
    found = {"numpy": "1", "scipy": "2", "pillow": "3", "torch": "4", "pyiqa": "5", "av": "6"}
    monkeypatch.setattr("rainbench.versions.version", {**found, "pillow-heif": "7"}.__getitem__)
    monkeypatch.setattr(registry, "torch_version", lambda: "4+cu130")
    assert registry.versions() == {
        "numpy": "1", "scipy": "2", "pillow": "3", "torch": "4+cu130", "pyiqa": "5",
        "pillow-heif": "7",
    }  # fmt: skip


def test_a_perfect_prediction_is_cached_as_infinite(tmp_path):
    for folder in ("p", "r"):
        _save(tmp_path / folder / "x.png", 77)
    settings = ScoreSettings(("psnr",), {}, str(tmp_path / "c.sqlite"))
    jobs = pair_folders(tmp_path / "p", tmp_path / "r").jobs
    first = score(jobs, settings, workers=1)
    assert first[0]["psnr"] == float("inf") and first[0]["status"] == "ok"
    assert score(jobs, settings, workers=1) == first


def test_a_heic_prediction_read_from_the_cache_keeps_its_size(tmp_path):
    # Pillow reads no HEIC header: the size a cached row gives comes from decoding.
    pillow_heif = pytest.importorskip("pillow_heif", reason="HEIC needs rainbench[heic]")
    pixels = np.random.default_rng(0).integers(0, 256, (24, 32, 3), np.uint8)
    (tmp_path / "p").mkdir()
    pillow_heif.from_pillow(Image.fromarray(pixels)).save(tmp_path / "p" / "x.heic", quality=90)
    _save(tmp_path / "r" / "x.png", 77)
    settings = ScoreSettings(("psnr",), {}, str(tmp_path / "c.sqlite"))
    jobs = pair_folders(tmp_path / "p", tmp_path / "r").jobs
    first = score(jobs, settings, workers=1)
    assert (first[0]["width"], first[0]["height"]) == (32, 24)
    assert score(jobs, settings, workers=1) == first


def test_a_heic_without_pillow_heif_is_the_rows_error_not_a_crash(tmp_path, monkeypatch):
    pillow_heif = pytest.importorskip("pillow_heif", reason="HEIC needs rainbench[heic]")
    pixels = np.random.default_rng(0).integers(0, 256, (24, 32, 3), np.uint8)
    (tmp_path / "p").mkdir()
    pillow_heif.from_pillow(Image.fromarray(pixels)).save(tmp_path / "p" / "x.heic", quality=90)
    _save(tmp_path / "p" / "y.png", 7)
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # makes the import fail
    jobs = pair_folders(tmp_path / "p", None).jobs
    rows = score(jobs, ScoreSettings(("test_mean",), {}, None), workers=1)
    assert [row["status"] for row in rows] == [
        "error: x.heic: HEIC needs pillow-heif: pip install 'rainbench[heic]'",
        "ok",
    ]


def test_rows_in_name_order_whatever_order_they_finish(tmp_path):
    # Scored largest first: the largest image has the last name here.
    for i, side in enumerate((20, 30, 40, 50)):
        _save(tmp_path / "p" / f"img{i}.png", 10 * i, size=(side, side))
    jobs = pair_folders(tmp_path / "p", None).jobs
    rows = score(jobs, ScoreSettings(("test_mean",), {}, None), workers=1)
    assert [row["name"] for row in rows] == ["img0.png", "img1.png", "img2.png", "img3.png"]
    assert [row["width"] for row in rows] == [20, 30, 40, 50]


def test_piqe_is_the_same_on_one_worker_and_on_two(tmp_path):
    pytest.importorskip("pyiqa", reason="no-reference metrics need rainbench[eval]")
    rng = np.random.default_rng(0)
    for i, side in enumerate((48, 64, 96)):
        pixels = rng.integers(0, 256, (side, side + 8, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"img{i}.png")
    jobs = pair_folders(tmp_path, None).jobs
    settings = ScoreSettings(("piqe",), {}, None)
    one = score(jobs, settings, workers=1)
    two = score(jobs, settings, workers=2)  # tuned worker processes (engine._tune_worker)
    assert one == two and all(row["status"] == "ok" for row in one)


def test_each_metric_is_built_once_per_process(tmp_path, monkeypatch):
    builds = []

    def factory(**options):
        builds.append(options)
        return _brightness

    register(MetricSpec("test_counted", False, False, "counts its builds", factory))
    monkeypatch.setattr(engine, "_BUILT", {})
    for i in range(5):
        _save(tmp_path / f"img{i}.png", i)
    jobs = pair_folders(tmp_path, None).jobs
    settings = ScoreSettings(("test_counted",), {"weights_dir": "/w"}, None)
    score(jobs, settings, workers=1)
    score(jobs, settings, workers=1)
    assert len(builds) == 1
    engine.built_metric("test_counted", {"weights_dir": "/other"})  # another key: built
    engine.built_metric("test_counted", {"weights_dir": "/other"})  # the same: not again
    # The engine's own: one process, with the threads it chose (OMP_NUM_THREADS here).
    assert builds == [{"weights_dir": "/w", "threads": choose_threads()}, {"weights_dir": "/other"}]


def test_a_metric_built_with_other_threads_is_built_again(tmp_path, monkeypatch):
    """Every option keys a built metric: a second score in the same process with other
    threads (plan_scoring sets them) must not get the first run's metric."""
    builds = []

    def factory(**options):
        builds.append(options)
        return _brightness

    register(MetricSpec("test_threaded", False, False, "records its options", factory))
    monkeypatch.setattr(engine, "_BUILT", {})
    _save(tmp_path / "img0.png", 0)
    jobs = pair_folders(tmp_path, None).jobs
    for threads in (3, 5):
        monkeypatch.setattr(engine, "choose_threads", lambda threads=threads: threads)
        score(jobs, ScoreSettings(("test_threaded",), {"weights_dir": "/w"}, None), workers=1)
    assert builds == [{"weights_dir": "/w", "threads": 3}, {"weights_dir": "/w", "threads": 5}]
    # Built once for each set of options, whatever their order.
    first = engine.built_metric("test_threaded", {"weights_dir": "/w", "threads": 3})
    assert first is engine.built_metric("test_threaded", {"threads": 3, "weights_dir": "/w"})
    assert len(builds) == 2


def _meminfo(tmp_path, available_kib: int):
    path = tmp_path / "meminfo"
    path.write_text(f"MemTotal:       99999999 kB\nMemAvailable:   {available_kib} kB\n")
    return path


def test_available_memory_is_meminfo_or_a_tighter_cgroup_limit(tmp_path):
    meminfo = _meminfo(tmp_path, 8 * 1024 * 1024)  # 8 GiB
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    assert engine.available_memory(meminfo, cgroup) == 8 << 30  # no cgroup files
    (cgroup / "memory.max").write_text("max\n")
    (cgroup / "memory.current").write_text(str(1 << 30))
    assert engine.available_memory(meminfo, cgroup) == 8 << 30  # "max": no limit
    (cgroup / "memory.max").write_text(str(4 << 30))
    assert engine.available_memory(meminfo, cgroup) == 3 << 30  # 4 GiB limit, 1 GiB used
    assert engine.available_memory(tmp_path / "none", tmp_path / "none") >= 1 << 60


def test_worker_memory_counts_the_hungriest_metric_on_the_largest_image():
    def spec(name, per_pixel):
        return MetricSpec(
            name, False, True, "", lambda: _brightness, peak_bytes_per_pixel=per_pixel
        )

    twelve_mp = 12_000_000
    need = engine.worker_memory([spec("a", 820), spec("b", 180)], twelve_mp)
    assert need == engine.WORKER_BASE_BYTES + twelve_mp * (820 + engine.DECODED_BYTES_PER_PIXEL)
    assert engine.worker_memory([], 0) == engine.WORKER_BASE_BYTES


def test_workers_for_memory_sums_the_largest_images():
    assert engine.workers_for_memory([10, 6, 6, 6], available=23) == 3
    assert engine.workers_for_memory([10, 6, 6, 6], available=100) == 4
    assert engine.workers_for_memory([10, 6], available=15) == 1
    assert engine.workers_for_memory([10, 6], available=5) == 1  # never fewer than one
    assert engine.workers_for_memory([], available=5) == 1


def test_workers_are_capped_by_memory(tmp_path, monkeypatch):
    asked = []

    def inline_pool(workers, ray, gpu):
        asked.append((workers, ray, gpu))
        return WorkerPool(1)

    monkeypatch.setattr(engine, "make_pool", inline_pool)
    for i in range(3):
        _save(tmp_path / f"img{i}.png", i, size=(100, 100))
    jobs = pair_folders(tmp_path, None).jobs
    settings = ScoreSettings(("test_mean",), {}, None)
    need = engine.worker_memory([registry.check_metric("test_mean")], 100 * 100)
    monkeypatch.setattr(engine, "available_memory", lambda: 2 * need + need // 2)
    score(jobs, settings, workers=8)
    monkeypatch.setattr(engine, "available_memory", lambda: need // 2)
    score(jobs, settings, workers=8)  # never fewer than one
    score(jobs, settings, workers=8, ray="auto")  # a cluster's memory is not this machine's
    cuda = ScoreSettings(("test_mean",), {"device": "cuda:1"}, None)
    score(jobs, cuda, workers=1, ray="auto")  # on the cluster, each task gets a GPU
    assert asked == [(2, None, False), (1, None, False), (8, "auto", False), (1, "auto", True)]


def test_workers_ask_for_huge_pages_only_before_torch_is_imported(monkeypatch):
    monkeypatch.delenv("THP_MEM_ALLOC_ENABLE", raising=False)
    monkeypatch.setitem(sys.modules, "torch", object())
    engine._tune_worker.__wrapped__()
    assert "THP_MEM_ALLOC_ENABLE" not in os.environ  # too late: torch has read it
    monkeypatch.delitem(sys.modules, "torch")
    engine._tune_worker.__wrapped__()
    assert os.environ["THP_MEM_ALLOC_ENABLE"] == "1"


def test_units_that_run_in_another_folder_read_the_images_named_here(
    folders, tmp_path, monkeypatch, pool_elsewhere
):
    # `rainbench score --pred pred/ --ref ref/ --cache c.sqlite --ray`: relative paths.
    monkeypatch.setattr(engine, "make_pool", lambda *args: pool_elsewhere)
    monkeypatch.chdir(tmp_path)
    jobs = pair_folders(Path("pred"), Path("ref")).jobs
    rows = {r["name"]: r for r in score(jobs, ScoreSettings(("test_mad",), {}, "c.sqlite"), 1)}
    assert rows["img2.png"]["status"] == "ok" and rows["img2.png"]["test_mad"] == 3.0
    assert list(pool_elsewhere.folder.iterdir()) == [] and (tmp_path / "c.sqlite").exists()
