import subprocess
import sys

import pytest

# A fork server's worker whose start unpickles its first argument, then a lock. With
# "remove", the owner removes the lock's semaphore meanwhile, as a pool's owner ended by
# SIGTERM does (`rainbench.parallel`); the slow first argument holds the worker till then.
_OWNER = """
import multiprocessing, multiprocessing.util, sys, time


class FirstArgument:
    def __reduce__(self):
        return {unpickled_as}


if __name__ == "__main__":
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(sys.argv[2:])
    lock = context.Lock()
    worker = context.Process(target=print, args=(FirstArgument(), lock))
    worker.start()
    if sys.argv[1] == "remove":
        multiprocessing.util._run_finalizers(0)  # as the owner's SIGTERM handler does
    worker.join()
    print(worker.exitcode)
"""


def _worker_start(
    *preload: str, unpickled_as: str = "time.sleep, (2,)", owner: str = "remove"
) -> subprocess.CompletedProcess:
    script = _OWNER.format(unpickled_as=unpickled_as)
    return subprocess.run(
        [sys.executable, "-c", script, owner, *preload], capture_output=True, text=True, timeout=60
    )


def test_a_worker_whose_owner_removed_its_semaphores_exits_without_a_word():
    started = _worker_start("rainbench.forkserver")
    assert started.stdout == "1\n"  # it did not start, and it exited
    assert started.stderr == ""


def test_without_it_the_fork_server_prints_the_semaphore_gone():
    started = _worker_start()
    assert started.stdout == "1\n"
    assert "FileNotFoundError" in started.stderr and "__setstate__" in started.stderr


@pytest.mark.parametrize(
    ("failure", "unpickled_as"),
    [
        ("ModuleNotFoundError", "__import__, ('no_such_module',)"),
        ("FileNotFoundError", "open, ('/no/such/file',)"),
    ],
)
def test_any_other_failure_to_start_is_printed(failure, unpickled_as):
    started = _worker_start("rainbench.forkserver", unpickled_as=unpickled_as, owner="keep")
    assert started.stdout == "1\n"
    assert "Traceback" in started.stderr and failure in started.stderr
