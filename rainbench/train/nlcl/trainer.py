"""`rainbench train nlcl`: NLCL as a method of the shared trainer core
(`rainbench.train.core.loop`): its networks, optimisers and one training step, a
discriminator step then a generator step. The loop, checkpoints, logs, validation and
data parallelism are the core's.
"""

from pathlib import Path

import torch

from rainbench.models.nlcl.checkpoint import CHECKPOINT_FORMAT
from rainbench.models.nlcl.generator import to_model_range
from rainbench.train.core import loop
from rainbench.train.core.config import SettingsError
from rainbench.train.core.loop import TrainReport, autocast, average_gradients, plain
from rainbench.train.nlcl.config import NLCLConfig
from rainbench.train.nlcl.model import NLCLModel
from rainbench.train.nlcl.sampling import candidate_count

# 2: the discriminator as CUT's layer list, separate image and rain heads (docs/nlcl.md,
# "Proven equal to the public code").
CHECKPOINT_VERSION = 2
LOSS_TERMS = ("total", "adversarial", "consistency", "sparsity", "layer_contrast",
              "location_contrast", "discriminator")  # fmt: skip

__all__ = ["LOSS_TERMS", "NLCLMethod", "TrainReport", "build_optimizers", "train"]


class NLCLMethod:
    name = "nlcl"
    checkpoint_format = CHECKPOINT_FORMAT
    checkpoint_version = CHECKPOINT_VERSION
    loss_terms = LOSS_TERMS
    derainer_parts = ("background", "rain")

    def check(self, config: NLCLConfig) -> None:
        """Refuse more patches or locations than the non-local sampler can draw in a crop
        (it would draw fewer than config.json says)."""
        most = candidate_count(config.crop, config.crop, config.window, config.patch)
        for field in ("positives", "negatives", "nce_locations"):
            asked = getattr(config, field)
            if asked > most:
                raise SettingsError(
                    f"--{field.replace('_', '-')} {asked} is more than the {most} centres the "
                    f"non-local sampler can offer in a {config.crop} px crop (--window "
                    f"{config.window}, --patch {config.patch}): at most {most}"
                )

    def build(self, config: NLCLConfig) -> NLCLModel:
        return NLCLModel(config)

    def optimizers(self, model: NLCLModel, config: NLCLConfig) -> dict:
        g_opt, d_opt = build_optimizers(model, config)
        return {"g_opt": g_opt, "d_opt": d_opt}

    def step(self, model, batch, optimizers, sampler, config, device, distributed) -> dict:
        return _train_step(model, batch, optimizers["g_opt"], optimizers["d_opt"], sampler,
                           config, device, distributed)  # fmt: skip

    def parts(self, model: NLCLModel) -> dict:
        parts = {"background": model.background, "rain": model.rain,
                 "discriminator": model.discriminator, "image_heads": model.image_heads,
                 "rain_heads": model.rain_heads, "nce_heads": model.nce_heads}  # fmt: skip
        if model.memories is not None:  # hcsc negatives: the keys its prototypes come from
            parts["memories"] = model.memories
        return parts

    def translate(self, model: NLCLModel, rainy: torch.Tensor) -> torch.Tensor:
        return model.background(rainy)

    def compile(self, model: NLCLModel, backend: str = "inductor") -> None:
        model.background = torch.compile(plain(model.background), backend=backend)
        model.rain = torch.compile(plain(model.rain), backend=backend)


def train(
    dataset: str | Path,  # a folder or an object store's URL
    run: Path,
    config: NLCLConfig,
    device: str = "cpu",
    progress: bool = False,
    threads: int | None = None,
) -> TrainReport:
    """Train NLCL on `dataset` into the folder `run`, resuming from its last checkpoint
    (`rainbench.train.core.loop.train`)."""
    return loop.train(NLCLMethod(), dataset, run, config, device, progress, threads)


def build_optimizers(
    model: NLCLModel, config: NLCLConfig
) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """Adam for the generator step (generators and heads, in the model's groups) and
    for the discriminator; the loop sets their rates every step."""
    betas = (config.beta1, config.beta2)
    g_opt = torch.optim.Adam(model.generator_groups(), lr=config.lr, betas=betas)
    d_opt = torch.optim.Adam(model.discriminator.parameters(), lr=config.lr, betas=betas)
    return g_opt, d_opt


def _train_step(
    model: NLCLModel,
    batch: dict,
    g_opt: torch.optim.Optimizer,
    d_opt: torch.optim.Optimizer,
    sampler: torch.Generator,
    config: NLCLConfig,
    device: str,
    distributed: bool = False,
) -> dict[str, float]:
    observed = to_model_range(batch["rain"].to(device, non_blocking=True))
    clean = to_model_range(batch["clean"].to(device, non_blocking=True))
    # Discriminator step: clean crops are real, the background generator's output fake.
    model.discriminator.requires_grad_(True)
    d_opt.zero_grad(set_to_none=True)
    with autocast(config, device):
        d_loss = model.discriminator_loss(observed, clean)
    d_loss.backward()
    if distributed:
        average_gradients(model.discriminator.parameters())
    d_opt.step()
    # Generator step: the discriminator only judges and encodes.
    model.discriminator.requires_grad_(False)
    g_opt.zero_grad(set_to_none=True)
    with autocast(config, device):
        terms = model.generator_losses(observed, clean, sampler)
    terms["total"].backward()
    if distributed:
        average_gradients(model.generator_parameters())
    g_opt.step()
    values = {name: float(value.detach()) for name, value in terms.items()}
    values["discriminator"] = float(d_loss.detach())
    return values
