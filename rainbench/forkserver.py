"""What the fork server of rainbench's worker pools loads on start (`parallel` asks it
to): a worker it starts for a pool whose owner is ending says nothing of it.

A pool's owner ended by SIGTERM removes its queues' named semaphores first (`parallel`),
as Python does at a normal exit. A worker the fork server was starting just then cannot
open them, and the fork server printed that traceback; the worker has no pool to serve
and exits all the same. Any other failure to start is printed as before."""

import multiprocessing.synchronize
import sys
from types import TracebackType


def _owner_ended(
    kind: type[BaseException], error: BaseException, trace: TracebackType | None
) -> bool:
    """Whether `error` is a semaphore of the owner's gone while the worker unpickled it."""
    if not issubclass(kind, FileNotFoundError) or trace is None:
        return False
    while trace.tb_next is not None:
        trace = trace.tb_next
    code = trace.tb_frame.f_code
    return (
        code.co_name == "__setstate__" and code.co_filename == multiprocessing.synchronize.__file__
    )


_printed_before = sys.excepthook


def _excepthook(
    kind: type[BaseException], error: BaseException, trace: TracebackType | None
) -> None:
    if not _owner_ended(kind, error, trace):
        _printed_before(kind, error, trace)


sys.excepthook = _excepthook
