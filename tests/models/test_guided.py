"""`guided` removes rendered rain streaks from a natural photograph, takes achromatic
bright detail and leaves coloured detail, and does little harm to a clean image.

Measured on the 256×256 astronaut (PSNR-Y in dB, rainy → derained): streak seed 0
21.24 → 24.19, seed 1 21.61 → 24.40; drizzle 28.89 → 30.65 and 29.25 → 30.80;
multi-streak 19.83 → 21.93 and 20.68 → 23.02; the clean image itself comes out at
32.1 dB.
"""

import numpy as np
import pytest

from rainbench.metrics.fullref import psnr_y, ssim_y
from rainbench.models import create_derainer
from rainbench.models.guided import GuidedDerainer

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def derain(to_batch, to_image):
    derainer = create_derainer("guided")
    return lambda image: to_image(derainer.derain(to_batch(image)))


@pytest.mark.parametrize(
    ("recipe", "min_gain_db"), [("streak", 2.5), ("drizzle", 1.4), ("multi-streak", 1.8)]
)
@pytest.mark.parametrize("seed", [0, 1])
def test_psnr_against_the_clean_image_improves(clean, rainy, derain, recipe, min_gain_db, seed):
    rain = rainy(recipe, seed)
    derained = derain(rain)
    assert psnr_y(derained, clean) > psnr_y(rain, clean) + min_gain_db
    assert ssim_y(derained, clean) > ssim_y(rain, clean) + 0.05


def test_a_clean_image_comes_out_close_to_itself(clean, derain):
    assert psnr_y(derain(clean), clean) > 30


def test_the_rain_step_takes_achromatic_detail_and_leaves_coloured_detail():
    image = np.full((48, 48, 3), 0.4, np.float32)
    image[:, 12, :] += 0.1  # white: all three channels up alike, like rain
    image[:, 36, 0] += 0.1  # red only: scene detail
    # Without the refinement, which smooths all detail off L's edges, coloured or not.
    derained = GuidedDerainer(radius=3, refine_eps=None).derain_image(image)
    assert derained[:, 12].max() - 0.4 < 0.025  # 0.019 is left of 0.1
    assert np.allclose(derained[:, 36], image[:, 36], atol=1e-5)


def test_the_radius_follows_the_image_height_unless_given():
    image = np.random.default_rng(1).random((241, 50, 3), dtype=np.float32)
    assert np.array_equal(
        GuidedDerainer().derain_image(image), GuidedDerainer(radius=2).derain_image(image)
    )
    assert not np.array_equal(
        GuidedDerainer().derain_image(image), GuidedDerainer(radius=5).derain_image(image)
    )
