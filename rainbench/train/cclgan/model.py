"""CCLGAN as one module: the rainy→clean (`derain`) and clean→rainy (`rain`)
generators, a discriminator per domain, the location contrast's heads per domain and
the frozen semantic encoder; and one training step's loss terms
(`CCLGANModel.discriminator_loss`, `.generator_losses`; docs/cclgan.md).

Every image is encoded by the generator that reads its domain (`derain` reads rainy
images, `rain` clean ones), and projected by its domain's heads.
"""

import torch
from torch import nn

from rainbench.models.cclgan import ResnetGenerator
from rainbench.train.cclgan.config import CCLGANConfig
from rainbench.train.cclgan.losses import (
    cycle_ratio,
    hinge_discriminator_loss,
    hinge_generator_loss,
)
from rainbench.train.core.contrast import PrototypeMemory, location_contrast
from rainbench.train.nlcl.networks import Discriminator, ProjectionHead, init_weights
from rainbench.train.nlcl.sampling import gather_flat


class CCLGANModel(nn.Module):
    def __init__(self, config: CCLGANConfig, encoder: nn.Module | None):
        super().__init__()
        self.config = config
        self.derain = ResnetGenerator(config.channels, config.blocks)
        self.rain = ResnetGenerator(config.channels, config.blocks)
        self.judge_clean = Discriminator()
        self.judge_rainy = Discriminator()
        widths = [self._width(layer) for layer in config.nce_layers]
        self.heads_rainy = nn.ModuleList(ProjectionHead(w) for w in widths)
        self.heads_clean = nn.ModuleList(ProjectionHead(w) for w in widths)
        for module in (self.derain, self.rain, self.judge_clean, self.judge_rainy,
                       self.heads_rainy, self.heads_clean):  # fmt: skip
            init_weights(module)
        for layer in [*self.derain.modules(), *self.rain.modules()]:
            if isinstance(layer, nn.ConvTranspose2d):  # init_weights leaves these out
                nn.init.xavier_normal_(layer.weight, gain=0.02)
                nn.init.zeros_(layer.bias)
        self.memories = (
            nn.ModuleDict({
                domain: nn.ModuleList(PrototypeMemory(config.prototype_memory) for _ in widths)
                for domain in ("rainy", "clean")
            })
            if config.nce_negatives == "hcsc"
            else None
        )  # fmt: skip
        # Frozen; not in checkpoints (its weights are a file). None: no semantic contrast.
        self.encoder = encoder

    def _width(self, layer: int) -> int:
        """Channels after generator layer `layer` (the encoder half: 0…9 + blocks)."""
        c = self.config.channels
        return c if layer < 4 else 2 * c if layer < 7 else 4 * c

    def generator_parameters(self) -> list[nn.Parameter]:
        return [p for m in (self.derain, self.rain, self.heads_rainy, self.heads_clean)
                for p in m.parameters()]  # fmt: skip

    def discriminator_parameters(self) -> list[nn.Parameter]:
        return [*self.judge_clean.parameters(), *self.judge_rainy.parameters()]

    def cycles(self, rainy: torch.Tensor, clean: torch.Tensor) -> dict[str, torch.Tensor]:
        """Both translations, both cycles and both identities."""
        fake_clean, fake_rainy = self.derain(rainy), self.rain(clean)
        return {
            "rainy": rainy, "clean": clean, "fake_clean": fake_clean, "fake_rainy": fake_rainy,
            "cycle_rainy": self.rain(fake_clean), "cycle_clean": self.derain(fake_rainy),
            "same_clean": self.derain(clean), "same_rainy": self.rain(rainy),
        }  # fmt: skip

    def discriminator_loss(self, images: dict[str, torch.Tensor]) -> torch.Tensor:
        clean = hinge_discriminator_loss(
            self.judge_clean(images["clean"]), self.judge_clean(images["fake_clean"].detach())
        )
        rainy = hinge_discriminator_loss(
            self.judge_rainy(images["rainy"]), self.judge_rainy(images["fake_rainy"].detach())
        )
        return 0.5 * (clean + rainy)

    def generator_losses(
        self, images: dict[str, torch.Tensor], sampler: torch.Generator
    ) -> dict[str, torch.Tensor]:
        """Every loss term of the generator step, and their weighted `total`. The
        discriminators are only read (the caller freezes them)."""
        config, x = self.config, images
        adversarial = 0.5 * (hinge_generator_loss(self.judge_clean(x["fake_clean"]))
                             + hinge_generator_loss(self.judge_rainy(x["fake_rainy"])))  # fmt: skip
        # (source, its domain, output, its domain): translations, then cycles.
        pairs = (
            ("rainy", "rainy", "fake_clean", "clean"),
            ("clean", "clean", "fake_rainy", "rainy"),
            ("fake_clean", "clean", "cycle_rainy", "rainy"),
            ("fake_rainy", "rainy", "cycle_clean", "clean"),
        )
        location = torch.stack([
            self._location_contrast(x[src], src_domain, x[out], out_domain, sampler)
            for src, src_domain, out, out_domain in pairs
        ]).mean()  # fmt: skip
        identity = sum((x[f"same_{d}"] - x[d]).abs().mean() for d in ("clean", "rainy"))
        # The two cycles (domain, the other domain), contrasted in the encoder's space and
        # in the space of the discriminator judging that domain.
        cycles = (("rainy", "clean"), ("clean", "rainy"))
        judges = {"rainy": self.judge_rainy, "clean": self.judge_clean}
        judged = sum(
            self._cycle_contrast(self._judge_features(judges[d], sampler), x, d, o)
            for d, o in cycles
        )
        terms = {"adversarial": adversarial, "location_contrast": location, "identity": identity}
        if self.encoder is not None:  # none when semantic_contrast is 0: the term is left out
            terms["semantic_contrast"] = sum(
                self._cycle_contrast(self.encoder, x, d, o) for d, o in cycles
            )
        terms["discriminator_contrast"] = judged
        terms["total"] = sum(getattr(config, name) * value for name, value in terms.items())
        return terms

    def _location_contrast(self, source, source_domain, output, output_domain, sampler):
        """PatchNCE at random locations: keys from the source, queries from the output,
        each encoded by the generator reading its domain and projected by its heads."""
        config = self.config
        encoders = {"rainy": self.derain, "clean": self.rain}
        heads = {"rainy": self.heads_rainy, "clean": self.heads_clean}
        keys = encoders[source_domain].features(source, config.nce_layers)
        queries = encoders[output_domain].features(output, config.nce_layers)
        losses = []
        for index, (key, query) in enumerate(zip(keys, queries, strict=True)):
            spots = _random_locations(key, config.nce_locations, sampler)
            memory = self.memories[source_domain][index] if self.memories is not None else None
            losses.append(location_contrast(
                heads[output_domain][index](gather_flat(query, spots)),
                heads[source_domain][index](gather_flat(key, spots)),
                config.nce_negatives, config.temperature, memory, config.prototypes, sampler,
            ))  # fmt: skip
        return torch.stack(losses).mean()

    def _cycle_contrast(self, encode, x: dict, domain: str, other: str) -> torch.Tensor:
        """The cycle of `domain`: its reconstruction (anchor) against its original
        (positive), the other domain's image (negative), its translation (weak)."""
        translated = {"rainy": "fake_clean", "clean": "fake_rainy"}[domain]
        return cycle_ratio(encode(x[f"cycle_{domain}"]), encode(x[domain]), encode(x[other]),
                           encode(x[translated]), self.config.weak_negative)  # fmt: skip

    def _judge_features(self, judge: Discriminator, sampler: torch.Generator):
        """An encoder: `judge`'s first levels at discriminator_locations random locations,
        drawn at its first call and kept for every image of the cycle, as unit vectors."""
        config, spots = self.config, []

        def encode(images: torch.Tensor) -> list[torch.Tensor]:
            levels = judge.features(images, config.discriminator_levels)
            if not spots:
                spots.extend(_random_locations(f, config.discriminator_locations, sampler)
                             for f in levels)  # fmt: skip
            return [nn.functional.normalize(gather_flat(f, s), dim=-1)
                    for f, s in zip(levels, spots, strict=True)]  # fmt: skip

        return encode


def _random_locations(features: torch.Tensor, count: int, sampler: torch.Generator) -> torch.Tensor:
    """N×count flat indices into the H·W of N×C×H×W `features`: one random set of
    distinct locations (fewer when the map is smaller), shared by the batch."""
    n, _, h, w = features.shape
    chosen = torch.randperm(h * w, generator=sampler, device=sampler.device)[:count]
    return chosen.to(features.device).expand(n, -1)
