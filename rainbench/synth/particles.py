"""A particle-camera rain model: drops scattered through the space in front of a pinhole
camera, each projected through the lens for one exposure. Written separately from
rainbench's other rain models, with its own physics, so the rain-type tagger can be
checked on rain that no calibration saw.

What sets it apart: everything follows from a drop's depth. A drop's image is wide and
long near the camera and a hairline far from it, while its per-pixel share of the
exposure, τ/T = D / (v·T), does not depend on depth at all; near drops are out of focus;
beyond the drawn volume the rain is a veil that thickens with distance (Koschmieder),
distance read from the image rows. Streaks add, in linear light, the light a drop
refracts: the sky's and that of lamps near it. Wet ground is darker and more saturated.
"""

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

RAIN_TYPES = ("drizzle", "streak", "storm", "fog-like")

# The projection: focal length in canvas rows (a ≈ 53° vertical field of view). Drops are
# drawn on a canvas at most CANVAS_ROWS high and their light resized up.
CANVAS_ROWS = 1000
FOCAL = 1.0  # × canvas rows
FAR_DRAWN = 6.0  # m: drops nearer than this are drawn one by one; the rest is the veil
FOCUS = 4.0  # m: the lens is focused here; nearer drops blur by their defocus
BLUR_PER_DIOPTRE = 3.0  # defocus σ, px of a CANVAS_ROWS canvas, per dioptre off focus
WIDEST_BLUR = 6.0  # canvas px
MOST_DROPS = 40_000  # per render: the density is scaled down beyond this, gain up


@dataclass(frozen=True)
class Weather:
    """One rain type's ranges. Drop diameters are log-normal around `diameter` (mm);
    density is drops per m³ in the drawn volume, from `nearest` m out; exposure in
    seconds; `gain` how much more light a drop sends than τ/T of its surroundings';
    `veil` the extinction per m of distance; `wet` how much wet ground darkens."""

    diameter: tuple[float, float]
    density: tuple[float, float]
    nearest: float
    exposure: tuple[float, float]
    gain: tuple[float, float]
    angle: float  # largest |wind angle| from vertical, degrees
    gust: float  # per-drop departure from it, degrees
    veil: tuple[float, float]
    wet: tuple[float, float]


WEATHER = {
    "drizzle": Weather(
        diameter=(0.4, 0.8),
        density=(150.0, 350.0),
        nearest=0.6,
        exposure=(1 / 500, 1 / 125),
        gain=(8.0, 16.0),
        angle=12.0,
        gust=3.0,
        veil=(0.0, 0.002),
        wet=(0.0, 0.05),
    ),
    "streak": Weather(
        diameter=(1.2, 2.2),
        density=(40.0, 120.0),
        nearest=0.8,
        exposure=(1 / 125, 1 / 30),
        gain=(25.0, 45.0),
        angle=25.0,
        gust=2.0,
        veil=(0.0, 0.006),
        wet=(0.05, 0.12),
    ),
    "storm": Weather(
        diameter=(1.8, 3.2),
        density=(150.0, 400.0),
        nearest=0.8,
        exposure=(1 / 125, 1 / 30),
        gain=(18.0, 35.0),
        angle=35.0,
        gust=5.0,
        veil=(0.03, 0.07),
        wet=(0.1, 0.25),
    ),
    "fog-like": Weather(
        diameter=(0.2, 0.5),
        density=(150.0, 400.0),
        nearest=3.0,
        exposure=(1 / 500, 1 / 125),
        gain=(4.0, 8.0),
        angle=15.0,
        gust=6.0,
        veil=(0.07, 0.14),
        wet=(0.05, 0.15),
    ),
}

# The distance of each image row, for the veil: the bottom row is ground NEAR_GROUND m
# away, the top row the horizon or sky, FAR_GROUND m away.
NEAR_GROUND, FAR_GROUND = 2.0, 40.0


def render_particles(clean: np.ndarray, rain_type: str, seed: int) -> tuple[np.ndarray, dict]:
    """uint8 H×W×3 upright RGB in (unchanged) → (uint8 H×W×3 rainy image, params dict
    JSON-serialisable).

    In linear light: the wet scene is veiled, O₁ = t·B + (1 − t)·A with t = exp(−β·d)
    and d the row's distance; then each drop adds its light over its streak,
    O = O₁ + α·E, with α = gain · D / (v·T) · min(1, projected width) after defocus.
    """
    if rain_type not in WEATHER:
        raise ValueError(f"unknown rain_type {rain_type!r}; known: {', '.join(RAIN_TYPES)}")
    if clean.dtype != np.uint8 or clean.ndim != 3 or clean.shape[2] != 3:
        raise ValueError(f"clean must be uint8 H×W×3, got {clean.dtype} {clean.shape}")
    rng = np.random.default_rng(seed)
    weather = WEATHER[rain_type]
    params = _draw_params(weather, rng) | {"rain_type": rain_type, "seed": int(seed)}
    rows, cols = clean.shape[:2]
    scene = (clean.astype(np.float32) / 255) ** 2.2
    sky = _sky_light(scene)
    image = _wet(scene, params["wet"])
    image = _veil(image, sky, params["veil"])
    alpha = _drops(rows, cols, weather, params, rng)
    image += alpha[:, :, None] * _drop_light(scene, sky)
    image = np.clip(image, 0, 1) ** (1 / 2.2)
    return np.round(image * 255).astype(np.uint8), params


def _draw_params(weather: Weather, rng: np.random.Generator) -> dict:
    """Every scalar choice of one render, drawn from `weather`'s ranges."""
    params = {
        name: float(rng.uniform(*getattr(weather, name)))
        for name in ("diameter", "density", "gain", "veil", "wet")
    }
    # Log-uniform exposure: 1/500 s to 1/30 s are equally common settings.
    low, high = np.log(weather.exposure)
    params["exposure"] = float(np.exp(rng.uniform(low, high)))
    params["angle_deg"] = float(rng.uniform(-weather.angle, weather.angle))
    params["gust_deg"] = weather.gust
    return params


def _sky_light(scene: np.ndarray) -> np.ndarray:
    """The light from above: the mean linear RGB of the top fifth of the frame (a drop
    refracts a wide cone of its surroundings, the sky above all)."""
    return scene[: max(1, scene.shape[0] // 5)].reshape(-1, 3).mean(axis=0)


def _wet(scene: np.ndarray, wetness: float) -> np.ndarray:
    """Wet surfaces are darker (water fills the pores, less light is scattered back)
    and more saturated."""
    grey = scene.mean(axis=2, keepdims=True)
    saturated = grey + (1 + wetness) * (scene - grey)
    return np.clip((1 - wetness) * saturated, 0, 1).astype(np.float32)


def _veil(image: np.ndarray, sky: np.ndarray, extinction: float) -> np.ndarray:
    """Koschmieder's law by row: the bottom row near, the top far."""
    rows = image.shape[0]
    height = np.linspace(1.0, 0.0, rows, dtype=np.float32)
    distance = NEAR_GROUND * (FAR_GROUND / NEAR_GROUND) ** height
    kept = np.exp(-extinction * distance).astype(np.float32)[:, None, None]
    airlight = 0.5 * sky + 0.5 * sky.mean()  # rain's veil is nearly colourless
    return image * kept + airlight.astype(np.float32) * (1 - kept)


def _drop_light(scene: np.ndarray, sky: np.ndarray) -> np.ndarray:
    """E: the light a drop adds where it is seen, the sky's and the light around the
    drop: lamps light the drops near them, so at night rain shows where it is lit."""
    rows, cols = scene.shape[:2]
    step = max(1, rows // 100)
    small = scene[::step, ::step]
    # A lamp lights the drops within about a tenth of the frame of it fully, and fades
    # beyond: the brightest light nearby, then softened.
    reach = max(1, round(small.shape[0] / 10))
    around = ndimage.maximum_filter(small, size=(reach, reach, 1))
    around = ndimage.gaussian_filter(around, (reach / 2, reach / 2, 0))
    around = np.stack(
        [
            np.asarray(
                Image.fromarray(around[:, :, c]).resize((cols, rows), Image.Resampling.BILINEAR)
            )
            for c in range(3)
        ],
        axis=2,
    )
    return (0.5 * sky + 0.5 * around).astype(np.float32)


def _drops(
    rows: int, cols: int, weather: Weather, params: dict, rng: np.random.Generator
) -> np.ndarray:
    """α, each pixel's share of the exposure behind a drop, times the drop's gain: drops
    in the camera's field of view between `weather.nearest` and FAR_DRAWN m, drawn far
    to near on three depth layers that blur by their defocus."""
    canvas_rows = min(rows, CANVAS_ROWS)
    canvas_cols = max(1, round(cols * canvas_rows / rows))
    focal = FOCAL * canvas_rows
    near = weather.nearest
    # The frustum's volume between near and FAR_DRAWN, m³: its cross-section at depth z
    # is z² · (canvas area / focal²).
    volume = (FAR_DRAWN**3 - near**3) / 3 * canvas_rows * canvas_cols / focal**2
    count = params["density"] * volume
    gain = params["gain"] * max(1.0, count / MOST_DROPS)  # fewer drops, each brighter
    count = int(min(count, MOST_DROPS))
    # Depth with density ∝ z² (uniform in the volume); diameter log-normal; terminal
    # velocity after Atlas et al. (1973); wind tilts the fall.
    depth = (near**3 + rng.uniform(0, 1, count) * (FAR_DRAWN**3 - near**3)) ** (1 / 3)
    diameter = params["diameter"] * np.exp(rng.normal(0, 0.35, count))  # mm
    speed = np.clip(9.65 - 10.3 * np.exp(-0.6 * diameter), 0.3, None)  # m/s
    angle = np.radians(params["angle_deg"] + rng.normal(0, params["gust_deg"], count))
    travel = speed * params["exposure"] * focal / depth  # canvas px
    width = diameter * 1e-3 * focal / depth
    share = diameter * 1e-3 / (speed * params["exposure"])  # τ/T
    strength = np.clip(gain * share * np.minimum(width, 1.0), 0, 1)
    x = rng.uniform(-0.1, 1.1, count) * canvas_cols
    y = rng.uniform(-0.1, 1.1, count) * canvas_rows - travel / 2
    dioptres = np.abs(1 / depth - 1 / FOCUS)
    defocus = np.minimum(BLUR_PER_DIOPTRE * dioptres * canvas_rows / CANVAS_ROWS, WIDEST_BLUR)
    alpha = np.zeros((canvas_rows, canvas_cols), dtype=np.float32)
    order = np.argsort(-depth)
    for blur_low, blur_high in ((0.0, 0.75), (0.75, 2.0), (2.0, WIDEST_BLUR + 1)):
        layer = Image.new("F", (canvas_cols, canvas_rows), 0.0)
        draw = ImageDraw.Draw(layer)
        chosen = order[(defocus[order] >= blur_low) & (defocus[order] < blur_high)]
        for i in chosen:
            end = (x[i] + travel[i] * math.sin(angle[i]), y[i] + travel[i] * math.cos(angle[i]))
            draw.line([(x[i], y[i]), end], fill=float(strength[i]), width=max(1, round(width[i])))
        drawn = np.asarray(layer, dtype=np.float32)
        # Every layer is softened at least by the lens and sensor (σ 0.5 px); nearer
        # layers by their mean defocus.
        sigma = max(0.5, float(np.mean(defocus[chosen])) if chosen.size else 0.5)
        alpha += ndimage.gaussian_filter(drawn, sigma)
    if (canvas_rows, canvas_cols) != (rows, cols):
        alpha = np.asarray(
            Image.fromarray(alpha).resize((cols, rows), Image.Resampling.BILINEAR),
            dtype=np.float32,
        )
    return np.clip(alpha, 0, 1)
