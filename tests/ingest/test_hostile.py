"""A hostile raw folder — special files, links leading anywhere, names that are not
UTF-8 — ends as recorded refusals and clean accepts: the run finishes, and a re-run
recognises every file it has seen."""

import json
import os
import socket
import subprocess
import sys

import pandas as pd
import pytest
from click.testing import CliRunner

from rainbench.cli import main
from rainbench.demo.captures import CaptureSpec, capture_bytes, write_capture
from rainbench.ingest import IngestOptions, ingest
from rainbench.shards.dataset import Dataset
from rainbench.shards.verify import verify

# Stored source_path → reason; the rest of the captures are accepted.
REFUSED = {
    "pipe.jpg": "not-a-file",
    "sock.jpg": "not-a-file",
    "to_pipe.jpg": "not-a-file",
    "folder_link.jpg": "not-a-file",
    "zero.jpg": "link-outside",
    "outside.jpg": "link-outside",
    "loop.jpg": "unreadable",
    "dangling.jpg": "unreadable",
}
ACCEPTED = {
    "good.jpg",
    "x.jpg/inner.jpg",  # a folder named like a capture is walked like any folder
    "inside.jpg",  # a link to a capture inside the root (a hidden folder, not walked)
    r"bad\xff.jpg",
    r"dir\xfe/inner.jpg",
    r"lit\\xff.jpg",  # the real name has one backslash: doubled, so it reads back
}


def _capture(folder, name: bytes, seed: int) -> None:
    write_capture(folder, CaptureSpec("capture.jpg", 160, 120, seed=seed))
    os.rename(folder / "capture.jpg", os.fsencode(folder) + b"/" + name)


@pytest.fixture
def hostile(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    for folder in ("x.jpg", ".store", os.fsdecode(b"dir\xfe")):
        (raw / folder).mkdir(parents=True)
    for seed, name in enumerate(
        [b"good.jpg", b"x.jpg/inner.jpg", b".store/real.jpg", b"bad\xff.jpg", b"dir\xfe/inner.jpg"]
    ):
        _capture(raw, name, seed)
    _capture(raw, rb"lit\xff.jpg", 9)
    _capture(tmp_path, b"elsewhere.jpg", 10)
    os.mkfifo(raw / "pipe.jpg")  # reading it would block for ever
    os.mkfifo(raw / "pipe")
    links = {
        "to_pipe.jpg": "pipe",
        "folder_link.jpg": "x.jpg",
        "zero.jpg": "/dev/zero",  # endless
        "outside.jpg": "../elsewhere.jpg",
        "loop.jpg": "loop.jpg",
        "dangling.jpg": "missing.jpg",
        "inside.jpg": ".store/real.jpg",
    }
    for name, target in links.items():
        (raw / name).symlink_to(target)
    monkeypatch.chdir(raw)  # a socket's path must be short
    server = socket.socket(socket.AF_UNIX)
    server.bind("sock.jpg")
    yield raw
    server.close()


def _ingest(raw, ds) -> dict:
    command = [sys.executable, "-m", "rainbench", "ingest", str(raw), "--out", str(ds)]
    result = subprocess.run(
        [*command, "-j", "2", "--no-progress", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(result.stdout)


def test_a_hostile_folder_ends_in_refusals_and_accepts_and_resumes(hostile, tmp_path):
    ds = tmp_path / "ds"
    first = _ingest(hostile, ds)
    rejects = pd.read_parquet(ds / "manifests" / "rejects.parquet")
    assert dict(zip(rejects.source_path, rejects.reason, strict=True)) == REFUSED
    samples = pd.read_parquet(ds / "manifests" / "samples.parquet")
    assert set(samples.source_path) == ACCEPTED
    assert first["accepted"] == len(ACCEPTED)
    assert verify(Dataset(ds)) == []

    again = _ingest(hostile, ds)
    # Every accepted file is recognised without being read; the refusals are retried.
    assert (again["accepted"], again["duplicates"], again["scanned"]) == (0, 0, len(REFUSED))
    assert sum(again["rejected"].values()) == len(REFUSED)
    assert set(pd.read_parquet(ds / "manifests" / "samples.parquet").source_path) == ACCEPTED


def test_a_file_that_grows_while_read_is_changed_then_taken_next_time(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    raw.mkdir()
    for seed, name in enumerate([b"growing.jpg", b"steady.jpg"]):
        _capture(raw, name, seed)
    growing = raw / "growing.jpg"
    real_read = os.pread
    grown = []

    def read(fd, n, offset):  # the camera is still writing it: it grows just as it is read
        if not grown and os.fstat(fd).st_ino == growing.stat().st_ino:
            grown.append(True)
            with open(growing, "ab") as handle:
                handle.write(bytes(16))
        return real_read(fd, n, offset)

    ds = tmp_path / "ds"
    with monkeypatch.context() as patch:
        patch.setattr(os, "pread", read)
        first = ingest([raw], ds, IngestOptions(workers=1))
    assert (first.accepted, first.rejected) == (1, {"changed-during-ingest": 1})
    second = ingest([raw], ds, IngestOptions(workers=1))
    assert (second.scanned, second.accepted, second.rejected) == (1, 1, {})
    assert not len(pd.read_parquet(ds / "manifests" / "rejects.parquet"))


def test_a_folder_that_cannot_be_listed_stops_the_run_in_one_line(tmp_path):
    """Skipped unsaid, as os.walk would, the captures under it would be lost. A path
    longer than PATH_MAX is one that no user, root included, can list."""
    raw = tmp_path / "raw"
    _capture(raw, b"good.jpg", 1)
    folder = os.open(raw, os.O_RDONLY)
    for depth in range(25):  # 25 × 201 bytes: past Linux's 4096
        name = f"{depth:02d}" + "d" * 198
        os.mkdir(name, dir_fd=folder)
        folder, parent = os.open(name, os.O_RDONLY, dir_fd=folder), folder
        os.close(parent)
    deep = os.open("deep.jpg", os.O_WRONLY | os.O_CREAT, dir_fd=folder)
    os.write(deep, capture_bytes(CaptureSpec("deep.jpg", 160, 120, seed=2)))
    os.close(deep)
    os.close(folder)
    ds = tmp_path / "ds"
    result = CliRunner().invoke(main, ["ingest", str(raw), "--out", str(ds), "--no-progress"])
    assert result.exit_code == 1
    [line] = result.output.splitlines()
    assert line.startswith(f"error: {raw}/00d") and line.endswith(
        ": cannot list this folder: File name too long"
    )
    assert not ds.exists()  # no interrupted run left for the next ingest to finish
