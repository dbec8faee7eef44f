"""Tests for rainbench.demo.photos: the sample photographs framed and sized as asked,
rain rendered reproducibly, and the demo's capture list (scenes, framings, rain types,
camera EXIF) written as files that decode upright."""

from collections import Counter

import numpy as np
import pytest
from PIL import Image
from PIL.ExifTags import Base

from rainbench.capture.decode import decode_capture
from rainbench.capture.formats import sniff
from rainbench.demo.photos import (
    CLEAN_SCENES,
    FRAMINGS,
    RAINY_SCENES,
    capture_picture,
    framed_photo,
    photo_captures,
    with_rain,
    write_photo_captures,
    write_reduced_copy,
)
from rainbench.synth.recipes import DEFAULT_RECIPES
from rainbench.train.tagger import sample_photo


def test_the_whole_photograph_is_resized_to_the_width():
    photo = Image.open(sample_photo("coffee.png")).convert("RGB")
    picture = framed_photo("coffee.png", 300)
    assert picture.mode == "RGB"
    assert picture.size == (300, round(photo.height * 300 / photo.width))
    expected = photo.resize(picture.size, Image.Resampling.LANCZOS)
    assert np.array_equal(np.asarray(picture), np.asarray(expected))


def test_framings_have_the_aspect_and_differ():
    first = framed_photo("camera.png", 240, aspect=3 / 2, zoom=0.8, position=0.0)
    last = framed_photo("camera.png", 240, aspect=3 / 2, zoom=0.8, position=1.0)
    assert first.size == last.size == (240, 160)
    assert np.abs(np.asarray(first, np.float32) - np.asarray(last, np.float32)).mean() > 10


def test_rain_is_rendered_reproducibly():
    picture = framed_photo("rocket.jpg", 200)
    rainy = with_rain(picture, "rocket.jpg", "streak", 0)
    assert rainy.size == picture.size
    assert np.array_equal(
        np.asarray(rainy), np.asarray(with_rain(picture, "rocket.jpg", "streak", 0))
    )
    assert not np.array_equal(np.asarray(rainy), np.asarray(picture))
    other = with_rain(picture, "rocket.jpg", "streak", 1)
    assert not np.array_equal(np.asarray(rainy), np.asarray(other))


def test_capture_list_covers_every_scene_framing_and_rain_type():
    captures = photo_captures()
    assert captures == photo_captures()
    rainy = [c for c in captures if c.layer == "rainy"]
    clean = [c for c in captures if c.layer == "clean"]
    assert len(rainy) == len(RAINY_SCENES) * len(FRAMINGS)
    assert len(clean) == len(CLEAN_SCENES) * len(FRAMINGS)
    assert all(c.recipe is None for c in clean)
    counts = Counter(c.recipe for c in rainy)
    assert set(counts) == set(DEFAULT_RECIPES) and len(set(counts.values())) == 1
    for scene in RAINY_SCENES:
        assert len({c.recipe for c in rainy if c.scene == scene}) == len(FRAMINGS)
    names = [(c.layer, c.spec.name) for c in captures]
    assert len(set(names)) == len(names)
    specs = [c.spec for c in captures]
    assert all(s.fmt == "jpeg" and s.orientation and s.make and s.captured_at for s in specs)
    assert {s.orientation for s in specs} == set(range(1, 9))
    assert photo_captures(seed=1) != captures


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    captures = photo_captures()
    return root, captures, write_photo_captures(root, captures, 120)


def test_captures_decode_upright_with_their_exif(written):
    root, captures, paths = written
    assert paths == [root / c.layer / c.spec.name for c in captures]
    for capture, path in zip(captures, paths, strict=True):
        data = path.read_bytes()
        decoded = decode_capture(data, sniff(data, path.name))
        assert (decoded.width, decoded.height) == (120, 80)
        assert decoded.exif[Base.Make] == capture.spec.make
        upright = np.asarray(capture_picture(capture, 120), np.float32)
        assert np.abs(np.asarray(decoded.preview, np.float32) - upright).mean() < 6


def test_reduced_copy_is_half_size_without_exif(written):
    root, captures, _ = written
    path = write_reduced_copy(root, captures[1], 120, "Shared/copy.jpg")
    assert path == root / "rainy" / "Shared" / "copy.jpg"
    copy = Image.open(path)
    assert copy.size == (60, 40) and not copy.getexif()
