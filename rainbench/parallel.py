"""Run independent units of work on local processes, yielding results as they finish.

Units are plain picklable values and the function a module-level one, so another
engine (Ray, Spark) can stand in for this one without touching the callers. One
`WorkerPool` can serve several phases, so worker start-up is paid once. Workers exit
when the process that started them dies, however it dies. Ctrl-C is the main
process's to report: workers and their fork server stay quiet (`_interrupted`).
"""

import multiprocessing
import multiprocessing.forkserver
import multiprocessing.util
import os
import select
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import TypeVar

from rainbench.errors import RainbenchError

T = TypeVar("T")
R = TypeVar("R")

_running = False  # in a worker: whether a unit runs now (`_interrupted`)
# rainbench's settings from the environment that decide what a worker may read (the
# readers' pixel cap, rainbench.capture.decode). A worker forks from a fork server that
# kept the environment of its own start, perhaps long before: it is given the owner's
# as the pool starts.
SETTINGS = ("RAINBENCH_MAX_PIXELS",)


class WorkerPool:
    """`workers` processes, started on first use; with one worker, work runs inline."""

    def __init__(self, workers: int):
        refuse_while_importing_main()
        self.workers = workers
        self._executor: Executor | None = None

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._executor is not None:
            self._executor.shutdown(cancel_futures=True)

    def map_unordered(self, fn: Callable[[T], R], units: Iterable[T]) -> Iterator[R]:
        """`fn` of each of `units`, as each finishes; `fn`'s exception is raised here."""
        units = list(units)
        if self.workers <= 1 or len(units) <= 1:
            yield from map(fn, units)
            return
        pool = self._start(fn, len(units))
        # A bounded number of units in flight, so memory does not grow with the input.
        in_flight = 4 * self.workers
        queue = iter(units)
        with _workers_lost_said():
            pending = {pool.submit(_run, fn, unit) for unit in islice(queue, in_flight)}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
                pending |= {pool.submit(_run, fn, unit) for unit in islice(queue, len(done))}

    def map_ordered(self, fn: Callable[[T], R], units: Iterable[T]) -> Iterator[R]:
        """Like `map_unordered`, but results come in the order of `units`."""
        units = list(units)
        if self.workers <= 1 or len(units) <= 1:
            yield from map(fn, units)
            return
        pool = self._start(fn, len(units))
        queue = iter(units)
        with _workers_lost_said():
            ahead = deque(pool.submit(_run, fn, unit) for unit in islice(queue, 4 * self.workers))
            while ahead:
                result = ahead.popleft().result()
                ahead.extend(pool.submit(_run, fn, unit) for unit in islice(queue, 1))
                yield result

    def _start(self, fn: Callable, units: int) -> Executor:
        if self._executor is None:
            # forkserver, not fork: the parent may run threads (progress bars) and
            # OpenMP libraries (rawpy), neither of which survives a fork safely.
            context = multiprocessing.get_context("forkserver")
            # The fork server imports the work's module once (where it starts no threads:
            # no work runs there), and every worker forks with it imported instead of
            # importing it again. Effective when this process starts its fork server.
            # `__main__` is asked for too, but Python 3.11–3.13 never pass its path to
            # the fork server (they file it under another key), so each worker imports
            # the main script itself, after the work's module. `rainbench.forkserver`
            # keeps quiet a worker started just as SIGTERM ends this process
            # (`_terminated`).
            context.set_forkserver_preload(["rainbench.forkserver", "__main__", fn.__module__])
            # Every worker is started here, with a Ctrl-C meanwhile held until they all
            # are: one that came while a worker was being started (the fork server
            # imports the modules first, a second or so) left that worker unknown to
            # the pool, which then did not wait for it, and it printed a traceback.
            with _ctrl_c_held():
                # Ignored, not held, while the fork server starts: it inherits that
                # through exec, where a handler would not survive it (a Ctrl-C in those
                # milliseconds is lost).
                with _ctrl_c_handled_by(signal.SIG_IGN):
                    multiprocessing.forkserver.ensure_running()
                _die_quietly_on_sigterm()
                self._executor = ProcessPoolExecutor(
                    max_workers=self.workers,
                    mp_context=context,
                    initializer=_start_worker,
                    initargs=(os.getpid(), {name: os.environ.get(name) for name in SETTINGS}),
                )
                # The pool starts a worker for each unit submitted while none is idle
                # (as many as there are units; a later phase may start the others).
                for _ in range(min(self.workers, units)):
                    self._executor.submit(int)
        return self._executor


class WorkerLost(RainbenchError):
    """A worker process died before it finished its work: killed (the system's
    out-of-memory killer, `kill -9`), or crashed in native code."""


@contextmanager
def _workers_lost_said() -> Iterator[None]:
    """Python's BrokenProcessPool, a traceback, as one line saying what happened."""
    try:
        yield
    except BrokenProcessPool:
        raise WorkerLost(
            "a worker process died before it finished its work (killed by the system when "
            "memory runs short or by hand, or crashed); run the same command again to go "
            "on, with fewer --workers if memory is short"
        ) from None


def refuse_while_importing_main() -> None:
    """Refuse, in one line, rainbench work that a worker process starts while it imports
    the user's script again (Python's spawn and forkserver children do, before any work):
    the script calls rainbench at its top level, outside `if __name__ == "__main__":`,
    and would run again in every worker (where its dataset's lock, held by the script's
    own process, said another command was writing). A RuntimeError, as Python's own
    refusal of a process started there: it ends that worker, not a command."""
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise RuntimeError(
            "a rainbench worker process imports your script again before it starts, and "
            "the script calls rainbench at its top level: put that call under "
            '`if __name__ == "__main__":`'
        )


@contextmanager
def _ctrl_c_handled_by(handler: Callable | signal.Handlers) -> Iterator[None]:
    """Ctrl-C (SIGINT) goes to `handler` in the block, and where it went before after
    it. Only the main thread may set handlers; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)


@contextmanager
def _ctrl_c_held() -> Iterator[None]:
    """Ctrl-C in the block is held, and taken after it as it would have been then
    (Python's own handler raises KeyboardInterrupt)."""
    held = []
    with _ctrl_c_handled_by(lambda signum, frame: held.append(signum)):
        yield
    handler = signal.getsignal(signal.SIGINT)
    if held and callable(handler):
        handler(signal.SIGINT, None)


def _die_quietly_on_sigterm() -> None:
    """Let SIGTERM end this process as it would anyway, by the signal and without
    unwinding (a killed ingest resumes from its journal), but first remove the named
    semaphores of its pools' queues, as multiprocessing does at a normal exit. Left
    behind, the resource tracker, which outlives this process, warns of them as leaked.
    Only where SIGTERM has no handler yet, and only the main thread may set one."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminated)


def _terminated(signum: int, frame: object) -> None:
    try:
        multiprocessing.util._run_finalizers(0)  # the semaphores' unlinking, first at exit
    finally:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _start_worker(parent: int, settings: dict[str, str | None]) -> None:
    """Runs first in every worker: exit as soon as process `parent` is gone, take Ctrl-C
    as `_interrupted` says, and hold rainbench's `settings` as the pool's owner does."""
    _exit_with(parent)
    for name, value in settings.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    signal.signal(signal.SIGINT, _interrupted)


def _run(fn: Callable[[T], R], unit: T) -> R:
    """One unit of work in a worker, known to be running while it runs."""
    global _running
    _running = True
    try:
        return fn(unit)
    finally:
        _running = False


def _interrupted(signum: int, frame: object) -> None:
    """Ctrl-C in a worker (a terminal sends it to every process of the command): a
    running unit stops with KeyboardInterrupt, as anywhere, which its caller gets; an
    idle worker takes no notice, where Python printed the traceback of its wait for
    work. The main process says it in one line and ends the pool, which tells idle
    workers to exit (and `_exit_with` ends them if it dies first)."""
    if _running:
        raise KeyboardInterrupt


def _exit_with(parent: int) -> None:
    """Exit as soon as process `parent` is gone.

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
