from datetime import datetime

from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from rainbench.capture.exif import MAX_TEXT, read_exif


def _exif() -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "Canon\x00 "
    exif[0x0110] = "EOS R6"
    exif[0x0112] = 6
    sub = exif.get_ifd(0x8769)
    sub[0x9003] = "2026:05:04 17:30:12"
    sub[0x829A] = 1 / 250
    sub[0x829D] = 2.8
    sub[0x8827] = 800
    sub[0x920A] = 35.0
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "S", (33.0, 51.0, 54.0)
    gps[3], gps[4] = "E", (151.0, 12.0, 36.0)
    gps[5], gps[6] = 0, 58.0
    return exif


def test_fields_are_read_and_cleaned():
    fields = read_exif(_exif())
    assert (fields.camera_make, fields.camera_model) == ("Canon", "EOS R6")
    assert fields.orientation == 6
    assert fields.captured_at == datetime(2026, 5, 4, 17, 30, 12)
    assert fields.exposure_time == 1 / 250
    assert (fields.f_number, fields.iso, fields.focal_length_mm) == (2.8, 800, 35.0)


def test_gps_only_when_kept():
    assert read_exif(_exif()).gps_lat is None
    kept = read_exif(_exif(), keep_gps=True)
    assert kept.gps_lat == -(33 + 51 / 60 + 54 / 3600)
    assert kept.gps_lon == 151 + 12 / 60 + 36 / 3600
    assert kept.gps_alt == 58.0


def test_a_gps_coordinate_with_a_zero_denominator_is_none_not_nan():
    # Receivers without a fix write 0/0, which Pillow reads as NaN.
    exif = _exif()
    exif.get_ifd(0x8825)[2] = (IFDRational(33, 1), IFDRational(0, 0), IFDRational(0, 0))
    kept = read_exif(exif, keep_gps=True)
    assert kept.gps_lat is None and kept.gps_lon == 151 + 12 / 60 + 36 / 3600


def test_garbage_values_become_none():
    exif = Image.Exif()
    exif[0x0112] = 42
    exif.get_ifd(0x8769)[0x9003] = "yesterday"
    fields = read_exif(exif)
    assert fields.orientation is None and fields.captured_at is None
    assert read_exif(Image.Exif()).camera_make is None


def test_a_text_longer_than_any_cameras_name_is_none():
    # EXIF sets no length; a make of MBs would be carried through every record of it.
    exif = Image.Exif()
    exif[0x010F] = "C" * MAX_TEXT
    exif[0x0110] = "M" * (MAX_TEXT + 1)
    fields = read_exif(exif)
    assert fields.camera_make == "C" * MAX_TEXT and fields.camera_model is None


def test_subsecond_time_is_kept_for_bursts():
    exif = _exif()
    exif.get_ifd(0x8769)[0x9291] = "25"
    assert read_exif(exif).captured_at == datetime(2026, 5, 4, 17, 30, 12, 250000)
    exif.get_ifd(0x8769)[0x9291] = "n/a"
    assert read_exif(exif).captured_at == datetime(2026, 5, 4, 17, 30, 12)


def test_without_app1_keeps_the_picture_and_drops_exif_and_xmp():
    import io

    import numpy as np

    from rainbench.capture.exif import without_app1

    buffer = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><tiff:Orientation>6</tiff:Orientation></x:xmpmeta>'
    Image.fromarray(pixels).save(buffer, "JPEG", exif=_exif().tobytes(), xmp=xmp)
    data = buffer.getvalue()
    # A fill byte before a marker is legal; it must not be read as a segment.
    data = data[:2] + b"\xff" + data[2:]
    stripped = without_app1(data)
    assert b"\xff\xe1" not in stripped[: stripped.index(b"\xff\xda")]
    assert b"Exif" not in stripped and b"xmpmeta" not in stripped
    with Image.open(io.BytesIO(stripped)) as reread:
        assert not reread.getexif() and reread.size == (32, 24)
        with Image.open(io.BytesIO(data)) as original:
            assert np.array_equal(np.asarray(reread), np.asarray(original))
