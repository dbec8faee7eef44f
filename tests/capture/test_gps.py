"""GPS removal takes out the location and nothing else: tags, pixels and the bytes outside
the metadata stay as they were. Captures are made with Pillow; broken EXIF by patching a
Pillow-made block.
"""

import io
import struct
import xml.etree.ElementTree as ET
import zlib

import numpy as np
import pytest
from PIL import Image, PngImagePlugin, TiffImagePlugin

from rainbench.capture.formats import FORMATS
from rainbench.capture.gps import has_gps, strip_gps
from rainbench.capture.reject import CaptureRejected, Reason

MAKE, MODEL, ORIENTATION, XMP_TAG = 0x010F, 0x0110, 0x0112, 0x02BC
EXIF_IFD, GPS_IFD = 0x8769, 0x8825
DATE_TIME_ORIGINAL, EXPOSURE_TIME = 0x9003, 0x829A
GPS_LATITUDE = 2

PILLOW_FORMATS = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "tiff": "TIFF", "heic": "HEIF"}
# Lossless where the format allows, so pixel comparisons are about our bytes only.
SAVE_PARAMS = {"webp": {"lossless": True}, "heic": {"quality": -1}}

XMP = (
    b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/">'
    b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description rdf:about="" xmlns:exif="http://ns.adobe.com/exif/1.0/"'
    b' xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/"'
    b' exif:GPSLatitude="52,22.19N" xmp:CreatorTool="rainbench"'
    b" exif:GPSLongitude='4,53.03E'>"
    b"<exif:GPSAltitude>35/10</exif:GPSAltitude>"
    b'<exif:GPSVersionID rdf:resource="2.3.0.0"/>'
    b'<dc:title><rdf:Alt><rdf:li xml:lang="x-default">Drizzle</rdf:li></rdf:Alt></dc:title>'
    b"</rdf:Description></rdf:RDF></x:xmpmeta>\n"
    b'<?xpacket end="w"?>'
)


def image() -> Image.Image:
    values = np.arange(48 * 64 * 3, dtype=np.uint32) * 7 % 251
    return Image.fromarray(values.astype(np.uint8).reshape(48, 64, 3))


def exif(gps: bool = True, endian: str = "<") -> Image.Exif:
    tags = Image.Exif()
    tags.endian = endian
    tags[MAKE], tags[MODEL], tags[ORIENTATION] = "Canon", "EOS R6", 6
    shot = tags.get_ifd(EXIF_IFD)
    shot[DATE_TIME_ORIGINAL], shot[EXPOSURE_TIME] = "2024:05:01 10:00:00", 1 / 250
    if gps:
        location = tags.get_ifd(GPS_IFD)
        location[1], location[GPS_LATITUDE] = "N", (52.0, 22.0, 11.5)
        location[3], location[4] = "E", (4.0, 53.0, 2.1)
        location[6] = 3.5  # altitude
    return tags


def capture(name: str, tags: Image.Exif | None = None, **params: object) -> bytes:
    if name == "heic":
        pytest.importorskip("pillow_heif").register_heif_opener()
    if tags is not None:
        # TIFF writes nested IFDs only from a loaded block, not from a fresh Exif.
        params["exif"] = tags.tobytes() if name == "tiff" else tags
    out = io.BytesIO()
    image().save(out, PILLOW_FORMATS[name], **SAVE_PARAMS.get(name, {}), **params)
    return out.getvalue()


def opened(data: bytes) -> Image.Image:
    if data[4:8] == b"ftyp":
        pytest.importorskip("pillow_heif").register_heif_opener()
    return Image.open(io.BytesIO(data))


def gps_of(data: bytes) -> dict[int, object]:
    return dict(opened(data).getexif().get_ifd(GPS_IFD))


def kept_tags(data: bytes) -> dict[int, object]:
    tags = opened(data).getexif()
    shot = tags.get_ifd(EXIF_IFD)
    return {
        MAKE: tags.get(MAKE),
        MODEL: tags.get(MODEL),
        ORIENTATION: tags.get(ORIENTATION),
        DATE_TIME_ORIGINAL: shot.get(DATE_TIME_ORIGINAL),
        EXPOSURE_TIME: shot.get(EXPOSURE_TIME),
    }


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(opened(data).convert("RGB"))


@pytest.mark.parametrize("name", ["jpeg", "png", "webp", "tiff", "heic"])
def test_strip_removes_gps_and_keeps_tags_and_pixels(name: str) -> None:
    fmt = FORMATS[name]
    data = capture(name, exif())
    assert gps_of(data)[GPS_LATITUDE] == (52.0, 22.0, 11.5)
    assert has_gps(data, fmt)

    stripped = strip_gps(data, fmt)

    assert gps_of(stripped) == {}
    assert GPS_IFD not in opened(stripped).getexif()  # the pointer went with the IFD
    assert not has_gps(stripped, fmt)
    assert kept_tags(stripped) == kept_tags(data)
    assert kept_tags(data)[MAKE] == "Canon"
    assert kept_tags(data)[DATE_TIME_ORIGINAL] == "2024:05:01 10:00:00"
    assert np.array_equal(pixels(stripped), pixels(data))
    assert len(stripped) == len(data)
    assert strip_gps(stripped, fmt) is stripped


@pytest.mark.parametrize("endian", ["<", ">"])
def test_jpeg_changes_only_bytes_of_the_exif_segment(endian: str) -> None:
    data = capture("jpeg", exif(endian=endian))
    assert data[data.index(b"Exif\0\0") + 6 :][:2] == (b"II" if endian == "<" else b"MM")

    stripped = strip_gps(data, FORMATS["jpeg"])

    app1 = data.index(b"\xff\xe1")
    app1_end = app1 + 2 + struct.unpack_from(">H", data, app1 + 2)[0]
    changed = np.flatnonzero(np.frombuffer(data, np.uint8) != np.frombuffer(stripped, np.uint8))
    assert len(stripped) == len(data)
    assert changed.size and app1 < changed.min() and changed.max() < app1_end
    scan = data.index(b"\xff\xda")
    assert stripped[scan:] == data[scan:]
    assert gps_of(stripped) == {}
    assert kept_tags(stripped) == kept_tags(data)


def test_gps_is_removed_from_every_image_of_a_multi_picture_jpeg() -> None:
    out = io.BytesIO()
    image().save(out, "MPO", save_all=True, append_images=[image()], exif=exif())
    data = out.getvalue()

    stripped = strip_gps(data, FORMATS["jpeg"])

    second = opened(data)
    second.seek(1)
    assert second.getexif().get_ifd(GPS_IFD)
    for frame in range(2):
        picture = opened(stripped)
        picture.seek(frame)
        assert picture.getexif().get_ifd(GPS_IFD) == {}
        assert picture.getexif()[MAKE] == "Canon"
    assert not has_gps(stripped, FORMATS["jpeg"])


@pytest.mark.parametrize("name", ["jpeg", "png", "webp", "tiff", "heic"])
def test_capture_without_gps_comes_back_as_the_same_object(name: str) -> None:
    for data in (capture(name, exif(gps=False)), capture(name)):
        assert not has_gps(data, FORMATS[name])
        assert strip_gps(data, FORMATS[name]) is data


def test_an_empty_gps_ifd_is_no_gps() -> None:
    tags = exif(gps=False)
    tags.get_ifd(GPS_IFD)  # Pillow writes a pointer to an IFD without entries
    data = capture("jpeg", tags)
    assert GPS_IFD in opened(data).getexif()

    assert not has_gps(data, FORMATS["jpeg"])
    assert strip_gps(data, FORMATS["jpeg"]) is data


def check_xmp_blanked(xmp: bytes) -> None:
    assert b"GPS" not in xmp
    root = ET.fromstring(xmp[xmp.index(b"<x:xmpmeta") : xmp.index(b"</x:xmpmeta>") + 12])
    description = root.find(".//{http://www.w3.org/1999/02/22-rdf-syntax-ns#}Description")
    assert description is not None
    assert description.get("{http://ns.adobe.com/xap/1.0/}CreatorTool") == "rainbench"
    assert root.find(".//{http://www.w3.org/1999/02/22-rdf-syntax-ns#}li").text == "Drizzle"


@pytest.mark.parametrize("name", ["jpeg", "webp", "heic"])
def test_xmp_gps_properties_are_blanked_in_place(name: str) -> None:
    fmt = FORMATS[name]
    data = capture(name, exif(), xmp=XMP)
    assert b"GPSAltitude" in opened(data).info["xmp"]

    stripped = strip_gps(data, fmt)

    assert len(stripped) == len(data)
    check_xmp_blanked(opened(stripped).info["xmp"])
    assert gps_of(stripped) == {}
    assert not has_gps(stripped, fmt)
    assert np.array_equal(pixels(stripped), pixels(data))


def test_xmp_alone_counts_as_gps() -> None:
    data = capture("jpeg", exif(gps=False), xmp=XMP)
    assert has_gps(data, FORMATS["jpeg"])
    check_xmp_blanked(opened(strip_gps(data, FORMATS["jpeg"])).info["xmp"])


def test_xmp_gps_that_does_not_parse_is_rejected() -> None:
    broken = XMP.replace(b"</exif:GPSAltitude>", b"</exif:GPSAltitud>")
    data = capture("jpeg", exif(gps=False), xmp=broken)

    with pytest.raises(CaptureRejected) as refused:
        strip_gps(data, FORMATS["jpeg"])
    assert refused.value.reason == Reason.CORRUPT_EXIF


def test_webp_exif_chunk_with_the_jpeg_prefix() -> None:
    # Pillow writes the EXIF chunk bare; other writers keep JPEG's "Exif\0\0" in front.
    data = capture("webp", exif())
    at = data.index(b"EXIF")
    (size,) = struct.unpack_from("<I", data, at + 4)
    payload = b"Exif\0\0" + data[at + 8 : at + 8 + size]
    chunk = b"EXIF" + struct.pack("<I", len(payload)) + payload + b"\0" * (len(payload) & 1)
    rest = data[at + 8 + size + (size & 1) :]
    body = data[8:at] + chunk + rest
    prefixed = b"RIFF" + struct.pack("<I", len(body)) + body
    assert gps_of(prefixed)

    stripped = strip_gps(prefixed, FORMATS["webp"])

    assert gps_of(stripped) == {}
    assert kept_tags(stripped) == kept_tags(prefixed)
    assert len(stripped) == len(prefixed)


@pytest.mark.parametrize("compressed", [False, True])
def test_png_xmp_text_chunk_is_blanked(compressed: bool) -> None:
    text = PngImagePlugin.PngInfo()
    text.add_itxt("XML:com.adobe.xmp", XMP.decode(), zip=compressed)
    data = capture("png", exif(), pnginfo=text)
    assert b"GPSAltitude" in opened(data).info["xmp"]

    stripped = strip_gps(data, FORMATS["png"])

    check_xmp_blanked(opened(stripped).info["xmp"])
    assert gps_of(stripped) == {}
    assert not has_gps(stripped, FORMATS["png"])
    assert np.array_equal(pixels(stripped), pixels(data))


def test_tiff_xmp_tag_is_blanked() -> None:
    tags = Image.Exif()
    tags.load(exif().tobytes())
    tags[XMP_TAG] = XMP
    data = capture("tiff", tags)

    stripped = strip_gps(data, FORMATS["tiff"])

    check_xmp_blanked(opened(stripped).getexif()[XMP_TAG])
    assert gps_of(stripped) == {}
    assert np.array_equal(pixels(stripped), pixels(data))


def test_png_imagemagick_exif_profile_is_stripped() -> None:
    block = exif().tobytes()
    hexed = block.hex()
    profile = f"\nexif\n{len(block):8d}\n" + "\n".join(
        hexed[at : at + 72] for at in range(0, len(hexed), 72)
    )
    text = PngImagePlugin.PngInfo()
    text.add_text("Raw profile type exif", profile, zip=True)
    data = capture("png", pnginfo=text)
    assert gps_of(data)

    stripped = strip_gps(data, FORMATS["png"])

    assert gps_of(stripped) == {}
    assert opened(stripped).getexif()[MAKE] == "Canon"
    assert not has_gps(stripped, FORMATS["png"])


def patched(block: bytes, at: int, value: int) -> bytes:
    """`block` (a little-endian TIFF) with the 32-bit field at `at` set to `value`."""
    return block[:at] + struct.pack("<I", value) + block[at + 4 :]


def entry(block: bytes, ifd: int, tag: int) -> int:
    """Position of `tag`'s entry in the IFD at offset `ifd` of a little-endian TIFF."""
    (count,) = struct.unpack_from("<H", block, ifd)
    for at in range(ifd + 2, ifd + 2 + 12 * count, 12):
        if struct.unpack_from("<H", block, at)[0] == tag:
            return at
    raise AssertionError(f"no tag {tag:#x}")


def broken_blocks() -> dict[str, bytes]:
    block = exif().tobytes()[6:]  # the TIFF structure after "Exif\0\0"
    pointer = entry(block, 8, GPS_IFD)
    gps = struct.unpack_from("<I", block, pointer + 8)[0]
    (count,) = struct.unpack_from("<H", block, 8)
    return {
        "gps-pointer-outside": patched(block, pointer + 8, len(block) + 100),
        "ifd0-offset-outside": patched(block, 4, 0x7FFF_FFFF),
        "ifd-loop": patched(block, 8 + 2 + 12 * count, 8),
        "gps-value-outside": patched(block, entry(block, gps, GPS_LATITUDE) + 8, 0xFFFF_0000),
        "bad-header": b"XX" + block[2:],
    }


@pytest.mark.parametrize("case", sorted(broken_blocks()))
def test_broken_exif_is_rejected(case: str) -> None:
    data = capture("jpeg", exif=b"Exif\0\0" + broken_blocks()[case])

    for check in (strip_gps, has_gps):
        with pytest.raises(CaptureRejected) as refused:
            check(data, FORMATS["jpeg"])
        assert refused.value.reason == Reason.CORRUPT_EXIF
        assert "\n" not in refused.value.message


def test_broken_tiff_file_is_rejected() -> None:
    data = capture("tiff", exif())
    broken = patched(data, 4, len(data) + 8)  # IFD0 offset past the end of the file

    with pytest.raises(CaptureRejected) as refused:
        strip_gps(broken, FORMATS["dng"])
    assert refused.value.reason == Reason.CORRUPT_EXIF


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_with(chunk: bytes) -> bytes:
    """A PNG without EXIF of its own, `chunk` placed after IHDR."""
    plain = capture("png")
    return plain[:33] + chunk + plain[33:]


def png_chunk_body(data: bytes, kind: bytes) -> bytes:
    at = data.index(kind) - 4
    (length,) = struct.unpack_from(">I", data, at)
    body = data[at + 8 : at + 8 + length]
    assert struct.unpack_from(">I", data, at + 8 + length)[0] == zlib.crc32(kind + body)
    return body


def tags_of(block: bytes) -> Image.Exif:
    tags = Image.Exif()
    tags.load(block[block.index(b"Exif\0\0") :])
    return tags


@pytest.mark.parametrize("kind", [b"tEXt", b"zTXt", b"iTXt"])
def test_exif_in_a_png_text_chunk_keyed_exif_is_cleaned(kind: bytes) -> None:
    # Pillow reads a tEXt chunk keyed "exif" as the picture's EXIF, binary as it is.
    block = exif().tobytes()
    head = {b"tEXt": b"exif\0", b"zTXt": b"exif\0\0", b"iTXt": b"exif\0\1\0\0\0"}[kind]
    data = png_with(png_chunk(kind, head + (block if kind == b"tEXt" else zlib.compress(block))))
    if kind == b"tEXt":
        assert gps_of(data)[GPS_LATITUDE] == (52.0, 22.0, 11.5)

    stripped = strip_gps(data, FORMATS["png"])

    text = png_chunk_body(stripped, kind)[len(head) :]
    text = text if kind == b"tEXt" else zlib.decompress(text)
    assert tags_of(text).get_ifd(GPS_IFD) == {}
    assert tags_of(text)[MAKE] == "Canon"
    assert not has_gps(stripped, FORMATS["png"])


@pytest.mark.parametrize("kind", [b"exIf", b"prVt"])
def test_exif_in_another_png_chunk_is_cleaned_in_place(kind: bytes) -> None:
    # The obsolete exIf chunk, or a private one: exiftool and others read such EXIF.
    block = exif().tobytes()
    data = png_with(png_chunk(kind, b"camera\0" + block))

    stripped = strip_gps(data, FORMATS["png"])

    body = png_chunk_body(stripped, kind)
    assert len(stripped) == len(data)
    assert tags_of(body).get_ifd(GPS_IFD) == {}
    assert tags_of(body)[MAKE] == "Canon"


def test_each_of_two_exif_blocks_in_one_png_chunk_is_cleaned() -> None:
    # As in a Photoshop resource block: the first block's GPS zeroing stops at the second.
    block = exif().tobytes()
    data = png_with(png_chunk(b"prVt", block + block))

    body = png_chunk_body(strip_gps(data, FORMATS["png"]), b"prVt")

    for half in (body[: len(block)], body[len(block) :]):
        assert tags_of(half).get_ifd(GPS_IFD) == {}
        assert tags_of(half)[MAKE] == "Canon"


@pytest.mark.parametrize("case", ["unwalkable-exif-in-private-chunk", "zxIf", "8bim-xmp-profile"])
def test_png_chunk_that_may_hide_gps_is_refused(case: str) -> None:
    block = b"Exif\0\0" + broken_blocks()["gps-pointer-outside"]
    hexed = XMP.hex()
    chunk = {
        "unwalkable-exif-in-private-chunk": png_chunk(b"prVt", block),
        "zxIf": png_chunk(b"zxIf", b"\0" + zlib.compress(exif().tobytes())),
        "8bim-xmp-profile": png_chunk(
            b"tEXt", b"Raw profile type 8bim\0\n8bim\n" + f"{len(XMP):8d}\n{hexed}".encode()
        ),
    }[case]

    with pytest.raises(CaptureRejected) as refused:
        strip_gps(png_with(chunk), FORMATS["png"])
    assert refused.value.reason == Reason.GPS_UNCERTAIN


def camera_block() -> bytes:
    """A little-endian EXIF block laid out as cameras do, each part right after the one
    before: IFD0 (Make, Exif and GPS pointers), its Make value; the Exif IFD pointing to
    an Interop IFD; the GPS IFD (latitude reference, latitude) and its latitude; the
    Interop IFD; IFD1 placing a thumbnail; the thumbnail."""

    def ifd(entries: list[tuple[int, int, int, bytes]], following: int = 0) -> bytes:
        packed = [
            struct.pack("<HHI", tag, kind, count) + value for tag, kind, count, value in entries
        ]
        return struct.pack("<H", len(entries)) + b"".join(packed) + struct.pack("<I", following)

    def at(offset: int) -> bytes:
        return struct.pack("<I", offset)

    ifd0 = ifd(
        [(MAKE, 2, 6, at(50)), (EXIF_IFD, 4, 1, at(56)), (GPS_IFD, 4, 1, at(74))], following=146
    )
    exif_ifd = ifd([(0xA005, 4, 1, at(128))])
    gps = ifd([(1, 2, 2, b"N\0\0\0"), (GPS_LATITUDE, 5, 3, at(104))])
    latitude = struct.pack("<6I", 52, 1, 22, 1, 23, 2)
    interop = ifd([(1, 2, 4, b"R98\0")])
    ifd1 = ifd([(0x0201, 4, 1, at(176)), (0x0202, 4, 1, at(16))])
    thumbnail = b"\xff\xd8" + bytes(range(1, 13)) + b"\xff\xd9"
    block = b"II*\0" + at(8) + ifd0 + b"Canon\0" + exif_ifd + gps + latitude + interop + ifd1
    assert len(block) == 176
    return block + thumbnail


def test_camera_layout_changes_only_in_its_gps_data() -> None:
    block = camera_block()
    data = capture("jpeg", exif=b"Exif\0\0" + block)
    assert gps_of(data)[GPS_LATITUDE] == (52.0, 22.0, 11.5)
    tiff = data.index(b"Exif\0\0") + 6

    stripped = strip_gps(data, FORMATS["jpeg"])

    assert gps_of(stripped) == {}
    after = stripped[tiff : tiff + len(block)]
    assert after[:8] + after[50:74] + after[128:] == block[:8] + block[50:74] + block[128:]
    assert after[74:128] == bytes(54)  # the GPS IFD and its latitude
    assert (
        stripped[:tiff] + stripped[tiff + len(block) :] == data[:tiff] + data[tiff + len(block) :]
    )


def understated(case: str) -> bytes:
    """The camera block with its GPS IFD saying less than it holds, or not reached."""
    block = camera_block()
    return {
        "entry-count-lowered": block[:74] + struct.pack("<H", 1) + block[76:],
        "latitude-type-narrowed": block[:90] + struct.pack("<H", 4) + block[92:],
        "gps-pointer-unlinked": block[:34] + struct.pack("<H", 0x9C9C) + block[36:],
    }[case]


@pytest.mark.parametrize("case", ["entry-count-lowered", "latitude-type-narrowed"])
def test_gps_data_beyond_what_the_gps_ifd_declares_is_zeroed(case: str) -> None:
    data = capture("jpeg", exif=b"Exif\0\0" + understated(case))
    seconds = struct.pack("<II", 23, 2)
    assert seconds in data

    stripped = strip_gps(data, FORMATS["jpeg"])

    assert seconds not in stripped
    assert struct.pack("<HHI", GPS_LATITUDE, 5, 3) not in stripped
    assert b"R98" in stripped and b"\xff\xd8\x01\x02" in stripped  # Interop, thumbnail


def test_gps_ifd_that_no_pointer_reaches_is_refused() -> None:
    data = capture("jpeg", exif=b"Exif\0\0" + understated("gps-pointer-unlinked"))

    with pytest.raises(CaptureRejected) as refused:
        strip_gps(data, FORMATS["jpeg"])
    assert refused.value.reason == Reason.GPS_UNCERTAIN


def test_heic_exif_item_under_another_type_name_is_cleaned() -> None:
    data = capture("heic", exif()).replace(b"Exif", b"Exiv", 1)  # the first: its infe type

    stripped = strip_gps(data, FORMATS["heic"])

    assert tags_of(stripped).get_ifd(GPS_IFD) == {}
    assert tags_of(stripped)[MAKE] == "Canon"
    assert len(stripped) == len(data)


def test_heic_xmp_item_under_another_type_name_naming_a_location_is_refused() -> None:
    data = capture("heic", xmp=XMP).replace(b"mime", b"mimx", 1)  # the first: its infe type

    with pytest.raises(CaptureRejected) as refused:
        strip_gps(data, FORMATS["heic"])
    assert refused.value.reason == Reason.GPS_UNCERTAIN


PLACES_XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/">'
    b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description rdf:about="" xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/"'
    b' xmlns:Iptc4xmpCore="http://iptc.org/std/Iptc4xmpCore/1.0/xmlns/"'
    b' xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"'
    b' photoshop:City="Delft" photoshop:Country="Nederland" photoshop:Credit="rainbench"'
    b' Iptc4xmpCore:Location="Markt" Iptc4xmpCore:CountryCode="NLD">'
    b"<Iptc4xmpExt:LocationShown><rdf:Bag><rdf:li rdf:parseType='Resource'>"
    b"<Iptc4xmpExt:Sublocation>Nieuwe Kerk</Iptc4xmpExt:Sublocation>"
    b"<Iptc4xmpExt:ProvinceState>Zuid-Holland</Iptc4xmpExt:ProvinceState>"
    b"</rdf:li></rdf:Bag></Iptc4xmpExt:LocationShown>"
    b"</rdf:Description></rdf:RDF></x:xmpmeta>"
)
PLACES = (b"Delft", b"Nederland", b"Markt", b"NLD", b"Nieuwe Kerk", b"Zuid-Holland")


@pytest.mark.parametrize("name", ["jpeg", "webp", "heic"])
def test_xmp_place_names_are_blanked(name: str) -> None:
    """The docs promise no property that records a place: a city or a country names one
    as surely as a latitude does (photoshop:City, Iptc4xmpCore:Location, …)."""
    data = capture(name, xmp=PLACES_XMP)
    assert all(place in data for place in PLACES)

    stripped = strip_gps(data, FORMATS[name])

    assert len(stripped) == len(data) and not any(place in stripped for place in PLACES)
    xmp = opened(stripped).info["xmp"]
    root = ET.fromstring(xmp[xmp.index(b"<x:xmpmeta") : xmp.index(b"</x:xmpmeta>") + 12])
    description = root.find(".//{http://www.w3.org/1999/02/22-rdf-syntax-ns#}Description")
    assert description.get("{http://ns.adobe.com/photoshop/1.0/}Credit") == "rainbench"
    assert np.array_equal(pixels(stripped), pixels(data))


def iptc_segment(*datasets: tuple[int, bytes]) -> bytes:
    """A JPEG APP13 segment holding Photoshop's IPTC resource with record-2 `datasets`."""
    iim = b"".join(b"\x1c\x02" + bytes([n]) + struct.pack(">H", len(v)) + v for n, v in datasets)
    resource = b"8BIM\x04\x04\0\0" + struct.pack(">I", len(iim)) + iim + b"\0" * (len(iim) % 2)
    payload = b"Photoshop 3.0\0" + resource
    return b"\xff\xed" + struct.pack(">H", len(payload) + 2) + payload


def test_iptc_place_names_are_zeroed_and_the_rest_kept() -> None:
    plain = capture("jpeg")
    places = [(90, b"Delft"), (92, b"Nieuwe Kerk"), (95, b"Zuid-Holland"), (101, b"Nederland")]
    data = plain[:2] + iptc_segment((80, b"A. Photographer"), *places, (100, b"NLD")) + plain[2:]

    stripped = strip_gps(data, FORMATS["jpeg"])

    assert len(stripped) == len(data) and not any(place in stripped for place in PLACES)
    assert b"A. Photographer" in stripped
    assert np.array_equal(pixels(stripped), pixels(data))


def test_an_iptc_place_name_past_a_broken_dataset_is_refused() -> None:
    plain = capture("jpeg")
    segment = bytearray(iptc_segment((80, b"A. Photographer"), (90, b"Delft")))
    segment[segment.index(b"\x1c\x02\x50")] = 0  # the first dataset's tag marker
    data = plain[:2] + bytes(segment) + plain[2:]
    with pytest.raises(CaptureRejected) as refused:
        strip_gps(data, FORMATS["jpeg"])
    assert refused.value.reason == Reason.GPS_UNCERTAIN


def with_thumbnail(thumbnail: bytes) -> bytes:
    """A little-endian EXIF block: IFD0 (Make), then IFD1 placing `thumbnail` after it."""
    ifd0 = struct.pack("<HHHII", 1, MAKE, 2, 4, int.from_bytes(b"Sony", "little")) + struct.pack(
        "<I", 26
    )
    ifd1 = struct.pack("<H", 2)
    ifd1 += struct.pack("<HHII", 0x0201, 4, 1, 56) + struct.pack(
        "<HHII", 0x0202, 4, 1, len(thumbnail)
    )
    block = b"II*\0" + struct.pack("<I", 8) + ifd0 + ifd1 + struct.pack("<I", 0)
    assert len(block) == 56
    return block + thumbnail


@pytest.mark.parametrize("name", ["jpeg", "png", "webp"])
def test_gps_in_the_exif_of_a_thumbnail_is_removed(name: str) -> None:
    # A thumbnail is a JPEG of its own, and may carry its own EXIF with the GPS directory.
    thumbnail = capture("jpeg", exif())
    data = capture(name, exif=b"Exif\0\0" + with_thumbnail(thumbnail))
    at = data.index(thumbnail)
    seconds = struct.pack("<II", 23, 2)  # the latitude's 11.5 seconds
    assert seconds in data

    stripped = strip_gps(data, FORMATS[name])

    assert seconds not in stripped
    kept = stripped[at : at + len(thumbnail)]
    assert gps_of(kept) == {} and kept_tags(kept)[MAKE] == "Canon"
    assert pixels(kept).shape == pixels(thumbnail).shape
    assert len(stripped) == len(data)


def test_gps_in_a_maker_notes_own_tiff_structure_is_removed() -> None:
    # Nikon's maker note holds a whole TIFF structure; one with a GPS directory in it.
    inner = exif(endian=">").tobytes()[len(b"Exif\0\0") :]
    tags = Image.Exif()
    tags[MAKE] = "NIKON"
    tags.get_ifd(EXIF_IFD)[0x927C] = b"Nikon\0\x02\x10\0\0" + inner
    data = capture("jpeg", tags)
    at = data.index(inner)
    seconds = struct.pack(">II", 23, 2)  # the latitude's 11.5 seconds
    assert seconds in data

    stripped = strip_gps(data, FORMATS["jpeg"])

    assert seconds not in stripped
    note = Image.Exif()
    note.load(stripped[at : at + len(inner)])
    assert note.get_ifd(GPS_IFD) == {} and note[MAKE] == "Canon"
    assert len(stripped) == len(data)


def test_exif_nested_deeper_than_cameras_nest_it_is_refused() -> None:
    # A thumbnail's thumbnail is cleaned; a hostile chain of them is refused at once,
    # rather than walked level after level.
    thumbnail = capture("jpeg", exif())
    for _ in range(2):
        thumbnail = capture("jpeg", exif=b"Exif\0\0" + with_thumbnail(thumbnail))
    assert struct.pack("<II", 23, 2) not in strip_gps(thumbnail, FORMATS["jpeg"])

    deeper = capture("jpeg", exif=b"Exif\0\0" + with_thumbnail(thumbnail))
    with pytest.raises(CaptureRejected) as refused:
        strip_gps(deeper, FORMATS["jpeg"])
    assert refused.value.reason == Reason.GPS_UNCERTAIN


# The latitude's 11.5 seconds, as the GPS directory of exif() stores them.
SECONDS = {"<": struct.pack("<II", 23, 2), ">": struct.pack(">II", 23, 2)}


def test_gps_data_laid_over_the_pixels_is_refused() -> None:
    # A GPS value whose offset points into the strip: zeroing it would change pixels.
    data = bytearray(capture("tiff", exif()))
    strip = opened(bytes(data)).tag_v2[0x0111][0]
    latitude = data.index(struct.pack("<HHI", GPS_LATITUDE, 5, 3))
    data[latitude + 8 : latitude + 12] = struct.pack("<I", strip + 16)
    data = bytes(data)
    assert gps_of(data)[GPS_LATITUDE]

    with pytest.raises(CaptureRejected) as refused:
        strip_gps(data, FORMATS["tiff"])
    assert refused.value.reason == Reason.CORRUPT_EXIF
    assert "picture's data" in refused.value.message


def jpeg_with(marker: int, payload: bytes) -> bytes:
    plain = capture("jpeg")
    return (
        plain[:2]
        + bytes([0xFF, marker])
        + struct.pack(">H", len(payload) + 2)
        + payload
        + plain[2:]
    )


def webp_with(fourcc: bytes, payload: bytes) -> bytes:
    body = capture("webp")[12:] + fourcc + struct.pack("<I", len(payload)) + payload
    body += b"\0" * (len(payload) & 1)
    return b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP" + body


def photoshop_resource(resource: int, payload: bytes) -> bytes:
    head = b"Photoshop 3.0\0" + b"8BIM" + struct.pack(">H", resource) + b"\0\0"
    return head + struct.pack(">I", len(payload)) + payload + b"\0" * (len(payload) & 1)


EXIF_BLOCK = exif().tobytes()[len(b"Exif\0\0") :]
ELSEWHERE = {
    # ExifTool reads an APP1 whose header is "Exif\0" in any case, then any byte.
    "jpeg-app1-EXIF": lambda block: jpeg_with(0xE1, b"EXIF\0\0" + block),
    "jpeg-app1-Exif-ff": lambda block: jpeg_with(0xE1, b"Exif\0\xff" + block),
    "jpeg-app3-meta": lambda block: jpeg_with(0xE3, b"Meta\0\0" + block),  # Kodak's
    "jpeg-comment": lambda block: jpeg_with(0xFE, block),
    "jpeg-photoshop-exif": lambda block: jpeg_with(0xED, photoshop_resource(0x0422, block)),
    "webp-chunk": lambda block: webp_with(b"exif", block),
}


@pytest.mark.parametrize("where", ELSEWHERE)
def test_exif_in_other_metadata_is_cleaned(where: str) -> None:
    data = ELSEWHERE[where](EXIF_BLOCK)
    name = "webp" if where.startswith("webp") else "jpeg"
    assert SECONDS["<"] in data

    stripped = strip_gps(data, FORMATS[name])

    assert SECONDS["<"] not in stripped
    assert len(stripped) == len(data)
    at = data.index(EXIF_BLOCK)
    kept = Image.Exif()
    kept.load(stripped[at : at + len(EXIF_BLOCK)])
    assert kept.get_ifd(GPS_IFD) == {} and kept[MAKE] == "Canon"
    assert np.array_equal(pixels(stripped), pixels(data))


XMP_ELSEWHERE = {
    # ExifTool reads XMP from an APP1 or a WebP chunk headed "XMP\0".
    "jpeg-app1-XMP": lambda xmp: jpeg_with(0xE1, b"XMP\0" + xmp),
    "jpeg-comment": lambda xmp: jpeg_with(0xFE, xmp),
    "jpeg-photoshop-xmp": lambda xmp: jpeg_with(0xED, photoshop_resource(0x0424, xmp)),
    "webp-chunk": lambda xmp: webp_with(b"XMP\0", xmp),
    "png-itxt": lambda xmp: capture("png", pnginfo=_itxt("XMP", xmp)),
}


def _itxt(keyword: str, text: bytes) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_itxt(keyword, text.decode())
    return info


@pytest.mark.parametrize("where", XMP_ELSEWHERE)
def test_xmp_place_names_in_other_metadata_are_blanked(where: str) -> None:
    data = XMP_ELSEWHERE[where](PLACES_XMP)
    name = where.split("-")[0]
    assert all(place in data for place in PLACES)

    stripped = strip_gps(data, FORMATS[name])

    assert not any(place in stripped for place in PLACES)
    assert b'photoshop:Credit="rainbench"' in stripped
    assert np.array_equal(pixels(stripped), pixels(data))


def test_a_png_chunk_of_a_critical_type_no_decoder_knows_is_cleaned() -> None:
    # Pillow skips a critical chunk it does not know, whatever the standard says.
    plain = capture("png")
    iend = plain.rindex(b"IEND") - 4
    body = b"LOCA+47.3754+008.5451/"
    data = plain[:iend] + struct.pack(">I", len(body) - 4) + body + b"\0\0\0\0" + plain[iend:]
    assert pixels(data).shape == pixels(plain).shape

    stripped = strip_gps(data, FORMATS["png"])

    assert stripped == plain


def heic_iloc(data: bytes) -> tuple[int, list[tuple[int, int, int]]]:
    """Where pillow-heif's iloc box is (version 0, 4-byte offsets, lengths and bases, one
    extent each) and its items: ID, offset, length."""
    at = data.index(b"iloc") - 4
    assert data[at + 12 : at + 14] == b"\x44\x40"
    items = []
    for pos in range(at + 16, at + 16 + 18 * struct.unpack_from(">H", data, at + 14)[0], 18):
        item, _, base, extents, offset, length = struct.unpack_from(">HHIHII", data, pos)
        assert extents == 1
        items.append((item, base + offset, length))
    return at, items


def test_a_heic_item_located_twice_is_refused() -> None:
    # libheif reads the first place an item is given: cleaning another would leave GPS.
    data = capture("heic", exif())
    clean = capture("heic", exif(gps=False))
    at, items = heic_iloc(data)
    (_, clean_at, clean_length) = heic_iloc(clean)[1][1]
    grown = 18  # one more entry, for the Exif item (2): a clean copy appended
    entries = [(item, offset + grown, length) for item, offset, length in items]
    entries.append((2, len(data) + grown, clean_length))
    body = b"\0\0\0\0\x44\x40" + struct.pack(">H", len(entries))
    body += b"".join(struct.pack(">HHIHII", i, 0, 0, 1, o, n) for i, o, n in entries)
    size = struct.unpack_from(">I", data, at)[0]
    meta, mdat = data.index(b"meta") - 4, data.index(b"mdat") - 4
    located = bytearray(
        data[:at] + struct.pack(">I", 8 + len(body)) + b"iloc" + body + data[at + size :]
    )
    located += clean[clean_at : clean_at + clean_length]
    for box, grows in ((meta, grown), (mdat + grown, clean_length)):
        located[box : box + 4] = struct.pack(
            ">I", struct.unpack_from(">I", located, box)[0] + grows
        )
    located = bytes(located)
    assert gps_of(located)[GPS_LATITUDE]

    with pytest.raises(CaptureRejected) as refused:
        strip_gps(located, FORMATS["heic"])
    assert refused.value.reason == Reason.CORRUPT_EXIF


def test_a_heic_item_without_a_type_is_searched() -> None:
    # infe version 1 gives a name and a content type, no item type: the Exif item's bytes
    # are stored all the same.
    data = capture("heic", exif())
    infe = data.index(b"infe\x02\0\0\x01\0\x02\0\0Exif\0")
    untyped = data[:infe] + b"infe\x01\0\0\0\0\x02\0\0Exi\0\0" + data[infe + 17 :]
    assert len(untyped) == len(data) and SECONDS["<"] in untyped

    stripped = strip_gps(untyped, FORMATS["heic"])

    assert SECONDS[">"] not in stripped and SECONDS["<"] not in stripped
    assert len(stripped) == len(untyped)


def tiff_with_resources(payload: bytes) -> bytes:
    """A TIFF whose tag 34377 holds `payload` as Photoshop's image resources."""
    info = TiffImagePlugin.ImageFileDirectory_v2()
    info[0x8649], info.tagtype[0x8649] = payload, 7
    out = io.BytesIO()
    image().save(out, "TIFF", tiffinfo=info)
    return out.getvalue()


@pytest.mark.parametrize(
    ("resource", "payload", "gone"),
    [
        (0x0422, EXIF_BLOCK, SECONDS["<"]),
        (0x0424, PLACES_XMP, b"Delft"),
        (0x0404, b"\x1c\x02\x5a\0\x05Delft", b"Delft"),  # IPTC's city
    ],
    ids=["exif", "xmp", "iptc"],
)
def test_photoshop_resources_of_a_tiff_are_cleaned(resource, payload, gone) -> None:
    data = tiff_with_resources(photoshop_resource(resource, payload)[len(b"Photoshop 3.0\0") :])
    assert gone in data

    stripped = strip_gps(data, FORMATS["tiff"])

    assert gone not in stripped and len(stripped) == len(data)
    assert np.array_equal(pixels(stripped), pixels(data))


def test_a_tiff_naming_a_location_outside_its_gps_directory_is_refused() -> None:
    # As an EXIF block in any other format is: the TIFF file is its EXIF block.
    tags = exif(gps=False)
    tags.get_ifd(EXIF_IFD)[0x9286] = b"ASCII\0\0\0latitude 47.3754 longitude 8.5451"
    data = capture("tiff", tags)

    with pytest.raises(CaptureRejected) as refused:
        strip_gps(data, FORMATS["tiff"])
    assert refused.value.reason == Reason.GPS_UNCERTAIN


def test_the_pixels_of_a_tiff_are_not_searched_for_a_location() -> None:
    # Its strips are pictures, not metadata: searching every pixel would cost more than
    # the rest of ingest, and a picture may hold any bytes.
    words = np.frombuffer(b"latitude 47.3754 longitude 8.5451", np.uint8)
    out = io.BytesIO()
    Image.fromarray(np.resize(words, (32, 32, 3))).save(out, "TIFF", exif=exif(gps=True).tobytes())
    data = out.getvalue()
    assert b"latitude 47.3754" in data

    stripped = strip_gps(data, FORMATS["tiff"])

    assert gps_of(stripped) == {}
    assert np.array_equal(np.asarray(opened(stripped)), np.asarray(opened(data)))


def test_the_items_of_a_second_heic_meta_box_are_cleaned() -> None:
    # libheif reads the first meta box; the Exif item a second one places is stored too.
    data = capture("heic", exif())
    meta, mdat = data.index(b"meta") - 4, data.index(b"mdat") - 4
    at, items = heic_iloc(data)
    (_, exif_at, length) = items[1]
    second = bytearray(data[meta:mdat])
    base = at - meta + 16 + 18 + 4  # the Exif entry's base offset, its offset 0
    assert struct.unpack_from(">I", second, base + 6)[0] == 0
    struct.pack_into(">I", second, base, len(data) + len(second) + 8)
    copy = data[exif_at : exif_at + length]
    doubled = data + bytes(second) + struct.pack(">I", 8 + length) + b"mdat" + copy
    assert doubled.count(SECONDS["<"]) == 2

    stripped = strip_gps(doubled, FORMATS["heic"])

    assert SECONDS["<"] not in stripped and len(stripped) == len(doubled)
    assert gps_of(stripped) == {} and kept_tags(stripped)[MAKE] == "Canon"


def test_a_heic_meta_box_with_two_item_location_boxes_is_refused() -> None:
    # Its hdlr box made an iloc box placing no item, before the one placing them all.
    data = bytearray(capture("heic", exif()))
    hdlr = data.index(b"hdlr")
    assert hdlr < data.index(b"iloc")
    data[hdlr : hdlr + 12] = b"iloc" + bytes(8)  # version 0, no sizes, no items
    data = bytes(data)

    with pytest.raises(CaptureRejected) as refused:
        strip_gps(data, FORMATS["heic"])
    assert refused.value.reason == Reason.CORRUPT_EXIF
