"""Probing one capture: whatever a file holds, `probe` returns a refusal or what it
found, never an exception, and reads no more of a file than it may accept."""

from pathlib import Path

import pandas as pd
import pytest

from rainbench.capture import probe as probe_module
from rainbench.capture.probe import probe, probe_many
from rainbench.capture.reject import STICKY, Reason
from rainbench.capture.source import CaptureFile, SourceFile, max_still_bytes
from rainbench.demo.captures import CaptureSpec, write_capture
from rainbench.ingest import IngestOptions, ingest


def _source(path: Path) -> SourceFile:
    stat = path.stat()
    return SourceFile(path.parent.as_posix(), path.name, stat.st_size, stat.st_mtime_ns)


def _failing_decoder(monkeypatch, fails_on: bytes = b"") -> None:
    """A decoder that fails, on files holding `fails_on`, as Pillow did on a TIFF whose
    strip offsets were text (found by fuzzing)."""
    decode = probe_module.decode_capture

    def decode_capture(data: bytes, *args, **kwargs):
        if fails_on in data:
            raise TypeError("'str' object cannot be interpreted as an integer\nmore")
        return decode(data, *args, **kwargs)

    monkeypatch.setattr(probe_module, "decode_capture", decode_capture)


def test_a_decoder_failing_unexpectedly_is_a_refusal_tried_again(tmp_path, monkeypatch):
    _failing_decoder(monkeypatch)
    write_capture(tmp_path, CaptureSpec("a.jpg", 64, 48))
    result = probe(_source(tmp_path / "a.jpg"))
    assert result.reason == Reason.UNREADABLE and Reason.UNREADABLE not in STICKY
    assert result.message == (
        "unexpected TypeError while reading it: 'str' object cannot be interpreted as an integer"
    )


def test_an_ingest_goes_on_past_a_file_a_decoder_fails_on(tmp_path, monkeypatch):
    # It stopped: the exception ended the whole run, the first ingest left unfinished.
    raw = tmp_path / "raw"
    write_capture(raw, CaptureSpec("good.png", 64, 48, fmt="png", seed=1))
    write_capture(raw, CaptureSpec("bad.jpg", 64, 48, seed=2))
    _failing_decoder(monkeypatch, fails_on=(raw / "bad.jpg").read_bytes()[-64:])
    ingest([raw], tmp_path / "ds", IngestOptions(workers=1))
    manifests = tmp_path / "ds" / "manifests"
    assert pd.read_parquet(manifests / "samples.parquet").source_path.tolist() == ["good.png"]
    rejects = pd.read_parquet(manifests / "rejects.parquet")
    assert rejects[["source_path", "reason"]].values.tolist() == [["bad.jpg", "unreadable"]]


def test_a_still_larger_than_any_picture_within_the_cap_is_refused_unread(tmp_path, monkeypatch):
    # A still is read whole; a file of GBs with a picture's signature would fill memory.
    path = tmp_path / "huge.png"
    write_capture(tmp_path, CaptureSpec("huge.png", 16, 16, fmt="png"))
    with path.open("r+b") as file:
        file.truncate(max_still_bytes(1000) + 1)  # sparse: takes no disk
    monkeypatch.setattr(CaptureFile, "read_all", lambda self: pytest.fail("read whole"))
    for result in (
        probe(_source(path), max_pixels=1000),
        *probe_many([_source(path)], max_pixels=1000),
    ):
        assert result.reason == Reason.TOO_MANY_PIXELS
        assert result.message == (
            f"a still of {max_still_bytes(1000) + 1} bytes, more than a picture of 1000 pixels "
            "takes (16 bytes a pixel, 16 MiB besides); not read"
        )
