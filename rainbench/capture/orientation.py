"""EXIF orientation (tag 0x0112): how a picture, stored as the sensor saw it, turns
upright. `STEPS` is the one table of the eight orientations; every other form of a turn
(Pillow's transpose, steps on an array or a tensor, a RAW's flip code, a crop's stored
corner, the pHash variant of the upright picture) is derived from it.
"""

import numpy as np
from PIL import Image

ORIENTATION_TAG = 0x0112

# EXIF orientation → the turn that makes the stored picture upright, as steps on its
# pixel array: rows and columns swapped, then the rows reversed (top ↔ bottom), then
# the columns reversed (left ↔ right).
#       swap   flip rows  flip columns
STEPS = {
    1: (False, False, False),
    2: (False, False, True),
    3: (False, True, True),
    4: (False, True, False),
    5: (True, False, False),
    6: (True, False, True),
    7: (True, True, True),
    8: (True, True, False),
}


def swaps_axes(orientation: int | None) -> bool:
    """Whether turning upright swaps width and height (orientations 5–8)."""
    return orientation in STEPS and STEPS[orientation][0]


def upright_size(width: int, height: int, orientation: int | None) -> tuple[int, int]:
    """The stored `width` × `height` once EXIF orientation is applied."""
    return (height, width) if swaps_axes(orientation) else (width, height)


def turn_array(array: np.ndarray, orientation: int | None) -> np.ndarray:
    """`array` (H×W or H×W×C, as stored) turned upright by `orientation`: a view."""
    swap, flip_rows, flip_columns = STEPS.get(orientation, STEPS[1])
    if swap:
        array = array.swapaxes(0, 1)
    if flip_rows:
        array = array[::-1]
    if flip_columns:
        array = array[:, ::-1]
    return array


def orientation_of(swap: bool, flip_rows: bool, flip_columns: bool) -> int:
    """The EXIF orientation whose steps these are."""
    return next(key for key, steps in STEPS.items() if steps == (swap, flip_rows, flip_columns))


def _pillow_transposes() -> tuple[dict, dict]:
    """Each orientation's single Pillow transpose that turns a stored picture upright,
    and the one that stores an upright picture; found by trying Pillow's seven on a
    small probe, so they cannot disagree with STEPS."""
    probe = np.arange(6, dtype=np.uint8).reshape(2, 3)
    moved = {op: np.asarray(Image.fromarray(probe).transpose(op)) for op in Image.Transpose}
    upright, store = {}, {}
    for orientation in STEPS:
        turned = turn_array(probe, orientation)
        for op, result in moved.items():
            if np.array_equal(result, turned):
                upright[orientation] = op
            if np.array_equal(turn_array(result, orientation), probe):
                store[orientation] = op
    return upright, store


_UPRIGHT, _STORE = _pillow_transposes()


def turn_upright(image: Image.Image, orientation: int | None) -> Image.Image:
    """`image` turned by EXIF `orientation` (1–8), as a camera meant it to be seen."""
    if orientation in _UPRIGHT:
        return image.transpose(_UPRIGHT[orientation])
    return image


def turn_stored(upright: Image.Image, orientation: int | None) -> Image.Image:
    """The inverse: how to store `upright` so that applying `orientation` shows it upright."""
    if orientation in _STORE:
        return upright.transpose(_STORE[orientation])
    return upright
