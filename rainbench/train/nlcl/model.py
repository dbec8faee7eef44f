"""NLCL as one module: the background and rain generators, the discriminator, and the
projection heads of the two contrasts; and `NLCLModel.losses`, one training step's
loss terms (docs/nlcl.md has the formulas).
"""

import torch
from torch import nn

from rainbench.models.nlcl.generator import Generator
from rainbench.train.nlcl.config import NLCLConfig
from rainbench.train.nlcl.losses import (
    consistency_loss,
    layer_contrast,
    lsgan_loss,
    patch_nce,
    sparsity_loss,
)
from rainbench.train.nlcl.networks import Discriminator, ProjectionHead, init_weights
from rainbench.train.nlcl.sampling import (
    gather,
    gather_flat,
    self_similar_locations,
    similar_centres,
)

# Channels of the layer contrast's feature levels: the image itself, then the
# discriminator's three stages.
LEVEL_CHANNELS = (3, 64, 128, 256)


class NLCLModel(nn.Module):
    def __init__(self, config: NLCLConfig):
        super().__init__()
        self.config = config
        self.background = Generator(config.channels, config.blocks)
        self.rain = Generator(config.channels, config.blocks)
        self.discriminator = Discriminator()
        self.layer_heads = nn.ModuleList(ProjectionHead(c) for c in LEVEL_CHANNELS)
        self.nce_heads = nn.ModuleList(ProjectionHead(config.channels) for _ in config.nce_layers)
        for module in (self.background, self.rain, self.discriminator, self.layer_heads,
                       self.nce_heads):  # fmt: skip
            init_weights(module)

    def generator_parameters(self) -> list[nn.Parameter]:
        """What the generator step updates: both generators and every head."""
        modules = (self.background, self.rain, self.layer_heads, self.nce_heads)
        return [p for module in modules for p in module.parameters()]

    def discriminator_loss(self, observed: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            background = self.background(observed)
        real = lsgan_loss(self.discriminator(clean), real=True)
        fake = lsgan_loss(self.discriminator(background), real=False)
        return 0.5 * (real + fake)

    def generator_losses(
        self, observed: torch.Tensor, clean: torch.Tensor, sampler: torch.Generator
    ) -> dict[str, torch.Tensor]:
        """Every loss term of the generator step, and their weighted `total`.

        The discriminator is only read here (its parameters must be frozen by the
        caller); gradients reach B̂ and R̂ through it.
        """
        config = self.config
        background = self.background(observed)
        rain = self.rain(observed)
        terms = {
            "adversarial": lsgan_loss(self.discriminator(background), real=True),
            "consistency": consistency_loss(rain, background, observed),
            "sparsity": sparsity_loss(observed, background),
            "layer_contrast": self._layer_contrast(background, rain, sampler),
            "location_contrast": self._location_contrast(observed, background, sampler),
        }
        if config.identity:
            clean_out = self.background(clean)
            identity = self._location_contrast(clean, clean_out, sampler)
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
        return [image, *self.discriminator.features(image)]

    def _layer_contrast(
        self, background: torch.Tensor, rain: torch.Tensor, sampler: torch.Generator
    ) -> torch.Tensor:
        config = self.config
        size = tuple(background.shape[-2:])
        positives = similar_centres(
            background.detach(), config.positives, config.window, config.patch, sampler
        )
        negatives = similar_centres(
            rain.detach(), config.negatives, config.window, config.patch, sampler
        )
        losses = []
        levels = zip(self._levels(background), self._levels(rain), self.layer_heads, strict=True)
        for image_map, rain_map, head in levels:
            image_vectors = head(gather(image_map, positives, size))
            rain_vectors = head(gather(rain_map, negatives, size))
            losses.append(
                layer_contrast(
                    image_vectors,
                    rain_vectors,
                    config.temperature,
                    config.rain_temperature,
                    config.rain_weight,
                )
            )
        return torch.stack(losses).mean()

    def _location_contrast(
        self, source: torch.Tensor, output: torch.Tensor, sampler: torch.Generator
    ) -> torch.Tensor:
        config = self.config
        keys = self.background.features(source, config.nce_layers)
        queries = self.background.features(output, config.nce_layers)
        locations = self_similar_locations(keys[0].detach(), config.nce_locations, sampler)
        losses = [
            patch_nce(
                head(gather_flat(query, locations)),
                head(gather_flat(key, locations)),
                config.temperature,
            )
            for query, key, head in zip(queries, keys, self.nce_heads, strict=True)
        ]
        return torch.stack(losses).mean()
