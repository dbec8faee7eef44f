"""A re-run reads only what changed: a file whose (size, mtime, inode) the dataset
already holds is neither read nor hashed again, and a file replaced by another of the
same size and time (a new inode) is probed again, once: the manifest then names it."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from rainbench.capture import probe as probe_module
from rainbench.capture.source import open_capture
from rainbench.demo.captures import CaptureSpec, write_capture
from rainbench.ingest import IngestOptions, ingest
from rainbench.ingest import write as write_module
from rainbench.shards import manifest
from rainbench.shards.dataset import Dataset, initial_info

OPTIONS = IngestOptions(workers=1)  # inline, so the counting stand-in below is the one used


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """The path of every capture read from here on, by the probe or the shard writer."""
    paths: list[str] = []

    def counting(source):
        paths.append(source.path)
        return open_capture(source)

    monkeypatch.setattr(probe_module, "open_capture", counting)
    monkeypatch.setattr(write_module, "open_capture", counting)
    return paths


def test_an_unchanged_folder_is_not_read_again(capture_folder, tmp_path, reads):
    first = ingest([capture_folder], tmp_path / "ds", OPTIONS)
    assert first.accepted > 0 and len(reads) >= first.accepted
    reads.clear()
    again = ingest([capture_folder], tmp_path / "ds", OPTIONS)
    assert reads == []
    assert (again.scanned, again.accepted, again.unchanged) == (0, 0, 0)


def test_a_folder_given_through_dot_dot_is_the_folder_ingested_before(
    capture_folder, tmp_path, reads, monkeypatch
):
    ingest([capture_folder], tmp_path / "ds", OPTIONS)
    rejects = Dataset(tmp_path / "ds").rejects_manifest
    rejected = manifest.read_manifest(rejects, manifest.REJECTS).num_rows
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    reads.clear()
    again = ingest([Path(os.path.relpath(capture_folder))], tmp_path / "ds", OPTIONS)
    assert ".." in os.path.relpath(capture_folder)
    assert reads == []
    assert (again.scanned, again.accepted, again.duplicates) == (0, 0, 0)
    assert manifest.read_manifest(rejects, manifest.REJECTS).num_rows == rejected


def test_an_input_named_twice_is_read_and_counted_once(tmp_path, reads):
    raw = tmp_path / "raw"
    for seed, name in enumerate(("IMG_0001.jpg", "IMG_0002.jpg")):
        write_capture(raw, CaptureSpec(name=name, width=96, height=64, seed=seed))
    (raw / "notes.txt").write_text("not a capture")
    summary = ingest([raw, raw, raw / "IMG_0001.jpg"], tmp_path / "ds", OPTIONS)
    # Each file once to probe it, once to write it.
    assert sorted(reads) == ["IMG_0001.jpg", "IMG_0001.jpg", "IMG_0002.jpg", "IMG_0002.jpg"]
    assert (summary.scanned, summary.accepted, summary.ignored) == (2, 2, 1)


def test_a_file_replaced_with_the_same_size_and_time_is_probed_again(
    capture_folder, tmp_path, reads
):
    ingest([capture_folder], tmp_path / "ds", OPTIONS)
    samples = manifest.read_manifest(Dataset(tmp_path / "ds").samples_manifest, manifest.SAMPLES)
    path = capture_folder / samples["source_path"][0].as_py()
    before = path.stat()
    # A copy put in its place, with the original's time: only the inode tells them apart.
    copy = path.with_name(".incoming")
    shutil.copyfile(path, copy)
    os.replace(copy, path)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert after.st_ino != before.st_ino
    reads.clear()
    again = ingest([capture_folder], tmp_path / "ds", OPTIONS)
    assert reads == [path.relative_to(capture_folder).as_posix()]
    assert (again.scanned, again.accepted, again.unchanged) == (1, 0, 1)
    # Its manifest row now names the new file, so the next run reads nothing.
    reads.clear()
    assert ingest([capture_folder], tmp_path / "ds", OPTIONS).scanned == 0
    assert reads == []


def test_a_touched_file_is_read_once_then_known(capture_folder, tmp_path, reads):
    ingest([capture_folder], tmp_path / "ds", OPTIONS)
    samples = manifest.read_manifest(Dataset(tmp_path / "ds").samples_manifest, manifest.SAMPLES)
    name = samples["source_path"][0].as_py()
    path = capture_folder / name
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    reads.clear()
    again = ingest([capture_folder], tmp_path / "ds", OPTIONS)
    assert reads == [name]
    assert again.unchanged == 1
    samples = manifest.read_manifest(Dataset(tmp_path / "ds").samples_manifest, manifest.SAMPLES)
    row = samples.filter(pc.equal(samples["source_path"], name)).to_pylist()[0]
    now = path.stat()
    assert (row["source_mtime_ns"], row["source_inode"]) == (now.st_mtime_ns, now.st_ino)
    reads.clear()
    assert ingest([capture_folder], tmp_path / "ds", OPTIONS).scanned == 0
    assert reads == []


def test_a_dataset_written_before_inodes_were_kept_is_not_read_again(
    capture_folder, tmp_path, reads
):
    ingest([capture_folder], tmp_path / "ds", OPTIONS)
    dataset = Dataset(tmp_path / "ds")
    samples = manifest.read_manifest(dataset.samples_manifest, manifest.SAMPLES)
    column = samples.schema.get_field_index("source_inode")
    legacy = samples.set_column(column, "source_inode", pa.nulls(len(samples), pa.int64()))
    manifest.write_manifest(dataset.samples_manifest, legacy)
    reads.clear()
    again = ingest([capture_folder], tmp_path / "ds", OPTIONS)
    assert reads == []
    assert again.scanned == 0


def test_a_duplicate_names_its_original_so_that_it_reads_as_another_file(tmp_path):
    raw, moved = tmp_path / "raw", tmp_path / "moved"
    write_capture(raw, CaptureSpec("day1/IMG_1.jpg", 320, 240))
    ingest([raw], tmp_path / "ds", OPTIONS)
    samples = manifest.read_manifest(Dataset(tmp_path / "ds").samples_manifest, manifest.SAMPLES)
    key = samples["key"][0].as_py()
    # Renamed where it was: named within the same root. Moved to another root: named whole.
    os.rename(raw / "day1" / "IMG_1.jpg", raw / "day1" / "renamed.jpg")
    shutil.copytree(raw / "day1", moved / "day1")
    assert ingest([raw, moved], tmp_path / "ds", OPTIONS).duplicates == 2
    rejects = Dataset(tmp_path / "ds").rejects_manifest
    messages = manifest.read_manifest(rejects, manifest.REJECTS)["message"].to_pylist()
    assert sorted(messages) == [
        f"same bytes as {raw.as_posix()}/day1/IMG_1.jpg (key {key})",
        f"same bytes as day1/IMG_1.jpg (key {key})",
    ]


def test_a_capture_refused_as_too_large_is_read_again_under_a_higher_cap(tmp_path, reads):
    write_capture(tmp_path / "raw", CaptureSpec("IMG_1.jpg", 320, 240))
    low = IngestOptions(workers=1, max_pixels=100)
    assert ingest([tmp_path / "raw"], tmp_path / "ds", low).rejected == {"too-many-pixels": 1}
    reads.clear()
    assert ingest([tmp_path / "raw"], tmp_path / "ds", low).scanned == 0  # the same cap
    assert reads == []
    assert ingest([tmp_path / "raw"], tmp_path / "ds", OPTIONS).accepted == 1


# Rows in the dataset the next two tests add to: enough that what the driver holds per
# row outweighs what it holds whatever the dataset's size.
LARGE = 20_000


@pytest.fixture
def large_dataset(tmp_path, load_benchmark) -> tuple[Path, Path, pa.Table]:
    """(a folder of 3 new captures, a dataset of LARGE tagged captures, its samples as
    read): the manifest in several row groups, so that it reads in several chunks."""
    made = load_benchmark("manifest_read")
    dataset = Dataset(tmp_path / "ds")
    dataset.manifests.mkdir(parents=True)
    pq.write_table(made.samples(LARGE, tagged=True), dataset.samples_manifest, row_group_size=7000)
    manifest.write_manifest(dataset.shards_manifest, made.shards(LARGE))
    options = {"split": {"train": 0.8, "val": 0.1, "test": 0.1}, "keep_gps": False}
    dataset.write_info(initial_info("campaign", options))
    raw = tmp_path / "raw"
    for number in range(3):
        write_capture(raw, CaptureSpec(f"new-{number}.jpg", 64, 48, seed=number))
    return raw, dataset.root, manifest.read_manifest(dataset.samples_manifest, manifest.SAMPLES)


def test_adding_to_a_large_dataset_rewrites_its_manifest_as_concatenated_and_sorted(
    large_dataset,
):
    raw, ds, before = large_dataset
    assert before["key"].num_chunks > 1
    summary = ingest([raw], ds, IngestOptions(workers=1, burst_gap=0))
    assert summary.accepted == 3
    written = manifest.read_manifest(Dataset(ds).samples_manifest, manifest.SAMPLES)
    run = Dataset(ds).read_info()["runs"][-1]["run_id"]
    new = written.filter(pc.equal(written["ingest_run"], run)).to_pylist()
    # What the commit made before it sorted column by column: the same bytes.
    rows = pa.concat_tables([before, manifest.rows_to_table(new, manifest.SAMPLES)])
    expected = rows.sort_by([("shard", "ascending"), ("key", "ascending")])
    manifest.write_manifest(ds / "expected.parquet", expected)
    assert Dataset(ds).samples_manifest.read_bytes() == (ds / "expected.parquet").read_bytes()


def test_adding_to_a_large_dataset_holds_its_rows_about_once(large_dataset):
    """The driver's Arrow memory at its peak: about one copy of the manifest's rows (it
    reads them whole), not the two a sort beside the rows it sorts takes, nor the file
    pre-read beside them."""
    raw, ds, before = large_dataset
    script = (
        "import sys, pyarrow as pa\n"
        "from rainbench.ingest import IngestOptions, ingest\n"
        "ingest([sys.argv[1]], sys.argv[2], IngestOptions(workers=1))\n"
        "print(pa.default_memory_pool().max_memory())\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", script, str(raw), str(ds)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert int(found.stdout.split()[-1]) < 1.4 * before.nbytes
