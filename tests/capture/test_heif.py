"""HEIC captures: encoded here with pillow-heif's bundled x265, as a phone writes them."""

import importlib.util
import io
import sys

import numpy as np
import pytest
from PIL import Image

from rainbench.capture.decode import decode_capture
from rainbench.capture.formats import sniff
from rainbench.capture.heif import decode_heic
from rainbench.capture.reject import CaptureRejected, Reason


def _can_encode() -> bool:
    if importlib.util.find_spec("pillow_heif") is None:
        return False
    import pillow_heif

    return bool(pillow_heif.libheif_info().get("HEIF"))


needs_encoder = pytest.mark.skipif(
    not _can_encode(), reason="needs pillow-heif with an HEVC encoder to build test files"
)

SENSOR = (320, 240)
# Turns (multiples of 90° counter-clockwise) that store an upright scene the way a
# phone held that way records it.
STORED_TURNS = {1: 0, 3: 2, 6: 1, 8: -1}
# Orientation=1 as a big-endian IFD entry, the byte order Pillow writes EXIF in.
_ORIENTATION_1 = b"\x01\x12\x00\x03\x00\x00\x00\x01\x00\x01\x00\x00"


def scene(width: int, height: int) -> Image.Image:
    """A smooth upright scene: red square top left, blue top right."""
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    rgb = np.stack([70 + 60 * x, 90 + 30 * y, 120 - 60 * x], axis=-1)
    rgb[10:50, 10:50] = (230, 20, 20)
    rgb[10:50, width - 50 : width - 10] = (20, 20, 230)
    return Image.fromarray(rgb.astype(np.uint8))


def make_heic(orientation: int = 1, exif: bool = True) -> bytes:
    """A HEIC of the test scene held per `orientation`. pillow-heif turns the EXIF
    Orientation into an `irot`/`imir` transform and keeps the tag, as iPhones do."""
    import pillow_heif

    width, height = SENSOR
    turns = STORED_TURNS[orientation]
    upright = scene(height, width) if turns % 2 else scene(width, height)
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(np.asarray(upright), turns)))
    tags = Image.Exif()
    if exif:
        tags[0x010F], tags[0x0110], tags[0x0112] = "RainBench", "TestPhone 1", orientation
        tags.get_ifd(0x8769)[0x9003] = "2026:05:04 17:30:12"
    out = io.BytesIO()
    pillow_heif.from_pillow(stored).save(out, quality=90, exif=tags.tobytes() if exif else None)
    return out.getvalue()


def assert_upright(image: Image.Image) -> None:
    """The red square is top left and the blue one top right."""
    rgb = np.asarray(image.convert("RGB"), dtype=float)
    side = max(image.size) // 16  # the squares span 10/320..50/320 of the longest side
    top_left = rgb[side : 2 * side, side : 2 * side].mean(axis=(0, 1))
    top_right = rgb[side : 2 * side, -2 * side : -side].mean(axis=(0, 1))
    assert top_left[0] > top_left[2] + 60, f"no red top left: {top_left}"
    assert top_right[2] > top_right[0] + 60, f"no blue top right: {top_right}"


@needs_encoder
@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_turned_once_by_irot(orientation):
    data = make_heic(orientation)
    assert (b"irot" in data) == (orientation != 1)
    decoded = decode_capture(data, sniff(data, "IMG_0001.HEIC"))
    upright = SENSOR[::-1] if orientation in (6, 8) else SENSOR
    assert (decoded.width, decoded.height) == upright
    assert decoded.preview.size == upright and decoded.preview.mode == "RGB"
    assert_upright(decoded.preview)
    assert decoded.mode == "RGB" and decoded.extra_members == {}


@needs_encoder
def test_exif_comes_back_with_orientation_reset():
    exif = decode_heic(make_heic(6), 10**6).exif
    assert (exif[0x010F], exif[0x0110]) == ("RainBench", "TestPhone 1")
    assert exif.get_ifd(0x8769)[0x9003] == "2026:05:04 17:30:12"
    assert exif[0x0112] == 1  # irot already turned the pixels


@needs_encoder
def test_exif_orientation_without_irot_is_ignored():
    # A writer that sets only the EXIF tag: HEIF readers ignore it, and so do we.
    data = make_heic(1)
    assert data.count(_ORIENTATION_1) == 1 and b"irot" not in data
    data = data.replace(_ORIENTATION_1, _ORIENTATION_1[:9] + b"\x06\x00\x00")
    decoded = decode_heic(data, 10**6)
    assert (decoded.width, decoded.height) == SENSOR
    assert_upright(decoded.preview)


@needs_encoder
def test_without_exif():
    decoded = decode_heic(make_heic(exif=False), 10**6)
    assert len(decoded.exif) == 0 and (decoded.width, decoded.height) == SENSOR


@needs_encoder
@pytest.mark.parametrize("keep", [0.6, 0.02], ids=["in-image-data", "in-metadata"])
def test_truncated_heic_is_refused(keep):
    data = make_heic()
    with pytest.raises(CaptureRejected) as refused:
        decode_heic(data[: int(len(data) * keep)], 10**6)
    assert refused.value.reason == Reason.TRUNCATED


@needs_encoder
def test_garbage_after_the_header_is_corrupt():
    data = make_heic()
    ftyp_end = int.from_bytes(data[:4], "big")
    garbage = data[:ftyp_end] + np.random.default_rng(7).integers(0, 256, 4000, np.uint8).tobytes()
    with pytest.raises(CaptureRejected) as refused:
        decode_heic(garbage, 10**6)
    assert refused.value.reason == Reason.CORRUPT


@needs_encoder
def test_pixel_cap():
    with pytest.raises(CaptureRejected) as refused:
        decode_heic(make_heic(), max_pixels=320 * 239)
    assert refused.value.reason == Reason.TOO_MANY_PIXELS


def test_missing_pillow_heif_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # makes the import fail
    with pytest.raises(CaptureRejected) as refused:
        decode_heic(b"\x00\x00\x00\x18ftypheic", 10**6)
    assert refused.value.reason == Reason.UNSUPPORTED
    assert "pip install 'rainbench[heic]'" in refused.value.message
