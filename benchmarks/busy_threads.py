"""How torch's CPU threads fare when the CPUs are already busy: why rainbench gives torch
one thread per CPU that is not busy (rainbench/threads.py) rather than one per CPU.

    python benchmarks/busy_threads.py                 # every usable CPU kept busy
    python benchmarks/busy_threads.py --spinners 0    # the same steps on idle CPUs

One training step of the demo's NLCL generator (4 blocks of 32 channels, a 64 px crop,
batch 1: forward, L1 loss, backward, Adam) is timed with 1 thread and with one per
usable CPU, alternated, while --spinners processes spin on a loop of their own. Prints
the median of --steps steps each and their ratio, measured within one run.
"""

import argparse
import statistics
import subprocess
import sys
import time

import torch

from rainbench.models.nlcl.generator import Generator
from rainbench.threads import usable_cpus


def step_seconds(
    generator: Generator, optimiser: torch.optim.Optimizer, crop: torch.Tensor, threads: int
) -> float:
    torch.set_num_threads(threads)
    start = time.perf_counter()
    optimiser.zero_grad()
    torch.nn.functional.l1_loss(generator(crop), crop).backward()
    optimiser.step()
    return time.perf_counter() - start


def main() -> int:
    cpus = usable_cpus()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--spinners", type=int, default=cpus, help="busy processes [default: one per usable CPU]"
    )
    parser.add_argument("--steps", type=int, default=10, help="timed steps per thread count")
    args = parser.parse_args()
    torch.manual_seed(0)
    generator = Generator(channels=32, blocks=4)
    optimiser = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    crop = torch.rand(1, 3, 64, 64) * 2 - 1
    counts = sorted({1, cpus})
    busy = [sys.executable, "-c", "while True: pass"]
    spinners = [subprocess.Popen(busy) for _ in range(args.spinners)]
    times = {count: [] for count in counts}
    try:
        for count in counts:  # a warm-up step per count, untimed
            step_seconds(generator, optimiser, crop, count)
        for _ in range(args.steps):
            for count in counts:
                times[count].append(step_seconds(generator, optimiser, crop, count))
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    print(f"{cpus} usable CPUs, {args.spinners} busy processes, median of {args.steps} steps")
    for count in counts:
        print(f"  {count} thread{'s' * (count != 1)}: {statistics.median(times[count]):.3f} s")
    if len(counts) > 1:
        ratio = statistics.median(times[cpus]) / statistics.median(times[1])
        print(f"  {cpus} threads / 1 thread: {ratio:.2f}×")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
