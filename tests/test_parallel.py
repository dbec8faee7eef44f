import os
import signal
import subprocess
import sys
import time

import pytest

from rainbench.errors import RainbenchError
from rainbench.parallel import WorkerLost, WorkerPool, distribute


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


def _ready_owner(workers_are: str) -> subprocess.Popen:
    """`_OWNER` in a session of its own (its children share the session id), once its
    workers are up and, when busy, running their sleeps."""
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER, workers_are],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert owner.stdout.readline().strip() == "ready"
    except BaseException:
        os.killpg(owner.pid, signal.SIGKILL)
        owner.wait()
        raise
    time.sleep(0.5)  # busy: the sleeps have reached the workers
    return owner


def _gone(session_processes, session: int) -> bool:
    """Whether every process of `session` has exited, waiting 10 s at most."""
    deadline = time.monotonic() + 10
    while session_processes(session) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not session_processes(session)


@pytest.mark.parametrize("workers_are", ["idle", "busy"])
def test_workers_and_forkserver_exit_when_the_owner_is_killed(workers_are, session_processes):
    owner = _ready_owner(workers_are)
    try:
        assert len(session_processes(owner.pid)) >= 4  # the forkserver, two workers, the owner
    finally:
        owner.kill()  # SIGKILL, to the owner alone
        owner.wait()
    assert _gone(session_processes, owner.pid)


@pytest.mark.parametrize("workers_are", ["idle", "busy"])
def test_a_terminated_owner_ends_quietly(workers_are, session_processes):
    """`kill PID` (SIGTERM, to the owner alone): it dies by the signal, as a killed
    ingest does (its journal resumes it), and nothing of its pool says a word: no
    resource tracker's warning of leaked semaphores."""
    owner = _ready_owner(workers_are)
    try:
        owner.terminate()
        owner.wait(timeout=30)
        assert _gone(session_processes, owner.pid)
    finally:
        if owner.poll() is None:
            os.killpg(owner.pid, signal.SIGKILL)
            owner.wait()
    assert owner.returncode == -signal.SIGTERM
    assert owner.stderr.read() == ""


# A pool's owner that a terminal's Ctrl-C reaches with all its processes: while the
# fork server imports the work's module (slow to import here), while the workers wait
# for work, or while they run it. It reports Ctrl-C in one line, as the CLI does.
_SLOW_MODULE = """
import time

time.sleep(3)  # the fork server imports this before it starts any worker


def work(seconds):
    time.sleep(seconds)
"""
_INTERRUPTED_OWNER = """
import signal, sys, time
from rainbench.parallel import WorkerPool

if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a background shell ignores it
    from slow_to_import import work
    try:
        with WorkerPool(2) as pool:
            print("starting", flush=True)
            list(pool.map_unordered(work, [0, 0]))
            print("ready", flush=True)
            list(pool.map_unordered(work, [600, 600] if sys.argv[1] == "busy" else []))
            time.sleep(600)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
"""


@pytest.mark.parametrize("workers_are", ["starting", "idle", "busy"])
def test_ctrl_c_ends_the_pool_in_one_line(workers_are, tmp_path, session_processes):
    (tmp_path / "slow_to_import.py").write_text(_SLOW_MODULE)
    owner = subprocess.Popen(
        [sys.executable, "-c", _INTERRUPTED_OWNER, workers_are],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert owner.stdout.readline().strip() == "starting"
        if workers_are == "starting":
            time.sleep(1)  # the fork server is importing slow_to_import
        else:
            assert owner.stdout.readline().strip() == "ready"
            time.sleep(0.5)  # busy: the work has reached the workers
        os.killpg(owner.pid, signal.SIGINT)  # as a terminal sends Ctrl-C: to every process
        _, stderr = owner.communicate(timeout=30)
    finally:
        if owner.poll() is None:
            os.killpg(owner.pid, signal.SIGKILL)
            owner.wait()
    assert owner.returncode == 130
    assert stderr.strip() == "interrupted"  # no worker's or fork server's traceback
    assert _gone(session_processes, owner.pid)


def test_a_script_that_ingests_at_its_top_level_is_told_to_guard_it(tmp_path):
    # Every worker imports the script again before it starts; the ingest it called there
    # was refused as if another command were writing (the script's own process held the
    # dataset's lock).
    from rainbench.demo.captures import sample_specs, write_capture

    for spec in sample_specs(3, seed=1, size=(160, 120)):
        write_capture(tmp_path / "raw", spec)
    script = tmp_path / "script.py"
    script.write_text(
        "from pathlib import Path\n"
        "from rainbench.ingest import IngestOptions, ingest\n"
        'ingest([Path("raw")], Path("ds"), IngestOptions(workers=2))\n'
    )
    run = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert run.returncode != 0
    assert "another rainbench command" not in run.stderr
    assert 'put that call under `if __name__ == "__main__":`' in run.stderr
    assert "a worker process died before it finished its work" in run.stderr


def _readers_cap(_: int) -> str | None:
    return os.environ.get("RAINBENCH_MAX_PIXELS")


def test_workers_hold_the_owners_settings_as_the_pool_starts(monkeypatch):
    """The fork server keeps the environment of its start: a setting changed since (a
    raised readers' pixel cap) reaches the workers of a pool started after."""
    monkeypatch.delenv("RAINBENCH_MAX_PIXELS", raising=False)
    with WorkerPool(2) as pool:  # the fork server runs, started without it
        assert set(pool.map_unordered(_readers_cap, range(4))) == {None}
    monkeypatch.setenv("RAINBENCH_MAX_PIXELS", "400000000")
    with WorkerPool(2) as pool:
        assert set(pool.map_unordered(_readers_cap, range(4))) == {"400000000"}
    monkeypatch.delenv("RAINBENCH_MAX_PIXELS")
    with WorkerPool(2) as pool:
        assert set(pool.map_unordered(_readers_cap, range(4))) == {None}


def _killed(unit: int) -> int:
    if unit == 3:
        os.kill(os.getpid(), signal.SIGKILL)  # as the system kills a process for memory
    return unit


@pytest.mark.parametrize("order", ["map_unordered", "map_ordered"])
def test_a_worker_killed_midway_ends_the_work_in_one_line(order):
    with WorkerPool(2) as pool, pytest.raises(WorkerLost) as lost:
        list(getattr(pool, order)(_killed, range(8)))
    assert str(lost.value) == (
        "a worker process died before it finished its work (killed by the system when "
        "memory runs short or by hand, or crashed); run the same command again to go on, "
        "with fewer --workers if memory is short"
    )
    assert isinstance(lost.value, RainbenchError)
