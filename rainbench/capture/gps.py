"""GPS removal from capture bytes: ingest stores a capture's original bytes, so location
is taken out of its metadata without re-encoding a pixel, and a capture that may still
hold one afterwards is refused. Edits keep lengths (zeroed IFDs, XMP blanked with
spaces), so no offset moves; only bytes after the picture's end are cut, and PNG chunks,
which nothing points at by offset, dropped.
"""

import bisect
import re
import struct
import zlib
from collections.abc import Callable, Iterator
from typing import NamedTuple

from rainbench.capture import bmff
from rainbench.capture.formats import Format
from rainbench.capture.location import location_hint, xmp_location_spans
from rainbench.capture.reject import CaptureRejected, Reason
from rainbench.capture.video import strip_location

_GPS_IFD = 0x8825
_EXIF_IFD = 0x8769
_SUB_IFDS = 0x014A
_XMP_TAG = 0x02BC
_MP_ENTRY = 0xB002
# IFDs the walk does not need but must know are there: Interop, Sony's SR2Private.
_OTHER_IFDS = {0xA005, 0xC634}
# Tags placing data by offset, each with the tag giving the lengths: strips, tiles and
# the JPEG thumbnail of IFD1.
_THUMBNAIL, _THUMBNAIL_LENGTH = 0x0201, 0x0202
_PLACED = {0x0111: 0x0117, 0x0144: 0x0145, _THUMBNAIL: _THUMBNAIL_LENGTH}
_PLACED_TAGS = {*_PLACED, *_PLACED.values()}
# A camera's private data, which may hold a TIFF structure of its own (Nikon's) with a
# GPS directory in it.
_MAKER_NOTE = 0x927C
# Photoshop's image resources (IPTC, XMP, EXIF among them), as Photoshop saves a TIFF.
_PHOTOSHOP_TAG = 0x8649
# How deep EXIF inside EXIF (a thumbnail's, a maker note's) is cleaned: cameras nest it
# once; a hostile file nesting it without end would cost a walk per level.
_MAX_NESTING = 2
# GPSLatitude, GPSLongitude and their destination twins, the coordinates of a location.
_GPS_COORDINATES = {0x0002, 0x0004, 0x0014, 0x0016}

# Bytes per value of each TIFF field type; 13 is the IFD type EXIF uses for pointers.
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
_POINTER_TYPES = {4, 13}

_EXIF_HEADER = b"Exif\0\0"
_JPEG_XMP = b"http://ns.adobe.com/xap/1.0/\0"
_JPEG_XMP_EXTENSION = b"http://ns.adobe.com/xmp/extension/\0"
_JPEG_MPF = b"MPF\0"
_JPEG_PHOTOSHOP = b"Photoshop 3.0\0"
_IPTC_RESOURCE = 0x0404
# IPTC IIM datasets of the application record (2) that name a place: content location
# code and name, city, sub-location, province or state, country code and country name.
_IIM_PLACES = {26, 27, 90, 92, 95, 100, 101}
_IIM_PLACE_TAG = re.compile(rb"\x1c\x02[" + re.escape(bytes(sorted(_IIM_PLACES))) + rb"]")
_PNG_XMP = b"XML:com.adobe.xmp"
# ImageMagick's hex-encoded profiles in PNG text chunks; Pillow reads the EXIF one too.
_PNG_RAW_EXIF = {b"Raw profile type exif", b"Raw profile type APP1"}
_PNG_RAW_XMP = b"Raw profile type xmp"
_PNG_RAW_PROFILE = b"Raw profile type "
# An XMP text chunk inflating beyond this is a decompression bomb, not metadata.
_MAX_INFLATED = 64 << 20


class _Edit(NamedTuple):
    start: int
    stop: int
    data: bytes  # replaces data[start:stop]


def strip_gps(data: bytes, fmt: Format) -> bytes:
    """Return `data` with every GPS record removed.

    `data` itself (the same object) comes back when there was none, so the common case
    costs no copy; otherwise the result is one copy with only metadata bytes changed.
    """
    if fmt.video:
        return strip_location(data, fmt)
    edits = _CONTAINERS[fmt.name](data)
    return _apply(data, edits) if edits else data


def has_gps(data: bytes, fmt: Format) -> bool:
    """True when `strip_gps` would change `data`: a GPS IFD with entries, an XMP location
    property, other metadata naming a location, or bytes after the picture's end (a
    video: a location record in its container)."""
    if fmt.video:
        return strip_gps(data, fmt) is not data
    return bool(_CONTAINERS[fmt.name](data))


def _apply(data: bytes, edits: list[_Edit]) -> bytes:
    """`data` with `edits` made, built with a single copy."""
    view = memoryview(data)
    parts: list[bytes | memoryview] = []
    at = 0
    for edit in sorted(edits):
        if edit.start < at:
            raise CaptureRejected(Reason.CORRUPT_EXIF, "GPS records overlap other metadata")
        parts += (view[at : edit.start], edit.data)
        at = edit.stop
    parts.append(view[at:])
    return b"".join(parts)


def _payload_edits(
    data: bytes, pieces: list[tuple[int, int]], find: Callable[[bytes], list[_Edit]]
) -> list[_Edit]:
    """Run `find` on the payload stored as `pieces` of `data`; its length-preserving edits
    are mapped back onto the pieces they fall in."""
    view = memoryview(data)
    edits = []
    for edit in find(b"".join(view[start:stop] for start, stop in pieces)):
        at = 0
        for start, stop in pieces:
            low, high = max(edit.start, at), min(edit.stop, at + stop - start)
            if low < high:
                cut = edit.data[low - edit.start : high - edit.start]
                edits.append(_Edit(start + low - at, start + high - at, cut))
            at += stop - start
    return edits


def _xmp_edits(buf: bytes, start: int, stop: int) -> list[_Edit]:
    """Blank every location property of the XMP in buf[start:stop] with spaces (harmless
    in XML)."""
    return [
        _Edit(low, high, b" " * (high - low)) for low, high in xmp_location_spans(buf, start, stop)
    ]


def _trailer_edits(data: bytes, end: int) -> list[_Edit]:
    """Bytes after the end of the picture (a motion photo's video, an appended file) are
    no part of it, and may carry anything: they are cut off. Padding (all 0x00 or all
    0xFF, as some cameras write) can carry nothing and stays."""
    trailer = data[end:]
    if not trailer.strip(b"\0") or not trailer.strip(b"\xff"):
        return []
    return [_Edit(end, len(data), b"")]


def _refuse_location_left(
    data: bytes, start: int, stop: int, edits: list[_Edit], where: str
) -> None:
    """Refuse a metadata block that still names a location once `edits` are made in it:
    the location is somewhere GPS removal does not clean field by field."""
    block = _apply(
        data[start:stop],
        [
            _Edit(e.start - start, e.stop - start, e.data)
            for e in edits
            if start <= e.start and e.stop <= stop
        ],
    )
    if hint := location_hint(block):
        raise CaptureRejected(
            Reason.GPS_UNCERTAIN, f"{where} names a location outside its GPS directory: {hint!r}"
        )


def _other_metadata(body: bytes, where: str, depth: int = 0) -> bytes | None:
    """`body`, metadata of a kind GPS removal does not otherwise parse (another JPEG
    application segment or comment, another WebP or PNG chunk), with GPS taken out of
    any EXIF it holds, found by its TIFF header (ExifTool reads an APP1 headed "EXIF\\0\\0"
    or "Exif\\0\\xff" too), and the location properties of any XMP it holds blanked
    (ExifTool reads an APP1 or a WebP chunk headed "XMP\\0"); None where it still names a
    location: it is to be zeroed or dropped whole."""
    edits = _embedded_tiff_edits(body, where, depth)
    cleaned = _apply(body, edits) if edits else body
    marks = [at for mark in _XMP_MARKS if (at := cleaned.find(mark)) >= 0]
    if marks:  # the packet is read from the tag declaring them, after any binary header
        try:
            edits = _xmp_edits(cleaned, max(cleaned.rfind(b"<", 0, min(marks)), 0), len(cleaned))
        except CaptureRejected:
            return None
        cleaned = _apply(cleaned, edits) if edits else cleaned
    return None if location_hint(cleaned) else cleaned


# Every XMP packet declares RDF's namespace, and most are wrapped in x:xmpmeta.
_XMP_MARKS = (b"22-rdf-syntax-ns#", b"adobe:ns:meta/")


def _zeroed_unless_clean(
    data: bytes,
    start: int,
    stop: int,
    where: str,
    depth: int = 0,
    fields: Callable[[bytes], list[_Edit]] | None = None,
) -> list[_Edit]:
    """Edits cleaning data[start:stop], metadata that no offset points into, as
    `_other_metadata` does, or zeroing it whole where it still names a location; `fields`
    are the edits of the fields of it that name a place (IPTC's), made after."""
    body = data[start:stop]
    cleaned = _other_metadata(body, where, depth)
    if cleaned is None:
        return [_Edit(start, stop, bytes(stop - start))]
    if fields is not None and (found := fields(cleaned)):
        cleaned = _apply(cleaned, found)
    return [] if cleaned is body else [_Edit(start, stop, cleaned)]


def _exif_edits(buf: bytes, start: int, stop: int, where: str) -> list[_Edit]:
    """GPS edits for an EXIF block that may or may not carry the "Exif\\0\\0" prefix."""
    if buf.startswith(_EXIF_HEADER, start):
        start += len(_EXIF_HEADER)
    return _tiff_edits(buf, start, stop, where)


class _Tiff:
    """One TIFF structure in `buf`: its header at `base`, nothing of it past `end`.
    Offsets inside it count from `base`; positions returned index `buf`."""

    def __init__(self, buf: bytes, base: int, end: int, where: str) -> None:
        self.buf, self.base, self.end, self.where = buf, base, end, where
        head = buf[base : base + 4]
        if head not in (b"II*\0", b"MM\0*") or end - base < 8:
            raise self.broken(f"no TIFF header (the block starts {head!r})")
        self.order = "<" if head == b"II*\0" else ">"

    def broken(self, what: str) -> CaptureRejected:
        return CaptureRejected(Reason.CORRUPT_EXIF, f"{self.where}: {what}")

    def u16(self, pos: int) -> int:
        return struct.unpack_from(self.order + "H", self.buf, pos)[0]

    def u32(self, pos: int) -> int:
        return struct.unpack_from(self.order + "I", self.buf, pos)[0]

    def ifd(self, offset: int, name: str) -> tuple[int, int]:
        """Position and entry count of the IFD at `offset`, once it is known to fit."""
        pos = self.base + offset
        if offset < 8 or pos + 2 > self.end:
            raise self.broken(
                f"{name} offset {offset} is outside the {self.end - self.base}-byte block"
            )
        count = self.u16(pos)
        if pos + 6 + 12 * count > self.end:
            raise self.broken(f"{name} at offset {offset} with {count} entries runs past the block")
        return pos, count

    def entries(self, pos: int, count: int) -> range:
        return range(pos + 2, pos + 2 + 12 * count, 12)

    def value(self, entry: int) -> tuple[int, int]:
        """Where the value of the entry at `entry` lies: inside the entry when it fits there."""
        kind, count = self.u16(entry + 2), self.u32(entry + 4)
        if kind not in _TYPE_SIZES:
            raise self.broken(f"tag 0x{self.u16(entry):04X} has unknown type {kind}")
        size = _TYPE_SIZES[kind] * count
        if size <= 4:
            return entry + 8, entry + 8 + size
        start = self.base + self.u32(entry + 8)
        if start + size > self.end:
            raise self.broken(
                f"tag 0x{self.u16(entry):04X} value ({size} bytes) lies outside the block"
            )
        return start, start + size

    def pointers(self, entry: int) -> list[int]:
        """The IFD offsets an IFD-pointer entry holds."""
        if self.u16(entry + 2) not in _POINTER_TYPES:
            raise self.broken(
                f"IFD pointer tag 0x{self.u16(entry):04X} has type {self.u16(entry + 2)}"
            )
        start, stop = self.value(entry)
        return [self.u32(pos) for pos in range(start, stop, 4)]

    def lenient_value(self, entry: int) -> tuple[int, int] | None:
        """Where the value of the entry at `entry` lies, or None where it does not lie
        inside the block: for entries read leniently (empty when its type is unknown)."""
        size = _TYPE_SIZES.get(self.u16(entry + 2), 0) * self.u32(entry + 4)
        start = entry + 8 if size <= 4 else self.base + self.u32(entry + 8)
        return (start, start + size) if start + size <= self.end else None

    def thumbnail(self, pos: int, count: int) -> tuple[int, int] | None:
        """Where the JPEG the IFD at `pos` places by JPEGInterchangeFormat lies (IFD1's
        thumbnail, a RAW's preview), cut at the block's end; None where it places none."""
        placed = {}
        for entry in self.entries(pos, count):
            tag, kind = self.u16(entry), self.u16(entry + 2)
            if tag in (_THUMBNAIL, _THUMBNAIL_LENGTH) and kind in (3, 4):
                placed[tag] = self.u16(entry + 8) if kind == 3 else self.u32(entry + 8)
        if len(placed) < 2:
            return None
        start = self.base + placed[_THUMBNAIL]
        stop = min(start + placed[_THUMBNAIL_LENGTH], self.end)
        return (start, stop) if self.buf.startswith(b"\xff\xd8", start, stop) else None

    def accounted(
        self, pos: int, count: int
    ) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """The bytes the IFD at `pos` accounts for: itself, its entries' values, the data
        they place by offset and length, and the other IFDs it points to; and apart, the
        data placed (strips, tiles, a thumbnail: pictures). Read leniently: an entry GPS
        removal does not otherwise need, broken, only accounts for less."""
        spans = [(pos, pos + 6 + 12 * count)]
        arrays: dict[int, tuple[int, ...]] = {}  # offsets and lengths, by tag
        for entry in self.entries(pos, count):
            tag, kind, number = self.u16(entry), self.u16(entry + 2), self.u32(entry + 4)
            value = self.lenient_value(entry)
            if value is None:
                continue
            spans.append(value)
            start = value[0]
            if kind in (3, 4, 13) and (tag in _PLACED_TAGS or tag in _OTHER_IFDS or kind == 13):
                form = "H" if kind == 3 else "I"
                arrays[tag] = struct.unpack_from(f"{self.order}{number}{form}", self.buf, start)
            if kind in _POINTER_TYPES and (tag in _OTHER_IFDS or kind == 13):
                for ifd in (self.base + child for child in arrays[tag]):
                    if ifd + 2 <= self.end:
                        spans.append((ifd, min(ifd + 6 + 12 * self.u16(ifd), self.end)))
        placed = []
        for offsets, lengths in _PLACED.items():
            # a length missing for an offset places nothing the walk can bound
            pairs = zip(arrays.get(offsets, ()), arrays.get(lengths, ()), strict=False)
            for offset, length in pairs:
                placed.append((self.base + offset, min(self.base + offset + length, self.end)))
        return spans + placed, placed


def _tiff_edits(
    buf: bytes,
    base: int,
    end: int,
    where: str,
    others: tuple[int, ...] = (),
    depth: int = 0,
    whole_file: bool = False,
) -> list[_Edit]:
    """Edits that remove the GPS IFDs of the TIFF structure at `base`: each is zeroed with
    its values, and its pointer entry is dropped from the parent IFD. IFDs are followed
    along the IFD0 → IFD1 → … chain and into Exif IFDs and SubIFDs (RAW files); XMP held
    in tag 700 (TIFF, DNG) is blanked too.

    A GPS IFD may understate what it holds (an entry count lowered, a type narrowed), so
    the bytes after each of its parts are zeroed up to the next byte that the rest of the
    structure accounts for: writers lay an IFD's values out right after it, so nothing
    but GPS data lies there. A GPS coordinate entry left in bytes nothing accounts for (a
    GPS IFD unlinked, its pointer aimed elsewhere) is refused as `gps-uncertain`. `others`
    are where other EXIF blocks in `buf` begin, which the zeroing stops at. A JPEG the
    structure places (IFD1's thumbnail), a maker note's own TIFF structure and Photoshop's
    resources (tag 34377: IPTC, XMP, EXIF) are cleaned too, unless this structure is
    already `depth` levels inside others: then refused. Where the structure is the
    `whole_file` (TIFF, RAW), a location its metadata still names once cleaned is refused
    as in any EXIF block, searched outside the pictures it places: a search of every
    pixel would cost more than the rest of ingest."""
    if base == end:  # an empty EXIF block, as some cameras write, carries nothing
        return []
    tiff = _Tiff(buf, base, end, where)
    walked: dict[int, int] = {}  # start → end of every IFD: GPS zeroing must not touch one
    pictures: list[tuple[int, int]] = []  # strips, tiles, thumbnails: nor one of these
    parents: dict[int, int] = {}  # position → entry count of the IFDs pointing at a GPS IFD
    gps: list[int] = []
    xmp: list[tuple[int, int]] = []
    thumbnails: list[tuple[int, int]] = []
    maker_notes: list[tuple[int, int]] = []
    resources: list[tuple[int, int]] = []  # Photoshop's
    # This header, the others after it, and all but GPS
    accounted = [(header, header + 8) for header in (base, *others) if header >= base]
    # (name, offset, the chain index of its next IFD, or None where no chain is followed)
    todo: list[tuple[str, int, int | None]] = [("IFD0", tiff.u32(base + 4), 1)]
    while todo:
        name, offset, next_index = todo.pop()
        pos, count = tiff.ifd(offset, name)
        if pos in walked:
            raise tiff.broken(f"{name} at offset {offset} is reached twice (an IFD loop)")
        walked[pos] = pos + 6 + 12 * count
        spans, placed = tiff.accounted(pos, count)
        accounted += spans
        pictures += placed
        for entry in tiff.entries(pos, count):
            tag = tiff.u16(entry)
            if tag == _GPS_IFD:
                gps += [child for child in tiff.pointers(entry) if child]
                parents[pos] = count
            elif tag in (_EXIF_IFD, _SUB_IFDS):
                child_name = "Exif IFD" if tag == _EXIF_IFD else "SubIFD"
                todo += [(child_name, child, None) for child in tiff.pointers(entry) if child]
            elif tag == _XMP_TAG:
                xmp.append(tiff.value(entry))
            elif tag == _MAKER_NOTE and (note := tiff.lenient_value(entry)):
                maker_notes.append(note)
            elif tag == _PHOTOSHOP_TAG and (found := tiff.lenient_value(entry)):
                resources.append(found)
        if thumbnail := tiff.thumbnail(pos, count):
            thumbnails.append(thumbnail)
        if next_index is not None and (following := tiff.u32(pos + 2 + 12 * count)):
            todo.append((f"IFD{next_index}", following, next_index + 1))

    zeroed: list[tuple[int, int]] = []
    for offset in gps:
        pos, count = tiff.ifd(offset, "GPS IFD")
        zeroed.append((pos, pos + 6 + 12 * count))
        zeroed += [tiff.value(entry) for entry in tiff.entries(pos, count)]
    pictures = _merged(pictures)
    for start, stop in zeroed:
        for ifd_start, ifd_stop in walked.items():
            if start < ifd_stop and ifd_start < stop:
                raise tiff.broken(f"GPS data at offset {start - base} overlaps an IFD")
        if _next_accounted(pictures, start, end) < stop:
            raise tiff.broken(f"GPS data at offset {start - base} overlaps the picture's data")
    known = _merged(accounted)
    zeroed = _merged([(start, _next_accounted(known, stop, end)) for start, stop in zeroed])
    _refuse_stray_gps(tiff, _merged(known + zeroed))
    edits = [
        _Edit(start, stop, bytes(stop - start))
        for start, stop in zeroed
        if buf[start:stop].count(0) < stop - start
    ]
    if edits:
        edits += [_without_gps_entries(tiff, pos, count) for pos, count in parents.items()]
    for start, stop in xmp:
        edits += _xmp_edits(buf, start, stop)
    maker_notes = [note for note in maker_notes if _TIFF_HEADER.search(buf, *note)]
    holding_exif = [block for block in resources if _TIFF_HEADER.search(buf, *block)]
    if (thumbnails or maker_notes or holding_exif) and depth >= _MAX_NESTING:
        raise CaptureRejected(
            Reason.GPS_UNCERTAIN, f"{where}: EXIF nested in EXIF more than {depth} deep"
        )
    for start, stop in thumbnails:
        edits += _thumbnail_edits(buf, start, stop, where, depth + 1)
    for start, stop in maker_notes:
        edits += _nested_tiff_edits(buf, start, stop, f"{where} maker note", depth + 1)
    for start, stop in resources:
        edits += _zeroed_unless_clean(
            buf,
            start,
            stop,
            f"{where} Photoshop resources",
            depth + 1,
            lambda body: _photoshop_edits(body, 0, len(body)),
        )
    if whole_file:
        at = base
        for start, stop in [*pictures, (end, end)]:
            if at < start:
                _refuse_location_left(buf, at, min(start, end), edits, where)
            at = max(at, stop)
    return edits


def _thumbnail_edits(buf: bytes, start: int, stop: int, where: str, depth: int) -> list[_Edit]:
    """GPS edits for the JPEG in buf[start:stop] that an EXIF block holds (a thumbnail, a
    RAW's preview): its own EXIF, XMP and other segments, cleaned as a JPEG's are. One
    whose segments cannot be walked (cut short) has its EXIF found by TIFF header."""
    thumbnail = bytes(buf[start:stop])
    try:
        found = _jpeg_picture_edits(thumbnail, 0, depth)[0]
    except CaptureRejected as error:
        if error.reason not in (Reason.TRUNCATED, Reason.CORRUPT):
            raise
        return _nested_tiff_edits(buf, start, stop, f"{where} thumbnail", depth)
    return [_Edit(start + e.start, start + e.stop, e.data) for e in found]


def _nested_tiff_edits(buf: bytes, start: int, stop: int, where: str, depth: int) -> list[_Edit]:
    """GPS edits for the first TIFF structure in buf[start:stop] (a maker note's), taken to
    run to `stop`: the GPS directory of another after it is a stray to that walk."""
    header = _TIFF_HEADER.search(buf, start, stop)
    return [] if header is None else _tiff_edits(buf, header.start(), stop, where, depth=depth)


def _next_accounted(known: list[tuple[int, int]], pos: int, end: int) -> int:
    """The first position at or after `pos` inside one of the sorted, disjoint `known`
    spans; `end` when none is."""
    index = bisect.bisect_right(known, pos, key=lambda span: span[1])
    return max(known[index][0], pos) if index < len(known) else end


def _refuse_stray_gps(tiff: _Tiff, accounted: list[tuple[int, int]]) -> None:
    """Refuse a GPS coordinate entry (a latitude or longitude, RATIONAL × 3) in the bytes
    between the sorted, disjoint `accounted` spans: a GPS IFD the walk cannot reach."""
    starts = [start for start, _ in accounted[1:]] + [tiff.end]
    gaps = zip([stop for _, stop in accounted], starts, strict=True)
    signatures = [struct.pack(tiff.order + "HI", kind, 3) for kind in (5, 10)]
    for start, stop in gaps:
        for signature in signatures:
            at = tiff.buf.find(signature, start + 2, stop)
            while at >= 0:
                if tiff.u16(at - 2) in _GPS_COORDINATES:
                    raise CaptureRejected(
                        Reason.GPS_UNCERTAIN,
                        f"{tiff.where}: a GPS coordinate entry at offset {at - 2 - tiff.base}"
                        " lies outside any IFD",
                    )
                at = tiff.buf.find(signature, at + 1, stop)


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping or touching spans joined (GPS values may be shared or adjacent)."""
    merged: list[tuple[int, int]] = []
    for start, stop in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], stop))
        elif start < stop:
            merged.append((start, stop))
    return merged


def _without_gps_entries(tiff: _Tiff, pos: int, count: int) -> _Edit:
    """The IFD at `pos` rewritten in place without its GPS pointers: later entries move
    up, the next-IFD offset follows them and the freed bytes at the end are zeroed."""
    stop = pos + 6 + 12 * count
    kept = [tiff.buf[e : e + 12] for e in tiff.entries(pos, count) if tiff.u16(e) != _GPS_IFD]
    body = struct.pack(tiff.order + "H", len(kept)) + b"".join(kept) + tiff.buf[stop - 4 : stop]
    return _Edit(pos, stop, body + bytes(stop - pos - len(body)))


def _jpeg_edits(data: bytes) -> list[_Edit]:
    """GPS edits for a JPEG file: the primary picture, the further pictures of a
    multi-picture file (depth maps, MPO stereo pairs) found through its MPF index, and
    whatever follows the last of them cut off."""
    edits, end, further = _jpeg_picture_edits(data, 0)
    for soi in further:
        found, picture_end, _ = _jpeg_picture_edits(data, soi)
        edits += found
        end = max(end, picture_end)
    return edits + _trailer_edits(data, end)


def _jpeg_picture_edits(
    data: bytes, soi: int, depth: int = 0
) -> tuple[list[_Edit], int, list[int]]:
    """GPS edits for the JPEG picture at `soi`, where it ends, and where the further
    pictures its MPF index lists start. Every segment counts, those between the scans of
    a progressive picture too: EXIF and XMP are cleaned field by field, any other
    application segment or comment that names a location is zeroed."""
    edits: list[_Edit] = []
    extended: dict[bytes, list[tuple[int, int, int]]] = {}  # GUID → (offset, start, stop)
    further: list[int] = []
    segments, end = _jpeg_segments(data, soi)
    for marker, start, stop in segments:
        if marker == 0xE1 and data.startswith(_EXIF_HEADER, start):
            found = _tiff_edits(data, start + len(_EXIF_HEADER), stop, "JPEG EXIF", depth=depth)
            _refuse_location_left(data, start, stop, found, "JPEG EXIF")
            edits += found
        elif marker == 0xE1 and data.startswith(_JPEG_XMP, start):
            edits += _xmp_edits(data, start + len(_JPEG_XMP), stop)
        elif marker == 0xE1 and data.startswith(_JPEG_XMP_EXTENSION, start):
            # Extended XMP is one packet split over segments: GUID, full length, offset.
            head = start + len(_JPEG_XMP_EXTENSION)
            if head + 40 > stop:
                raise CaptureRejected(Reason.CORRUPT_EXIF, "JPEG extended XMP segment too short")
            guid = data[head : head + 32]
            (offset,) = struct.unpack_from(">I", data, head + 36)
            extended.setdefault(guid, []).append((offset, head + 40, stop))
        elif marker == 0xE2 and soi == 0 and data.startswith(_JPEG_MPF, start):
            further = _mpf_images(data, start + len(_JPEG_MPF), stop)
        elif marker == 0xED and data.startswith(_JPEG_PHOTOSHOP, start):
            edits += _zeroed_unless_clean(
                data,
                start,
                stop,
                "JPEG Photoshop resources",
                depth,
                lambda body: _photoshop_edits(body, len(_JPEG_PHOTOSHOP), len(body)),
            )
        elif 0xE0 <= marker <= 0xEF or marker == 0xFE:
            edits += _zeroed_unless_clean(data, start, stop, f"JPEG segment 0x{marker:02X}", depth)
    for chunks in extended.values():
        pieces = [(start, stop) for _, start, stop in sorted(chunks)]
        edits += _payload_edits(data, pieces, _xmp_in)
    return edits, end, further


def _photoshop_edits(data: bytes, pos: int, stop: int) -> list[_Edit]:
    """Zero the place names (city, sub-location, country, …) of the IPTC record among
    the Photoshop image resources in data[pos:stop]. A resource cut off by the segment's
    end (one continued in the next) is read as far as it goes; bytes that are no resource
    are refused when they hold a place dataset's tag."""
    edits: list[_Edit] = []
    while pos + 12 <= stop and data[pos : pos + 4].isalnum():
        resource = int.from_bytes(data[pos + 4 : pos + 6], "big")
        name = pos + 6 + (data[pos + 6] + 2) // 2 * 2  # a Pascal string padded to even
        if name + 4 > stop:
            break
        start = name + 4
        end = min(stop, start + int.from_bytes(data[name:start], "big"))
        if resource == _IPTC_RESOURCE:
            edits += _iptc_edits(data, start, end)
        pos = end + (end - start) % 2
    if pos < stop and _IIM_PLACE_TAG.search(data, pos, stop):
        raise CaptureRejected(
            Reason.GPS_UNCERTAIN,
            "JPEG Photoshop resources hold an IPTC place name where no resource is read",
        )
    return edits


def _iptc_edits(data: bytes, pos: int, stop: int) -> list[_Edit]:
    """Zero the values of the IPTC IIM datasets in data[pos:stop] that name a place."""
    edits = []
    while pos + 5 <= stop and data[pos] == 0x1C:
        record, dataset = data[pos + 1], data[pos + 2]
        size, start = int.from_bytes(data[pos + 3 : pos + 5], "big"), pos + 5
        if size & 0x8000:  # an extended dataset: its length in the next size & 0x7FFF bytes
            start += size & 0x7FFF
            size = int.from_bytes(data[pos + 5 : start], "big")
        if start + size > stop:
            raise CaptureRejected(Reason.CORRUPT_EXIF, "a JPEG IPTC dataset runs past its block")
        if record == 2 and dataset in _IIM_PLACES:
            edits.append(_Edit(start, start + size, bytes(size)))
        pos = start + size
    if _IIM_PLACE_TAG.search(data, pos, stop):
        raise CaptureRejected(
            Reason.GPS_UNCERTAIN, "JPEG IPTC holds a place name after bytes that are no dataset"
        )
    return edits


# In entropy-coded data a 0xFF is followed by a stuffed 0x00 or a restart marker; any
# other byte after it is the next segment's marker.
_JPEG_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def _jpeg_segments(data: bytes, pos: int) -> tuple[list[tuple[int, int, int]], int]:
    """Marker, payload start and payload end of every segment of the JPEG picture whose
    start-of-image marker is at `pos`, and the position just after its end-of-image
    marker. Entropy-coded data is skipped; a marker the standard does not define found in
    it is taken as part of it, as decoders do."""
    segments = []
    pos += 2
    while True:
        if pos + 2 > len(data):
            raise CaptureRejected(Reason.TRUNCATED, "JPEG ends before its end-of-image marker")
        if data[pos] != 0xFF:
            raise CaptureRejected(Reason.CORRUPT, f"JPEG marker expected at offset {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # a fill byte before the marker
            pos += 1
            continue
        if marker == 0xD9:  # end of image
            return segments, pos + 2
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        stop = pos + 2 + length
        if length < 2 or stop > len(data):
            raise CaptureRejected(
                Reason.TRUNCATED, f"JPEG segment at offset {pos} runs past the end"
            )
        segments.append((marker, pos + 4, stop))
        pos = stop
        if marker == 0xDA:  # start of scan: its entropy-coded data runs to the next marker
            pos = _next_marker(data, pos)


def _next_marker(data: bytes, pos: int) -> int:
    while found := _JPEG_NEXT_MARKER.search(data, pos):
        if found[0][1] >= 0xC0 or found[0][1] == 0x01:
            return found.start()
        pos = found.end()
    raise CaptureRejected(
        Reason.TRUNCATED, "JPEG ends inside a scan, before its end-of-image marker"
    )


def _mpf_images(data: bytes, base: int, end: int) -> list[int]:
    """Where the further images of a multi-picture JPEG start; MPF offsets count from
    the TIFF header inside the APP2 segment, the first image's entry is 0."""
    mpf = _Tiff(data, base, end, "JPEG MPF")
    pos, count = mpf.ifd(mpf.u32(base + 4), "MP Index IFD")
    starts = []
    for entry in mpf.entries(pos, count):
        if mpf.u16(entry) == _MP_ENTRY:
            start, stop = mpf.value(entry)
            # 16 bytes each: attributes, size, offset, two dependent-image entries
            starts += [base + mpf.u32(at + 8) for at in range(start, stop - 15, 16)]
    starts = sorted(set(starts) - {base})
    for start in starts:
        if not data.startswith(b"\xff\xd8", start):
            raise mpf.broken(f"an image entry points at offset {start}, where no JPEG starts")
    return starts


def _png_edits(data: bytes) -> list[_Edit]:
    """GPS edits for a PNG: EXIF and XMP cleaned field by field, in eXIf and text chunks
    and wherever else an ancillary chunk holds EXIF (an obsolete exIf, a text chunk keyed
    "exif", which Pillow reads); any other ancillary chunk that names a location, or is
    named for one, dropped whole (nothing in a PNG points at a chunk by offset); whatever
    follows IEND cut off."""
    edits = []
    pos = 8
    while True:
        if pos + 12 > len(data):
            raise CaptureRejected(Reason.TRUNCATED, "PNG ends before its IEND chunk")
        length, kind = struct.unpack_from(">I4s", data, pos)
        start, stop = pos + 8, pos + 8 + length
        if stop + 4 > len(data):
            raise CaptureRejected(Reason.TRUNCATED, f"PNG {kind!r} chunk runs past the end")
        body = None
        if kind == b"eXIf":
            exif = data[start:stop]
            found = _exif_edits(exif, 0, len(exif), "PNG eXIf")
            _refuse_location_left(exif, 0, len(exif), found, "PNG eXIf")
            if found:
                body = _apply(exif, found)
        elif kind in (b"tEXt", b"zTXt", b"iTXt"):
            body = _png_text(kind, data, start, stop)
        elif kind == b"zxIf":
            raise CaptureRejected(
                Reason.GPS_UNCERTAIN, "PNG zxIf chunk holds compressed EXIF, which is not cleaned"
            )
        elif kind == b"fdAT":  # an animated PNG's frame data: pixels, as in IDAT
            body = _DROP if location_hint(data[start:stop]) else None
        elif kind not in _PNG_PICTURE:  # an ancillary chunk, or a critical one no decoder knows
            body = _png_other(data[start:stop], f"PNG {kind!r} chunk")
        if body == _DROP:
            edits.append(_Edit(pos, stop + 4, b""))
        elif body is not None:
            chunk = kind + body
            edits.append(_Edit(pos, stop + 4, struct.pack(">I", len(body)) + chunk + _crc(chunk)))
        if kind == b"IEND":
            return edits + _trailer_edits(data, stop + 4)
        pos = stop + 4


# The critical chunks of the standard: Pillow skips any other, whatever case it has.
_PNG_PICTURE = {b"IHDR", b"PLTE", b"IDAT", b"IEND"}
# What _png_text returns for a chunk to drop whole.
_DROP = b""
# A text chunk named for a location: "GPS", "exif:GPSLatitude", "Location", …
_LOCATION_KEYWORD = re.compile(rb"gps|latitude|longitude|location", re.IGNORECASE)


def _crc(chunk: bytes) -> bytes:
    return struct.pack(">I", zlib.crc32(chunk))


def _png_text(kind: bytes, data: bytes, start: int, stop: int) -> bytes | None:
    """The body of a PNG text chunk with GPS taken out of the XMP or EXIF it carries;
    None when it carries none, `_DROP` when it is named for a location or its text names
    one. A compressed chunk is inflated and deflated again."""
    nul = data.find(b"\0", start, min(stop, start + 80))  # keywords are 1–79 bytes
    if nul < 0:
        return _png_other(data[start:stop], f"PNG {kind!r} chunk")
    keyword = data[start:nul]
    if _LOCATION_KEYWORD.search(keyword):
        return _DROP
    chunk = data[start:stop]
    text_at = len(keyword) + 1  # tEXt: keyword, NUL, text
    compressed = kind == b"zTXt"  # zTXt: keyword, NUL, method, deflated text
    if kind == b"zTXt":
        text_at += 1
    elif kind == b"iTXt":  # keyword, NUL, flag, method, language, NUL, translation, NUL, text
        compressed = chunk[text_at : text_at + 1] == b"\x01"
        language_end = chunk.find(b"\0", text_at + 2)
        text_at = chunk.find(b"\0", language_end + 1) + 1
        if language_end < 0 or text_at == 0:
            raise CaptureRejected(Reason.CORRUPT_EXIF, f"PNG iTXt {keyword!r} chunk is malformed")
    text = _inflate(chunk[text_at:], keyword) if compressed else chunk[text_at:]
    where = f"PNG {kind.decode()} {keyword!r}"
    if keyword == _PNG_XMP:
        edits = _xmp_in(text)
    elif keyword in _PNG_RAW_EXIF:
        edits = _raw_profile(lambda exif: _exif_edits(exif, 0, len(exif), "PNG EXIF profile"))(text)
    elif keyword == _PNG_RAW_XMP:
        edits = _raw_profile(_xmp_in)(text)
    elif keyword.startswith(_PNG_RAW_PROFILE):  # 8bim, iptc: their EXIF is cleaned too
        edits = _raw_profile(lambda profile: _embedded_tiff_edits(profile, where))(text)
    else:
        cleaned = _other_metadata(text, where)
        if cleaned is None:
            return _DROP
        edits = [] if cleaned is text else [_Edit(0, len(text), cleaned)]
    text = _apply(text, edits) if edits else text
    if location_hint(text) or location_hint(chunk[len(keyword) + 1 : text_at]):
        return _DROP  # the translated keyword of an iTXt chunk counts too
    if not edits:
        return None
    return chunk[:text_at] + (zlib.compress(text) if compressed else text)


def _png_other(body: bytes, where: str) -> bytes | None:
    """The body of a chunk GPS removal does not parse, with GPS taken out of any EXIF and
    XMP it holds; None when it holds none, `_DROP` when it names a location."""
    cleaned = _other_metadata(body, where)
    if cleaned is None:
        return _DROP
    return None if cleaned is body else cleaned


_TIFF_HEADER = re.compile(rb"II\*\0|MM\0\*")


def _embedded_tiff_edits(blob: bytes, where: str, depth: int = 0) -> list[_Edit]:
    """GPS edits for every TIFF structure (EXIF) in `blob`, found by its header: metadata
    that holds EXIF without saying so. Each structure is taken to run to the blob's end,
    so one may see another's GPS IFD as a stray (a maker note's own TIFF header inside an
    EXIF block, two blocks in a row): the structures are walked again while a walk
    cleans one, and one that still cannot be walked, which may hold GPS, is refused as
    `gps-uncertain`."""
    headers = [found.span() for found in _TIFF_HEADER.finditer(blob)]
    cleaned = blob
    while True:
        before, failures = cleaned, []
        for start, stop in headers:
            if _TIFF_HEADER.fullmatch(cleaned, start, stop) is None:
                continue  # zeroed with the GPS data of another structure
            try:
                others = tuple(
                    _exif_start(cleaned, header) for header, _ in headers if header != start
                )
                found = _tiff_edits(cleaned, start, len(blob), where, others, depth)
            except CaptureRejected as error:
                failures.append(error.message)
                continue
            if found:
                cleaned = _apply(cleaned, found)
        if not failures:
            return [] if cleaned is blob else [_Edit(0, len(blob), cleaned)]
        if cleaned is before:
            raise CaptureRejected(Reason.GPS_UNCERTAIN, f"{failures[0]} (EXIF that may hold GPS)")


def _exif_start(buf: bytes, header: int) -> int:
    """Where the EXIF block whose TIFF header is at `header` begins: its "Exif\\0\\0"
    prefix, where it has one, is part of it."""
    prefixed = buf.startswith(_EXIF_HEADER, header - len(_EXIF_HEADER))
    return header - len(_EXIF_HEADER) if prefixed else header


def _xmp_in(xmp: bytes) -> list[_Edit]:
    return _xmp_edits(xmp, 0, len(xmp))


def _raw_profile(find: Callable[[bytes], list[_Edit]]) -> Callable[[bytes], list[_Edit]]:
    """`find` run on the payload of an ImageMagick profile ("\\nexif\\n  <length>\\n<hex
    lines>"); its edits come back as one replacing the re-encoded hex."""

    def edits(text: bytes) -> list[_Edit]:
        parts = text.split(b"\n", 3)
        head = b"\n".join(parts[:3]) + b"\n"
        try:
            payload = bytes.fromhex(parts[3].decode("ascii"))
        except (ValueError, IndexError):
            raise CaptureRejected(Reason.CORRUPT_EXIF, "PNG raw profile is not hex") from None
        found = find(payload)
        _refuse_location_left(payload, 0, len(payload), found, "PNG raw profile")
        if not found:
            return []
        hexed = _apply(payload, found).hex().encode()
        lines = b"\n".join(hexed[at : at + 72] for at in range(0, len(hexed), 72))
        return [_Edit(len(head), len(text), lines + b"\n")]

    return edits


def _inflate(data: bytes, keyword: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(data, _MAX_INFLATED)
    except zlib.error as error:
        raise CaptureRejected(
            Reason.CORRUPT_EXIF, f"PNG {keyword!r} text does not inflate: {error}"
        ) from None
    if inflater.unconsumed_tail:
        raise CaptureRejected(Reason.CORRUPT_EXIF, f"PNG {keyword!r} text inflates past 64 MiB")
    return text


def _webp_edits(data: bytes) -> list[_Edit]:
    """GPS edits for a WebP: EXIF and XMP cleaned field by field, any other metadata
    chunk that names a location zeroed, whatever lies past the RIFF size cut off."""
    edits = []
    end = min(len(data), 8 + struct.unpack_from("<I", data, 4)[0])
    pos = 12
    while pos + 8 <= end:
        fourcc, size = struct.unpack_from("<4sI", data, pos)
        start, stop = pos + 8, pos + 8 + size
        if stop > end:
            raise CaptureRejected(Reason.TRUNCATED, f"WebP {fourcc!r} chunk runs past the end")
        if fourcc == b"EXIF":
            found = _exif_edits(data, start, stop, "WebP EXIF")
            _refuse_location_left(data, start, stop, found, "WebP EXIF")
            edits += found
        elif fourcc == b"XMP ":
            edits += _xmp_edits(data, start, stop)
        elif fourcc not in _WEBP_PICTURE:
            edits += _zeroed_unless_clean(data, start, stop, f"WebP {fourcc!r} chunk")
        pos = stop + (size & 1)  # chunks are padded to even sizes
    return edits + _trailer_edits(data, end)


# WebP chunks that hold the picture itself (VP8X flags, frames, alpha, ICC profile).
_WEBP_PICTURE = {b"VP8 ", b"VP8L", b"VP8X", b"ALPH", b"ANIM", b"ANMF", b"ICCP"}


def _tiff_file_edits(data: bytes) -> list[_Edit]:
    """TIFF and the TIFF-based RAW formats: the file is the EXIF structure."""
    return _tiff_edits(data, 0, len(data), "TIFF", whole_file=True)


def _heic_edits(data: bytes) -> list[_Edit]:
    """GPS edits for the Exif and XMP items of a HEIF file, found through its meta boxes
    (libheif reads the first; the items of another are stored all the same): iinf names
    each item's type, iloc says where its bytes are."""
    edits: set[_Edit] = set()  # two meta boxes may place one item
    for kind, _, start, stop in bmff.boxes(data, 0, len(data), "HEIF"):
        if kind == b"meta":  # a full box: version and flags come first
            edits.update(_heif_meta_edits(data, start + 4, stop))
    return sorted(edits)


def _heif_meta_edits(data: bytes, start: int, stop: int) -> list[_Edit]:
    """GPS edits for the items of the meta box whose children are data[start:stop]."""
    boxes: dict[bytes, tuple[int, int]] = {}
    for kind, _, box_start, box_end in bmff.boxes(data, start, stop, "HEIF"):
        if kind in boxes and kind in (b"iinf", b"iloc", b"idat"):
            # which of them a reader takes is its own choice: the other may hold GPS
            raise CaptureRejected(Reason.CORRUPT_EXIF, f"HEIF meta box holds two {kind!r} boxes")
        boxes[kind] = (box_start, box_end)
    if b"iinf" not in boxes:
        return []
    locations = _heif_locations(data, boxes)
    edits = []
    for item, kind in _heif_items(data, *boxes[b"iinf"]):
        if kind == b"Exif":
            find = _heif_exif_edits
        elif kind == b"mime":  # XMP, whatever content type it claims (libheif reads it so)
            find = _xmp_in
        elif kind in _HEIF_PICTURES:
            continue
        elif locations.get(item):
            find = _heif_other_edits
        else:  # an item of another kind stored nowhere in this file holds nothing
            continue
        if item not in locations:
            raise CaptureRejected(
                Reason.CORRUPT_EXIF, f"HEIF {kind.decode()} item {item} has no location"
            )
        pieces = locations[item]
        if pieces is None:
            raise CaptureRejected(
                Reason.UNSUPPORTED, f"HEIF {kind.decode()} item {item} is built from other items"
            )
        edits += _payload_edits(data, pieces, find)
    return edits


def _heif_exif_edits(item: bytes) -> list[_Edit]:
    """An Exif item begins with the big-endian offset of the TIFF header after it."""
    if len(item) < 4:
        raise CaptureRejected(Reason.CORRUPT_EXIF, "HEIF Exif item is shorter than its header")
    found = _tiff_edits(item, 4 + struct.unpack_from(">I", item)[0], len(item), "HEIF Exif item")
    _refuse_location_left(item, 0, len(item), found, "HEIF Exif item")
    return found


# Item types that code or compose a picture: their bytes are pixels, not metadata.
_HEIF_PICTURES = {
    *(b"hvc1", b"hvt1", b"lhv1", b"av01", b"avc1", b"vvc1", b"jpeg", b"j2k1", b"unci"),
    *(b"grid", b"iovl", b"iden", b"tmap", b"mski"),
}


def _heif_other_edits(item: bytes) -> list[_Edit]:
    """An item of a kind GPS removal does not know (an Exif or XMP item under another
    type name): GPS cleaned from any EXIF it holds, refused when it still names a
    location (libheif may not read it, but its bytes are stored)."""
    found = _embedded_tiff_edits(item, "HEIF item")
    _refuse_location_left(item, 0, len(item), found, "HEIF item")
    return found


class _Reader:
    """Big-endian fields read in sequence, refusing to read past `end`."""

    def __init__(self, data: bytes, pos: int, end: int, what: str) -> None:
        self.data, self.pos, self.end, self.what = data, pos, end, what

    def take(self, size: int) -> bytes:
        if self.pos + size > self.end:
            raise CaptureRejected(Reason.CORRUPT_EXIF, f"HEIF {self.what} box is cut short")
        self.pos += size
        return self.data[self.pos - size : self.pos]

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")


def _heif_items(data: bytes, start: int, stop: int) -> Iterator[tuple[int, bytes]]:
    """ID and type of each item in the iinf box; an item of infe version 0 or 1 has no
    type (b""), and is searched as one of an unknown type is."""
    header = _Reader(data, start, stop, "iinf")
    header.uint(2 if header.uint(4) >> 24 == 0 else 4)  # version and flags, entry count
    for kind, _, pos, end in bmff.boxes(data, header.pos, stop, "HEIF"):
        if kind != b"infe":
            continue
        fields = _Reader(data, pos, end, "infe")
        version = fields.uint(4) >> 24
        item = fields.uint(2 if version < 3 else 4)
        fields.uint(2)  # protection index
        yield item, fields.take(4) if version >= 2 else b""  # types exist from version 2 on


def _heif_locations(
    data: bytes, boxes: dict[bytes, tuple[int, int]]
) -> dict[int, list[tuple[int, int]] | None]:
    """Each item's extents as file spans, from the iloc box; None for an item built
    from other items (construction method 2), which is not followed."""
    if b"iloc" not in boxes:
        return {}
    fields = _Reader(data, *boxes[b"iloc"], "iloc")
    version = fields.uint(4) >> 24
    sizes = fields.uint(2)
    offset_size, length_size = sizes >> 12, sizes >> 8 & 15
    base_size, index_size = sizes >> 4 & 15, (sizes & 15 if version in (1, 2) else 0)
    idat = boxes.get(b"idat")
    locations: dict[int, list[tuple[int, int]] | None] = {}
    for _ in range(fields.uint(2 if version < 2 else 4)):
        item = fields.uint(2 if version < 2 else 4)
        if item in locations:  # libheif reads the first place given, which is not cleaned
            raise CaptureRejected(Reason.CORRUPT_EXIF, f"HEIF item {item} is located twice")
        method = fields.uint(2) & 15 if version in (1, 2) else 0
        fields.uint(2)  # data reference index
        # Method 0 counts from the file's start, method 1 from the idat box's payload.
        if method == 1 and idat is None:
            raise CaptureRejected(Reason.CORRUPT_EXIF, f"HEIF item {item} is in a missing idat box")
        origin, end = idat if method == 1 and idat else (0, len(data))
        base = origin + fields.uint(base_size)
        extents = []
        for _ in range(fields.uint(2)):
            fields.uint(index_size)
            offset, length = base + fields.uint(offset_size), fields.uint(length_size)
            extents.append((offset, offset + length if length else end))  # 0: to the end
        if method not in (0, 1):
            locations[item] = None
        elif any(not origin <= extent < extent_end <= end for extent, extent_end in extents):
            raise CaptureRejected(Reason.CORRUPT_EXIF, f"HEIF item {item} lies outside its data")
        else:
            locations[item] = extents
    return locations


_CONTAINERS: dict[str, Callable[[bytes], list[_Edit]]] = {
    "jpeg": _jpeg_edits,
    "png": _png_edits,
    "webp": _webp_edits,
    "heic": _heic_edits,
    **dict.fromkeys(("tiff", "dng", "cr2", "nef", "arw"), _tiff_file_edits),
}
