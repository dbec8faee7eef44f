"""Window filters over images: the sum, mean or minimum over the window around each
pixel, separable and O(pixels). Two border rules, each kept for its callers' sake:

- the part of the window inside the image (`box_mean`, `min_filter`), so borders are
  neither darkened nor brightened: the classical derainers at full resolution;
- edges repeated (`box_sum`): the tagger's high-pass residual, whose values are stored
  in manifests and were calibrated against, so it keeps its rule and its arithmetic.

For a minimum the two rules are one: a repeated edge pixel already lies inside the
window, so the tagger's dark channel uses `min_filter` too.
"""

import numpy as np


def box_mean(image: np.ndarray, radius: int, out: np.ndarray | None = None) -> np.ndarray:
    """The mean over the (2r+1)² window around each pixel, per channel, taken over the
    part of the window inside the image, so borders are not darkened; float32, into
    `out` if given (which may be `image` itself)."""
    out = _box_mean_1d(image, radius, 0, out)
    # In place: ndimage copies each line into a buffer before writing it back.
    return _box_mean_1d(out, radius, 1, out)


def box_sum(values: np.ndarray, size: int) -> np.ndarray:
    """The sum over the size×size window centred on each pixel of an H×W array, edges
    repeated: one float32 addition per offset and axis (the same sums on every machine),
    and no scipy to import in every ingest worker."""
    half = size // 2
    rows = np.pad(values, ((half, half), (0, 0)), "edge")
    height = values.shape[0]
    out = rows[:height].copy()
    for offset in range(1, size):
        np.add(out, rows[offset : offset + height], out=out)
    columns = np.pad(out, ((0, 0), (half, half)), "edge")
    width = values.shape[1]
    out = columns[:, :width].copy()
    for offset in range(1, size):
        np.add(out, columns[:, offset : offset + width], out=out)
    return out


def min_filter(image: np.ndarray, size: int) -> np.ndarray:
    """The minimum over the size×size window around each pixel (the part of it inside
    the image), separable, in O(log size) passes of `np.minimum` over shifted slices."""
    return _min_filter_1d(_min_filter_1d(image, size, 0), size, 1)


def _box_mean_1d(image: np.ndarray, radius: int, axis: int, out: np.ndarray | None) -> np.ndarray:
    # scipy's running sum (double accumulators, float32 out) is one pass over the data;
    # differences of numpy cumsums took five times as long on 12 MP (float64
    # temporaries). Zeros outside, then each border window rescaled to its count.
    from scipy.ndimage import uniform_filter1d  # here: ingest workers measure without scipy

    size = 2 * radius + 1
    if out is None:
        out = np.empty(image.shape, np.float32)
    uniform_filter1d(image, size, axis=axis, output=out, mode="constant")
    index = np.arange(image.shape[axis])
    clipped = np.flatnonzero((index < radius) | (index >= index.size - radius))
    counts = np.minimum(clipped + radius + 1, index.size) - np.maximum(clipped - radius, 0)
    along = np.moveaxis(out, axis, 0)  # a view: the border rows are rescaled in place
    along[clipped] *= (size / counts).astype(np.float32).reshape(-1, *(1,) * (image.ndim - 1))
    return out


def _min_filter_1d(image: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Sparse-table minimum: after k doublings m[i] = min(x[i : i + 2^k]), and a window
    of `size` is the minimum of two such spans, one flush with each of its ends."""
    before = size // 2  # as scipy.ndimage centres even sizes
    pad = [(0, 0)] * image.ndim
    pad[axis] = (before, size - 1 - before)
    spans = np.pad(image, pad, constant_values=np.inf)  # outside never wins a minimum
    span = 1
    while span * 2 <= size:
        spans = np.minimum(_slice(spans, axis, 0, -span), _slice(spans, axis, span, None))
        span *= 2
    length = image.shape[axis]
    return np.minimum(
        _slice(spans, axis, 0, length), _slice(spans, axis, size - span, size - span + length)
    )


def _slice(array: np.ndarray, axis: int, start: int, stop: int | None) -> np.ndarray:
    index = [slice(None)] * array.ndim
    index[axis] = slice(start, stop)
    return array[tuple(index)]
