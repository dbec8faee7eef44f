"""Camera RAW captures made in code: a DNG whose sensor recorded a picture through an RGGB
colour filter, with the capture metadata and embedded JPEG preview that cameras write.
This module lays out the TIFF structure; Pillow's TIFF directory writer encodes each IFD.
"""

import io
import struct

import numpy as np
from PIL import Image
from PIL.TiffImagePlugin import IFDRational, ImageFileDirectory_v2

# 12-bit samples in 16-bit words above a black level, as most sensors write them.
BLACK, WHITE = 256, 4095

# TIFF tags whose values are offsets, known only once the data they point at is placed.
_STRIP_OFFSETS, _SUB_IFDS = 273, 330

# XYZ → linear sRGB. As ColorMatrix1 it declares the sensor's RGB to be linear sRGB, so a
# raw converter renders the picture's colours back.
_XYZ_TO_SRGB = ((3.2406, -1.5372, -0.4986), (-0.9689, 1.8758, 0.0415), (0.0557, -0.2040, 1.0570))

# What every DNG's IFD 0 says about the format and the sensor's colour.
_DNG_TAGS: dict[int, object] = {
    50706: b"\x01\x04\x00\x00",  # DNGVersion 1.4
    50707: b"\x01\x01\x00\x00",  # DNGBackwardVersion 1.1
    50708: "RainBench demo sensor",  # UniqueCameraModel
    50721: tuple(IFDRational(round(v * 10_000), 10_000) for row in _XYZ_TO_SRGB for v in row),
    50728: (IFDRational(1), IFDRational(1), IFDRational(1)),  # AsShotNeutral: white is white
    50778: 21,  # CalibrationIlluminant1: D65, sRGB's white
}


def _sensor_samples() -> np.ndarray:
    """Byte value → 16-bit sample: the sensor counts light linearly, so sRGB's transfer
    curve is undone before the value is spread over black..white level."""
    v = np.arange(256) / 255
    linear = np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)
    return np.rint(BLACK + (WHITE - BLACK) * linear).astype("<u2")


_SAMPLES = _sensor_samples()


def dng_bytes(
    stored: Image.Image,
    metadata: dict[int, object] | None,
    preview: tuple[int, int] | None = None,
    quality: int = 90,
) -> bytes:
    """A DNG of `stored` (RGB, as the sensor saw it: the Orientation tag turns it upright).

    `metadata` is IFD 0's capture tags as Pillow's EXIF names them, with the Exif and GPS
    sub-IFDs as nested dicts; None writes none. With `preview` (width, height), IFD 0 is a
    JPEG of that size and the raw sits in a SubIFD, as cameras lay DNGs out; without it
    the raw is IFD 0. IFDs come first and pixel data last, so a truncated file loses
    pixels rather than its directory.
    """
    width, height = stored.size
    raw = {
        254: 0,  # NewSubfileType: the main image
        256: width,
        257: height,
        258: 16,
        259: 1,  # uncompressed
        262: 32803,  # PhotometricInterpretation: CFA
        _STRIP_OFFSETS: 0,
        277: 1,
        278: height,
        279: width * height * 2,
        284: 1,
        33421: (2, 2),  # CFARepeatPatternDim
        33422: b"\x00\x01\x01\x02",  # CFAPattern: RGGB
        50714: BLACK,  # BlackLevel
        50717: WHITE,  # WhiteLevel
    }
    ifd0 = (metadata or {}) | _DNG_TAGS
    tiff = bytearray(b"II*\x00\x08\x00\x00\x00")  # little-endian, IFD 0 right after
    if preview is None:
        raw_ifd = _append_ifd(tiff, ifd0 | raw)
    else:
        jpeg = io.BytesIO()
        stored.resize(preview, Image.Resampling.BILINEAR).save(jpeg, "JPEG", quality=quality)
        preview_tags = {
            254: 1,  # NewSubfileType: a reduced-resolution preview
            256: preview[0],
            257: preview[1],
            258: (8, 8, 8),
            259: 7,  # JPEG
            262: 6,  # YCbCr
            _STRIP_OFFSETS: 0,
            277: 3,
            278: preview[1],
            279: jpeg.tell(),
            _SUB_IFDS: 0,
        }
        ifd0_offset = _append_ifd(tiff, ifd0 | preview_tags)
        raw_ifd = _append_ifd(tiff, raw)
        _set_long(tiff, ifd0_offset, _SUB_IFDS, raw_ifd)
        _set_long(tiff, ifd0_offset, _STRIP_OFFSETS, _append(tiff, jpeg.getvalue()))
    _set_long(tiff, raw_ifd, _STRIP_OFFSETS, _append(tiff, _mosaic(np.asarray(stored))))
    return bytes(tiff)


def ifd_entry(tiff: bytes | bytearray, order: str, ifd: int, tag: int) -> int | None:
    """Offset of `tag`'s 12-byte entry in the IFD at `ifd` (byte order "<" or ">"), or None."""
    (count,) = struct.unpack_from(order + "H", tiff, ifd)
    for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
        if struct.unpack_from(order + "H", tiff, entry)[0] == tag:
            return entry
    return None


def _mosaic(rgb: np.ndarray) -> bytes:
    """What the sensor recorded: each photosite one colour of the RGGB pattern."""
    cfa = rgb[:, :, 1].copy()
    cfa[0::2, 0::2] = rgb[0::2, 0::2, 0]
    cfa[1::2, 1::2] = rgb[1::2, 1::2, 2]
    return _SAMPLES[cfa].tobytes()


def _append(tiff: bytearray, data: bytes) -> int:
    if len(tiff) % 2:
        tiff.append(0)  # TIFF offsets are word-aligned
    offset = len(tiff)
    tiff += data
    return offset


def _append_ifd(tiff: bytearray, tags: dict[int, object]) -> int:
    """Append an IFD of `tags`; Pillow picks each field's type, as it does for EXIF."""
    directory = ImageFileDirectory_v2()
    for tag, value in tags.items():
        directory[tag] = value
    offset = _append(tiff, b"")  # aligned: the IFD's own offsets count from here
    tiff += directory.tobytes(offset)
    return offset


def _set_long(tiff: bytearray, ifd: int, tag: int, value: int) -> None:
    entry = ifd_entry(tiff, "<", ifd, tag)
    assert entry is not None, f"tag {tag} is not in the IFD at {ifd}"
    struct.pack_into("<I", tiff, entry + 8, value)
