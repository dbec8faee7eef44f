"""Validating decodes of the formats Pillow reads: damage is refused with a reason, and
the preview is made without holding more than the decoded picture."""

import io
import struct
import threading
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from rainbench.capture import decode
from rainbench.capture.decode import (
    MAX_JPEG_SCANS,
    decode_capture,
    header_size,
    load_stored,
    load_upright,
    megapixels,
    open_image,
    reduce_for_preview,
)
from rainbench.capture.formats import FORMATS
from rainbench.capture.reject import CaptureRejected, Reason
from rainbench.demo.captures import CaptureSpec, capture_bytes
from rainbench.errors import RainbenchError


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png(
    width: int, height: int, idat: bytes, before_idat: bytes = b"", after_idat: bytes = b""
) -> bytes:
    """An 8-bit RGB PNG with valid CRCs around whatever `idat` holds."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + before_idat
        + png_chunk(b"IDAT", idat)
        + after_idat
        + png_chunk(b"IEND", b"")
    )


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=1)
    return out.getvalue()


def broken_idat(width: int, height: int) -> bytes:
    """RGB pixel data whose deflate stream is damaged."""
    idat = bytearray(zlib.compress(bytes((1 + 3 * width) * height)))
    idat[2:42] = b"\xff" * 40
    return bytes(idat)


def exif_chunk(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return png_chunk(b"eXIf", exif.tobytes())


def test_png_whose_pixels_do_not_decode_is_refused():
    # Without an eXIf chunk, Pillow's PNG getexif() decodes the pixels itself: the
    # failure must not be lost with the EXIF it was reading.
    with pytest.raises(CaptureRejected) as refused:
        decode_capture(png(64, 48, broken_idat(64, 48)), FORMATS["png"])
    assert refused.value.reason == Reason.CORRUPT


def test_png_exif_after_the_pixels_is_read():
    idat = zlib.compress(bytes((1 + 3 * 64) * 48))
    data = png(64, 48, idat, after_idat=exif_chunk(6))  # turned 90° clockwise
    decoded = decode_capture(data, FORMATS["png"])
    assert decoded.exif[0x0112] == 6
    assert (decoded.width, decoded.height) == (48, 64)


def test_header_size_decodes_no_png_pixels():
    # Damaged pixel data would fail a decode: the size comes back, so none was run.
    assert header_size(png(64, 48, broken_idat(64, 48))) == (64, 48)
    assert header_size(png(64, 48, broken_idat(64, 48), before_idat=exif_chunk(6))) == (48, 64)


def test_header_size_turns_a_png_by_an_exif_chunk_after_its_pixels_as_decoding_does():
    idat = zlib.compress(bytes((1 + 3 * 64) * 48))
    after = png(64, 48, idat, after_idat=exif_chunk(6))
    assert header_size(after) == load_upright(after, FORMATS["png"]).size == (48, 64)
    assert header_size(png(64, 48, broken_idat(64, 48), after_idat=exif_chunk(8))) == (48, 64)
    assert header_size(png(64, 48, idat) + exif_chunk(6)) == (64, 48)  # after IEND: unread


def icon_holding(picture: bytes) -> bytes:
    """An ICO whose one icon declares 256×256 and holds `picture`, whatever its size."""
    entry = struct.pack("<BBBBHHII", 0, 0, 0, 0, 1, 32, len(picture), 6 + 16)
    return struct.pack("<HHH", 0, 1, 1) + entry + picture


def test_bytes_are_opened_only_as_their_format_and_never_by_a_plugin_that_decodes_to_open():
    # Pillow's ICO plugin decodes its icon while it opens, before any cap is checked: a
    # 256×256 icon holding a 16000×16000 PNG took 1.6 GB from a 0.75 MB member.
    icon = icon_holding(png_bytes(Image.new("RGB", (600, 400))))
    for fmt in ("png", "jpeg"):
        with pytest.raises(UnidentifiedImageError):
            load_stored(icon, FORMATS[fmt], max_pixels=256 * 256)
    assert header_size(icon) is None
    # Pillow's EPS plugin hands the file to Ghostscript, an interpreter, where one is.
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 48\nshowpage\n"
    assert header_size(eps) is None
    with pytest.raises(UnidentifiedImageError):
        open_image(eps)
    plain = png_bytes(Image.new("RGB", (64, 48)))
    assert header_size(plain) == header_size(plain, FORMATS["png"]) == (64, 48)
    assert header_size(plain, FORMATS["jpeg"]) is None


def progressive_jpeg(repeats: int) -> bytes:
    """A progressive 64×48 JPEG of libjpeg's ten scans, its last scan `repeats` more
    times: libjpeg only warns at a scan that repeats another."""
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (90, 120, 150)).save(out, "JPEG", progressive=True)
    data = out.getvalue()
    last = data.rindex(b"\xff\xda")
    return data[:-2] + data[last:-2] * repeats + b"\xff\xd9"


def test_a_jpeg_of_too_many_scans_is_refused_before_it_is_decoded():
    # Each scan is decoded over the whole picture: 40 ms a scan at 64 MP, for 11 bytes.
    assert decode.jpeg_scans(progressive_jpeg(0), 1000) == 10
    allowed = progressive_jpeg(MAX_JPEG_SCANS - 10)
    assert load_stored(allowed, FORMATS["jpeg"])[0].size == (64, 48)
    many = progressive_jpeg(MAX_JPEG_SCANS - 9)
    with pytest.raises(OSError, match=f"more than {MAX_JPEG_SCANS} progressive scans"):
        load_stored(many, FORMATS["jpeg"])
    with pytest.raises(CaptureRejected) as refused:
        decode_capture(many, FORMATS["jpeg"])
    assert refused.value.reason == Reason.CORRUPT and "progressive scans" in refused.value.message
    # A scan marker inside a segment (an EXIF thumbnail's) is no scan of the picture.
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    thumbnail = png_bytes(Image.new("RGB", (8, 8)))  # any bytes: the count skips them
    app1 = b"\xff\xe1" + struct.pack(">H", 2 + len(thumbnail) + 200) + thumbnail + b"\xff\xda" * 100
    with_app1 = allowed[:2] + app1 + allowed[2:]
    assert decode.jpeg_scans(with_app1, 1000) == MAX_JPEG_SCANS


def test_tiff_with_ascii_strip_offsets_is_corrupt():
    # Pillow seeks to the ASCII value and raises TypeError, not one of its own errors.
    spec = CaptureSpec("a.tif", 64, 48, fmt="tiff", mode="L", orientation=None)
    data = bytearray(capture_bytes(spec))
    order = "<" if data[:2] == b"II" else ">"
    (ifd,) = struct.unpack_from(order + "I", data, 4)
    (count,) = struct.unpack_from(order + "H", data, ifd)
    for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
        if struct.unpack_from(order + "H", data, entry)[0] == 273:  # StripOffsets
            struct.pack_into(order + "H", data, entry + 2, 2)  # LONG → ASCII
    with pytest.raises(CaptureRejected) as refused:
        decode_capture(bytes(data), FORMATS["tiff"])
    assert refused.value.reason == Reason.CORRUPT
    assert "TypeError" in refused.value.message and "\n" not in refused.value.message


def test_preview_never_converts_the_whole_picture(monkeypatch):
    width, height = 6000, 4000
    data = png_bytes(Image.new("RGBA", (width, height)))
    converted: list[int] = []
    convert = Image.Image.convert

    def counting_convert(image: Image.Image, *args, **kwargs) -> Image.Image:
        converted.append(image.width * image.height)
        return convert(image, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "convert", counting_convert)
    decoded = decode_capture(data, FORMATS["png"])
    assert decoded.reduced.size == (1200, 800) and decoded.reduced.mode == "RGB"
    assert converted and max(converted) <= width * height // 4


@pytest.mark.parametrize("mode", ["RGBA", "LA", "L", "P", "I;16", "CMYK"])
def test_preview_equals_the_whole_picture_converted_then_reduced(monkeypatch, mode):
    monkeypatch.setattr(decode, "_BAND_PIXELS", 50_000)  # many bands, a partial last one
    rng = np.random.default_rng(3)
    size = (2111, 1333)  # neither side a multiple of the reduction factor, 2
    if mode == "I;16":
        grey = rng.integers(0, 65536, size[::-1], np.uint16).astype("<u2")
        image = Image.frombytes(mode, size, grey.tobytes())
    else:
        bands = len(Image.new(mode, (1, 1)).getbands())
        image = Image.frombytes(
            mode, size, rng.integers(0, 256, size[0] * size[1] * bands, np.uint8)
        )
    expected = decode._to_rgb(image).reduce(2)
    assert np.array_equal(np.asarray(reduce_for_preview(image)), np.asarray(expected))


def test_memory_error_is_refused_as_unreadable(monkeypatch):
    def out_of_memory(image: Image.Image) -> Image.Image:
        raise MemoryError

    monkeypatch.setattr(decode, "_to_rgb", out_of_memory)
    with pytest.raises(CaptureRejected) as refused:
        decode_capture(png_bytes(Image.new("RGBA", (64, 48))), FORMATS["png"])
    assert refused.value.reason == Reason.UNREADABLE  # retried: the machine was short
    assert refused.value.message == "cannot decode: too large to hold in memory (64×48)"


def test_threads_decoding_at_once_leave_the_process_cap_and_warnings_as_they_were():
    # Pillow's bomb cap and the warnings filters are the process's: each decode sets them
    # and puts them back, and threads interleaving those steps kept another's setting.
    data = capture_bytes(CaptureSpec(name="a.png", width=48, height=32, fmt="png"))
    fmt = FORMATS["png"]
    cap, filters = Image.MAX_IMAGE_PIXELS, list(warnings.filters)
    start = threading.Barrier(8)

    def decode_many():
        start.wait()
        for _ in range(300):
            load_stored(data, fmt)
            header_size(data, fmt)

    threads = [threading.Thread(target=decode_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cap == Image.MAX_IMAGE_PIXELS
    assert warnings.filters == filters


def test_the_readers_cap_is_rainbench_max_pixels_and_a_bad_value_is_one_line(monkeypatch):
    monkeypatch.delenv("RAINBENCH_MAX_PIXELS", raising=False)
    assert decode.readers_max_pixels() == 250_000_000  # ingest's default
    monkeypatch.setenv("RAINBENCH_MAX_PIXELS", "400000000")
    assert decode.readers_max_pixels() == 400_000_000
    for bad in ("0", "-5", "4e8", "400 MP", "many"):
        monkeypatch.setenv("RAINBENCH_MAX_PIXELS", bad)
        with pytest.raises(RainbenchError) as refused:
            decode.readers_max_pixels()
        assert str(refused.value) == (
            f"RAINBENCH_MAX_PIXELS={bad!r} is not a positive whole number of pixels (the "
            "readers' pixel cap, e.g. 400000000; unset: 250000000)"
        )


def _tiff(array: np.ndarray, **options) -> bytes:
    stream = io.BytesIO()
    Image.fromarray(array).save(stream, "TIFF", **options)
    return stream.getvalue()


def test_an_oriented_tiffs_header_size_is_upright_once():
    # Pillow 13 opens a TIFF already turned by its orientation: the size is not turned
    # a second time.
    data = _tiff(np.zeros((20, 30, 3), np.uint8), tiffinfo={274: 6})
    assert header_size(data) == load_upright(data, FORMATS["tiff"]).size == (20, 30)


TURNED_XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/'
    b'02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" xmlns:tiff="http://ns.adobe.'
    b'com/tiff/1.0/" tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>'
)


@pytest.mark.parametrize("compression", [None, "tiff_lzw"])
def test_a_tiff_turned_by_its_xmp_alone_is_recorded_at_the_size_it_loads(compression):
    # With no EXIF orientation Pillow turns a TIFF by its XMP's tiff:Orientation as it
    # loads it; the size its header gives is not turned.
    xmp = TURNED_XMP
    data = _tiff(np.zeros((20, 30, 3), np.uint8), tiffinfo={700: xmp}, compression=compression)

    decoded = decode_capture(data, FORMATS["tiff"])

    upright = load_upright(data, FORMATS["tiff"]).size
    assert (decoded.width, decoded.height) == upright == decoded.preview.size == (20, 30)


def test_a_png_turned_by_its_xmp_alone_has_that_header_size():
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", TURNED_XMP.decode())
    stream = io.BytesIO()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(stream, "PNG", pnginfo=info)
    data = stream.getvalue()

    decoded = decode_capture(data, FORMATS["png"])

    assert header_size(data) == (decoded.width, decoded.height) == (20, 30)


def test_a_big_endian_sixteen_bit_grey_tiff_reads_as_a_little_endian_one():
    grey = (np.arange(20 * 30).reshape(20, 30) * 100).astype(np.uint16)
    little = _tiff(grey)
    big = io.BytesIO()
    Image.frombytes("I;16B", (30, 20), grey.astype(">u2").tobytes()).save(big, "TIFF")
    assert Image.open(big).mode == "I;16B"
    expected = np.asarray(load_upright(little, FORMATS["tiff"]))
    assert np.array_equal(np.asarray(load_upright(big.getvalue(), FORMATS["tiff"])), expected)
    assert decode_capture(big.getvalue(), FORMATS["tiff"]).preview.size == (30, 20)


def test_a_tiff_pillow_misreads_is_refused_not_read_as_noise():
    tifffile = pytest.importorskip("tifffile")
    rgb = np.random.default_rng(0).integers(0, 65535, (20, 30, 3), dtype=np.uint16)
    stream = io.BytesIO()
    tifffile.imwrite(stream, rgb.transpose(2, 0, 1), photometric="rgb", planarconfig="separate")
    _refused_by_every_reader(stream.getvalue(), "16-bit samples in separate colour planes")
    # Eight-bit planes Pillow reads right.
    planes = io.BytesIO()
    tifffile.imwrite(planes, (rgb >> 8).astype(np.uint8).transpose(2, 0, 1), photometric="rgb",
                     planarconfig="separate")  # fmt: skip
    assert np.array_equal(np.asarray(load_upright(planes.getvalue(), FORMATS["tiff"])), rgb >> 8)


def test_a_tiff_of_32_bit_integers_is_refused_not_read_as_white():
    grey = (np.arange(48 * 64).reshape(48, 64) * 1000).astype(np.int32)
    stream = io.BytesIO()
    Image.fromarray(grey, mode="I").save(stream, "TIFF")
    _refused_by_every_reader(stream.getvalue(), "a TIFF of 32-bit integer samples, read as 16")
    # Sixteen bits, the most Pillow reads right, still read.
    sixteen = _tiff((grey // 100).astype(np.uint16))
    assert np.asarray(load_upright(sixteen, FORMATS["tiff"])).max() == (47 * 64 + 63) * 10 // 256


def _refused_by_every_reader(tiff: bytes, said: str) -> None:
    """Ingest refuses `tiff` as an unsupported format, and the readers as a bad picture."""
    with pytest.raises(CaptureRejected, match=said) as refused:
        decode_capture(tiff, FORMATS["tiff"])
    assert refused.value.reason == Reason.UNSUPPORTED
    with pytest.raises(ValueError, match=said):
        load_stored(tiff, FORMATS["tiff"])


@pytest.mark.parametrize(
    ("pixels", "said"),
    [(250_000_000, "250 MP"), (1_500_000, "1.5 MP"), (12_345_678, "12.3 MP"), (768, "768 pixels")],
)
def test_a_pixel_cap_is_said_as_people_say_it_never_as_0_mp(pixels, said):
    assert megapixels(pixels) == said


def test_a_damaged_tiffs_pillow_log_stays_off_stderr_and_the_callers_own_logs_stay(caplog):
    # Pillow logs an absurd SamplesPerPixel at ERROR beside the error it raises; with no
    # logging set up, Python printed it on stderr beside rainbench's own one-line reason.
    data = bytearray(_tiff(np.zeros((8, 8, 3), np.uint8)))
    directory = struct.unpack_from("<I", data, 4)[0]
    entries = struct.unpack_from("<H", data, directory)[0]
    for entry in range(directory + 2, directory + 2 + 12 * entries, 12):
        if struct.unpack_from("<H", data, entry)[0] == 277:  # SamplesPerPixel
            struct.pack_into("<H", data, entry + 8, 100)
    data = bytes(data)
    with pytest.raises(CaptureRejected) as refused:
        decode_capture(data, FORMATS["tiff"])
    assert refused.value.reason == Reason.CORRUPT  # three sizes for 100 samples: damage
    with pytest.raises(UnidentifiedImageError):
        load_stored(data, FORMATS["tiff"])
    assert header_size(data) is None
    assert not caplog.records
    # Only rainbench's own opens are quiet: the program's own Pillow still logs.
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(data))
    assert [record.levelname for record in caplog.records] == ["ERROR"]


def test_a_jpeg_with_further_pictures_is_decoded_at_a_reduced_scale_as_any_jpeg():
    # Pillow opens a JPEG whose MPF index lists a depth or gain map as MPO, which was
    # decoded whole: slower, and a preview of another size than the same JPEG's.
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 255, (1500, 2200, 3), np.uint8))
    plain, with_map = io.BytesIO(), io.BytesIO()
    picture.save(plain, "JPEG")
    picture.save(with_map, "MPO", save_all=True, append_images=[picture.resize((220, 150))])
    assert Image.open(with_map).format == "MPO"

    decoded = decode_capture(with_map.getvalue(), FORMATS["jpeg"])

    assert (decoded.width, decoded.height) == (2200, 1500)
    assert decoded.reduced.size == decode_capture(plain.getvalue(), FORMATS["jpeg"]).reduced.size
    assert decoded.reduced.size == (550, 375)  # a quarter: the DCT scale, not reduce_for_preview


def test_a_png_whose_icc_profile_or_text_inflates_past_a_mib_is_whole():
    # Pillow refuses to inflate a PNG chunk past 1 MiB: such a picture was refused as
    # corrupt, where the same profile in a JPEG passes.
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8))
    large = bytes(range(256)) * (5 << 10)  # 1.25 MiB, deflated to a few KiB
    profile = io.BytesIO()
    picture.save(profile, "PNG", icc_profile=large)
    text = png(64, 48, zlib.compress(bytes(193 * 48)), after_idat=png_chunk(
        b"zTXt", b"Comment\0\0" + zlib.compress(large)))  # fmt: skip
    limit = PngImagePlugin.MAX_TEXT_CHUNK
    for data in (profile.getvalue(), text):
        decode_capture(data, FORMATS["png"])
        load_stored(data, FORMATS["png"])
    assert header_size(profile.getvalue()) == (64, 48)
    assert limit == PngImagePlugin.MAX_TEXT_CHUNK  # the process's own, once decoded


@pytest.mark.parametrize("compression", ["tiff_lzw", "tiff_adobe_deflate", "packbits"])
def test_a_tiff_cut_before_its_directory_is_truncated_not_corrupt(compression):
    # libtiff (and Pillow, compressing) writes the directory after the pixels, so a TIFF
    # cut short has no header left to parse: it was refused as corrupt.
    data = _tiff(np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8),
                 compression=compression)  # fmt: skip
    directory = struct.unpack_from("<I", data, 4)[0]
    for cut in (data[:6], data[: len(data) // 2], data[: directory + 30]):
        with pytest.raises(CaptureRejected) as refused:
            decode_capture(cut, FORMATS["tiff"])
        assert refused.value.reason == Reason.TRUNCATED
        assert refused.value.message == "the file ends early: the tiff header does not parse"
    damaged = bytearray(data)
    entries = struct.unpack_from("<H", data, directory)[0]
    damaged[directory + 2 : directory + 2 + 12 * entries] = b"\xff" * 12 * entries  # all there
    with pytest.raises(CaptureRejected) as refused:
        decode_capture(bytes(damaged), FORMATS["tiff"])
    assert refused.value.reason == Reason.CORRUPT


@pytest.mark.parametrize(
    ("array", "options", "said"),
    [
        # Colour floating point (an HDR merge's output): "a floating-point TIFF" as for grey.
        (np.zeros((8, 8, 3), np.float32), {"photometric": "rgb"}, "a floating-point TIFF, "),
        (np.zeros((8, 8, 2), np.uint16), {"photometric": "minisblack", "extrasamples": [2]},
         "(2 samples of 16 bits, PhotometricInterpretation 1)"),
        (np.zeros((8, 8, 5), np.uint8), {"photometric": "separated", "extrasamples": [2]},
         "(5 samples of 8 bits, PhotometricInterpretation 5)"),
    ],
)  # fmt: skip
def test_a_whole_tiff_of_samples_pillow_has_no_mode_for_is_unsupported_not_corrupt(
    array, options, said
):
    # Pillow identifies no picture in it: it was refused as corrupt (and never tried
    # again), its header said not to parse.
    tifffile = pytest.importorskip("tifffile")
    stream = io.BytesIO()
    tifffile.imwrite(stream, array, **options)
    with pytest.raises(CaptureRejected) as refused:
        decode_capture(stream.getvalue(), FORMATS["tiff"])
    assert refused.value.reason == Reason.UNSUPPORTED
    assert said in refused.value.message
