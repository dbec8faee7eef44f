"""The step loop every trainer runs: rainy crops and unpaired clean crops from
`rainbench.data`, the method's step, every loss term logged (CSV, and TensorBoard when
installed), checkpoints that hold everything an exact resume needs (networks,
optimisers, step, RNG states, loader position), written atomically, and a periodic
validation. A `Method` says what is trained and how one step goes.

A run folder is locked while trained into; a run resumes from its last checkpoint
(else its newest readable step checkpoint), with the settings that do not change what
a step computes free to change; SIGINT and SIGTERM stop it at the end of the step
under way, with a checkpoint there.

Under torchrun (WORLD_SIZE > 1) every rank trains on its share of the data with
averaged gradients (`average_gradients`); only rank 0 writes, after checking that the
ranks' weights are identical. The learning rate is a function of the step (`set_lr`),
so there is no scheduler state to lose.
"""

import csv
import hashlib
import io
import json
import os
import random
import re
import signal
import sys
import threading
import time
import warnings
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

from rainbench import __version__
from rainbench.data import Filters, Loader, RainDataset
from rainbench.data.dataset import Slot, current_slot
from rainbench.data.select import OnlyVideos
from rainbench.errors import first_line
from rainbench.files import naming, write_atomic
from rainbench.metrics.registry import versions
from rainbench.models.base import CheckpointError, load_weights
from rainbench.models.nlcl.checkpoint import save_atomic
from rainbench.models.trained_on import TRAINED_ON, pack_keys
from rainbench.shards.dataset import (
    Dataset,
    DatasetError,
    LockHeld,
    first_missing,
    remove_if_only_lock,
    writer_lock,
)
from rainbench.threads import torch_threads
from rainbench.train.core.config import RunConfig
from rainbench.train.core.validation import check_validation, validate

PROVENANCE = "run.json"  # in RUN/: what the run trains on, and with which versions
LOCK = ".lock"  # in RUN/: held by the process training into it, naming it
# What a run folder holds, besides RUN/<method>.pt and hidden files (write_atomic's).
RUN_NAMES = frozenset(
    {"config.json", PROVENANCE, "losses.csv", "validation.csv", "tensorboard", "checkpoints"}
)
_STEP_CHECKPOINT = re.compile(r"step-(\d+)\.pt")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Method(Protocol):
    """What a trainer brings to the loop. `check(config)` refuses settings its networks
    cannot honour (a `SettingsError`), before anything is read or written; `parts(model)`
    names every module a checkpoint holds (its keys in the file); `derainer_parts` are
    those RUN/<name>.pt keeps for the `name` derainer; `translate` maps rainy images in
    [-1, 1] to clean ones, for validation."""

    name: str
    checkpoint_format: str
    checkpoint_version: int
    loss_terms: tuple[str, ...]
    derainer_parts: tuple[str, ...]

    def check(self, config: RunConfig) -> None: ...

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


class TrainWarning(UserWarning):
    """What the user should hear about a run that goes on: the checkpoint it resumes
    from is not last.pt, settings changed on resume, the loader's position given up."""


class RunBusy(DatasetError):
    """Another process is training into the run folder."""


@dataclass
class TrainReport:
    run: Path
    step: int
    resumed_from: int | None
    seconds: float
    last: dict[str, float]
    threads: int  # torch's CPU threads
    stopped_by: str | None = None  # "SIGINT" or "SIGTERM": stopped early, with a checkpoint

    def to_dict(self) -> dict:
        return {**self.__dict__, "run": str(self.run)}


@dataclass
class _Checkpoint:
    path: Path
    state: dict

    @property
    def step(self) -> int:
        return int(self.state["step"])


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
    workers (`rainbench.threads`), and put back as they were on return; they change
    speed, not what a step computes beyond rounding, so a run may resume with another
    count. SIGINT and SIGTERM stop training at the end of the step under way, with a
    checkpoint there (`TrainReport.stopped_by`).
    """
    method.check(config)
    with ExitStack() as held:
        threads = held.enter_context(torch_threads(config.workers, threads))
        ours = not torch.distributed.is_initialized()  # a caller's own group stays theirs
        distributed = _start_distributed(device)
        if distributed and ours:
            # Torn down before the interpreter exits: left to its end, gloo's threads have
            # ended a rank with SIGABRT ("terminate called without an active exception").
            held.callback(torch.distributed.destroy_process_group)
        rank = torch.distributed.get_rank() if distributed else 0
        if distributed and device.startswith("cuda"):
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        _check_folder(run, method, config)
        if rank == 0:  # the only writer
            made = first_missing(run)
            run.mkdir(parents=True, exist_ok=True)
            try:
                held.enter_context(writer_lock(run / LOCK))
            except LockHeld as error:
                raise RunBusy(
                    f"another rainbench command is training into {run}: {error.holder}; "
                    "wait for it to finish, or give another --out"
                ) from None
            if made:  # a run stopped before it wrote anything leaves no folder behind
                held.callback(remove_if_only_lock, run / LOCK, made)
            # What a save cut short by SIGKILL left (write_atomic's): a later save of the
            # same name replaces it, but a step another --checkpoint-every skips never comes.
            for cut_short in (run / "checkpoints").glob(".*.tmp"):
                cut_short.unlink(missing_ok=True)
        return _train(method, dataset, run, config, device, progress, distributed, rank,
                      threads)  # fmt: skip


def _train(
    method: Method,
    dataset: str | Path,
    run: Path,
    config: RunConfig,
    device: str,
    progress: bool,
    distributed: bool,
    rank: int,
    threads: int,
) -> TrainReport:
    speak = rank == 0  # warnings: once, not once per rank
    resume = _resume_point(method, run, speak)
    changes = _check_resume(run, config, resume) if resume else {}
    noted = {name: change for name, change in changes.items() if name in config.RESUMABLE}
    if noted and speak:  # `steps` grows as a matter of course: not news
        warnings.warn(f"{run}: resuming at step {resume.step} with {_changes(noted)}",
                      TrainWarning, stacklevel=2)  # fmt: skip
    if config.validate_every:  # what validation reads, now, not at its first turn
        check_validation(dataset, config, device)
    _seed_everything(config.seed + rank)
    model = method.build(config).to(device)
    if distributed:  # every rank starts from rank 0's initial weights
        _broadcast(model)
    optimizers = method.optimizers(model, config)
    loader = _loader(dataset, config)
    trained_on = _captures(dataset, loader)
    keys = _capture_keys(loader)
    sampler = torch.Generator(device=device).manual_seed(config.seed + rank)
    # The loader processes the loader's position counts in: -j 0 reads in this process.
    layout = {"world_size": current_slot().count, "workers": max(1, config.workers)}
    step, resumed_from = 0, None
    if resume:
        _check_captures(run, trained_on)
        _restore(method, resume, model, optimizers, loader, sampler, layout, rank, speak)
        step = resumed_from = resume.step
    if rank == 0:  # only now: a run that could not start leaves no settings behind
        _write_settings(run, config)
        _write_provenance(run, trained_on, device, threads, resumed_from, changes)
    if config.compile:
        method.compile(model)

    def save_checkpoint() -> None:
        position = _loader_position(loader, distributed)
        rng = {**_random_states(sampler, distributed), **_rank_buffers(method, model, distributed)}
        if distributed:
            _check_in_step(model)
        if rank == 0:
            _save_checkpoint(method, run, step, model, optimizers, position, rng, config,
                             layout, keys)  # fmt: skip

    log = _Log(run, method.loss_terms, enabled=rank == 0, resumed_at=step)

    def validate_now() -> None:
        scores = validate(lambda x: method.translate(model, x), model, dataset, config, device)
        log.validation(step, scores)

    # A run killed while it validated (after its checkpoint) resumes with that validation.
    due = config.validate_every and step and step % config.validate_every == 0
    if rank == 0 and due and not log.validated(step):
        validate_now()
    started, last, stopped = time.perf_counter(), {}, None
    with _StopSignals() as stop:
        while step < config.steps and stopped is None:
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
                saved = step % config.checkpoint_every == 0 or step == config.steps
                if saved:
                    save_checkpoint()
                if rank == 0 and config.validate_every and step % config.validate_every == 0:
                    validate_now()
                if step < config.steps:
                    stopped = stop.asked(distributed, device)
                if stopped is not None:
                    if not saved:
                        save_checkpoint()
                    break
            else:
                loader.set_epoch(loader.dataset.epoch + 1)
    log.close()
    stopped_by = signal.Signals(stopped).name if stopped is not None else None
    return TrainReport(run, step, resumed_from, time.perf_counter() - started, last, threads,
                       stopped_by)  # fmt: skip


def autocast(config: RunConfig, device: str) -> AbstractContextManager:
    """bf16 autocast when the run asks for it, else nothing."""
    if config.amp == "bf16":
        return torch.autocast(device.split(":")[0], dtype=torch.bfloat16)
    return nullcontext()


def set_lr(optimizers, config: RunConfig, step: int) -> None:
    """Every group's rate for step `step` (counted from 0): lr, times the group's
    `lr_scale`; over the last N = decay_steps steps a linear decay, lr·N/(N+1) down to
    lr·1/(N+1) (as CUT decays over its last epochs; 0 would come one step after the
    last). A function of the step, `steps` and `decay_steps`: a run resumes with other
    `steps` or `decay_steps` only where no step it trained would have had another rate
    (`_check_resume`)."""
    share = min(1.0, (config.steps - step) / (config.decay_steps + 1))
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["lr"] = config.lr * share * group.get("lr_scale", 1.0)


def decay_start(config: RunConfig) -> int:
    """The first step (counted from 0) that `set_lr` gives less than lr."""
    return config.steps - config.decay_steps


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
            on_error=config.on_error,
        )
    except OnlyVideos as error:
        raise DatasetError(
            f"cannot train on {dataset}: {error.selection} are all videos, which training "
            "does not read (it learns from still pictures): choose a split of stills with "
            "--split, or ingest rainy stills; rainbench pairs makes real pairs of the "
            "videos' frames, for --val-split and rainbench eval"
        ) from None
    except DatasetError as error:
        raise DatasetError(f"cannot train on {dataset}: {error}") from None
    # Each loader process (ranks × workers) batches its own crops and drops a partial
    # batch: with fewer crops than a batch in each, an epoch would give nothing, forever.
    # Ranks train in step (every step averages their gradients), so each rank's epoch
    # ends after the shortest rank's batches (`equal_ranks`): a rank with no batch would
    # leave the others waiting, forever.
    ranks, workers = current_slot().count, max(1, config.workers)

    def most(rank: int) -> int:  # the crops of a rank's fullest loader process
        slots = ranks * workers
        return max(data.slot_items(Slot(rank * workers + w, slots)) for w in range(workers))

    short = min(range(ranks), key=most)
    if most(short) < config.batch:
        whose, lower = f"the {workers}", "--batch or -j"
        if ranks > 1:
            whose, lower = f"rank {short} of {ranks}'s {workers}", "--batch, -j or --nproc-per-node"
        raise DatasetError(
            f"--batch {config.batch} is more than the {most(short)} crops each of {whose} "
            f"loader processes gets per epoch ({len(data)} in all): no batch would ever be "
            f"full; lower {lower}"
        )
    return Loader(
        data,
        equal_ranks=ranks > 1,
        batch_size=config.batch,
        num_workers=config.workers,
        drop_last=True,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=False,
        worker_init_fn=_ignore_stop_signals,
        # Each epoch's iterator draws its worker seed from this, not from torch's global
        # generator (the crops come from the dataset's own seeds): a resumed run, which
        # starts its iterator mid-epoch, then saves the random state an uninterrupted run
        # saves.
        generator=torch.Generator(),
    )


def _ignore_stop_signals(worker: int) -> None:
    """In a loader process: SIGINT and SIGTERM are the main process's to handle (it ends
    the step under way, saves, and shuts its workers down); a worker they ended would
    take that step with it. Ctrl-C reaches every process of the terminal's group."""
    for number in STOP_SIGNALS:
        signal.signal(number, signal.SIG_IGN)


class _StopSignals:
    """While held, SIGINT and SIGTERM ask the loop to stop at the end of the step under
    way (`asked`); a second one acts at once, as it would have without this. Signals are
    caught only in the main thread (Python runs handlers nowhere else)."""

    def __enter__(self) -> "_StopSignals":
        self.received: int | None = None
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            self.previous = {
                number: signal.signal(number, self._receive) for number in STOP_SIGNALS
            }
        return self

    def _receive(self, number: int, frame) -> None:
        self.received = number
        signal.signal(number, self._previous(number))

    def _previous(self, number: int):
        previous = self.previous[number]
        return signal.SIG_DFL if previous is None else previous  # None: set outside Python

    def __exit__(self, *exc) -> None:
        for number in self.previous:
            signal.signal(number, self._previous(number))

    def asked(self, distributed: bool, device: str) -> int | None:
        """The signal received, here or on any rank: the ranks stop at the same step."""
        if not distributed:
            return self.received
        flag = torch.tensor([self.received or 0], device=device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return int(flag) or None


def _check_folder(run: Path, method: Method, config: RunConfig) -> None:
    """A run folder is new, empty, or a run of this method: never a file, a dataset,
    another method's run or somebody else's folder (hidden names aside)."""
    if run.exists() and not run.is_dir():
        raise DatasetError(f"{run} is a file, not a folder; give --out a folder for the run")
    if not run.is_dir():
        return
    if Dataset(run).exists():
        raise DatasetError(
            f"{run} is a rainbench dataset; give --out a folder of the run's own, "
            f"e.g. runs/{method.name}"
        )
    try:
        settings = json.loads((run / "config.json").read_text())
    except (OSError, ValueError):  # none, or unreadable: the checkpoint's settings count
        settings = {}
    theirs = set(settings) - set(config.to_json()) if isinstance(settings, dict) else set()
    if theirs:  # settings this method does not have: another method's run
        raise DatasetError(
            f"{run} is a run of another method (its config.json has "
            f"{', '.join(sorted(theirs)[:3])}, which {type(config).__name__} has not); "
            "use another --out to start a new run"
        )
    ours = RUN_NAMES | {f"{method.name}.pt"}
    foreign = sorted(name for name in os.listdir(run) if name not in ours and name[0] != ".")
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if foreign[3:] else "")
        raise DatasetError(
            f"{run} is not empty and not a {method.name} run (it holds {shown}); give --out "
            "a new or empty folder"
        )


def _resume_point(method: Method, run: Path, speak: bool) -> _Checkpoint | None:
    """The checkpoint the run goes on from: last.pt, else (missing or unreadable) the
    newest step checkpoint that reads, which a warning names; None for a run without
    checkpoints, which starts afresh whatever its folder holds. A run none of whose
    checkpoints reads is refused: never started over them."""
    folder = run / "checkpoints"
    last = folder / "last.pt"
    numbered = sorted(_step_checkpoints(folder).items(), reverse=True)
    candidates = ([last] if last.exists() else []) + [path for _, path in numbered]
    problems: dict[Path, str] = {}
    for path in candidates:
        try:
            checkpoint = _Checkpoint(path, _read_checkpoint(method, path))
        except _Unreadable as error:
            problems[path] = str(error)
            continue
        if path != last and speak:
            lost = f"cannot be read ({problems[last]})" if last in problems else "is missing"
            warnings.warn(
                f"{last} {lost}; resuming from {path.name}, step {checkpoint.step}",
                TrainWarning,
                stacklevel=2,
            )
        return checkpoint
    if not problems:
        return None
    path, problem = next(iter(problems.items()))
    raise DatasetError(
        f"no checkpoint of {run} can be read ({path.name}: {problem}); delete {folder} to "
        "start the run over, or give another --out"
    )


def _step_checkpoints(folder: Path) -> dict[int, Path]:
    """checkpoints/step-NNNNNNN.pt by step."""
    found = {}
    for path in folder.glob("step-*.pt"):
        match = _STEP_CHECKPOINT.fullmatch(path.name)
        if match:
            found[int(match[1])] = path
    return found


class _Unreadable(Exception):
    """A checkpoint file that cannot be resumed from; the message says why."""


def _read_checkpoint(method: Method, path: Path) -> dict:
    """The checkpoint's state on the CPU (restoring moves it), read as a derainer's is:
    a FIFO, or an archive that would inflate beyond memory, is refused unread."""
    try:
        state = load_weights(path)
    except CheckpointError:  # torch says many things, in many words, of a file it cannot read
        raise _Unreadable("damaged, cut short, or not a checkpoint file") from None
    if not isinstance(state, dict) or state.get("format") != method.checkpoint_format:
        raise _Unreadable(f"not a rainbench {method.name} checkpoint")
    version = state.get("version")
    if type(version) is int and version > method.checkpoint_version:
        raise DatasetError(
            f"{path} was written by a later {method.name} trainer (checkpoint version "
            f"{version}; this rainbench reads {method.checkpoint_version}); resume it with "
            "the rainbench that wrote it, or start a new run with another --out"
        )
    if version != method.checkpoint_version:
        raise DatasetError(
            f"{path} was written by an earlier {method.name} trainer, whose networks "
            "differ from this one's; start a new run with another --out"
        )
    missing = [key for key in ("step", "config", "loader", "rng") if key not in state]
    if missing:
        raise _Unreadable(f"it has no {', '.join(missing)}")
    if type(state["step"]) is not int or state["step"] < 0:
        raise _Unreadable(f"its step is {state['step']!r}, not a count of steps")
    odd = [key for key in ("config", "loader", "rng") if not isinstance(state[key], dict)]
    if odd:
        raise _Unreadable(f"its {', '.join(odd)} is not what this trainer writes")
    return state


def _check_resume(run: Path, config: RunConfig, checkpoint: _Checkpoint) -> dict[str, tuple]:
    """The settings changed since `checkpoint` was saved, each name → (then, now), when
    the run may go on with them: those that do not change what a step computes
    (`RunConfig.RESUMABLE`), and `steps` and `decay_steps` where no trained step would
    have had another learning rate. Any other change is refused, naming each."""
    step = checkpoint.step
    if step > config.steps:
        raise DatasetError(
            f"{run} has trained {step} steps already, more than the {config.steps} asked "
            f"for: ask for {step} or more to go on from its last checkpoint"
        )
    try:
        before = type(config).from_json(checkpoint.state["config"])
    except (TypeError, ValueError) as error:
        raise DatasetError(
            f"{checkpoint.path} does not hold this method's settings: {first_line(error)}"
        ) from None
    changed = before.differences(config)
    schedule = {name: change for name, change in changed.items()
                if name in ("steps", "decay_steps")}  # fmt: skip
    refused = {name: change for name, change in changed.items()
               if name not in config.RESUMABLE and name not in schedule}  # fmt: skip
    if refused:
        raise DatasetError(
            f"{run} was trained with other settings ({_changes(refused)}); resume with "
            "those, or use another --out to start a new run"
        )
    start = max(0, min(decay_start(before), decay_start(config)))
    if schedule and step > start:
        raise DatasetError(
            f"{run} has trained {step} steps with --steps {before.steps} --decay-steps "
            f"{before.decay_steps}; with {_changes(schedule)} the learning rate of step "
            f"{start + 1} on would differ from the one it had: go on with --steps "
            f"{before.steps} --decay-steps {before.decay_steps}, or start a new run with "
            "another --out"
        )
    return changed


def _changes(changed: dict[str, tuple]) -> str:
    return ", ".join(
        f"{name}: {_setting(then)} → {_setting(now)}" for name, (then, now) in changed.items()
    )


def _setting(value: object) -> str:
    """A setting as a message shows it: an unset one (None) in a word, a list of names
    as its option takes it (`drizzle,storm`)."""
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) or "none"
    return "none" if value is None else str(value)


def _captures(dataset: str | Path, loader: Loader) -> dict:
    """What the run trains on: the rainy and clean captures its filters select, each
    set by the sha256 of its sorted keys (a key is a hash of the capture's bytes), so the
    same captures match wherever the dataset lies and whatever else its manifests say."""
    data = loader.dataset

    def chosen(samples) -> dict:
        keys = "\n".join(sorted(samples["key"])).encode()
        return {"count": len(samples), "keys_sha256": hashlib.sha256(keys).hexdigest()}

    return {"dataset": str(dataset), "rainy": chosen(data.samples), "clean": chosen(data.clean)}


def _capture_keys(loader: Loader) -> dict:
    """The keys of the captures the run trains on, packed for its checkpoints: what eval
    compares a split's images with (`rainbench.models.trained_on`)."""
    data = loader.dataset
    return {"rainy": pack_keys(data.samples["key"]), "clean": pack_keys(data.clean["key"])}


def _read_provenance(run: Path) -> dict | None:
    path = run / PROVENANCE
    if not path.exists():  # a run from before its captures were recorded
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as error:
        raise DatasetError(
            f"{path} cannot be read ({first_line(error)}); delete it to resume without "
            "checking the captures"
        ) from None


def _check_captures(run: Path, trained_on: dict) -> None:
    """Refuse to resume a run on other captures: its loader position, and what its
    checkpoints learnt from, belong to the ones it started on."""
    record = _read_provenance(run)
    if record is None:
        return
    before = record["captures"]
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


def _write_provenance(
    run: Path,
    trained_on: dict,
    device: str,
    threads: int,
    resumed_from: int | None,
    changes: dict,
) -> None:
    """RUN/run.json: the captures trained on and the versions, device and torch threads
    that trained first, made anew for a new run (one that never saved a checkpoint too);
    a resumed run adds the settings it changed, under `resumes`."""
    record = _read_provenance(run) if resumed_from is not None else None
    if record is None:
        record = {
            "captures": trained_on,
            # torch's own version names its build too (+cu130: which CUDA computed).
            "versions": {"rainbench": __version__, **versions(), "torch": torch.__version__},
            "device": device,
            # torch's CPU threads: they change a step's rounding (docs/nlcl.md).
            "threads": threads,
        }
    elif not changes:
        return
    if changes:
        changed = {name: list(change) for name, change in changes.items()}
        record.setdefault("resumes", []).append({"step": resumed_from, "changed": changed})
    write_atomic(run / PROVENANCE, (json.dumps(record, indent=2) + "\n").encode())


def _write_settings(run: Path, config: RunConfig) -> None:
    write_atomic(run / "config.json", (json.dumps(config.to_json(), indent=2) + "\n").encode())


def _save_checkpoint(method, run, step, model, optimizers, position, rng, config,
                     layout, keys) -> None:  # fmt: skip
    folder = run / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    head = {
        "format": method.checkpoint_format,
        "version": method.checkpoint_version,
        "config": config.to_json(),
        "step": step,
        TRAINED_ON: keys,
    }
    parts = {key: plain(module).state_dict() for key, module in method.parts(model).items()}
    state = {
        **head,
        **parts,
        **{key: optimizer.state_dict() for key, optimizer in optimizers.items()},
        "loader": position,
        "layout": layout,  # the loader processes `position` counts in
        **rng,
    }
    save_atomic(state, folder / f"step-{step:07d}.pt")
    # What the derainer needs, small: its networks, their shape (in the config) and the
    # captures they learnt from (eval's check for images it has seen).
    save_atomic({**head, **{key: parts[key] for key in method.derainer_parts}},
                run / f"{method.name}.pt")  # fmt: skip
    # last.pt last: a run resumes from it, so a run killed before it trains this step again
    # and saves the rest (a run that resumes at its last step saves nothing).
    save_atomic(state, folder / "last.pt")
    if config.keep_checkpoints:
        # Up to this step: later ones are left by a run resumed from before them (they
        # did not read), and are replaced as it gets there.
        kept = sorted(number for number in _step_checkpoints(folder) if number <= step)
        for number in kept[: -config.keep_checkpoints]:
            (folder / f"step-{number:07d}.pt").unlink(missing_ok=True)


def _restore(method, checkpoint, model, optimizers, loader, sampler, layout, rank,
             speak) -> None:  # fmt: skip
    """Everything of `checkpoint` back in place, each rank's own buffers and random
    states. The loader's position counts per loader process (ranks × workers): under
    another layout the rest of its epoch is given up, and training goes on with the next
    one (every rank then takes rank 0's buffers and random states)."""
    state = checkpoint.state
    try:
        for key, module in method.parts(model).items():
            if problem := _misfit(state.get(key), plain(module)):
                raise ValueError(f"its {key} weights {problem}")
            plain(module).load_state_dict(state[key])
        own = state.get("rank_buffers")  # none from a single process, nor from before
        if isinstance(own, list) and len(own) == layout["world_size"]:
            for key, module in method.parts(model).items():
                for name, buffer in plain(module).named_buffers():
                    buffer.copy_(own[rank][f"{key}.{name}"])
        for key, optimizer in optimizers.items():
            optimizer.load_state_dict(state[key])
    except (RuntimeError, ValueError, KeyError, TypeError) as error:  # torch's words vary
        raise DatasetError(
            f"{checkpoint.path} does not fit this run's networks ({first_line(error)}); "
            "delete it to resume from an earlier checkpoint, or give another --out"
        ) from None
    try:  # what a crafted or foreign file holds here, said in a line
        _restore_position(checkpoint, loader, sampler, layout, rank, speak)
    except (RuntimeError, ValueError, KeyError, TypeError, AttributeError, IndexError) as error:
        why = f"no {error}" if isinstance(error, KeyError) else first_line(error)
        raise DatasetError(
            f"{checkpoint.path} holds a loader position or random states this trainer "
            f"cannot restore ({why}); delete it to resume from an earlier checkpoint, or "
            "give another --out"
        ) from None


def _misfit(weights, module: nn.Module) -> str | None:
    """How a checkpoint's `weights` do not fit `module`, the first difference named (torch
    names them all, after a first line that names none); None where they fit."""
    if not isinstance(weights, dict):
        return "are missing" if weights is None else f"are a {type(weights).__name__}"
    expected = module.state_dict()
    for name, value in expected.items():
        if name not in weights:
            return f"lack {name!r}"
        found = getattr(weights[name], "shape", None)
        if found != value.shape:
            shape = "no tensor" if found is None else f"shape {tuple(found)}"
            return f"hold {shape} for {name!r}, this run's network {tuple(value.shape)}"
    extra = sorted(set(weights) - set(expected), key=str)
    return f"hold {extra[0]!r}, which this run's network has not" if extra else None


def _restore_position(checkpoint, loader, sampler, layout, rank, speak) -> None:
    state = checkpoint.state
    rng = state["rng"]
    ranks = state.get("rank_rng")  # none before they were kept, nor from a single process
    if isinstance(ranks, list) and len(ranks) == layout["world_size"]:
        rng = ranks[rank]
    if rng["sampler"].numel() != sampler.get_state().numel():  # a CUDA generator's, or CPU's
        raise DatasetError(
            f"{checkpoint.path} holds the random state of a sampler on another kind of "
            f"device than {sampler.device.type}: resume with the --device the run trained on "
            "(run.json names it)"
        )
    # Checkpoints from before layouts were recorded: the world size was this one.
    before = state.get("layout", {**layout, "workers": max(1, state["config"]["workers"])})
    # The same captures (_check_captures) in other shards are ordered otherwise: the
    # counts would repeat some and skip others. None before samples were recorded.
    saved = state["loader"].get("samples")
    now = loader.dataset.selection
    if before == layout and saved in (None, now):
        loader.load_state_dict(state["loader"])
    else:
        epoch = state["loader"]["epoch"]
        loader.set_epoch(epoch + 1)
        why = (
            f"was saved by {before['world_size']} × {before['workers']} loader processes "
            f"(ranks × workers), this run has {layout['world_size']} × {layout['workers']}"
            if before != layout
            else "was saved over the same captures in other shards (ingested again since)"
        )
        if speak:
            warnings.warn(
                f"{checkpoint.path} {why}: the rest of epoch {epoch} is skipped, training "
                f"goes on with epoch {epoch + 1}",
                TrainWarning,
                stacklevel=4,
            )
    torch.set_rng_state(rng["torch"].cpu())
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
    sampler.set_state(rng["sampler"].to(sampler.get_state().device))
    _set_numpy_state(rng["numpy"])
    random.setstate((3, tuple(rng["python"]), None))


def _random_states(sampler: torch.Generator, distributed: bool) -> dict:
    """A checkpoint's random states: this process's (`rng`), and under torchrun every
    rank's (`rank_rng`, gathered; each rank was seeded apart and resumes its own)."""
    rng = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "sampler": sampler.get_state(),
        "numpy": _numpy_state(),
        "python": list(random.getstate()[1]),
    }
    if not distributed:
        return {"rng": rng}
    everyone = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(everyone, rng)
    return {"rng": rng, "rank_rng": everyone}


def _rank_buffers(method: Method, model: nn.Module, distributed: bool) -> dict:
    """Under torchrun, every rank's buffers (`rank_buffers`, gathered): the weights are
    the same on every rank, but a buffer a step updates from the rank's own data (hcsc's
    key memories) is not, and each rank resumes its own."""
    if not distributed:
        return {}
    mine = {f"{key}.{name}": buffer.detach().cpu()
            for key, module in method.parts(model).items()
            for name, buffer in plain(module).named_buffers()}  # fmt: skip
    everyone = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(everyone, mine)
    return {"rank_buffers": everyone}


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
        except ImportError:  # tensorboard is optional: the CSV has every number
            return
        with naming(run / "tensorboard"):
            # Events of steps after `resumed_at` (logged by a killed run after its
            # checkpoint, or by a start that saved none) are dropped from the display, as
            # the CSV rows are: else the resumed steps would show twice.
            self.board = SummaryWriter(str(run / "tensorboard"), purge_step=resumed_at + 1)
        if threading.excepthook is not _quiet_board_thread:
            _quiet_board_thread.hook = threading.excepthook
            threading.excepthook = _quiet_board_thread

    def write(self, step: int, epoch: int, lr: float, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        row = {"step": step, "epoch": epoch, "lr": lr, **{k: values.get(k) for k in self.terms}}
        self._append(self.run / "losses.csv", row)
        scalars = {f"loss/{name}": values[name] for name in self.terms if name in values}
        self._to_board(step, {**scalars, "lr": lr})

    def validation(self, step: int, scores: dict[str, float]) -> None:
        if not self.enabled:
            return
        self._append(self.run / "validation.csv", {"step": step, **scores})
        self._to_board(step, {f"validation/{name}": value for name, value in scores.items()})

    def validated(self, step: int) -> bool:
        """Whether validation.csv has a row for `step`."""
        path = self.run / "validation.csv"
        if not path.exists():
            return False
        with open(path, newline="", encoding="utf-8") as handle:
            return any(row["step"] == str(step) for row in csv.DictReader(handle))

    def close(self) -> None:
        if self.board:
            with naming(self.run / "tensorboard"):
                self.board.close()

    def _to_board(self, step: int, scalars: dict[str, float]) -> None:
        if self.board:
            with naming(self.run / "tensorboard"):  # a full disk, said where
                for name, value in scalars.items():
                    self.board.add_scalar(name, value, step)

    @staticmethod
    def _append(path: Path, row: dict) -> None:
        # A resumed run may validate on other things (--val-split, --val-real): its rows
        # go under the log's own header, widened by new columns, never under another's.
        columns = _header(path)
        added = [name for name in row if name not in columns]
        if columns and added:
            _rewrite(path, columns + added)
        with naming(path), open(path, "a", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns + added)
            if not columns:
                writer.writeheader()
            writer.writerow(row)


def _quiet_board_thread(args: threading.ExceptHookArgs) -> None:
    """TensorBoard writes from a thread of its own, which keeps what ended it (a full
    disk) for the writer to raise again in the training's thread, where it is said in
    one line: the thread's own traceback would say the same at length. Every other
    thread's exception goes to the hook there was before."""
    thread = args.thread
    if not (
        type(thread).__module__.startswith("tensorboard.")
        and getattr(thread, "exception", None) is args.exc_value
    ):
        _quiet_board_thread.hook(args)


def _header(path: Path) -> list[str]:
    """The columns of a CSV log; none for a log not begun."""
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return next(csv.reader(handle), [])


def _rewrite(path: Path, columns: list[str]) -> None:
    """The log with the header `columns` (its own, and new ones left blank in its rows)."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    _replace(path, columns, rows)


def _replace(path: Path, columns: list[str], rows: list[dict]) -> None:
    """A log replaced whole: a run killed meanwhile keeps the log it had. Values past a
    row's header (earlier trainers appended other scores under it) have no column: left out."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, text.getvalue().encode("utf-8"))


def _truncate(path: Path, step: int) -> None:
    """Drop the rows of a log beyond `step`; the whole log when none is left (a new run
    may log other columns). A row cut short (the disk filled as it was appended) goes
    too: cut inside its step ("1" of "12") it would pass for an earlier step's."""
    if not path.exists():
        return
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    kept = [row for row in rows if None not in row.values() and int(row["step"]) <= step]
    if not kept:
        path.unlink()
        return
    if len(kept) == len(rows):
        return
    _replace(path, list(rows[0]), kept)
