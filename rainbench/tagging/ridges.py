"""Thin bright lines, the way real rain shows: the Hessian's ridge measure at a fixed
scale, split by polarity (rain only adds light, so it makes bright ridges and no dark
ones), by orientation (rain falls nearly parallel) and into segments (rain is many
short lines spread over the picture; buildings and wires are few long ones).

Every threshold is relative to the picture's own ridge clutter, so exposure, gain,
noise and JPEG move the ridge strengths and the threshold together.
"""

import math

import numpy as np
from scipy import ndimage

# Orientations within ±BAND degrees of the dominant bright-ridge one count as "along".
BAND = 15.0
# A ridge pixel is significant when its strength exceeds this many times the picture's
# median ridge strength (its clutter: texture, noise, JPEG ringing) ...
CLUTTER_FACTOR = 4.0
# ... and this absolute floor (σ²-normalised curvature, luma in [0, 1]): 1.5/255 of
# contrast across a line of the filter's width, below which no eye sees a streak.
STRENGTH_FLOOR = 0.006
SHORTEST = 3  # px along: shorter significant runs are specks, not segments
GRID = 6  # the picture is cut into GRID × GRID cells for the spread of segments
DARK_LUMA = 0.3  # local mean luma below this: a dark background, where rain shows best


def ridge_features(luma: np.ndarray, sigma: float, prefix: str) -> dict[str, float]:
    """The ridge features of `luma` (float32 H×W in [0, 1]) at scale `sigma` px."""
    if min(luma.shape) < 3:  # a picture a pixel or two wide has no inside to measure
        luma = np.pad(luma, [(0, max(0, 3 - n)) for n in luma.shape], mode="edge")
    # The Hessian of the smoothed picture by central differences, σ²-normalised, on the
    # inside (one pixel in from each edge): one smoothing instead of three derivative
    # filters, and everything float32.
    smooth = ndimage.gaussian_filter(luma, sigma)
    scale = np.float32(sigma * sigma)
    twice_centre = smooth[1:-1, 1:-1] * 2
    # In place wherever a value is not needed again: the same operations in the same
    # order as written out, so the same float32 values, with half the passes over memory.
    xx = np.add(smooth[1:-1, 2:], smooth[1:-1, :-2])
    xx -= twice_centre
    xx *= scale
    yy = np.add(smooth[2:, 1:-1], smooth[:-2, 1:-1])
    yy -= twice_centre
    yy *= scale
    twice_xy = np.subtract(smooth[2:, 2:], smooth[2:, :-2])
    twice_xy -= smooth[:-2, 2:]
    twice_xy += smooth[:-2, :-2]
    twice_xy *= scale / 2
    trace = xx + yy
    diff = np.subtract(xx, yy, out=xx)
    # The eigenvalues are (trace ± spread) / 2. A bright ridge curves down steeply across
    # and not along (low ≪ 0, high ≈ 0), its strength −low − |high| = min(−trace,
    # spread); a dark ridge the other way, min(trace, spread); a blob curves both ways
    # and is neither.
    spread = np.hypot(diff, twice_xy)
    bright = np.negative(trace)
    np.minimum(bright, spread, out=bright)
    np.maximum(bright, 0, out=bright)
    dark = np.minimum(trace, spread, out=yy)
    np.maximum(dark, 0, out=dark)
    # The along-ridge direction as a doubled angle: (xx − yy, 2xy) points along the
    # high-curvature axis's normal for a bright ridge, and its opposite for a dark one.
    norm = np.maximum(spread, np.float32(1e-12))
    cos2 = np.divide(diff, norm, out=diff)
    sin2 = np.divide(twice_xy, norm, out=twice_xy)
    # Orientations weighted by squared strength, so a line's peak outweighs its flanks
    # and faint clutter (noise, texture) counts little beside a clear line.
    bright_weight, dark_weight = np.square(bright), np.square(dark, out=dark)
    product = norm  # scratch from here on
    bright_total = float(bright_weight.sum()) + 1e-12
    mean_cos = float(np.multiply(bright_weight, cos2, out=product).sum()) / bright_total
    mean_sin = float(np.multiply(bright_weight, sin2, out=product).sum()) / bright_total
    coherence = math.hypot(mean_cos, mean_sin)
    dark_total = float(dark_weight.sum()) + 1e-12
    dark_coherence = math.hypot(
        float(np.multiply(dark_weight, cos2, out=product).sum()) / dark_total,
        float(np.multiply(dark_weight, sin2, out=product).sum()) / dark_total,
    )
    if coherence > 1e-9:
        axis_cos, axis_sin = mean_cos / coherence, mean_sin / coherence
    else:
        axis_cos, axis_sin = -1.0, 0.0  # no preferred orientation: measure along vertical
    alignment = np.multiply(cos2, np.float32(axis_cos), out=product)
    alignment += np.multiply(sin2, np.float32(axis_sin), out=cos2)
    limit = np.float32(math.cos(math.radians(2 * BAND)))
    bright_along, dark_along = alignment >= limit, alignment <= -limit
    # A quarter of the pixels give the median to well within its spread across pictures.
    clutter = float(np.median(np.minimum(np.abs(trace[::2, ::2]), spread[::2, ::2])))
    threshold = max(CLUTTER_FACTOR * clutter, STRENGTH_FLOOR)
    mask = bright_along & (bright > threshold)
    segments = _segments(mask, axis_cos, axis_sin)
    area = mask.size
    background = ndimage.uniform_filter(luma, 4 * sigma + 1)[1:-1, 1:-1]
    on_dark_ground = background < DARK_LUMA
    dark_share = np.count_nonzero(on_dark_ground) / area
    ridges = np.count_nonzero(mask)
    on_dark = np.count_nonzero(on_dark_ground & mask) / ridges if ridges else dark_share
    return {
        # Squared, so a line's own peak outweighs the opposite-signed flanks the filter
        # gives it (each about 0.45 of the peak): a bright line reads bright.
        f"{prefix}_polarity": math.log(
            (float(bright_weight[bright_along].sum()) / area + 1e-8)
            / (float(dark_weight[dark_along].sum()) / area + 1e-8)
        ),
        f"{prefix}_coherence": coherence,
        f"{prefix}_excess": coherence - dark_coherence,
        f"{prefix}_density": float(mask.mean()),
        f"{prefix}_segments": len(segments.lengths) * 1e4 / area,
        f"{prefix}_length": float(np.median(segments.lengths)) if segments.lengths.size else 0.0,
        f"{prefix}_spread": segments.spread(mask.shape),
        f"{prefix}_on_dark": on_dark - dark_share,
        f"{prefix}_clutter": clutter,
    }


class _Segments:
    """Connected runs of significant along-ridge pixels (8-connected), each with its
    extent along the ridge axis and its centre."""

    def __init__(self, lengths: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> None:
        self.lengths, self.rows, self.cols = lengths, rows, cols

    def spread(self, shape: tuple[int, int]) -> float:
        """The share of GRID × GRID cells that hold a segment's centre."""
        if not self.lengths.size:
            return 0.0
        cell_rows = np.minimum((self.rows * GRID / shape[0]).astype(int), GRID - 1)
        cell_cols = np.minimum((self.cols * GRID / shape[1]).astype(int), GRID - 1)
        return len(np.unique(cell_rows * GRID + cell_cols)) / GRID**2


def _segments(mask: np.ndarray, axis_cos: float, axis_sin: float) -> _Segments:
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        empty = np.zeros(0)
        return _Segments(empty, empty, empty)
    rows, cols = np.nonzero(labels)
    ids = labels[rows, cols]
    # The along direction from the doubled angle: half of it, in image (row-down) axes.
    angle = 0.5 * math.atan2(axis_sin, axis_cos)
    along = cols * math.cos(angle) + rows * math.sin(angle)
    top = np.full(count + 1, -np.inf)
    bottom = np.full(count + 1, np.inf)
    np.maximum.at(top, ids, along)
    np.minimum.at(bottom, ids, along)
    lengths = (top - bottom + 1)[1:]
    pixels = np.bincount(ids, minlength=count + 1)[1:]
    centre_rows = np.bincount(ids, weights=rows, minlength=count + 1)[1:] / pixels
    centre_cols = np.bincount(ids, weights=cols, minlength=count + 1)[1:] / pixels
    keep = lengths >= SHORTEST
    return _Segments(lengths[keep], centre_rows[keep], centre_cols[keep])
