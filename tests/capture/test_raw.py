"""RAW captures: DNGs written byte by byte by rainbench.demo, so LibRaw unpacks a real
file of the demo scene."""

import importlib.util
import io
import struct
import sys
from datetime import datetime

import numpy as np
import pytest
from PIL import Image

from rainbench.capture.decode import decode_capture
from rainbench.capture.formats import FORMATS, sniff
from rainbench.capture.raw import decode_raw
from rainbench.capture.reject import CaptureRejected, Reason, for_want_of_library
from rainbench.demo.camera_raw import ifd_entry
from rainbench.demo.captures import CaptureSpec, capture_bytes, shows_upright

needs_rawpy = pytest.mark.skipif(
    importlib.util.find_spec("rawpy") is None, reason="rawpy is in the [raw] extra"
)

SENSOR = (256, 192)


def dng_spec(orientation: int = 1, preview: tuple[int, int] | None = None) -> CaptureSpec:
    """A DNG from a camera held per `orientation`, its sensor SENSOR; with `preview`, an
    embedded JPEG of that size in IFD 0 and the raw in a SubIFD, as cameras lay DNGs out."""
    return CaptureSpec(
        "IMG_0001.dng",
        *SENSOR,
        fmt="dng",
        orientation=orientation,
        make="RainBench",
        model="TestCam 1",
        captured_at=datetime(2026, 5, 4, 17, 30, 12),
        exposure_time=1 / 250,
        gps=(-33.865, 151.2094, 58.0),  # 33° 51′ 54″ S
        dng_preview=preview,
        seed=5,
    )


def claiming(dng: bytes, width: int, height: int) -> bytes:
    """`dng` (its raw in IFD 0) with a header claiming a width×height sensor."""
    data = bytearray(dng)
    (ifd0,) = struct.unpack_from("<I", data, 4)
    for tag, value in ((256, width), (257, height), (279, width * height * 2)):
        struct.pack_into("<I", data, ifd_entry(data, "<", ifd0, tag) + 8, value)
    return bytes(data)


@needs_rawpy
@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_rendered_preview_is_upright(orientation):
    spec = dng_spec(orientation)
    data = capture_bytes(spec)
    decoded = decode_capture(data, sniff(data, spec.name))
    upright = SENSOR[::-1] if orientation in (6, 8) else SENSOR
    assert (decoded.width, decoded.height) == upright
    assert decoded.mode == "CFA"
    preview_jpg = Image.open(io.BytesIO(decoded.extra_members["preview.jpg"]))
    assert preview_jpg.format == "JPEG"
    assert preview_jpg.size == (upright[0] // 2, upright[1] // 2)  # a half-size rendering
    assert shows_upright(preview_jpg, spec)
    assert decoded.preview.mode == "RGB" and decoded.preview.size == preview_jpg.size
    assert shows_upright(decoded.preview, spec)


@needs_rawpy
@pytest.mark.parametrize("orientation", [1, 6, 8])
def test_embedded_jpeg_is_used_and_turned_upright(orientation):
    spec = dng_spec(orientation, preview=SENSOR)
    decoded = decode_raw(capture_bytes(spec), FORMATS["dng"], 10**6)
    upright = SENSOR[::-1] if orientation in (6, 8) else SENSOR
    assert (decoded.width, decoded.height) == upright
    preview_jpg = Image.open(io.BytesIO(decoded.extra_members["preview.jpg"]))
    assert preview_jpg.size == upright  # the full-size embedded JPEG, not a rendering
    assert shows_upright(preview_jpg, spec)
    assert shows_upright(decoded.preview, spec)


@needs_rawpy
def test_upright_embedded_jpeg_is_not_reencoded():
    data = capture_bytes(dng_spec(1, preview=SENSOR))
    jpeg = decode_raw(data, FORMATS["dng"], 10**6).extra_members["preview.jpg"]
    # LibRaw prepends its own EXIF block; the compressed scan is the camera's.
    assert jpeg[jpeg.index(b"\xff\xda") :] in data


@needs_rawpy
@pytest.mark.parametrize("preview", [(64, 48), (256, 128)], ids=["small", "other-aspect"])
def test_unfit_embedded_jpeg_is_rendered_instead(preview):
    spec = dng_spec(6, preview=preview)
    decoded = decode_raw(capture_bytes(spec), FORMATS["dng"], 10**6)
    preview_jpg = Image.open(io.BytesIO(decoded.extra_members["preview.jpg"]))
    assert preview_jpg.size == (96, 128)
    assert shows_upright(preview_jpg, spec)


@needs_rawpy
def test_exif_is_the_capture_metadata_without_file_structure():
    exif = decode_raw(capture_bytes(dng_spec(6)), FORMATS["dng"], 10**6).exif
    assert (exif[0x010F], exif[0x0110], exif[0x0112]) == ("RainBench", "TestCam 1", 6)
    sub = exif.get_ifd(0x8769)
    assert sub[0x9003] == "2026:05:04 17:30:12" and sub[0x829A] == 1 / 250
    assert exif.get_ifd(0x8825)[2] == (33.0, 51.0, 54.0)  # GPS: ingest decides whether to keep it
    assert 0x0111 not in exif and 0xC612 not in exif  # StripOffsets, DNGVersion


@needs_rawpy
@pytest.mark.parametrize("orientation, preview", [(1, SENSOR), (6, SENSOR), (1, None)])
def test_preview_jpg_carries_no_metadata(orientation, preview):
    # LibRaw gives the embedded JPEG an EXIF block with the RAW's GPS; extra members
    # are stored as they are, so that block must not reach the shard.
    decoded = decode_raw(capture_bytes(dng_spec(orientation, preview)), FORMATS["dng"], 10**6)
    preview_jpg = Image.open(io.BytesIO(decoded.extra_members["preview.jpg"]))
    assert len(preview_jpg.getexif()) == 0 and "xmp" not in preview_jpg.info


@needs_rawpy
def test_dng_without_cfa_pattern_renders_grey():
    # LibRaw reads a CFA without a pattern as one colour and renders one channel.
    data = bytearray(capture_bytes(dng_spec()))
    at = data.index(struct.pack("<HHI", 33422, 1, 4))  # the CFAPattern entry
    data[at : at + 2] = struct.pack("<H", 0xFFF0)  # renamed: a private tag LibRaw skips
    decoded = decode_raw(bytes(data), FORMATS["dng"], 10**6)
    preview_jpg = Image.open(io.BytesIO(decoded.extra_members["preview.jpg"]))
    assert preview_jpg.mode == "L" and preview_jpg.size == SENSOR
    preview = np.asarray(decoded.preview)
    assert preview.shape == (*SENSOR[::-1], 3) and preview.std() > 0
    assert (preview == preview[:, :, :1]).all()


@needs_rawpy
def test_any_rawpy_failure_is_corrupt(monkeypatch):
    import rawpy

    def failing_imread(file: io.BytesIO) -> None:
        raise RuntimeError("LibRaw made\nno sense of it")

    monkeypatch.setattr(rawpy, "imread", failing_imread)
    with pytest.raises(CaptureRejected) as refused:
        decode_raw(capture_bytes(dng_spec()), FORMATS["dng"], 10**6)
    assert refused.value.reason == Reason.CORRUPT
    assert refused.value.message == "DNG does not decode: RuntimeError: LibRaw made no sense of it"


@needs_rawpy
def test_truncated_dng_is_refused():
    data = capture_bytes(dng_spec())
    with pytest.raises(CaptureRejected) as refused:
        decode_raw(data[: len(data) * 2 // 3], FORMATS["dng"], 10**6)
    assert refused.value.reason == Reason.TRUNCATED


@needs_rawpy
@pytest.mark.parametrize("head", [b"", b"II*\x00"], ids=["garbage", "tiff-magic-garbage"])
def test_garbage_named_dng_is_refused(head):
    garbage = head + np.random.default_rng(7).integers(0, 256, 20_000, np.uint8).tobytes()
    with pytest.raises(CaptureRejected) as refused:
        decode_raw(garbage, FORMATS["dng"], 10**6)
    assert refused.value.reason == Reason.CORRUPT
    assert "LibRaw" in refused.value.message


@needs_rawpy
def test_pixel_cap_refuses_before_unpacking():
    with pytest.raises(CaptureRejected) as refused:
        decode_raw(capture_bytes(dng_spec()), FORMATS["dng"], max_pixels=256 * 191)
    assert refused.value.reason == Reason.TOO_MANY_PIXELS
    # A header claiming 300 MP over 96 KiB of data: unpacking it would say "truncated".
    bomb = claiming(capture_bytes(dng_spec()), 20_000, 15_000)
    with pytest.raises(CaptureRejected) as refused:
        decode_raw(bomb, FORMATS["dng"], max_pixels=250_000_000)
    assert refused.value.reason == Reason.TOO_MANY_PIXELS


def test_missing_rawpy_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "rawpy", None)  # makes `import rawpy` fail
    with pytest.raises(CaptureRejected) as refused:
        decode_raw(b"II*\x00", FORMATS["nef"], 10**6)
    assert refused.value.reason == Reason.UNSUPPORTED
    assert "pip install 'rainbench[raw]'" in refused.value.message
    assert for_want_of_library(refused.value.message)  # ingest says it on the console


def _raw_with_thumb(data: bytes, size: tuple[int, int]):
    """What `_embedded_preview` reads of a rawpy RawPy: a sensor of `size` whose embedded
    preview LibRaw calls a JPEG, holding `data`."""
    rawpy = pytest.importorskip("rawpy")

    class Raw:
        sizes = type("Sizes", (), {"width": size[0], "height": size[1], "flip": 0})

        def extract_thumb(self):
            return type("Thumb", (), {"format": rawpy.ThumbFormat.JPEG, "data": data})

    return Raw()


def test_an_embedded_preview_is_read_as_nothing_but_a_bounded_jpeg():
    from rainbench.capture.raw import _embedded_preview

    size = (128, 96)
    icon = io.BytesIO()  # Pillow's ICO plugin decodes while it opens, whatever it declares
    Image.new("RGB", size).save(icon, "ICO", sizes=[size])
    progressive = io.BytesIO()
    Image.new("RGB", size).save(progressive, "JPEG", progressive=True)
    data = progressive.getvalue()
    last = data.rindex(b"\xff\xda")  # its last scan, 200 times more: libjpeg only warns
    many_scans = data[:-2] + data[last:-2] * 200 + b"\xff\xd9"
    assert _embedded_preview(_raw_with_thumb(data, size)) is not None
    for refused in (icon.getvalue(), many_scans):
        assert _embedded_preview(_raw_with_thumb(refused, size)) is None  # rendered instead
