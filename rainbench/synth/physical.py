"""The physically based rain model (recipes version 2): Marshall–Palmer drops falling
at terminal velocity in front of a pinhole camera, blurred by the exposure and the
lens, seen through a Koschmieder veil, optionally through a camera chain. Every random
choice comes from the seed, so a render is a pure function of its arguments.
"""

import math

import numpy as np
from PIL import Image
from scipy import ndimage

from rainbench.synth.acquisition import acquire, draw_acquisition
from rainbench.synth.recipes import PhysicalRecipe
from rainbench.synth.render import Rendered, _mean_luma, _round

# Drops are drawn at most this many pixels high and the rain's opacity resized up: it
# is soft (motion blur, defocus) and the work stays bounded at 12 MP.
WORK_HEIGHT = 1080
# Marshall–Palmer intercept N0, drops per m³ per mm of diameter.
MP_INTERCEPT = 8000.0
SMALLEST_DROP = 0.1  # mm
# About this many drops (a Poisson number around it) and at most this many streak
# samples: beyond, the nearest drops are kept and the farther rain is left to the veil,
# which models it in aggregate.
MAX_DROPS = 40_000
MAX_POINTS = 1_500_000
# Drops are grouped by depth into this many layers, each blurred once for its defocus.
DEPTH_LAYERS = 4
# The rain's extinction, an empirical visibility law: β = 0.25·R^0.63 km⁻¹.
RAIN_EXTINCTION = (0.25, 0.63)
# A scene darker than this mean sRGB luma is rendered as night unless told.
NIGHT_LUMA = 0.2
LIGHTS = (2, 5)  # how many point lights light the rain at night
LIGHT_POWER = (3.0, 8.0)  # their radiance at the centre, linear units
LIGHT_REACH = (0.08, 0.25)  # their falloff radius, share of the image height
SPLASH_BAND = 0.35  # splashes land in this lower share of the image
SPLASH_DROPLETS = 9  # droplets in each splash's crown
HORIZON_SOFTNESS = 0.1  # σ of the veil's log-depth smoothing, share of the image height
LINEAR_STEPS = 4096  # the linear → sRGB lookup table's resolution

_TO_LINEAR = np.where(
    (levels := np.arange(256) / 255) <= 0.04045,
    levels / 12.92,
    ((levels + 0.055) / 1.055) ** 2.4,
).astype(np.float32)
_steps = np.linspace(0, 1, LINEAR_STEPS)
_TO_SRGB = np.rint(
    255 * np.where(_steps <= 0.0031308, 12.92 * _steps, 1.055 * _steps ** (1 / 2.4) - 0.055)
).astype(np.uint8)


def render_physical(
    clean: np.ndarray,
    recipe: PhysicalRecipe,
    seed: int,
    night: bool | None = None,
    acquisition: bool = True,
) -> Rendered:
    """Rain of `recipe` on `clean` (uint8 H×W×3 upright RGB, left unchanged).

    `night` None decides from the scene's brightness. With `acquisition` a camera chain
    drawn from the seed is applied to the rainy image and to the clean one alike (the
    pair differs only by rain; the size shrinks when it down-scales); without, the rain
    is returned at the input size and the ground truth is `clean`.
    """
    if clean.ndim != 3 or clean.shape[2] != 3 or clean.dtype != np.uint8:
        raise ValueError(f"clean must be uint8 H×W×3, not {clean.dtype} {clean.shape}")
    param_seed, drop_seed, acquisition_seed = np.random.SeedSequence(seed).spawn(3)
    scene_luma = _mean_luma(clean)
    params = _draw(recipe, np.random.default_rng(param_seed))
    params["scene_luma"] = _round(scene_luma)
    params["night"] = bool(scene_luma < NIGHT_LUMA if night is None else night)
    lift = scene_luma + params["light_lift"]
    params["atmospheric_light"] = _round(float(np.clip(lift, 0.02, 0.95)))

    height, width = clean.shape[:2]
    work_height = min(height, WORK_HEIGHT)
    work_width = max(1, round(width * work_height / height))
    linear = _TO_LINEAR[clean]
    rng = np.random.default_rng(drop_seed)
    opacity, drops = _streaks(params, work_height, work_width, rng)
    if recipe.splashes is not None:
        opacity += _splashes(params, work_height, work_width, rng)
    np.clip(opacity, 0, 1, out=opacity)
    light = _rain_light(params, linear, work_height, work_width, rng)
    # Streak lengths are recorded in pixels of the input image.
    drops["streak_length"] = _round(drops["streak_length"] * height / work_height)
    params.update(drops)
    params["intensity"] = _round(float(opacity.mean(dtype=np.float64)))

    alpha = _resize(opacity, width, height)[:, :, None]
    out = linear * (1 - alpha)
    if light.ndim == 1:
        out += alpha * light
    else:
        out += alpha * np.stack([_resize(light[:, :, c], width, height) for c in range(3)], 2)
    transmission = _transmission(params, height)
    out *= transmission[:, None, None]
    veil = _TO_LINEAR[round(255 * params["atmospheric_light"])]
    out += ((1 - transmission) * veil)[:, None, None]
    rain = _TO_SRGB[np.rint(np.clip(out, 0, 1) * (LINEAR_STEPS - 1)).astype(np.uint16)]
    streaks = np.rint(alpha[:, :, 0] * 255).astype(np.uint8)
    transmission_image = np.repeat(np.rint(transmission * 255).astype(np.uint8)[:, None], width, 1)
    ground_truth = None
    if acquisition:
        acquisition_rng = np.random.default_rng(acquisition_seed)
        chain = draw_acquisition(acquisition_rng)
        noise_seed = int(acquisition_rng.integers(2**63))
        params["acquisition"] = chain.to_dict()
        params["acquisition_seed"] = noise_seed
        rain = acquire(rain, chain, noise_seed)
        ground_truth = acquire(clean, chain, noise_seed)
        size = (rain.shape[1], rain.shape[0])
        if size != (width, height):
            streaks = _shrink(streaks, size)
            transmission_image = _shrink(transmission_image, size)
    return Rendered(rain, streaks, transmission_image, params, ground_truth)


def _draw(recipe: PhysicalRecipe, rng: np.random.Generator) -> dict:
    """Every scalar parameter, a fixed number of draws whatever their values."""

    def uniform(bounds: tuple[float, float]) -> float:
        return _round(float(rng.uniform(*bounds)))

    low, high = (math.log(t) for t in recipe.exposure)
    params: dict = {
        "recipe": recipe.name,
        "version": recipe.version,
        "rain_type": recipe.rain_type,
        "compositing": recipe.compositing,
        "rain_rate": uniform(recipe.rain_rate),
        "exposure": _round(math.exp(rng.uniform(low, high))),
        "field_of_view": uniform(recipe.field_of_view),
        "aperture": uniform(recipe.aperture),
        "focus": uniform(recipe.focus),
        "drop_near": uniform(recipe.drop_near),
        "drop_far": uniform(recipe.drop_far),
        "wind": uniform((-recipe.wind, recipe.wind)),
        "wind_jitter": uniform(recipe.wind_jitter),
        "brightness": uniform(recipe.brightness),
        "mist": uniform(recipe.mist),
        "scene_near": uniform(recipe.scene_near),
        "scene_far": uniform(recipe.scene_far),
        "horizon": uniform(recipe.horizon),
        "light_lift": uniform(recipe.light_lift),
    }
    if recipe.splashes is not None:
        params["splashes"] = uniform(recipe.splashes)
    scale, power = RAIN_EXTINCTION
    params["beta"] = _round(scale * params["rain_rate"] ** power + params["mist"])
    params["max_diameter"] = recipe.max_diameter
    return params


def _streaks(
    params: dict, height: int, width: int, rng: np.random.Generator
) -> tuple[np.ndarray, dict]:
    """The rain's opacity α (float32 height×width, not yet clipped) and what was drawn.

    A drop of diameter D at depth z, falling at v for the exposure t, covers each pixel
    of its streak for D/v of the t seconds, so the streak's α sums to the drop image's
    area π/4·(f·D/z)²: spread along f·v·t/z pixels, then blurred by its layer's defocus.
    """
    focal = width / 2 / math.tan(math.radians(params["field_of_view"]) / 2)
    rate = 4.1 * params["rain_rate"] ** -0.21  # Marshall–Palmer Λ, mm⁻¹
    largest = params["max_diameter"]
    per_m3 = MP_INTERCEPT / rate * -math.expm1(-rate * (largest - SMALLEST_DROP))
    near, far = params["drop_near"], params["drop_far"]
    # The view frustum's volume between depths z0 and z1 is k·(z1³ − z0³).
    k = width * height / (3 * focal**2)
    expected = per_m3 * k * (far**3 - near**3)
    if expected > MAX_DROPS:
        far = (near**3 + (far**3 - near**3) * MAX_DROPS / expected) ** (1 / 3)
    count = int(rng.poisson(min(expected, MAX_DROPS)))
    u = rng.uniform(size=(5, count))
    depth = np.sort(np.cbrt(near**3 + u[0] * (far**3 - near**3)))
    span = -math.expm1(-rate * (largest - SMALLEST_DROP))
    diameter = SMALLEST_DROP - np.log1p(-u[1] * span) / rate
    speed = np.maximum(9.65 - 10.3 * np.exp(-0.6 * diameter), 0.25)  # Atlas et al., m/s
    angle = np.radians(params["wind"] + params["wind_jitter"] * rng.standard_normal(count))
    length = focal * speed / np.cos(angle) * params["exposure"] / depth
    drop_width = focal * diameter / 1000 / depth
    area = math.pi / 4 * drop_width**2
    x, y = u[2] * width, u[3] * height
    # The nearest drops first: cut where the streak samples would run out.
    samples = np.maximum(1, np.ceil(length)).astype(np.int64)
    kept = int(np.searchsorted(np.cumsum(samples), MAX_POINTS, side="right"))
    if kept < count:
        far = float(depth[kept])
    edges = np.geomspace(near, far, DEPTH_LAYERS + 1)
    layer = np.clip(np.searchsorted(edges, depth[:kept], side="right") - 1, 0, DEPTH_LAYERS - 1)
    opacity = np.zeros((height, width), np.float32)
    layers = []
    for index in range(DEPTH_LAYERS):
        chosen = np.flatnonzero(layer == index)
        z = math.sqrt(edges[index] * edges[index + 1])
        defocus = focal * params["aperture"] / 1000 * abs(1 / z - 1 / params["focus"])
        typical = float(np.average(drop_width[chosen], weights=area[chosen])) if len(chosen) else 0
        sigma = math.sqrt((defocus / 2.5) ** 2 + (typical / 2.5) ** 2 + 0.35**2)
        canvas = _splat_lines(
            height,
            width,
            x[chosen],
            y[chosen],
            length[chosen],
            angle[chosen],
            area[chosen],
            max(1.0, sigma),
        )
        opacity += _blur(canvas, sigma)
        layers.append({"depth": _round(z), "blur": _round(sigma), "drops": len(chosen)})
    drawn = {
        "drops": kept,
        "drop_far_rendered": _round(far),
        "streak_length": float(np.median(length[:kept])) if kept else 0.0,
        "layers": layers,
    }
    return opacity, drawn


def _splat_lines(
    height: int,
    width: int,
    x: np.ndarray,
    y: np.ndarray,
    length: np.ndarray,
    angle: np.ndarray,
    mass: np.ndarray,
    spacing: float,
) -> np.ndarray:
    """Each streak's `mass` spread evenly over samples `spacing` apart along its line
    (centred on x, y; `angle` from the vertical), splatted bilinearly.
    """
    samples = np.maximum(1, np.ceil(length / spacing)).astype(np.int64)
    drop = np.repeat(np.arange(len(samples)), samples)
    first = np.cumsum(samples) - samples
    along = ((np.arange(len(drop)) - first[drop] + 0.5) / samples[drop] - 0.5) * length[drop]
    px = x[drop] + along * np.sin(angle[drop]) - 0.5
    py = y[drop] + along * np.cos(angle[drop]) - 0.5
    weight = (mass / samples)[drop]
    left, top = np.floor(px), np.floor(py)
    fx, fy = px - left, py - top
    left, top = left.astype(np.int64), top.astype(np.int64)
    canvas = np.zeros(height * width)
    for dy, dx, share in (
        (0, 0, (1 - fx) * (1 - fy)),
        (0, 1, fx * (1 - fy)),
        (1, 0, (1 - fx) * fy),
        (1, 1, fx * fy),
    ):
        row, column = top + dy, left + dx
        inside = (row >= 0) & (row < height) & (column >= 0) & (column < width)
        canvas += np.bincount(
            row[inside] * width + column[inside],
            weights=(weight * share)[inside],
            minlength=height * width,
        )
    return canvas.reshape(height, width).astype(np.float32)


def _blur(canvas: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian blur; wide ones as three box passes, whose cost does not grow with σ."""
    if sigma < 2:
        return ndimage.gaussian_filter(canvas, sigma, truncate=3.0)
    size = max(1, round(math.sqrt(4 * sigma**2 + 1)))
    for axis in (0, 1):
        for _ in range(3):
            canvas = ndimage.uniform_filter1d(canvas, size, axis=axis)
    return canvas


def _splashes(params: dict, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Crowns of droplets where drops hit the ground: in the lower band of the image,
    larger nearer the bottom, each a half ring of droplets over its impact point.
    """
    count = int(rng.poisson(params["splashes"] * params["rain_rate"] * width))
    params["splash_count"] = count
    x = rng.uniform(0, width, count)
    y = height * (1 - SPLASH_BAND * rng.uniform(size=count) ** 2)
    nearness = 1 - (height - y) / (SPLASH_BAND * height)
    radius = height / 480 * (1.5 + 3 * nearness) * rng.uniform(0.7, 1.3, count)
    phase = np.linspace(0, math.pi, SPLASH_DROPLETS)[None, :]
    lift = rng.uniform(0.4, 0.9, (count, 1))
    px = (x[:, None] + radius[:, None] * np.cos(phase)).ravel()
    py = (y[:, None] - lift * radius[:, None] * np.sin(phase)).ravel()
    size = height / 480 * 0.8
    droplets = len(px)
    canvas = _splat_lines(
        height,
        width,
        px,
        py,
        np.zeros(droplets),
        np.zeros(droplets),
        # Splash droplets reflect the ambient light; the `brightness` boost stands for
        # a falling drop's wide cone of sky, so their opacity is divided by it.
        np.full(droplets, math.pi / 4 * size**2 / params["brightness"]),
        1.0,
    )
    return _blur(canvas, max(0.5, size / 2))


def _rain_light(
    params: dict, linear: np.ndarray, height: int, width: int, rng: np.random.Generator
) -> np.ndarray:
    """L, the linear light the drops send to the camera: a drop refracts a wide cone of
    its surroundings, mostly the sky above, so by day it is `brightness` × the mean light
    of the image's upper third (RGB, constant). At night it is that dim ambient plus point
    lights (the scene's brightest spots, or drawn), float32 height×width×3, so the rain
    shows only where it is lit.
    """
    ambient = linear[: max(1, len(linear) // 3) : 4, ::4].reshape(-1, 3).mean(0)
    ambient = (params["brightness"] * ambient).astype(np.float32)
    if not params["night"]:
        return ambient
    wanted = int(rng.integers(LIGHTS[0], LIGHTS[1] + 1))
    thumb_height = min(64, len(linear))
    step = max(1, len(linear) // thumb_height)
    thumb = linear[::step, ::step]
    luma = thumb @ np.array([0.2126, 0.7152, 0.0722], np.float32)
    peaks = (luma == ndimage.maximum_filter(luma, 5)) & (luma > 0.3)
    rows, columns = np.nonzero(peaks)
    order = np.argsort(-luma[rows, columns], kind="stable")[:wanted]
    lights = [
        (
            (columns[i] + 0.5) / thumb.shape[1],
            (rows[i] + 0.5) / thumb.shape[0],
            thumb[rows[i], columns[i]] / max(float(thumb[rows[i], columns[i]].max()), 1e-6),
        )
        for i in order
    ]
    while len(lights) < wanted:  # warm street lamps in the upper part of the frame
        lights.append((rng.uniform(), rng.uniform(0.05, 0.6), np.array([1.0, 0.75, 0.45])))
    field = np.broadcast_to(ambient, (height, width, 3)).copy()
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    params["lights"] = []
    for lx, ly, colour in lights:
        power, reach = rng.uniform(*LIGHT_POWER), rng.uniform(*LIGHT_REACH) * height
        falloff = 1 / (1 + ((xx - lx * width) ** 2 + (yy - ly * height) ** 2) / reach**2) ** 2
        field += (power * falloff)[:, :, None] * colour.astype(np.float32)
        params["lights"].append(
            {
                "x": _round(float(lx)),
                "y": _round(float(ly)),
                "power": _round(float(power)),
                "reach": _round(float(reach / height)),
            }
        )
    return field


def _transmission(params: dict, height: int) -> np.ndarray:
    """T = exp(−β·d) per row, d the depth of a ground plane: scene_near at the bottom row,
    growing as 1/(row − horizon) up to scene_far, which it keeps above the horizon; the
    log-depth is smoothed over HORIZON_SOFTNESS of the height, since few photographs show
    a bare ground plane meeting an empty horizon, and a hard line of fog reads as none.
    """
    horizon = params["horizon"] * (height - 1)
    rows = np.arange(height) - horizon
    bottom = max(height - 1 - horizon, 1e-6)
    with np.errstate(divide="ignore"):
        depth = np.where(rows > 0, params["scene_near"] * bottom / rows, np.inf)
    depth = np.log(np.minimum(depth, params["scene_far"]))
    depth = ndimage.gaussian_filter1d(depth, HORIZON_SOFTNESS * height, mode="nearest")
    return np.exp(-params["beta"] / 1000 * np.exp(depth)).astype(np.float32)


def _resize(field: np.ndarray, width: int, height: int) -> np.ndarray:
    if field.shape == (height, width):
        return field
    resized = Image.fromarray(field).resize((width, height), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(resized), 0, None)


def _shrink(layer: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(layer).resize(size, Image.Resampling.BOX))
