"""Natural photographs as captures: the sample photographs that scikit-image ships (the
tagger's calibration photographs too), framed and sized as a camera would take them,
with synthetic rain of each type where a rainy capture is wanted. The demo's capture
folder and the leaderboard's reference dataset are made from them.
"""

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from rainbench.demo.captures import CaptureSpec, sample_specs, write_picture
from rainbench.synth.recipes import DEFAULT_RECIPES
from rainbench.synth.render import derive_seed, render
from rainbench.synth.video import encode_h264, render_rain_video
from rainbench.train.tagger import sample_photo

# Scenes whose captures are rainy, and scenes kept as clean captures: no scene is both,
# as in a real collection the clean captures are taken on other days.
RAINY_SCENES = (
    "motorcycle_left.png",
    "rocket.jpg",
    "camera.png",
    "coins.png",
    "grass.png",
    "clock_motion.png",
)
CLEAN_SCENES = ("astronaut.png", "coffee.png", "chelsea.png", "brick.png", "gravel.png", "moon.png")
# Each scene is taken twice, framed differently (a 3:2 box at 80 % of the largest one, in
# opposite corners), so that two captures of a scene are not near-duplicates.
FRAMINGS = (0.0, 1.0)
# The tripod video: a rainy scene framed at the centre (neither still's framing), in
# streaks, with a little shake and an object crossing — `rainbench pairs` material.
VIDEO_SCENE, VIDEO_RECIPE, VIDEO_FRAMES = "rocket.jpg", "streak", 48
ASPECT = 3 / 2
ZOOM = 0.8


def framed_photo(
    name: str, width: int, aspect: float | None = None, zoom: float = 1.0, position: float = 0.5
) -> Image.Image:
    """Sample photograph `name` as an RGB picture `width` px wide.

    With `aspect` (width / height) it shows the largest box of that shape shrunk by
    `zoom`, placed at `position` along the room left over (0: top left, 1: bottom right);
    without, the whole photograph.
    """
    photo = Image.open(sample_photo(name)).convert("RGB")
    box_width, box_height = float(photo.width), float(photo.height)
    if aspect is not None:
        box_width = min(box_width, box_height * aspect) * zoom
        box_height = box_width / aspect
    left = (photo.width - box_width) * position
    top = (photo.height - box_height) * position
    height = round(box_height * width / box_width)
    box = (left, top, left + box_width, top + box_height)
    return photo.resize((width, height), Image.Resampling.LANCZOS, box=box)


def with_rain(picture: Image.Image, source: str, recipe: str, seed: int) -> Image.Image:
    """`picture` with `recipe`'s rain rendered on it; the render's seed derives from
    `source` (what the picture shows), the recipe and `seed`."""
    rainy = render(np.asarray(picture), recipe, derive_seed(source, recipe, seed)).rain
    return Image.fromarray(rainy)


@dataclass(frozen=True)
class PhotoCapture:
    """One capture of the demo's folder: which photograph, framed how, with which rain."""

    layer: str  # "rainy" or "clean": the sub-folder of the capture folder it goes in
    scene: str  # the sample photograph
    framing: float  # `framed_photo`'s position
    recipe: str | None  # the rain rendered on it; None for a clean capture
    spec: CaptureSpec  # its file name (relative to the layer's folder), format and EXIF


def photo_captures(seed: int = 0) -> list[PhotoCapture]:
    """The captures of `write_photo_captures`: every scene in both framings. Rainy ones
    take the rain types in turn, so each scene shows two types and each type is shown
    equally often. File names and EXIF are those of `sample_specs`' camera JPEGs (several
    cameras and phones, every orientation, GPS on most)."""
    shots = [
        (layer, scene, framing)
        for layer, scenes in (("rainy", RAINY_SCENES), ("clean", CLEAN_SCENES))
        for scene in scenes
        for framing in FRAMINGS
    ]
    # Two in three of sample_specs are camera JPEGs, the rest rarer kinds.
    jpegs = [s for s in sample_specs(2 * len(shots), seed) if s.fmt == "jpeg" and s.mode == "RGB"]
    captures = []
    for index, ((layer, scene, framing), spec) in enumerate(
        zip(shots, jpegs[: len(shots)], strict=True)
    ):
        recipe = DEFAULT_RECIPES[index % len(DEFAULT_RECIPES)] if layer == "rainy" else None
        captures.append(PhotoCapture(layer, scene, framing, recipe, spec))
    return captures


def capture_picture(capture: PhotoCapture, width: int) -> Image.Image:
    """The upright picture of `capture`, `width` px wide; its rain's seed derives from
    the scene, the framing and the spec's seed."""
    picture = framed_photo(capture.scene, width, ASPECT, ZOOM, capture.framing)
    if capture.recipe is None:
        return picture
    source = f"{capture.scene}@{capture.framing}"
    return with_rain(picture, source, capture.recipe, capture.spec.seed)


def write_photo_captures(root: Path, captures: Sequence[PhotoCapture], width: int) -> list[Path]:
    """Write each capture to root/<layer>/<its name>; returns the paths."""
    return [
        write_picture(root / capture.layer, capture.spec, capture_picture(capture, width))
        for capture in captures
    ]


def write_reduced_copy(root: Path, capture: PhotoCapture, width: int, name: str) -> Path:
    """A half-size copy of `capture` without EXIF, as a messenger app shares it: the
    same picture, other bytes — a near-duplicate."""
    copy = replace(capture.spec, name=name).without_exif()
    return write_picture(root / capture.layer, copy, capture_picture(capture, width).reduce(2))


def write_tripod_video(path: Path, width: int, seed: int = 0) -> Path:
    """A rain video as a camera on a tripod films it, `width` px wide (made even, as
    H.264 needs): VIDEO_FRAMES frames of VIDEO_SCENE in VIDEO_RECIPE's rain, encoded
    to H.264 in MP4. Its seed derives from the scene, the recipe and `seed`."""
    even = width - width % 2
    still = np.asarray(framed_photo(VIDEO_SCENE, even, ASPECT, ZOOM, 0.5))
    still = still[: still.shape[0] - still.shape[0] % 2]
    video = render_rain_video(
        still, VIDEO_RECIPE, VIDEO_FRAMES, derive_seed(VIDEO_SCENE, VIDEO_RECIPE, seed)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    encode_h264(video.frames, path)
    return path
