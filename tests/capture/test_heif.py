"""HEIC captures: encoded by rainbench.demo with pillow-heif's bundled x265, as a phone
writes them."""

import sys
from datetime import datetime

import numpy as np
import pytest

from rainbench.capture.decode import decode_capture
from rainbench.capture.formats import sniff
from rainbench.capture.heif import decode_heic
from rainbench.capture.reject import CaptureRejected, Reason, for_want_of_library
from rainbench.demo.captures import CaptureSpec, capture_bytes, missing_writer, shows_upright

needs_encoder = pytest.mark.skipif(
    missing_writer("heic") is not None, reason=f"building test files: {missing_writer('heic')}"
)

SENSOR = (320, 240)
# Orientation=1 as a big-endian IFD entry, the byte order Pillow writes EXIF in.
_ORIENTATION_1 = b"\x01\x12\x00\x03\x00\x00\x00\x01\x00\x01\x00\x00"


def heic_spec(orientation: int = 1) -> CaptureSpec:
    """A HEIC from a phone held per `orientation`, its sensor SENSOR."""
    return CaptureSpec(
        "IMG_0001.HEIC",
        *SENSOR,
        fmt="heic",
        orientation=orientation,
        make="RainBench",
        model="TestPhone 1",
        captured_at=datetime(2026, 5, 4, 17, 30, 12),
        seed=5,
    )


@needs_encoder
@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_turned_once_by_irot(orientation):
    spec = heic_spec(orientation)
    data = capture_bytes(spec)
    assert (b"irot" in data) == (orientation != 1)
    decoded = decode_capture(data, sniff(data, spec.name))
    upright = SENSOR[::-1] if orientation in (6, 8) else SENSOR
    assert (decoded.width, decoded.height) == upright
    assert decoded.preview.size == upright and decoded.preview.mode == "RGB"
    assert shows_upright(decoded.preview, spec)
    assert decoded.mode == "RGB" and decoded.extra_members == {}


@needs_encoder
def test_exif_comes_back_with_orientation_reset():
    exif = decode_heic(capture_bytes(heic_spec(6)), 10**6).exif
    assert (exif[0x010F], exif[0x0110]) == ("RainBench", "TestPhone 1")
    assert exif.get_ifd(0x8769)[0x9003] == "2026:05:04 17:30:12"
    assert exif[0x0112] == 1  # irot already turned the pixels


@needs_encoder
def test_exif_orientation_without_irot_is_ignored():
    # A writer that sets only the EXIF tag: HEIF readers ignore it, and so do we.
    spec = heic_spec(1)
    data = capture_bytes(spec)
    assert data.count(_ORIENTATION_1) == 1 and b"irot" not in data
    data = data.replace(_ORIENTATION_1, _ORIENTATION_1[:9] + b"\x06\x00\x00")
    decoded = decode_heic(data, 10**6)
    assert (decoded.width, decoded.height) == SENSOR
    assert shows_upright(decoded.preview, spec)


@needs_encoder
def test_without_exif():
    decoded = decode_heic(capture_bytes(heic_spec().without_exif()), 10**6)
    assert len(decoded.exif) == 0 and (decoded.width, decoded.height) == SENSOR


@needs_encoder
@pytest.mark.parametrize("keep", [0.6, 0.02], ids=["in-image-data", "in-metadata"])
def test_truncated_heic_is_refused(keep):
    data = capture_bytes(heic_spec())
    with pytest.raises(CaptureRejected) as refused:
        decode_heic(data[: int(len(data) * keep)], 10**6)
    assert refused.value.reason == Reason.TRUNCATED


@needs_encoder
def test_garbage_after_the_header_is_corrupt():
    data = capture_bytes(heic_spec())
    ftyp_end = int.from_bytes(data[:4], "big")
    garbage = data[:ftyp_end] + np.random.default_rng(7).integers(0, 256, 4000, np.uint8).tobytes()
    with pytest.raises(CaptureRejected) as refused:
        decode_heic(garbage, 10**6)
    assert refused.value.reason == Reason.CORRUPT


@needs_encoder
def test_no_image_libheif_can_use_is_corrupt():
    # The hvcC box's size zeroed: the boxes parse, pillow-heif lists no image at all.
    data = bytearray(capture_bytes(heic_spec()))
    at = data.index(b"hvcC") - 4
    data[at : at + 4] = bytes(4)
    with pytest.raises(CaptureRejected) as refused:
        decode_heic(bytes(data), 10**6)
    assert refused.value.reason == Reason.CORRUPT


@needs_encoder
def test_unknown_brands_are_refused_in_one_line():
    # libheif's text for this ends in a newline; a refusal's message is one line.
    data = bytearray(capture_bytes(heic_spec()))
    data[16:28] = b"x" * 12  # the compatible brands, none of them known
    with pytest.raises(CaptureRejected) as refused:
        decode_heic(bytes(data), 10**6)
    assert refused.value.reason == Reason.UNSUPPORTED
    message = refused.value.message
    assert message == " ".join(message.split()) and "supported brands" in message


@needs_encoder
def test_pixel_cap():
    with pytest.raises(CaptureRejected) as refused:
        decode_heic(capture_bytes(heic_spec()), max_pixels=320 * 239)
    assert refused.value.reason == Reason.TOO_MANY_PIXELS


def test_missing_pillow_heif_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # makes the import fail
    with pytest.raises(CaptureRejected) as refused:
        decode_heic(b"\x00\x00\x00\x18ftypheic", 10**6)
    assert refused.value.reason == Reason.UNSUPPORTED
    assert "pip install 'rainbench[heic]'" in refused.value.message
    assert for_want_of_library(refused.value.message)  # ingest says it on the console
