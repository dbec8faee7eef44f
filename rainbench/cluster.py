"""Run units of work on a Ray cluster (the optional `cluster` extra): `RayPool` stands in
for `rainbench.parallel.WorkerPool` with Ray tasks, `RayActors` keeps something costly
to build (a derainer, its metrics) alive in one actor per CPU or GPU.

Both only connect to a cluster that is already running and leave it running, except
`--ray local`, an instance of this run's own. A task whose worker or node dies is run
again by Ray; an exception the function raises itself reaches the caller as that
exception, not wrapped, so callers handle errors as they do for local workers. Tasks and
actors reach the object store the driver reaches (`STORE_LOCATION`).
"""

import contextlib
import logging
import os
import secrets
import signal
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from rainbench import __version__
from rainbench.errors import RainbenchError, first_line
from rainbench.parallel import SETTINGS, WorkerPool

T = TypeVar("T")
R = TypeVar("R")

INSTALL = "pip install 'rainbench[cluster]'"
# Runs of a unit whose worker or node died before Ray gives up on it.
MAX_RETRIES = 3
_CONNECT_SECONDS = 10.0
# How long the check of the workers' rainbench waits for their answers: a node that gives
# none by then (a worker slow to start) goes unchecked, not refused.
_VERSION_SECONDS = 30.0
# How long a run whose units cannot be running (the cluster had no free CPU or GPU for
# them) waits for a first result before it says, once, what it waits for.
_WAIT_SECONDS = 10.0
# How often a wait checks that the cluster's head still answers: Ray notices its loss
# only after 60 s, and then ends this process in lines of its own.
_ALIVE_SECONDS = 5.0
# The environment that decides which object store a URL reaches (an S3-compatible
# endpoint, the region, GCS's emulator), not who may use it: every task and actor gets
# the driver's, so what a worker uploads lands where the driver commits, and what it reads
# is what the driver names. Credentials stay in each node's own environment or files,
# never sent through the cluster.
STORE_LOCATION = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "STORAGE_EMULATOR_HOST",
)
# The metric weights' folder when no --weights-dir is given (rainbench.metrics.weights):
# the driver checks the weights there before any work goes in, so the workers load them
# from there too, as they do the flag's folder, and a relative one is made absolute as
# the flag's is, since Ray runs work in a folder of its own.
_WEIGHTS = "RAINBENCH_WEIGHTS"
# Ray's token for a `--ray local` instance: given in the environment (which the
# instance's processes inherit), so Ray writes none to ~/.ray/auth_token, where it would
# outlive the run and turn token checks on for every later Ray on this machine.
_TOKEN = "RAY_AUTH_TOKEN"
_AUTH_MODE = "RAY_AUTH_MODE"
# One token for every local instance of this process: Ray keeps the first it saw (and
# that checks are on) for the life of the process, so a second instance with another
# token would refuse its own driver.
_LOCAL_TOKEN = secrets.token_hex(32)


class ClusterError(RainbenchError):
    """No Ray, no cluster to connect to, or work Ray could not finish; one line."""


class ClusterWaiting(UserWarning):
    """The run waits for the cluster: none of its CPUs (GPUs) is free for the work."""


class ActorLost(ClusterError):
    """An actor's process died running a unit, each time Ray restarted it: the unit
    itself kills it (a crash in native code, os._exit, the memory killer)."""


# Where Ray reports, in a traceback of many lines, an error of a unit whose result the
# driver never fetched: the run stopped on one unit's error, which it reports itself in
# one line, while others were in flight, and those fail the same way after it.
_RAY_WORKER_LOG = logging.getLogger("ray._private.worker")


def _echoes(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Unhandled error")


def import_ray():
    try:
        import ray
    except ImportError:
        raise ClusterError(f"--ray needs Ray, which is not installed: {INSTALL}") from None
    return ray


class _Connection:
    """A driver's connection to the cluster at `address`, opened on entry, closed on exit
    unless it was open already (a caller that connected itself keeps its connection)."""

    def __init__(self, address: str):
        self.address = address
        self.ray = import_ray()
        self.opened = False
        self._set: list[str] = []  # environment variables set for a local instance
        self._said = False  # whether the run was said to wait for the cluster
        # rainbench's own settings too (parallel.SETTINGS): the driver's, as set where the
        # user runs the command.
        forwarded = STORE_LOCATION + SETTINGS
        given = {name: os.environ[name] for name in forwarded if name in os.environ}
        if weights := os.environ.get(_WEIGHTS):
            given[_WEIGHTS] = os.path.abspath(os.path.expanduser(weights))
        self.runtime_env = {"env_vars": given} if given else None

    def __enter__(self):
        _RAY_WORKER_LOG.addFilter(_echoes)
        if not self.ray.is_initialized():
            try:
                self._connect()
            except BaseException:
                self.__exit__()  # what a local instance set in the environment goes
                raise
            self.opened = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self.opened:
            # Disconnects this driver; the cluster, started by someone else, runs on (a
            # local instance stops).
            self.ray.shutdown()
            self.opened = False
        for name in self._set:
            os.environ.pop(name, None)
        self._set = []
        _RAY_WORKER_LOG.removeFilter(_echoes)

    def _connect(self) -> None:
        if self.address == "local":
            self._own_token()
        else:
            _check_reachable(self.address)
        with _sigterm_kept():
            self._init()
        self._check_versions()

    def _init(self) -> None:
        try:
            self.ray.init(
                address=self.address,
                log_to_driver=False,  # workers' output is in the cluster's logs
                logging_level=logging.ERROR,
                configure_logging=True,
                include_dashboard=False,
            )
        except ConnectionError as error:
            where = (
                "no Ray cluster is running here; start one with `ray start --head` "
                "or give --ray ADDRESS"
                if self.address == "auto"
                else f"cannot connect to the Ray cluster at {self.address}"
            )
            raise ClusterError(f"{where} ({first_line(error)})") from None
        except RuntimeError as error:  # a local instance that did not start, in many lines
            what = "a local Ray instance" if self.address == "local" else self.address
            raise ClusterError(
                f"Ray did not start or connect ({what}): {first_line(error)}"
            ) from None

    def _check_versions(self) -> None:
        """Refuse in one line a cluster whose workers run another rainbench than this
        driver, or none they can import, before any work goes in: every unit would fail
        there, in tracebacks of many lines. One task of no CPU per node that has CPUs
        (where work runs), each node's answer within _VERSION_SECONDS."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        probe = self.ray.remote(_version_probe())
        asked = {
            probe.options(
                num_cpus=0,
                max_retries=0,
                runtime_env=self.runtime_env,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False),
            ).remote(): node["NodeManagerAddress"]
            for node in self.ray.nodes()
            if node["Alive"] and node["Resources"].get("CPU", 0) >= 1
        }
        if not asked:
            return
        done, rest = self.ray.wait(list(asked), num_returns=len(asked), timeout=_VERSION_SECONDS)
        for ref in rest:
            self.ray.cancel(ref)
        for ref in done:
            try:
                version, why = self.ray.get(ref)
            except self.ray.exceptions.RayError:
                continue  # a node gone meanwhile: Ray runs the work elsewhere
            where = f"the Ray cluster at {self.address}"
            if version is None:
                raise ClusterError(
                    f"{where} has workers (node {asked[ref]}) that cannot import rainbench "
                    f"({why}): install rainbench {__version__} on every node"
                )
            if version != __version__:
                raise ClusterError(
                    f"{where} runs rainbench {version} on its workers (node {asked[ref]}), "
                    f"this driver {__version__}: install the same version on every node"
                )

    def _own_token(self) -> None:
        """A token for the local instance in this process's environment, unless the user
        chose how Ray authenticates; Ray then turns token checks on for the instance."""
        if any(name in os.environ for name in (_TOKEN, "RAY_AUTH_TOKEN_PATH", _AUTH_MODE)):
            return
        os.environ[_TOKEN] = _LOCAL_TOKEN
        self._set = [_TOKEN, _AUTH_MODE]  # Ray sets the mode itself

    def cpus(self) -> int:
        return max(1, int(self.ray.cluster_resources().get("CPU", 1)))

    def gpus(self) -> int:
        """The cluster's GPUs, refused in one line when it has none."""
        count = int(self.ray.cluster_resources().get("GPU", 0))
        if not count:
            raise ClusterError("the Ray cluster has no GPU; give --device cpu or add GPU nodes")
        return count

    def free(self, gpu: bool) -> float:
        """The cluster's CPUs (GPUs) that no work holds now."""
        return self.ray.available_resources().get("GPU" if gpu else "CPU", 0)

    def wait(self, refs: list, gpu: bool, starved: bool) -> tuple[list, list]:
        """`ray.wait` for the first of `refs` to finish. When `starved` (none of them can
        be running: the cluster had no free CPU, or GPU, for them) and after _WAIT_SECONDS
        none has finished and the cluster still has none free, the run says once, in one
        line, what it waits for, then waits on."""
        if not starved or self._said:
            return self._wait(refs)
        kind = "GPU" if gpu else "CPU"
        while True:
            done, rest = self._wait(refs, _WAIT_SECONDS)
            if done:
                return done, rest
            if self.free(gpu) < 1:
                break
        self._said = True
        total = int(self.ray.cluster_resources().get(kind, 0))
        held = (
            f"none of its {total} {kind}s is free for this run (other work holds them)"
            if total
            else f"it has no {kind}s (add nodes with some)"
        )
        warnings.warn(
            f"waiting for the Ray cluster at {self.address}: {held}; the run goes on "
            "once one is, Ctrl-C stops it",
            ClusterWaiting,
            stacklevel=2,
        )
        return self._wait(refs)

    def _wait(self, refs: list, timeout: float | None = None) -> tuple[list, list]:
        """`ray.wait` for the first of `refs`, `timeout` seconds at most, checking every
        _ALIVE_SECONDS that the cluster is still there."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = _ALIVE_SECONDS
            if deadline is not None:
                step = min(step, max(0.0, deadline - time.monotonic()))
            done, rest = self.ray.wait(refs, num_returns=1, timeout=step)
            if done or (deadline is not None and time.monotonic() >= deadline):
                return done, rest
            self._check_alive()

    def _check_alive(self) -> None:
        """Refuse in one line to wait on a cluster whose head no longer answers."""
        try:
            head = self.ray.get_runtime_context().gcs_address
        except Exception:  # a Ray client (ray://) knows no head's address to check
            return
        host, _, port = head.rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=_CONNECT_SECONDS).close()
        except OSError as error:
            raise ClusterError(
                f"lost the Ray cluster at {self.address}: its head ({head}) no longer "
                f"answers ({first_line(error)}); run the same command again once it is back"
            ) from None

    def get(self, ref):
        exceptions = self.ray.exceptions
        self._wait([ref])
        try:
            return self.ray.get(ref)
        except exceptions.RayTaskError as error:
            cause = error.cause
            if isinstance(cause, BaseException):
                raise cause from None
            raise ClusterError(first_line(error)) from None
        except exceptions.RayActorError as error:
            raise ActorLost(f"Ray could not finish the work: {first_line(error)}") from None
        except exceptions.RayError as error:
            # A worker or node died more often than MAX_RETRIES, an actor is gone…
            raise ClusterError(f"Ray could not finish the work: {first_line(error)}") from None


class RayPool:
    """`WorkerPool`'s methods, with each unit a Ray task (one CPU, and one GPU when `gpu`)
    on the cluster at `address` ("auto": the one `ray start` runs on this machine)."""

    def __init__(self, address: str, workers: int, gpu: bool = False):
        self.workers, self.gpu = workers, gpu
        self.connection = _Connection(address)

    def __enter__(self) -> "RayPool":
        self.connection.__enter__()
        try:
            if self.gpu:
                self.connection.gpus()
        except BaseException:
            self.connection.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.connection.__exit__(*exc)

    def map_unordered(self, fn: Callable[[T], R], units: Iterable[T]) -> Iterator[R]:
        task = self._task(fn)
        queue = iter(units)
        starved = self._starved()
        # A bounded number of units in flight, so the driver's memory does not grow with
        # the input: enough to keep every CPU of the cluster busy.
        pending = [task.remote(unit) for unit in _take(queue, self._in_flight())]
        while pending:
            done, pending = self.connection.wait(pending, self.gpu, starved)
            starved = False
            result = self.connection.get(done[0])
            pending += [task.remote(unit) for unit in _take(queue, 1)]
            yield result

    def map_ordered(self, fn: Callable[[T], R], units: Iterable[T]) -> Iterator[R]:
        """Like `map_unordered`, but results come in the order of `units`."""
        task = self._task(fn)
        queue = iter(units)
        starved = self._starved()
        ahead = [task.remote(unit) for unit in _take(queue, self._in_flight())]
        while ahead:
            if starved:  # any unit done means the cluster runs them
                self.connection.wait(ahead, self.gpu, starved)
                starved = False
            result = self.connection.get(ahead.pop(0))
            ahead += [task.remote(unit) for unit in _take(queue, 1)]
            yield result

    def _task(self, fn: Callable):
        return self.connection.ray.remote(fn).options(
            num_cpus=1,
            num_gpus=1 if self.gpu else 0,
            max_retries=MAX_RETRIES,
            retry_exceptions=False,
            runtime_env=self.connection.runtime_env,
        )

    def _starved(self) -> bool:
        """Whether no CPU (GPU) of the cluster is free, before this pool's units go in."""
        return self.connection.free(self.gpu) < 1

    def _in_flight(self) -> int:
        slots = self.connection.gpus() if self.gpu else self.connection.cpus()
        return 2 * max(self.workers, slots)


class _Holder:
    """The actor: holds what `build()` makes, and calls functions on it."""

    def __init__(self, build: Callable[[], Any]):
        self.build = build
        self.held = None

    def ready(self) -> bool:
        """Answered once the cluster has placed the actor and started it."""
        return True

    def call(self, fn: Callable[[Any, T], R], unit: T) -> R:
        # Built on the first call, not in the constructor: an error building it then
        # reaches the caller as itself, not as the actor's death.
        if self.held is None:
            self.held = self.build()
        return fn(self.held, unit)


class RayActors:
    """Actors on the cluster at `address`, each holding what `build()` returns (built once
    per actor): one per GPU of the cluster when `gpu`, else one per CPU, at most `most`.
    An actor whose node dies is built again elsewhere and its unit run again. Units go
    only to actors the cluster has started: one it has no free CPU (GPU) for yet, as
    other work holds them, takes its share once it starts."""

    def __init__(self, address: str, build: Callable[[], Any], gpu: bool, most: int):
        self.connection = _Connection(address)
        self.build, self.gpu, self.most = build, gpu, max(1, most)
        self.actors: list = []
        self.room = 0  # the actors the cluster had a free CPU (GPU) for as they went in
        self.up: list = []  # the actors started, in the order they came up
        self.starting: dict = {}  # an actor not yet started, by its `ready` call

    def __enter__(self) -> "RayActors":
        self.connection.__enter__()
        try:
            self._start()
        except BaseException:
            self.connection.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        # A connection this opened ends with its job, the actors with it; killing them
        # first, calls in flight (Ctrl-C) would each print Ray's word of a retry, on stdout.
        if not self.connection.opened:
            for actor in self.actors:
                self.connection.ray.kill(actor)
        self.actors, self.up, self.starting = [], [], {}
        self.connection.__exit__(*exc)

    def _start(self) -> None:
        count = self.connection.gpus() if self.gpu else self.connection.cpus()
        self.room = min(count, self.most, int(self.connection.free(self.gpu)))
        for _ in range(min(count, self.most)):
            self.actors.append(self._new_actor())

    def _new_actor(self):
        actor = (
            self.connection.ray.remote(_Holder)
            .options(
                num_cpus=1,
                num_gpus=1 if self.gpu else 0,
                max_restarts=MAX_RETRIES,
                max_task_retries=MAX_RETRIES,
                runtime_env=self.connection.runtime_env,
            )
            .remote(self.build)
        )
        self.starting[actor.ready.remote()] = actor
        return actor

    def _replace(self, actor):
        """A new actor in place of `actor`, which is dead."""
        self.connection.ray.kill(actor)
        self.up.remove(actor)
        self.actors[self.actors.index(actor)] = self._new_actor()

    def _next(self, busy: dict):
        """The first of `busy`'s calls to finish or of the actors starting to come up
        (then taken into `up`)."""
        done, _ = self.connection.wait([*busy, *self.starting], self.gpu, starved=not busy)
        if done[0] in self.starting:
            self._came_up(done[0])
        return done[0]

    def _came_up(self, ready) -> None:
        self.connection.get(ready)
        self.up.append(self.starting.pop(ready))

    def _gather(self) -> None:
        """Wait, _WAIT_SECONDS at most, for the actors the cluster had room for to start,
        so that the first units go to each of them, not all to the first one up."""
        deadline = time.monotonic() + _WAIT_SECONDS
        while self.starting and len(self.up) < self.room:
            left = deadline - time.monotonic()
            done, _ = self.connection.ray.wait(list(self.starting), timeout=max(0, left))
            if not done:
                return
            self._came_up(done[0])

    def ask(self, fn: Callable[[Any, T], R], unit: T) -> R:
        """`fn(held, unit)` on one actor: a question about what the work is done with."""
        while not self.up:
            self._next({})
        return self.connection.get(self.up[0].call.remote(fn, unit))

    def map_unordered(
        self,
        fn: Callable[[Any, T], R],
        units: Iterable[T],
        split: Callable[[T], list[T]] | None = None,
        lost: Callable[[T, str], R] | None = None,
    ) -> Iterator[R]:
        """`fn(held, unit)` for each unit, on whichever actor is free, results as they come.

        A unit that kills its actor (ActorLost) ends the run, unless `lost` is given: the
        actor is replaced, and the unit runs again as the smaller units `split(unit)`
        gives, or, when it gives fewer than two, its result is `lost(unit, why)`."""
        queue = iter(units)
        again: list[T] = []  # the pieces of units that killed their actor, run first
        busy: dict = {}
        left = True  # whether `queue` may hold more

        def give(actor) -> None:
            nonlocal left
            if again:
                unit = again.pop(0)
            else:
                taken = _take(queue, 1)
                left = bool(taken)
                if not taken:
                    return
                unit = taken[0]
            busy[actor.call.remote(fn, unit)] = actor, unit

        self._gather()
        for actor in self.up:
            give(actor)
        while busy or (self.starting and (again or left)):
            done = self._next(busy)
            if done not in busy:  # an actor came up
                give(self.up[-1])
                continue
            actor, unit = busy.pop(done)
            try:
                results = [self.connection.get(done)]
            except ActorLost as error:
                if lost is None:
                    raise
                self._replace(actor)
                pieces = split(unit) if split is not None else []
                again[:0] = pieces if len(pieces) > 1 else []
                results = [] if len(pieces) > 1 else [lost(unit, str(error))]
                working = {actor for actor, _ in busy.values()}
                for idle in [actor for actor in self.up if actor not in working]:
                    give(idle)
            else:
                give(actor)
            yield from results


@contextlib.contextmanager
def _sigterm_kept() -> Iterator[None]:
    """SIGTERM's handling as it was before `ray.init`, which takes it over: Ray's own
    handler prints lines from its native code and exits as `sys.exit` does, where a
    killed local run ends at once and quietly, its journal left for the next run."""
    if threading.current_thread() is not threading.main_thread():
        yield  # Ray leaves the signal alone there too
        return
    previous = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        if previous is not None:  # None: set outside Python, and not restorable
            signal.signal(signal.SIGTERM, previous)


def _version_probe() -> Callable[[], tuple[str | None, str]]:
    """A task answering the rainbench version its worker imports (None, and why, when it
    imports none). Made inside a function so that it travels by value: a function of this
    module travels as an import of rainbench.cluster, which is what the check asks about."""

    def probe() -> tuple[str | None, str]:
        try:
            import rainbench
        except Exception as error:  # any failure to import is the answer
            said = str(error).strip().splitlines()  # said in one line by the driver
            return None, f"{type(error).__name__}: {said[0] if said else ''}"
        return str(getattr(rainbench, "__version__", "unknown")), ""

    return probe


def _check_reachable(address: str) -> None:
    """Refuse in seconds a HOST:PORT (or ray://HOST:PORT) where nobody listens, or where
    what listens is no Ray: Ray itself retries for minutes, in many lines. Both the head's
    GCS and a Ray client server speak gRPC, so a gRPC channel must come up. For "auto",
    the address Ray goes to: $RAY_ADDRESS, or the one the last `ray start` here recorded,
    which outlives a head killed without `ray stop`."""
    where, hint = address, ""
    if address == "auto":
        address = _auto_address()
        where = f"auto ({address}: $RAY_ADDRESS, else the last `ray start` on this machine)"
        hint = "; start one with `ray start --head` or give --ray ADDRESS"
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # Ray finds no address for "auto" and says so, or takes none of this form
    try:
        socket.create_connection((host, int(port)), timeout=_CONNECT_SECONDS).close()
    except OSError as error:
        raise ClusterError(
            f"cannot connect to the Ray cluster at {where}: {first_line(error)}{hint}"
        ) from None
    if os.environ.get("RAY_USE_TLS", "0").lower() not in ("0", "false"):
        return  # a TLS cluster: a plain channel cannot tell
    import grpc  # comes with Ray

    channel = grpc.insecure_channel(f"{host}:{port}")
    try:
        _check_gcs(channel, address)
    finally:
        channel.close()


def _auto_address() -> str:
    """The address `ray.init("auto")` connects to, found as Ray finds it; "auto" itself
    where Ray finds none (it then says so) or cannot be asked."""
    try:
        from ray._private import services

        logger = logging.getLogger(services.__name__)
        level = logger.level
        logger.setLevel(logging.ERROR)  # Ray warns again of several instances, if it does
        try:
            return services.canonicalize_bootstrap_address("auto") or "auto"
        finally:
            logger.setLevel(level)
    except Exception:  # none found, or a Ray whose internals differ: Ray decides
        return "auto"


_PORTS = "give the head's GCS port (HEAD:6379 by default) or its client server's (ray://HEAD:10001)"


def _check_gcs(channel, address: str) -> None:
    """Refuse what gives no gRPC answer, and a port that speaks gRPC but is no head's GCS
    (a raylet's, an object manager's): Ray would retry it for 20 s, a warning a second.
    The question is the one a driver asks first, its cluster's ID; any answer but "no
    such method" passes (a cluster that wants a token refuses it, and Ray then says why),
    and from a client server (ray://) any answer at all. One call that waits for the
    channel, in place of `grpc.channel_ready_future`, whose watch makes the channel's
    close take 0.2 s more."""
    import grpc

    ask = channel.unary_unary(
        "/ray.rpc.NodeInfoGcsService/GetClusterId",
        request_serializer=bytes,  # an empty request: no field set
        response_deserializer=bytes,
    )
    try:
        ask(b"", timeout=_CONNECT_SECONDS, wait_for_ready=True)
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            raise ClusterError(
                f"cannot connect to the Ray cluster at {address}: what listens there gave "
                f"no gRPC answer within {_CONNECT_SECONDS:g} s: no Ray head, or one too busy "
                f"to answer; {_PORTS}"
            ) from None
        if error.code() == grpc.StatusCode.UNIMPLEMENTED and not address.startswith("ray://"):
            raise ClusterError(
                f"cannot connect to the Ray cluster at {address}: what listens there speaks "
                f"gRPC but is no Ray head's GCS (another Ray port?); {_PORTS}"
            ) from None


def _take(queue: Iterator[T], n: int) -> list[T]:
    return [unit for _, unit in zip(range(n), queue, strict=False)]


def make_pool(workers: int, ray: str | None = None, gpu: bool = False) -> "WorkerPool | RayPool":
    """A local `WorkerPool`, or with `ray` (a cluster address, or "auto") a pool of Ray
    tasks on that cluster with the same methods (`rainbench.cluster.RayPool`), each with
    a GPU of its own when `gpu`."""
    if ray is None:
        return WorkerPool(workers)
    return RayPool(ray, workers, gpu)
