"""NLCL's training networks: the anti-aliased PatchGAN discriminator that also serves
as the layer contrast's encoder, the projection heads of both contrasts, and the
initialisation. The generator is `rainbench.models.nlcl.generator`.
"""

from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn


def _conv4(channels_in: int, channels_out: int) -> nn.Conv2d:
    return nn.Conv2d(channels_in, channels_out, kernel_size=4, stride=1, padding=1, bias=True)


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
