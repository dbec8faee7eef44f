"""RAW captures: DNGs are written here byte by byte, so LibRaw unpacks a real file."""

import importlib.util
import io
import struct
import sys
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image

from rainbench.capture.decode import decode_capture
from rainbench.capture.formats import FORMATS, sniff
from rainbench.capture.raw import decode_raw
from rainbench.capture.reject import CaptureRejected, Reason

needs_rawpy = pytest.mark.skipif(
    importlib.util.find_spec("rawpy") is None, reason="rawpy is in the [raw] extra"
)

BYTE, ASCII, SHORT, LONG, RATIONAL, SRATIONAL = 1, 2, 3, 4, 5, 10
_STRUCT = {BYTE: "B", SHORT: "H", LONG: "I", RATIONAL: "I", SRATIONAL: "i"}

SENSOR = (256, 192)
BLACK, WHITE = 256, 4095  # 12-bit samples in 16-bit words, as most sensors write
# XYZ → linear sRGB: as ColorMatrix1 it makes the camera's RGB sRGB, so colours survive.
XYZ_TO_SRGB = ((3.2406, -1.5372, -0.4986), (-0.9689, 1.8758, 0.0415), (0.0557, -0.2040, 1.0570))
# Turns (multiples of 90° counter-clockwise) that store an upright scene the way a
# camera held that way writes it.
STORED_TURNS = {1: 0, 3: 2, 6: 1, 8: -1}


@dataclass(frozen=True)
class Later:
    """A LONG field whose value is the offset of data placed after every IFD."""

    name: str


class TiffWriter:
    """Little-endian TIFF with the IFDs first and pixel data last, as cameras write
    them, so a truncated file loses pixels rather than its directory."""

    def __init__(self) -> None:
        self.buf = bytearray(b"II*\x00\x00\x00\x00\x00")
        self.later: dict[str, list[int]] = {}

    def append(self, data: bytes) -> int:
        if len(self.buf) % 2:
            self.buf.append(0)  # TIFF offsets are word-aligned
        offset = len(self.buf)
        self.buf += data
        return offset

    def ifd(self, entries: dict[int, tuple[int, object]], next_ifd: int = 0) -> int:
        fields = []
        for tag, (kind, value) in sorted(entries.items()):
            if isinstance(value, Later):
                fields.append((tag, LONG, 1, bytes(4), value.name))
                continue
            count, payload = _payload(kind, value)
            inline = len(payload) <= 4
            field = payload.ljust(4, b"\x00") if inline else struct.pack("<I", self.append(payload))
            fields.append((tag, kind, count, field, None))
        start = self.append(struct.pack("<H", len(fields)))
        for index, (tag, kind, count, field, later) in enumerate(fields):
            if later:
                self.later.setdefault(later, []).append(start + 2 + 12 * index + 8)
            self.buf += struct.pack("<HHI", tag, kind, count) + field
        self.buf += struct.pack("<I", next_ifd)
        return start

    def place(self, name: str, data: bytes) -> None:
        offset = self.append(data)
        for position in self.later.pop(name):
            self.buf[position : position + 4] = struct.pack("<I", offset)

    def finish(self, ifd0: int) -> bytes:
        self.buf[4:8] = struct.pack("<I", ifd0)
        return bytes(self.buf)


def _payload(kind: int, value: object) -> tuple[int, bytes]:
    if kind == ASCII:
        text = value.encode() + b"\x00"
        return len(text), text
    numbers = [n for item in value for n in (item if isinstance(item, tuple) else (item,))]
    return len(value), struct.pack(f"<{len(numbers)}{_STRUCT[kind]}", *numbers)


def scene(width: int, height: int) -> np.ndarray:
    """A smooth upright RGB scene in [0, 1]: red square top left, blue top right."""
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    rgb = np.stack([0.3 + 0.2 * x, 0.35 + 0.1 * y, 0.4 - 0.2 * x], axis=-1)
    rgb[8:40, 8:40] = (0.9, 0.05, 0.05)
    rgb[8:40, width - 40 : width - 8] = (0.05, 0.05, 0.9)
    return rgb


def sensor_scene(orientation: int) -> np.ndarray:
    """The scene as the sensor records it when the camera is held per `orientation`."""
    width, height = SENSOR
    upright = scene(height, width) if STORED_TURNS[orientation] % 2 else scene(width, height)
    return np.ascontiguousarray(np.rot90(upright, STORED_TURNS[orientation]))


def mosaic(rgb: np.ndarray) -> bytes:
    """Sample an RGGB Bayer pattern, as the sensor's colour filter array does."""
    cfa = rgb[:, :, 1].copy()
    cfa[0::2, 0::2] = rgb[0::2, 0::2, 0]
    cfa[1::2, 1::2] = rgb[1::2, 1::2, 2]
    return (BLACK + cfa * (WHITE - BLACK)).astype("<u2").tobytes()


def make_dng(
    orientation: int = 1,
    thumbnail: tuple[int, int] | None = None,
    claimed_sensor: tuple[int, int] = SENSOR,
) -> bytes:
    """A DNG of the test scene; with `thumbnail`, IFD 0 is a sensor-oriented JPEG
    preview of that size and the raw sits in a SubIFD, as cameras lay DNGs out."""
    stored = sensor_scene(orientation)
    width, height = claimed_sensor
    tiff = TiffWriter()
    exif_ifd = tiff.ifd({36867: (ASCII, "2026:05:04 17:30:12"), 33434: (RATIONAL, ((1, 250),))})
    gps_ifd = tiff.ifd({1: (ASCII, "S"), 2: (RATIONAL, ((33, 1), (51, 1), (54, 1)))})
    capture = {
        271: (ASCII, "RainBench"),
        272: (ASCII, "TestCam 1"),
        274: (SHORT, (orientation,)),
        34665: (LONG, (exif_ifd,)),
        34853: (LONG, (gps_ifd,)),
        50706: (BYTE, (1, 4, 0, 0)),  # DNGVersion
        50707: (BYTE, (1, 1, 0, 0)),  # DNGBackwardVersion
        50708: (ASCII, "RainBench TestCam 1"),  # UniqueCameraModel
        50721: (SRATIONAL, tuple((round(v * 10_000), 10_000) for row in XYZ_TO_SRGB for v in row)),
        50728: (RATIONAL, ((1, 1), (1, 1), (1, 1))),  # AsShotNeutral
        50778: (SHORT, (21,)),  # CalibrationIlluminant1: D65
    }
    raw = {
        254: (LONG, (0,)),  # NewSubFileType: the main image
        256: (LONG, (width,)),
        257: (LONG, (height,)),
        258: (SHORT, (16,)),
        259: (SHORT, (1,)),  # uncompressed
        262: (SHORT, (32803,)),  # PhotometricInterpretation: CFA
        273: (LONG, Later("raw")),
        277: (SHORT, (1,)),
        278: (LONG, (height,)),
        279: (LONG, (width * height * 2,)),
        284: (SHORT, (1,)),
        33421: (SHORT, (2, 2)),  # CFARepeatPatternDim
        33422: (BYTE, (0, 1, 1, 2)),  # CFAPattern: RGGB
        50714: (SHORT, (BLACK,)),  # BlackLevel
        50717: (SHORT, (WHITE,)),  # WhiteLevel
    }
    if thumbnail is None:
        ifd0 = tiff.ifd(capture | raw)
    else:
        jpeg = _jpeg(Image.fromarray((stored * 255).astype("uint8")).resize(thumbnail))
        preview = {
            254: (LONG, (1,)),  # NewSubFileType: a reduced-resolution preview
            256: (LONG, (thumbnail[0],)),
            257: (LONG, (thumbnail[1],)),
            258: (SHORT, (8, 8, 8)),
            259: (SHORT, (7,)),  # JPEG
            262: (SHORT, (6,)),  # YCbCr
            273: (LONG, Later("jpeg")),
            277: (SHORT, (3,)),
            278: (LONG, (thumbnail[1],)),
            279: (LONG, (len(jpeg),)),
            330: (LONG, (tiff.ifd(raw),)),  # SubIFDs
        }
        ifd0 = tiff.ifd(capture | preview)
        tiff.place("jpeg", jpeg)
    tiff.place("raw", mosaic(stored))
    return tiff.finish(ifd0)


def _jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=95)
    return out.getvalue()


def assert_upright(image: Image.Image) -> None:
    """The red square is top left and the blue one top right."""
    rgb = np.asarray(image.convert("RGB"), dtype=float)
    side = max(image.size) // 16  # the squares span 8/256..40/256 of the longest side
    top_left = rgb[side : 2 * side, side : 2 * side].mean(axis=(0, 1))
    top_right = rgb[side : 2 * side, -2 * side : -side].mean(axis=(0, 1))
    assert top_left[0] > top_left[2] + 60, f"no red top left: {top_left}"
    assert top_right[2] > top_right[0] + 60, f"no blue top right: {top_right}"


@needs_rawpy
@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_rendered_preview_is_upright(orientation):
    data = make_dng(orientation)
    decoded = decode_capture(data, sniff(data, "IMG_0001.dng"))
    upright = SENSOR[::-1] if orientation in (6, 8) else SENSOR
    assert (decoded.width, decoded.height) == upright
    assert decoded.mode == "CFA"
    preview_jpg = Image.open(io.BytesIO(decoded.extra_members["preview.jpg"]))
    assert preview_jpg.format == "JPEG"
    assert preview_jpg.size == (upright[0] // 2, upright[1] // 2)  # a half-size rendering
    assert_upright(preview_jpg)
    assert decoded.preview.mode == "RGB" and decoded.preview.size == preview_jpg.size
    assert_upright(decoded.preview)


@needs_rawpy
@pytest.mark.parametrize("orientation", [1, 6, 8])
def test_embedded_jpeg_is_used_and_turned_upright(orientation):
    data = make_dng(orientation, thumbnail=SENSOR)
    decoded = decode_raw(data, FORMATS["dng"], 10**6)
    upright = SENSOR[::-1] if orientation in (6, 8) else SENSOR
    assert (decoded.width, decoded.height) == upright
    preview_jpg = Image.open(io.BytesIO(decoded.extra_members["preview.jpg"]))
    assert preview_jpg.size == upright  # the full-size embedded JPEG, not a rendering
    assert_upright(preview_jpg)
    assert_upright(decoded.preview)


@needs_rawpy
def test_upright_embedded_jpeg_is_not_reencoded():
    data = make_dng(1, thumbnail=SENSOR)
    jpeg = decode_raw(data, FORMATS["dng"], 10**6).extra_members["preview.jpg"]
    # LibRaw prepends its own EXIF block; the compressed scan is the camera's.
    assert jpeg[jpeg.index(b"\xff\xda") :] in data


@needs_rawpy
@pytest.mark.parametrize("thumbnail", [(64, 48), (256, 128)], ids=["small", "other-aspect"])
def test_unfit_embedded_jpeg_is_rendered_instead(thumbnail):
    decoded = decode_raw(make_dng(6, thumbnail=thumbnail), FORMATS["dng"], 10**6)
    preview_jpg = Image.open(io.BytesIO(decoded.extra_members["preview.jpg"]))
    assert preview_jpg.size == (96, 128)
    assert_upright(preview_jpg)


@needs_rawpy
def test_exif_is_the_capture_metadata_without_file_structure():
    exif = decode_raw(make_dng(6), FORMATS["dng"], 10**6).exif
    assert (exif[0x010F], exif[0x0110], exif[0x0112]) == ("RainBench", "TestCam 1", 6)
    sub = exif.get_ifd(0x8769)
    assert sub[0x9003] == "2026:05:04 17:30:12" and sub[0x829A] == 1 / 250
    assert exif.get_ifd(0x8825)[2] == (33.0, 51.0, 54.0)  # GPS: ingest decides whether to keep it
    assert 0x0111 not in exif and 0xC612 not in exif  # StripOffsets, DNGVersion


@needs_rawpy
@pytest.mark.parametrize("orientation, thumbnail", [(1, SENSOR), (6, SENSOR), (1, None)])
def test_preview_jpg_carries_no_metadata(orientation, thumbnail):
    # LibRaw gives the embedded JPEG an EXIF block with the RAW's GPS; extra members
    # are stored as they are, so that block must not reach the shard.
    decoded = decode_raw(make_dng(orientation, thumbnail), FORMATS["dng"], 10**6)
    preview_jpg = Image.open(io.BytesIO(decoded.extra_members["preview.jpg"]))
    assert len(preview_jpg.getexif()) == 0 and "xmp" not in preview_jpg.info


@needs_rawpy
def test_truncated_dng_is_refused():
    data = make_dng()
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
        decode_raw(make_dng(), FORMATS["dng"], max_pixels=256 * 191)
    assert refused.value.reason == Reason.TOO_MANY_PIXELS
    # A header claiming 300 MP over 96 KiB of data: unpacking it would say "truncated".
    bomb = make_dng(claimed_sensor=(20_000, 15_000))
    with pytest.raises(CaptureRejected) as refused:
        decode_raw(bomb, FORMATS["dng"], max_pixels=250_000_000)
    assert refused.value.reason == Reason.TOO_MANY_PIXELS


def test_missing_rawpy_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "rawpy", None)  # makes `import rawpy` fail
    with pytest.raises(CaptureRejected) as refused:
        decode_raw(b"II*\x00", FORMATS["nef"], 10**6)
    assert refused.value.reason == Reason.UNSUPPORTED
    assert "pip install 'rainbench[raw]'" in refused.value.message
