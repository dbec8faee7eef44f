"""Camera RAW captures (DNG, CR2, NEF, ARW), validated by LibRaw unpacking every pixel.

The RAW is stored as it is, and its sample gains `preview.jpg`, an upright sRGB
rendering, because no later stage reads RAW: the camera's embedded JPEG where it is
large enough, otherwise a half-size LibRaw rendering.
"""

import io
import warnings
from typing import TYPE_CHECKING

from PIL import Image

from rainbench.capture.decode import (
    PREVIEW_SIDE,
    Decoded,
    check_jpeg_scans,
    check_pixel_cap,
    decoder_error_text,
    open_image,
    reduce_for_preview,
)
from rainbench.capture.exif import without_app1
from rainbench.capture.formats import FORMATS, Format
from rainbench.capture.orientation import orientation_of, turn_upright
from rainbench.capture.reject import CaptureRejected, Reason, missing_library

if TYPE_CHECKING:
    import rawpy

PREVIEW_JPEG_QUALITY = 90

# An embedded JPEG whose aspect ratio differs more than this from the sensor's is
# letterboxed, cropped differently or already rotated: rendering is the safe choice.
_ASPECT_TOLERANCE = 0.05

# IFD0 tags that describe the RAW file's own image structure (strips, tiles, CFA,
# sub-IFD offsets) rather than the capture; kept, they would point into a file the
# EXIF no longer belongs to. DNG's own tags (50706 and up) calibrate colour and
# carry private maker data, for LibRaw rather than for the manifest.
_STRUCTURE_TAGS = frozenset(
    {254, 255, 256, 257, 258, 259, 262, 273, 277, 278, 279, 284, 322, 323, 324, 325, 330}
    | {513, 514, 530, 531, 532, 33421, 33422}
)
_FIRST_DNG_TAG = 50706


def decode_raw(data: bytes, fmt: Format, max_pixels: int) -> Decoded:
    """Unpack the RAW in `data` and render its upright preview (also `preview.jpg`).

    Raises `CaptureRejected` when rawpy is missing or the RAW does not decode.
    """
    try:
        import rawpy
    except ImportError:
        raise missing_library(fmt.name.upper(), "rawpy", "raw") from None
    try:
        with rawpy.imread(io.BytesIO(data)) as raw:
            sizes = raw.sizes  # a copy: postprocess(half_size=True) halves LibRaw's own
            # The unpacked buffer is the full sensor, margins included: cap that.
            check_pixel_cap(sizes.raw_width, sizes.raw_height, max_pixels)
            raw.unpack()
            upright, jpeg = _embedded_preview(raw) or _rendered_preview(raw)
            mode = "CFA" if raw.raw_type == rawpy.RawType.Flat else "LinearRaw"
    except rawpy.LibRawIOError:
        # LibRaw reports reading past the end of the buffer as an I/O error.
        raise CaptureRejected(
            Reason.TRUNCATED, f"{fmt.name.upper()} data ends early: the file is truncated"
        ) from None
    except rawpy.LibRawTooBigError as error:
        raise CaptureRejected(
            Reason.TOO_MANY_PIXELS, f"LibRaw refuses its size: {_text(error)}"
        ) from None
    except rawpy.LibRawError as error:
        raise CaptureRejected(
            Reason.CORRUPT, f"LibRaw cannot decode it as {fmt.name.upper()}: {_text(error)}"
        ) from None
    except (CaptureRejected, MemoryError):
        raise  # MemoryError: decode_capture refuses without blaming the file
    except Exception as error:  # rawpy and Pillow trust what LibRaw makes of a damaged file
        raise CaptureRejected(
            Reason.CORRUPT, f"{fmt.name.upper()} does not decode: {decoder_error_text(error)}"
        ) from None
    width, height = (sizes.height, sizes.width) if sizes.flip & 4 else (sizes.width, sizes.height)
    return Decoded(
        reduce_for_preview(upright),
        width,
        height,
        mode,
        _read_exif(data),
        extra_members={"preview.jpg": jpeg},
    )


def _embedded_preview(raw: "rawpy.RawPy") -> tuple[Image.Image, bytes] | None:
    """The camera's own JPEG, turned upright; None when it is missing, small or odd."""
    import rawpy

    try:
        thumb = raw.extract_thumb()
    except rawpy.LibRawError:  # none, an unsupported kind, or damaged: render instead
        return None
    if thumb.format != rawpy.ThumbFormat.JPEG:
        return None
    sizes = raw.sizes
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's bomb warning: the RAW passed the cap
            # What LibRaw calls a JPEG is the file's bytes: opened as nothing else.
            image = open_image(thumb.data, FORMATS["jpeg"])
            if not _fits(image.size, (sizes.width, sizes.height)):
                return None
            check_jpeg_scans(thumb.data)
            # DCT scaling: the smallest decode whose sides are all ≥ PREVIEW_SIDE, which
            # still reads every byte of the JPEG.
            image.draft("RGB", (PREVIEW_SIDE, PREVIEW_SIDE))
            image.load()
    except MemoryError:
        raise  # decode_capture refuses without blaming the file
    except Exception:  # a damaged JPEG, whatever Pillow raises for it: render instead
        return None
    orientation = _flip_orientation(sizes.flip)
    if orientation == 1:
        # LibRaw prepends an EXIF block built from the RAW's tags, GPS included, and extra
        # members bypass ingest's GPS removal: the preview carries no metadata, the RAW
        # and the manifest do.
        return image, without_app1(thumb.data)
    image = turn_upright(image.convert("RGB"), orientation)
    return image, _encode_jpeg(image)


def _flip_orientation(flip: int) -> int:
    """LibRaw's `sizes.flip` (dcraw's code: bit 2 transposes, bit 1 flips top-bottom,
    bit 0 left-right, the flips before the transpose; 3 = 180°, 5 = 90° CCW, 6 = 90° CW)
    as the EXIF orientation that makes the sensor-oriented image upright; 1 for a code
    it does not know. postprocess() applies it itself, but embedded JPEGs are stored
    sensor-oriented, as the RAW is, so they are turned here."""
    if flip not in range(1, 8):
        return 1
    swap, rows, columns = bool(flip & 4), bool(flip & 2), bool(flip & 1)
    # Flipped before the transpose, rows are columns after it.
    return orientation_of(swap, columns, rows) if swap else orientation_of(swap, rows, columns)


def _fits(thumb_size: tuple[int, int], sensor_size: tuple[int, int]) -> bool:
    """Whether an embedded JPEG can stand in for a rendering of the sensor."""
    (tw, th), (sw, sh) = thumb_size, sensor_size
    large_enough = max(tw, th) >= min(PREVIEW_SIDE, max(sw, sh))
    return large_enough and abs(tw * sh / (th * sw) - 1) <= _ASPECT_TOLERANCE


def _rendered_preview(raw: "rawpy.RawPy") -> tuple[Image.Image, bytes]:
    # half_size skips demosaicing (each 2×2 CFA block becomes one pixel): fast, and
    # still larger than PREVIEW_SIDE for any real sensor. LibRaw applies `flip` here.
    rgb = raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8)
    # One channel from a monochrome sensor, or a CFA without a pattern (LibRaw reads it
    # as one colour): a grey picture.
    image = Image.fromarray(rgb[:, :, 0] if rgb.shape[2] == 1 else rgb)
    return image, _encode_jpeg(image)


def _encode_jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=PREVIEW_JPEG_QUALITY)
    return out.getvalue()


def _read_exif(data: bytes) -> Image.Exif:
    """The capture metadata of a TIFF-based RAW: its IFD0 plus Exif and GPS sub-IFDs.

    Re-serialised so the result is small and self-contained rather than a view into
    the whole RAW file.
    """
    try:
        exif = Image.Exif()
        exif.load(data)  # a TIFF header is exactly what an EXIF block holds
        for tag in list(exif):
            if tag in _STRUCTURE_TAGS or tag >= _FIRST_DNG_TAG:
                del exif[tag]
        compact = Image.Exif()
        compact.load(exif.tobytes())
        return compact
    except Exception:  # a broken EXIF block must not hide whether the pixels decode
        return Image.Exif()


def _text(error: Exception) -> str:
    # rawpy passes LibRaw's C message through as bytes; a refusal's message is one line.
    message = error.args[0] if error.args else error
    text = message.decode(errors="replace") if isinstance(message, bytes) else str(message)
    return " ".join(text.split())
