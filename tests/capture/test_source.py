"""Reading from the raw folder: only regular files are read, never past the size the
open file reports, and every name maps to storable text and back."""

import io
import os
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rainbench.capture.reject import CaptureRejected, Reason
from rainbench.capture.source import (
    SourceFile,
    name_on_disk,
    name_text,
    open_regular,
    read_capture,
    read_regular,
)

# Any file name a POSIX file system allows: bytes other than NUL and "/".
NAMES = st.binary(min_size=1, max_size=40).filter(lambda b: b"/" not in b and b"\0" not in b)


@given(NAMES)
def test_every_name_becomes_utf8_text_that_maps_back_to_it(raw):
    name = os.fsdecode(raw)
    text = name_text(name)
    text.encode("utf-8")  # storable: raises for a lone surrogate
    assert os.fsencode(name_on_disk(text)) == raw  # so no two names share a text


@given(st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\\/\0")))
def test_utf8_names_without_backslashes_are_stored_as_they_are(name):
    assert name_text(name) == name


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"bad\xff.jpg", r"bad\xff.jpg"),
        (rb"lit\xff.jpg", r"lit\\xff.jpg"),  # a real backslash that would read as an escape
        (rb"a\b.jpg", r"a\b.jpg"),
        (b"\\\xe9.jpg", r"\\\xe9.jpg"),
        ("é.jpg".encode(), "é.jpg"),
    ],
)
def test_how_names_are_written(raw, text):
    assert name_text(os.fsdecode(raw)) == text


def _refused(path, **kwargs) -> CaptureRejected:
    with pytest.raises(CaptureRejected) as refused:
        read_regular(path, **kwargs)
    return refused.value


def test_a_regular_file_is_read_and_its_size_checked(tmp_path):
    path = tmp_path / "a.jpg"
    path.write_bytes(b"abc")
    assert read_regular(path) == read_regular(path, size=3) == b"abc"
    assert _refused(path, size=2).reason == Reason.CHANGED


def test_special_files_are_refused_without_being_opened(tmp_path, monkeypatch):
    os.mkfifo(tmp_path / "pipe.jpg")  # opening it for reading would block
    (tmp_path / "dir.jpg").mkdir()
    monkeypatch.chdir(tmp_path)  # a socket's path must be short
    with socket.socket(socket.AF_UNIX) as server:
        server.bind("sock.jpg")
        for name, kind in [
            ("pipe.jpg", "a FIFO"),
            ("dir.jpg", "a directory"),
            ("sock.jpg", "a socket"),
        ]:
            refused = _refused(tmp_path / name)
            assert refused.reason == Reason.NOT_A_FILE
            assert refused.message == f"not a regular file: {kind}"


def test_symlinks_lead_only_to_regular_files_inside_the_root(tmp_path):
    root = tmp_path / "raw"
    (root / ".store").mkdir(parents=True)
    (root / ".store" / "real.jpg").write_bytes(b"inside")
    (tmp_path / "elsewhere.jpg").write_bytes(b"outside")
    os.mkfifo(root / "pipe")
    links = {
        "inside.jpg": ".store/real.jpg",
        "outside.jpg": "../elsewhere.jpg",
        "zero.jpg": "/dev/zero",
        "to_pipe.jpg": "pipe",
        "loop.jpg": "loop.jpg",
        "dangling.jpg": "missing.jpg",
    }
    for name, target in links.items():
        (root / name).symlink_to(target)
    assert read_regular(root / "inside.jpg", within=root) == b"inside"
    assert _refused(root / "outside.jpg", within=root).reason == Reason.LINK_OUTSIDE
    assert _refused(root / "zero.jpg", within=root).reason == Reason.LINK_OUTSIDE
    assert read_regular(root / "outside.jpg") == b"outside"  # no root given: any regular file
    assert (
        _refused(root / "zero.jpg").message == "not a regular file: a symlink to a character device"
    )
    assert _refused(root / "to_pipe.jpg", within=root).reason == Reason.NOT_A_FILE
    for name in ("loop.jpg", "dangling.jpg"):
        assert _refused(root / name, within=root).reason == Reason.UNREADABLE


def test_a_file_that_grows_or_shrinks_while_read_is_changed(tmp_path, monkeypatch):
    path = tmp_path / "a.jpg"
    real_read = os.pread

    def read_after(change):
        def read(fd, n, offset):
            change()
            monkeypatch.setattr(os, "pread", real_read)
            return real_read(fd, n, offset)

        return read

    for change, what in [
        (lambda: path.write_bytes(b"abcdef"), "grew"),
        (lambda: os.truncate(path, 1), "shrank"),
    ]:
        path.write_bytes(b"abc")
        monkeypatch.setattr(os, "pread", read_after(change))
        refused = _refused(path)
        assert (refused.reason, refused.message) == (
            Reason.CHANGED,
            f"the file {what} while being read",
        )


def test_a_source_file_with_an_undecodable_name_is_found(tmp_path):
    (tmp_path / os.fsdecode(b"bad\xff.jpg")).write_bytes(b"bytes")
    source = SourceFile(name_text(tmp_path.as_posix()), r"bad\xff.jpg", 5, 0)
    assert read_capture(source) == b"bytes"


def test_an_opened_capture_reads_like_its_bytes_with_the_edits_made(tmp_path):
    data = bytes(range(256)) * 700  # several of the windows small reads are served from
    path = tmp_path / "clip.mp4"
    path.write_bytes(data)
    edits = [(10, b"AB"), (70_000, b"free"), (11, b"xyz"), (len(data) - 2, b"!!")]
    expected = bytearray(data)
    for at, replacement in edits:  # in order: where two overlap, the later wins
        expected[at : at + len(replacement)] = replacement
    with open_regular(path, len(data)) as capture:
        edited = capture.edited(edits)
        assert edited.read_all() == bytes(expected) and capture.read_all() == data
        assert edited[10:14] == b"Axyz" and edited[-1] == ord("!") and len(edited) == len(data)
        assert edited[65_530:70_010] == bytes(expected[65_530:70_010])
        assert edited.find(b"free", 60_000, 80_000) == 70_000
        assert edited.find(b"free", 0, 70_003) == -1
        assert edited.seek(-3, io.SEEK_END) == len(data) - 3
        assert edited.read() == bytes(expected[-3:]) and edited.read(5) == b""
        assert capture.edited([]) is capture


def test_a_capture_written_to_while_open_is_changed(tmp_path):
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"abcdef")
    with open_regular(path) as capture:
        capture.check_unchanged()
        with open(path, "r+b") as handle:  # the same size, other bytes, a later time
            handle.write(b"X")
        os.utime(path, ns=(0, 0))
        with pytest.raises(CaptureRejected) as refused:
            capture.check_unchanged()
        assert refused.value.reason == Reason.CHANGED
        os.truncate(path, 2)
        with pytest.raises(CaptureRejected, match="shrank"):
            capture.pread(0, 6)


def test_a_span_too_large_to_hold_is_refused_not_a_traceback(tmp_path, monkeypatch):
    # A container's metadata walk slices a span whole (a huge `free` box): on a small
    # worker that may not fit.
    (tmp_path / "clip").write_bytes(b"x" * 1000)

    def no_memory(fd, length, offset):
        raise MemoryError

    with open_regular(tmp_path / "clip") as capture:
        monkeypatch.setattr(os, "pread", no_memory)
        with pytest.raises(CaptureRejected) as refused:
            capture[0:900]
    assert refused.value.reason == Reason.UNREADABLE
    assert "too large to hold in memory" in refused.value.message


def test_an_object_whose_size_changed_since_the_listing_is_changed(monkeypatch):
    """Read from a store (the spool): the size read, not a closed file's error."""
    from rainbench.capture import source as source_module

    monkeypatch.setattr(source_module, "open_stream", lambda url: io.BytesIO(b"x" * 15))
    listed = SourceFile("s3://bucket/raw", "a.jpg", size=5, mtime_ns=0)
    with pytest.raises(CaptureRejected) as refused:
        read_capture(listed)
    assert refused.value.reason == Reason.CHANGED
    assert refused.value.message == "the object changed size since the scan (5 → 15)"
