"""Run independent units of work on local processes, yielding results as they finish.

Units are plain picklable values and the function a module-level one, so another
engine (Ray, Spark) can stand in for this one without touching the phases.
"""

import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def distribute(fn: Callable[[T], R], units: Iterable[T], workers: int) -> Iterator[R]:
    units = list(units)
    if workers <= 1 or len(units) <= 1:
        yield from map(fn, units)
        return
    # forkserver, not fork: the parent may run threads (progress bars) and OpenMP
    # libraries (rawpy), neither of which survives a fork safely.
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        # Keep a bounded number of units in flight so memory does not grow with the input.
        pending = set()
        queue = iter(units)
        for unit in queue:
            pending.add(pool.submit(fn, unit))
            if len(pending) >= 4 * workers:
                break
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
            for unit in queue:
                pending.add(pool.submit(fn, unit))
                if len(pending) >= 4 * workers:
                    break
