"""A dataset directory: dataset.json read as untrusted, and atomic replacement that
leaves nothing behind when it fails."""

import os

import pytest

from rainbench.shards import dataset as dataset_module
from rainbench.shards.dataset import Dataset, DatasetError, write_atomic


def test_write_atomic_replaces_the_file(tmp_path):
    path = tmp_path / "a" / "file.json"
    write_atomic(path, b"one")
    write_atomic(path, b"two")
    assert path.read_bytes() == b"two" and os.listdir(path.parent) == ["file.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "file.json"
    write_atomic(path, b"old")

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(dataset_module.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(path, b"new")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["file.json"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"name": "ds", "counts": ', "cannot read it: not JSON"),
        (b"\xff\xfe\x00", "cannot read it: not JSON"),
        (b'["a", "list"]', "not an object"),
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
