"""The one orientation table: Pillow's transposes, array steps, the inverse that stores
an upright picture, and sizes all agree, and match EXIF's definitions."""

import numpy as np
import pytest
from PIL import Image

from rainbench.capture.orientation import (
    STEPS,
    orientation_of,
    swaps_axes,
    turn_array,
    turn_stored,
    turn_upright,
    upright_size,
)

# EXIF's own description: where the stored picture's first row and first column go.
PILLOW = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@pytest.mark.parametrize("orientation", sorted(STEPS))
def test_every_form_of_a_turn_agrees(orientation):
    stored = np.arange(4 * 7 * 3, dtype=np.uint8).reshape(4, 7, 3)
    image = Image.fromarray(stored)
    upright = turn_upright(image, orientation)
    expected = image.transpose(PILLOW[orientation]) if orientation in PILLOW else image
    assert np.array_equal(np.asarray(upright), np.asarray(expected))
    assert np.array_equal(np.asarray(upright), turn_array(stored, orientation))
    assert upright.size == upright_size(*image.size, orientation)
    assert swaps_axes(orientation) == (orientation >= 5)
    assert np.array_equal(np.asarray(turn_stored(upright, orientation)), stored)
    assert orientation_of(*STEPS[orientation]) == orientation


@pytest.mark.parametrize("orientation", [None, 0, 9])
def test_an_unknown_orientation_leaves_the_picture(orientation):
    image = Image.new("RGB", (5, 3))
    assert turn_upright(image, orientation) is image and turn_stored(image, orientation) is image
    assert upright_size(5, 3, orientation) == (5, 3) and not swaps_axes(orientation)
