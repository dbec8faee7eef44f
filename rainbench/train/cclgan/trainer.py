"""`rainbench train cclgan`: CCLGAN as a method of the shared trainer core
(`rainbench.train.core.loop`): its networks, optimisers and one training step, a step
of both discriminators then one of both generators and their heads.
"""

from pathlib import Path

import torch

from rainbench.models.cclgan import CHECKPOINT_FORMAT, ResnetGenerator, translate_any_size
from rainbench.models.nlcl.generator import to_model_range
from rainbench.train.cclgan.config import CCLGANConfig
from rainbench.train.cclgan.encoders import semantic_encoder
from rainbench.train.cclgan.model import CCLGANModel
from rainbench.train.core import loop
from rainbench.train.core.config import SettingsError
from rainbench.train.core.loop import TrainReport, autocast, average_gradients, plain
from rainbench.train.nlcl.networks import Discriminator

CHECKPOINT_VERSION = 1
LOSS_TERMS = ("total", "adversarial", "location_contrast", "identity", "semantic_contrast",
              "discriminator_contrast", "discriminator")  # fmt: skip


class CCLGANMethod:
    name = "cclgan"
    checkpoint_format = CHECKPOINT_FORMAT
    checkpoint_version = CHECKPOINT_VERSION
    loss_terms = LOSS_TERMS
    derainer_parts = ("derain", "rain")

    def __init__(self, weights_dir: Path | None = None):
        self.weights_dir = weights_dir

    def check(self, config: CCLGANConfig) -> None:
        """Refuse more random locations than the smallest feature map they are drawn
        from has (fewer would be drawn than config.json says). The maps' sizes come from
        the networks themselves, run on the meta device (shapes only, no memory)."""
        with torch.device("meta"):
            image = torch.empty(1, 3, config.crop, config.crop)
            generator = ResnetGenerator(config.channels, config.blocks)
            layers = generator.features(image, config.nce_layers)
            levels = Discriminator().features(image, config.discriminator_levels)
        named = zip(config.nce_layers, layers, strict=True)
        _check_locations(config, "nce_locations", {f"generator layer {n}": f for n, f in named})
        named = enumerate(levels, 1)
        _check_locations(config, "discriminator_locations",
                         {f"discriminator level {n}": f for n, f in named})  # fmt: skip

    def build(self, config: CCLGANConfig) -> CCLGANModel:
        # Without a semantic contrast term, no encoder (and no weights file) is needed.
        encoder = (
            semantic_encoder(config.semantic_encoder, config.random_encoder, self.weights_dir)
            if config.semantic_contrast
            else None
        )
        return CCLGANModel(config, encoder)

    def optimizers(self, model: CCLGANModel, config: CCLGANConfig) -> dict:
        betas = (config.beta1, config.beta2)
        return {
            "g_opt": torch.optim.Adam(model.generator_parameters(), lr=config.lr, betas=betas),
            "d_opt": torch.optim.Adam(model.discriminator_parameters(), lr=config.lr, betas=betas),
        }

    def step(self, model, batch, optimizers, sampler, config, device, distributed) -> dict:
        return train_step(model, batch, optimizers["g_opt"], optimizers["d_opt"], sampler,
                          config, device, distributed)  # fmt: skip

    def parts(self, model: CCLGANModel) -> dict:
        parts = {"derain": model.derain, "rain": model.rain, "judge_clean": model.judge_clean,
                 "judge_rainy": model.judge_rainy, "heads_rainy": model.heads_rainy,
                 "heads_clean": model.heads_clean}  # fmt: skip
        if model.memories is not None:  # hcsc negatives: the keys its prototypes come from
            parts["memories"] = model.memories
        return parts

    def translate(self, model: CCLGANModel, rainy: torch.Tensor) -> torch.Tensor:
        return translate_any_size(model.derain, rainy)

    def compile(self, model: CCLGANModel, backend: str = "inductor") -> None:
        model.derain = torch.compile(plain(model.derain), backend=backend)
        model.rain = torch.compile(plain(model.rain), backend=backend)


def train(
    dataset: str | Path,  # a folder or an object store's URL
    run: Path,
    config: CCLGANConfig,
    device: str = "cpu",
    progress: bool = False,
    threads: int | None = None,
    weights_dir: Path | None = None,
) -> TrainReport:
    """Train CCLGAN on `dataset` into the folder `run`, resuming from its last
    checkpoint; the semantic encoder's weights come from `weights_dir` (else
    $RAINBENCH_WEIGHTS, else ~/.cache/rainbench/weights) unless config.random_encoder."""
    method = CCLGANMethod(weights_dir)
    return loop.train(method, dataset, run, config, device, progress, threads)


def train_step(
    model: CCLGANModel,
    batch: dict,
    g_opt: torch.optim.Optimizer,
    d_opt: torch.optim.Optimizer,
    sampler: torch.Generator,
    config: CCLGANConfig,
    device: str,
    distributed: bool = False,
) -> dict[str, float]:
    rainy = to_model_range(batch["rain"].to(device, non_blocking=True))
    clean = to_model_range(batch["clean"].to(device, non_blocking=True))
    if config.flip:
        rainy, clean = _flip(rainy, sampler), _flip(clean, sampler)
    with autocast(config, device):
        images = model.cycles(rainy, clean)
    # Discriminator step: the real crops against the translations.
    for judge in (model.judge_clean, model.judge_rainy):
        judge.requires_grad_(True)
    d_opt.zero_grad(set_to_none=True)
    with autocast(config, device):
        d_loss = model.discriminator_loss(images)
    d_loss.backward()
    if distributed:
        average_gradients(model.discriminator_parameters())
    d_opt.step()
    # Generator step: the discriminators only judge and encode.
    for judge in (model.judge_clean, model.judge_rainy):
        judge.requires_grad_(False)
    g_opt.zero_grad(set_to_none=True)
    with autocast(config, device):
        terms = model.generator_losses(images, sampler)
    terms["total"].backward()
    if distributed:
        average_gradients(model.generator_parameters())
    g_opt.step()
    values = {name: float(value.detach()) for name, value in terms.items()}
    values["discriminator"] = float(d_loss.detach())
    return values


def _check_locations(config: CCLGANConfig, field: str, maps: dict[str, torch.Tensor]) -> None:
    name, smallest = min(maps.items(), key=lambda item: item[1].shape[-2:].numel())
    most, asked = smallest.shape[-2:].numel(), getattr(config, field)
    if asked > most:
        h, w = smallest.shape[-2:]
        raise SettingsError(
            f"--{field.replace('_', '-')} {asked} is more than the {most} locations of {name} "
            f"({h}×{w} at --crop {config.crop}): at most {most}"
        )


def _flip(images: torch.Tensor, sampler: torch.Generator) -> torch.Tensor:
    """Each image mirrored left–right with probability ½."""
    mirror = torch.rand(images.shape[0], generator=sampler, device=sampler.device) < 0.5
    mirror = mirror.to(images.device)[:, None, None, None]
    return torch.where(mirror, images.flip(-1), images)
