"""NLCL's networks: the full-resolution generator (one for the background, one for the
rain layer), the anti-aliased PatchGAN discriminator that also serves as the layer
contrast's encoder, and the projection heads of both contrasts.
"""

from collections.abc import Sequence
from itertools import pairwise

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


def _conv4(channels_in: int, channels_out: int) -> nn.Conv2d:
    return nn.Conv2d(channels_in, channels_out, kernel_size=4, stride=1, padding=1, bias=True)


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


class BlurDownsample(nn.Module):
    """Anti-aliased stride-2 subsampling (Zhang, ICML 2019): a fixed depthwise
    [1,2,1]⊗[1,2,1]/16 blur over reflect padding, evaluated at every second pixel."""

    def __init__(self, channels: int):
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0])
        kernel = torch.outer(taps, taps) / 16
        # Fixed, so kept out of the state dict; it still follows .to(device, dtype).
        self.register_buffer("kernel", kernel.expand(channels, 1, 3, 3).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
        return F.conv2d(padded, self.kernel, stride=2, groups=x.shape[1])


class Discriminator(nn.Module):
    """PatchGAN with anti-aliased down-sampling, as CUT's n_layers=3 discriminator
    (4×4 kernels, padding 1, convs with bias, InstanceNorm without affine parameters,
    LeakyReLU 0.2). Each stride-2 conv of pix2pix becomes a stride-1 conv followed
    by BlurDownsample:

        stages.0   conv 3 → 64,                 LeakyReLU, BlurDownsample
        stages.1   conv 64 → 128,  InstanceNorm, LeakyReLU, BlurDownsample
        stages.2   conv 128 → 256, InstanceNorm, LeakyReLU, BlurDownsample
        head       conv 256 → 512, InstanceNorm, LeakyReLU (stride 1)
                   conv 512 → 1: the patch logits

    An S×S input (S a multiple of 8) gives stages of side S/2, S/4 and S/8 and
    (S/8 − 2)² logits: 30×30 at 256. `features` returns the three stage outputs (64,
    128, 256 channels): the layer contrast's encoder levels after the image itself.
    """

    def __init__(self, base: int = 64, layers: int = 3):
        super().__init__()
        widths = [base * 2 ** min(n, 3) for n in range(layers)]
        stages = [nn.Sequential(_conv4(3, base), nn.LeakyReLU(0.2), BlurDownsample(base))]
        for channels_in, channels_out in pairwise(widths):
            stages.append(
                nn.Sequential(
                    _conv4(channels_in, channels_out),
                    nn.InstanceNorm2d(channels_out),
                    nn.LeakyReLU(0.2),
                    BlurDownsample(channels_out),
                )
            )
        self.stages = nn.ModuleList(stages)
        widest = base * 2 ** min(layers, 3)
        self.head = nn.Sequential(
            _conv4(widths[-1], widest),
            nn.InstanceNorm2d(widest),
            nn.LeakyReLU(0.2),
            _conv4(widest, 1),
        )

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)[-1])


class ProjectionHead(nn.Module):
    """Linear in → dim, ReLU, linear dim → dim, then L2 normalisation: feature vectors
    (…, in_channels) → unit vectors (…, dim)."""

    def __init__(self, in_channels: int, dim: int = 256):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_channels, dim), nn.ReLU(), nn.Linear(dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.mlp(x), dim=-1)


def init_weights(module: nn.Module, gain: float = 0.02) -> nn.Module:
    """CUT's "normal" initialisation: conv and linear weights from N(0, gain²), biases
    zero. Returns `module`, changed in place."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d | nn.Linear):
            nn.init.normal_(layer.weight, 0.0, gain)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return module


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
