"""The filters the classical derainers are built from: a box mean by running sums,
He et al.'s guided filter on top of it, and a separable minimum filter. Each is
O(pixels) whatever the radius, on float arrays H×W or H×W×C.
"""

import numpy as np
from scipy.ndimage import uniform_filter1d


def box_mean(image: np.ndarray, radius: int, out: np.ndarray | None = None) -> np.ndarray:
    """The mean over the (2r+1)² window around each pixel, per channel, taken over the
    part of the window inside the image, so borders are not darkened; float32, into
    `out` if given (which may be `image` itself)."""
    out = _box_mean_1d(image, radius, 0, out)
    # In place: ndimage copies each line into a buffer before writing it back.
    return _box_mean_1d(out, radius, 1, out)


def guided_filter(guide: np.ndarray, source: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He, Sun and Tang's guided filter (ECCV 2010) of `source` steered by `guide`,
    channel by channel: an H×W guide steers every channel of `source`, an H×W×C guide
    the matching channel. Windows whose guide varies less than `eps` are smoothed,
    edges stronger than that are kept. float32 out.

    The steps run in place where they can: on 12 MP each fresh float32 array is 144 MB,
    and faulting its pages in takes longer than the arithmetic on it.
    """
    if guide.ndim < source.ndim:
        guide = guide[..., None]
    mean_guide = box_mean(guide, radius)
    variance = np.square(guide)
    box_mean(variance, radius, out=variance)
    variance -= np.square(mean_guide)
    if source is guide:
        mean_source, a = mean_guide, variance.copy()
    else:
        mean_source = box_mean(source, radius)
        a = np.multiply(guide, source)
        box_mean(a, radius, out=a)
        a -= mean_guide * mean_source  # the covariance of guide and source
    variance += np.float32(eps)
    a /= variance
    del variance
    b = np.multiply(a, mean_guide)
    np.subtract(mean_source, b, out=b)
    del mean_guide, mean_source
    box_mean(a, radius, out=a)
    a *= guide
    a += box_mean(b, radius, out=b)
    return a


def luma(image: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of a float H×W×3 RGB image, H×W: the grey guide."""
    grey = image[..., 0] * np.float32(0.299)
    grey += image[..., 1] * np.float32(0.587)
    grey += image[..., 2] * np.float32(0.114)
    return grey


def min_filter(image: np.ndarray, size: int) -> np.ndarray:
    """The minimum over the size×size window around each pixel (the part of it inside
    the image), separable, in O(log size) passes of `np.minimum` over shifted slices."""
    return _min_filter_1d(_min_filter_1d(image, size, 0), size, 1)


def _box_mean_1d(image: np.ndarray, radius: int, axis: int, out: np.ndarray | None) -> np.ndarray:
    # scipy's running sum (double accumulators, float32 out) is one pass over the data;
    # differences of numpy cumsums took five times as long on 12 MP (float64
    # temporaries). Zeros outside, then each border window rescaled to its count.
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
