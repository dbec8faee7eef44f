"""The EXIF facts a capture's manifest row carries: camera, time, exposure and
orientation, and GPS only when the user asked to keep it.
"""

from dataclasses import dataclass
from datetime import datetime

from PIL import Image

_MAKE, _MODEL, _ORIENTATION, _DATETIME = 0x010F, 0x0110, 0x0112, 0x0132
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_EXPOSURE_TIME, _F_NUMBER, _ISO = 0x829A, 0x829D, 0x8827
_DATETIME_ORIGINAL, _FOCAL_LENGTH, _LENS_MODEL = 0x9003, 0x920A, 0xA434
_SUBSEC, _SUBSEC_ORIGINAL = 0x9290, 0x9291
# The longest make, model or lens name kept: far past any camera's or lens's name.
MAX_TEXT = 1024


@dataclass(frozen=True)
class CaptureExif:
    camera_make: str | None = None
    camera_model: str | None = None
    lens_model: str | None = None
    # DateTimeOriginal (its SubSecTimeOriginal too: bursts are seconds apart), camera-local
    captured_at: datetime | None = None
    exposure_time: float | None = None  # seconds
    f_number: float | None = None
    iso: int | None = None
    focal_length_mm: float | None = None
    orientation: int | None = None
    gps_lat: float | None = None  # filled only with --keep-gps
    gps_lon: float | None = None
    gps_alt: float | None = None


def read_exif(exif: Image.Exif, keep_gps: bool = False) -> CaptureExif:
    """Extract the manifest's EXIF fields; unreadable values become None, never errors."""
    sub = _ifd(exif, _EXIF_IFD)
    lat = lon = alt = None
    if keep_gps:
        lat, lon, alt = _gps(_ifd(exif, _GPS_IFD))
    iso = sub.get(_ISO)
    if isinstance(iso, tuple):  # some cameras write ISOSpeedRatings as a list
        iso = iso[0] if iso else None
    return CaptureExif(
        camera_make=_text(exif.get(_MAKE)),
        camera_model=_text(exif.get(_MODEL)),
        lens_model=_text(sub.get(_LENS_MODEL)),
        captured_at=_captured_at(exif, sub),
        exposure_time=_number(sub.get(_EXPOSURE_TIME)),
        f_number=_number(sub.get(_F_NUMBER)),
        iso=_integer(iso),
        focal_length_mm=_number(sub.get(_FOCAL_LENGTH)),
        orientation=_orientation(exif.get(_ORIENTATION)),
        gps_lat=lat,
        gps_lon=lon,
        gps_alt=alt,
    )


def _ifd(exif: Image.Exif, tag: int) -> dict:
    try:
        return dict(exif.get_ifd(tag))
    except Exception:  # a broken sub-IFD leaves its fields empty
        return {}


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    value = value.replace("\x00", "").strip()
    # EXIF sets no length: a text of MBs is no camera's name, and would be carried
    # through every record of the capture (the scan journal, the manifest).
    return value if value and len(value) <= MAX_TEXT else None


def _number(value: object) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return number if number == number and abs(number) != float("inf") else None


def _integer(value: object) -> int | None:
    number = _number(value)
    return int(number) if number is not None else None


def _orientation(value: object) -> int | None:
    number = _integer(value)
    return number if number is not None and 1 <= number <= 8 else None


def _timestamp(value: object) -> datetime | None:
    text = _text(value)
    if not text:
        return None
    try:
        return datetime.strptime(text[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None


def _captured_at(exif: Image.Exif, sub: dict) -> datetime | None:
    """DateTimeOriginal with its fraction of a second, else DateTime with its own."""
    if sub.get(_DATETIME_ORIGINAL):
        stamp, fraction = _timestamp(sub.get(_DATETIME_ORIGINAL)), sub.get(_SUBSEC_ORIGINAL)
    else:
        stamp, fraction = _timestamp(exif.get(_DATETIME)), sub.get(_SUBSEC)
    digits = (_text(fraction) or "").strip()
    if stamp is None or not digits.isdigit():
        return stamp
    return stamp.replace(microsecond=int(digits[:6].ljust(6, "0")))


def _gps(gps: dict) -> tuple[float | None, float | None, float | None]:
    def degrees(value: object, ref: object, negative: str) -> float | None:
        try:
            d, m, s = (float(part) for part in value)
        except (TypeError, ValueError, ZeroDivisionError):
            return None
        sign = -1.0 if _text(ref) == negative else 1.0
        return _number(sign * (d + m / 60 + s / 3600))  # a 0/0 part is NaN: unreadable

    lat = degrees(gps.get(2), gps.get(1), "S")
    lon = degrees(gps.get(4), gps.get(3), "W")
    alt = _number(gps.get(6))
    if alt is not None and gps.get(5) in (1, b"\x01"):
        alt = -alt
    return lat, lon, alt


def without_app1(jpeg: bytes) -> bytes:
    """`jpeg` without its APP1 segments (EXIF, XMP), its picture untouched: for a decoder
    that would read them itself (orientation) where the manifest's word is the one to
    follow, or a copy that must carry no metadata."""
    kept, position = bytearray(jpeg[:2]), 2
    while position + 4 <= len(jpeg) and jpeg[position] == 0xFF and jpeg[position + 1] != 0xDA:
        if jpeg[position + 1] == 0xFF:  # a fill byte before a marker
            kept.append(0xFF)
            position += 1
            continue
        end = position + 2 + int.from_bytes(jpeg[position + 2 : position + 4], "big")
        if jpeg[position + 1] != 0xE1:
            kept += jpeg[position:end]
        position = end
    return bytes(kept + jpeg[position:])  # from the start of scan on, untouched
