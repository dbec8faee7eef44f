"""Ingest end to end through the library call: what lands in shards and manifests."""

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import warnings
from pathlib import Path
from types import SimpleNamespace

import duckdb
import pandas as pd
import pytest
import webdataset as wds
from PIL import Image

from rainbench import __version__
from rainbench.capture import phash
from rainbench.capture.formats import FORMATS
from rainbench.capture.gps import has_gps
from rainbench.demo.captures import CaptureSpec, render_scene, write_capture
from rainbench.ingest import IngestOptions, ingest
from rainbench.ingest import run as run_module
from rainbench.shards.dataset import Dataset, DatasetError
from rainbench.shards.verify import verify
from rainbench.versions import CAPTURE_LIBRARIES, installed_versions

ONE = IngestOptions(workers=1)


def _samples(ds) -> pd.DataFrame:
    return pd.read_parquet(ds / "manifests" / "samples.parquet")


def _members(ds) -> dict[str, bytes]:
    members = {}
    for shard in sorted((ds / "shards").rglob("*.tar")):
        with tarfile.open(shard) as archive:
            for info in archive:
                members[info.name] = archive.extractfile(info).read()
    return members


def _value(cell):
    return None if pd.isna(cell) else cell


def _shard_hashes(ds) -> dict[str, str]:
    return {
        p.relative_to(ds).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((ds / "shards").rglob("*.tar"))
    }


def test_every_kind_of_capture_is_accepted(tmp_path, capture_folder, capture_specs):
    ds = tmp_path / "ds"
    summary = ingest([capture_folder], ds, ONE)
    assert summary.accepted == len(capture_specs) and not summary.rejected
    assert verify(Dataset(ds)) == []
    samples = _samples(ds).set_index("source_path")
    for spec in capture_specs:
        row = samples.loc[spec.name]
        assert (row.width, row.height) == spec.upright_size, spec.name
        assert row.format == spec.fmt  # from the bytes, even for a PNG named .jpg
        assert _value(row.camera_make) == spec.make
        assert _value(row.camera_model) == spec.model
        if spec.captured_at:
            assert row.captured_at == pd.Timestamp(spec.captured_at)
        assert row.key == row.sha256[:24] and "." not in row.key
        assert row.layer == "rainy" and row.rain_type_source == "auto"
    info = json.loads((ds / "dataset.json").read_text())
    assert info["counts"]["samples"] == len(capture_specs)
    assert info["runs"][-1]["accepted"] == len(capture_specs)
    assert info["runs"][-1]["burst_gap"] == 2.0 and info["runs"][-1]["labels"] is None
    # What decoded, measured and tagged the captures.
    versions = info["runs"][-1]["versions"]
    assert versions == {"rainbench": __version__, **installed_versions(CAPTURE_LIBRARIES)}
    assert {"numpy", "scipy", "pillow", "av"} <= versions.keys()
    assert info["runs"][-1]["other_versions"] == []  # the workers had the driver's
    assert not (ds / ".ingest").exists()


def test_each_ingest_records_the_versions_it_ran_with(tmp_path, capture_folder, upgrade):
    """Also an ingest into a dataset an earlier version of the libraries started."""
    ds = tmp_path / "ds"
    later = tmp_path / "later"
    later.mkdir()
    shutil.move(next(p for p in sorted(capture_folder.iterdir()) if p.is_file()), later)
    installed = {"rainbench": __version__, **installed_versions(CAPTURE_LIBRARIES)}
    ingest([capture_folder], ds, IngestOptions(workers=1))
    upgrade("99.0")
    assert ingest([later], ds, IngestOptions(workers=1)).accepted == 1
    first, second = json.loads((ds / "dataset.json").read_text())["runs"]
    assert (first["versions"], first["other_versions"]) == (installed, [])
    assert (second["versions"], second["other_versions"]) == ({**installed, "numpy": "99.0"}, [])


def test_workers_record_their_versions_beside_the_drivers(tmp_path, capture_folder, upgrade):
    """What a Ray cluster's worker may have apart from its driver: here a driver
    upgraded after its workers' processes were forked from the unupgraded fork server."""
    installed = {"rainbench": __version__, **installed_versions(CAPTURE_LIBRARIES)}
    upgrade("99.0")
    ingest([capture_folder], tmp_path / "ds", IngestOptions(workers=2))
    [entry] = json.loads((tmp_path / "ds" / "dataset.json").read_text())["runs"]
    assert entry["versions"] == {**installed, "numpy": "99.0"}
    assert entry["other_versions"] == [installed]


def test_gps_is_removed_losslessly_unless_kept(tmp_path, capture_folder, capture_specs):
    with_gps = [s for s in capture_specs if s.gps and s.fmt == "jpeg"]
    assert with_gps
    ingest([capture_folder], tmp_path / "ds", ONE)
    members = _members(tmp_path / "ds")
    samples = _samples(tmp_path / "ds")
    assert samples[["gps_lat", "gps_lon", "gps_alt"]].isna().all().all()
    for row in samples.itertuples():
        stored = members[f"{row.key}.{row.members[0]}"]
        assert not has_gps(stored, FORMATS[row.format]), row.source_path
        assert hashlib.sha256(stored).hexdigest() == row.sha256
        assert "gps_lat" not in json.loads(members[f"{row.key}.json"])
        original = (capture_folder / row.source_path).read_bytes()
        if row.format == "jpeg":  # lossless: the entropy-coded data is untouched
            assert len(stored) == len(original)
            assert stored[original.index(b"\xff\xda") :] == original[original.index(b"\xff\xda") :]
        if row.format in ("jpeg", "png", "tiff", "webp"):  # the formats Pillow reads itself
            with Image.open(io.BytesIO(stored)) as a, Image.open(io.BytesIO(original)) as b:
                assert a.tobytes() == b.tobytes()

    ingest([capture_folder], tmp_path / "kept", IngestOptions(workers=1, keep_gps=True))
    kept = _samples(tmp_path / "kept").set_index("source_path")
    for spec in with_gps:
        assert kept.loc[spec.name].gps_lat == pytest.approx(spec.gps[0], abs=1e-4)
        assert kept.loc[spec.name].source_sha256 == kept.loc[spec.name].sha256


def test_bad_files_are_recorded_and_the_run_goes_on(tmp_path, capture_folder, bad_folder):
    root, expected = bad_folder
    shutil.move(root, capture_folder / "bad")
    summary = ingest([capture_folder], tmp_path / "ds", ONE)
    rejects = pd.read_parquet(tmp_path / "ds" / "manifests" / "rejects.parquet")
    got = dict(zip(rejects.source_path, rejects.reason, strict=True))
    assert got == {f"bad/{name}": str(reason) for name, reason in expected.items()}
    assert rejects.message.str.len().min() > 5
    assert summary.accepted == len(_samples(tmp_path / "ds"))
    assert sum(summary.rejected.values()) == len(expected)
    assert verify(Dataset(tmp_path / "ds")) == []


def test_reingest_adds_nothing_and_touches_nothing(tmp_path, capture_folder, bad_folder):
    shutil.move(bad_folder[0], capture_folder / "bad")
    ds = tmp_path / "ds"
    ingest([capture_folder], ds, ONE)
    before = (_shard_hashes(ds), _samples(ds), (ds / "manifests/rejects.parquet").read_bytes())
    summary = ingest([capture_folder], ds, ONE)
    assert (summary.accepted, summary.scanned) == (0, 1)  # only the retried: the dangling link
    assert _shard_hashes(ds) == before[0]
    pd.testing.assert_frame_equal(_samples(ds), before[1])


def test_new_files_add_only_themselves_and_nothing_moves(tmp_path, capture_folder, capture_specs):
    ds = tmp_path / "ds"
    later = capture_folder.parent / "later"
    for spec in capture_specs[20:]:
        (later / spec.name).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(capture_folder / spec.name, later / spec.name)
    ingest([capture_folder], ds, ONE)
    first, shards = _samples(ds), _shard_hashes(ds)
    summary = ingest([capture_folder, later], ds, ONE)
    assert summary.accepted == len(capture_specs[20:])
    both = _samples(ds)
    old = both[both.key.isin(first.key)].sort_values("key").reset_index(drop=True)
    pd.testing.assert_frame_equal(old, first.sort_values("key").reset_index(drop=True))
    assert {k: v for k, v in _shard_hashes(ds).items() if k in shards} == shards
    assert not set(both[~both.key.isin(first.key)].shard) & set(first.shard)


@pytest.mark.parametrize("search", ["compare-all", "index"])
def test_duplicates_refused_near_duplicates_marked_in_one_split(
    tmp_path, near_duplicate_folder, monkeypatch, search
):
    if search == "index":  # what a dataset of tens of thousands of captures searches with
        monkeypatch.setattr(phash, "_COMPARED_FOR_NOTHING", 0)
        monkeypatch.setattr(phash, "_COMPARED_PER_PROBE", 0)
    root, paths = near_duplicate_folder
    shutil.copy(paths["original"], root / "scene_copy.jpg")
    ingest([root], tmp_path / "ds", ONE)
    samples = _samples(tmp_path / "ds").set_index("source_path")
    original = samples.loc["scene.jpg"]
    assert pd.isna(original.near_dup_of)
    for variant in ("reencoded", "resized", "rotated", "oriented"):
        row = samples.loc[paths[variant].name]
        assert row.near_dup_of == original.key, variant
        assert row.near_dup_distance <= 8 and row.split == original.split
    rejects = pd.read_parquet(tmp_path / "ds/manifests/rejects.parquet")
    assert list(rejects.source_path) == ["scene_copy.jpg"]
    assert list(rejects.reason) == ["duplicate"]
    assert list(rejects.duplicate_of) == [original.key]


def test_same_input_same_shards_and_rolling_by_size(tmp_path, capture_folder):
    small = IngestOptions(workers=2, shard_bytes=400_000)
    ingest([capture_folder], tmp_path / "a", small)
    ingest([capture_folder], tmp_path / "b", IngestOptions(workers=1, shard_bytes=400_000))
    assert _shard_hashes(tmp_path / "a") == _shard_hashes(tmp_path / "b")
    shards = pd.read_parquet(tmp_path / "a/manifests/shards.parquet")
    assert len(shards) > 3
    samples = _samples(tmp_path / "a")
    per_shard = samples.groupby("shard").bytes.agg(["sum", "max", "count"])
    assert ((per_shard["sum"] - per_shard["max"]) < 400_000).all()
    assert (shards.set_index("shard").samples == per_shard["count"]).all()


def test_layer_and_split_options(tmp_path, capture_folder):
    ds = tmp_path / "ds"
    ingest(
        [capture_folder],
        ds,
        IngestOptions(workers=1, layer="clean", split={"train": 0.0, "val": 0.0, "test": 1.0}),
    )
    samples = _samples(ds)
    assert set(samples.layer) == {"clean"} and set(samples.split) == {"test"}
    with pytest.raises(DatasetError, match="split"):
        ingest(
            [capture_folder],
            ds,
            IngestOptions(workers=1, split={"train": 1.0, "val": 0.0, "test": 0.0}),
        )
    with pytest.raises(DatasetError, match="layer"):
        ingest([capture_folder], ds, IngestOptions(workers=1, layer="snowy"))


def test_a_second_writer_is_refused(tmp_path, capture_folder):
    dataset = Dataset(tmp_path / "ds")
    with dataset.lock(), pytest.raises(DatasetError, match="another rainbench command"):
        ingest([capture_folder], dataset.root, ONE)


def test_shards_read_with_webdataset_tarfile_pandas_and_duckdb(tmp_path, capture_folder):
    ds = tmp_path / "ds"
    ingest([capture_folder], ds, ONE)
    samples = _samples(ds)
    urls = sorted(str(p) for p in (ds / "shards").rglob("*.tar"))
    seen = {}
    for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False):
        meta = json.loads(sample["json"])
        assert meta["key"] == sample["__key__"]
        seen[sample["__key__"]] = meta
    assert set(seen) == set(samples.key)
    counts = duckdb.sql(
        f"select split, count(*) as n from '{ds}/manifests/samples.parquet' group by split"
    ).df()
    assert counts.n.sum() == len(samples)


def test_12mp_captures_in_every_orientation(tmp_path):
    """Full-size captures take the reduced-decode path; sizes are recorded upright."""
    specs = [
        CaptureSpec(f"IMG_{o:04d}.jpg", 4000, 3000, orientation=o, seed=o, gps=(52.5, 13.4, 34.0))
        for o in range(1, 9)
    ]
    for spec in specs:
        write_capture(tmp_path / "raw", spec)
    ingest([tmp_path / "raw"], tmp_path / "ds", IngestOptions(workers=2))
    samples = _samples(tmp_path / "ds").set_index("source_path")
    for spec in specs:
        row = samples.loc[spec.name]
        assert (row.width, row.height) == spec.upright_size
        assert row.orientation == spec.orientation
    # One scene per seed: no two are near-duplicates of each other.
    assert samples.near_dup_of.isna().all()


def test_a_stereo_cameras_mpo_is_a_jpeg_stored_with_every_picture(tmp_path):
    left, right = (Image.fromarray(render_scene(320, 240, seed)) for seed in (1, 2))
    (tmp_path / "raw").mkdir()
    left.save(tmp_path / "raw" / "DSCF0001.MPO", "MPO", save_all=True, append_images=[right])
    assert ingest([tmp_path / "raw"], tmp_path / "ds", ONE).accepted == 1
    row = _samples(tmp_path / "ds").iloc[0]
    assert (row.format, list(row.members)) == ("jpeg", ["jpg", "json"])
    stored = Image.open(io.BytesIO(_members(tmp_path / "ds")[f"{row.key}.jpg"]))
    assert stored.n_frames == 2


def test_a_folder_without_captures_makes_no_dataset_and_fixes_no_setting(tmp_path, capture_specs):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no pictures here")
    for folder, also in (("empty", ""), ("notes", r" \(1 without a capture's extension\)")):
        with pytest.raises(DatasetError, match=rf"no captures under .*{folder}{also}; nothing"):
            ingest([tmp_path / folder], tmp_path / "ds" / "new", IngestOptions(workers=1))
        assert not (tmp_path / "ds").exists()  # no folder made and left: nothing at all
    # The first ingest with captures chooses the split, as into a new folder.
    for spec in capture_specs[:3]:
        write_capture(tmp_path / "raw", spec)
    split = {"train": 0.5, "val": 0.0, "test": 0.5}
    ingest([tmp_path / "raw"], tmp_path / "ds", IngestOptions(workers=1, split=split))
    with pytest.raises(DatasetError, match=r"created with --split train=0.5,val=0,test=0.5;"):
        ingest([tmp_path / "raw"], tmp_path / "ds", IngestOptions(workers=1, split={"test": 1.0}))


def test_tasks_that_run_in_another_folder_write_into_the_dataset(
    tmp_path, capture_folder, monkeypatch, pool_elsewhere
):
    # `rainbench ingest raw/ --out ds --ray`: relative paths, tasks in the workers' folder.
    monkeypatch.setattr(run_module, "make_pool", lambda workers, ray=None: pool_elsewhere)
    monkeypatch.chdir(tmp_path)
    summary = ingest([Path(capture_folder.name)], Path("ds"), IngestOptions(workers=1))
    assert summary.accepted > 0 and summary.shards > 0
    assert list(pool_elsewhere.folder.iterdir()) == []
    assert verify(Dataset(tmp_path / "ds")) == []


def test_slow_commits_are_spaced_out_to_a_tenth_of_the_write_phase(
    tmp_path, capture_folder, monkeypatch
):
    """A commit rewrites the whole manifests: in a large dataset it takes seconds, and
    committing every _COMMIT_SECONDS would make the write phase quadratic in its size.
    On a clock where each shard takes 1 s to write and each commit 5 s, the first commit
    comes after 5 s of shards and makes the next wait 50 s, past the last shard."""
    now = [0.0]
    clock = SimpleNamespace(monotonic=lambda: now[0], perf_counter=lambda: now[0])
    monkeypatch.setattr(run_module, "time", clock)
    write_unit, commit, commits = run_module.write_unit, run_module._Run._commit, []

    def slow_write(task):
        now[0] += 1
        return write_unit(task)

    def slow_commit(self, plan, results):
        commits.append(len([r for r in results if r.sha256]))
        now[0] += 5
        commit(self, plan, results)

    monkeypatch.setattr(run_module, "write_unit", slow_write)
    monkeypatch.setattr(run_module._Run, "_commit", slow_commit)
    summary = ingest([capture_folder], tmp_path / "ds", IngestOptions(workers=1, shard_bytes=1))
    assert summary.shards > 20
    assert commits == [6, summary.shards]  # before: after every 6 shards
    assert verify(Dataset(tmp_path / "ds")) == []


def test_a_max_pixels_above_the_readers_cap_is_said_once(tmp_path, monkeypatch):
    # Ingest takes what it is told to; every later reader keeps its own cap, which only
    # RAINBENCH_MAX_PIXELS raises: said as the captures go in, not when train refuses one.
    write_capture(tmp_path / "raw", CaptureSpec("a.jpg", 64, 48))
    monkeypatch.delenv("RAINBENCH_MAX_PIXELS", raising=False)
    with pytest.warns(run_module.IngestWarning) as warned:
        ingest([tmp_path / "raw"], tmp_path / "ds", IngestOptions(workers=1, max_pixels=4 * 10**8))
    assert [str(warning.message) for warning in warned] == [
        "--max-pixels 400000000 is above the 250 MP cap readers keep: captures above it need "
        "RAINBENCH_MAX_PIXELS=400000000 (or higher) set for train, eval, synth, label, pairs, "
        "verify, score and the loader"
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error", run_module.IngestWarning)
        ingest([tmp_path / "raw"], tmp_path / "ds", ONE)  # the default: the readers' own
        monkeypatch.setenv("RAINBENCH_MAX_PIXELS", "400000000")
        ingest([tmp_path / "raw"], tmp_path / "ds", IngestOptions(workers=1, max_pixels=4 * 10**8))


def test_the_cli_says_a_max_pixels_above_the_readers_cap_in_one_warning_line(tmp_path):
    write_capture(tmp_path / "raw", CaptureSpec("a.jpg", 64, 48))
    env = {name: value for name, value in os.environ.items() if name != "RAINBENCH_MAX_PIXELS"}
    done = subprocess.run(
        [sys.executable, "-m", "rainbench", "ingest", str(tmp_path / "raw"), "--out",
         str(tmp_path / "ds"), "-j", "1", "--no-progress", "--max-pixels", "400000000"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("warning: --max-pixels 400000000 is above the 250 MP cap ")
    assert done.stderr.count("\n") == 1 and "1 accepted" in done.stdout
