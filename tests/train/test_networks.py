"""NLCL's networks: the generator has the published checkpoint's layout and size, is
fully convolutional and residual, and computes the same in tiles; the discriminator's
stages and patch logits; unit projection heads; the initialisation and the range
helpers."""

import pytest
import torch

from rainbench.models.nlcl.generator import (
    Generator,
    generate_in_tiles,
    to_image_range,
    to_model_range,
)
from rainbench.train.nlcl.networks import (
    BlurDownsample,
    Discriminator,
    ProjectionHead,
    init_weights,
)


@pytest.fixture(scope="module")
def generator() -> Generator:
    torch.manual_seed(0)
    return init_weights(Generator()).eval()


def test_generator_has_the_published_layout_and_size(generator):
    state = generator.state_dict()
    blocks = [
        f"gen.{i}.model.{j}.conv.{name}"
        for i in range(1, 17)
        for j in (0, 1)
        for name in ("weight", "bias")
    ]
    tail = [f"gen.17.conv.{j}.{name}" for j in (0, 3) for name in ("weight", "bias")]
    expected = ["gen.0.weight", "gen.0.bias", *blocks, *tail, "gen.18.weight", "gen.18.bias"]
    assert list(state) == expected
    assert len(state) == 72
    assert sum(value.numel() for value in state.values()) == 316_195
    assert sum(p.numel() for p in generator.parameters()) == 316_195
    assert state["gen.0.weight"].shape == (32, 3, 3, 3)
    assert state["gen.18.weight"].shape == (3, 32, 3, 3)


def test_generator_is_fully_convolutional(generator):
    with torch.no_grad():
        assert generator(torch.rand(1, 3, 37, 53) * 2 - 1).shape == (1, 3, 37, 53)
        batch = torch.rand(2, 3, 20, 24) * 2 - 1
        together = generator(batch)
        assert together.shape == (2, 3, 20, 24)
        # Instance norm: each image of a batch is computed on its own.
        assert torch.allclose(together[1:], generator(batch[1:]), atol=1e-5)


def test_residual_blocks_add_their_input():
    block = Generator(channels=8, blocks=1).gen[1]
    second = block.model[1].conv
    torch.nn.init.zeros_(second.weight)
    torch.nn.init.zeros_(second.bias)
    x = torch.randn(1, 8, 9, 11)
    assert torch.equal(block(x), x)


@pytest.mark.parametrize("tile", [16, 25, 64])
def test_tiles_with_whole_image_statistics_give_the_whole_image_result(tile):
    torch.manual_seed(1)
    generator = init_weights(Generator(channels=8, blocks=3), gain=0.3).eval()
    x = torch.rand(2, 3, 45, 70) * 2 - 1
    with torch.no_grad():
        whole = generator(x)
        assert torch.allclose(generate_in_tiles(generator, x, tile), whole, atol=1e-4)
        # Tiles that each normalised themselves would not.
        alone = generator(x[..., :tile, :tile])
    assert (alone - whole[..., :tile, :tile]).abs().max() > 0.01


def test_features_are_the_layer_outputs_from_one_short_pass(generator):
    x = torch.rand(2, 3, 16, 18) * 2 - 1
    called = []
    hooks = [
        layer.register_forward_hook(lambda *_, i=i: called.append(i))
        for i, layer in enumerate(generator.gen)
    ]
    with torch.no_grad():
        features = generator.features(x)
        for hook in hooks:
            hook.remove()
        manual, y = [], x
        for index, layer in enumerate(generator.gen[:13]):
            y = layer(y)
            if index in (0, 2, 4, 8, 12):
                manual.append(y)
    assert called == list(range(13))
    assert [f.shape for f in features] == [(2, 32, 16, 18)] * 5
    assert all(torch.equal(f, m) for f, m in zip(features, manual, strict=True))
    with torch.no_grad():
        last, first = generator.features(x, (18, 0))
        assert torch.equal(last, generator(x))
        assert torch.equal(first, features[0])
    with pytest.raises(ValueError, match="layers"):
        generator.features(x, (0, 19))


def test_discriminator_stages_and_patch_logits():
    torch.manual_seed(0)
    discriminator = init_weights(Discriminator()).eval()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        stages = discriminator.features(x)
        logits = discriminator(x)
    assert [s.shape for s in stages] == [(2, 64, 32, 32), (2, 128, 16, 16), (2, 256, 8, 8)]
    assert logits.shape == (2, 1, 6, 6)
    with torch.no_grad():
        assert torch.equal(logits, discriminator.head(stages[-1]))
        assert discriminator(torch.rand(1, 3, 96, 96)).shape == (1, 1, 10, 10)
    # The blur is fixed: not a parameter, not in the state dict.
    assert not any("kernel" in key for key in discriminator.state_dict())
    assert sum(p.numel() for p in discriminator.parameters()) == (
        (3 * 16 + 1) * 64 + (64 * 16 + 1) * 128 + (128 * 16 + 1) * 256
        + (256 * 16 + 1) * 512 + (512 * 16 + 1)
    )  # fmt: skip


def test_blur_downsample_halves_and_keeps_a_flat_image_flat():
    blur = BlurDownsample(4)
    flat = torch.full((1, 4, 10, 7), 0.3)
    assert torch.allclose(blur(flat), torch.full((1, 4, 5, 4), 0.3))
    # A 16 at an even pixel lands on one output (centre tap 4/16); at an odd column it
    # splits between two (side taps 2/16).
    impulse = torch.zeros(1, 4, 9, 9)
    impulse[..., 4, 4] = 16
    expected = torch.zeros(1, 4, 5, 5)
    expected[..., 2, 2] = 4
    assert torch.equal(blur(impulse), expected)
    impulse = impulse.roll(1, dims=-1)
    expected = torch.zeros(1, 4, 5, 5)
    expected[..., 2, 2:4] = 2
    assert torch.equal(blur(impulse), expected)


def test_projection_head_gives_unit_vectors():
    torch.manual_seed(0)
    head = ProjectionHead(64)
    out = head(torch.randn(2, 10, 64))
    assert out.shape == (2, 10, 256)
    assert torch.allclose(out.norm(dim=-1), torch.ones(2, 10), atol=1e-5)
    assert [p.shape for p in head.parameters()] == [(256, 64), (256,), (256, 256), (256,)]


def test_init_weights_draws_small_normal_weights_and_zero_biases():
    torch.manual_seed(0)
    generator = init_weights(Generator(channels=32, blocks=2), gain=0.02)
    weights = torch.cat([p.flatten() for n, p in generator.named_parameters() if "weight" in n])
    biases = torch.cat([p.flatten() for n, p in generator.named_parameters() if "bias" in n])
    assert abs(weights.mean().item()) < 1e-3
    assert weights.std().item() == pytest.approx(0.02, rel=0.05)
    assert torch.equal(biases, torch.zeros_like(biases))


def test_range_helpers_are_inverse():
    x = torch.tensor([0.0, 0.25, 1.0])
    assert torch.equal(to_model_range(x), torch.tensor([-1.0, -0.5, 1.0]))
    assert torch.equal(to_image_range(to_model_range(x)), x)
