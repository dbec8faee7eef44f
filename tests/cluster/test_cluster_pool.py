"""`rainbench.cluster`: Ray tasks and actors behave as local worker processes do for the
callers: every unit once, errors as themselves, one-line errors without Ray or a cluster."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
from click.testing import CliRunner

from rainbench import cluster
from rainbench.cli import main
from rainbench.cluster import ClusterError, RayActors, RayPool, make_pool
from rainbench.shards.dataset import DatasetError


def _square(x: int) -> int:
    return x * x


def _refuse(x: int) -> int:
    if x == 7:
        raise DatasetError(f"unit {x} refused")
    return x


def _counter() -> dict:
    return {"calls": 0}


def _count(held: dict, x: int) -> tuple[int, int]:
    held["calls"] += 1
    return x * x, held["calls"]


@pytest.fixture(scope="module", autouse=True)
def _by_value():
    """Ray's workers cannot import a test module: its functions travel by value."""
    ray = pytest.importorskip("ray")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_every_unit_runs_once_and_ordered_results_keep_their_order(ray_cluster):
    with make_pool(2, ray_cluster) as pool:
        assert isinstance(pool, RayPool)
        assert sorted(pool.map_unordered(_square, range(30))) == [x * x for x in range(30)]
        assert list(pool.map_ordered(_square, range(30))) == [x * x for x in range(30)]


def test_an_error_raised_by_the_function_arrives_as_itself(ray_cluster):
    with RayPool(ray_cluster, 2) as pool, pytest.raises(DatasetError) as raised:
        list(pool.map_unordered(_refuse, range(10)))
    assert type(raised.value) is DatasetError
    assert str(raised.value) == "unit 7 refused"


def test_actors_build_once_and_share_the_units(ray_cluster):
    with RayActors(ray_cluster, _counter, gpu=False, most=2) as actors:
        results = list(actors.map_unordered(_count, range(10)))
    assert sorted(square for square, _ in results) == [x * x for x in range(10)]
    assert len(actors.actors) == 0  # killed on exit
    # Each actor's state lives on across its calls: its counts run 1, 2, 3…
    assert sum(calls == 1 for _, calls in results) == 2


def _die_on_seven(held: dict, unit: tuple[int, ...]) -> list[int]:
    if 7 in unit:
        os._exit(1)  # as a crash in a derainer's native code ends its process
    held["calls"] += 1
    return [x * x for x in unit]


def _one_by_one(unit: tuple[int, ...]) -> list[tuple[int, ...]]:
    return [(x,) for x in unit]


def test_a_unit_that_kills_its_actor_is_run_again_in_pieces_and_the_run_goes_on(ray_cluster):
    units = [(0, 1, 2), (3, 4, 5), (6, 7, 8), (9,)]
    with RayActors(ray_cluster, _counter, gpu=False, most=2) as actors:
        results = list(
            actors.map_unordered(
                _die_on_seven, units, split=_one_by_one, lost=lambda unit, why: (unit, why)
            )
        )
        assert len(actors.actors) == 2  # the dead one replaced
    lost = [result for result in results if isinstance(result, tuple)]
    assert [unit for unit, _ in lost] == [(7,)]
    assert lost[0][1].startswith("Ray could not finish the work: ")
    found = sorted(x for result in results if isinstance(result, list) for x in result)
    assert found == [x * x for x in range(10) if x != 7]


def test_without_lost_a_unit_that_kills_its_actor_ends_the_run(ray_cluster):
    with (
        RayActors(ray_cluster, _counter, gpu=False, most=1) as actors,
        pytest.raises(cluster.ActorLost, match=r"^Ray could not finish the work: "),
    ):
        list(actors.map_unordered(_die_on_seven, [(6, 7)]))


def _endpoint(*_) -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL")


def test_tasks_and_actors_reach_the_store_the_driver_reaches(ray_cluster, monkeypatch):
    """The nodes were started with another AWS_ENDPOINT_URL: ingest's tasks and eval's
    and score's actors get the driver's, so they read and write the driver's store."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    with RayPool(ray_cluster, 2) as pool:
        assert set(pool.map_unordered(_endpoint, range(4))) == {"http://127.0.0.1:9"}
    with RayActors(ray_cluster, dict, gpu=False, most=2) as actors:
        assert set(actors.map_unordered(_endpoint, range(4))) == {"http://127.0.0.1:9"}


def _readers_cap(*_) -> str | None:
    return os.environ.get("RAINBENCH_MAX_PIXELS")


def test_tasks_and_actors_keep_the_drivers_readers_pixel_cap(ray_cluster, monkeypatch):
    """A cap raised where the command runs reaches every node's workers, which read the
    dataset's pictures (train, eval, synth and pairs on Ray)."""
    monkeypatch.setenv("RAINBENCH_MAX_PIXELS", "400000000")
    with RayPool(ray_cluster, 2) as pool:
        assert set(pool.map_unordered(_readers_cap, range(4))) == {"400000000"}
    with RayActors(ray_cluster, dict, gpu=False, most=2) as actors:
        assert set(actors.map_unordered(_readers_cap, range(4))) == {"400000000"}


def _weights_folder(*_) -> str | None:
    return os.environ.get("RAINBENCH_WEIGHTS")


def test_tasks_and_actors_find_the_metric_weights_where_the_driver_does(
    ray_cluster, monkeypatch, tmp_path
):
    """$RAINBENCH_WEIGHTS, the default of --weights-dir that the driver checks the
    weights in, reaches every node's workers as the flag does: absolute, since Ray runs
    them in a folder of its own, whatever the nodes' own environment holds."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAINBENCH_WEIGHTS", "weights")
    folder = str(tmp_path / "weights")
    with RayPool(ray_cluster, 2) as pool:
        assert set(pool.map_unordered(_weights_folder, range(4))) == {folder}
    with RayActors(ray_cluster, dict, gpu=False, most=2) as actors:
        assert set(actors.map_unordered(_weights_folder, range(4))) == {folder}


def test_without_ray_installed_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    (tmp_path / "raw").mkdir()
    result = CliRunner().invoke(
        main, ["ingest", str(tmp_path / "raw"), "--out", str(tmp_path / "ds"), "--ray"]
    )
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: --ray needs Ray, which is not installed: pip install 'rainbench[cluster]'"
    ]
    assert not (tmp_path / "ds").exists()  # said before anything is made


def test_an_address_nobody_listens_on_is_refused_in_one_line():
    pytest.importorskip("ray")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the test connects
    with (
        pytest.raises(ClusterError, match=f"cannot connect to the Ray cluster at 127.0.0.1:{port}"),
        RayPool(f"127.0.0.1:{port}", 2),
    ):
        pass


def test_an_address_where_something_else_listens_is_refused_in_seconds(monkeypatch):
    """Not a Ray head (an S3 endpoint, say): Ray would retry for minutes, in many lines."""
    pytest.importorskip("ray")
    monkeypatch.setattr(cluster, "_CONNECT_SECONDS", 2.0)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(ClusterError) as refused, RayPool(address, 2):
            pass
    assert time.monotonic() - started < 20
    message = str(refused.value)
    assert message.startswith(f"cannot connect to the Ray cluster at {address}: ")
    assert "no gRPC answer" in message and "\n" not in message


@contextlib.contextmanager
def _grpc_server(answers: bool) -> Iterator[str]:
    """The address of a gRPC server on 127.0.0.1 that answers a GCS's first question
    when `answers`, and knows no method otherwise (as a raylet's port)."""
    grpc = pytest.importorskip("grpc")
    handlers = []
    if answers:
        method = grpc.unary_unary_rpc_method_handler(lambda request, context: b"")
        service = {"GetClusterId": method}
        handlers = [grpc.method_handlers_generic_handler("ray.rpc.NodeInfoGcsService", service)]
    server = grpc.server(ThreadPoolExecutor(max_workers=1), handlers=handlers)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(None)


def test_a_ray_port_that_is_no_heads_gcs_is_refused_in_seconds():
    """Another Ray port (a raylet's): Ray would retry for 20 s, a warning a second."""
    pytest.importorskip("ray")
    with _grpc_server(answers=True) as address:
        cluster._check_reachable(address)  # what a head answers passes
    with _grpc_server(answers=False) as address:
        cluster._check_reachable(f"ray://{address}")  # a client server knows no GCS method
    with _grpc_server(answers=False) as address:
        started = time.monotonic()
        with pytest.raises(ClusterError) as refused, RayPool(address, 2):
            pass
    assert time.monotonic() - started < 20  # Ray alone retries for 20 s and more
    message = str(refused.value)
    assert message.startswith(f"cannot connect to the Ray cluster at {address}: ")
    assert "speaks gRPC but is no Ray head's GCS" in message and "\n" not in message


@pytest.mark.parametrize("left_by", ["RAY_ADDRESS", "ray start"])
def test_auto_that_leads_where_nobody_listens_is_refused_in_one_line(
    left_by, monkeypatch, tmp_path
):
    """`--ray` alone goes where $RAY_ADDRESS, else the last `ray start` here, says: a
    head gone since (killed without `ray stop`, which leaves its record) is refused at
    once, where Ray would retry it for minutes in lines of its own."""
    ray = pytest.importorskip("ray")
    from ray._private import services

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    if left_by == "RAY_ADDRESS":
        monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    else:  # the record of a `ray start` whose head is gone, and no Ray running here
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
        monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
        (tmp_path / "ray").mkdir()
        (tmp_path / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{port}")
        monkeypatch.setattr(services, "find_gcs_addresses", set)

    def connects(*args, **kwargs):
        raise AssertionError("Ray was asked to connect")

    monkeypatch.setattr(ray, "init", connects)
    with pytest.raises(ClusterError) as refused, RayPool("auto", 2):
        pass
    message = str(refused.value)
    assert message.startswith("cannot connect to the Ray cluster at auto (")
    assert f":{port}: $RAY_ADDRESS, else the last `ray start` on this machine)" in message
    assert message.endswith("start one with `ray start --head` or give --ray ADDRESS")
    assert "\n" not in message


def test_a_client_address_nobody_listens_on_is_refused_in_one_line():
    pytest.importorskip("ray")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(ClusterError) as refused, RayPool(f"ray://127.0.0.1:{port}", 2):
        pass
    assert time.monotonic() - started < 10
    assert str(refused.value).startswith(
        f"cannot connect to the Ray cluster at ray://127.0.0.1:{port}"
    )


class _Holding:
    def ping(self) -> bool:
        return True


@contextlib.contextmanager
def _other_work(address: str, cpus: int) -> Iterator[Callable[[], None]]:
    """`cpus` of the cluster's CPUs held by other work (actors of this driver, which the
    pools under test then share) until the function it gives is called, or the end."""
    import ray

    ray.init(address=address, log_to_driver=False, include_dashboard=False)
    holders = [ray.remote(num_cpus=1)(_Holding).remote() for _ in range(cpus)]

    def let_go() -> None:
        for holder in holders:
            ray.kill(holder)

    try:
        ray.get([holder.ping.remote() for holder in holders])  # placed, CPUs held
        yield let_go
    finally:
        let_go()
        ray.shutdown()


def _in_thread(work) -> Future:
    return ThreadPoolExecutor(max_workers=1).submit(work)


def test_actors_share_the_units_when_other_work_holds_one_cpu(ray_cluster):
    """An actor the cluster cannot place yet gets no unit: its share goes to the others
    (the run waited for it to the end, without a word)."""
    with (
        _other_work(ray_cluster, 1),
        RayActors(ray_cluster, _counter, gpu=False, most=2) as actors,
    ):
        assert len(actors.actors) == 2  # one per CPU: one of them cannot start
        run = _in_thread(lambda: list(actors.map_unordered(_count, range(6))))
        results = run.result(timeout=60)
        assert actors.ask(_count, 3)[0] == 9
    assert sorted(square for square, _ in results) == [x * x for x in range(6)]


def test_a_run_no_cpu_is_free_for_says_so_in_one_line_and_goes_on(ray_cluster, monkeypatch):
    monkeypatch.setattr(cluster, "_WAIT_SECONDS", 1.0)
    with _other_work(ray_cluster, 2) as let_go, RayPool(ray_cluster, 2) as pool:
        with pytest.warns(cluster.ClusterWaiting) as said:
            run = _in_thread(lambda: sorted(pool.map_unordered(_square, range(4))))
            deadline = time.monotonic() + 30
            while not said and time.monotonic() < deadline:
                time.sleep(0.1)
        assert not run.done()
        let_go()
        assert run.result(timeout=60) == [0, 1, 4, 9]
    assert [str(warning.message) for warning in said] == [
        f"waiting for the Ray cluster at {ray_cluster}: none of its 2 CPUs is free for "
        "this run (other work holds them); the run goes on once one is, Ctrl-C stops it"
    ]


_CONNECTED = """
import sys, time
from rainbench.cluster import RayPool
with RayPool(sys.argv[1], 1):
    print("connected", flush=True)
    time.sleep(60)
"""


def test_a_driver_sent_sigterm_ends_as_a_local_one_does(ray_cluster):
    """Quietly, by the signal: Ray's handler printed lines from its native code, exit 1."""
    driver = subprocess.Popen(
        [sys.executable, "-c", _CONNECTED, ray_cluster],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert driver.stdout.readline() == "connected\n"
    driver.send_signal(signal.SIGTERM)
    _, errors = driver.communicate(timeout=30)
    assert (driver.returncode, errors) == (-signal.SIGTERM, "")


_REFUSED = """
import sys, time
from rainbench.cluster import RayPool

def refuse(x):
    time.sleep(0.3)
    raise ValueError(f"unit {x} refused")

with RayPool(sys.argv[1], 2) as pool:
    try:
        list(pool.map_unordered(refuse, range(8)))
    except ValueError as error:
        print(error)
    time.sleep(2)  # the units in flight have failed, their results dropped
"""


def test_units_in_flight_when_one_fails_are_not_reported_again(ray_cluster):
    """The caller reports the first error in one line; Ray printed each other unit's,
    which failed the same way before the run stopped, as a traceback."""
    driver = subprocess.run(
        [sys.executable, "-c", _REFUSED, ray_cluster], capture_output=True, text=True
    )
    assert driver.stdout.endswith(" refused\n")
    assert "Unhandled error" not in driver.stderr


_INTERRUPTED = """
import signal, sys, time
from rainbench.cluster import RayActors

def slow(held, unit):
    time.sleep(60)

def interrupt(*_):
    raise KeyboardInterrupt

with RayActors(sys.argv[1], dict, gpu=False, most=2) as actors:
    signal.signal(signal.SIGALRM, interrupt)
    signal.alarm(5)  # both calls in flight by then
    try:
        list(actors.map_unordered(slow, range(2)))
    except KeyboardInterrupt:
        print("interrupted")
"""


def test_actors_interrupted_mid_call_end_without_a_word_from_ray(ray_cluster):
    """Killed one by one, each actor's call in flight printed Ray's word that it would
    be retried, on stdout."""
    driver = subprocess.run(
        [sys.executable, "-c", _INTERRUPTED, ray_cluster], capture_output=True, text=True
    )
    assert driver.stdout == "interrupted\n"


_WAITING = """
import sys, time
from pathlib import Path
from rainbench.cluster import ClusterError, RayPool

def slow(x, running=sys.argv[2]):
    Path(running).touch()
    time.sleep(120)

try:
    with RayPool(sys.argv[1], 1) as pool:
        list(pool.map_unordered(slow, range(2)))
except ClusterError as error:
    print(error)
"""


def test_a_cluster_lost_mid_run_ends_it_in_one_line_within_seconds(lone_cluster, tmp_path):
    """Ray noticed after 60 s, then ended the driver's process in lines of its own."""
    running = tmp_path / "running"
    driver = subprocess.Popen(
        [sys.executable, "-c", _WAITING, lone_cluster.address, str(running)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not running.exists():
            assert driver.poll() is None and time.monotonic() < deadline, "no unit ran"
            time.sleep(0.1)
        lone_cluster.stop()
        started = time.monotonic()
        said, _ = driver.communicate(timeout=60)
    finally:
        driver.kill()
    assert time.monotonic() - started < 30
    assert said.startswith(f"lost the Ray cluster at {lone_cluster.address}: its head (")
    assert said.endswith("run the same command again once it is back\n")
