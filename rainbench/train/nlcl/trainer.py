"""`rainbench train nlcl`: the training loop. Rainy crops and unpaired clean crops come
from `rainbench.data`; every loss term is logged (CSV, and TensorBoard when installed);
checkpoints hold everything needed for an exact resume (models, optimisers, step, RNG
states, loader position); a periodic validation scores psnr_y on a paired split.

Under torchrun (WORLD_SIZE > 1) it trains with DistributedDataParallel; only rank 0
writes. The learning rate is a function of the step (constant, then a linear decay),
so there is no scheduler state to lose.
"""

import csv
import json
import os
import random
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import torch

from rainbench.data import Filters, Loader, RainDataset
from rainbench.models.base import to_pixels
from rainbench.models.nlcl.checkpoint import CHECKPOINT_FORMAT, save_atomic
from rainbench.models.nlcl.generator import to_model_range
from rainbench.shards.dataset import DatasetError
from rainbench.threads import set_torch_threads
from rainbench.train.nlcl.config import NLCLConfig
from rainbench.train.nlcl.model import NLCLModel

# 2: the discriminator as CUT's layer list, separate image and rain heads (docs/nlcl.md,
# "Proven equal to the public code").
CHECKPOINT_VERSION = 2
LOSS_TERMS = ("total", "adversarial", "consistency", "sparsity", "layer_contrast",
              "location_contrast", "discriminator")  # fmt: skip


@dataclass
class TrainReport:
    run: Path
    step: int
    resumed_from: int | None
    seconds: float
    last: dict[str, float]
    threads: int  # torch's CPU threads

    def to_dict(self) -> dict:
        return {**self.__dict__, "run": str(self.run)}


def train(
    dataset: Path,
    run: Path,
    config: NLCLConfig,
    device: str = "cpu",
    progress: bool = False,
    threads: int | None = None,
) -> TrainReport:
    """Train NLCL on `dataset` into the folder `run`, resuming from its last checkpoint.

    torch's CPU threads are `threads`, else chosen from the free CPUs less the loader's
    workers (`rainbench.threads`); they change speed, not what a step computes beyond
    rounding, so a run may resume with another count.
    """
    threads = set_torch_threads(config.workers, threads)
    distributed = _start_distributed(device)
    rank = torch.distributed.get_rank() if distributed else 0
    if distributed and device.startswith("cuda"):
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    config = _settle_config(run, config, write=rank == 0)
    if config.val_real and config.validate_every:
        _niqe(device)  # missing NIQE parameters stop the run now, not at its first validation
    _seed_everything(config.seed + rank)
    model = NLCLModel(config).to(device)
    if distributed:  # every rank starts from rank 0's initial weights
        _broadcast(model)
    g_opt, d_opt = build_optimizers(model, config)
    loader = _loader(dataset, config)
    sampler = torch.Generator(device=device).manual_seed(config.seed + rank)
    step, resumed_from = 0, None
    last_path = run / "checkpoints" / "last.pt"
    if last_path.exists():
        step = _load_checkpoint(last_path, model, g_opt, d_opt, loader, sampler, device)
        resumed_from = step
    if config.compile:
        model.background = torch.compile(model.background)
        model.rain = torch.compile(model.rain)
    log = _Log(run, enabled=rank == 0, resumed_at=step)
    started, last = time.perf_counter(), {}
    while step < config.steps:
        loader.set_epoch(loader.dataset.epoch)
        for batch in loader:
            if step >= config.steps:
                break
            _set_lr((g_opt, d_opt), config, step)
            last = _train_step(model, batch, g_opt, d_opt, sampler, config, device, distributed)
            step += 1
            if step % config.log_every == 0 or step == config.steps:
                log.write(step, loader.dataset.epoch, g_opt.param_groups[0]["lr"], last)
                if progress and rank == 0:
                    # stderr, as all progress: stdout is the result's (--json).
                    print(_progress_line(step, config.steps, last), file=sys.stderr, flush=True)
            if step % config.checkpoint_every == 0 or step == config.steps:
                position = _loader_position(loader, distributed)
                if distributed:
                    _check_in_step(model)
                if rank == 0:
                    _save_checkpoint(run, step, model, g_opt, d_opt, position, sampler, config)
            if rank == 0 and config.validate_every and step % config.validate_every == 0:
                log.validation(step, validate(model, dataset, config, device))
        else:
            loader.set_epoch(loader.dataset.epoch + 1)
    log.close()
    return TrainReport(run, step, resumed_from, time.perf_counter() - started, last, threads)


def build_optimizers(
    model: NLCLModel, config: NLCLConfig
) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """Adam for the generator step (generators and heads, in the model's groups) and
    for the discriminator; `_set_lr` sets their rates every step."""
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
    autocast = (
        torch.autocast(device.split(":")[0], dtype=torch.bfloat16)
        if config.amp == "bf16"
        else nullcontext()
    )
    # Discriminator step: clean crops are real, the background generator's output fake.
    model.discriminator.requires_grad_(True)
    d_opt.zero_grad(set_to_none=True)
    with autocast:
        d_loss = model.discriminator_loss(observed, clean)
    d_loss.backward()
    if distributed:
        _average_gradients(model.discriminator.parameters())
    d_opt.step()
    # Generator step: the discriminator only judges and encodes.
    model.discriminator.requires_grad_(False)
    g_opt.zero_grad(set_to_none=True)
    with autocast:
        terms = model.generator_losses(observed, clean, sampler)
    terms["total"].backward()
    if distributed:
        _average_gradients(model.generator_parameters())
    g_opt.step()
    values = {name: float(value.detach()) for name, value in terms.items()}
    values["discriminator"] = float(d_loss.detach())
    return values


def _average_gradients(parameters) -> None:
    """Data parallelism by hand: every rank ends the backward pass with the mean
    gradient (the step calls the networks' methods, which a DDP wrapper would not see)."""
    world = torch.distributed.get_world_size()
    for parameter in parameters:
        if parameter.grad is not None:
            torch.distributed.all_reduce(parameter.grad)
            parameter.grad.div_(world)


def _broadcast(model: torch.nn.Module) -> None:
    for tensor in [*model.parameters(), *model.buffers()]:
        torch.distributed.broadcast(tensor.data, src=0)


def _check_in_step(model: torch.nn.Module) -> None:
    """Averaged gradients keep every rank's weights identical; refuse to save if not."""
    checksum = torch.stack([p.detach().double().sum() for p in model.parameters()]).cpu()
    everyone = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(everyone, checksum)
    if any(not torch.equal(theirs, checksum) for theirs in everyone):
        raise RuntimeError("the ranks' weights have diverged; the checkpoint is not saved")


def _loader_position(loader: Loader, distributed: bool) -> dict:
    """The loader's state over every rank: each rank knows only its own slots."""
    state = loader.state_dict()
    if not distributed:
        return state
    everyone = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(everyone, state["consumed"])
    for consumed in everyone:
        state["consumed"].update(consumed)
    return state


def _loader(dataset: Path, config: NLCLConfig) -> Loader:
    rainy = Filters(split=config.split, layer="rainy", rain_type=config.rain_types)
    try:
        data = RainDataset(
            dataset,
            mode="unpaired",
            filters=rainy,
            clean_filters=Filters(split=config.split, layer="clean"),
            crop=config.crop,
            seed=config.seed,
        )
    except DatasetError as error:
        raise DatasetError(f"cannot train on {dataset}: {error}") from None
    return Loader(
        data,
        batch_size=config.batch,
        num_workers=config.workers,
        drop_last=True,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=False,
    )


def _set_lr(optimizers, config: NLCLConfig, step: int) -> None:
    start = config.steps - config.decay_steps
    share = 1.0 if step < start else max(0.0, (config.steps - step) / max(config.decay_steps, 1))
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["lr"] = config.lr * share * group.get("lr_scale", 1.0)


def _settle_config(run: Path, config: NLCLConfig, write: bool) -> NLCLConfig:
    path = run / "config.json"
    if path.exists():
        saved = NLCLConfig.from_json(json.loads(path.read_text()))
        changed = saved.differences(config)
        if changed:
            raise DatasetError(
                f"{run} was trained with other settings ({', '.join(changed)}); "
                "use another --out to start a new run"
            )
    if write:
        run.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config.to_json(), indent=2) + "\n")
    return config


def _save_checkpoint(run, step, model, g_opt, d_opt, position, sampler, config) -> None:
    folder = run / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": config.to_json(),
        "step": step,
        "background": _plain(model.background).state_dict(),
        "rain": _plain(model.rain).state_dict(),
        "discriminator": model.discriminator.state_dict(),
        "image_heads": model.image_heads.state_dict(),
        "rain_heads": model.rain_heads.state_dict(),
        "nce_heads": model.nce_heads.state_dict(),
        "g_opt": g_opt.state_dict(),
        "d_opt": d_opt.state_dict(),
        "loader": position,
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "sampler": sampler.get_state(),
            "numpy": _numpy_state(),
            "python": list(random.getstate()[1]),
        },
    }
    save_atomic(state, folder / f"step-{step:07d}.pt")
    save_atomic(state, folder / "last.pt")
    # What the nlcl derainer needs, small: the two generators and their shape.
    weights = {key: state[key] for key in ("format", "version", "config", "step", "background",
                                           "rain")}  # fmt: skip
    save_atomic(weights, run / "nlcl.pt")


def _load_checkpoint(path, model, g_opt, d_opt, loader, sampler, device) -> int:
    state = torch.load(path, map_location=device, weights_only=True)
    if state.get("format") != CHECKPOINT_FORMAT:
        raise DatasetError(f"{path} is not a rainbench NLCL checkpoint")
    if state.get("version") != CHECKPOINT_VERSION:
        raise DatasetError(
            f"{path} was written by an earlier NLCL trainer, whose discriminator and heads "
            "differ from this one's; start a new run with another --out"
        )
    _plain(model.background).load_state_dict(state["background"])
    _plain(model.rain).load_state_dict(state["rain"])
    model.discriminator.load_state_dict(state["discriminator"])
    model.image_heads.load_state_dict(state["image_heads"])
    model.rain_heads.load_state_dict(state["rain_heads"])
    model.nce_heads.load_state_dict(state["nce_heads"])
    g_opt.load_state_dict(state["g_opt"])
    d_opt.load_state_dict(state["d_opt"])
    loader.load_state_dict(state["loader"])
    rng = state["rng"]
    torch.set_rng_state(rng["torch"].cpu())
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
    sampler.set_state(rng["sampler"].to(sampler.get_state().device))
    _set_numpy_state(rng["numpy"])
    random.setstate((3, tuple(rng["python"]), None))
    return int(state["step"])


def _numpy_state() -> dict:
    name, keys, position, has_gauss, cached = np.random.get_state()
    return {"name": name, "keys": keys.tolist(), "position": int(position),
            "has_gauss": int(has_gauss), "cached": float(cached)}  # fmt: skip


def _set_numpy_state(state: dict) -> None:
    np.random.set_state((state["name"], np.array(state["keys"], dtype=np.uint32),
                         state["position"], state["has_gauss"], state["cached"]))  # fmt: skip


def _plain(module: torch.nn.Module) -> torch.nn.Module:
    """The module itself, not its torch.compile wrapper."""
    return getattr(module, "_orig_mod", module)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _start_distributed(device: str) -> bool:
    if int(os.environ.get("WORLD_SIZE", 1)) <= 1:
        return False
    if not torch.distributed.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        torch.distributed.init_process_group(backend)
    if device.startswith("cuda"):
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    return True


def _progress_line(step: int, steps: int, values: dict[str, float]) -> str:
    terms = " ".join(f"{name} {values[name]:.4f}" for name in LOSS_TERMS if name in values)
    return f"step {step}/{steps}: {terms}"


class _Log:
    """losses.csv and validation.csv in the run folder, and TensorBoard when installed."""

    def __init__(self, run: Path, enabled: bool, resumed_at: int):
        self.enabled = enabled
        self.run = run
        self.board = None
        if not enabled:
            return
        for name in ("losses.csv", "validation.csv"):
            _truncate(run / name, resumed_at)  # rows a killed run logged after its checkpoint
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.board = SummaryWriter(str(run / "tensorboard"))
        except ImportError:  # tensorboard is optional: the CSV has every number
            self.board = None

    def write(self, step: int, epoch: int, lr: float, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        row = {"step": step, "epoch": epoch, "lr": lr, **{k: values.get(k) for k in LOSS_TERMS}}
        self._append(self.run / "losses.csv", row)
        if self.board:
            for name in LOSS_TERMS:
                if name in values:
                    self.board.add_scalar(f"loss/{name}", values[name], step)
            self.board.add_scalar("lr", lr, step)

    def validation(self, step: int, scores: dict[str, float]) -> None:
        if not self.enabled:
            return
        self._append(self.run / "validation.csv", {"step": step, **scores})
        if self.board:
            for name, value in scores.items():
                self.board.add_scalar(f"validation/{name}", value, step)

    def close(self) -> None:
        if self.board:
            self.board.close()

    @staticmethod
    def _append(path: Path, row: dict) -> None:
        new = not path.exists()
        with open(path, "a", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)


def _truncate(path: Path, step: int) -> None:
    """Drop the rows of a log beyond `step`."""
    if not path.exists():
        return
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    kept = [row for row in rows if int(row["step"]) <= step]
    if len(kept) == len(rows):
        return
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)


def validate(model: NLCLModel, dataset: Path, config: NLCLConfig, device: str) -> dict[str, float]:
    """The background generator on whole images: psnr_y on up to val_images pairs of
    the paired split (in val_dataset when given), beside the rainy input's own (the
    identity's), and niqe on up to val_images real rainy captures of the val_real split
    of `dataset`, beside the input's own."""
    scores = {}
    model.background.eval()
    with torch.inference_mode():
        if config.val_split:
            paired = Path(config.val_dataset) if config.val_dataset else dataset
            scores.update(_validate_pairs(model, paired, config, device))
        if config.val_real:
            scores.update(_validate_real(model, dataset, config, device))
    model.background.train()
    return scores


def _validate_pairs(model, dataset, config, device) -> dict[str, float]:
    from rainbench.metrics.fullref import psnr_y

    pairs = RainDataset(dataset, mode="paired", paired_split=config.val_split, crop=None,
                        shuffle=False)  # fmt: skip
    ours, identity = [], []
    for sample in islice(pairs, config.val_images):
        gt = to_pixels(sample["gt"])
        ours.append(psnr_y(_derain(model, sample["rain"], device), gt))
        identity.append(psnr_y(to_pixels(sample["rain"]), gt))
    return {"psnr_y": float(np.mean(ours)), "psnr_y_identity": float(np.mean(identity))}


def _validate_real(model, dataset, config, device) -> dict[str, float]:
    from rainbench.metrics.registry import MetricError

    niqe = _niqe(device)
    rainy = Filters(split=config.val_real, layer="rainy", rain_type=config.rain_types)
    captures = RainDataset(dataset, mode="single", filters=rainy, crop=None, shuffle=False)
    ours, identity = [], []
    for sample in islice(captures, config.val_images):
        try:
            score = niqe(_derain(model, sample["image"], device))
            own = niqe(to_pixels(sample["image"]))
        except MetricError:  # NIQE is undefined on flat pictures: that one is left out
            continue
        ours.append(score)
        identity.append(own)
    return {"niqe": float(np.mean(ours)), "niqe_identity": float(np.mean(identity))}


def _niqe(device: str):
    """NIQE through rainbench.metrics; a DatasetError naming the fix when its
    parameters are missing."""
    from rainbench.metrics.registry import MetricError, create_metric

    try:
        return create_metric("niqe", device=device)
    except MetricError as error:
        raise DatasetError(f"validation on real rain (val_real): {error}") from None


def _derain(model: NLCLModel, rain: torch.Tensor, device: str) -> np.ndarray:
    out = (model.background(to_model_range(rain[None].to(device))) + 1) / 2
    return to_pixels(out[0].float())
