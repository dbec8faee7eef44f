"""Run independent units of work on local processes, yielding results as they finish.

Units are plain picklable values and the function a module-level one, so another
engine (Ray, Spark) can stand in for this one without touching the callers. One
`WorkerPool` can serve several phases, so worker start-up is paid once.
"""

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, ProcessPoolExecutor, wait
from itertools import islice
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
        pool = self._start()
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
        pool = self._start()
        queue = iter(units)
        ahead = deque(pool.submit(fn, unit) for unit in islice(queue, 4 * self.workers))
        while ahead:
            result = ahead.popleft().result()
            ahead.extend(pool.submit(fn, unit) for unit in islice(queue, 1))
            yield result

    def _start(self) -> Executor:
        if self._executor is None:
            # forkserver, not fork: the parent may run threads (progress bars) and
            # OpenMP libraries (rawpy), neither of which survives a fork safely.
            context = multiprocessing.get_context("forkserver")
            self._executor = ProcessPoolExecutor(max_workers=self.workers, mp_context=context)
        return self._executor


def distribute(fn: Callable[[T], R], units: Iterable[T], workers: int) -> Iterator[R]:
    """`fn` over `units` on a pool of its own."""
    with WorkerPool(workers) as pool:
        yield from pool.map_unordered(fn, units)
