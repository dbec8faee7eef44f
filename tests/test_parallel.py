import subprocess
import sys
import time

import pytest

from rainbench.parallel import WorkerPool, distribute


def _square(x: int) -> int:
    return x * x


def test_every_unit_runs_exactly_once_in_and_out_of_process():
    units = list(range(101))  # more than the in-flight bound
    for workers in (1, 2):
        assert sorted(distribute(_square, units, workers)) == [x * x for x in units]


def test_one_pool_serves_several_phases():
    with WorkerPool(2) as pool:
        assert sorted(pool.map_unordered(_square, range(10))) == [x * x for x in range(10)]
        assert sorted(pool.map_unordered(_square, range(3))) == [0, 1, 4]


def test_ordered_results_keep_the_units_order():
    with WorkerPool(2) as pool:
        assert list(pool.map_ordered(_square, range(50))) == [x * x for x in range(50)]


# The pool's owner: warms up two workers, says so, then keeps them idle or busy.
_OWNER = """
import sys, time
from rainbench.parallel import WorkerPool

if __name__ == "__main__":
    with WorkerPool(2) as pool:
        list(pool.map_unordered(time.sleep, [0, 0]))
        print("ready", flush=True)
        list(pool.map_unordered(time.sleep, [600, 600] if sys.argv[1] == "busy" else []))
        time.sleep(600)
"""


@pytest.mark.parametrize("workers_are", ["idle", "busy"])
def test_workers_and_forkserver_exit_when_the_owner_is_killed(workers_are, session_processes):
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER, workers_are],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the owner's children share its session id
    )
    try:
        assert owner.stdout.readline().strip() == "ready"
        time.sleep(0.5)  # busy: the sleeps have reached the workers
        assert len(session_processes(owner.pid)) >= 4  # the forkserver, two workers, the owner
    finally:
        owner.kill()  # SIGKILL, to the owner alone
        owner.wait()
    deadline = time.monotonic() + 10
    while session_processes(owner.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not session_processes(owner.pid)
