"""The step loop every trainer runs: rainy crops and unpaired clean crops from
`rainbench.data`, the method's step, every loss term logged (CSV, and TensorBoard when
installed), checkpoints that hold everything an exact resume needs (networks,
optimisers, step, RNG states, loader position), written atomically, and a periodic
validation. A `Method` says what is trained and how one step goes.

Under torchrun (WORLD_SIZE > 1) every rank trains on its share of the data with
averaged gradients (`average_gradients`); only rank 0 writes, after checking that the
ranks' weights are identical. The learning rate is a function of the step (constant,
then a linear decay), so there is no scheduler state to lose.
"""

import csv
import hashlib
import json
import os
import random
import sys
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

from rainbench import __version__
from rainbench.data import Filters, Loader, RainDataset
from rainbench.data.dataset import current_slot
from rainbench.models.nlcl.checkpoint import save_atomic
from rainbench.shards.dataset import DatasetError
from rainbench.threads import set_torch_threads
from rainbench.train.core.config import RunConfig
from rainbench.train.core.validation import check_niqe, validate

PROVENANCE = "run.json"  # in RUN/: what the run trains on, and with which versions


class Method(Protocol):
    """What a trainer brings to the loop. `parts(model)` names every module a checkpoint
    holds (its keys in the file); `derainer_parts` are those RUN/<name>.pt keeps for the
    `name` derainer; `translate` maps rainy images in [-1, 1] to clean ones, for
    validation."""

    name: str
    checkpoint_format: str
    checkpoint_version: int
    loss_terms: tuple[str, ...]
    derainer_parts: tuple[str, ...]

    def build(self, config: RunConfig) -> nn.Module: ...

    def optimizers(
        self, model: nn.Module, config: RunConfig
    ) -> dict[str, torch.optim.Optimizer]: ...

    def step(
        self,
        model: nn.Module,
        batch: dict,
        optimizers: dict[str, torch.optim.Optimizer],
        sampler: torch.Generator,
        config: RunConfig,
        device: str,
        distributed: bool,
    ) -> dict[str, float]: ...

    def parts(self, model: nn.Module) -> dict[str, nn.Module]: ...

    def translate(self, model: nn.Module, rainy: torch.Tensor) -> torch.Tensor: ...

    # torch.compile the method's generators; "eager" only traces (a cheap CPU check).
    def compile(self, model: nn.Module, backend: str = "inductor") -> None: ...


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
    method: Method,
    dataset: str | Path,  # a folder or an object store's URL
    run: Path,
    config: RunConfig,
    device: str = "cpu",
    progress: bool = False,
    threads: int | None = None,
) -> TrainReport:
    """Train `method` on `dataset` into the folder `run`, resuming from its last checkpoint.

    torch's CPU threads are `threads`, else chosen from the free CPUs less the loader's
    workers (`rainbench.threads`); they change speed, not what a step computes beyond
    rounding, so a run may resume with another count.
    """
    threads = set_torch_threads(config.workers, threads)
    distributed = _start_distributed(device)
    rank = torch.distributed.get_rank() if distributed else 0
    if distributed and device.startswith("cuda"):
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    _check_settings(run, config)
    if config.val_real and config.validate_every:
        check_niqe(device)  # missing NIQE parameters stop the run now, not at its first validation
    _seed_everything(config.seed + rank)
    model = method.build(config).to(device)
    if distributed:  # every rank starts from rank 0's initial weights
        _broadcast(model)
    optimizers = method.optimizers(model, config)
    loader = _loader(dataset, config)
    trained_on = _captures(dataset, loader)
    _check_captures(run, trained_on)
    sampler = torch.Generator(device=device).manual_seed(config.seed + rank)
    step, resumed_from = 0, None
    last_path = run / "checkpoints" / "last.pt"
    if last_path.exists():
        step = _load_checkpoint(method, last_path, model, optimizers, loader, sampler, device)
        resumed_from = step
        if step > config.steps:  # before config.json says fewer steps than were trained
            raise DatasetError(
                f"{run} has trained {step} steps already, more than the {config.steps} asked "
                f"for: ask for {step} or more to go on from its last checkpoint"
            )
    if rank == 0:  # only now: a run that could not start leaves no settings behind
        _write_settings(run, config)
        _write_provenance(run, trained_on, device)
    if config.compile:
        method.compile(model)
    log = _Log(run, method.loss_terms, enabled=rank == 0, resumed_at=step)
    started, last = time.perf_counter(), {}
    while step < config.steps:
        loader.set_epoch(loader.dataset.epoch)
        for batch in loader:
            if step >= config.steps:
                break
            set_lr(optimizers.values(), config, step)
            last = method.step(model, batch, optimizers, sampler, config, device, distributed)
            step += 1
            if step % config.log_every == 0 or step == config.steps:
                lr = next(iter(optimizers.values())).param_groups[0]["lr"]
                log.write(step, loader.dataset.epoch, lr, last)
                if progress and rank == 0:
                    # stderr, as all progress: stdout is the result's (--json).
                    print(_progress_line(method, step, config.steps, last), file=sys.stderr,
                          flush=True)  # fmt: skip
            if step % config.checkpoint_every == 0 or step == config.steps:
                position = _loader_position(loader, distributed)
                if distributed:
                    _check_in_step(model)
                if rank == 0:
                    _save_checkpoint(method, run, step, model, optimizers, position, sampler,
                                     config)  # fmt: skip
            if rank == 0 and config.validate_every and step % config.validate_every == 0:
                scores = validate(lambda x: method.translate(model, x), model, dataset, config,
                                  device)  # fmt: skip
                log.validation(step, scores)
        else:
            loader.set_epoch(loader.dataset.epoch + 1)
    log.close()
    return TrainReport(run, step, resumed_from, time.perf_counter() - started, last, threads)


def autocast(config: RunConfig, device: str) -> AbstractContextManager:
    """bf16 autocast when the run asks for it, else nothing."""
    if config.amp == "bf16":
        return torch.autocast(device.split(":")[0], dtype=torch.bfloat16)
    return nullcontext()


def set_lr(optimizers, config: RunConfig, step: int) -> None:
    """Every group's rate at `step`: lr (times the group's `lr_scale`), decayed linearly
    to 0 over the last decay_steps."""
    start = config.steps - config.decay_steps
    share = 1.0 if step < start else max(0.0, (config.steps - step) / max(config.decay_steps, 1))
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["lr"] = config.lr * share * group.get("lr_scale", 1.0)


def average_gradients(parameters) -> None:
    """Data parallelism by hand: every rank ends the backward pass with the mean
    gradient (a step calls the networks' methods, which a DDP wrapper would not see)."""
    world = torch.distributed.get_world_size()
    for parameter in parameters:
        if parameter.grad is not None:
            torch.distributed.all_reduce(parameter.grad)
            parameter.grad.div_(world)


def plain(module: nn.Module) -> nn.Module:
    """The module itself, not its torch.compile wrapper."""
    return getattr(module, "_orig_mod", module)


def _broadcast(model: nn.Module) -> None:
    for tensor in [*model.parameters(), *model.buffers()]:
        torch.distributed.broadcast(tensor.data, src=0)


def _check_in_step(model: nn.Module) -> None:
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


def _loader(dataset: str | Path, config: RunConfig) -> Loader:
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
    # Each loader process (ranks × workers) batches its own crops and drops a partial
    # batch: with fewer crops than a batch in each, an epoch would give nothing, forever.
    processes = current_slot().count * max(1, config.workers)
    most = -(-len(data.samples) // processes) * data.crops_per_image
    if most < config.batch:
        raise DatasetError(
            f"--batch {config.batch} is more than the {most} crops each of the {processes} "
            f"loader processes gets per epoch ({len(data)} in all): no batch would ever be "
            "full; lower --batch or -j"
        )
    return Loader(
        data,
        batch_size=config.batch,
        num_workers=config.workers,
        drop_last=True,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=False,
    )


def _check_settings(run: Path, config: RunConfig) -> None:
    """Refuse to go on with a run that has other settings, `steps` aside."""
    path = run / "config.json"
    if path.exists():
        data = json.loads(path.read_text())
        theirs = set(data) - set(config.to_json())
        if theirs:  # settings this method does not have: another method's run
            raise DatasetError(
                f"{run} is a run of another method (its config.json has "
                f"{', '.join(sorted(theirs)[:3])}, which {type(config).__name__} has not); "
                "use another --out to start a new run"
            )
        try:
            saved = type(config).from_json(data)
        except (TypeError, ValueError) as error:
            raise DatasetError(
                f"{run}/config.json does not hold this method's settings: {error}"
            ) from None
        changed = saved.differences(config)
        if changed:
            raise DatasetError(
                f"{run} was trained with other settings ({', '.join(changed)}); "
                "use another --out to start a new run"
            )


def _captures(dataset: str | Path, loader: Loader) -> dict:
    """What the run trains on: the rainy and clean captures its filters select, each
    set by the sha256 of its sorted keys (a key is a hash of the capture's bytes), so the
    same captures match wherever the dataset lies and whatever else its manifests say."""
    data = loader.dataset

    def chosen(samples) -> dict:
        keys = "\n".join(sorted(samples["key"])).encode()
        return {"count": len(samples), "keys_sha256": hashlib.sha256(keys).hexdigest()}

    return {"dataset": str(dataset), "rainy": chosen(data.samples), "clean": chosen(data.clean)}


def _check_captures(run: Path, trained_on: dict) -> None:
    """Refuse to resume a run on other captures: its loader position, and what its
    checkpoints learnt from, belong to the ones it started on."""
    path = run / PROVENANCE
    if not path.exists():  # a new run, or one from before its captures were recorded
        return
    before = json.loads(path.read_text())["captures"]
    changed = [
        f"{layer} {before[layer]['count']} then, {trained_on[layer]['count']} now"
        for layer in ("rainy", "clean")
        if before[layer]["keys_sha256"] != trained_on[layer]["keys_sha256"]
    ]
    if changed:
        raise DatasetError(
            f"{run} was trained on other captures ({'; '.join(changed)}, chosen from "
            f"{before['dataset']}); use another --out to start a new run"
        )


def _write_provenance(run: Path, trained_on: dict, device: str) -> None:
    """RUN/run.json: the captures trained on and the versions that trained first; kept
    as it is when the run resumes."""
    path = run / PROVENANCE
    if path.exists():
        return
    record = {
        "captures": trained_on,
        "versions": {"rainbench": __version__, "torch": torch.__version__, "numpy": np.__version__},
        "device": device,
    }
    path.write_text(json.dumps(record, indent=2) + "\n")


def _write_settings(run: Path, config: RunConfig) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(json.dumps(config.to_json(), indent=2) + "\n")


def _save_checkpoint(method, run, step, model, optimizers, position, sampler, config) -> None:
    folder = run / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    head = {
        "format": method.checkpoint_format,
        "version": method.checkpoint_version,
        "config": config.to_json(),
        "step": step,
    }
    parts = {key: plain(module).state_dict() for key, module in method.parts(model).items()}
    state = {
        **head,
        **parts,
        **{key: optimizer.state_dict() for key, optimizer in optimizers.items()},
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
    # What the derainer needs, small: its networks and their shape (in the config).
    save_atomic({**head, **{key: parts[key] for key in method.derainer_parts}},
                run / f"{method.name}.pt")  # fmt: skip


def _load_checkpoint(method, path, model, optimizers, loader, sampler, device) -> int:
    state = torch.load(path, map_location=device, weights_only=True)
    if state.get("format") != method.checkpoint_format:
        raise DatasetError(f"{path} is not a rainbench {method.name} checkpoint")
    if state.get("version") != method.checkpoint_version:
        raise DatasetError(
            f"{path} was written by an earlier {method.name} trainer, whose networks "
            "differ from this one's; start a new run with another --out"
        )
    for key, module in method.parts(model).items():
        plain(module).load_state_dict(state[key])
    for key, optimizer in optimizers.items():
        optimizer.load_state_dict(state[key])
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


def _progress_line(method: Method, step: int, steps: int, values: dict[str, float]) -> str:
    terms = " ".join(f"{name} {values[name]:.4f}" for name in method.loss_terms if name in values)
    return f"step {step}/{steps}: {terms}"


class _Log:
    """losses.csv and validation.csv in the run folder, and TensorBoard when installed."""

    def __init__(self, run: Path, terms: tuple[str, ...], enabled: bool, resumed_at: int):
        self.enabled = enabled
        self.run = run
        self.terms = terms
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
        row = {"step": step, "epoch": epoch, "lr": lr, **{k: values.get(k) for k in self.terms}}
        self._append(self.run / "losses.csv", row)
        if self.board:
            for name in self.terms:
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
