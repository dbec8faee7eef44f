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


def phash_variants(preview: Image.Image) -> list[int]:
    """The pHash of `preview` (index 0) and of its 7 other dihedral transforms."""
    grey = preview.convert("L").resize((_SIDE, _SIDE), Image.Resampling.BOX)
    pixels = np.asarray(grey, dtype=np.float64)
    variants = []
    for flipped in (pixels, pixels[:, ::-1]):
        for turns in range(4):
            variants.append(_hash(np.rot90(flipped, turns)))
    return variants


def _hash(pixels: np.ndarray) -> int:
    low = (_DCT @ pixels @ _DCT.T)[:_LOW, :_LOW].ravel()
    bits = low > np.median(low[1:])  # the DC term would dominate the median
    return int((bits.astype(np.uint64) * _WEIGHTS).sum(dtype=np.uint64))


def hamming(hashes: np.ndarray, query: int) -> np.ndarray:
    """Bit distances between each uint64 in `hashes` and `query`."""
    return np.bitwise_count(hashes ^ np.uint64(query))
