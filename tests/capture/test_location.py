"""No planted coordinate survives GPS removal: coordinates are planted in every metadata
position these builders can make — EXIF, XMP in its many spellings, text chunks,
comments, trailers after the picture's end — and the stored bytes are searched for them
in every encoding. A capture that cannot be cleaned with certainty must be refused.

The hostile XMP cases also pin the scan's cost: inputs that took minutes with a
backtracking regular expression run here at their full size.
"""

import io
import re
import struct
import zlib
from fractions import Fraction

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin, TiffImagePlugin

from rainbench.capture.formats import FORMATS, sniff
from rainbench.capture.gps import strip_gps
from rainbench.capture.location import _WORDS, location_hint, xmp_location_spans
from rainbench.capture.reject import CaptureRejected, Reason
from rainbench.ingest import IngestOptions, ingest

GPS_IFD, XMP_TAG = 0x8825, 0x02BC
XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\0"
EXTENSION_HEADER = b"http://ns.adobe.com/xmp/extension/\0"
EXIF_NS = b'xmlns:exif="http://ns.adobe.com/exif/1.0/"'


class Point:
    """A planted location and every form it can take in a file's bytes."""

    def __init__(self, lat: float, lon: float) -> None:
        self.lat, self.lon = lat, lon

    def decimal(self, value: float) -> str:
        return f"{abs(value):.4f}"

    def dms(self, value: float, hemispheres: str) -> str:
        """XMP's GPSCoordinate form, DDD,MM.mmmmk."""
        degrees = int(abs(value))
        return f"{degrees},{(abs(value) - degrees) * 60:.4f}{hemispheres[value < 0]}"

    def iso6709(self) -> str:
        return f"{self.lat:+08.4f}{self.lon:+09.4f}/"

    def rationals(self, value: float) -> tuple[Fraction, Fraction, Fraction]:
        degrees = int(abs(value))
        minutes = int((abs(value) - degrees) * 60)
        seconds = Fraction(round(((abs(value) - degrees) * 60 - minutes) * 60 * 10000), 10000)
        return Fraction(degrees), Fraction(minutes), seconds

    def traces(self) -> list[bytes]:
        texts = [
            self.decimal(self.lat),
            self.decimal(self.lon),
            self.dms(self.lat, "NS")[:-1],
            self.dms(self.lon, "EW")[:-1],
            self.iso6709(),
        ]
        found = [form for text in texts for form in _encodings(text)]
        for value in (self.lat, self.lon):
            seconds = self.rationals(value)[2]
            for order in "<>":
                found.append(struct.pack(order + "II", seconds.numerator, seconds.denominator))
        return found


def _encodings(text: str) -> list[bytes]:
    return [text.encode(), text.encode("utf-16-le"), text.encode("utf-16-be")]


def picture(fmt: str, **params: object) -> bytes:
    values = np.arange(40 * 56 * 3, dtype=np.uint32) * 7 % 251
    out = io.BytesIO()
    Image.fromarray(values.astype(np.uint8).reshape(40, 56, 3)).save(out, fmt, **params)
    return out.getvalue()


def gps_exif(point: Point, order: str = "<") -> Image.Exif:
    tags = Image.Exif()
    tags.endian = order
    tags[0x010F] = "Canon"
    location = tags.get_ifd(GPS_IFD)
    for (ref, value_tag), value, hemispheres in (
        ((1, 2), point.lat, "NS"),
        ((3, 4), point.lon, "EW"),
    ):
        location[ref] = hemispheres[value < 0]
        location[value_tag] = tuple(
            TiffImagePlugin.IFDRational(part.numerator, part.denominator)
            for part in point.rationals(value)
        )
    return tags


def xmp(body: bytes) -> bytes:
    return (
        b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">' + body + b"</rdf:RDF>"
        b'</x:xmpmeta><?xpacket end="w"?>'
    )


def xmp_bodies(point: Point) -> dict[str, bytes]:
    lat = point.dms(point.lat, "NS").encode()
    lon = point.dms(point.lon, "EW").encode()
    element = b"<exif:GPSLatitude>" + lat + b"</exif:GPSLatitude>"
    return {
        "attribute": b'<rdf:Description rdf:about="" '
        + EXIF_NS
        + b' exif:GPSLatitude="'
        + lat
        + b'" exif:GPSLongitude="'
        + lon
        + b'"/>',
        "element": b'<rdf:Description rdf:about="" '
        + EXIF_NS
        + b">"
        + element
        + b"<exif:GPSLongitude>"
        + lon
        + b"</exif:GPSLongitude></rdf:Description>",
        "default-namespace": b'<rdf:Description rdf:about=""><GPSLatitude '
        b'xmlns="http://ns.adobe.com/exif/1.0/">' + lat + b"</GPSLatitude><GPSLongitude "
        b'xmlns="http://ns.adobe.com/exif/1.0/">' + lon + b"</GPSLongitude></rdf:Description>",
        "nested-in-a-struct": b'<rdf:Description rdf:about="" '
        + EXIF_NS
        + b' xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/">'
        b'<Iptc4xmpExt:LocationCreated rdf:parseType="Resource">'
        + element
        + b"<exif:GPSLongitude>"
        + lon
        + b"</exif:GPSLongitude>"
        b"</Iptc4xmpExt:LocationCreated></rdf:Description>",
        "w3c-geo": b'<rdf:Description rdf:about="" '
        b'xmlns:geo="http://www.w3.org/2003/01/geo/wgs84_pos#"><geo:lat>'
        + point.decimal(point.lat).encode()
        + b"</geo:lat><geo:long>"
        + point.decimal(point.lon).encode()
        + b"</geo:long></rdf:Description>",
        "comment": b"<!-- exif:GPSLatitude " + lat + b" " + lon + b" -->"
        b'<rdf:Description rdf:about=""/>',
    }


def xmp_packets(point: Point) -> dict[str, bytes]:
    packets = {name: xmp(body) for name, body in xmp_bodies(point).items()}
    element = xmp_bodies(point)["element"]
    packets["utf-16-le"] = xmp(element).decode().encode("utf-16-le")
    packets["utf-16-be"] = b"\xfe\xff" + xmp(element).decode().encode("utf-16-be")
    lat = point.dms(point.lat, "NS").encode()
    packets["doctype-entity"] = (
        b'<?xml version="1.0"?><!DOCTYPE x:xmpmeta [<!ENTITY g "&#60;exif:G&#80;SLatitude>'
        + lat
        + b'&#60;/exif:G&#80;SLatitude>">]>'
        + xmp(b'<rdf:Description rdf:about="" ' + EXIF_NS + b">&g;</rdf:Description>")
    )
    return packets


# JPEG positions -----------------------------------------------------------------------


def jpeg_segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def after_soi(jpeg: bytes, *segments: bytes) -> bytes:
    return jpeg[:2] + b"".join(segments) + jpeg[2:]


def mp4_with_location(point: Point) -> bytes:
    def box(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", 8 + len(body)) + kind + body

    where = point.iso6709().encode()
    xyz = box(b"\xa9xyz", struct.pack(">HH", len(where), 0x15C7) + where)
    return box(b"ftyp", b"isom\0\0\2\0isomiso2mp41") + box(b"moov", box(b"udta", xyz))


def photoshop_irb(payload: bytes) -> bytes:
    resource = b"8BIM" + struct.pack(">H", 0x0424) + b"\0\0" + struct.pack(">I", len(payload))
    return b"Photoshop 3.0\0" + resource + payload + b"\0" * (len(payload) & 1)


def extended_xmp(point: Point) -> list[bytes]:
    guid = b"0123456789ABCDEF0123456789ABCDEF"
    main = xmp(
        b'<rdf:Description rdf:about="" xmlns:xmpNote="http://ns.adobe.com/xmp/note/" '
        b'xmpNote:HasExtendedXMP="' + guid + b'"/>'
    )
    full = xmp(xmp_bodies(point)["element"])
    half = len(full) // 2
    parts = [(0, full[:half]), (half, full[half:])]
    return [jpeg_segment(0xE1, XMP_HEADER + main)] + [
        jpeg_segment(0xE1, EXTENSION_HEADER + guid + struct.pack(">II", len(full), at) + part)
        for at, part in parts
    ]


def jpeg_cases(point: Point) -> dict[str, bytes]:
    plain = picture("JPEG", quality=90)
    lat = point.decimal(point.lat).encode()
    cases = {
        "exif-little-endian": picture("JPEG", exif=gps_exif(point, "<")),
        "exif-big-endian": picture("JPEG", exif=gps_exif(point, ">")),
        "second-jpeg-after-eoi": plain + picture("JPEG", exif=gps_exif(point)),
        "motion-photo-mp4": plain + mp4_with_location(point),
        "comment": after_soi(plain, jpeg_segment(0xFE, b"GPSLatitude=" + lat)),
        "comment-iso6709": after_soi(plain, jpeg_segment(0xFE, point.iso6709().encode())),
        "photoshop-xmp": after_soi(
            plain, jpeg_segment(0xED, photoshop_irb(xmp(xmp_bodies(point)["element"])))
        ),
        "extended-xmp": after_soi(plain, *extended_xmp(point)),
        "exif-user-comment": picture("JPEG", exif=_user_comment(b"latitude " + lat)),
    }
    for name, packet in xmp_packets(point).items():
        cases[f"xmp-{name}"] = after_soi(plain, jpeg_segment(0xE1, XMP_HEADER + packet))
    progressive = picture("JPEG", progressive=True, quality=90)
    second_scan = progressive.index(b"\xff\xda", progressive.index(b"\xff\xda") + 2)
    exif_segment = jpeg_segment(0xE1, gps_exif(point).tobytes())
    cases["exif-between-progressive-scans"] = (
        progressive[:second_scan] + exif_segment + progressive[second_scan:]
    )
    return cases


def _user_comment(text: bytes) -> Image.Exif:
    tags = Image.Exif()
    tags.get_ifd(0x8769)[0x9286] = b"ASCII\0\0\0" + text
    return tags


# PNG, WebP and TIFF positions ---------------------------------------------------------


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def before_iend(png: bytes, *chunks: bytes) -> bytes:
    iend = png.rindex(b"IEND") - 4
    return png[:iend] + b"".join(chunks) + png[iend:]


def png_cases(point: Point) -> dict[str, bytes]:
    plain = picture("PNG")
    lat, lon = point.decimal(point.lat).encode(), point.decimal(point.lon).encode()
    exif_block = gps_exif(point).tobytes()[6:]
    cases = {
        "exif": picture("PNG", exif=gps_exif(point)),
        "exif-after-iend": plain + png_chunk(b"eXIf", exif_block),
        "text-named-gps": before_iend(plain, png_chunk(b"tEXt", b"GPS\0" + lat + b"," + lon)),
        "text-named-property": before_iend(plain, png_chunk(b"tEXt", b"exif:GPSLatitude\0" + lat)),
        "compressed-comment": before_iend(
            plain, png_chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"latitude " + lat))
        ),
        "private-chunk": before_iend(plain, png_chunk(b"loCa", point.iso6709().encode())),
    }
    for name, packet in xmp_packets(point).items():
        for compressed in (False, True):
            info = PngImagePlugin.PngInfo()
            info.add_itxt("XML:com.adobe.xmp", packet.decode("latin-1"), zip=compressed)
            cases[f"xmp-{name}{'-compressed' * compressed}"] = picture("PNG", pnginfo=info)
    return cases


def webp_cases(point: Point) -> dict[str, bytes]:
    plain = picture("WEBP", lossless=True)
    block = gps_exif(point).tobytes()[6:]
    chunk = b"EXIF" + struct.pack("<I", len(block)) + block + b"\0" * (len(block) & 1)
    return {
        "exif": picture("WEBP", lossless=True, exif=gps_exif(point)),
        "exif-past-riff-size": plain + chunk,
        "xmp": picture("WEBP", lossless=True, xmp=xmp(xmp_bodies(point)["attribute"])),
    }


def tiff_cases(point: Point) -> dict[str, bytes]:
    tags = Image.Exif()
    tags.load(gps_exif(point).tobytes())
    with_xmp = Image.Exif()
    with_xmp[XMP_TAG] = xmp(xmp_bodies(point)["element"])
    return {
        "exif": picture("TIFF", exif=tags.tobytes()),
        "xmp": picture("TIFF", exif=with_xmp.tobytes()),
    }


def readable(data: bytes) -> bytes:
    """`data` followed by the inflated text of every compressed PNG text chunk in it, so
    that a search finds what compression hides."""
    inflated = []
    pos = data.find(b"TXt")  # zTXt and iTXt: length, type, keyword, …, deflated text
    while pos >= 5:
        (length,) = struct.unpack_from(">I", data, pos - 5)
        body = data[pos + 3 : pos + 3 + length]
        for at in range(len(body)):
            try:
                inflated.append(zlib.decompress(body[at:]))
                break
            except zlib.error:
                continue
        pos = data.find(b"TXt", pos + 3)
    return data + b"".join(inflated)


BUILDERS = {"jpeg": jpeg_cases, "png": png_cases, "webp": webp_cases, "tiff": tiff_cases}
CASES = [(fmt, name) for fmt, build in BUILDERS.items() for name in build(Point(47.3754, 8.5451))]


def _coordinate(limit: int) -> st.SearchStrategy[float]:
    """Whole degrees and four decimals, the last not 0, so every trace of it is specific
    enough not to occur in a file by chance; the seconds, too, are never whole."""
    return st.builds(
        lambda sign, degrees, decimals: sign * (degrees + decimals / 10_000),
        st.sampled_from((-1, 1)),
        st.integers(1, limit),
        st.integers(1_001, 9_999).filter(lambda decimals: decimals % 10),
    ).filter(lambda value: Point(value, value).rationals(value)[2].denominator > 1)


points = st.builds(Point, _coordinate(89), _coordinate(179))


@pytest.mark.parametrize(("fmt", "case"), CASES, ids=[f"{f}-{c}" for f, c in CASES])
@settings(max_examples=8, deadline=None)
@given(point=points)
def test_no_planted_coordinate_survives(fmt: str, case: str, point: Point) -> None:
    data = BUILDERS[fmt](point)[case]
    assert any(trace in readable(data) for trace in point.traces()), "nothing was planted"
    assert sniff(data, f"capture.{fmt}") == FORMATS[fmt]
    try:
        stored = strip_gps(data, FORMATS[fmt])
    except CaptureRejected as refused:
        assert refused.reason in (Reason.GPS_UNCERTAIN, Reason.CORRUPT_EXIF)
        assert "\n" not in refused.message
        return
    left = [trace for trace in point.traces() if trace in readable(stored)]
    assert not left, f"{case}: {left} survived"
    with Image.open(io.BytesIO(stored)) as kept:
        kept.load()


def test_cleanable_positions_are_cleaned_not_refused() -> None:
    # Refusing everything would pass the property above: these must come back stored.
    point = Point(47.3754, 8.5451)
    cleaned = {
        ("jpeg", "exif-little-endian"),
        ("jpeg", "second-jpeg-after-eoi"),
        ("jpeg", "motion-photo-mp4"),
        ("jpeg", "comment"),
        ("jpeg", "photoshop-xmp"),
        ("jpeg", "extended-xmp"),
        ("jpeg", "exif-between-progressive-scans"),
        ("jpeg", "xmp-default-namespace"),
        ("jpeg", "xmp-nested-in-a-struct"),
        ("jpeg", "xmp-w3c-geo"),
        ("png", "exif-after-iend"),
        ("png", "text-named-gps"),
        ("png", "compressed-comment"),
        ("png", "private-chunk"),
        ("webp", "exif-past-riff-size"),
        ("tiff", "xmp"),
    }
    for fmt, case in cleaned:
        data = BUILDERS[fmt](point)[case]
        strip_gps(data, FORMATS[fmt])


def test_pixels_of_a_cleaned_jpeg_are_untouched() -> None:
    point = Point(-33.8568, 151.2153)
    data = jpeg_cases(point)["exif-between-progressive-scans"]
    stored = strip_gps(data, FORMATS["jpeg"])
    assert len(stored) == len(data)
    original = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(stored)).convert("RGB")), original)


def test_padding_after_the_picture_is_kept() -> None:
    data = picture("JPEG") + b"\0" * 64
    assert strip_gps(data, FORMATS["jpeg"]) is data


@pytest.mark.parametrize(
    "packet",
    [
        # a GPS element opened again and again, never closed
        xmp(b'<rdf:Description rdf:about="">' + b"<a:gps>" * 150_000),
        # the same, inflating from a small compressed chunk
        xmp(b"<a:gpsx " * 120_000),
        # attributes whose values hold "<", never closed
        xmp(b'<a x="<" ' * 100_000),
        # comments that never end
        xmp(b"<!--" * 250_000),
        # a long name with no "="
        xmp(b"<a " + b"x" * 1_000_000 + b">"),
        # ISO 6709 look-alikes
        xmp(b"+1.11" * 200_000),
        # names without "=" after markup that does not parse
        xmp(b"</x>" + b" a " * 300_000),
        # empty values, each closing quote where an attribute may start
        xmp(b"<a " + b'""' * 500_000 + b">"),
    ],
    ids=[
        *("unclosed-gps", "gps-attribute-names", "quoted-lt", "comments", "long-name"),
        *("digits", "names-past-broken-markup", "quotes"),
    ],
)
def test_hostile_xmp_is_scanned_in_one_pass(packet: bytes) -> None:
    # Each took minutes (or did not finish) with the backtracking expression; linear, they
    # take milliseconds, so a regression shows as a stalled test run.
    try:
        xmp_location_spans(packet, 0, len(packet))
    except CaptureRejected as refused:
        assert refused.reason in (Reason.GPS_UNCERTAIN, Reason.CORRUPT_EXIF)


def test_location_hint_reads_utf16_and_iso6709() -> None:
    assert location_hint("exif:GPSLatitude".encode("utf-16-le")) == "GPSLat"
    assert location_hint(b"\xa9xyz\0\x12\x15\xc7+47.3754+008.5451/") == "+47.3754+008.5451"
    assert location_hint(b"Canon EOS R6 2024:05:01 10:00:00 +0.33") is None


@pytest.mark.parametrize("tag", [b"<>", b"< rdf:li/>", b"</>", b"</ x>"])
def test_xmp_tag_without_a_name_is_malformed_not_an_error(tag: bytes) -> None:
    # Was an AttributeError out of probe (found by fuzzing), which stopped the whole ingest.
    assert xmp_location_spans(xmp(tag), 0, len(xmp(tag))) == []
    packet = xmp(tag + b"<exif:GPSLatitude>47,22.5N</exif:GPSLatitude>")
    with pytest.raises(CaptureRejected) as refused:  # what follows is checked as leftover
        xmp_location_spans(packet, 0, len(packet))
    assert refused.value.reason == Reason.GPS_UNCERTAIN


@pytest.mark.parametrize("junk", [b"</oops>", b"<>", b"<!-- never closed"])
def test_a_place_name_past_markup_that_does_not_parse_is_refused(junk: bytes) -> None:
    # The scan stops where the markup stops parsing; a lenient reader may read on, and
    # find the city that no scan blanked.
    packet = xmp(junk + b'<rdf:Description rdf:about="" photoshop:City="Delft"/>')
    with pytest.raises(CaptureRejected) as refused:
        xmp_location_spans(packet, 0, len(packet))
    assert refused.value.reason == Reason.GPS_UNCERTAIN
    assert xmp_location_spans(xmp(junk), 0, len(xmp(junk))) == []


def test_an_attribute_right_after_a_quote_is_read() -> None:
    # No space between two attributes is malformed XML, yet a lenient reader reads both.
    packet = xmp(b'<rdf:Description rdf:about="" photoshop:Credit="x"photoshop:City="Delft"/>')
    spans = xmp_location_spans(packet, 0, len(packet))
    assert [packet[low:high] for low, high in spans] == [b'photoshop:City="Delft"']


# What location_hint finds, written plainly: its own pattern is built for speed.
_PLAIN_HINT = re.compile(
    b"|".join(rb"\x00?".join(re.escape(bytes([c])) for c in word) for word in _WORDS)
    + rb"|[+-]\d{1,2}\.\d{2,}[+-]\d{1,3}\.\d{2,}",
    re.IGNORECASE,
)


@settings(max_examples=3000, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [*_WORDS, b"+47.3754+008.5451", b"gps", b"\0", b"-", b"1.", *b"gGlLsS+-.9 \0"]
        ),
        max_size=12,
    ),
    st.randoms(use_true_random=False),
)
def test_location_hint_finds_what_the_words_spelled_plainly_find(parts, rng) -> None:
    # Pieces of the words, in either case and as UTF-16, run together: the same leftmost
    # trace as the plain alternation, or none where it finds none.
    text = b"".join(
        bytes(c ^ 0x20 if chr(c).isalpha() and rng.random() < 0.5 else c for c in part)
        if isinstance(part, bytes)
        else bytes([part])
        for part in parts
    )
    if rng.random() < 0.3:
        text = b"\0".join(bytes([c]) for c in text)
    plain = _PLAIN_HINT.search(text)
    expected = None if plain is None else plain[0].replace(b"\0", b"").decode("latin-1")
    assert location_hint(text) == expected


def test_ingest_stores_no_planted_coordinate(tmp_path) -> None:
    # The whole path a capture takes: each position as a file, ingested; the shards hold
    # none of the planted traces and every refusal is recorded with its reason.
    point = Point(-41.2865, 174.7762)
    raw = tmp_path / "raw"
    raw.mkdir()
    for fmt, build in BUILDERS.items():
        for case, data in build(point).items():
            (raw / f"{fmt}-{case}.{FORMATS[fmt].ext}").write_bytes(data)

    ingest([raw], tmp_path / "ds", IngestOptions(workers=1))

    shards = b"".join(path.read_bytes() for path in (tmp_path / "ds").rglob("*.tar"))
    assert shards
    assert not [trace for trace in point.traces() if trace in readable(shards)]
    rejects = pq.read_table(tmp_path / "ds/manifests/rejects.parquet").to_pylist()
    refused = {row["source_path"]: row["reason"] for row in rejects}
    assert refused["jpeg-xmp-doctype-entity.jpg"] == "gps-uncertain"
    assert set(refused.values()) <= {"gps-uncertain", "corrupt-exif", "duplicate"}
