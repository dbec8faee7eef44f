"""Measure the rain-type features of one capture from the upright preview ingest
already decoded (never a second full decode). Each is a number a person can read: how
much oriented high-frequency energy there is and at what angle, how dense and long the
streaks are, how strong the veil is, and the picture's contrast, brightness and colour.

Everything is measured at a fixed working height, so a feature means the same thing
for a 2 MP and a 48 MP capture of the same scene; the thin-line features are measured
there and on the preview's own pixels too, where a streak keeps its width in pixels.
"""

import math

import numpy as np
from PIL import Image

from rainbench.tagging.features import (
    BLOCK,
    BOX,
    DARK_PATCH,
    FEATURE_NAMES,
    LENGTH_LAG,
    MAX_ASPECT,
    NATIVE_HEIGHT,
    REACH_LAG,
    RUN_LAG,
    STREAK_BAND,
    THIN_SIGMA,
    WIDE_SIGMA,
    WORK_HEIGHT,
)
from rainbench.tagging.ridges import ridge_features
from rainbench.windows import box_sum, min_filter


def working_image(preview: Image.Image) -> np.ndarray:
    """The upright preview as float32 RGB in [0, 1], WORK_HEIGHT rows high."""
    image = _central(preview if preview.mode == "RGB" else preview.convert("RGB"))
    width, rows = image.size
    # A portrait is measured WORK_HEIGHT rows high too, but never wider than tall×4.
    work_width = max(8, min(round(width * WORK_HEIGHT / rows), MAX_ASPECT * WORK_HEIGHT))
    resample = Image.Resampling.BOX if rows > WORK_HEIGHT else Image.Resampling.BILINEAR
    image = image.resize((work_width, WORK_HEIGHT), resample)
    return _unit_range(image)


def native_luma(preview: Image.Image) -> np.ndarray:
    """The preview's luma at its own scale (reduced only above NATIVE_HEIGHT rows), so
    a streak one pixel wide in the preview is still one pixel wide."""
    image = _central(preview.convert("L"))
    width, rows = image.size
    if rows > NATIVE_HEIGHT:
        size = (max(8, round(width * NATIVE_HEIGHT / rows)), NATIVE_HEIGHT)
        image = image.resize(size, Image.Resampling.BOX)
    return _unit_range(image)


def _unit_range(image: Image.Image) -> np.ndarray:
    """8-bit pixels as float32 / 255: converted inside the division, in one pass."""
    return np.divide(np.asarray(image), np.float32(255), dtype=np.float32)


def _central(image: Image.Image) -> Image.Image:
    """Wider panoramas are measured on their central MAX_ASPECT:1 part."""
    width, height = image.size
    if width > MAX_ASPECT * height:
        left = (width - MAX_ASPECT * height) // 2
        image = image.crop((left, 0, left + MAX_ASPECT * height, height))
    return image


def compute_features(preview: Image.Image) -> dict[str, float]:
    """Every feature of FEATURES for an upright preview (any mode, any size)."""
    rgb = working_image(preview)
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    # Elementwise, not a matmul or a reduction over the last axis: no BLAS (the same
    # sums on every machine) and ~10× faster on interleaved RGB.
    luma = np.float32(0.299) * red + np.float32(0.587) * green + np.float32(0.114) * blue
    lowest = np.minimum(np.minimum(red, green), blue)
    residual = luma - box_sum(luma, BOX) / np.float32(BOX * BOX)
    variance = float(luma.var())
    features = {
        "hf_share": float(np.mean(residual**2)) / max(variance, 1e-8),
        "hf_level": float(np.sqrt(np.mean(residual**2))),
        **_streak_features(residual),
        **_veil_features(lowest, luma),
        "contrast": math.sqrt(variance),
        "brightness": float(luma.mean()),
        "black_level": float(np.percentile(luma, 1)),
        "saturation": _saturation(rgb, lowest),
        **ridge_features(native_luma(preview), THIN_SIGMA, "thin"),
        **ridge_features(luma, WIDE_SIGMA, "ridge"),
    }
    return {name: _round(features[name]) for name in FEATURE_NAMES}


def _streak_features(residual: np.ndarray) -> dict[str, float]:
    """Orientation statistics of the residual: rain streaks are thin bright lines,
    all at nearly one angle, so their gradients point across that angle."""
    gy, gx = np.gradient(residual)
    gx_squared, gy_squared = gx**2, gy**2
    energy = gx_squared + gy_squared
    total = float(energy.sum())
    if total <= 1e-12:
        return {
            "streak_energy": 0.0,
            "streak_coherence": 0.0,
            "streak_angle": 90.0,
            "streak_density": 0.0,
            "streak_length": 0.0,
            "streak_anisotropy": 0.0,
            "streak_reach": 0.0,
            "streak_run": 0.0,
            "streak_agreement": 0.0,
            "streak_blocks": 0.0,
        }
    # Doubled-angle sums: a gradient and its opposite count as the same orientation.
    # Each kept for the pixelwise dot product below, which uses the same terms.
    doubled_cos = gx_squared - gy_squared
    doubled_sin = 2 * gx * gy
    cos2 = float(np.sum(doubled_cos))
    sin2 = float(np.sum(doubled_sin))
    coherence = math.hypot(cos2, sin2) / total
    if coherence <= 1e-9:
        cos2, sin2 = 1.0, 0.0  # no preferred orientation: measure against vertical streaks
    gradient_angle = 0.5 * math.degrees(math.atan2(sin2, cos2))
    # Rows grow downwards; the streak runs across its gradients.
    angle = (90 - gradient_angle) % 180
    # A pixel is "along" when its doubled gradient angle lies within 2·STREAK_BAND of
    # the dominant one: a dot product of unit doubled-angle vectors, no arctangents.
    dot = doubled_cos * (cos2 / math.hypot(cos2, sin2)) + doubled_sin * (
        sin2 / math.hypot(cos2, sin2)
    )
    along = dot >= math.cos(math.radians(2 * STREAK_BAND)) * energy
    # A streak pixel: bright above the local level (drops add light), oriented as the rain.
    noise = 1.25 * float(np.abs(residual).mean()) + 1e-4
    streak = (residual > 2 * noise) & along
    length = _lag_correlation(residual, angle, LENGTH_LAG)
    agreement, blocks = _block_votes(gx, gy)
    return {
        "streak_energy": float(energy[along].sum()) / total,
        "streak_coherence": coherence,
        "streak_angle": angle,
        "streak_density": float(streak.mean()),
        "streak_length": length,
        "streak_anisotropy": length - _lag_correlation(residual, angle + 90, LENGTH_LAG),
        "streak_reach": _lag_correlation(residual, angle, REACH_LAG),
        "streak_run": _lag_correlation(streak.astype(np.float32), angle, RUN_LAG),
        "streak_agreement": agreement,
        "streak_blocks": blocks,
    }


def _block_votes(gx: np.ndarray, gy: np.ndarray) -> tuple[float, float]:
    """Every block's own orientation, weighted by its coherence but not its energy, so
    a few strong edges cannot outvote rain spread over smooth sky and walls."""
    rows, cols = gx.shape[0] // BLOCK, gx.shape[1] // BLOCK
    if rows == 0 or cols == 0:
        return 0.0, 0.0

    def block_sums(values: np.ndarray) -> np.ndarray:
        cut = values[: rows * BLOCK, : cols * BLOCK]
        return cut.reshape(rows, BLOCK, cols, BLOCK).sum(axis=(1, 3)).ravel()

    xx, yy, xy = block_sums(gx * gx), block_sums(gy * gy), block_sums(gx * gy)
    energy = xx + yy + 1e-12
    vote_cos, vote_sin = (xx - yy) / energy, 2 * xy / energy  # coherence · e^{2iθ}
    mean_cos, mean_sin = float(vote_cos.mean()), float(vote_sin.mean())
    agreement = math.hypot(mean_cos, mean_sin)
    if agreement <= 1e-9:
        return 0.0, 0.0
    coherence = np.hypot(vote_cos, vote_sin)
    aligned = (vote_cos * mean_cos + vote_sin * mean_sin) / agreement
    threshold = math.cos(math.radians(2 * STREAK_BAND))
    oriented = (coherence > 0.3) & (aligned >= threshold * coherence)
    return agreement, float(oriented.mean())


def _lag_correlation(residual: np.ndarray, angle: float, lag: int) -> float:
    """Correlation of the residual with itself shifted `lag` px along `angle`."""
    dx = round(lag * math.cos(math.radians(angle)))
    dy = -round(lag * math.sin(math.radians(angle)))
    height, width = residual.shape
    if abs(dx) >= width or abs(dy) >= height:
        return 0.0
    a = residual[max(0, dy) : height + min(0, dy), max(0, dx) : width + min(0, dx)]
    b = residual[max(0, -dy) : height + min(0, -dy), max(0, -dx) : width + min(0, -dx)]
    a, b = a - a.mean(), b - b.mean()
    norm = math.sqrt(float(np.sum(a * a)) * float(np.sum(b * b)))
    return float(np.sum(a * b)) / norm if norm > 1e-12 else 0.0


def _veil_features(lowest: np.ndarray, luma: np.ndarray) -> dict[str, float]:
    dark = min_filter(lowest, DARK_PATCH)
    # Atmospheric light: the mean luma of the 0.1 % pixels with the brightest dark channel.
    count = max(1, dark.size // 1000)
    brightest = np.argpartition(dark.ravel(), -count)[-count:]
    light = max(float(luma.ravel()[brightest].mean()), 1e-3)
    transmission = 1 - 0.95 * float(np.clip(dark / light, 0, 1).mean())
    third = dark.shape[0] // 3
    gradient = float(dark[:third].mean() - dark[-third:].mean())
    return {
        "dark_channel": float(dark.mean()),
        "transmission": transmission,
        "veil_gradient": gradient,
    }


def _saturation(rgb: np.ndarray, lowest: np.ndarray) -> float:
    high = np.maximum(np.maximum(rgb[..., 0], rgb[..., 1]), rgb[..., 2])
    return float(np.mean((high - lowest) / np.maximum(high, 1e-3)))


def _round(value: float) -> float:
    """Six significant digits: stored features are identical across BLAS builds."""
    return float(f"{value:.6g}")
