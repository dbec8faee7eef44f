"""HEIC/HEIF captures (phones), validated by decoding the primary image with libheif.

HEVC has no reduced-scale decode, so the whole image is decoded, then reduced.
"""

import io

from PIL import Image

from rainbench.capture.bmff import ends_inside_a_box
from rainbench.capture.decode import (
    Decoded,
    check_pixel_cap,
    decoder_error_text,
    reduce_for_preview,
)
from rainbench.capture.orientation import ORIENTATION_TAG
from rainbench.capture.reject import CaptureRejected, Reason, missing_library


def decode_heic(data: bytes, max_pixels: int) -> Decoded:
    """Decode the primary image in `data` and reduce it to an upright preview.

    Orientation: HEIF turns and mirrors with its `irot`/`imir` boxes, which libheif
    applies on decode, so pillow-heif's size and pixels are already upright. MIAF
    (ISO/IEC 23000-22, 7.3.10.1) says readers ignore the EXIF Orientation; phones
    still write it, equal to `irot`, so applying it as well would turn the image
    twice, and where it stands alone (no `irot`) libheif shows the image unturned.
    It is reset to 1 in the returned EXIF, as pillow-heif's Pillow plugin does, so
    the EXIF agrees with the upright pixels.
    """
    try:
        import pillow_heif
    except ImportError:
        raise missing_library("HEIC", "pillow-heif", "heic") from None
    try:
        heif = pillow_heif.open_heif(io.BytesIO(data))  # reads the boxes, decodes nothing
        if len(heif) == 0:  # boxes that parse, none an image libheif can use (a bad hvcC)
            raise ValueError("libheif finds no image in it")
        check_pixel_cap(*heif.size, max_pixels)
        image = heif.to_pillow()
    except (CaptureRejected, MemoryError):
        raise  # MemoryError: decode_capture refuses without blaming the file
    except SyntaxError as error:  # pillow-heif's signal for a codec or feature libheif lacks
        message = decoder_error_text(error)
        raise CaptureRejected(Reason.UNSUPPORTED, f"libheif cannot decode it: {message}") from None
    except Exception as error:  # anything else pillow-heif lets through is damage too
        message = decoder_error_text(error)
        if ends_inside_a_box(data):
            raise CaptureRejected(Reason.TRUNCATED, f"HEIC ends early: {message}") from None
        raise CaptureRejected(Reason.CORRUPT, f"HEIC does not decode: {message}") from None
    exif = _read_exif(heif.info.get("exif"))
    if ORIENTATION_TAG in exif:
        exif[ORIENTATION_TAG] = 1
    return Decoded(reduce_for_preview(image), *image.size, heif.mode, exif)


def open_upright(data: bytes, max_pixels: int) -> Image.Image:
    """The primary image, upright (libheif applies `irot`/`imir`), fully decoded once
    its size is within `max_pixels`."""
    try:
        import pillow_heif
    except ImportError:
        raise missing_library("HEIC", "pillow-heif", "heic") from None
    heif = pillow_heif.open_heif(io.BytesIO(data))  # reads the boxes, decodes nothing
    check_pixel_cap(*heif.size, max_pixels)
    return heif.to_pillow()


def _read_exif(block: bytes | None) -> Image.Exif:
    exif = Image.Exif()
    if block:
        try:
            exif.load(block)
        except Exception:  # a broken EXIF block must not hide whether the pixels decode
            return Image.Exif()
    return exif
