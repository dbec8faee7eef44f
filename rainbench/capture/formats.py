"""Which files are captures and what format their bytes really are.

The extension decides whether a file is considered at all (sidecars such as `.xmp`
or `.csv` are ignored); the magic bytes decide the format, so a PNG named `.jpg`
is read as the PNG it is.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Format:
    name: str  # the manifest's `format` value
    ext: str  # the tar member extension
    raw: bool = False  # camera RAW: stored as is, plus a rendered preview


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
    )
}

CAPTURE_SUFFIXES = {
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".jpe": "jpeg",
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
}


_HEIF_BRANDS = {b"heic", b"heix", b"mif1", b"msf1", b"heim", b"heis"}


def is_capture_name(name: str) -> bool:
    """True for a file name that ingest considers: a known extension, not hidden."""
    if name.startswith("."):
        return False
    dot = name.rfind(".")
    return dot > 0 and name[dot:].lower() in CAPTURE_SUFFIXES


def sniff(data: bytes, name: str) -> Format | None:
    """The format of `data`, from its magic bytes; None when it is no known image.

    TIFF-based camera RAW files share TIFF's magic, so for those the extension
    picks which RAW flavour (or plain TIFF) it is.
    """
    head = data[:16]
    if head.startswith(b"\xff\xd8\xff"):
        return FORMATS["jpeg"]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return FORMATS["png"]
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return FORMATS["webp"]
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        return FORMATS["heic"]
    if head[:4] in {b"II*\x00", b"MM\x00*"}:
        named = CAPTURE_SUFFIXES.get(name[name.rfind(".") :].lower()) if "." in name else None
        if named and FORMATS[named].raw:
            return FORMATS[named]
        if head[8:10] == b"CR":
            return FORMATS["cr2"]
        return FORMATS["tiff"]
    return None
