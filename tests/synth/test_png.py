import io

import numpy as np
import pytest
from PIL import Image

from rainbench.synth.png import encode_png


@pytest.mark.parametrize("shape", [(37, 53, 3), (37, 53), (1, 1, 3)])
def test_round_trip_is_exact_and_deterministic(shape):
    pixels = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    data = encode_png(pixels)
    assert data == encode_png(pixels.copy())
    with Image.open(io.BytesIO(data)) as image:
        assert np.array_equal(np.asarray(image), pixels)


def test_refuses_other_arrays():
    with pytest.raises(ValueError):
        encode_png(np.zeros((4, 4, 4), dtype=np.uint8))
    with pytest.raises(ValueError):
        encode_png(np.zeros((4, 4), dtype=np.float32))
