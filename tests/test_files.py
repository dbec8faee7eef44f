"""Atomic replacement that leaves nothing behind when it fails, and file hashes."""

import errno
import hashlib
import os
from pathlib import Path

import pytest

from rainbench import files as files_module
from rainbench.files import file_sha256, leads_inside, write_atomic


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

    monkeypatch.setattr(files_module.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(path, b"new")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["file.json"]


def test_a_failed_write_names_the_file_it_was_writing(tmp_path, monkeypatch):
    """A write's own OSError (a full disk, a file-size limit) names no file; the one
    line the user sees must say which."""
    path = tmp_path / "file.json"

    def disk_full(fd):  # as a network file system reports a write that found no space
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files_module.os, "fsync", disk_full)
    with pytest.raises(OSError) as failed:
        write_atomic(path, b"new")
    assert failed.value.filename == str(path) and failed.value.errno == errno.ENOSPC
    assert os.listdir(tmp_path) == []


def test_a_write_refused_at_its_temporary_names_the_file_asked_for():
    # The temporary file is rainbench's own: the user named the file it replaces. (No
    # file can be made in /proc, by root too.)
    path = Path("/proc/report.json")
    with pytest.raises(OSError) as failed:
        write_atomic(path, b"new")
    assert failed.value.filename == str(path)


def test_file_sha256_is_the_digest_of_the_bytes(tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(bytes(range(256)) * 40_000)  # more than one 4 MiB read
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_leads_inside_follows_every_link_and_takes_a_loop_as_it_stands(tmp_path):
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    (root / "sub").mkdir(parents=True)
    elsewhere.mkdir()
    (root / "sub" / "in").symlink_to(root / "file")
    (root / "out").symlink_to(elsewhere / "file")
    (root / "up").symlink_to("..")
    (root / "loop").symlink_to("loop")
    (tmp_path / "alias").symlink_to(root)
    assert leads_inside(root / "missing", root) and leads_inside(root, root)
    assert leads_inside(root / "sub" / "in", root) and leads_inside(root / "loop", root)
    assert leads_inside(tmp_path / "alias" / "file", root)  # the root reached by a link
    assert leads_inside(root / "file", tmp_path / "alias")
    assert not leads_inside(root / "out", root) and not leads_inside(root / "up" / "x", root)
    assert not leads_inside(root / ".." / "root2", root)
