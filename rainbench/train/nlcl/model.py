"""NLCL as one module: the background and rain generators, the discriminator, and the
projection heads of the two contrasts; and one training step's loss terms
(`NLCLModel.discriminator_loss`, `.generator_losses`; docs/nlcl.md has the formulas).
"""

from dataclasses import dataclass

import torch
from torch import nn

from rainbench.models.nlcl.generator import Generator
from rainbench.train.core.contrast import PrototypeMemory, location_contrast
from rainbench.train.nlcl.config import NLCLConfig
from rainbench.train.nlcl.losses import consistency_loss, layer_contrast, lsgan_loss, sparsity_loss
from rainbench.train.nlcl.networks import Discriminator, ProjectionHead, init_weights
from rainbench.train.nlcl.sampling import gather, similar_centres


@dataclass(frozen=True)
class Centres:
    """Where one generator step's contrasts look, N×K×2 (row, column) in image
    coordinates: the layer contrast's centres in B̂ (`image`) and in R̂ (`rain`), the
    location contrast's on O's first-layer features (`locations`) and, for its identity
    term, on the clean crop's (`identity`). The step draws them unless given: the
    differential tests give the public code and ours the same ones."""

    image: torch.Tensor
    rain: torch.Tensor
    locations: torch.Tensor
    identity: torch.Tensor | None = None


class NLCLModel(nn.Module):
    def __init__(self, config: NLCLConfig):
        super().__init__()
        self.config = config
        self.background = Generator(config.channels, config.blocks)
        self.rain = Generator(config.channels, config.blocks)
        self.discriminator = Discriminator()
        # The layer contrast's levels: the image itself, then the discriminator's four
        # (the public code drops the deepest: `public_levels`).
        self.levels = len(self.discriminator.channels) - int(config.public_levels)
        channels = (3, *self.discriminator.channels[: self.levels])
        # Separate heads for B̂'s and R̂'s vectors, as in the public code.
        self.image_heads = nn.ModuleList(ProjectionHead(c) for c in channels)
        self.rain_heads = nn.ModuleList(ProjectionHead(c) for c in channels)
        self.nce_heads = nn.ModuleList(ProjectionHead(config.channels) for _ in config.nce_layers)
        # HCSC selection's key memories, one per location-contrast layer.
        self.memories = (
            nn.ModuleList(PrototypeMemory(config.prototype_memory) for _ in config.nce_layers)
            if config.nce_negatives == "hcsc"
            else None
        )
        # The generators keep PyTorch's default initialisation, as in the public code.
        for module in (self.discriminator, self.image_heads, self.rain_heads, self.nce_heads):
            init_weights(module)

    def generator_groups(self) -> list[dict]:
        """The generator optimiser's parameter groups, each with the factor
        (`lr_scale`) its learning rate gets. Every head is stepped with the generators.
        With `public_heads`, as in the public code: the location contrast's heads and
        the image heads never move (scale 0), and the rain heads are stepped twice per
        step by two Adam optimisers that see the same gradients, so both make the same
        update: one Adam at twice the rate (scale 2)."""
        generators = [*self.background.parameters(), *self.rain.parameters()]
        if not self.config.public_heads:
            heads = (self.image_heads, self.rain_heads, self.nce_heads)
            every_head = [p for head in heads for p in head.parameters()]
            return [{"params": generators + every_head, "lr_scale": 1.0}]
        frozen = [*self.image_heads.parameters(), *self.nce_heads.parameters()]
        return [
            {"params": generators, "lr_scale": 1.0},
            {"params": list(self.rain_heads.parameters()), "lr_scale": 2.0},
            {"params": frozen, "lr_scale": 0.0},
        ]

    def generator_parameters(self) -> list[nn.Parameter]:
        """What the generator step differentiates: both generators and every head."""
        return [p for group in self.generator_groups() for p in group["params"]]

    def discriminator_loss(self, observed: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            background = self.background(observed)
        real = lsgan_loss(self.discriminator(clean), real=True)
        fake = lsgan_loss(self.discriminator(background), real=False)
        return 0.5 * (real + fake)

    def generator_losses(
        self,
        observed: torch.Tensor,
        clean: torch.Tensor,
        sampler: torch.Generator,
        centres: Centres | None = None,
    ) -> dict[str, torch.Tensor]:
        """Every loss term of the generator step, and their weighted `total`.

        The discriminator is only read here (its parameters must be frozen by the
        caller); gradients reach B̂ and R̂ through it. The contrasts' positions are
        drawn from `sampler` unless `centres` gives them.
        """
        config = self.config
        background = self.background(observed)
        rain = self.rain(observed)
        terms = {
            "adversarial": lsgan_loss(self.discriminator(background), real=True),
            "consistency": consistency_loss(rain, background, observed),
            "sparsity": sparsity_loss(observed, background),
            "layer_contrast": self._layer_contrast(background, rain, sampler, centres),
            "location_contrast": self._location_contrast(
                observed, background, sampler, None if centres is None else centres.locations
            ),
        }
        if config.identity:
            clean_out = self.background(clean)
            identity = self._location_contrast(
                clean, clean_out, sampler, None if centres is None else centres.identity
            )
            terms["location_contrast"] = 0.5 * (terms["location_contrast"] + identity)
        terms["total"] = (
            config.adversarial * terms["adversarial"]
            + config.consistency * terms["consistency"]
            + config.sparsity * terms["sparsity"]
            + config.layer_contrast * terms["layer_contrast"]
            + config.location_contrast * terms["location_contrast"]
        )
        return terms

    def _levels(self, image: torch.Tensor) -> list[torch.Tensor]:
        return [image, *self.discriminator.features(image, self.levels)]

    def _draw(self, images: torch.Tensor, count: int, sampler: torch.Generator) -> torch.Tensor:
        config = self.config
        return similar_centres(images.detach(), count, config.window, config.patch, sampler)

    def _layer_contrast(
        self,
        background: torch.Tensor,
        rain: torch.Tensor,
        sampler: torch.Generator,
        centres: Centres | None,
    ) -> torch.Tensor:
        config = self.config
        size = tuple(background.shape[-2:])
        if centres is None:
            positives = self._draw(background, config.positives, sampler)
            negatives = self._draw(rain, config.negatives, sampler)
        else:
            positives, negatives = centres.image, centres.rain
        losses = []
        heads = zip(self.image_heads, self.rain_heads, strict=True)
        levels = zip(self._levels(background), self._levels(rain), heads, strict=True)
        for image_map, rain_map, (image_head, rain_head) in levels:
            losses.append(
                layer_contrast(
                    image_head(gather(image_map, positives, size)),
                    rain_head(gather(rain_map, negatives, size)),
                    config.temperature,
                    config.rain_temperature,
                    config.rain_weight,
                )
            )
        return torch.stack(losses).mean()

    def _location_contrast(
        self,
        source: torch.Tensor,
        output: torch.Tensor,
        sampler: torch.Generator,
        locations: torch.Tensor | None,
    ) -> torch.Tensor:
        """PatchNCE at the positions where the patches of the source's features at the
        first of `nce_layers` (layer 0: the first conv) are most like a random
        reference's: the public code runs the layer contrast's non-local sampler there."""
        config = self.config
        keys = self.background.features(source, config.nce_layers)
        queries = self.background.features(output, config.nce_layers)
        if locations is None:
            locations = self._draw(keys[0], config.nce_locations, sampler)
        size = tuple(source.shape[-2:])
        memories = self.memories or [None] * len(self.nce_heads)
        losses = [
            location_contrast(
                head(gather(query, locations, size)),
                head(gather(key, locations, size)),
                config.nce_negatives,
                config.temperature,
                memory,
                config.prototypes,
                sampler,
            )
            for query, key, head, memory in zip(
                queries, keys, self.nce_heads, memories, strict=True
            )
        ]
        return torch.stack(losses).mean()
