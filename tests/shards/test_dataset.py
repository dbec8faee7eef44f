"""A dataset directory: dataset.json read as untrusted; the folder a writer may make
a dataset in; the writers' lock."""

import errno
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from rainbench.demo.captures import CaptureSpec, write_capture
from rainbench.ingest import IngestOptions, ingest
from rainbench.shards.dataset import OWN_NAMES, Dataset, DatasetError, initial_info, writing


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"name": "ds", "counts": ', "cannot read it: not JSON"),
        (b"\xff\xfe\x00", "cannot read it: not JSON"),
        (b'["a", "list"]', "not an object"),
        (b'{"name": "x\\u0000y"}', "its name is not one line of text"),
        (b'{"name": "a\\nb"}', "its name is not one line of text"),
        (b'{"name": {"a": 1}}', "its name is not one line of text"),
        (b'{"name": "ds", "counts": [1]}', "its counts are not an object"),
        (b"[" * 100_000 + b"]" * 100_000, r"cannot read it: not JSON \(nested too deep\)"),
        (b"{}", "it has no counts"),
        (b'{"counts": {}}', "its runs are not a list of runs"),
        (b'{"counts": {}, "runs": [{"labels": null}]}', "each with its run_id"),
        (b'{"counts": {}, "runs": [{"run_id": "r", "labels": "x"}]}', "its runs are not"),
        (b'{"counts": {}, "runs": [], "pair_runs": {}}', "its pair_runs are not a list"),
        (b'{"counts": {}, "runs": [], "pair_runs": [{"run_id": "r"}]}', "and splits"),
        (b'{"counts": {}, "runs": [], "options": []}', "its options are not an object"),
        (b'{"counts": {}, "runs": [], "options": {"keep_gps": "no"}}', "keep_gps is not"),
        (b'{"counts": {}, "runs": [], "options": {"split": {"train": "1"}}}', "option split"),
        (b'{"counts": {}, "runs": [], "options": {"split": {"test": 0}}}', "option split"),
        (b'{"counts": {}, "runs": [], "options": {"split": {"../x": 1}}}', "option split"),
    ],
)
def test_a_dataset_json_that_is_no_json_object_is_one_line(tmp_path, content, message):
    (tmp_path / "dataset.json").write_bytes(content)
    with pytest.raises(DatasetError, match=message) as caught:
        Dataset(tmp_path).read_info()
    assert "\n" not in str(caught.value)


def test_no_dataset_json_is_not_a_dataset(tmp_path):
    with pytest.raises(DatasetError, match="not a rainbench dataset"):
        Dataset(tmp_path).read_info()


def test_a_first_ingest_interrupted_before_it_committed_says_to_run_it_again(tmp_path):
    # Its journal is there, dataset.json not yet: not "no dataset", but how to finish it.
    (tmp_path / ".ingest").mkdir()
    (tmp_path / ".ingest" / "run.json").write_text("{}")
    with pytest.raises(DatasetError) as caught:
        Dataset(tmp_path).read_info()
    assert str(caught.value) == (
        f"{tmp_path} is not a dataset yet: an ingest into it was interrupted before its "
        "first commit; run the same ingest again to finish it"
    )


def test_a_dataset_named_from_inside_its_folder_takes_that_folders_name(tmp_path, monkeypatch):
    (tmp_path / "rain" / "sub").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "rain" / "sub")
    assert Dataset(Path(".")).folder_name == "sub"
    assert Dataset(Path("..")).folder_name == "rain"
    assert Dataset(Path("../sub/")).folder_name == "sub"


def test_a_dataset_named_by_a_folder_with_a_line_break_keeps_one_line():
    assert initial_info("rain\nfall", {})["name"] == "rain_fall"


def _photos(root):
    """A folder of somebody's photos."""
    write_capture(root, CaptureSpec("holiday.jpg", 64, 48))
    (root / "notes.txt").write_text("mine")
    return root


def _listing(root) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in root.iterdir()}


@pytest.mark.parametrize("how", ["ingest", "import-paired"])
def test_a_folder_of_other_files_is_refused_and_left_as_it_was(tmp_path, how):
    raw = _photos(tmp_path / "raw")
    photos = _photos(tmp_path / "photos")
    before = _listing(photos)
    message = r"photos is not empty and not a rainbench dataset \(it holds holiday.jpg, notes.txt\)"
    with pytest.raises(DatasetError, match=message) as caught:
        if how == "ingest":
            ingest([raw], photos, IngestOptions(workers=1))
        else:
            with writing(photos, must_exist=False):  # what import-paired writes under
                pass
    assert "\n" not in str(caught.value)
    assert _listing(photos) == before


def test_a_file_is_not_a_folder(tmp_path):
    raw = _photos(tmp_path / "raw")
    (tmp_path / "mk.py").write_text("print()")
    with pytest.raises(DatasetError, match=r"mk\.py is a file, not a folder"):
        ingest([raw], tmp_path / "mk.py", IngestOptions(workers=1))
    with (
        pytest.raises(DatasetError, match=r"mk\.py is a file, not a folder"),
        writing(tmp_path / "mk.py", must_exist=False),
    ):
        pass
    assert (tmp_path / "mk.py").read_text() == "print()"


def test_a_folder_of_rainbench_files_only_is_written_to(tmp_path):
    """What a first ingest killed before dataset.json leaves (or any of rainbench's own
    names) is the start of a dataset; an empty folder too."""
    started = tmp_path / "started"
    folders = {"manifests", "shards", "taggers", ".ingest"}
    for name in folders:
        (started / name).mkdir(parents=True)
    for name in OWN_NAMES - folders - {"dataset.json"}:
        (started / name).write_bytes(b"")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".DS_Store").write_bytes(b"")  # a file manager's, hidden
    for folder in ("started", "empty", "new/deeper"):
        with Dataset(tmp_path / folder).lock():
            assert (tmp_path / folder / ".lock").exists()


def test_a_dataset_may_hold_files_of_its_own(tmp_path):
    """A README beside dataset.json does not make a dataset somebody else's."""
    raw = _photos(tmp_path / "raw")
    ingest([raw], tmp_path / "ds", IngestOptions(workers=1))
    (tmp_path / "ds" / "README.md").write_text("our rain")
    ingest([raw], tmp_path / "ds", IngestOptions(workers=1))


def test_the_lock_names_its_holder_and_a_second_writer_hears_it(tmp_path):
    with Dataset(tmp_path).lock():
        holder = Dataset(tmp_path).writer()
        assert holder.startswith(f"pid {os.getpid()} (")
        with (
            pytest.raises(DatasetError, match=f"is writing to {tmp_path}: pid {os.getpid()} "),
            Dataset(tmp_path).lock(),
        ):
            pass
    assert Dataset(tmp_path).writer() is None


def test_a_holders_forked_child_keeps_no_hold_on_its_lock(tmp_path):
    # A DataLoader worker outlives its killed trainer by seconds: the lock must go with
    # the holder (here: the holder lets go while its child runs), not with the child.
    from rainbench.shards.dataset import writer_lock

    path = tmp_path / ".lock"
    wake, waker = os.pipe()
    with writer_lock(path):
        child = os.fork()
        if child == 0:
            try:
                os.read(wake, 1)  # until the test is done
            finally:
                os._exit(0)
    try:
        with writer_lock(path):
            assert Dataset(tmp_path).writer().startswith(f"pid {os.getpid()} (")
    finally:
        os.write(waker, b"x")
        os.waitpid(child, 0)


def test_a_lock_that_cannot_name_its_holder_says_where(tmp_path, file_size_limit):
    # On a full disk the holder's name is the lock's first write: the one line the
    # user sees names the lock, and the lock is free again.
    with pytest.raises(OSError) as full, file_size_limit(0), Dataset(tmp_path).lock():
        pass
    assert full.value.errno == errno.EFBIG and full.value.filename == str(tmp_path / ".lock")
    with Dataset(tmp_path).lock():
        assert Dataset(tmp_path).writer().startswith(f"pid {os.getpid()} (")


def test_a_writer_that_stores_nothing_leaves_no_folder_and_one_that_does_keeps_it(tmp_path):
    with Dataset(tmp_path / "a" / "b").lock():
        assert os.listdir(tmp_path / "a" / "b") == [".lock"]
    assert os.listdir(tmp_path) == []
    with Dataset(tmp_path / "a" / "b").lock():
        (tmp_path / "a" / "b" / "dataset.json").write_text("{}")
    assert sorted(os.listdir(tmp_path / "a" / "b")) == [".lock", "dataset.json"]
    (tmp_path / "old").mkdir()
    with Dataset(tmp_path / "old").lock():  # a folder that was there stays
        pass
    assert os.listdir(tmp_path / "old") == [".lock"]


def test_a_lock_its_holder_removed_is_not_taken(tmp_path, monkeypatch):
    # A process that opened the lock file as its holder removed it (with the folder it
    # made) would hold a lock no later writer sees: it is refused instead.
    from rainbench.shards import dataset as datasets

    path = tmp_path / ".lock"

    def removed_meanwhile(handle, mode, wait=0):
        path.unlink(missing_ok=True)
        return True

    monkeypatch.setattr(datasets, "_flock", removed_meanwhile)
    with (
        pytest.raises(datasets.LockHeld, match="has just removed the folder"),
        datasets.writer_lock(path),
    ):
        pass


def test_a_store_lock_names_its_writer_unless_left_here_by_the_dead(tmp_path, monkeypatch):
    from rainbench.shards import dataset as datasets

    monkeypatch.setattr(Dataset, "url", property(lambda self: "s3://lab/ds"))
    elsewhere = {"host": "node-7", "pid": 42, "command": "rainbench ingest raw\n--out x"}
    monkeypatch.setattr(datasets, "_lock_holder", lambda url: {**elsewhere, "since": "today"})
    assert Dataset(tmp_path).writer() == (
        "host node-7, pid 42 (rainbench ingest raw?--out x), since today"
    )
    monkeypatch.setattr(datasets, "_left_here_by_the_dead", lambda holder: True)
    assert Dataset(tmp_path).writer() is None
    monkeypatch.setattr(datasets, "_lock_holder", lambda url: None)
    assert Dataset(tmp_path).writer() is None


def _run_entry(number: int) -> dict:
    """An ingest run's entry in dataset.json as large as they come: every rejection
    reason counted, a label sheet, two inputs."""
    reasons = ("empty", "not-an-image", "truncated", "corrupt", "too-many-pixels")
    reasons += ("corrupt-exif", "gps-uncertain", "duplicate", "unsupported-format")
    reasons += ("unreadable", "not-a-file", "link-outside", "changed-during-ingest")
    return {
        "run_id": f"20261205T093248Z-{number:06x}",
        "started_at": "2026-12-05T09:32:48.448663+00:00",
        "inputs": ["/srv/lab/captures/2026-12-05/camera-3", "/srv/lab/captures/extra"],
        "layer": "rainy",
        "shard_bytes": 1_000_000_000,
        "near_dup_bits": 8,
        "max_pixels": 250_000_000,
        "tool_version": "0.1.0",
        "burst_gap": 2.0,
        "labels": {"path": "/srv/lab/labels/camera-3.csv", "sha256": "a" * 64, "applied": True},
        "versions": {
            "numpy": "2.4.6",
            "scipy": "1.17.1",
            "pillow": "13.0.0",
            "pillow-heif": "1.9.0",
            "rawpy": "0.28.0",
            "av": "18.1.0",
        },
        "finished_at": "2026-12-05T09:32:49.935517+00:00",
        "accepted": 1200,
        "duplicates": 3,
        "near_duplicates": 40,
        "unchanged": 0,
        "rejected": dict.fromkeys(reasons, 7),
    }


def test_a_dataset_json_of_twenty_thousand_runs_is_read(tmp_path):
    """dataset.json grows by one entry per ingest run: a lab's years of them fit."""
    info = initial_info("lab", {"split": {"train": 0.8, "val": 0.1, "test": 0.1}})
    info["runs"] = [_run_entry(number) for number in range(20_000)]
    Dataset(tmp_path).write_info(info)
    assert len(Dataset(tmp_path).read_info()["runs"]) == 20_000


def test_a_dataset_json_past_the_cap_is_refused_unread(tmp_path):
    pad = b"x" * (32 << 20)
    (tmp_path / "dataset.json").write_bytes(b'{"counts": {}, "runs": [], "pad": "' + pad + b'"}')
    with pytest.raises(DatasetError, match="cannot read it: larger than 32 MiB"):
        Dataset(tmp_path).read_info()


@pytest.mark.parametrize("name", ["manifests", "manifests/samples.parquet", "dataset.json"])
def test_a_dataset_file_linked_outside_is_refused_and_left_alone(tmp_path, name):
    raw = _photos(tmp_path / "raw")
    ds = tmp_path / "l1" / "ds"
    ingest([raw], ds, IngestOptions(workers=1))
    outside = tmp_path / "elsewhere"
    (ds / name).rename(outside)
    (ds / name).symlink_to(outside)
    before = {path: path.stat().st_mtime_ns for path in [outside, *outside.rglob("*")]}
    with pytest.raises(DatasetError, match="leads outside the dataset; refused"):
        Dataset(ds).read_info()
        pq.read_table(Dataset(ds).samples_manifest)  # what verify, tag, stats read
    with pytest.raises(DatasetError, match="leads outside the dataset; refused"):
        ingest([raw], ds, IngestOptions(workers=1))
    assert {path: path.stat().st_mtime_ns for path in before} == before


@pytest.mark.parametrize("name", ["manifests", "manifests/samples.parquet", "dataset.json"])
def test_a_dataset_file_that_is_a_link_loop_is_refused_not_read_as_missing(tmp_path, name):
    raw = _photos(tmp_path / "raw")
    ds = tmp_path / "ds"
    ingest([raw], ds, IngestOptions(workers=1))
    if (ds / name).is_dir():
        shutil.rmtree(ds / name)
    else:
        (ds / name).unlink()
    (ds / name).symlink_to(name.rsplit("/", 1)[-1])
    with pytest.raises(DatasetError, match="cannot follow its links"):
        Dataset(ds).read_info()
        pq.read_table(Dataset(ds).samples_manifest)
    with pytest.raises(DatasetError, match="cannot follow its links"):
        ingest([raw], ds, IngestOptions(workers=1))


@pytest.mark.parametrize("name", ["shards/train", "taggers", ".ingest", ".lock"])
def test_a_writer_refuses_a_dataset_whose_own_folders_lead_outside(tmp_path, name):
    """A writer makes a new shard's path from its split: a split folder linked out of
    the dataset is refused before anything is written, as are the other names a writer
    makes or replaces."""
    raw = _photos(tmp_path / "raw")
    ds = tmp_path / "ds"
    ingest([raw], ds, IngestOptions(workers=1))
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    if (ds / name).is_dir():
        shutil.rmtree(ds / name)
    (ds / name).unlink(missing_ok=True)
    (ds / name).symlink_to(outside)
    with pytest.raises(DatasetError, match=f"ds/{name} leads outside the dataset; refused"):
        ingest([_photos(tmp_path / "more")], ds, IngestOptions(workers=1))
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["/usr/bin/rainbench", "ingest", "raw"], "rainbench ingest raw"),
        (["/src/rainbench/__main__.py", "ingest", "raw"], "python -m rainbench ingest raw"),
        (["-c", "x"], "python -c x"),
    ],
)
def test_the_lock_names_the_command_as_it_was_typed(tmp_path, monkeypatch, argv, command):
    # `python -m rainbench` puts the package's __main__.py in argv[0]: named as typed.
    monkeypatch.setattr("sys.argv", argv)
    with Dataset(tmp_path).lock():
        assert Dataset(tmp_path).writer() == f"pid {os.getpid()} ({command})"
