"""Tests for rainbench.demo.captures: captures are deterministic, carry the EXIF, size
and pixel mode asked for, near-duplicates decode, and each bad file is refused for the
reason the corpus promises.
"""

import importlib.util
import io
import struct
import sys
import time
import zlib
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PIL.ExifTags import GPS, IFD, Base

from rainbench.capture.decode import Decoded, decode_capture
from rainbench.capture.formats import sniff
from rainbench.capture.reject import CaptureRejected, Reason
from rainbench.demo.captures import (
    MODES,
    CaptureSpec,
    capture_bytes,
    missing_writer,
    render_scene,
    sample_specs,
    shows_upright,
    write_bad_corpus,
    write_capture,
    write_near_duplicates,
    write_picture,
    write_sample_captures,
)

# What decoding (or, for HEIC, writing) each format needs beyond Pillow.
NEEDS = {
    "dng": pytest.mark.skipif(
        importlib.util.find_spec("rawpy") is None, reason="decoding DNG needs the [raw] extra"
    ),
    "heic": pytest.mark.skipif(
        missing_writer("heic") is not None, reason=str(missing_writer("heic"))
    ),
}

FULL_EXIF = CaptureSpec(
    "exif.jpg",
    400,
    300,
    orientation=6,
    make="FUJIFILM",
    model="X-T4",
    captured_at=datetime(2023, 6, 14, 15, 30, 5),
    exposure_time=1 / 250,
    f_number=2.8,
    iso=800,
    focal_length=23.0,
    gps=(-39.8142, -73.2459, -3.0),
    seed=11,
)

ALL_KINDS = [
    pytest.param(fmt, mode, marks=NEEDS.get(fmt, ()))
    for fmt, modes in MODES.items()
    for mode in modes
]
# sample_specs' rarer kinds: any SAMPLE_CYCLE specs in a row hold them all.
RARE_KINDS = {
    ("jpeg", "L"),
    ("jpeg", "CMYK"),
    ("png", "RGB"),
    ("png", "RGB;16"),
    ("png", "RGBA"),
    ("png", "I;16"),
    ("webp", "RGB"),
    ("tiff", "RGB"),
    ("dng", "CFA"),
    ("heic", "RGB"),
}
SAMPLE_CYCLE = 33


def decode(path: Path) -> Decoded:
    data = path.read_bytes()
    fmt = sniff(data, path.name)
    assert fmt is not None, f"{path.name} sniffs as no image"
    return decode_capture(data, fmt)


def written_exif(path: Path) -> Image.Exif:
    """The EXIF as written: Pillow reads it unchanged where it opens the format; the
    decoder reads DNG and HEIC. (Decoding a TIFF turns it upright and drops the tag.)"""
    if path.suffix in (".dng", ".heic"):
        return decode(path).exif
    return Image.open(path).getexif()


def mean_difference(a: Image.Image | np.ndarray, b: Image.Image | np.ndarray) -> float:
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    assert a.shape == b.shape
    return float(np.abs(a - b).mean())


def degrees(dms: tuple) -> float:
    d, m, s = (float(v) for v in dms)
    return d + m / 60 + s / 3600


def test_render_scene_is_deterministic_and_not_flat():
    scene = render_scene(400, 300, seed=3)
    assert scene.shape == (300, 400, 3) and scene.dtype == np.uint8
    assert np.array_equal(scene, render_scene(400, 300, seed=3))
    assert not np.array_equal(scene, render_scene(400, 300, seed=4))
    assert scene.std() > 10
    # An upright scene: sky above, darker ground below.
    assert scene[:30].mean() > scene[-30:].mean()


@pytest.mark.parametrize(("fmt", "mode"), ALL_KINDS)
def test_same_spec_writes_identical_bytes(tmp_path, fmt, mode):
    spec = CaptureSpec(f"x.{fmt}", 120, 90, fmt=fmt, mode=mode, orientation=3, seed=5)
    first = write_capture(tmp_path / "a", spec).read_bytes()
    assert first == write_capture(tmp_path / "b", spec).read_bytes()
    other = CaptureSpec(f"x.{fmt}", 120, 90, fmt=fmt, mode=mode, orientation=3, seed=6)
    assert first != write_capture(tmp_path / "c", other).read_bytes()


@pytest.mark.parametrize(
    ("fmt", "mode"),
    [
        ("jpeg", "RGB"),
        ("png", "RGB"),
        ("png", "RGB;16"),
        ("tiff", "RGB"),
        ("webp", "RGB"),
        pytest.param("dng", "CFA", marks=NEEDS["dng"]),
        pytest.param("heic", "RGB", marks=NEEDS["heic"]),
    ],
)
def test_exif_reads_back(tmp_path, fmt, mode):
    spec = replace(FULL_EXIF, name=f"exif.{fmt}", fmt=fmt, mode=mode)
    exif = written_exif(write_capture(tmp_path, spec))
    assert exif[Base.Make] == "FUJIFILM"
    assert exif[Base.Model] == "X-T4"
    # HEIC's irot box turned the pixels, so the decoder resets the tag.
    assert exif[Base.Orientation] == (1 if fmt == "heic" else 6)
    photo = exif.get_ifd(IFD.Exif)
    assert photo[Base.DateTimeOriginal] == "2023:06:14 15:30:05"
    assert float(photo[Base.ExposureTime]) == pytest.approx(1 / 250)
    assert float(photo[Base.FNumber]) == pytest.approx(2.8)
    assert photo[Base.ISOSpeedRatings] == 800
    assert float(photo[Base.FocalLength]) == pytest.approx(23.0)
    gps = exif.get_ifd(IFD.GPSInfo)
    assert (gps[GPS.GPSLatitudeRef], gps[GPS.GPSLongitudeRef]) == ("S", "W")
    assert degrees(gps[GPS.GPSLatitude]) == pytest.approx(39.8142, abs=1e-6)
    assert degrees(gps[GPS.GPSLongitude]) == pytest.approx(73.2459, abs=1e-6)
    assert gps[GPS.GPSAltitudeRef] == b"\x01"  # below sea level
    assert float(gps[GPS.GPSAltitude]) == pytest.approx(3.0)
    assert gps[GPS.GPSDateStamp] == "2023:06:14"


@pytest.mark.parametrize("fmt", [pytest.param(fmt, marks=NEEDS.get(fmt, ())) for fmt in MODES])
def test_orientation_none_writes_no_exif(tmp_path, fmt):
    spec = CaptureSpec(f"bare.{fmt}", 120, 90, fmt=fmt, orientation=None)
    exif = decode(write_capture(tmp_path, spec)).exif
    # A TIFF's own tags (size, strips) read back as EXIF; capture metadata must not.
    assert not {Base.Make, Base.Model, Base.Orientation, IFD.Exif, IFD.GPSInfo} & set(exif)


def test_without_exif_clears_every_exif_field(tmp_path):
    bare = FULL_EXIF.without_exif()
    assert (bare.orientation, bare.make, bare.gps, bare.captured_at) == (None, None, None, None)
    assert "exif" not in Image.open(write_capture(tmp_path, bare)).info


def test_mode_defaults_to_the_formats_usual_one():
    assert CaptureSpec("x.jpg").mode == "RGB"
    assert CaptureSpec("x.dng", fmt="dng").mode == "CFA"
    assert CaptureSpec("x.heic", fmt="heic").mode == "RGB"
    assert CaptureSpec("x.png", fmt="png", mode="I;16").mode == "I;16"


@pytest.mark.parametrize(("fmt", "mode"), ALL_KINDS)
def test_size_and_mode(tmp_path, fmt, mode):
    spec = CaptureSpec(f"kind.{fmt}", 400, 300, fmt=fmt, mode=mode, orientation=6, seed=2)
    decoded = decode(write_capture(tmp_path, spec))
    # Pillow reads 16-bit RGB PNG as 8-bit RGB; the IHDR test below pins the 16 bits.
    assert decoded.mode == ("RGB" if mode == "RGB;16" else mode)
    assert (decoded.width, decoded.height) == spec.upright_size == (300, 400)


def test_rgb16_png_really_holds_16_bit_samples(tmp_path):
    spec = CaptureSpec("deep.png", 64, 48, fmt="png", mode="RGB;16", seed=4)
    data = write_capture(tmp_path, spec).read_bytes()
    assert data[12:16] == b"IHDR"
    width, height, depth, colour_type = struct.unpack(">IIBB", data[16:26])
    assert (width, height, depth, colour_type) == (64, 48, 16, 2)
    start = data.index(b"IDAT") + 4
    length = struct.unpack(">I", data[start - 8 : start - 4])[0]
    rows = np.frombuffer(zlib.decompress(data[start : start + length]), np.uint8)
    rows = rows.reshape(48, 1 + 64 * 6)
    assert not rows[:, 0].any()  # filter type 0 on every row
    samples = rows[:, 1:].copy().view(">u2").reshape(48, 64, 3)
    assert np.array_equal(samples, render_scene(64, 48, seed=4).astype(np.uint16) * 257)


def test_16_bit_grey_png_header(tmp_path):
    spec = CaptureSpec("grey16.png", 64, 48, fmt="png", mode="I;16")
    data = write_capture(tmp_path, spec).read_bytes()
    assert struct.unpack(">IIBB", data[16:26]) == (64, 48, 16, 0)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["jpeg", "tiff", pytest.param("heic", marks=NEEDS["heic"])])
def test_orientation_makes_the_stored_pixels_upright(tmp_path, fmt, orientation):
    spec = CaptureSpec(f"o.{fmt}", 160, 120, fmt=fmt, orientation=orientation, seed=9)
    decoded = decode(write_capture(tmp_path, spec))
    upright = render_scene(*spec.upright_size, seed=9)
    assert mean_difference(decoded.preview, upright) < 5  # JPEG or HEVC loss only
    assert shows_upright(decoded.preview, spec)


@NEEDS["dng"]
@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("preview", [None, (160, 120)], ids=["rendered", "embedded"])
def test_dng_orientation_tag_makes_the_sensor_upright(tmp_path, orientation, preview):
    spec = CaptureSpec("o.dng", 160, 120, fmt="dng", orientation=orientation, dng_preview=preview)
    decoded = decode(write_capture(tmp_path, spec))
    assert (decoded.width, decoded.height) == spec.upright_size
    # LibRaw's rendering has its own tone curve, so the check is likeness, not equality.
    assert shows_upright(decoded.preview, spec)


def test_shows_upright_tells_turned_and_other_pictures_apart():
    spec = CaptureSpec("o.jpg", 160, 120, orientation=6, seed=9)
    upright = Image.fromarray(render_scene(*spec.upright_size, seed=9))
    assert shows_upright(upright.reduce(2), spec)
    assert not shows_upright(upright.transpose(Image.Transpose.FLIP_LEFT_RIGHT), spec)
    assert not shows_upright(upright.transpose(Image.Transpose.ROTATE_180), spec)
    assert not shows_upright(Image.fromarray(render_scene(120, 160, seed=10)), spec)


def test_dng_preview_is_stored_turned_like_the_raw():
    spec = CaptureSpec("p.dng", 160, 120, fmt="dng", orientation=6, dng_preview=(80, 60))
    data = capture_bytes(spec)
    preview = Image.open(io.BytesIO(data[data.index(b"\xff\xd8\xff") :]))
    assert preview.size == (80, 60)
    stored = Image.fromarray(render_scene(120, 160, seed=0)).transpose(Image.Transpose.ROTATE_90)
    assert mean_difference(preview, stored.resize((80, 60), Image.Resampling.BILINEAR)) < 5


@pytest.mark.parametrize("orientation", [1, 6])
def test_write_picture_stores_any_picture_turned_for_its_exif(tmp_path, orientation):
    upright = Image.fromarray(render_scene(90, 60, seed=5))
    spec = replace(FULL_EXIF, name="photo/p.jpg", orientation=orientation)
    path = write_picture(tmp_path, spec, upright)
    assert path == tmp_path / "photo" / "p.jpg"
    stored = Image.open(path)
    assert stored.size == ((90, 60) if orientation == 1 else (60, 90))
    assert stored.getexif()[Base.Make] == "FUJIFILM"
    decoded = decode(path)
    assert (decoded.width, decoded.height) == (90, 60)  # spec's 400×300 is not used
    assert mean_difference(decoded.preview, upright) < 5


def test_awkward_names_are_written(tmp_path):
    names = [
        "IMG.v2 0001.jpg",
        "Regen Hamburg/Regen_Straße_01.jpg",
        "雨の日/東京 0001.png",
        "a/b/c/scan.final.v3.tif",
    ]
    for name in names:
        fmt = {".jpg": "jpeg", ".png": "png", ".tif": "tiff"}[Path(name).suffix]
        path = write_capture(tmp_path, CaptureSpec(name, 120, 90, fmt=fmt))
        assert path == tmp_path / name
        assert decode(path).width == 120


def test_invalid_specs_are_refused():
    with pytest.raises(ValueError, match="RGBA"):
        CaptureSpec("x.jpg", fmt="jpeg", mode="RGBA")
    with pytest.raises(ValueError, match="orientation"):
        CaptureSpec("x.jpg", orientation=9)
    with pytest.raises(ValueError, match="size"):
        CaptureSpec("x.jpg", width=0)
    with pytest.raises(ValueError, match="format 'cr3'"):
        CaptureSpec("x.cr3", fmt="cr3")
    with pytest.raises(ValueError, match="'RGB' as 'dng'"):
        CaptureSpec("x.dng", fmt="dng", mode="RGB")


def test_missing_pillow_heif_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # makes the import fail
    assert missing_writer("dng") is None  # a DNG is written with numpy and Pillow alone
    with pytest.raises(RuntimeError, match=r"pip install 'rainbench\[heic\]'"):
        write_capture(tmp_path, CaptureSpec("x.heic", 64, 48, fmt="heic"))


def test_sample_specs_are_varied_and_realistic():
    specs = sample_specs(SAMPLE_CYCLE, seed=0, size=(400, 300))
    assert specs == sample_specs(SAMPLE_CYCLE, seed=0, size=(400, 300))
    assert specs != sample_specs(SAMPLE_CYCLE, seed=1, size=(400, 300))
    assert len({s.name for s in specs}) == SAMPLE_CYCLE
    assert all((s.width, s.height) == (400, 300) for s in specs)
    assert {(s.fmt, s.mode) for s in specs} >= RARE_KINDS
    assert [s.dng_preview for s in specs if s.fmt == "dng"] == [(400, 300)]
    jpegs = [s for s in specs if s.fmt == "jpeg"]
    assert len(jpegs) > 0.6 * len(specs)
    assert {s.orientation for s in jpegs if s.mode == "RGB"} == set(range(1, 9))
    assert len({s.make for s in specs if s.make}) >= 3
    assert sum(s.gps is not None for s in specs) > 0.6 * len(specs)
    with_exif = [s for s in specs if s.orientation is not None]
    assert all(s.captured_at and s.exposure_time and s.f_number and s.iso for s in with_exif)
    assert any(s.fmt == "png" and s.name.endswith(".jpg") for s in specs)  # mislabelled
    names = [s.name for s in specs]
    assert any(".v2 " in n for n in names)
    assert any("Straße" in n for n in names)
    assert any(not n.isascii() and "/" in n for n in names)
    assert any("/" not in n for n in names) and any(n.count("/") >= 2 for n in names)


@pytest.mark.parametrize("start", [0, 5, 13])
def test_any_cycle_of_sample_specs_holds_every_kind(start):
    specs = sample_specs(start + SAMPLE_CYCLE, size=(64, 48))[start:]
    assert {(s.fmt, s.mode) for s in specs} >= RARE_KINDS


@NEEDS["dng"]
@NEEDS["heic"]
def test_sample_captures_all_decode(tmp_path):
    specs = sample_specs(SAMPLE_CYCLE, seed=2, size=(160, 120))
    paths = write_sample_captures(tmp_path, SAMPLE_CYCLE, seed=2, size=(160, 120))
    assert paths == [tmp_path / s.name for s in specs]
    for spec, path in zip(specs, paths, strict=True):
        decoded = decode(path)
        assert (decoded.width, decoded.height) == spec.upright_size


def test_near_duplicates_decode_to_the_same_picture(tmp_path):
    spec = CaptureSpec("dups/IMG_0042.jpg", 400, 300, gps=(60.3913, 5.3221, 12.0), seed=8)
    paths = write_near_duplicates(tmp_path, spec)
    assert set(paths) == {"original", "reencoded", "resized", "rotated", "oriented"}
    assert len(set(paths.values())) == 5 and all(
        p.parent == tmp_path / "dups" for p in paths.values()
    )
    original = decode(paths["original"]).preview
    reencoded = decode(paths["reencoded"])
    assert paths["reencoded"].read_bytes() != paths["original"].read_bytes()
    assert mean_difference(reencoded.preview, original) < 4
    resized = decode(paths["resized"])
    assert (resized.width, resized.height) == (200, 150)
    assert mean_difference(resized.preview, original.reduce(2)) < 4
    rotated = decode(paths["rotated"])
    assert (rotated.width, rotated.height) == (300, 400)
    assert not rotated.exif
    assert mean_difference(rotated.preview, original.transpose(Image.Transpose.ROTATE_90)) < 4
    oriented = decode(paths["oriented"])
    assert Image.open(paths["oriented"]).size == (300, 400)  # stored turned...
    assert oriented.exif[Base.Orientation] == 6
    assert mean_difference(oriented.preview, original) < 4  # ...shown upright


# The bad corpus's contract. The decoder judges the entries whose bytes sniff as an
# image; ingest's reader judges the rest before decoding, the GPS stripper the EXIF one.
BAD_CORPUS = {
    "empty.jpg": Reason.EMPTY,
    "truncated.jpg": Reason.TRUNCATED,
    "truncated_header.jpg": Reason.TRUNCATED,
    "truncated.png": Reason.TRUNCATED,
    "notes.jpg": Reason.NOT_AN_IMAGE,
    "noise.png": Reason.NOT_AN_IMAGE,
    "huge.png": Reason.TOO_MANY_PIXELS,
    "bad_crc.png": Reason.CORRUPT,
    "bad_zlib.png": Reason.CORRUPT,
    "bad_huffman.jpg": Reason.CORRUPT,
    "gps_outside.jpg": Reason.CORRUPT_EXIF,
    "dangling.jpg": Reason.UNREADABLE,
}


# Where decode.py gives another reason today (Pillow turns any failure while parsing the
# header into UnidentifiedImageError, and "Truncated File Read" is capitalised).
@pytest.fixture(scope="module")
def bad_corpus(tmp_path_factory) -> tuple[Path, dict[str, Reason]]:
    root = tmp_path_factory.mktemp("bad")
    return root, write_bad_corpus(root)


def test_bad_corpus_lists_every_kind(bad_corpus):
    root, table = bad_corpus
    assert table == BAD_CORPUS
    assert all((root / name).is_symlink() or (root / name).is_file() for name in table)


def test_bad_corpus_is_deterministic(bad_corpus, tmp_path):
    root, table = bad_corpus
    write_bad_corpus(tmp_path)
    for name in table:
        if name != "dangling.jpg":
            assert (root / name).read_bytes() == (tmp_path / name).read_bytes()


@pytest.mark.parametrize(
    "name",
    [
        n
        for n, reason in BAD_CORPUS.items()
        if reason not in (Reason.EMPTY, Reason.UNREADABLE, Reason.CORRUPT_EXIF)
    ],
)
def test_decoder_refuses_bad_entry_for_the_expected_reason(bad_corpus, name):
    root, table = bad_corpus
    data = (root / name).read_bytes()
    fmt = sniff(data, name)
    if fmt is None:
        assert table[name] == Reason.NOT_AN_IMAGE
        return
    with pytest.raises(CaptureRejected) as refused:
        decode_capture(data, fmt)
    assert refused.value.reason == table[name]


def test_entries_judged_before_decoding(bad_corpus):
    root, _ = bad_corpus
    assert (root / "empty.jpg").stat().st_size == 0
    dangling = root / "dangling.jpg"
    assert dangling.is_symlink() and not dangling.exists()


def test_gps_pointer_leads_outside_the_exif_block(bad_corpus):
    root, _ = bad_corpus
    path = root / "gps_outside.jpg"
    image = Image.open(path)
    block = image.info["exif"]
    assert block.startswith(b"Exif\0\0")
    assert image.getexif()[IFD.GPSInfo] >= len(block) - 6  # offsets count from the TIFF header
    assert decode(path).width == 320  # the pixels are fine: only the EXIF is broken


def test_full_size_jpeg_is_fast_and_camera_sized(tmp_path):
    write_capture(tmp_path, CaptureSpec("warm.jpg", 64, 48))  # imports and first-use costs
    spec = CaptureSpec("IMG_0001.JPG", seed=1)
    timings = []
    for _ in range(2):  # the better of two, so one hiccup of a shared machine does not fail it
        start = time.perf_counter()
        path = write_capture(tmp_path, spec)
        timings.append(time.perf_counter() - start)
    # About 0.25 s on one core; the bound leaves room for a slow CI machine.
    assert min(timings) < 1.0
    assert 1.5e6 < path.stat().st_size < 8e6
    decoded = decode(path)
    assert (decoded.width, decoded.height) == (4000, 3000)


@NEEDS["dng"]
def test_full_size_dng_is_fast_and_camera_sized(tmp_path):
    write_capture(tmp_path, CaptureSpec("warm.dng", 64, 48, fmt="dng"))
    spec = CaptureSpec("IMG_0001.dng", fmt="dng", dng_preview=(4000, 3000), seed=1)
    timings = []
    for _ in range(2):  # the better of two, as for the JPEG
        start = time.perf_counter()
        path = write_capture(tmp_path, spec)
        timings.append(time.perf_counter() - start)
    # About 0.35 s on one core, most of it the scene; the bound leaves room for slow CI.
    assert min(timings) < 1.5
    # 12 MP of 16-bit samples, as an uncompressed DNG holds them, plus the preview.
    assert 24e6 < path.stat().st_size < 32e6
    decoded = decode(path)
    assert (decoded.width, decoded.height) == (4000, 3000)
