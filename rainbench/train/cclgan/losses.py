"""CCLGAN's loss terms beside the shared location contrast: the hinge GAN losses and
the cycle contrast's ratio. Scalars, averaged over the batch."""

import torch
import torch.nn.functional as F
from torch import Tensor


def hinge_discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """mean(relu(1 − D(real))) + mean(relu(1 + D(fake)))."""
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def hinge_generator_loss(fake_logits: Tensor) -> Tensor:
    """−mean(D(fake))."""
    return -fake_logits.mean()


def cycle_ratio(
    anchor: list[Tensor],
    positive: list[Tensor],
    negative: list[Tensor],
    weak_negative: list[Tensor],
    weak: float = 0.1,
) -> Tensor:
    """The cycle contrast, mean over feature levels of

        d(a, p) / (d(a, n) + weak · d(a, w) + 1e-7),   d: mean absolute difference

    for a cycle reconstruction a, its original p, an image of the other domain n and
    the translated image w. Only the anchor gets gradients."""
    ratios = []
    for a, p, n, w in zip(anchor, positive, negative, weak_negative, strict=True):
        a = a.float()
        d_ap = (a - p.detach().float()).abs().mean()
        d_an = (a - n.detach().float()).abs().mean()
        d_aw = (a - w.detach().float()).abs().mean()
        ratios.append(d_ap / (d_an + weak * d_aw + 1e-7))
    return torch.stack(ratios).mean()
