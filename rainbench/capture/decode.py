"""Validating decodes: a capture is accepted only if its pixels decode completely.

JPEGs are decoded at a reduced scale (DCT scaling: 2–3× cheaper than a full decode
and still reading every entropy-coded byte, so truncation and corruption are
caught). Other formats are decoded fully, then reduced. Either way the result is
an upright RGB preview, small enough for hashing and tagging features.
"""

import contextlib
import io
import logging
import os
import re
import struct
import threading
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from PIL import Image, PngImagePlugin, TiffImagePlugin, UnidentifiedImageError

from rainbench.capture.formats import Format
from rainbench.capture.orientation import ORIENTATION_TAG, STEPS, turn_upright, upright_size
from rainbench.capture.reject import CaptureRejected, Reason
from rainbench.errors import RainbenchError

# Pillow's bomb cap and the warnings filters belong to the process: threads decoding at
# once (two RainDatasets iterated in threads) change them one at a time, or one restores
# what another set and the caller's cap and filters stay lost.
_PROCESS_STATE = threading.RLock()

# Longest side of the preview every later stage (hashing, tagging) works from.
PREVIEW_SIDE = 1024

# About how many pixels reduce_for_preview converts at a time (16 MB in RGBA).
_BAND_PIXELS = 1 << 22

# What decoders raise for damage they check for; see decoder_error_text.
_DAMAGE_ERRORS = (OSError, SyntaxError, ValueError, EOFError)

# The pixel cap: 250 MP admits today's 200 MP phone sensors (16320×12240) and
# 150 MP medium-format backs, and refuses decompression bombs. Pillow's own guard
# (≈179 MP) would refuse the 200 MP sensors, so it is replaced by this explicit one.
DEFAULT_MAX_PIXELS = 250_000_000
# The cap every reader of a dataset's pictures keeps (train, eval, synth, label, pairs,
# verify, the loader) and score: ingest's default unless the user raises it here, once
# for every command and for RainDataset in their own code. A manifest's sizes are
# untrusted, so no dataset can raise it.
MAX_PIXELS_ENV = "RAINBENCH_MAX_PIXELS"

# Pillow's plugin for each format rainbench decodes with Pillow: bytes are opened only as
# the format they are said to be (a member named .png that is an ICO or an EPS is no
# PNG, and is not handed to that plugin). Its JPEG plugin opens MPO files too.
_PILLOW_FORMATS = {"jpeg": "JPEG", "png": "PNG", "tiff": "TIFF", "webp": "WEBP"}
# Plugins never used, whatever the format asked for: ICO decodes its largest icon while
# it opens, before any cap can be checked, whatever size its directory declares (a
# 256×256 icon holding a PNG of 16000×16000); EPS hands the file to Ghostscript, an
# interpreter, where one is installed.
_NEVER_OPENED = {"ICO", "EPS"}
# Pillow's TIFF plugin logs some damage at ERROR as it opens, beside the error it raises
# (which rainbench says in its own line); with no logging set up, Python prints it.
_PILLOW_TIFF_LOG = logging.getLogger("PIL.TiffImagePlugin")
# How far Pillow inflates one compressed PNG chunk (an ICC profile, XMP or other text)
# before it calls the file damaged: its own 1 MiB refused whole pictures whose metadata
# is larger. 64 MiB, as GPS removal inflates text; Pillow bounds all text at 64 MiB too.
_PNG_CHUNK_INFLATED = 64 << 20

# A progressive JPEG's every scan is decoded over the whole picture, and libjpeg only
# warns at a scan that repeats another: at 11 bytes and 40 ms a scan of 64 MP, a 1 MB
# file decodes for half an hour. Encoders write about ten (libjpeg's default progression).
MAX_JPEG_SCANS = 100
# A marker outside a segment: 0xFF then neither a stuffed zero, a fill byte nor a restart.
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_JPEG_NO_LENGTH = {0x01, 0xD8, 0xD9}  # TEM, SOI, EOI: markers without a segment
_SOS, _EOI = 0xDA, 0xD9
# The frames whose scans each refine the whole picture. A sequential frame's scan may not
# repeat a component (libjpeg stops at once), so its scans need no count.
_PROGRESSIVE_SOF = {0xC2, 0xC6, 0xCA, 0xCE}


@dataclass
class Decoded:
    """What a validating decode learned about a capture."""

    reduced: Image.Image  # RGB, as stored, longest side about PREVIEW_SIDE (or smaller)
    width: int  # full-resolution size, upright (EXIF orientation applied)
    height: int
    mode: str  # the stored pixel mode: "RGB", "L", "CMYK", "I;16", "RGBA", ...
    exif: Image.Exif
    # Further tar members of the sample, extension → bytes (a RAW's rendered preview).
    extra_members: dict[str, bytes] = field(default_factory=dict)
    orientation: int = 1  # the EXIF orientation that makes `reduced` upright

    @cached_property
    def preview(self) -> Image.Image:
        """`reduced`, upright; turned only when asked for."""
        return turn_upright(self.reduced, self.orientation)


def decode_capture(data: bytes, fmt: Format, max_pixels: int = DEFAULT_MAX_PIXELS) -> Decoded:
    """Decode `data` (of format `fmt`) far enough to prove it is a whole image.

    Raises `CaptureRejected` with the reason when it is not.
    """
    try:
        return _decode(data, fmt, max_pixels)
    except MemoryError:
        # The machine is short, not the file bad: UNREADABLE is retried on a re-run,
        # where fewer workers or a larger machine may hold it.
        size = header_size(data)
        shown = f" ({size[0]}×{size[1]})" if size else ""
        raise CaptureRejected(
            Reason.UNREADABLE, f"cannot decode: too large to hold in memory{shown}"
        ) from None


def _decode(data: bytes, fmt: Format, max_pixels: int) -> Decoded:
    if fmt.raw:
        from rainbench.capture.raw import decode_raw

        return decode_raw(data, fmt, max_pixels)
    if fmt.name == "heic":
        from rainbench.capture.heif import decode_heic

        return decode_heic(data, max_pixels)
    if fmt.name == "png":
        _check_png_chunks(data)
    return _decode_with_pillow(data, fmt, max_pixels)


def readers_max_pixels() -> int:
    """The readers' pixel cap: $RAINBENCH_MAX_PIXELS, else DEFAULT_MAX_PIXELS."""
    value = os.environ.get(MAX_PIXELS_ENV)
    if not value:
        return DEFAULT_MAX_PIXELS
    if not re.fullmatch(r"[0-9]+", value.strip()) or int(value) < 1:
        raise RainbenchError(
            f"{MAX_PIXELS_ENV}={value!r} is not a positive whole number of pixels "
            f"(the readers' pixel cap, e.g. 400000000; unset: {DEFAULT_MAX_PIXELS})"
        )
    return int(value)


class PixelCapExceeded(CaptureRejected):
    """A picture (a video's frame) of more pixels than the cap. The message names the
    option that sets the cap where a command has one (ingest, import-paired, synth
    --preview); `fact` says it for a reader whose cap no option sets, the readers' cap,
    naming the variable that sets that one."""

    def __init__(self, width: int, height: int, max_pixels: int):
        self.size = (width, height)
        exceeds = f"{width}×{height} = {megapixels(width * height)} exceeds the cap of "
        cap = megapixels(max_pixels)
        self.fact = f"{exceeds}{cap} readers keep ({MAX_PIXELS_ENV})"
        super().__init__(Reason.TOO_MANY_PIXELS, f"{exceeds}{cap} (--max-pixels)")


def megapixels(pixels: int) -> str:
    """A count of pixels as people say it: '400 MP', '1.5 MP'; below 1 MP, where a whole
    number of MP would read 0, the pixels themselves: '768 pixels'."""
    if pixels < 1_000_000:
        return f"{pixels} pixels"
    return f"{pixels / 1e6:.1f}".removesuffix(".0") + " MP"


def check_pixel_cap(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise PixelCapExceeded(width, height, max_pixels)


def reduce_for_preview(image: Image.Image) -> Image.Image:
    """An RGB image with its longest side below 2 × PREVIEW_SIDE."""
    factor = max(image.size) // PREVIEW_SIDE
    if factor < 2:
        return _to_rgb(image)
    # Converted and reduced band by band: converting the whole picture first would
    # hold one or two more full-size copies beside the decoded one (1.8 GB more for a
    # 225 MP RGBA PNG).
    # Bands start on whole reduction blocks, so the pixels are those of the whole
    # picture converted, then reduced.
    width, height = image.size
    rows = factor * max(1, _BAND_PIXELS // (width * factor))
    reduced = Image.new("RGB", (-(-width // factor), -(-height // factor)))
    for top in range(0, height, rows):
        band = image.crop((0, top, width, min(top + rows, height)))
        reduced.paste(_to_rgb(band).reduce(factor), (0, top // factor))
    return reduced


def _decode_with_pillow(data: bytes, fmt: Format, max_pixels: int) -> Decoded:
    try:
        with _PROCESS_STATE, warnings.catch_warnings(), _png_metadata_inflated():
            warnings.simplefilter("ignore")  # Pillow's bomb warning: the cap below decides
            image = open_image(data, fmt)
            full_size = image.size  # draft() below shrinks `size` to the decoded scale
            check_pixel_cap(*full_size, max_pixels)
            if why := misread(image):
                raise CaptureRejected(Reason.UNSUPPORTED, why)
            mode = image.mode
            check_jpeg_scans(data)
            # Pillow names a JPEG whose MPF index lists further pictures (a phone's depth
            # map, an HDR gain map) MPO: its first picture is decoded as any JPEG's.
            if image.format in ("JPEG", "MPO"):
                # draft() picks the largest DCT scale that keeps the size ≥ the request.
                image.draft("RGB" if mode != "CMYK" else "CMYK", _draft_request(image.size))
            image.load()
            if image.format == "TIFF":
                # Pillow turns a TIFF upright as it loads it, and by its XMP's
                # tiff:Orientation where it has no EXIF one, which the header's size hides.
                full_size = image.size
            # Only now: a PNG's getexif() loads the pixels itself (its eXIf chunk may
            # follow them), and _read_exif would swallow that decode's failure. A JPEG's
            # EXIF came with its header, so reading it here costs nothing more.
            exif = _read_exif(image)
            reduced = reduce_for_preview(image)
    except (CaptureRejected, MemoryError):
        raise  # MemoryError: decode_capture refuses without blaming the file
    except Exception as error:
        # The signature already said which format this is, so a failure here is
        # damage: truncation when the container's end is missing, else corruption.
        text = decoder_error_text(error)
        if isinstance(error, UnidentifiedImageError):
            text = f"the {fmt.name} header does not parse"
            # A whole directory of samples Pillow has no mode for: a valid file, and a
            # later Pillow may read it (unsupported is tried again).
            if fmt.name == "tiff" and _has_end(data, fmt) and (why := _unread_tiff(data)):
                raise CaptureRejected(Reason.UNSUPPORTED, why) from None
        truncated = "truncated" in text.lower() or isinstance(error, EOFError)
        if truncated or not _has_end(data, fmt):
            raise CaptureRejected(Reason.TRUNCATED, f"the file ends early: {text}") from None
        raise CaptureRejected(Reason.CORRUPT, f"pixel data does not decode: {text}") from None
    width, height = upright_size(*full_size, exif.get(ORIENTATION_TAG))
    orientation = exif.get(ORIENTATION_TAG)
    return Decoded(
        reduced,
        width,
        height,
        mode,
        exif,
        orientation=orientation if orientation in STEPS else 1,
    )


def decoder_error_text(error: Exception) -> str:
    """`error`, raised by a decoder on a damaged file, as one line for the refusal.

    Decoders signal damage they check for with OSError, SyntaxError, ValueError or
    EOFError; anything else escaped from parsing code that trusted a field (an ASCII
    StripOffsets, an empty image list), so its type is named.
    """
    text = " ".join(str(error).split())
    if isinstance(error, _DAMAGE_ERRORS):
        return text or type(error).__name__
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def load_upright(data: bytes, fmt: Format, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """The whole stored capture as an upright 8-bit RGB image, at full resolution.

    For later stages that need the pixels (synthetic rain is rendered on them).
    RAW captures are not developed here: their stored `preview.jpg` member is the
    sRGB rendering to use. See `load_stored` for `max_pixels`.
    """
    image, orientation = load_stored(data, fmt, max_pixels)
    return turn_upright(image, orientation)


def load_stored(
    data: bytes, fmt: Format, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[Image.Image, int]:
    """The whole capture as 8-bit RGB, as stored (not yet turned), and the EXIF
    orientation (1–8) that turns it upright: for a loader that turns only its crops.

    A picture whose header declares more than `max_pixels` (the cap, or a reader's
    bound from the manifest) is refused before any pixel is decoded: `CaptureRejected`.
    """
    if fmt.raw:
        raise ValueError(f"{fmt.name} is camera RAW: load its preview.jpg member instead")
    if fmt.name == "heic":
        from rainbench.capture.heif import open_upright

        return _to_rgb(open_upright(data, max_pixels)), 1  # libheif applies the orientation
    with _PROCESS_STATE, warnings.catch_warnings(), _png_metadata_inflated():
        warnings.simplefilter("ignore")
        image = open_image(data, fmt)
        check_pixel_cap(*image.size, max_pixels)
        if why := misread(image):
            raise ValueError(why)  # as a decoder's failure: the picture does not decode
        check_jpeg_scans(data)
        image.load()
        orientation = image.getexif().get(ORIENTATION_TAG)
    return _to_rgb(image), orientation if orientation in STEPS else 1


# Why an image with floating-point samples is refused where it would be scored: Pillow
# reads no colour float TIFF, and a grey one as black, whatever its range.
FLOAT_TIFF = (
    "a floating-point TIFF, which is not scored: save the output as an 8- or 16-bit image "
    "(PNG, TIFF)"
)


def float_tiff(data: bytes) -> bool:
    """Whether a TIFF's first image holds floating-point samples (SampleFormat 3), which
    Pillow cannot read in colour."""
    directory = _first_directory(data)
    return directory is not None and 3 in _per_sample(
        directory.get(TiffImagePlugin.SAMPLEFORMAT, ())
    )


def _first_directory(data: bytes) -> TiffImagePlugin.ImageFileDirectory_v2 | None:
    """A TIFF's first directory (its tags), None where it does not read."""
    try:
        # a damaged directory: Pillow's warnings, not ours
        with _PROCESS_STATE, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            directory = TiffImagePlugin.ImageFileDirectory_v2(data[:8])
            stream = io.BytesIO(data)
            stream.seek(directory.next)
            directory.load(stream)
    except (SyntaxError, ValueError, OSError, EOFError, struct.error):
        return None
    return directory


def _unread_tiff(data: bytes) -> str | None:
    """Why Pillow identifies no picture in a TIFF whose directory reads: samples it has no
    mode for (floating-point colour, 16-bit grey with alpha, CMYK with alpha, 16-bit
    LAB), said as what they are; None where the directory does not read or contradicts
    itself."""
    directory = _first_directory(data)
    if directory is None or not {TiffImagePlugin.IMAGEWIDTH, TiffImagePlugin.IMAGELENGTH} <= set(
        directory
    ):
        return None
    if 3 in _per_sample(directory.get(TiffImagePlugin.SAMPLEFORMAT, ())):
        return "a floating-point TIFF, which Pillow does not read: save it at 8 or 16 bits"
    samples = directory.get(TiffImagePlugin.SAMPLESPERPIXEL, 1)
    bits = _per_sample(directory.get(TiffImagePlugin.BITSPERSAMPLE, 1))
    if len(bits) not in (1, samples):
        return None  # sizes for another number of samples than it has: damage
    bits_text = str(bits[0]) if len(set(bits)) == 1 else "/".join(map(str, bits))
    photometric = directory.get(TiffImagePlugin.PHOTOMETRIC_INTERPRETATION)
    return (
        f"a TIFF whose pixels Pillow does not read ({samples} samples of {bits_text} bits, "
        f"PhotometricInterpretation {photometric}): save it as 8- or 16-bit grey, RGB or RGBA"
    )


def header_size(data: bytes, fmt: Format | None = None) -> tuple[int, int] | None:
    """The upright size from the header alone (no pixels decoded), for the formats
    Pillow reads itself (with `fmt`, for that one only); None for others."""
    try:
        with _PROCESS_STATE, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = open_image(data, fmt)
            # Image's getexif(), not PngImageFile's: that one decodes every pixel to look
            # for an eXIf chunk after them, the very cost (and bomb) this must not meet.
            exif = Image.Image.getexif(image)
            # As decoding will find it; none there leaves the orientation XMP gives.
            after = image.format == "PNG" and "exif" not in image.info
            if after and (block := _png_exif_after_pixels(data)):
                exif.load(block)
            return upright_size(*_stored_size(image), exif.get(ORIENTATION_TAG))
    except Exception:  # any unreadable header: the size is simply unknown
        return None


def _png_exif_after_pixels(data: bytes) -> bytes:
    """The eXIf chunk a PNG holds after its pixels (empty where none): found by walking
    the chunks' headers, nothing inflated; none after IEND, which decoders never read."""
    at = 8
    while at + 8 <= len(data):
        length, kind = int.from_bytes(data[at : at + 4], "big"), data[at + 4 : at + 8]
        if kind == b"eXIf":
            return data[at + 8 : at + 8 + length]
        if kind == b"IEND":
            break
        at += 12 + length
    return b""


def _stored_size(image: Image.Image) -> tuple[int, int]:
    """An opened picture's size as stored, before any turn: Pillow 13 and later give a
    TIFF's already turned by its orientation, its tags the stored one."""
    if image.format == "TIFF":
        tags = image.tag_v2
        return tags.get(TiffImagePlugin.IMAGEWIDTH, image.width), tags.get(
            TiffImagePlugin.IMAGELENGTH, image.height
        )
    return image.size


def open_image(source: bytes | Path, fmt: Format | None = None) -> Image.Image:
    """The picture in `source` (its bytes, or a file) opened as `fmt` (any format Pillow
    reads where it decodes no such format itself, `_NEVER_OPENED` aside), its header
    read and no pixel decoded, without Pillow's bomb guard: the caller's explicit pixel
    cap decides instead."""
    if fmt is not None and fmt.name in _PILLOW_FORMATS:
        formats = [_PILLOW_FORMATS[fmt.name]]
    else:
        Image.init()  # every plugin registered, so that all are offered
        formats = [name for name in Image.OPEN if name not in _NEVER_OPENED]
    opener = threading.get_ident()

    def others(record: logging.LogRecord) -> bool:
        # Only this open's damage reports, not another thread's own Pillow (nor debug).
        return record.thread != opener or record.levelno < logging.WARNING

    with _PROCESS_STATE, _png_metadata_inflated():
        saved_cap, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        _PILLOW_TIFF_LOG.addFilter(others)
        try:
            stream = io.BytesIO(source) if isinstance(source, bytes) else source
            return Image.open(stream, formats=formats)
        finally:
            _PILLOW_TIFF_LOG.removeFilter(others)
            Image.MAX_IMAGE_PIXELS = saved_cap


@contextlib.contextmanager
def _png_metadata_inflated() -> Iterator[None]:
    """Pillow's PNG chunks inflated up to _PNG_CHUNK_INFLATED while opening and loading (a
    text chunk after the pixels is read as they load); process state, so under the lock."""
    with _PROCESS_STATE:
        saved = PngImagePlugin.MAX_TEXT_CHUNK
        PngImagePlugin.MAX_TEXT_CHUNK = max(saved, _PNG_CHUNK_INFLATED)
        try:
            yield
        finally:
            PngImagePlugin.MAX_TEXT_CHUNK = saved


def misread(image: Image.Image) -> str | None:
    """Why Pillow would read this opened picture's samples wrongly, from its header; None
    where it reads them right. Of a TIFF: floating-point samples (a grey one comes out
    black), integer samples of more than 16 bits (read as 16-bit ones: white) and
    samples of more than 8 bits in separate colour planes (noise)."""
    if image.format != "TIFF":
        return None
    tags = image.tag_v2
    if 3 in _per_sample(tags.get(TiffImagePlugin.SAMPLEFORMAT, 1)):
        return "a floating-point TIFF, which Pillow reads as black: save it at 8 or 16 bits"
    bits = max(_per_sample(tags.get(TiffImagePlugin.BITSPERSAMPLE, 8)))
    if bits > 16:
        return f"a TIFF of {bits}-bit integer samples, read as 16-bit ones: save it at 8 or 16 bits"
    planar = tags.get(TiffImagePlugin.PLANAR_CONFIGURATION, 1) == 2
    if planar and bits > 8:
        return (
            "a TIFF of 16-bit samples in separate colour planes, which Pillow misreads: "
            "save it with its samples interleaved (PlanarConfiguration 1)"
        )
    return None


def _per_sample(value: int | tuple[int, ...]) -> tuple[int, ...]:
    return value if isinstance(value, tuple) else (value,)


def check_jpeg_scans(data: bytes) -> None:
    """Refuse a JPEG of more than MAX_JPEG_SCANS scans before it is decoded: OSError,
    as for damage a decoder finds. Other formats' bytes pass."""
    if (
        data.startswith(b"\xff\xd8")
        and _progressive(data)
        and jpeg_scans(data, MAX_JPEG_SCANS + 1) > MAX_JPEG_SCANS
    ):
        raise OSError(
            f"more than {MAX_JPEG_SCANS} progressive scans, far more than an encoder writes; "
            "not decoded"
        )


def _jpeg_markers(data: bytes) -> Iterator[int]:
    """A JPEG's markers in order: segments skipped by their lengths, entropy-coded data
    to the next marker, as libjpeg reads them."""
    position = 0
    while found := _JPEG_MARKER.search(data, position):
        marker, position = data[found.start() + 1], found.end()
        yield marker
        if marker in _JPEG_NO_LENGTH:
            continue
        if position + 2 > len(data):
            return
        position += int.from_bytes(data[position : position + 2], "big")


def _progressive(data: bytes) -> bool:
    """Whether the JPEG's frame, declared before its first scan, is progressive: the
    header alone is read."""
    for marker in _jpeg_markers(data):
        if marker in _PROGRESSIVE_SOF:
            return True
        if marker in (_SOS, _EOI):
            return False
    return False


def jpeg_scans(data: bytes, stop: int) -> int:
    """How many scans (SOS markers) a JPEG holds, counted up to `stop`: segments are
    skipped by their lengths, entropy-coded data to the next marker, as libjpeg reads
    them; the images after the first (an MPO's) are counted too."""
    scans = 0
    for marker in _jpeg_markers(data):
        scans += marker == _SOS
        if scans >= stop:
            break
    return scans


def _has_end(data: bytes, fmt: Format) -> bool:
    """Whether the container's closing structure is there (judged only for JPEG, WebP and
    TIFF)."""
    if fmt.name == "jpeg":
        return b"\xff\xd9" in data[-4096:]
    if fmt.name == "webp":
        return len(data) >= 8 + struct.unpack_from("<I", data, 4)[0]
    if fmt.name == "tiff":
        # libtiff (and Pillow, compressing) writes the first directory after the pixels:
        # a file cut short has none where its header points.
        order = "<" if data.startswith(b"II") else ">"
        first = struct.unpack_from(order + "I", data, 4)[0] if len(data) >= 8 else len(data)
        if first + 2 > len(data):
            return False
        # Its entries, then the next directory's offset.
        return first + 6 + 12 * struct.unpack_from(order + "H", data, first)[0] <= len(data)
    return True


def _check_png_chunks(data: bytes) -> None:
    """Walk the PNG chunks: every CRC must match and IEND must close the file.

    Pillow checks neither for the pixel-data chunks, so a damaged or cut PNG would
    otherwise be stored as if whole.
    """
    position = 8
    while position + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        end = position + 12 + length
        if end > len(data):
            break
        (crc,) = struct.unpack_from(">I", data, end - 4)
        if zlib.crc32(data[position + 4 : end - 4]) != crc:
            name = kind.decode("latin-1")
            raise CaptureRejected(Reason.CORRUPT, f"PNG chunk {name} at byte {position}: bad CRC")
        if kind == b"IEND":
            return
        position = end
    raise CaptureRejected(Reason.TRUNCATED, "the file ends early: the PNG has no IEND chunk")


def _draft_request(size: tuple[int, int]) -> tuple[int, int]:
    # draft() decodes at the smallest DCT scale that still covers the request, so
    # asking for half the preview side yields a preview side in [PREVIEW_SIDE/2, PREVIEW_SIDE).
    ratio = (PREVIEW_SIDE // 2) / max(size)
    return max(1, round(size[0] * ratio)), max(1, round(size[1] * ratio))


def _read_exif(image: Image.Image) -> Image.Exif:
    try:
        return image.getexif()
    except Exception:  # a broken EXIF block must not hide whether the pixels decode
        return Image.Exif()


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode == "I;16B":  # Pillow's point() takes no big-endian samples
        image = image.convert("I")
    if image.mode in ("I;16", "I;16L", "I"):
        # 16-bit grey: scale to 8 bits rather than clip.
        return image.point(lambda v: v / 256).convert("L").convert("RGB")
    if image.mode in ("LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Through RGBA: Pillow warns when it converts a palette with per-entry
        # transparency straight to RGB. RGBA itself converts directly, without a copy.
        return image.convert("RGBA").convert("RGB")
    return image.convert("RGB")
