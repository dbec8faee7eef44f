"""How many threads torch may use on the CPU here: the CPUs this process may run on
(its affinity, and a container's CPU quota), less the data-loader workers running beside
it and the load other processes already put on those CPUs.

torch's default is one thread per core it sees. Oversubscribed, its OpenMP threads wait
on each other: on two cores kept busy, two threads made a step of the demo's generator
about 10× slower than one (`benchmarks/busy_threads.py`; docs/evaluation.md).

A library call puts torch's count back as it found it when it returns (`torch_threads`),
so a notebook that trains or evaluates keeps its own; only a process rainbench starts for
the work (a Ray actor) keeps the count it is given (`set_torch_threads`).
"""

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_CGROUP_QUOTA = Path("/sys/fs/cgroup/cpu.max")


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity, capped by a cgroup v2 quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        cpus = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(cpus, quota) if quota else cpus)


def _cgroup_quota() -> int | None:
    """`cpu.max` as whole CPUs ("200000 100000" → 2), None without a quota."""
    try:
        limit, period = _CGROUP_QUOTA.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if limit == "max":
        return None
    try:
        return max(1, math.ceil(int(limit) / int(period)))
    except (ValueError, ZeroDivisionError):
        return None


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows has no load average
        return 0.0


def _omp_num_threads() -> int | None:
    """The threads $OMP_NUM_THREADS asks for, as OpenMP reads it: the first of its list
    (one per nesting level). A value OpenMP ignores (0, text) is ignored here too, not
    refused with a traceback from every command that sets threads."""
    first = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return int(first) if first.isdigit() and int(first) >= 1 else None


def choose_threads(workers: int = 0, requested: int | None = None) -> int:
    """`requested` when given, else what $OMP_NUM_THREADS asks for (the usual way to
    ask); else the usable CPUs less `workers` (data-loader processes, each busy on a
    core) and less the CPUs already busy with other work (the one-minute load average),
    at least one."""
    if requested is None:
        requested = _omp_num_threads()
    if requested is not None:
        if requested < 1:
            raise ValueError(f"threads must be at least 1, got {requested}")
        return requested
    cpus = usable_cpus()
    idle = math.floor(cpus - _load() + 0.5)
    return max(1, min(cpus - workers, idle))


def set_torch_threads(workers: int = 0, requested: int | None = None) -> int:
    """Set torch's intra-op threads by `choose_threads` and return the number, for good:
    only in a process rainbench starts (a Ray actor); a library call uses `torch_threads`."""
    import torch

    threads = choose_threads(workers, requested)
    torch.set_num_threads(threads)
    return threads


@contextmanager
def torch_threads(workers: int = 0, requested: int | None = None) -> Iterator[int]:
    """torch's intra-op threads set by `choose_threads` (the number is yielded) for the
    block, and put back as the caller had them when it ends, by an exception too.

    A no-reference metric holds its count this way around each call, not once for its
    life: the set and the restore cost next to nothing beside the call. torch's inter-op
    threads are left alone: torch lets a process set those only once.
    """
    import torch

    before = torch.get_num_threads()
    threads = set_torch_threads(workers, requested)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)
