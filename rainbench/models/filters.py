"""He et al.'s guided filter, built on `rainbench.windows.box_mean`, and the grey guide
the classical derainers steer it with. O(pixels) whatever the radius, on float arrays
H×W or H×W×C.
"""

import numpy as np

from rainbench.windows import box_mean


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
