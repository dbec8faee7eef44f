"""A "Photoshop-style" rain model: noise grains, thresholded, motion-blurred along a slowly
turning wind field, levelled into sharp-edged streaks and screen-blended onto the scene.
Written independently of rainbench's other renderers, with its own streak physics, so the
rain-type tagger's calibration can be checked on rain it was not fitted to.
"""

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

RAIN_TYPES = ("drizzle", "streak", "storm", "fog-like")

# The rain layer is drawn on a canvas at most this many rows tall and upsampled before
# its final levels, so its cost stays flat from 1 MP to 12 MP while edges stay sharp.
CANVAS_ROWS = 640

# A cool grey the haze's airlight leans towards, away from the scene's own mean colour.
OVERCAST = np.array([0.78, 0.81, 0.86], dtype=np.float32)


@dataclass(frozen=True)
class RainLook:
    """One rain type's parameter ranges. Sizes and lengths are fractions of the image
    height, angles are degrees from vertical, other values are unitless."""

    density: tuple[float, float]  # fraction of the canvas that is rain grains
    grain: tuple[float, float]  # grain-enlarging blur (below half a pixel: single pixels)
    length: tuple[float, float]  # longest streak; nearer drops draw longer ones
    angle: float  # largest |wind angle| over the whole frame
    swirl: float  # largest local departure of the wind field from that angle
    soften: tuple[float, float]  # blur of the streaks before their final levels
    black: tuple[float, float]  # final levels' black point: higher cuts flanks harder
    strength: tuple[float, float]  # k in the screen blend
    tint: tuple[float, float]  # how much the streaks take the scene's mean colour
    haze: tuple[float, float]  # airlight weight at the top of the frame
    grade: tuple[float, float]  # how much the haze thins towards the bottom
    contrast: tuple[float, float]  # scene contrast kept under the haze
    drops: tuple[int, int]  # out-of-focus drops on the lens
    drop_radius: tuple[float, float]


NO_HAZE = {"haze": (0.0, 0.0), "grade": (0.0, 0.0), "contrast": (1.0, 1.0)}

LOOKS = {
    "drizzle": RainLook(
        density=(0.002, 0.005),
        grain=(0.0, 0.0),
        length=(0.015, 0.04),
        angle=15.0,
        swirl=5.0,
        soften=(0.0, 0.0),
        black=(0.25, 0.4),
        strength=(0.25, 0.45),
        tint=(0.2, 0.5),
        drops=(0, 0),
        drop_radius=(0.0, 0.0),
        **NO_HAZE,
    ),
    "streak": RainLook(
        density=(0.004, 0.01),
        grain=(0.0008, 0.0016),
        length=(0.06, 0.15),
        angle=25.0,
        swirl=8.0,
        soften=(0.0, 0.0),
        black=(0.2, 0.35),
        strength=(0.55, 0.85),
        tint=(0.1, 0.4),
        drops=(0, 0),
        drop_radius=(0.0, 0.0),
        **NO_HAZE,
    ),
    "storm": RainLook(
        density=(0.015, 0.03),
        grain=(0.0008, 0.0016),
        length=(0.08, 0.2),
        angle=35.0,
        swirl=12.0,
        soften=(0.0, 0.0),
        black=(0.15, 0.3),
        strength=(0.5, 0.8),
        tint=(0.2, 0.5),
        haze=(0.25, 0.45),
        grade=(0.2, 0.6),
        contrast=(0.7, 0.85),
        drops=(2, 7),
        drop_radius=(0.03, 0.08),
    ),
    "fog-like": RainLook(
        density=(0.08, 0.15),
        grain=(0.0, 0.0),
        length=(0.005, 0.015),
        angle=20.0,
        swirl=5.0,
        soften=(0.0008, 0.0015),
        black=(0.0, 0.05),
        strength=(0.12, 0.25),
        tint=(0.3, 0.6),
        haze=(0.45, 0.7),
        grade=(0.0, 0.4),
        contrast=(0.55, 0.75),
        drops=(0, 0),
        drop_radius=(0.0, 0.0),
    ),
}

# How opaque a lens drop is at its centre.
DROP_PEAK = (0.45, 0.8)

# The final levels' white point: streak cores above it saturate to the full strength k.
WHITE = 0.75


def render_screen(clean: np.ndarray, rain_type: str, seed: int) -> tuple[np.ndarray, dict]:
    """uint8 H×W×3 upright RGB in (unchanged) → (uint8 H×W×3 rainy image, params dict
    JSON-serialisable).

    The scene is hazed first (storm, fog-like), then the streaks are screen-blended,
    O = 1 − (1 − B)(1 − k·t·R) with t the tint, so rain alone never darkens a pixel;
    lens drops go on last.
    """
    if rain_type not in LOOKS:
        raise ValueError(f"unknown rain_type {rain_type!r}; known: {', '.join(RAIN_TYPES)}")
    if clean.dtype != np.uint8 or clean.ndim != 3 or clean.shape[2] != 3:
        raise ValueError(f"clean must be uint8 H×W×3, got {clean.dtype} {clean.shape}")
    rng = np.random.default_rng(seed)
    rows, cols = clean.shape[:2]
    step = max(1, rows // 256)
    scene_mean = clean[::step, ::step].reshape(-1, 3).mean(axis=0).astype(np.float32) / 255
    params = _draw_params(LOOKS[rain_type], scene_mean, rng)
    params |= {"rain_type": rain_type, "seed": int(seed)}

    image = clean.astype(np.float32)
    image *= 1 / 255
    _haze(image, params, scene_mean)
    layer = _rain_layer(params, (rows, cols), rng)
    _screen(image, layer, params["strength"] * np.array(params["tint_rgb"], dtype=np.float32))
    _lens_drops(image, params["drops"])
    image *= 255
    np.rint(image, out=image)
    np.clip(image, 0, 255, out=image)
    return image.astype(np.uint8), params


def _draw_params(look: RainLook, scene_mean: np.ndarray, rng: np.random.Generator) -> dict:
    """Every scalar choice of one render, drawn from `look`'s ranges."""

    def uniform(bounds: tuple[float, float]) -> float:
        return float(rng.uniform(*bounds))

    params = {
        name: uniform(getattr(look, name))
        for name in ("density", "grain", "length", "soften", "black", "strength", "tint")
    }
    params["white"] = WHITE
    params["angle_deg"] = float(rng.uniform(-look.angle, look.angle))
    params["swirl_deg"] = look.swirl
    brightest = max(float(scene_mean.max()), 1e-3)
    tint = 1 - params["tint"] + params["tint"] * scene_mean / brightest
    params["tint_rgb"] = [float(c) for c in tint]

    params |= {name: uniform(getattr(look, name)) for name in ("haze", "grade", "contrast")}
    # The airlight: the scene's colour pulled towards an overcast grey, then lifted.
    cool = rng.uniform(0.5, 0.8)
    lift = rng.uniform(0.3, 0.5)
    airlight = 1 - (1 - ((1 - cool) * scene_mean + cool * OVERCAST)) * (1 - lift)
    params["airlight"] = [float(c) for c in airlight]

    count = int(rng.integers(look.drops[0], look.drops[1] + 1))
    # Centres as fractions of the height and width, radii of the height; peak opacity.
    params["drops"] = [
        {
            "row": float(rng.uniform()),
            "col": float(rng.uniform()),
            "radius": uniform(look.drop_radius),
            "peak": uniform(DROP_PEAK),
        }
        for _ in range(count)
    ]
    return params


def _haze(image: np.ndarray, params: dict, scene_mean: np.ndarray) -> None:
    """In place: the scene's contrast shrinks towards its mean by c, then blends with the
    airlight A by α(y) = haze·(1 − grade·y/(H − 1)), thickest at the top of the frame:
    O = (1 − α)(m + c(B − m)) + α·A."""
    if params["haze"] == 0 and params["contrast"] == 1:
        return
    rows = image.shape[0]
    height = np.linspace(0, 1, rows, dtype=np.float32)[:, None, None]
    alpha = params["haze"] * (1 - params["grade"] * height)
    contrast = params["contrast"]
    airlight = np.array(params["airlight"], dtype=np.float32)
    # The blend is affine in B per row: one multiply and one add over the frame.
    image *= contrast * (1 - alpha)
    image += (1 - alpha) * (1 - contrast) * scene_mean + alpha * airlight


def _rain_layer(params: dict, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """The rain layer R in [0, 1] at full size: grains on a reduced canvas, streaked, then
    upsampled and levelled so the streak edges are sharp at the image's own resolution."""
    rows, cols = shape
    canvas_rows = min(rows, CANVAS_ROWS)
    canvas_cols = max(1, round(cols * canvas_rows / rows))
    longest = params["length"] * canvas_rows
    # Grains beyond the frame streak into it, so the borders are as rainy as the middle.
    pad = int(np.ceil(longest / 2)) + 2
    padded = (canvas_rows + 2 * pad, canvas_cols + 2 * pad)

    grains = _noise_grains(padded, params["density"], params["grain"] * canvas_rows, rng)
    streaks = _motion_blur(grains, longest, params, rng)
    streaks = streaks[pad:-pad, pad:-pad]
    sigma = max(0.5, params["soften"] * canvas_rows)
    streaks = ndimage.gaussian_filter(streaks, sigma, mode="nearest", truncate=3.0)
    lit = streaks[streaks > 0]
    if lit.size == 0:
        return np.zeros(shape, dtype=np.float32)
    streaks *= 1 / np.quantile(lit, 0.98)
    if (canvas_rows, canvas_cols) != shape:
        resized = Image.fromarray(streaks).resize((cols, rows), Image.Resampling.BILINEAR)
        streaks = np.asarray(resized).copy()
    return _levels(streaks, params["black"], params["white"])


def _noise_grains(
    shape: tuple[int, int], density: float, grain: float, rng: np.random.Generator
) -> np.ndarray:
    """Uniform noise, blurred by `grain` pixels to enlarge its grains, levelled so only the
    brightest `density` of it remains: 0 elsewhere, up to 1 at the grain cores."""
    noise = rng.random(shape, dtype=np.float32)
    if grain >= 0.5:
        noise = ndimage.gaussian_filter(noise, grain, mode="wrap", truncate=3.0)
    flat = noise.ravel()
    keep = min(flat.size - 1, int((1 - density) * flat.size))
    threshold = np.partition(flat, keep)[keep]
    return _levels(noise, float(threshold), float(flat.max()))


def _motion_blur(
    grains: np.ndarray, longest: float, params: dict, rng: np.random.Generator
) -> np.ndarray:
    """A line-kernel motion blur whose direction follows a slowly turning wind field and
    whose length and brightness vary per drop.

    The blur is done as a scatter: each grain pixel is spread along its own line, which
    equals the gather of a line kernel where the field is locally constant and costs
    grain pixels × length rather than canvas × length."""
    rows, cols = grains.shape
    drops, count = ndimage.label(grains > 0)
    where = np.flatnonzero(drops)
    streaks = np.zeros(grains.size, dtype=np.float32)
    if where.size == 0:
        return streaks.reshape(grains.shape)
    # One nearness per drop: a near drop crosses more of the frame during the exposure
    # and catches more light.
    nearness = rng.random(count + 1, dtype=np.float32)[drops.ravel()[where]]
    lengths = longest * (0.35 + 0.65 * nearness)
    weights = grains.ravel()[where] * (0.5 + 0.5 * nearness)

    y, x = np.divmod(where, cols)
    angle = np.radians(_wind_field(rows, cols, params, rng, y, x))
    steps = int(np.ceil(longest)) + 1
    along = np.linspace(-0.5, 0.5, steps, dtype=np.float32)[None, :] * lengths[:, None]
    ys = (y[:, None] + along * np.cos(angle)[:, None]).ravel()
    xs = (x[:, None] + along * np.sin(angle)[:, None]).ravel()
    # Samples per pixel of line differ with length; weighting by the spacing keeps a
    # streak's brightness its drop's, not one over its length.
    weight = np.repeat(weights * lengths / max(steps - 1, 1), steps)
    # Bilinear splatting: a thin slanted streak stays even instead of breaking into dots.
    top = np.floor(ys)
    left = np.floor(xs)
    below = ys - top
    right = xs - left
    top = top.astype(np.intp)
    left = left.astype(np.intp)
    for dy, wy in ((0, 1 - below), (1, below)):
        for dx, wx in ((0, 1 - right), (1, right)):
            index = np.clip(top + dy, 0, rows - 1) * cols + np.clip(left + dx, 0, cols - 1)
            streaks += np.bincount(index, weight * wy * wx, minlength=grains.size).astype(
                np.float32
            )
    return streaks.reshape(grains.shape)


def _wind_field(
    rows: int,
    cols: int,
    params: dict,
    rng: np.random.Generator,
    y: np.ndarray,
    x: np.ndarray,
) -> np.ndarray:
    """The wind angle (degrees from vertical, positive leaning right going down) at pixels
    (y, x): the frame's angle plus departures on a coarse grid, smoothly interpolated."""
    grid_rows = 3
    grid_cols = max(3, round(3 * cols / rows))
    grid = params["angle_deg"] + params["swirl_deg"] * rng.uniform(-1, 1, (grid_rows, grid_cols))
    at = [y * ((grid_rows - 1) / max(rows - 1, 1)), x * ((grid_cols - 1) / max(cols - 1, 1))]
    return ndimage.map_coordinates(grid, at, order=3, mode="nearest")


def _levels(image: np.ndarray, black: float, white: float) -> np.ndarray:
    """Photoshop's levels without gamma: black → 0, white → 1, clipped; in place."""
    image -= black
    image *= 1 / max(white - black, 1e-6)
    return np.clip(image, 0, 1, out=image)


def _screen(image: np.ndarray, layer: np.ndarray, colour: np.ndarray) -> None:
    """In place, O = B + s(1 − B) = 1 − (1 − B)(1 − s) with s = R·colour: brightens only."""
    light = layer[:, :, None] * colour
    light *= 1 - image
    image += light


def _lens_drops(image: np.ndarray, drops: list[dict]) -> None:
    """In place: soft discs where out-of-focus drops sit on the lens, each showing the
    light it gathers from behind (its area's mean, a little brighter) with a soft edge."""
    rows, cols = image.shape[:2]
    for drop in drops:
        r = max(drop["radius"] * rows, 1.0)
        cy, cx = drop["row"] * (rows - 1), drop["col"] * (cols - 1)
        top, bottom = max(0, int(cy - r)), min(rows, int(cy + r) + 1)
        left, right = max(0, int(cx - r)), min(cols, int(cx + r) + 1)
        if top >= bottom or left >= right:
            continue
        yy, xx = np.ogrid[top:bottom, left:right]
        edge = np.clip((np.hypot(yy - cy, xx - cx) / r - 0.55) / 0.45, 0, 1)
        alpha = (drop["peak"] * (1 - edge * edge * (3 - 2 * edge)))[:, :, None].astype(np.float32)
        area = image[top:bottom, left:right]
        gathered = 1 - (1 - area.mean(axis=(0, 1))) * 0.7
        area *= 1 - alpha
        area += alpha * gathered
