"""Finding location in metadata text: the XMP properties GPS removal blanks, and the
traces of a location it looks for in every other metadata block it leaves in place.

XMP is scanned in one linear pass (no regular expression that can backtrack over the
packet), so a hostile packet costs time in proportion to its size.
"""

import re

from rainbench.capture.reject import CaptureRejected, Reason

# Traces of a location in metadata: a GPS property name, the words latitude or longitude,
# or an ISO 6709 point (QuickTime's ©xyz, "+47.3754+008.5451/"). A NUL may follow each
# letter, so UTF-16 text in either byte order is found as well as ASCII. The words are long
# enough that compressed pixel data matches one by chance about once in 10^12 bytes.
_WORDS = (b"gpslat", b"gpslon", b"gpsalt", b"gpspos", b"gpscoord", b"gpsinfo", b"gpsdest")
_WORDS += (b"latitude", b"longitude")


def _spelled(word: bytes) -> bytes:
    """A pattern for `word` (lower-case letters) in either case, a NUL allowed after each
    letter but the last."""
    return rb"\x00?".join(b"[%c%c]" % (c, c ^ 0x20) for c in word)


# One class of the bytes a trace can start with, each branch then checked behind it: `re`
# skips to the next such byte in C, where an alternation of words is tried at every byte
# (benchmarks/gps_strip.py, 50 MB: 20 → 355 MB/s of zeros, 17 → 105 MB/s of random bytes).
_HINT = re.compile(
    rb"[gGlL+-](?:"
    + b"|".join(rb"(?<=%s)\x00?" % _spelled(word[:1]) + _spelled(word[1:]) for word in _WORDS)
    + rb"|(?<=[+-])\d{1,2}\.\d{2,}[+-]\d{1,3}\.\d{2,})"
)
# A GPS name with a namespace prefix (the form XMP properties take), or a default-namespace
# element; anchored on ":gps" or "<gps", so the scan stays linear.
_GPS_NAME = re.compile(rb"(?<!xmlns)[:<]gps[\w.-]*", re.IGNORECASE)

# An XMP property whose local name says location: exif:GPSLatitude, drone-dji:GpsLatitude,
# a default-namespace <GPSLatitude xmlns="…">, Iptc4xmpExt:Latitude, W3C geo:lat and
# geo:long and their like; or a place by name: photoshop:City, State and Country,
# Iptc4xmpCore:Location and CountryCode, Iptc4xmpExt:LocationShown and LocationCreated
# (and the Sublocation, ProvinceState, CountryName, WorldRegion of their structures).
_LOCATION_NAME = re.compile(
    rb"(?:^|:)gps|latitude|longitude|location|(?:^|:)(?:lat|long|lon|lng)$"
    rb"|(?:^|:)(?:city|state|country|countrycode|countryname|provincestate|worldregion)$",
    re.IGNORECASE,
)

# XML forbids "<" inside a tag, attribute values included: a tag never reaches past the
# next "<", which bounds every match and keeps the scan linear.
_TAG = re.compile(rb"""<(?:[^<>"']|"[^<"]*"|'[^<']*')*>""")
_TAG_NAME = re.compile(rb"<(/?)([^\s/>]+)")
# An attribute follows a space, or (malformed, yet lenient readers read it) the quote
# closing the one before.
_ATTRIBUTE = re.compile(rb"""(?<=[\s"'])([^\s/>="']+)\s*=\s*(?:"[^"]*"|'[^']*')""")
# Markup that is not a tag, and how each ends.
_OTHER_MARKUP = ((b"<!--", b"-->"), (b"<![CDATA[", b"]]>"), (b"<?", b"?>"))


def location_hint(text: bytes) -> str | None:
    """The first trace of a location in `text`, as it appears there, or None."""
    found = _HINT.search(text)
    return None if found is None else found[0].replace(b"\0", b"").decode("latin-1")


def xmp_location_spans(buf: bytes, start: int, stop: int) -> list[tuple[int, int]]:
    """The spans of the XMP packet in buf[start:stop] that hold a location property (a
    whole element, or one attribute); blanking them with spaces leaves valid XML.

    Refused as `gps-uncertain` where a location could survive blanking: a packet that
    is not UTF-8 yet names a location, or one with a DOCTYPE (its entities can build a
    property name; XMP never needs one), or where a location name is left that no
    property accounts for (in a comment, text or malformed markup). `corrupt-exif` where a
    location element is never closed.
    """
    packet = buf[start:stop]
    if _wide(packet):
        if location_hint(packet) or b"g\0p\0s" in packet.lower():
            raise _uncertain("XMP is not in UTF-8 and names a location")
        return []
    if b"<!doctype" in packet.lower() or b"<!entity" in packet.lower():
        raise _uncertain("XMP declares a DOCTYPE, whose entities could build a GPS property")
    spans, malformed = _scan(packet)
    _refuse_leftover(packet, spans)
    if name := _location_property(packet, malformed):
        raise _uncertain(f"XMP names a location in markup that does not parse: {name!r}")
    return [(start + low, start + high) for low, high in spans]


def _wide(packet: bytes) -> bool:
    """UTF-16 or UTF-32: a byte-order mark, or NULs among the first characters."""
    head = packet.lstrip(b" \t\r\n")[:64]
    return head.startswith((b"\xfe\xff", b"\xff\xfe", b"\0\0\xfe\xff")) or b"\0" in head


def _scan(packet: bytes) -> tuple[list[tuple[int, int]], int]:
    """Location elements and attributes, found tag by tag in one pass, and where the
    markup stops parsing (the packet's end where it parses to the end)."""
    spans: list[tuple[int, int]] = []
    open_names: list[bytes] = []
    location: tuple[int, int] | None = None  # the outermost open location element: start, depth
    pos = packet.find(b"<")
    while pos >= 0:
        other = next((pair for pair in _OTHER_MARKUP if packet.startswith(pair[0], pos)), None)
        if other is not None:
            end = packet.find(other[1], pos + len(other[0]))
            if end < 0:
                return _scanned(spans, location, pos)  # unterminated
            pos = packet.find(b"<", end + len(other[1]))
            continue
        tag = _TAG.match(packet, pos)
        if tag is None:
            pos = packet.find(b"<", pos + 1)
            continue
        text = tag[0]
        named = _TAG_NAME.match(text)
        if named is None:
            return _scanned(spans, location, pos)  # "<>" or "< x>"
        closing, name = named.groups()
        empty = text.endswith(b"/>")
        if closing:
            if not open_names or open_names[-1] != name:
                return _scanned(spans, location, pos)
            open_names.pop()
            if location is not None and len(open_names) == location[1]:
                spans.append((location[0], tag.end()))
                location = None
        elif location is None and _LOCATION_NAME.search(name):
            if empty:
                spans.append((pos, tag.end()))
            else:
                location = (pos, len(open_names))
        elif location is None:
            spans += [(pos + low, pos + high) for low, high in _location_attributes(text)]
        if not closing and not empty:
            open_names.append(name)
        pos = packet.find(b"<", tag.end())
    return _scanned(spans, location, len(packet))


def _scanned(
    spans: list[tuple[int, int]], location: tuple[int, int] | None, pos: int
) -> tuple[list[tuple[int, int]], int]:
    """What `_scan` found, and `pos`, where it stopped: the markup from there on does not
    parse (the packet's end, where all of it does)."""
    if location is not None:
        raise CaptureRejected(Reason.CORRUPT_EXIF, "XMP has a GPS property that is never closed")
    return spans, pos


# An element's or an attribute's name, in markup that does not parse.
_MARKUP_NAME = re.compile(rb"""<\/?([^\s/>=<"']+)|(?<=[\s"'])([^\s/>=<"']+)\s*=""")


def _location_property(packet: bytes, pos: int) -> str | None:
    """The first name of a location property (a place's name too: photoshop:City) in
    packet[pos:], markup the scan could not parse, which a lenient reader may still read."""
    for found in _MARKUP_NAME.finditer(packet, pos):
        name = found[1] or found[2]
        if not name.startswith(b"xmlns") and _LOCATION_NAME.search(name):
            return name.decode("latin-1")
    return None


def _location_attributes(tag: bytes) -> list[tuple[int, int]]:
    return [
        attribute.span()
        for attribute in _ATTRIBUTE.finditer(tag)
        if not attribute[1].startswith(b"xmlns") and _LOCATION_NAME.search(attribute[1])
    ]


def _refuse_leftover(packet: bytes, spans: list[tuple[int, int]]) -> None:
    """Refuse when a location trace or GPS name remains outside the blanked spans."""
    at = 0
    for low, high in [*spans, (len(packet), len(packet))]:
        rest = packet[at:low]
        if hint := location_hint(rest) or _gps_name(rest):
            raise _uncertain(f"XMP names a location outside any property it holds: {hint!r}")
        at = high


def _gps_name(text: bytes) -> str | None:
    found = _GPS_NAME.search(text)
    return None if found is None else found[0].decode("latin-1")


def _uncertain(message: str) -> CaptureRejected:
    return CaptureRejected(Reason.GPS_UNCERTAIN, message)
