"""The `cclgan` derainer in tiles: InstanceNorm with the whole image's statistics, so
tiles give the whole-image output at any size and tile, where tiles that each normalised
themselves would not."""

import pytest

torch = pytest.importorskip("torch")

from rainbench.models.cclgan import (  # noqa: E402 (needs torch)
    CCLGANDerainer,
    ResnetGenerator,
    translate_any_size,
    translate_in_tiles,
)


@pytest.fixture
def generator():
    torch.manual_seed(0)
    return ResnetGenerator(channels=8, blocks=2).eval()


@pytest.mark.parametrize(
    ("shape", "tile"),
    [((2, 3, 45, 70), 16), ((1, 3, 13, 50), 25), ((1, 3, 33, 9), 1), ((1, 3, 5, 7), 4)],
)
def test_tiles_with_whole_image_statistics_give_the_whole_image_output(generator, shape, tile):
    # Odd sides, sides no multiple of the network's stride of 4, a picture under 8 px.
    x = torch.rand(shape) * 2 - 1
    with torch.no_grad():
        whole = translate_any_size(generator, x)
        assert torch.allclose(translate_in_tiles(generator, x, tile), whole, atol=1e-5)


def test_the_derainer_in_tiles_gives_its_whole_image_output(generator):
    derainer = CCLGANDerainer.__new__(CCLGANDerainer)
    derainer.device, derainer.generator = "cpu", generator
    batch = torch.rand(1, 3, 70, 90)
    whole = derainer.derain(batch)
    # Overlapping tiles that each normalise themselves were 0.74 away here.
    assert (derainer.derain_in_tiles(batch, 32, 8) - whole).abs().max() < 1e-5
