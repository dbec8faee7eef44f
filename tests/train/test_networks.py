"""NLCL's networks: the generator has the published checkpoint's layout and size, is
fully convolutional and residual, and computes the same in tiles; the discriminator's
encoder levels, patch logits and public state-dict keys; unit projection heads with
the public code's eps; the public code's initialisation and the range helpers."""

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


def test_discriminator_levels_and_patch_logits():
    torch.manual_seed(0)
    discriminator = init_weights(Discriminator()).eval()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        levels = discriminator.features(x)
        logits = discriminator(x)
        # Where the public code taps them: the first conv after its LeakyReLU, the
        # others' raw conv outputs, before InstanceNorm and down-sampling.
        layers = discriminator.model
        assert torch.equal(levels[0], layers[1](layers[0](x)))
        assert torch.equal(levels[1], layers[:4](x))
        assert torch.equal(levels[3], layers[:12](x))
        assert [f.shape for f in discriminator.features(x, 2)] == [f.shape for f in levels[:2]]
    assert [f.shape for f in levels] == [
        (2, 64, 63, 63), (2, 128, 31, 31), (2, 256, 15, 15), (2, 512, 7, 7)
    ]  # fmt: skip
    assert discriminator.channels == (64, 128, 256, 512)
    assert logits.shape == (2, 1, 6, 6)
    with torch.no_grad():
        assert discriminator(torch.rand(1, 3, 96, 96)).shape == (1, 1, 10, 10)
    # The public code's state-dict keys; the blur is fixed: not a parameter, not saved.
    assert list(discriminator.state_dict()) == [
        f"model.{i}.{name}" for i in (0, 3, 7, 11, 14) for name in ("weight", "bias")
    ]
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
    # The public code's eps, added to the norm: a short output stays a little short.
    tiny = init_weights(ProjectionHead(3))(torch.rand(5, 3, dtype=torch.float32))
    norms = tiny.norm(dim=-1)
    assert (norms < 1 - 1e-5).all() and (norms > 0.99).all()


def test_init_weights_is_xavier_normal_with_gain_and_zero_biases():
    torch.manual_seed(0)
    discriminator = init_weights(Discriminator())
    for index in (0, 3, 7, 11, 14):
        conv = discriminator.model[index]
        fan_in = conv.in_channels * 16
        fan_out = conv.out_channels * 16
        expected = 0.02 * (2 / (fan_in + fan_out)) ** 0.5
        assert conv.weight.std().item() == pytest.approx(expected, rel=0.1)
        assert torch.equal(conv.bias, torch.zeros_like(conv.bias))
    head = init_weights(ProjectionHead(64)).mlp[2]
    assert head.weight.std().item() == pytest.approx(0.02 * (2 / 512) ** 0.5, rel=0.05)


def test_range_helpers_are_inverse():
    x = torch.tensor([0.0, 0.25, 1.0])
    assert torch.equal(to_model_range(x), torch.tensor([-1.0, -0.5, 1.0]))
    assert torch.equal(to_image_range(to_model_range(x)), x)
