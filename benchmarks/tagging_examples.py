"""Renders the example pictures of docs/tagging.md: each rain type on two scenes with a
200 % crop beside them (`<type>.jpg`), and `overview.jpg`, one scene clean and under
every type. The rain is the project's own synthetic renderer at fixed seeds, the scenes
scikit-image's bundled samples (no download), so a re-run gives the same pictures.

From the repository root, with scikit-image installed (the `test` extra):

    python benchmarks/tagging_examples.py --out docs/images/rain-types
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from skimage import data

from rainbench.synth.recipes import RECIPES
from rainbench.synth.render import render

RAIN_TYPES = ("drizzle", "streak", "storm", "fog-like")
SEEDS = {"drizzle": 11, "streak": 12, "storm": 13, "fog-like": 14}

# Rendered at this size: render scales streaks with the image height, so the samples
# (≈ 640 px wide) are upscaled first to look like a capture's preview, not a thumbnail.
RENDER_SIZE = (1200, 800)
SCALE = 0.4  # full scenes are shown at this fraction of the render
CROP_AT = (560, 330)  # top left of the crop shown at 200 %: the rocket's side and the sky
CROP = (112, 160)  # (width, height) of that crop, px of the render
OVERVIEW_SCALE = 0.28  # the overview's five rows are smaller, to keep the file small
OVERVIEW_CROP = (168, 112)
GAP = 4
CAPTION = 16  # height of the caption strip above each panel
QUALITY = 90


def scenes() -> dict[str, np.ndarray]:
    """The scenes at RENDER_SIZE; the first is the overview's, and its crop is shown."""
    found = {"rocket": data.rocket(), "motorcycle": data.stereo_motorcycle()[0]}
    return {
        name: np.asarray(Image.fromarray(image).resize(RENDER_SIZE, Image.LANCZOS))
        for name, image in found.items()
    }


def rainy(clean: np.ndarray, rain_type: str) -> np.ndarray:
    """`rain_type` at the middle of its recipe's intensity range: a typical example."""
    low, high = RECIPES[rain_type].intensity
    return render(clean, rain_type, SEEDS[rain_type], intensity=(low + high) / 2).rain


def shrunk(image: np.ndarray, scale: float = SCALE) -> Image.Image:
    height, width = image.shape[:2]
    size = (round(width * scale), round(height * scale))
    return Image.fromarray(image).resize(size, Image.LANCZOS)


def zoomed(image: np.ndarray, size: tuple[int, int] = CROP) -> Image.Image:
    """The `size` region at CROP_AT, at twice its size."""
    (left, top), (width, height) = CROP_AT, size
    region = Image.fromarray(image[top : top + height, left : left + width])
    return region.resize((2 * width, 2 * height), Image.BICUBIC)


def strip(panels: list[tuple[str, Image.Image]]) -> Image.Image:
    """Panels side by side, each under its caption."""
    width = sum(panel.width for _, panel in panels) + GAP * (len(panels) - 1)
    height = CAPTION + max(panel.height for _, panel in panels)
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    left = 0
    for caption, panel in panels:
        draw.text((left + 2, 2), caption, fill="black", font=font)
        sheet.paste(panel, (left, CAPTION))
        left += panel.width + GAP
    return sheet


def stacked(rows: list[Image.Image]) -> Image.Image:
    width = max(row.width for row in rows)
    height = sum(row.height for row in rows) + GAP * (len(rows) - 1)
    sheet = Image.new("RGB", (width, height), "white")
    top = 0
    for row in rows:
        sheet.paste(row, (0, top))
        top += row.height + GAP
    return sheet


def type_sheet(rain_type: str, clean: dict[str, np.ndarray]) -> Image.Image:
    """`rain_type` on every scene, then a 200 % crop of the first."""
    rains = {name: rainy(image, rain_type) for name, image in clean.items()}
    panels = [(f"{rain_type}: {name}", shrunk(rain)) for name, rain in rains.items()]
    first = next(iter(rains))
    return strip([*panels, (f"{first}, 200 %", zoomed(rains[first]))])


def overview(image: np.ndarray) -> Image.Image:
    """One scene clean and under every rain type: the whole frame and a 200 % crop."""
    rows = []
    for name in ("clean", *RAIN_TYPES):
        shown = image if name == "clean" else rainy(image, name)
        whole = shrunk(shown, OVERVIEW_SCALE)
        rows.append(strip([(name, whole), (f"{name}, 200 %", zoomed(shown, OVERVIEW_CROP))]))
    return stacked(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=Path("docs/images/rain-types"), help="the folder to write"
    )
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    clean = scenes()
    pictures = {rain_type: type_sheet(rain_type, clean) for rain_type in RAIN_TYPES}
    pictures["overview"] = overview(clean["rocket"])
    for name, picture in pictures.items():
        path = out / f"{name}.jpg"
        picture.save(path, quality=QUALITY, optimize=True)
        print(f"{path}  {picture.width}×{picture.height}  {path.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
