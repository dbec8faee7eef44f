"""Orientation-normalised perceptual hashes for near-duplicate detection.

A 64-bit DCT hash (pHash) of the upright preview, plus the hashes of its seven
other rotations and mirrorings: the same picture re-encoded, resized or stored
rotated lands within a few bits of one of them.
"""

import numpy as np
from PIL import Image

_SIDE = 32  # the thumbnail the DCT runs on
_LOW = 8  # the low-frequency block that makes the 64 bits


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    matrix = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2 / n)
    matrix[0] /= np.sqrt(2)
    return matrix


_DCT = _dct_matrix(_SIDE)
_WEIGHTS = (1 << np.arange(63, -1, -1, dtype=np.uint64)).astype(np.uint64)


# Which of the 8 variants below (flip, then quarter turns anticlockwise) is the
# picture made upright by each EXIF orientation.
_UPRIGHT_VARIANT = {1: 0, 2: 4, 3: 2, 4: 6, 5: 5, 6: 3, 7: 7, 8: 1}


def phash_variants(image: Image.Image, orientation: int = 1) -> list[int]:
    """The pHash of the upright picture (index 0) and of its 7 other dihedral transforms.

    `image` is as stored and `orientation` the EXIF orientation that makes it upright:
    hashing all eight transforms anyway, the upright one is picked rather than the
    image being turned first.
    """
    grey = image.convert("L").resize((_SIDE, _SIDE), Image.Resampling.BOX)
    pixels = np.asarray(grey, dtype=np.float64)
    variants = [
        _hash(np.rot90(flipped, turns))
        for flipped in (pixels, pixels[:, ::-1])
        for turns in range(4)
    ]
    upright = variants.pop(_UPRIGHT_VARIANT.get(orientation, 0))
    return [upright, *variants]


def _hash(pixels: np.ndarray) -> int:
    low = (_DCT @ pixels @ _DCT.T)[:_LOW, :_LOW].ravel()
    bits = low > np.median(low[1:])  # the DC term would dominate the median
    return int((bits.astype(np.uint64) * _WEIGHTS).sum(dtype=np.uint64))


def hamming(hashes: np.ndarray, query: int) -> np.ndarray:
    """Bit distances between each uint64 in `hashes` and `query`."""
    return np.bitwise_count(hashes ^ np.uint64(query))
