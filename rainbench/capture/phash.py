"""Orientation-normalised perceptual hashes for near-duplicate detection.

A 64-bit DCT hash (pHash) of the upright preview, plus the hashes of its seven
other rotations and mirrorings: the same picture re-encoded, resized or stored
rotated lands within a few bits of one of them.
"""

import itertools
import math

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


# Multi-index hashing (Norouzi, Punjani and Fleet, CVPR 2012): the 64 bits are cut into
# three parts, and two hashes within b bits differ by at most b // 3 bits in one part at
# least, so only the hashes whose part lies that near one of the query's are compared.
# Parts of 21–22 bits hold a million hashes about one to a value.
_PARTS = ((42, 22), (21, 21), (0, 21))  # (shift, width)
# Beyond this many lookups a query (a max_bits of 12 or more), every hash is compared.
_MOST_PROBES = 6000
# Comparing every hash is cheaper below about 10 000 hashes plus 60 for each part value a
# hash looks up (a lookup reads memory at random, comparisons stream it): about 53 000
# hashes at the default max_bits of 8 (`benchmarks/near_duplicates.py` times both ways).
_COMPARED_FOR_NOTHING, _COMPARED_PER_PROBE = 10_000, 60


class HashIndex:
    """Hashes searched for the nearest to a query within `max_bits`, at a cost that does
    not grow with their number (as long as they spread over the parts' values; where they
    do not, as many as comparing them all).

    The result is always the one comparing every hash gives; the index only leaves out
    hashes that cannot be within `max_bits`.
    """

    def __init__(self, hashes: np.ndarray, max_bits: int, compare_all_below: int | None = None):
        self._hashes = hashes
        self._max_bits = max_bits
        radius = max_bits // len(_PARTS)
        probes = sum(math.comb(width, bits) for _, width in _PARTS for bits in range(radius + 1))
        if compare_all_below is None:
            compare_all_below = _COMPARED_FOR_NOTHING + _COMPARED_PER_PROBE * probes
        self._compare_all_below = compare_all_below
        self._parts = []
        if probes <= _MOST_PROBES and len(hashes) >= compare_all_below:
            for shift, width in _PARTS:
                values = _part(hashes, shift, width)
                order = np.argsort(values, kind="stable")
                # Where each value's hashes start in `order`, and end at the next's start.
                starts = np.zeros((1 << width) + 1, dtype=np.int32)
                np.cumsum(np.bincount(values, minlength=1 << width), out=starts[1:])
                self._parts.append((shift, width, starts, order, _flips(width, radius)))

    def nearest(self, queries: list[int], before: int) -> tuple[int, int] | None:
        """(distance, index) of the nearest of the first `before` hashes to any of
        `queries`, if within `max_bits`: the smallest distance, then the earliest query,
        then the earliest hash — as comparing each query with every hash in turn finds."""
        query = np.array(queries, dtype=np.uint64)
        found = self._candidates(query, before)
        if found is None:
            return self._compare_all(query, before)
        indices, which = found
        distances = np.bitwise_count(self._hashes[indices] ^ query[which])
        near = distances <= self._max_bits
        if not near.any():
            return None
        indices, which, distances = indices[near], which[near], distances[near]
        best = np.lexsort((indices, which, distances))[0]
        return int(distances[best]), int(indices[best])

    def _candidates(self, query: np.ndarray, before: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The hashes (among the first `before`) that a part files near the query's, and
        which query found each; None where comparing every hash costs no more."""
        if not self._parts or before < self._compare_all_below:
            return None
        indices, which, total = [], [], 0
        for shift, width, starts, order, flips in self._parts:
            probes = (_part(query, shift, width)[:, None] ^ flips).ravel()
            low = starts[probes]
            sizes = starts[probes + np.uint64(1)] - low
            found = int(sizes.sum())
            total += found
            if total > before * len(query):
                return None  # the hashes crowd a few values of the parts
            offsets = np.repeat(low - (np.cumsum(sizes) - sizes), sizes)
            indices.append(order[offsets + np.arange(found)])
            which.append(np.repeat(np.arange(probes.size) // flips.size, sizes))
        indices, which = np.concatenate(indices), np.concatenate(which)
        earlier = indices < before
        return indices[earlier], which[earlier]

    def _compare_all(self, query: np.ndarray, before: int) -> tuple[int, int] | None:
        best = None
        if before:
            for value in query:
                distances = hamming(self._hashes[:before], int(value))
                index = int(distances.argmin())
                if distances[index] <= self._max_bits and (
                    best is None or distances[index] < best[0]
                ):
                    best = (int(distances[index]), index)
        return best


def _part(hashes: np.ndarray, shift: int, width: int) -> np.ndarray:
    return (hashes >> np.uint64(shift)) & np.uint64((1 << width) - 1)


def _flips(width: int, radius: int) -> np.ndarray:
    """Every value of `width` bits with at most `radius` bits set: what a part's value
    is XORed with to reach the values within `radius` bits of it."""
    flips = [0]
    for bits in range(1, radius + 1):
        for chosen in itertools.combinations(range(width), bits):
            flips.append(sum(1 << bit for bit in chosen))
    return np.array(flips, dtype=np.uint64)
