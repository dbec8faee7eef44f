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
    """PatchGAN with anti-aliased down-sampling, CUT's n_layers=3 discriminator layer
    for layer (4×4 kernels, padding 1, convs with bias, InstanceNorm without affine
    parameters, LeakyReLU 0.2; each stride-2 conv of pix2pix becomes a stride-1 conv
    followed by BlurDownsample), so its state dict is the public code's:

        model.0    conv 3 → 64,                  LeakyReLU (1),  BlurDownsample (2)
        model.3    conv 64 → 128,  InstanceNorm, LeakyReLU (5),  BlurDownsample (6)
        model.7    conv 128 → 256, InstanceNorm, LeakyReLU (9),  BlurDownsample (10)
        model.11   conv 256 → 512, InstanceNorm, LeakyReLU (13)
        model.14   conv 512 → 1: the patch logits

    An S×S input gives (S/8 − 2)² logits when S is a multiple of 8: 30×30 at 256.
    `features` returns the layer contrast's encoder levels where the public code taps
    them (its layers 0, 3, 7, 11): each conv's raw output, before InstanceNorm and
    down-sampling (S−1, S/2−1, S/4−1, S/8−1 pixels square; 64, 128, 256, 512 channels),
    except the first, which the public code's in-place LeakyReLU turns into its
    activation.
    """

    def __init__(self, base: int = 64, layers: int = 3):
        super().__init__()
        widths = [base * 2 ** min(n, 3) for n in range(layers + 1)]
        sequence = [_conv4(3, base), nn.LeakyReLU(0.2), BlurDownsample(base)]
        self.taps = [1]  # after the first LeakyReLU (see above)
        for index, (channels_in, channels_out) in enumerate(pairwise(widths)):
            self.taps.append(len(sequence))
            sequence += [_conv4(channels_in, channels_out), nn.InstanceNorm2d(channels_out),
                         nn.LeakyReLU(0.2)]  # fmt: skip
            if index < layers - 1:
                sequence.append(BlurDownsample(channels_out))
        sequence.append(_conv4(widths[-1], 1))
        self.model = nn.Sequential(*sequence)
        self.channels = tuple(widths)

    def features(self, x: torch.Tensor, count: int | None = None) -> list[torch.Tensor]:
        """The first `count` encoder levels (all of them when None), from one pass that
        stops at the last one."""
        taps = self.taps[:count]
        outputs = []
        for index, layer in enumerate(self.model[: taps[-1] + 1]):
            x = layer(x)
            if index in taps:
                outputs.append(x)
        return outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class ProjectionHead(nn.Module):
    """Linear in → dim, ReLU, linear dim → dim, then L2 normalisation: feature vectors
    (…, in_channels) → unit vectors (…, dim), or shorter while outputs are tiny."""

    def __init__(self, in_channels: int, dim: int = 256):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_channels, dim), nn.ReLU(), nn.Linear(dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.mlp(x)
        # The public code's normalisation (CUT's Normalize), eps added to the norm. With
        # the small initial weights below, outputs start 1e-8 (deep discriminator
        # levels) to 1e-3 long, so at first this eps leaves some vectors well short of
        # unit length, and the contrasts' logits smaller: as in the public code.
        return y / (y.norm(dim=-1, keepdim=True) + 1e-7)


def init_weights(module: nn.Module, gain: float = 0.02) -> nn.Module:
    """The public code's initialisation of the discriminator and heads (CUT's default,
    --init_type xavier --init_gain 0.02): conv and linear weights Xavier-normal scaled
    by `gain`, biases zero. (Its generators keep PyTorch's default initialisation.)
    Returns `module`, changed in place."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d | nn.Linear):
            nn.init.xavier_normal_(layer.weight, gain=gain)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return module
