"""A photometric rain model after Garg and Nayar's account of a streak: a drop crossing a
pixel during the exposure covers it for a fraction τ/T of the time, so the pixel is an
alpha blend of the scene and the drop's own radiance, not the scene plus light. Written
separately from rainbench's other rain models, with its own streak physics, so the
rain-type tagger's calibration can be checked on rain it was not fitted to.

What sets it apart: a drop shows the light of its whole surroundings (it refracts a
wide field of view), so a streak is bright over dark ground and may be darker than a
bright sky; a longer streak (a faster or nearer drop) is fainter per pixel, as the
drop spends less time on each; a drop's oscillation modulates the streak along its
length; rain comes in sheets, so its density and its mist vary in broad patches; mist
makes lit parts glow.
"""

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

RAIN_TYPES = ("drizzle", "streak", "storm", "fog-like")

# Streaks are drawn on a canvas at most this many rows high and their cover resized up:
# a 12 MP render costs what a 2 MP one does. A streak is 1–3 canvas pixels wide, as a
# drop's image is on a sensor: in pixels up to this height, relative to the image above.
CANVAS_ROWS = 1200
SAMPLE_SPACING = 0.5  # canvas px between the points a streak is splatted from
SHEET_SCALE = 0.25  # the rain sheets' patch size, share of the image height
LOCAL_LIGHT = 0.15  # the reach of the light a drop gathers, share of the image height


@dataclass(frozen=True)
class Look:
    """One rain type's parameter ranges. Densities are drops per square of the image's
    height (so the same at any resolution), lengths shares of the image height, widths
    canvas pixels, angles degrees from vertical; the rest unitless."""

    density: tuple[float, float]
    length: tuple[float, float]  # streak length, log-uniform per drop over this range
    width: tuple[float, float]  # drop image width; the widest share are near and soft
    cover: tuple[float, float]  # τ/T of the shortest streaks; longer ones get less
    angle: float  # largest |wind angle|
    jitter: float  # per-drop departure from it
    sheets: tuple[float, float]  # how far density and mist vary between patches, 0–1
    mist: tuple[float, float]  # the mist's opacity on average
    glow: tuple[float, float]  # the share of light the mist scatters around highlights


LOOKS = {
    "drizzle": Look(
        density=(400.0, 1000.0),
        length=(0.008, 0.03),
        width=(0.8, 1.4),
        cover=(0.3, 0.6),
        angle=15.0,
        jitter=4.0,
        sheets=(0.0, 0.3),
        mist=(0.0, 0.0),
        glow=(0.0, 0.0),
    ),
    "streak": Look(
        density=(500.0, 1500.0),
        length=(0.03, 0.12),
        width=(1.0, 2.5),
        cover=(0.6, 1.0),
        angle=25.0,
        jitter=3.0,
        sheets=(0.0, 0.4),
        mist=(0.0, 0.04),
        glow=(0.0, 0.0),
    ),
    "storm": Look(
        density=(2000.0, 5000.0),
        length=(0.05, 0.2),
        width=(1.0, 3.0),
        cover=(0.4, 0.8),
        angle=35.0,
        jitter=6.0,
        sheets=(0.3, 0.8),
        mist=(0.2, 0.45),
        glow=(0.05, 0.2),
    ),
    "fog-like": Look(
        density=(5000.0, 12000.0),
        length=(0.004, 0.012),
        width=(0.8, 1.2),
        cover=(0.05, 0.15),
        angle=20.0,
        jitter=8.0,
        sheets=(0.2, 0.6),
        mist=(0.45, 0.75),
        glow=(0.1, 0.35),
    ),
}

# How a streak's cover falls with its length, (shortest / length)^FADE: τ/T is the
# drop's width over its path, softened because longer streaks also come from larger,
# brighter drops.
FADE = 0.4
NEAR_SHARE = 0.25  # the widest quarter of drops are near and out of focus
NEAR_BLUR = (1.0, 2.5)  # their defocus σ, canvas px


def render_photometric(clean: np.ndarray, rain_type: str, seed: int) -> tuple[np.ndarray, dict]:
    """uint8 H×W×3 upright RGB in (unchanged) → (uint8 H×W×3 rainy image, params dict
    JSON-serialisable).

    In linear light: the scene is misted first, O₁ = (1 − m)·B + m·A plus the glow of its
    highlights, A the mean light the drops gather; then the streaks are blended over it,
    O = (1 − α)·O₁ + α·E, with α each pixel's share of the exposure spent behind a drop
    and E the light a drop shows there.
    """
    if rain_type not in LOOKS:
        raise ValueError(f"unknown rain_type {rain_type!r}; known: {', '.join(RAIN_TYPES)}")
    if clean.dtype != np.uint8 or clean.ndim != 3 or clean.shape[2] != 3:
        raise ValueError(f"clean must be uint8 H×W×3, got {clean.dtype} {clean.shape}")
    rng = np.random.default_rng(seed)
    params = _draw_params(LOOKS[rain_type], rng) | {"rain_type": rain_type, "seed": int(seed)}
    rows, cols = clean.shape[:2]
    scene = (clean.astype(np.float32) / 255) ** 2.2
    drop_light = _drop_light(scene, params)
    sheets = _sheets((rows, cols), params["sheets"], rng)
    image = _mist(scene, drop_light, sheets, params)
    cover = _streak_cover((rows, cols), sheets, params, rng)
    image += cover[:, :, None] * (drop_light - image)
    image = np.clip(image, 0, 1) ** (1 / 2.2)
    return np.round(image * 255).astype(np.uint8), params


def _draw_params(look: Look, rng: np.random.Generator) -> dict:
    """Every scalar choice of one render, drawn from `look`'s ranges."""
    params = {
        name: float(rng.uniform(*getattr(look, name)))
        for name in ("density", "cover", "sheets", "mist", "glow")
    }
    params |= {
        "length": [float(v) for v in look.length],
        "width": [float(v) for v in look.width],
        "angle_deg": float(rng.uniform(-look.angle, look.angle)),
        "jitter_deg": look.jitter,
        # How bright a drop is against its surroundings' light (its refraction gathers
        # the sky above it), and how much of that light is local rather than global.
        "gain": float(rng.uniform(1.2, 2.2)),
        "local": float(rng.uniform(0.3, 0.7)),
    }
    return params


def _drop_light(scene: np.ndarray, params: dict) -> np.ndarray:
    """E: the linear RGB a drop shows at each pixel, a mix of the whole frame's mean
    light (upper half weighted double: drops refract the sky) and the light near the
    pixel, scaled so that drops beside the frame's brightest part show about its light:
    drops by a lamp at night shine, and drops against a dark wall by day show the sky."""
    rows = scene.shape[0]
    upper = scene[: max(1, rows // 2)].reshape(-1, 3).mean(axis=0)
    overall = (2 * upper + scene.reshape(-1, 3).mean(axis=0)) / 3
    step = max(1, rows // 128)
    small = scene[::step, ::step].mean(axis=2)
    near = ndimage.gaussian_filter(small, LOCAL_LIGHT * small.shape[0])
    brightest = float(ndimage.gaussian_filter(small, 1.0).max())
    near *= brightest / max(float(near.max()), 1e-6)
    near = np.asarray(
        Image.fromarray(near).resize((scene.shape[1], rows), Image.Resampling.BILINEAR)
    )
    tint = overall / max(float(overall.mean()), 1e-6)
    local = params["local"]
    light = (1 - local) * overall + local * near[:, :, None] * tint
    return np.clip(params["gain"] * light, 0, 1).astype(np.float32)


def _sheets(shape: tuple[int, int], strength: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth field around 1 (from 1 − strength to 1 + strength): where the rain's
    sheets are thicker or thinner."""
    rows, cols = shape
    grid_rows = max(2, round(1 / SHEET_SCALE))
    grid_cols = max(2, round(grid_rows * cols / rows))
    coarse = rng.uniform(-1, 1, (grid_rows, grid_cols)).astype(np.float32)
    field = np.asarray(
        Image.fromarray(coarse).resize((cols, rows), Image.Resampling.BICUBIC), dtype=np.float32
    )
    return 1 + strength * np.clip(field, -1, 1)


def _mist(
    scene: np.ndarray, drop_light: np.ndarray, sheets: np.ndarray, params: dict
) -> np.ndarray:
    """The mist of rain too fine to see as streaks: the scene blended towards the drops'
    light by m (thicker in thick sheets), plus the glow of highlights it scatters."""
    if params["mist"] == 0:
        return scene.copy()
    opacity = np.clip(params["mist"] * sheets, 0, 0.95)[:, :, None]
    airlight = drop_light.mean(axis=(0, 1)) / max(params["gain"], 1e-3)
    misted = (1 - opacity) * scene + opacity * airlight
    if params["glow"] > 0:
        rows = scene.shape[0]
        sigma = 0.02 * rows
        bright = np.clip(scene - 0.5, 0, None)
        halo = ndimage.gaussian_filter(bright, (sigma, sigma, 0), truncate=3.0)
        misted += params["glow"] * opacity * halo * 4
    return misted.astype(np.float32)


def _streak_cover(
    shape: tuple[int, int], sheets: np.ndarray, params: dict, rng: np.random.Generator
) -> np.ndarray:
    """α at full size: each drop's segment splatted on the canvas with its own cover,
    modulated along its length by the drop's oscillation, near drops defocused, then
    resized up; two drops on one pixel cover it as 1 − (1 − α₁)(1 − α₂)."""
    rows, cols = shape
    canvas_rows = min(rows, CANVAS_ROWS)
    canvas_cols = max(1, round(cols * canvas_rows / rows))
    count = int(rng.poisson(params["density"] * canvas_cols / canvas_rows))
    shortest, longest = (v * canvas_rows for v in params["length"])
    # Drops beyond the frame streak into it: positions over a margin of the longest.
    margin = longest / 2
    y = rng.uniform(-margin, canvas_rows + margin, count)
    x = rng.uniform(-margin, canvas_cols + margin, count)
    # Sheets thin the drops where they are thin, by rejection.
    sheet_at = sheets[
        np.clip((y * rows / canvas_rows).astype(int), 0, rows - 1),
        np.clip((x * cols / canvas_cols).astype(int), 0, cols - 1),
    ]
    keep = rng.uniform(0, sheets.max() + 1e-6, count) < sheet_at
    y, x = y[keep], x[keep]
    kept = y.size
    length = np.exp(rng.uniform(np.log(shortest), np.log(max(longest, shortest + 1e-3)), kept))
    width = rng.uniform(*params["width"], kept)
    cover = params["cover"] * (shortest / length) ** FADE
    angle = np.radians(params["angle_deg"] + rng.normal(0, params["jitter_deg"], kept))
    near = width >= np.quantile(width, 1 - NEAR_SHARE) if kept else np.zeros(0, dtype=bool)
    layers = []
    for group in (~near, near):
        layer = _splat(
            (canvas_rows, canvas_cols),
            y[group],
            x[group],
            length[group],
            width[group],
            cover[group],
            angle[group],
            rng,
        )
        layers.append(layer)
    sigma = rng.uniform(*NEAR_BLUR)
    layers[1] = ndimage.gaussian_filter(layers[1], sigma, truncate=3.0)
    alpha = 1 - (1 - np.clip(layers[0], 0, 1)) * (1 - np.clip(layers[1], 0, 1))
    if (canvas_rows, canvas_cols) != shape:
        resized = Image.fromarray(alpha.astype(np.float32)).resize(
            (cols, rows), Image.Resampling.BILINEAR
        )
        alpha = np.asarray(resized)
    return np.clip(alpha, 0, 1).astype(np.float32)


def _splat(
    shape: tuple[int, int],
    y: np.ndarray,
    x: np.ndarray,
    length: np.ndarray,
    width: np.ndarray,
    cover: np.ndarray,
    angle: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Each segment's cover laid down as points SAMPLE_SPACING apart, bilinearly, its
    width spread across by a second row of points where wider than one pixel."""
    rows, cols = shape
    total = np.zeros(rows * cols, dtype=np.float64)
    if y.size == 0:
        return total.reshape(shape).astype(np.float32)
    steps = np.maximum(2, np.ceil(length / SAMPLE_SPACING).astype(int))
    drop = np.repeat(np.arange(y.size), steps)
    start = np.cumsum(steps) - steps
    s = (np.arange(drop.size) - start[drop]) / (steps[drop] - 1) - 0.5  # −½ … ½ along
    # The oscillation: a few bright-dark cycles along the streak, a phase per drop.
    cycles = rng.uniform(1.5, 4.0, y.size)[drop]
    phase = rng.uniform(0, 2 * np.pi, y.size)[drop]
    depth = rng.uniform(0.2, 0.6, y.size)[drop]
    # Tapered ends: the drop enters and leaves the exposure's window gradually.
    taper = np.clip((0.5 - np.abs(s)) / 0.08, 0, 1)
    value = cover[drop] * (1 + depth * np.sin(2 * np.pi * cycles * s + phase)) * taper
    value *= SAMPLE_SPACING  # per pixel of path, whatever the spacing
    along_y = s * length[drop] * np.cos(angle[drop])
    along_x = s * length[drop] * np.sin(angle[drop])
    # Two rows of points, apart by the width beyond one pixel: a one-pixel streak's
    # rows coincide, a wider one's spread its cover across.
    spread = np.maximum(width[drop] - 1, 0) / 2
    for side in (-1, 1):
        py = y[drop] + along_y - side * spread * np.sin(angle[drop])
        px = x[drop] + along_x + side * spread * np.cos(angle[drop])
        weight = value / 2
        _bilinear(total, rows, cols, py, px, weight)
    return total.reshape(shape).astype(np.float32)


def _bilinear(
    total: np.ndarray, rows: int, cols: int, py: np.ndarray, px: np.ndarray, weight: np.ndarray
) -> None:
    """Add `weight` at (py, px) into the flat `total`, split over the four nearest pixels;
    points off the canvas are dropped."""
    top, left = np.floor(py), np.floor(px)
    fy, fx = py - top, px - left
    top, left = top.astype(np.intp), left.astype(np.intp)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            r, c = top + dy, left + dx
            inside = (r >= 0) & (r < rows) & (c >= 0) & (c < cols)
            total += np.bincount(
                r[inside] * cols + c[inside], (weight * wy * wx)[inside], minlength=total.size
            )
