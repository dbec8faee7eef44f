"""Derains images too large for a model's memory in overlapping tiles, blended with
weights that ramp linearly across each overlap, so no seam shows where tiles meet.

How close tiles come to the whole image depends on the derainer's reach: a pixel's
output may depend on pixels up to its support away, and a tile lacks those beyond its
border. The blending ramps such borders down to (almost) no weight. For `guided` (its
support is 4·radius: two guided filters of two box filters each) an overlap of at
least that keeps the difference within TILED_TOLERANCE.
"""

from typing import TYPE_CHECKING

from rainbench.models.base import Derainer
from rainbench.models.registry import DerainerError

if TYPE_CHECKING:
    import torch

# Tiles run through the derainer this many at a time.
TILE_BATCH = 8

# How far `guided` tiled may be from `guided` on the whole image, per value in [0, 1],
# with an overlap of 4·radius. Measured with radius 3 and overlap 12 on the 256×256
# astronaut with rain rendered on it: 0.0079 at most (2 levels of 255; mean 0.00015)
# in tiles of 96 on streak seed 0, as tests/models/test_tiling.py checks; 0.012 at
# most over the streak, drizzle and multi-streak recipes, seeds 0–2, tiles of 64 and
# 96. Twice that overlap halves it.
TILED_TOLERANCE = 0.02


def derain_tiled(
    derainer: Derainer, image: "torch.Tensor", tile: int, overlap: int
) -> "torch.Tensor":
    """`derainer` over `image` (N×3×H×W) in tile×tile tiles overlapping by `overlap` px.

    The last tile of a row or column is moved back to end at the image's border, so no
    tile is padded; an image no larger than a tile goes through in one call.
    """
    import torch

    if tile < 1 or not 0 <= overlap < tile:
        raise DerainerError(f"tiles need 0 ≤ overlap < tile, not tile {tile}, overlap {overlap}")
    height, width = image.shape[-2:]
    if height <= tile and width <= tile:
        return derainer.derain(image)
    rows, columns = _starts(height, tile, overlap), _starts(width, tile, overlap)
    tile_height, tile_width = min(tile, height), min(tile, width)
    row_weights = [_ramp(top, tile_height, height, overlap, image) for top in rows]
    column_weights = [_ramp(left, tile_width, width, overlap, image) for left in columns]
    total = torch.zeros(image.shape, dtype=torch.float32, device=image.device)
    weight_sum = torch.zeros((height, width), dtype=torch.float32, device=image.device)
    places = [
        (i, j, (..., slice(top, top + tile_height), slice(left, left + tile_width)))
        for i, top in enumerate(rows)
        for j, left in enumerate(columns)
    ]
    # Every tile of every image in the batch, TILE_BATCH at a time.
    per_batch = max(1, TILE_BATCH // image.shape[0])
    for first in range(0, len(places), per_batch):
        chunk = places[first : first + per_batch]
        tiles = torch.cat([image[window] for _, _, window in chunk])
        derained = derainer.derain(tiles).float().split(image.shape[0])
        for (i, j, window), out in zip(chunk, derained, strict=True):
            weight = row_weights[i][:, None] * column_weights[j][None, :]
            total[window] += out * weight
            weight_sum[window[1:]] += weight
    return (total / weight_sum).to(image.dtype)


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """Where tiles start along one side: every tile − overlap px, the last flush with
    the end."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, tile - overlap))
    return [*starts, length - tile]


def _ramp(start: int, size: int, length: int, overlap: int, like: "torch.Tensor") -> "torch.Tensor":
    """One side of a tile's trapezoid window: rising over the first `overlap` px and
    falling over the last, except at the image's border, where nothing else covers."""
    import torch

    weight = torch.ones(size, dtype=torch.float32, device=like.device)
    if overlap:
        # (k + 0.5) / overlap: never zero, so every pixel has some weight.
        rise = (torch.arange(overlap, dtype=torch.float32, device=like.device) + 0.5) / overlap
        if start > 0:
            weight[:overlap] = rise
        if start + size < length:
            weight[-overlap:] = torch.minimum(weight[-overlap:], rise.flip(0))
    return weight
