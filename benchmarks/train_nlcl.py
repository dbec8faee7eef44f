"""NLCL training speed: steps/s, samples/s and peak GPU memory of one training step at
batch 1 and batch 16, 256×256 crops, fp32 and bf16 autocast, measured in one run.

    python benchmarks/train_nlcl.py --device cuda            # the goal is for one H100
    python benchmarks/train_nlcl.py --device cpu --crop 64 --steps 3   # a CPU smoke run
    python benchmarks/train_nlcl.py --device cuda --channels-last   # and NHWC beside
    python benchmarks/train_nlcl.py --device cuda --compile   # and `train --compile` beside
    python benchmarks/train_nlcl.py --device cuda --profile 4       # where the time goes

Goal (issue 8): batch-16 bf16 at least 10× the samples/s of batch-1 fp32 on one H100.
The step is the trainer's own (`_train_step`: discriminator and generator updates with
both contrasts); crops are random tensors, so data loading is not measured (the
loader has its own benchmark). Exits 0 whatever the figures.
"""

import argparse
import json
import sys
import time
from collections.abc import Callable
from functools import partial

import torch

from rainbench.train.nlcl.config import NLCLConfig
from rainbench.train.nlcl.model import NLCLModel
from rainbench.train.nlcl.trainer import NLCLMethod, _train_step


def measure(
    device: str,
    batch: int,
    amp: str,
    crop: int,
    steps: int,
    warmup: int,
    channels_last: bool = False,
    compile_backend: str | None = None,
) -> dict:
    """One row: the step's speed at this batch and autocast. `channels_last` stores the
    weights and crops as NHWC, cuDNN's own layout (the trainer keeps NCHW: batch-16
    bf16 ran at 0.92× in NHWC on an H200). `compile_backend` compiles the generators as
    `rainbench train nlcl --compile` does ("inductor"; "eager" only traces); the first
    warm-up step compiles, and its time is the row's `first_step_s`."""
    step = training_step(device, batch, amp, crop, channels_last, compile_backend)
    cuda = device.startswith("cuda")
    first_step = None
    for index in range(warmup):
        began = time.perf_counter()
        step()
        if index == 0:
            if cuda:
                torch.cuda.synchronize()
            first_step = round(time.perf_counter() - began, 2)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    return {
        "batch": batch,
        "amp": amp,
        "channels_last": channels_last,
        "compiled": compile_backend,
        "first_step_s": first_step,
        "steps_per_s": round(steps / seconds, 3),
        "samples_per_s": round(steps * batch / seconds, 3),
        "peak_gpu_gib": round(peak, 2) if peak is not None else None,
    }


def training_step(
    device: str,
    batch: int,
    amp: str,
    crop: int,
    channels_last: bool = False,
    compile_backend: str | None = None,
) -> Callable[[], dict]:
    """The trainer's step on a fresh model and fixed random crops, seeded."""
    config = NLCLConfig(batch=batch, crop=crop, amp=amp)
    torch.manual_seed(0)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = NLCLModel(config).to(device, memory_format=layout)
    if compile_backend:
        NLCLMethod().compile(model, compile_backend)
    betas = (config.beta1, config.beta2)
    g_opt = torch.optim.Adam(model.generator_parameters(), lr=config.lr, betas=betas)
    d_opt = torch.optim.Adam(model.discriminator.parameters(), lr=config.lr, betas=betas)
    sampler = torch.Generator(device=device).manual_seed(0)
    crops = {
        name: torch.rand(batch, 3, crop, crop, device=device).to(memory_format=layout)
        for name in ("rain", "clean")
    }
    return partial(_train_step, model, crops, g_opt, d_opt, sampler, config, device)


def profile(device: str, batch: int, amp: str, crop: int, steps: int, warmup: int) -> str:
    """torch.profiler over `steps` steps after `warmup`: the wall time, the device's
    busy time and kernel launches per step, and the kernels that take the most time.
    The profiler slows the host side, so the wall time is not the row's speed."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    step = training_step(device, batch, amp, crop)
    for _ in range(warmup):
        step()
    cuda = device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    if cuda:
        torch.cuda.synchronize()
    started = time.perf_counter()
    with torch_profile(activities=activities) as profiler:
        for _ in range(steps):
            step()
        if cuda:
            torch.cuda.synchronize()
    wall = (time.perf_counter() - started) / steps
    events = profiler.key_averages()
    head = f"batch {batch}, amp {amp}: {wall:.3f} s a step profiled"
    if cuda:  # the kernels' own time (not the operators', which would count it twice)
        kernels = [event for event in events if event.device_type == DeviceType.CUDA]
        busy = sum(event.self_device_time_total for event in kernels) / 1e6 / steps
        launches = sum(e.count for e in events if e.key.startswith("cudaLaunchKernel")) / steps
        head += f", kernels {busy:.3f} s a step, {launches:.0f} kernel launches a step"
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    return head + "\n" + events.table(sort_by=key, row_limit=15, max_name_column_width=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--channels-last", action="store_true", help="each row again with NHWC weights and crops"
    )
    parser.add_argument(
        "--compile", action="store_true", help="each row again with the generators compiled"
    )
    parser.add_argument(
        "--profile", type=int, metavar="STEPS", help="then profile STEPS steps of each row"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    # (channels_last, compile_backend) of each group of rows; plain NCHW eager first
    variants = [(False, None)] + [(True, None)] * args.channels_last
    variants += [(False, "inductor")] * args.compile
    rows = [
        measure(args.device, batch, amp, args.crop, args.steps, args.warmup, *variant)
        for variant in variants
        for batch in (1, 16)
        for amp in ("off", "bf16")
    ]
    base = next(r for r in rows if r["batch"] == 1 and r["amp"] == "off")
    best = next(r for r in rows if r["batch"] == 16 and r["amp"] == "bf16")
    ratio = best["samples_per_s"] / base["samples_per_s"]
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    result = {"device": device_name, "crop": args.crop, "rows": rows, "ratio": round(ratio, 2),
              "torch": torch.__version__}  # fmt: skip
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"device: {device_name}, torch {torch.__version__}, crops {args.crop}×{args.crop}")
    print(f"{'batch':>5} {'amp':>5} {'layout':>6} {'compiled':>9} {'first s':>8} "
          f"{'steps/s':>9} {'samples/s':>10} {'peak GiB':>9}")  # fmt: skip
    for row in rows:
        peak = "—" if row["peak_gpu_gib"] is None else f"{row['peak_gpu_gib']:.2f}"
        layout = "NHWC" if row["channels_last"] else "NCHW"
        first = "—" if row["first_step_s"] is None else f"{row['first_step_s']:.2f}"
        print(f"{row['batch']:>5} {row['amp']:>5} {layout:>6} {row['compiled'] or 'no':>9} "
              f"{first:>8} {row['steps_per_s']:>9.3f} {row['samples_per_s']:>10.3f} "
              f"{peak:>9}")  # fmt: skip
    verdict = "PASS" if ratio >= 10 else "MISS"
    where = "" if args.device.startswith("cuda") else " (not a GPU: the goal is for an H100)"
    print(f"batch-16 bf16 / batch-1 fp32 samples/s = {ratio:.2f}× (goal ≥ 10) {verdict}{where}")
    plain_rows = rows[:4]
    for row in rows[4:]:
        plain = next(r for r in plain_rows if (r["batch"], r["amp"]) == (row["batch"], row["amp"]))
        gain = row["samples_per_s"] / plain["samples_per_s"]
        name = "NHWC / NCHW" if row["channels_last"] else "compiled / eager"
        print(f"batch {row['batch']} {row['amp']}: {name} samples/s = {gain:.2f}×")
        if row["compiled"] and row["batch"] == 16 and row["amp"] == "bf16":
            ratio = row["samples_per_s"] / base["samples_per_s"]
            print(f"compiled batch-16 bf16 / batch-1 fp32 samples/s = {ratio:.2f}×")
    for row in plain_rows if args.profile else ():
        print(profile(args.device, row["batch"], row["amp"], args.crop, args.profile, args.warmup))
    return 0


if __name__ == "__main__":
    sys.exit(main())
