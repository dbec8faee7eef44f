"""Run independent units of work on local processes, yielding results as they finish.

Units are plain picklable values and the function a module-level one, so another
engine (Ray, Spark) can stand in for this one without touching the callers. One
`WorkerPool` can serve several phases, so worker start-up is paid once. Workers exit
when the process that started them dies, however it dies.
"""

import multiprocessing
import os
import select
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, ProcessPoolExecutor, wait
from itertools import islice
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


class WorkerPool:
    """`workers` processes, started on first use; with one worker, work runs inline."""

    def __init__(self, workers: int):
        self.workers = workers
        self._executor: Executor | None = None

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._executor is not None:
            self._executor.shutdown(cancel_futures=True)

    def map_unordered(self, fn: Callable[[T], R], units: Iterable[T]) -> Iterator[R]:
        units = list(units)
        if self.workers <= 1 or len(units) <= 1:
            yield from map(fn, units)
            return
        pool = self._start(fn)
        # A bounded number of units in flight, so memory does not grow with the input.
        in_flight = 4 * self.workers
        queue = iter(units)
        pending = {pool.submit(fn, unit) for unit in islice(queue, in_flight)}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
            pending |= {pool.submit(fn, unit) for unit in islice(queue, len(done))}

    def map_ordered(self, fn: Callable[[T], R], units: Iterable[T]) -> Iterator[R]:
        """Like `map_unordered`, but results come in the order of `units`."""
        units = list(units)
        if self.workers <= 1 or len(units) <= 1:
            yield from map(fn, units)
            return
        pool = self._start(fn)
        queue = iter(units)
        ahead = deque(pool.submit(fn, unit) for unit in islice(queue, 4 * self.workers))
        while ahead:
            result = ahead.popleft().result()
            ahead.extend(pool.submit(fn, unit) for unit in islice(queue, 1))
            yield result

    def _start(self, fn: Callable) -> Executor:
        if self._executor is None:
            # forkserver, not fork: the parent may run threads (progress bars) and
            # OpenMP libraries (rawpy), neither of which survives a fork safely.
            context = multiprocessing.get_context("forkserver")
            # The fork server imports the work's module once (where it starts no threads:
            # no work runs there), and every worker forks with it imported instead of
            # importing it again. Effective when this process starts its fork server.
            context.set_forkserver_preload(["__main__", fn.__module__])
            self._executor = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=context,
                initializer=_exit_with,
                initargs=(os.getpid(),),
            )
        return self._executor


def _exit_with(parent: int) -> None:
    """Runs first in every worker: exit as soon as process `parent` is gone.

    A worker is the forkserver's child, not `parent`'s, and waits on a queue whose
    writing end it holds itself, so a `kill -9` of `parent` would leave the workers,
    and the forkserver that waits for them, running forever. A pidfd becomes readable
    when its process exits; without one (not Linux), `parent` is polled.
    """
    try:
        pidfd = os.pidfd_open(parent)
    except ProcessLookupError:
        os._exit(1)
    except (AttributeError, OSError):
        threading.Thread(target=_poll_then_exit, args=(parent,), daemon=True).start()
        return
    threading.Thread(target=_wait_then_exit, args=(pidfd,), daemon=True).start()


def _wait_then_exit(pidfd: int) -> None:
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    poller.poll()
    os._exit(1)


def _poll_then_exit(parent: int) -> None:
    while True:
        time.sleep(1.0)
        try:
            os.kill(parent, 0)
        except (ProcessLookupError, PermissionError):  # gone, or its pid reused by another user
            os._exit(1)


def distribute(fn: Callable[[T], R], units: Iterable[T], workers: int) -> Iterator[R]:
    """`fn` over `units` on a pool of its own."""
    with WorkerPool(workers) as pool:
        yield from pool.map_unordered(fn, units)


def available_memory(
    meminfo: Path = Path("/proc/meminfo"), cgroup: Path = Path("/sys/fs/cgroup")
) -> int:
    """Bytes free for new work: MemAvailable, or less where a cgroup limit is tighter;
    unbounded (a very large number) where neither can be read."""
    found = [2**62]
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    # cgroup v2 (memory.max, memory.current), else v1 (limit_in_bytes, usage_in_bytes)
    for limit, usage in (
        ("memory.max", "memory.current"),
        ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes"),
    ):
        try:
            cap = (cgroup / limit).read_text().strip()
            used = int((cgroup / usage).read_text().strip())
        except (OSError, ValueError):
            continue
        if cap.isdigit():  # "max" is no limit
            found.append(max(0, int(cap) - used))
        break
    return min(found)
