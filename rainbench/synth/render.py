"""Renders a recipe's rain onto a clean image: streaks from motion-blurred random drops,
composited additively or under a veil of transmission and atmospheric light. Every
random choice comes from the seed, so a render is a pure function of its arguments.
"""

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from scipy import ndimage

from rainbench.seeds import seed_from
from rainbench.synth.recipes import (
    ATMOSPHERIC_LIGHT,
    RECIPES,
    REFERENCE_HEIGHT,
    PhysicalRecipe,
    Recipe,
)

# The streak field is drawn at most this many pixels high and resized up smoothly: a
# streak is a soft motion-blurred line, so resampling keeps its look relative to the
# image while a 12 MP render stays within a second or two.
WORK_HEIGHT = 1080

# Each drop's brightness before blurring, uniform in this range: near and far drops
# differ, so streaks of one layer are not all alike.
DROP_AMPLITUDE = (0.3, 1.0)

SIGNIFICANT_DIGITS = 4


@dataclass
class Rendered:
    """One rendered sample and, where it is not the clean input, its ground truth."""

    rain: np.ndarray  # uint8 H×W×3, the rainy image
    streaks: np.ndarray | None  # uint8 H×W, the rain layer R·255; None where a recipe has none
    transmission: np.ndarray | None  # uint8 H×W, T·255; None where there is no veil
    params: dict  # every drawn parameter, JSON-serialisable
    # uint8 h×w×3: the clean input through the same camera chain as `rain` (version 2);
    # None where the clean input itself is the ground truth.
    ground_truth: np.ndarray | None = None


def derive_seed(source_key: str, recipe: str, seed: int, index: int = 0) -> int:
    """A render seed from (source key, recipe, seed, index), the same on every machine.

    63 bits, so it fits a signed 64-bit Parquet column.
    """
    return seed_from("rainbench-synth", source_key, recipe, seed, index)


def render(clean: np.ndarray, recipe: str, seed: int, intensity: float | None = None) -> Rendered:
    """Rain of `recipe` on `clean` (uint8 H×W×3 upright RGB, left unchanged).

    `intensity` is the target mean of the rain layer, E[R]; None draws it from the
    recipe's range. The other parameters are drawn the same either way, so one seed at
    several intensities gives the same streaks at different strengths. Version-2
    recipes (`PhysicalRecipe`) go to `render_physical`, with its camera chain; they
    draw their strength from the rain rate and refuse `intensity`.
    """
    if clean.ndim != 3 or clean.shape[2] != 3 or clean.dtype != np.uint8:
        raise ValueError(f"clean must be uint8 H×W×3, not {clean.dtype} {clean.shape}")
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; known: {', '.join(RECIPES)}")
    if seed < 0:
        raise ValueError(f"seed must be ≥ 0, not {seed}")
    if intensity is not None and not 0 < intensity <= 1:
        raise ValueError(f"intensity is a mean in (0, 1], not {intensity}")
    spec = RECIPES[recipe]
    if isinstance(spec, PhysicalRecipe):
        if intensity is not None:
            raise ValueError(f"{recipe} is a physical recipe: it takes no intensity")
        # Imported here: the physical model builds on this module's `Rendered`.
        from rainbench.synth.physical import render_physical

        return render_physical(clean, spec, seed)
    # Separate streams: the drawn parameters never depend on the image size.
    param_seed, drop_seed = np.random.SeedSequence(seed).spawn(2)
    params = _draw(spec, np.random.default_rng(param_seed), intensity, _mean_luma(clean))
    height, width = clean.shape[:2]
    layer = _rain_layer(params, height, width, np.random.default_rng(drop_seed))
    params["intensity_rendered"] = _round(float(layer.mean(dtype=np.float64)))

    image = clean
    if "background_blur" in params:
        radius = params["background_blur"] * height / REFERENCE_HEIGHT
        image = np.asarray(Image.fromarray(clean).filter(ImageFilter.GaussianBlur(radius)))
    # In 8-bit units and in place: a 12 MP image is 144 MB of float32 per copy.
    streaks = layer * np.float32(255)
    out = image.astype(np.float32)
    out += streaks[:, :, None]
    transmission = None
    if spec.compositing == "veil":
        transmission = _transmission(params, height)
        out *= transmission[:, None, None]
        out += ((1 - transmission) * (255 * params["atmospheric_light"]))[:, None, None]
    return Rendered(
        rain=_round_in_place(out),
        streaks=_round_in_place(streaks),
        transmission=None
        if transmission is None
        else np.repeat(_round_in_place(transmission * 255)[:, None], width, axis=1),
        params=params,
    )


def _draw(
    spec: Recipe, rng: np.random.Generator, intensity: float | None, scene_luma: float
) -> dict:
    def uniform(bounds: tuple[float, float]) -> float:
        return _round(float(rng.uniform(*bounds)))

    drawn_intensity = uniform(spec.intensity)
    first_angle = uniform(spec.angle)
    layers = []
    for index in range(spec.layers):
        angle = first_angle
        if index and spec.spread is not None:
            # Further directions alternate sides of the first, so three never bunch up.
            angle = _round(first_angle + (-1) ** index * uniform(spec.spread))
        layers.append(
            {
                "angle": angle,
                "length": uniform(spec.length),
                "width": uniform(spec.width),
                "density": uniform(spec.density),
            }
        )
    params: dict = {
        "recipe": spec.name,
        "version": spec.version,
        "compositing": spec.compositing,
        "intensity": drawn_intensity if intensity is None else float(intensity),
        "layers": layers,
    }
    if spec.mist is not None:
        params["mist"] = uniform(spec.mist)
    if spec.compositing == "veil":
        params["beta"] = uniform(spec.beta)
        params["depth_near"] = uniform(spec.depth_near)
        params["depth_far"] = uniform(spec.depth_far)
        params["light_lift"] = uniform(spec.light_lift)
        params["scene_luma"] = _round(scene_luma)
        light = np.clip(params["scene_luma"] + params["light_lift"], *ATMOSPHERIC_LIGHT)
        params["atmospheric_light"] = _round(float(light))
    if spec.background_blur:
        params["background_blur"] = _round(min(1.0, abs(float(rng.normal(0.5, 0.5)))))
    return params


def _mean_luma(clean: np.ndarray) -> float:
    """Mean Rec. 601 luma in [0, 1], from every 4th pixel each way (it is only a level)."""
    sample = clean[::4, ::4].astype(np.float64)  # no BLAS (matmul): the same sum anywhere
    luma = 0.299 * sample[:, :, 0] + 0.587 * sample[:, :, 1] + 0.114 * sample[:, :, 2]
    return float(luma.mean() / 255)


def _rain_layer(params: dict, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """The rain layer R as float32 height×width in [0, 1] with mean ≈ params["intensity"]."""
    work_height = min(height, WORK_HEIGHT)
    work_width = max(1, round(width * work_height / height))
    scale = work_height / REFERENCE_HEIGHT
    field = np.zeros((work_height, work_width))
    for layer in params["layers"]:
        field += _streaks(work_height, work_width, layer, scale, rng)
    if "mist" in params:
        field = ndimage.gaussian_filter(field, params["mist"] * scale)
    field = _scale_to_mean(field, params["intensity"]).astype(np.float32)
    if (work_height, work_width) != (height, width):
        resized = Image.fromarray(field).resize((width, height), Image.Resampling.BICUBIC)
        field = np.clip(np.asarray(resized), 0, 1)
    return field


def _streaks(
    height: int, width: int, layer: dict, scale: float, rng: np.random.Generator
) -> np.ndarray:
    """One direction's streaks: drops on a canvas in the streaks' own frame, blurred
    along (a box: motion blur) and across (a Gaussian: width), then rotated into place.
    """
    tilt = layer["angle"] - 90
    length = max(1, round(layer["length"] * scale))
    cos, sin = math.cos(math.radians(tilt)), abs(math.sin(math.radians(tilt)))
    # The image's bounding box in the streaks' frame (and at least the image, which is
    # cropped from the turned canvas), with a streak length above and below so no
    # visible streak is cut where the canvas ends.
    canvas_width = max(width, math.ceil(width * cos + height * sin)) + 2
    canvas_height = max(height, math.ceil(width * sin + height * cos)) + 2 + 2 * length
    area = canvas_width * canvas_height
    # At most a drop per pixel: only images a few dozen pixels high would ask for more.
    count = rng.poisson(min(layer["density"] / scale**2, 1.0) * area)
    cells = rng.integers(0, area, count)
    canvas = np.bincount(cells, weights=rng.uniform(*DROP_AMPLITUDE, count), minlength=area)
    canvas = canvas.reshape(canvas_height, canvas_width)
    sigma = layer["width"] * scale
    canvas = ndimage.gaussian_filter1d(canvas, sigma, axis=1)
    canvas = ndimage.uniform_filter1d(canvas, length, axis=0)
    canvas = ndimage.gaussian_filter1d(canvas, max(sigma, 0.5), axis=0)  # soft ends
    rotated = Image.fromarray(canvas.astype(np.float32)).rotate(tilt, Image.Resampling.BILINEAR)
    top, left = (canvas_height - height) // 2, (canvas_width - width) // 2
    return np.asarray(rotated)[top : top + height, left : left + width]


def _scale_to_mean(field: np.ndarray, target: float) -> np.ndarray:
    """k·field clipped to [0, 1], with k chosen so the mean is `target` (bisection)."""
    mean = field.mean()
    if mean <= 0:
        return field
    low = high = target / mean
    while np.minimum(field * high, 1).mean() < target and high < 64 * low:
        high *= 2
    for _ in range(30):
        middle = (low + high) / 2
        if np.minimum(field * middle, 1).mean() < target:
            low = middle
        else:
            high = middle
    return np.minimum(field * high, 1)


def _transmission(params: dict, height: int) -> np.ndarray:
    """T = exp(−β·d) per row, d a smooth vertical pseudo-depth: far at the top."""
    far_share = 1 - np.arange(height) / max(height - 1, 1)
    depth = params["depth_near"] + (params["depth_far"] - params["depth_near"]) * far_share
    return np.exp(-params["beta"] * depth).astype(np.float32)


def _round_in_place(values: np.ndarray) -> np.ndarray:
    """float32 values in 8-bit units → uint8, clipped and rounded, reusing `values`."""
    np.clip(values, 0, 255, out=values)
    return np.rint(values, out=values).astype(np.uint8)


def _round(value: float) -> float:
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def contact_sheet(clean: np.ndarray, seed: int = 0, width: int = 1600) -> Image.Image:
    """The clean image and every recipe rendered on it, labelled: whole frames in a
    3-column grid, then the same crop of each at 1:1, where streaks show at their true
    size. The docs' sheet is `contact_sheet(render_scene(1600, 1200, 0), 0, 1200)`.
    """
    panels = [("clean", "clean", clean)]
    for name in RECIPES:
        seed_of = derive_seed("contact-sheet", name, seed)
        if RECIPES[name].version == "1":
            rendered = render(clean, name, seed_of)
        else:  # without the camera chain, which may shrink it: the crops stay 1:1
            from rainbench.synth.physical import render_physical

            rendered = render_physical(clean, RECIPES[name], seed_of, acquisition=False)
        caption = (
            f"{name}  {rendered.params['compositing']}  E[R]={rendered.params['intensity']:.3f}"
        )
        panels.append((name, caption, rendered.rain))
    height, clean_width = clean.shape[:2]
    gap, columns = 8, 3
    font = ImageFont.load_default(size=max(12, width // 80))
    label = font.size + 6
    frame_width = (width - gap * (columns + 1)) // columns
    frame_height = max(1, round(frame_width * height / clean_width))
    rows = math.ceil(len(panels) / columns)
    crops_y = gap + rows * (label + frame_height + gap)
    slot = (width - gap * (len(panels) + 1)) // len(panels)  # each crop's, and its label's
    crop = min(slot, height, clean_width)
    crop_top, crop_left = (height - crop) // 2, (clean_width - crop) // 3
    # A label wider than its slot would run into the next one's.
    crop_font = font
    while crop_font.size > 6 and max(crop_font.getbbox(f"{n} 1:1")[2] for n, *_ in panels) > slot:
        crop_font = ImageFont.load_default(size=crop_font.size - 1)
    sheet = Image.new("RGB", (width, crops_y + label + crop + gap), "white")
    draw = ImageDraw.Draw(sheet)
    for index, (name, caption, image) in enumerate(panels):
        row, column = divmod(index, columns)
        x = gap + column * (frame_width + gap)
        y = gap + row * (label + frame_height + gap)
        draw.text((x, y), caption, fill="black", font=font)
        frame = Image.fromarray(image).resize((frame_width, frame_height), Image.Resampling.LANCZOS)
        sheet.paste(frame, (x, y + label))
        x = gap + index * (slot + gap)
        draw.text((x, crops_y), f"{name} 1:1", fill="black", font=crop_font)
        cut = image[crop_top : crop_top + crop, crop_left : crop_left + crop]
        sheet.paste(Image.fromarray(cut), (x, crops_y + label))
    return sheet
