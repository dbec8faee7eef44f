"""Full-reference metrics in the convention deraining papers publish: PSNR and SSIM on
the luma of MATLAB's `rgb2ycbcr` (`psnr_y`, `ssim_y`) and on RGB (`psnr`, `ssim`).
Every constant is pinned here, because the conventions differ by more than methods do.

Each takes an optional `mask` (bool H×W): a real pair's confident pixels. PSNR then
averages the squared error over the masked pixels only, SSIM the map's values whose
window is centred on one; without a mask, every pixel counts, as published.
"""

import math
from collections.abc import Callable

import numpy as np
from scipy.ndimage import correlate1d

from rainbench.metrics.registry import (
    MetricError,
    MetricSpec,
    check_image,
    register,
    size_mismatch,
)

PEAK = 255.0  # L: the dynamic range of uint8

# Wang et al. 2004, as in their ssim_index.m: fspecial('gaussian', 11, 1.5) applied with
# filter2(…, 'valid'), no down-sampling, no border crop.
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03

# SSIM is computed a band of rows at a time, about this many map values per band: each
# float64 temporary (16 MiB) stays under glibc's 32 MiB mmap threshold, so malloc reuses
# memory instead of faulting in fresh pages for every array. A 12 MP plane then takes
# 0.65 s every call, where the whole plane at once took 0.7–3 s and 1 GB more memory.
# The score does not depend on it.
SSIM_BAND_VALUES = 1 << 21

_C1 = (SSIM_K1 * PEAK) ** 2
_C2 = (SSIM_K2 * PEAK) ** 2
_RADIUS = SSIM_WINDOW // 2
# The 2-D window is the outer product of these taps; normalising each 1-D factor to
# sum 1 normalises the product too. fspecial's cut below eps·max never bites here.
_TAPS = np.exp(-(np.arange(-_RADIUS, _RADIUS + 1) ** 2) / (2 * SSIM_SIGMA**2))
_TAPS /= _TAPS.sum()

# MATLAB's Y weights 65.481, 128.553, 24.966 are exactly 219·(0.299, 0.587, 0.114), so
# Y = 16 + 219·(299R + 587G + 114B) / 255000 is a rational number we compute exactly.
_LUMA_WEIGHTS = np.array([299, 587, 114], dtype=np.int32)


def matlab_y(rgb: np.ndarray) -> np.ndarray:
    """The Y plane of MATLAB `rgb2ycbcr` on a uint8 H×W×3 RGB image, as uint8 in 16..235.

    MATLAB rounds to uint8 half away from zero. Ties do occur: 194 of the 2²⁴ colours
    (e.g. R, G, B = 2, 44, 141) give Y exactly 52.5, 125.5 or 198.5. Integer arithmetic
    rounds them exactly (up). Float arithmetic does not: numpy's half-to-even `round`
    takes 52.5 and 198.5 down, and evaluating 16 + (65.481·R + …) / 255 in float64 lands
    39 of the ties just below ½. MATLAB's own double arithmetic may do the same, so on
    those few colours it may give one level less than this.
    """
    check_image(rgb, "image")  # a float image would give a Y of its own
    # einsum casts in small buffers (`@` would copy the whole image to int32 first), and
    # the steps run in place: 48 MB for 12 MP.
    y = np.einsum("...c,c->...", rgb, _LUMA_WEIGHTS)  # 1000·(0.299R + 0.587G + 0.114B)
    y *= 219
    y += 127_500  # half of 255000: the floor division then rounds half up
    y //= 255_000
    y += 16
    return y.astype(np.uint8)


def psnr(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None) -> float:
    """20·log10(255 / RMSE) over every value of two equal-shaped uint8 arrays (the
    masked pixels' only, with a mask), in dB; `inf` when they are identical."""
    _check_pair(pred, ref)
    diff = np.subtract(pred, ref, dtype=np.int16)
    diff = (diff if mask is None else diff[_checked(mask, pred)]).ravel()
    mse = int(np.einsum("i,i->", diff, diff, dtype=np.int64)) / diff.size  # exact sum
    if mse == 0:
        return math.inf
    return 20 * math.log10(PEAK / math.sqrt(mse))


def ssim(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Wang et al.'s mean SSIM of two equal-shaped uint8 arrays, H×W or H×W×C (the mean
    of the channels' SSIM); both sides at least 11 px. With a mask, the mean of the
    map's values whose window is centred on a masked pixel."""
    _check_pair(pred, ref)
    if min(pred.shape[:2]) < SSIM_WINDOW:
        raise MetricError(
            f"SSIM needs images of at least {SSIM_WINDOW} px per side, got "
            f"{pred.shape[1]}×{pred.shape[0]}"
        )
    centres = None
    if mask is not None:
        centres = _checked(mask, pred)[_RADIUS:-_RADIUS, _RADIUS:-_RADIUS]
        if not centres.any():
            raise MetricError("no masked pixel lies 5 px or more inside the image")
    if pred.ndim == 2:
        return _ssim_plane(pred, ref, centres)
    planes = [_ssim_plane(pred[..., c], ref[..., c], centres) for c in range(pred.shape[2])]
    return float(np.mean(planes))


def psnr_y(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None) -> float:
    return psnr(matlab_y(pred), matlab_y(ref), mask)


def ssim_y(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None) -> float:
    return ssim(matlab_y(pred), matlab_y(ref), mask)


def _check_pair(pred: np.ndarray, ref: np.ndarray) -> None:
    """Refuse what has no value in the convention, also where these functions are called
    directly rather than through `create_metric` (a float or differently sized array
    would otherwise give a number)."""
    check_image(pred, "prediction", rgb=False)
    check_image(ref, "reference", rgb=False)
    mismatch = size_mismatch(pred, ref)
    if mismatch:
        raise MetricError(mismatch)
    if pred.size == 0:  # PSNR would divide by no values, SSIM average no channels (NaN)
        raise MetricError(f"the images hold no values (shape {pred.shape})")


def _checked(mask: np.ndarray, image: np.ndarray) -> np.ndarray:
    """`mask` as bool H×W, refused unless it matches the image and holds a pixel."""
    if mask.shape != image.shape[:2]:
        raise MetricError(f"mask {mask.shape} does not match the image {image.shape[:2]}")
    mask = mask.astype(bool, copy=False)
    if not mask.any():
        raise MetricError("the mask holds no pixel to score")
    return mask


def _ssim_plane(pred: np.ndarray, ref: np.ndarray, centres: np.ndarray | None = None) -> float:
    height = pred.shape[0] - 2 * _RADIUS
    width = pred.shape[1] - 2 * _RADIUS
    band = max(1, SSIM_BAND_VALUES // width)
    total = 0.0
    for top in range(0, height, band):
        rows = slice(top, min(top + band, height) + 2 * _RADIUS)  # with the windows' margin
        values = _ssim_map(pred[rows], ref[rows])
        total += values.sum() if centres is None else values[centres[top : top + band]].sum()
    return total / (height * width if centres is None else np.count_nonzero(centres))


def _ssim_map(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Wang's SSIM map of two planes: (H−10)×(W−10), one value per whole window."""
    x = pred.astype(np.float64)
    y = ref.astype(np.float64)
    mu_x = _window_mean(x)
    mu_y = _window_mean(y)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    var_x = _window_mean(x * x) - mu_xx
    var_y = _window_mean(y * y) - mu_yy
    cov = _window_mean(x * y) - mu_xy
    return ((2 * mu_xy + _C1) * (2 * cov + _C2)) / ((mu_xx + mu_yy + _C1) * (var_x + var_y + _C2))


def _window_mean(plane: np.ndarray) -> np.ndarray:
    """The Gaussian-weighted mean over every 11×11 window lying wholly inside `plane`:
    (H−10)×(W−10), like filter2(…, 'valid'). Separable: 22 taps a pixel, not 121; the
    border rows and columns, which would need padding, are filtered and then dropped."""
    rows = correlate1d(plane, _TAPS, axis=0)[_RADIUS:-_RADIUS]
    return correlate1d(rows, _TAPS, axis=1)[:, _RADIUS:-_RADIUS]


def _spec(
    name: str, description: str, score: Callable[..., float], min_side: int = 1
) -> MetricSpec:
    return MetricSpec(
        name=name,
        full_reference=True,
        lower_is_better=False,
        description=description,
        # Pure numpy: the engine's options (weights_dir, device, threads) do not apply.
        factory=lambda **_options: score,
        min_side=min_side,
    )


register(_spec("psnr_y", "PSNR (dB) on MATLAB rgb2ycbcr Y, 16..235, rounded", psnr_y))
register(_spec("ssim_y", "SSIM (Wang 2004, 11×11 σ 1.5, valid) on MATLAB Y", ssim_y, SSIM_WINDOW))
register(_spec("psnr", "PSNR (dB) over the R, G and B values", psnr))
register(_spec("ssim", "SSIM (Wang 2004) averaged over R, G and B", ssim, SSIM_WINDOW))
