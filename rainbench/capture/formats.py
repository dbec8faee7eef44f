"""Which files are captures and what format their bytes really are.

The extension decides whether a file is considered at all (sidecars such as `.xmp`
or `.csv` are ignored); the magic bytes decide the format, so a PNG named `.jpg`
is read as the PNG it is. Videos (MP4, QuickTime, Matroska/WebM) are captures too.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Format:
    name: str  # the manifest's `format` value
    ext: str  # the tar member extension
    raw: bool = False  # camera RAW: stored as is, plus a rendered preview
    video: bool = False  # a video: stored as is, frames addressed by index


FORMATS = {
    f.name: f
    for f in (
        Format("jpeg", "jpg"),
        Format("png", "png"),
        Format("tiff", "tiff"),
        Format("webp", "webp"),
        Format("heic", "heic"),
        Format("dng", "dng", raw=True),
        Format("cr2", "cr2", raw=True),
        Format("nef", "nef", raw=True),
        Format("arw", "arw", raw=True),
        Format("mp4", "mp4", video=True),
        Format("mov", "mov", video=True),
        Format("mkv", "mkv", video=True),
    )
}

CAPTURE_SUFFIXES = {
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".jpe": "jpeg",
    ".mpo": "jpeg",  # a stereo camera's pictures: JPEGs that its MPF index chains
    ".png": "png",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".webp": "webp",
    ".heic": "heic",
    ".heif": "heic",
    ".hif": "heic",
    ".dng": "dng",
    ".cr2": "cr2",
    ".nef": "nef",
    ".arw": "arw",
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".mov": "mov",
    ".qt": "mov",
    ".mkv": "mkv",
    ".webm": "mkv",
}


_HEIF_BRANDS = {b"heic", b"heix", b"mif1", b"msf1", b"heim", b"heis"}
# Major brands of ISO-BMFF video files; "qt  " is QuickTime's.
_VIDEO_BRANDS = {b"isom", b"mp41", b"mp42", b"avc1", b"M4V ", b"M4VP", b"MSNV", b"XAVC"}
_VIDEO_BRANDS |= {b"iso" + bytes([c]) for c in b"2345689"} | {b"3gp4", b"3gp5", b"3gp6", b"3g2a"}
# A QuickTime file from before the ftyp box starts with one of these.
_QUICKTIME_FIRST_BOXES = {b"moov", b"mdat", b"wide", b"free", b"skip"}
_EBML = b"\x1a\x45\xdf\xa3"  # Matroska and WebM


def is_capture_name(name: str) -> bool:
    """True for a file name that ingest considers: a known extension, not hidden."""
    if name.startswith("."):
        return False
    dot = name.rfind(".")
    return dot > 0 and name[dot:].lower() in CAPTURE_SUFFIXES


def sniff(data: bytes, name: str) -> Format | None:
    """The format of `data`, from its magic bytes; None when it is no known image or video.

    TIFF-based camera RAW files share TIFF's magic, so for those the extension
    picks which RAW flavour (or plain TIFF) it is.
    """
    head = data[:16]
    suffix = name[name.rfind(".") :].lower() if "." in name else ""
    if head.startswith(b"\xff\xd8\xff"):
        return FORMATS["jpeg"]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return FORMATS["png"]
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return FORMATS["webp"]
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        return FORMATS["heic"]
    if head[4:8] == b"ftyp" and head[8:12] == b"qt  ":
        return FORMATS["mov"]
    if head[4:8] == b"ftyp" and head[8:12] in _VIDEO_BRANDS:
        return FORMATS["mp4"]
    if head[4:8] in _QUICKTIME_FIRST_BOXES and CAPTURE_SUFFIXES.get(suffix) == "mov":
        return FORMATS["mov"]
    if head.startswith(_EBML):
        return FORMATS["mkv"]
    if head[:4] in {b"II*\x00", b"MM\x00*"}:
        named = CAPTURE_SUFFIXES.get(suffix)
        if named and FORMATS[named].raw:
            return FORMATS[named]
        if head[8:10] == b"CR":
            return FORMATS["cr2"]
        return FORMATS["tiff"]
    return None
