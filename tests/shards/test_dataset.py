"""A dataset directory: dataset.json read as untrusted; the folder a writer may make
a dataset in; the writers' lock."""

import os

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
