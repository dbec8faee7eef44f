"""Every GPU check in one run, one JSON: `pytest -m gpu`; the trainer's speed (batch-16
bf16 against batch-1 fp32, `benchmarks/train_nlcl.py`), again with its generators
compiled (`--compile`), and CCLGAN's; the public NLCL trainer's speed
on the same GPU, when RAINBENCH_NLCL_REFERENCE names an unpacked copy of its release;
12 MP `nlcl` inference; the loader's nvJPEG crops/s against its CPU decoders; and where
the GPU's answers may differ from the CPU's (`benchmarks/gpu_agreement.py`).

    bash benchmarks/gpu.sh --out gpu.json      # one H100/H200: under 8 minutes
    bash benchmarks/gpu.sh --dry-run           # the CPU at tiny sizes, as CI runs it
    bash benchmarks/gpu.sh --only train inference --out rerun.json

Each part runs in a process of its own under its own time limit, and all of them
within 8 minutes, so a hang or a crash costs that part alone: it is recorded with its
error and the rest still run. A measurement, not a test: exits 0 whatever the figures
and prints PASS or MISS per goal (1 only when asked for a GPU run without CUDA).

The public release has no licence, so none of its code is here: its own train.py runs
from where it was unpacked (it needs `dominate` beside this project's test extras;
RAINBENCH_NLCL_REFERENCE_PYTHON picks another interpreter for it).
"""

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from xml.etree import ElementTree

from bench import cpu_model, log  # benchmarks/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = "RAINBENCH_NLCL_REFERENCE"
REFERENCE_PYTHON = "RAINBENCH_NLCL_REFERENCE_PYTHON"
TRAIN_GOAL = 10.0  # batch-16 bf16 samples/s ≥ 10× batch-1 fp32's
REFERENCE_GOAL = 10.0  # ours (batch-16 bf16) ≥ 10× the public trainer's samples/s
INFERENCE_GOAL_S = 1.0  # one 12 MP image through `nlcl` in under a second
PIQE_TOLERANCE = 1e-3  # the GPU's PIQE against the CPU's, as tests/metrics holds it
MIN_PART_S = 15  # a part is not started with less of the budget left
NEVER = str(10**9)  # an iteration count the public trainer never reaches


@dataclass(frozen=True)
class Plan:
    """What one run measures, at which sizes, within which limits (seconds)."""

    name: str
    device: str
    budget_s: int
    timeouts: dict[str, int]
    train_crop: int
    train_steps: int
    train_warmup: int
    train_rows: tuple[tuple[int, str], ...]  # (batch, amp)
    compile_backend: str  # torch.compile's: "eager" only traces (the dry run)
    compile_warmup: int  # steps before the timed ones; the first compiles
    reference_crop: int
    reference_image: int  # side of its generated square training pictures
    reference_iterations: int
    reference_warmup: int  # iterations before the timed ones
    reference_threads: int  # its --num_threads (DataLoader workers)
    inference_size: tuple[int, int]  # height, width
    inference_repeats: int
    loader_captures: int
    loader_size: tuple[int, int]  # width, height
    loader_crop: int
    loader_k: int  # crops per decoded picture
    loader_repeats: int
    loader_decoders: tuple[str, ...]


# How the sizes keep the GPU run under 8 minutes is in docs/performance.md.
GPU = Plan(
    name="gpu",
    device="cuda",
    budget_s=480,
    timeouts={
        "pytest_gpu": 180,
        "train": 150,
        "train_compiled": 180,
        "cclgan": 90,
        "reference": 150,
        "inference": 60,
        "loader": 120,
        "agreement": 60,
    },
    train_crop=256,
    train_steps=20,
    train_warmup=3,
    train_rows=((1, "off"), (1, "bf16"), (16, "off"), (16, "bf16")),
    compile_backend="inductor",
    compile_warmup=3,
    reference_crop=256,
    reference_image=320,
    reference_iterations=40,
    reference_warmup=10,
    reference_threads=4,
    inference_size=(3000, 4000),
    inference_repeats=5,
    loader_captures=16,
    loader_size=(4000, 3000),
    loader_crop=256,
    loader_k=8,
    loader_repeats=2,
    loader_decoders=("pillow", "cpu", "cuda"),
)
# Its limits are generous: it checks that every part runs, not how fast. It takes 64 s
# on 2 cores at rest; a test run on a heavily loaded machine timed parts out at 60 s and
# spent a budget of 150 s.
DRY_RUN = Plan(
    name="dry-run",
    device="cpu",
    budget_s=480,
    timeouts={
        "pytest_gpu": 180,
        "train": 180,
        "train_compiled": 180,
        "cclgan": 180,
        "reference": 240,
        "inference": 90,
        "loader": 180,
        "agreement": 90,
    },
    train_crop=32,
    train_steps=1,
    train_warmup=1,
    train_rows=((1, "off"), (16, "bf16")),
    compile_backend="eager",
    compile_warmup=1,
    reference_crop=32,
    reference_image=48,
    reference_iterations=3,
    reference_warmup=1,
    reference_threads=0,
    inference_size=(120, 160),
    inference_repeats=2,
    loader_captures=4,
    loader_size=(640, 480),
    loader_crop=64,
    loader_k=4,
    loader_repeats=1,
    loader_decoders=("pillow", "cpu"),
)
PLANS = {plan.name: plan for plan in (GPU, DRY_RUN)}
DECODE_DEVICES = {"pillow": None, "cpu": "cpu", "cuda": "cuda"}  # RainDataset.decode_device


class Skipped(Exception):
    """A part that cannot run here, and why: recorded, not a failure."""


def at_least(value: float, goal: float) -> dict:
    return {"value": round(value, 3), "at_least": goal, "verdict": _verdict(value >= goal)}


def under(value: float, goal: float) -> dict:
    return {"value": round(value, 3), "under": goal, "verdict": _verdict(value < goal)}


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


# -- the parts: each runs in a child process and returns figures, goals, a summary ----


def pytest_gpu(plan: Plan, work: Path) -> dict:
    """`pytest -m gpu` (on the dry run the same command, where every test skips)."""
    report = work / "junit.xml"
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider"]
    # A module that cannot be imported there (a missing package) fails alone: the GPU
    # tests elsewhere still run (on the first H200 one such module stopped them all).
    command += ["--continue-on-collection-errors", f"--junitxml={report}"]
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if not report.exists():
        raise RuntimeError(
            f"pytest exited {finished.returncode} without a report: "
            f"{_last_line(finished.stdout + finished.stderr)}"
        )
    figures = {**junit_outcomes(report), "exit_code": finished.returncode}
    failing, hidden = figures["failing"], figures["gpu_tests_in_skipped_modules"]
    # On a GPU every GPU test must run and pass; on the CPU they skip, and none may fail.
    ran_all = figures["passed"] > 0 and figures["skipped"] == 0 and not hidden
    ok = not failing and (plan.device == "cpu" or ran_all)
    summary = f"{figures['passed']} passed, {len(failing)} failed, {figures['skipped']} skipped"
    if figures["modules_skipped"]:
        whole = len(figures["modules_skipped"])
        summary += f" ({whole} modules skipped whole, {len(hidden)} of them with GPU tests)"
    return {
        "figures": figures,
        "goals": {"every_gpu_test_passes": {"verdict": _verdict(ok)}},
        "summary": summary,
    }


# junit's outcome elements, by the count each adds to.
OUTCOMES = {"failure": "failed", "error": "errors", "skipped": "skipped"}


def junit_outcomes(report: Path) -> dict:
    """The tests' outcomes in a junit report. A module or folder skipped whole as it was
    collected (a package this machine lacks: PyAV, moto) is no test: it is listed apart,
    with those of them that hold GPU tests, which a skip would then hide."""
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    failing, modules_skipped = [], {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        outcome = next((child for child in case if child.tag in OUTCOMES), None)
        kind = "passed" if outcome is None else OUTCOMES[outcome.tag]
        # The message's first line (torch's errors go on with a C++ stack trace); for a
        # module that fails to import, whose message is "collection failure", the
        # traceback's last line.
        message = "" if outcome is None else _first_line(outcome.get("message") or "")
        if kind == "errors" and not case.get("classname"):
            message = _last_line(outcome.text or "") or message
        if kind == "skipped" and not case.get("classname"):
            modules_skipped[case.get("name")] = message
            continue
        counts[kind] += 1
        if kind in ("failed", "errors"):
            failing.append(f"{case.get('classname')}::{case.get('name')}: {message}")
    hidden = sorted(name for name in modules_skipped if _holds_gpu_tests(name))
    return {
        **counts,
        "failing": failing,
        "modules_skipped": modules_skipped,
        "gpu_tests_in_skipped_modules": hidden,
    }


def _holds_gpu_tests(module: str) -> bool:
    """Whether a test module or package junit names ("tests.store") marks GPU tests."""
    path = ROOT / module.replace(".", "/")
    files = [path.with_suffix(".py")] if path.with_suffix(".py").is_file() else path.rglob("*.py")
    return any("pytest.mark.gpu" in file.read_text(encoding="utf-8") for file in files)


def train_speed(plan: Plan, work: Path) -> dict:
    """The trainer's step at each (batch, amp) of the plan, through train_nlcl.measure."""
    from train_nlcl import measure

    rows = []
    for batch, amp in plan.train_rows:
        rows.append(
            measure(plan.device, batch, amp, plan.train_crop, plan.train_steps, plan.train_warmup)
        )
        log(f"  train: batch {batch}, amp {amp}: {rows[-1]['samples_per_s']} samples/s")
    base = _row(rows, 1, "off")["samples_per_s"]
    best = _row(rows, 16, "bf16")["samples_per_s"]
    # Beside the goal: the batch-16 bf16 step with NHWC weights and crops.
    nhwc = measure(plan.device, 16, "bf16", plan.train_crop, plan.train_steps,
                   plan.train_warmup, channels_last=True)  # fmt: skip
    log(f"  train: batch 16, amp bf16, NHWC: {nhwc['samples_per_s']} samples/s")
    figures = {
        "crop": plan.train_crop,
        "steps": plan.train_steps,
        "warmup": plan.train_warmup,
        "rows": rows,
        "ratio": round(best / base, 2),
        "channels_last_row": nhwc,
        "nhwc_over_nchw": round(nhwc["samples_per_s"] / best, 2),
    }
    return {
        "figures": figures,
        "goals": {"batch16_bf16_over_batch1_fp32": at_least(best / base, TRAIN_GOAL)},
        "summary": f"batch-16 bf16 / batch-1 fp32 samples/s = {best / base:.2f}×",
    }


def train_compiled(plan: Plan, work: Path) -> dict:
    """Batch-16 bf16 with the generators compiled as `rainbench train nlcl --compile`
    compiles them, against batch-1 fp32 as it trains by default (measured again here,
    so that this part stands alone). The first warm-up step compiles."""
    from train_nlcl import measure

    size = (plan.train_crop, plan.train_steps)
    base = measure(plan.device, 1, "off", *size, plan.train_warmup)
    compiled = measure(plan.device, 16, "bf16", *size, plan.compile_warmup,
                       compile_backend=plan.compile_backend)  # fmt: skip
    first = compiled["first_step_s"]
    log(f"  train_compiled: batch 16, amp bf16, {plan.compile_backend}: "
        f"{compiled['samples_per_s']} samples/s (first step {first} s)")  # fmt: skip
    ratio = compiled["samples_per_s"] / base["samples_per_s"]
    figures = {
        "backend": plan.compile_backend,
        "crop": plan.train_crop,
        "steps": plan.train_steps,
        "batch1_fp32": base,
        "compiled_batch16_bf16": compiled,
        "ratio": round(ratio, 2),
    }
    return {
        "figures": figures,
        "goals": {"compiled_batch16_bf16_over_batch1_fp32": at_least(ratio, TRAIN_GOAL)},
        "summary": f"compiled batch-16 bf16 / batch-1 fp32 samples/s = {ratio:.2f}× "
        f"(first step, compiling: {first} s)",
    }


def cclgan_speed(plan: Plan, work: Path) -> dict:
    """CCLGAN's training step (its trainer's own `train_step`, both discriminators then
    both generators with every contrast) at batch 1 fp32 and batch 16 bf16, random
    crops, a VGG16 of random weights (the same cost as pretrained ones)."""
    import torch

    from rainbench.train.cclgan.config import CCLGANConfig
    from rainbench.train.cclgan.trainer import CCLGANMethod

    device, crop, rows = plan.device, plan.train_crop, []
    for batch, amp in ((1, "off"), (16, "bf16")):
        config = CCLGANConfig(batch=batch, crop=crop, amp=amp, random_encoder=True)
        method = CCLGANMethod()
        torch.manual_seed(0)
        model = method.build(config).to(device)
        optimizers = method.optimizers(model, config)
        sampler = torch.Generator(device=device).manual_seed(0)
        data = {name: torch.rand(batch, 3, crop, crop, device=device) for name in ("rain", "clean")}
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        timings = []
        for index in range(plan.train_warmup + plan.train_steps):
            started = time.perf_counter()
            method.step(model, data, optimizers, sampler, config, device, False)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            if index >= plan.train_warmup:
                timings.append(time.perf_counter() - started)
        steps_per_s = len(timings) / sum(timings)
        peak = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None
        rows.append(
            {
                "batch": batch,
                "amp": amp,
                "steps_per_s": round(steps_per_s, 3),
                "samples_per_s": round(steps_per_s * batch, 2),
                "peak_gpu_mb": round(peak) if peak is not None else None,
            }
        )
        log(f"  cclgan: batch {batch}, amp {amp}: {rows[-1]['samples_per_s']} samples/s")
    ratio = _row(rows, 16, "bf16")["samples_per_s"] / _row(rows, 1, "off")["samples_per_s"]
    figures = {"crop": crop, "steps": plan.train_steps, "rows": rows, "ratio": round(ratio, 2)}
    return {
        "figures": figures,
        "goals": {},
        "summary": f"batch-16 bf16 / batch-1 fp32 samples/s = {ratio:.2f}×",
    }


def _row(rows: list[dict], batch: int, amp: str) -> dict:
    return next(row for row in rows if row["batch"] == batch and row["amp"] == amp)


def reference_speed(plan: Plan, work: Path) -> dict:
    """The public release's own train.py at batch 1 on generated unpaired pictures
    (trainA rainy, trainB clean), timed between its per-iteration loss lines."""
    folder = os.environ.get(REFERENCE)
    if not folder:
        raise Skipped(f"{REFERENCE} is not set (the path of the unpacked public NLCL release)")
    script = Path(folder) / "train.py"
    if not script.is_file():
        raise RuntimeError(f"{script} not found: {REFERENCE} must name the unpacked release")
    data = work / "unpaired"
    write_unpaired(data, plan.reference_iterations, plan.reference_image)
    python = os.environ.get(REFERENCE_PYTHON) or sys.executable
    options = {
        "dataroot": data,
        "model": "NLCL",
        "dataset_mode": "unaligned",
        "name": "gpu-bench",
        "checkpoints_dir": work / "checkpoints",
        "gpu_ids": 0 if plan.device == "cuda" else -1,
        "crop_size": plan.reference_crop,
        "batch_size": 1,
        "n_epochs": 1,  # and no decay: one epoch, one iteration per picture
        "n_epochs_decay": 0,
        "num_threads": plan.reference_threads,
        "print_freq": 1,  # a loss line per iteration: the marks timed
        "display_id": 0,  # no visdom
        "display_freq": NEVER,
        "save_latest_freq": NEVER,
        "save_epoch_freq": NEVER,
    }
    command = [python, "-u", str(script), "--no_html"]
    command += [arg for key, value in options.items() for arg in (f"--{key}", str(value))]
    marks = iteration_marks(command, work)
    last = max(marks, default=0)
    if last < plan.reference_warmup + 2 or plan.reference_warmup not in marks:
        raise RuntimeError(
            f"the public trainer printed {len(marks)} iteration lines, "
            f"{plan.reference_warmup + 2} needed"
        )
    timed = last - plan.reference_warmup
    per_iteration = (marks[last] - marks[plan.reference_warmup]) / timed
    figures = {
        "release": folder,
        "python": python,
        "crop": plan.reference_crop,
        "batch": 1,
        "iterations": last,
        "timed_iterations": timed,
        "seconds_per_iteration": round(per_iteration, 4),
        "samples_per_s": round(1 / per_iteration, 3),
        "timing": f"wall clock between its loss lines (--print_freq 1) after "
        f"{plan.reference_warmup} warm-up iterations",
    }
    return {
        "figures": figures,
        "goals": {},
        "summary": f"public trainer: {1 / per_iteration:.2f} samples/s",
    }


def write_unpaired(data: Path, count: int, side: int) -> None:
    """`count` rainy and `count` clean square pictures in the release's layout."""
    from PIL import Image

    from rainbench.demo.captures import render_scene

    for domain, first_seed in (("trainA", 0), ("trainB", count)):
        (data / domain).mkdir(parents=True, exist_ok=True)
        for number in range(count):
            pixels = render_scene(side, side, first_seed + number)
            Image.fromarray(pixels).save(data / domain / f"{number:04d}.png")


ITERATION_LINE = re.compile(r"^\(epoch: \d+, iters: (\d+),")


def iteration_marks(command: list[str], cwd: Path) -> dict[int, float]:
    """When each iteration's loss line arrived (perf_counter), by iteration number.
    RuntimeError with its last error line when the command fails."""
    marks: dict[int, float] = {}
    tail: deque[str] = deque(maxlen=20)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        for line in process.stdout:
            now = time.perf_counter()
            match = ITERATION_LINE.match(line)
            if match:
                marks[int(match[1])] = now
            tail.append(line.rstrip())
    if process.returncode:
        raise RuntimeError(f"the public trainer exited {process.returncode}: {_error_line(tail)}")
    return marks


def _error_line(lines: deque[str]) -> str:
    for line in reversed(lines):
        if re.match(r"^\w+(Error|Exception)\b", line):
            if "No module named" in line:
                return f"{line} (install it for the release's interpreter; see --help)"
            return line
    return _last_line("\n".join(lines))


def inference_time(plan: Plan, work: Path) -> dict:
    """A randomly initialised full-size generator (the same cost as trained weights)
    through `create_derainer("nlcl")`, fp32 as it runs, the input already on the device
    as `rainbench eval` gives it; timed after a warm-up, synchronised."""
    import torch

    from rainbench.models.nlcl.checkpoint import CHECKPOINT_FORMAT
    from rainbench.models.nlcl.generator import Generator
    from rainbench.models.registry import create_derainer

    torch.manual_seed(0)
    checkpoint = work / "nlcl-random.pt"  # no config: the paper's size, as published
    torch.save({"format": CHECKPOINT_FORMAT, "background": Generator().state_dict()}, checkpoint)
    derainer = create_derainer("nlcl", checkpoint, plan.device)
    height, width = plan.inference_size
    batch = torch.rand(1, 3, height, width, device=plan.device)
    cuda = plan.device == "cuda"

    def once() -> float:
        started = time.perf_counter()
        with torch.inference_mode():
            derainer.derain(batch)
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - started

    once()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    seconds = [once() for _ in range(plan.inference_repeats)]
    median = statistics.median(seconds)
    figures = {
        "shape": [1, 3, height, width],
        "megapixels": round(height * width / 1e6, 2),
        "dtype": "float32",
        "seconds": [round(value, 4) for value in seconds],
        "median_s": round(median, 4),
        "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
    }
    return {
        "figures": figures,
        "goals": {"seconds_per_image": under(median, INFERENCE_GOAL_S)},
        "summary": f"3×{height}×{width} in {median:.3f} s (median of {plan.inference_repeats})",
    }


def loader_speed(plan: Plan, work: Path) -> dict:
    """Crops/s of `RainDataset` in one process over the same JPEG dataset, per decoder:
    Pillow (the default), torch's on the CPU (TorchCodec, else torchvision), nvJPEG; one
    untimed pass each, then interleaved timed passes, best kept."""
    from ingest import capture_specs  # the ingest benchmark's varied JPEG captures

    from rainbench.demo.captures import write_capture
    from rainbench.ingest import IngestOptions, ingest
    from rainbench.parallel import distribute

    width, height = plan.loader_size
    specs = [
        replace(spec, width=width, height=height) for spec in capture_specs(plan.loader_captures)
    ]
    workers = min(len(specs), os.cpu_count() or 1)
    list(distribute(partial(write_capture, work / "captures"), specs, workers))
    root = work / "dataset"
    options = IngestOptions(workers=workers, split={"train": 1.0, "val": 0.0, "test": 0.0})
    summary = ingest([work / "captures"], root, options)
    if summary.accepted != len(specs):
        raise RuntimeError(f"ingest accepted {summary.accepted} of {len(specs)} captures")
    expected = len(specs) * plan.loader_k
    passes = {decoder: partial(one_pass, root, plan, decoder) for decoder in plan.loader_decoders}
    for run in passes.values():
        run()
    seconds: dict[str, list[float]] = {decoder: [] for decoder in passes}
    for _ in range(plan.loader_repeats):
        for decoder, run in passes.items():
            crops, took = run()
            if crops != expected:
                raise RuntimeError(f"{decoder}: {crops} crops, {expected} expected")
            seconds[decoder].append(took)
    speed = {decoder: expected / min(times) for decoder, times in seconds.items()}
    figures = {
        "captures": len(specs),
        "size": [width, height],
        "crop": plan.loader_crop,
        "crops_per_image": plan.loader_k,
        "crops_per_pass": expected,
        "seconds": {
            decoder: [round(value, 3) for value in times] for decoder, times in seconds.items()
        },
        "crops_per_s": {decoder: round(value, 1) for decoder, value in speed.items()},
    }
    if "cuda" in speed:
        figures["nvjpeg_over_cpu"] = round(speed["cuda"] / speed["cpu"], 2)
        figures["nvjpeg_over_pillow"] = round(speed["cuda"] / speed["pillow"], 2)
    summary = ", ".join(f"{decoder} {value:.0f}" for decoder, value in speed.items())
    return {"figures": figures, "goals": {}, "summary": f"crops/s: {summary}"}


def one_pass(root: Path, plan: Plan, decoder: str) -> tuple[int, float]:
    """Crops of one pass over the dataset and its wall time, building the dataset included."""
    import torch

    from rainbench.data import Filters, RainDataset

    started = time.perf_counter()
    dataset = RainDataset(
        root,
        filters=Filters(split="train"),
        crop=plan.loader_crop,
        crops_per_image=plan.loader_k,
        decode_device=DECODE_DEVICES[decoder],
    )
    crops = sum(1 for _ in dataset)
    if decoder == "cuda":
        torch.cuda.synchronize()
    return crops, time.perf_counter() - started


def agreement(plan: Plan, work: Path) -> dict:
    """benchmarks/gpu_agreement.py: PIQE on the GPU against the CPU, and which kinds of
    JPEG nvJPEG decodes."""
    if plan.device != "cuda":
        raise Skipped("compares the GPU with the CPU: only on a GPU run")
    from gpu_agreement import measure_all

    figures = measure_all()
    piqe = figures["piqe_i04"]
    gap = abs(piqe["cuda_float32"] - piqe["cpu"])
    refused = [name for name, result in figures["nvjpeg"].items() if not result["decoded"]]
    return {
        "figures": figures,
        "goals": {"piqe_cuda_equals_cpu": under(gap, PIQE_TOLERANCE)},
        "summary": f"PIQE CUDA − CPU {gap:.6f}; nvJPEG refuses: {', '.join(refused) or 'none'}",
    }


PARTS: dict[str, Callable[[Plan, Path], dict]] = {
    "pytest_gpu": pytest_gpu,
    "train": train_speed,
    "train_compiled": train_compiled,
    "cclgan": cclgan_speed,
    "reference": reference_speed,
    "inference": inference_time,
    "loader": loader_speed,
    "agreement": agreement,
}


def run_part_here(name: str, plan: Plan, work: Path, result: Path) -> None:
    """The child's side: one part, its record written to `result`."""
    work.mkdir(parents=True, exist_ok=True)
    try:
        record = {"status": "ok", **PARTS[name](plan, work)}
    except Skipped as reason:
        record = {"status": "skipped", "reason": str(reason)}
    except Exception as error:  # any failure is this part's, recorded with its error
        traceback.print_exc()
        record = {"status": "failed", "error": f"{type(error).__name__}: {_last_line(str(error))}"}
    result.write_text(json.dumps(record))


# -- the driver ------------------------------------------------------------------------


def run_all(plan: Plan, names: list[str], work: Path) -> dict:
    started = time.perf_counter()
    records = {}
    for name in PARTS:
        if name not in names:
            records[name] = {"status": "skipped", "reason": "not asked for (--only)"}
            continue
        left = plan.budget_s - (time.perf_counter() - started)
        if left < MIN_PART_S:
            reason = f"the {plan.budget_s} s budget is spent"
            records[name] = {"status": "skipped", "reason": reason}
            continue
        timeout = int(min(plan.timeouts[name], left))
        log(f"{name} (at most {timeout} s)")
        records[name] = run_child(name, plan, work, timeout)
        log(f"  {name}: {records[name]['status']} in {records[name]['seconds']} s")
    compare_with_reference(records)
    return {"parts": records, "total_seconds": round(time.perf_counter() - started, 1)}


def run_child(name: str, plan: Plan, work: Path, timeout: int) -> dict:
    """One part in a process group of its own, killed whole when it overruns."""
    result = work / f"{name}.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--part", name, "--plan", plan.name]
    command += ["--result", str(result), "--work", str(work / name)]
    started = time.perf_counter()
    process = subprocess.Popen(command, start_new_session=True)
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        code = None
    finally:  # also on Ctrl-C; and what the part left running (workers, the public trainer)
        _kill_group(process)
    if code is None:
        record = {"status": "timed out", "error": f"still running after {timeout} s: stopped"}
    elif result.exists():
        record = json.loads(result.read_text())
    else:
        record = {"status": "failed", "error": f"its process exited {code} without a result"}
    record["seconds"] = round(time.perf_counter() - started, 1)
    record["timeout_s"] = timeout
    return record


def _kill_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group may have ended already
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def compare_with_reference(records: dict) -> None:
    """Ours (batch-16 bf16, from the train part) over the public trainer's samples/s."""
    reference, train = records.get("reference", {}), records.get("train", {})
    if reference.get("status") != "ok":
        return
    if train.get("status") != "ok":
        reference["goals"]["ours_over_reference"] = {
            "verdict": "MISS",
            "error": "the train part did not run",
        }
        return
    ours = _row(train["figures"]["rows"], 16, "bf16")["samples_per_s"]
    theirs = reference["figures"]["samples_per_s"]
    reference["figures"]["ours_samples_per_s"] = ours
    reference["goals"]["ours_over_reference"] = at_least(ours / theirs, REFERENCE_GOAL)
    reference["summary"] += f"; ours (batch-16 bf16) {ours:.2f}: {ours / theirs:.2f}×"


def _installed(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine() -> dict:
    import torch
    import torchvision

    from rainbench.data.dataset import torch_jpeg_decoder

    return {
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "gpus": torch.cuda.device_count(),
        "driver": _command_line(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
        ),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "torchvision": torchvision.__version__,
        "torchcodec": _installed("torchcodec"),
        "jpeg_decoder": getattr(torch_jpeg_decoder(), "__name__", None),  # decode_device's
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "rainbench_commit": _command_line(["git", "-C", str(ROOT), "rev-parse", "HEAD"]),
    }


def _command_line(command: list[str]) -> str | None:
    """The first line a command prints, or None where it is missing or fails."""
    try:
        finished = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = finished.stdout.strip().splitlines()
    return lines[0].strip() if finished.returncode == 0 and lines else None


def _first_line(text: str) -> str:
    return next(iter(_lines(text)), "")


def _last_line(text: str) -> str:
    return next(reversed(_lines(text)), "")


def _lines(text: str) -> list[str]:
    """The text's lines that hold something, stripped."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def report(document: dict) -> None:
    if document["mode"] == "dry-run":
        print(
            "CPU dry run at tiny sizes: its verdicts say nothing about the goals, "
            "which are for one H100/H200"
        )
    else:
        info = document["machine"]
        print(
            f"{info['gpu']}, driver {info['driver']}, torch {info['torch']} "
            f"(CUDA {info['torch_cuda']})"
        )
    width = max(map(len, document["parts"])) + 1
    print(f"{'part':<{width}} {'status':<10} {'s':>6}  result")
    for name, record in document["parts"].items():
        result = record.get("summary") or record.get("reason") or record.get("error", "")
        print(f"{name:<{width}} {record['status']:<10} {record.get('seconds', 0):>6.1f}  {result}")
        for goal, verdict in record.get("goals", {}).items():
            print(f"{'':<{width + 19}}{goal}: {_goal_text(verdict)}")
    print(f"total {document['total_seconds']} s")


def _goal_text(verdict: dict) -> str:
    if "at_least" in verdict:
        return f"{verdict['value']} (goal ≥ {verdict['at_least']}) {verdict['verdict']}"
    if "under" in verdict:
        return f"{verdict['value']} (goal < {verdict['under']}) {verdict['verdict']}"
    return verdict["verdict"]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dry-run", action="store_true", help="the CPU at tiny sizes (CI)")
    parser.add_argument(
        "--out", type=Path, help="the JSON (default gpu.json; gpu-dry-run.json on a dry run)"
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=PARTS,
        default=list(PARTS),
        metavar="PART",
        help=f"run only these parts ({', '.join(PARTS)}); the others are recorded as skipped",
    )
    # A part's own process: python gpu.py --part NAME --plan PLAN --result FILE --work DIR
    parser.add_argument("--part", choices=PARTS, help=argparse.SUPPRESS)
    parser.add_argument("--plan", choices=PLANS, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:
        run_part_here(args.part, PLANS[args.plan], args.work, args.result)
        return 0
    plan = DRY_RUN if args.dry_run else GPU
    out = args.out or Path("gpu-dry-run.json" if args.dry_run else "gpu.json")
    info = machine()
    if plan.device == "cuda" and not info["gpu"]:
        print(
            "error: no CUDA device here; bash benchmarks/gpu.sh --dry-run runs the CPU dry run",
            file=sys.stderr,
        )
        return 1
    with tempfile.TemporaryDirectory(prefix="rainbench-gpu-") as work:
        runs = run_all(plan, args.only, Path(work))
    goals = {
        f"{name}.{goal}": verdict["verdict"]
        for name, record in runs["parts"].items()
        for goal, verdict in record.get("goals", {}).items()
    }
    document = {
        "script": "benchmarks/gpu.sh",
        "mode": plan.name,
        "device": plan.device,
        "budget_s": plan.budget_s,
        "machine": info,
        **runs,
        "goals": goals,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2) + "\n")
    report(document)
    print(f"JSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
