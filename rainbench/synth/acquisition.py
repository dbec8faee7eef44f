"""A randomised camera acquisition chain: the tone curve, resampling, sensor noise,
sharpening and JPEG round trip a real photo goes through after the scene (and its
rain) reached the lens. Applied alike to a rainy render and its ground truth.
"""

import io
import math
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageFilter

# Real captures are mostly JPEG; this share of drawn chains skips the round trip.
NO_JPEG_SHARE = 0.15
# Half of the drawn chains keep the full size, as phones and cameras mostly do.
FULL_SIZE_SHARE = 0.5

SIGNIFICANT_DIGITS = 4


@dataclass(frozen=True)
class Acquisition:
    """One camera chain; the neutral value of each step skips it."""

    scale: float  # down-scaling factor in (0, 1]; 1 = none
    quality: int | None  # JPEG quality 40–95; None = no JPEG round trip
    noise: float  # read-noise σ in [0, 1] units; shot noise adds σ²·signal of variance
    sharpen: float  # unsharp-mask amount (1 = 100 %) at a 1 px radius; 0 = none
    gamma: float  # tone curve exponent on [0, 1] values; 1 = none
    contrast: float  # S-curve strength around mid-grey; 0 = none

    def to_dict(self) -> dict:
        return asdict(self)


def draw_acquisition(rng: np.random.Generator) -> Acquisition:
    """A random, realistic chain: every parameter uniform in its range (gamma uniform in
    log, so brightening and darkening are alike), a fixed number of draws whatever the
    outcome, so later draws from `rng` never depend on it.
    """
    full_size, no_jpeg, *values = rng.uniform(size=8)
    low, high = math.log(0.8), math.log(1.25)
    return Acquisition(
        scale=1.0 if full_size < FULL_SIZE_SHARE else _round(0.25 + 0.75 * values[0]),
        quality=None if no_jpeg < NO_JPEG_SHARE else int(40 + round(55 * values[1])),
        noise=_round(0.03 * values[2]),
        sharpen=_round(1.5 * values[3]),
        gamma=_round(math.exp(low + (high - low) * values[4])),
        contrast=_round(0.3 * values[5]),
    )


def acquire(image: np.ndarray, acquisition: Acquisition, seed: int) -> np.ndarray:
    """`image` (uint8 H×W×3) through the chain: tone curve, down-scale, noise (drawn from
    `seed`), sharpening, JPEG round trip. uint8 h×w×3 out, smaller when scale < 1; the
    same arguments always give the same pixels.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 H×W×3, not {image.dtype} {image.shape}")
    if not 0 < acquisition.scale <= 1:
        raise ValueError(f"scale must be in (0, 1], not {acquisition.scale}")
    out = image
    if acquisition.gamma != 1 or acquisition.contrast:
        out = _tone_lut(acquisition.gamma, acquisition.contrast)[out]
    if acquisition.scale < 1:
        height, width = out.shape[:2]
        size = (max(1, round(width * acquisition.scale)), max(1, round(height * acquisition.scale)))
        # Lanczos with a box pre-reduction: area-like, as camera and web resizers do.
        out = np.asarray(
            Image.fromarray(out).resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)
        )
    if acquisition.noise:
        out = _add_noise(out, acquisition.noise, seed)
    if acquisition.sharpen:
        percent = round(100 * acquisition.sharpen)
        sharpened = Image.fromarray(out).filter(ImageFilter.UnsharpMask(1, percent, 0))
        out = np.asarray(sharpened)
    if acquisition.quality is not None:
        buffer = io.BytesIO()
        Image.fromarray(out).save(buffer, "JPEG", quality=acquisition.quality)
        out = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    return out.copy() if out is image else out


def _tone_lut(gamma: float, contrast: float) -> np.ndarray:
    """The 8-bit lookup table of x**gamma blended towards the smoothstep S-curve."""
    x = (np.arange(256) / 255) ** gamma
    x = x + contrast * (x * x * (3 - 2 * x) - x)
    return np.rint(np.clip(x, 0, 1) * 255).astype(np.uint8)


def _add_noise(image: np.ndarray, noise: float, seed: int) -> np.ndarray:
    """Gaussian noise of variance noise²·(1 + x): read noise plus shot noise. Per-level
    lookup tables keep a 12 MP image to a few passes over memory.
    """
    levels = np.arange(256, dtype=np.float32)
    spread = np.sqrt(levels / 255 + 1) * np.float32(255 * noise)
    values = np.random.default_rng(seed).standard_normal(image.shape, dtype=np.float32)
    values *= spread[image]
    values += (levels + np.float32(0.5))[image]  # + 0.5: truncation below rounds
    np.clip(values, 0, 255.5, out=values)
    return values.astype(np.uint8)


def _round(value: float) -> float:
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")
