"""Orientation-normalised perceptual hashes for near-duplicate detection.

A 64-bit DCT hash (pHash) of the upright preview, plus the hashes of its seven
other rotations and mirrorings: the same picture re-encoded, resized or stored
rotated lands within a few bits of one of them.
"""

import numpy as np
from PIL import Image

from rainbench.capture.orientation import STEPS, turn_array

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


def _dihedral(pixels: np.ndarray) -> list[np.ndarray]:
    """The 8 variants of `pixels`: mirrored or not, then 0–3 quarter turns anticlockwise."""
    return [np.rot90(flipped, turns) for flipped in (pixels, pixels[:, ::-1]) for turns in range(4)]


def _upright_variants() -> dict[int, int]:
    """Which variant is the picture made upright by each EXIF orientation."""
    probe = np.arange(6).reshape(2, 3)
    variants = _dihedral(probe)
    return {
        orientation: next(
            i for i, v in enumerate(variants) if np.array_equal(v, turn_array(probe, orientation))
        )
        for orientation in STEPS
    }


_UPRIGHT_VARIANT = _upright_variants()


def phash_variants(image: Image.Image, orientation: int = 1) -> list[int]:
    """The pHash of the upright picture (index 0) and of its 7 other dihedral transforms.

    `image` is as stored and `orientation` the EXIF orientation that makes it upright:
    hashing all eight transforms anyway, the upright one is picked rather than the
    image being turned first.
    """
    grey = image.convert("L").resize((_SIDE, _SIDE), Image.Resampling.BOX)
    pixels = np.asarray(grey, dtype=np.float64)
    variants = [_hash(variant) for variant in _dihedral(pixels)]
    upright = variants.pop(_UPRIGHT_VARIANT.get(orientation, 0))
    return [upright, *variants]


def _hash(pixels: np.ndarray) -> int:
    low = (_DCT @ pixels @ _DCT.T)[:_LOW, :_LOW].ravel()
    bits = low > np.median(low[1:])  # the DC term would dominate the median
    return int((bits.astype(np.uint64) * _WEIGHTS).sum(dtype=np.uint64))


def hamming(hashes: np.ndarray, query: int) -> np.ndarray:
    """Bit distances between each uint64 in `hashes` and `query`."""
    return np.bitwise_count(hashes ^ np.uint64(query))
