"""NLCL's generator (Ye et al., CVPR 2022): full resolution, fully convolutional and
residual, with the published background generator's layout; run whole or in tiles with
whole-image normalisation. The `nlcl` derainer runs it; `rainbench.train.nlcl` trains it.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# The location contrast's generator layers (indices into Generator.gen).
NCE_LAYERS = (0, 2, 4, 8, 12)


def to_model_range(x01: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1] → the networks' input range [-1, 1]."""
    return x01 * 2 - 1


def to_image_range(y: torch.Tensor) -> torch.Tensor:
    """A generator's output → pixels, [-1, 1] → [0, 1] (not clipped)."""
    return (y + 1) / 2


def _conv3(channels_in: int, channels_out: int) -> nn.Conv2d:
    return nn.Conv2d(channels_in, channels_out, kernel_size=3, padding=1, bias=True)


class ConvNorm(nn.Module):
    """conv 3×3 → InstanceNorm (no affine parameters) → ReLU when `relu`.

    The convolution is the only module with a state, under `.conv`, as in the
    published checkpoint.
    """

    def __init__(self, channels: int, relu: bool):
        super().__init__()
        self.conv = _conv3(channels, channels)
        self.norm = nn.InstanceNorm2d(channels)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.conv(x))
        return F.relu(y) if self.relu else y


class ResidualBlock(nn.Module):
    """x + [conv → IN → ReLU → conv → IN](x)."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(ConvNorm(channels, relu=True), ConvNorm(channels, relu=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.model(x)


class TailBlock(nn.Module):
    """conv → IN → ReLU → conv, not residual and without a final norm."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Sequential(
            _conv3(channels, channels),
            nn.InstanceNorm2d(channels),
            nn.ReLU(),
            _conv3(channels, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Generator(nn.Module):
    """NLCL's generator, at full resolution (no down-sampling, any H×W):

        gen.0            conv 3×3, 3 → channels
        gen.1 … gen.B    B residual blocks (ResidualBlock)
        gen.B+1          tail block (TailBlock)
        gen.B+2          conv 3×3, channels → 3, no output activation

    Inputs are in [-1, 1] (`to_model_range`); outputs map back with `to_image_range`.
    With the defaults (32 channels, 16 blocks) the state-dict keys are those of the
    published NLCL background generator: 72 tensors, 316,195 values.
    """

    def __init__(self, channels: int = 32, blocks: int = 16):
        super().__init__()
        self.gen = nn.Sequential(
            _conv3(3, channels),
            *(ResidualBlock(channels) for _ in range(blocks)),
            TailBlock(channels),
            _conv3(channels, 3),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gen(x)

    def features(self, x: torch.Tensor, layers: Sequence[int] = NCE_LAYERS) -> list[torch.Tensor]:
        """The outputs of gen[i] for each i in `layers`, in that order, from one pass
        that stops after the deepest of them."""
        if not layers or min(layers) < 0 or max(layers) >= len(self.gen):
            raise ValueError(f"layers {tuple(layers)} not all within 0…{len(self.gen) - 1}")
        wanted = set(layers)
        outputs = {}
        for index, layer in enumerate(self.gen[: max(layers) + 1]):
            x = layer(x)
            if index in wanted:
                outputs[index] = x
        return [outputs[index] for index in layers]


def generate_in_tiles(generator: Generator, x: torch.Tensor, tile: int) -> torch.Tensor:
    """`generator(x)` computed layer by layer with only tile×tile pieces on the
    generator's device: the whole-image activations stay where `x` is (host memory), each
    3×3 convolution runs tile by tile with a one-pixel halo, and every InstanceNorm uses
    the statistics of the whole image. So the result is the whole-image result, up to
    floating-point rounding, whatever the tile size (tiles that each normalise
    themselves would differ by a tone shift per tile)."""
    device = next(generator.parameters()).device

    def conv(layer: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        padded = F.pad(x, (1, 1, 1, 1))
        height, width = x.shape[-2:]
        out = torch.empty((x.shape[0], layer.out_channels, height, width), dtype=x.dtype)
        for top in range(0, height, tile):
            for left in range(0, width, tile):
                piece = padded[..., top : top + tile + 2, left : left + tile + 2].to(device)
                result = F.conv2d(piece, layer.weight, layer.bias)
                out[..., top : top + tile, left : left + tile] = result.to(x.device, x.dtype)
        return out

    def norm(x: torch.Tensor) -> torch.Tensor:
        return F.instance_norm(x, eps=1e-5)

    def conv_norm(block: ConvNorm, x: torch.Tensor) -> torch.Tensor:
        y = norm(conv(block.conv, x))
        return F.relu(y) if block.relu else y

    x = x.float()
    for layer in generator.gen:
        if isinstance(layer, nn.Conv2d):
            x = conv(layer, x)
        elif isinstance(layer, ResidualBlock):
            first, second = layer.model
            x = x + conv_norm(second, conv_norm(first, x))
        elif isinstance(layer, TailBlock):
            first, _, _, last = layer.conv
            x = conv(last, F.relu(norm(conv(first, x))))
        else:
            raise TypeError(f"no tiled form for {type(layer).__name__}")
    return x
