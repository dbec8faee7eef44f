"""Ingest's probe against mutated captures: a still of each format and videos, each
with a location, damaged at random — bits flipped, fields set to 0, 1 or all ones, cut,
runs inserted, deleted, repeated or zeroed. Whatever a mutant holds, `probe` refuses it
for a reason it checks for (never by its last resort for an unexpected exception) or
accepts it, and a mutant it accepts stores no
location that a reader finds: not Pillow's GPS directory, not the video's ISO 6709
point or a drone's subtitle.

A mutation campaign found the faults the tests beside each module now pin (2026-12-05);
this runs 200 mutants of each capture (seconds), from a fixed seed, so a failure names
its mutant and reproduces. `RAINBENCH_FUZZ=N` runs N of each instead.
"""

import io
import os
import random
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rainbench.capture.probe import probe, stored_capture
from rainbench.capture.source import SourceFile, open_capture
from rainbench.demo.captures import CaptureSpec, capture_bytes

av = pytest.importorskip("av", reason="videos need rainbench[video]")

MUTANTS = int(os.environ.get("RAINBENCH_FUZZ", "200"))
ZURICH = (47.3754, 8.5451, 420.0)
ISO6709 = b"+47.3754+008.5451/"
POSITIONS = b"GPS(8.5451,47.3754,420)"
GPS_IFD = 0x8825


def _still(fmt: str, name: str, needs: str | None = None) -> bytes:
    if needs:  # HEIC and RAW are optional extras
        pytest.importorskip(needs, reason=f"{fmt} needs {needs}")
    return capture_bytes(CaptureSpec(name, 64, 48, fmt=fmt, gps=ZURICH, seed=3))


def _video(container: str, subtitles: str | None = None) -> bytes:
    """Six frames of H.264, the ISO 6709 point in the container's metadata (or a
    subtitle track giving positions)."""
    buffer = io.BytesIO()
    metadata = {"location": ISO6709.decode(), "com.apple.quicktime.location.ISO6709": "x"}
    with av.open(buffer, "w", format=container) as output:
        output.metadata.update({} if subtitles else metadata)
        stream = output.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"g": "3"}
        track = output.add_mux_stream(subtitles) if subtitles else None
        if track is not None:
            track.time_base = Fraction(1, 1000)
        for index in range(6):
            picture = np.full((48, 64, 3), 10 + 30 * index, np.uint8)
            output.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
            if track is not None and index == 1:
                sample = POSITIONS
                if subtitles == "mov_text":
                    sample = len(POSITIONS).to_bytes(2, "big") + POSITIONS
                packet = av.Packet(sample)
                packet.stream, packet.pts, packet.dts, packet.duration = track, 0, 0, 100
                packet.time_base = track.time_base
                output.mux(packet)
        output.mux(stream.encode())
    return buffer.getvalue()


CAPTURES: dict[str, Callable[[], bytes]] = {
    "a.jpg": lambda: _still("jpeg", "a.jpg"),
    "a.png": lambda: _still("png", "a.png"),
    "a.tif": lambda: _still("tiff", "a.tif"),
    "a.webp": lambda: _still("webp", "a.webp"),
    "a.heic": lambda: _still("heic", "a.heic", "pillow_heif"),
    "a.dng": lambda: _still("dng", "a.dng", "rawpy"),
    "a.mov": lambda: _video("mov"),
    "a.mkv": lambda: _video("matroska"),
    "subtitles.mov": lambda: _video("mov", "mov_text"),
    "subtitles.mkv": lambda: _video("matroska", "subrip"),
}

_VALUES = (0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF)


def _mutant(data: bytes, rng: random.Random) -> bytes:
    """`data` damaged once, in one of the ways a bad card, a bad copy or a forger would."""
    at = rng.randrange(len(data))
    run = rng.choice((1, 4, 16, 64, 256))
    damage = rng.randrange(7)
    if damage == 0:
        flipped = bytearray(data)
        for _ in range(rng.choice((1, 2, 8))):
            flipped[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return bytes(flipped)
    if damage == 1:  # a size or count field set to an edge value
        width = rng.choice((1, 2, 4))
        value = rng.choice(_VALUES) & ((1 << 8 * width) - 1)
        field = value.to_bytes(width, rng.choice(("big", "little")))
        return data[:at] + field + data[at + width :]
    if damage == 2:
        return data[: max(at, 1)]
    if damage == 3:
        return data[:at] + rng.randbytes(run) + data[at:]
    if damage == 4:
        return data[:at] + data[at + run :]
    if damage == 5:
        start = rng.randrange(len(data))
        return data[:at] + data[start : start + run] + data[at:]
    return data[:at] + bytes(len(data[at : at + run])) + data[at + run :]


def _stored(path: Path) -> bytes:
    stat = path.stat()
    source = SourceFile(path.parent.as_posix(), path.name, stat.st_size, stat.st_mtime_ns)
    with open_capture(source) as capture:
        stored = stored_capture(capture, source, keep_gps=False).stored
        return stored if isinstance(stored, bytes) else stored.read_all()


def _location_left(stored: bytes, name: str) -> str | None:
    """The location a reader finds in `stored`, if any."""
    if name.endswith((".mov", ".mkv")):
        found = [trace for trace in (ISO6709, POSITIONS) if trace in stored]
        return found[0].decode() if found else None
    try:
        with Image.open(io.BytesIO(stored)) as image:
            gps = image.getexif().get_ifd(GPS_IFD)
    except Exception:  # a mutant Pillow cannot open has no GPS Pillow reads
        return None
    return f"GPS IFD {dict(gps)}" if gps.get(2) or gps.get(4) else None


@pytest.mark.parametrize("name", CAPTURES)
def test_probe_refuses_or_accepts_every_mutant_and_stores_no_location(name, tmp_path):
    original = CAPTURES[name]()
    rng = random.Random(f"rainbench fuzz {name}")
    for number in range(MUTANTS):
        path = tmp_path / f"{number}-{name}"
        path.write_bytes(_mutant(original, rng))
        stat = path.stat()
        source = SourceFile(tmp_path.as_posix(), path.name, stat.st_size, stat.st_mtime_ns)
        found = probe(source)
        # probe's last resort, for what no check foresaw, must not be what refuses it
        unforeseen = (found.message or "").startswith("unexpected ")
        assert not unforeseen, f"mutant {number} of {name}: {found.message}"
        if found.reason is None:
            left = _location_left(_stored(path), name)
            assert left is None, f"mutant {number} of {name} stored a location: {left}"
        path.unlink()
