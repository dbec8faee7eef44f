"""The built-in derainers, registered by name: `identity` (the rainy input, the floor
every method should beat), the classical `guided` and `dcp` (numpy, CPU), and `nlcl`
and `cclgan` (trained checkpoints).
"""

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rainbench.models.base import Derainer
from rainbench.models.dcp import DarkChannelDerainer
from rainbench.models.guided import GuidedDerainer
from rainbench.models.registry import DerainerError, DerainerSpec, register

if TYPE_CHECKING:
    import torch


class IdentityDerainer(Derainer):
    """Returns a copy of its input."""

    name = "identity"
    version = "1"

    def derain(self, batch: "torch.Tensor") -> "torch.Tensor":
        return batch.clone()


def _built_in(cls: type[Derainer]) -> Callable[..., Derainer]:
    """A factory for `cls`: no checkpoint, and only the options its constructor names."""
    accepted = [name for name in inspect.signature(cls).parameters if name != "device"]

    def factory(checkpoint: Path | None, device: str, **options) -> Derainer:
        if checkpoint is not None:
            raise DerainerError(f"{cls.name} takes no checkpoint: leave it out")
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            known = ", ".join(accepted) or "none"
            raise DerainerError(f"{cls.name} has no option {unknown[0]!r}; its options: {known}")
        return cls(device=device, **options)

    return factory


register(
    DerainerSpec(
        "identity",
        "the rainy input unchanged: the floor every method should beat",
        _built_in(IdentityDerainer),
    )
)
register(
    DerainerSpec(
        "guided",
        "classical: guided-filter split, bright achromatic detail removed (Zheng et al. 2013)",
        _built_in(GuidedDerainer),
    )
)
register(
    DerainerSpec(
        "dcp",
        "classical: dark channel prior dehazing, for veiling rain (He et al. 2009)",
        _built_in(DarkChannelDerainer),
    )
)


def _nlcl(checkpoint: Path | None, device: str, **options) -> Derainer:
    from rainbench.models.nlcl import NLCLDerainer  # imports torch

    if options:
        raise DerainerError(f"nlcl has no option {sorted(options)[0]!r}; it takes a checkpoint")
    return NLCLDerainer(checkpoint, device=device)


register(
    DerainerSpec(
        "nlcl",
        "NLCL (Ye et al. 2022): unsupervised, non-local contrastive; needs --checkpoint",
        _nlcl,
        needs_checkpoint=True,
    )
)


def _cclgan(checkpoint: Path | None, device: str, **options) -> Derainer:
    from rainbench.models.cclgan import CCLGANDerainer  # imports torch

    if options:
        raise DerainerError(f"cclgan has no option {sorted(options)[0]!r}; it takes a checkpoint")
    return CCLGANDerainer(checkpoint, device=device)


register(
    DerainerSpec(
        "cclgan",
        "CCLGAN (Zhao et al. 2024): unsupervised, cycle contrastive GAN; needs --checkpoint",
        _cclgan,
        needs_checkpoint=True,
    )
)
