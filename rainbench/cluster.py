"""Run units of work on a Ray cluster (the optional `cluster` extra): `RayPool` stands in
for `rainbench.parallel.WorkerPool` with Ray tasks, `RayActors` keeps something costly
to build (a derainer, its metrics) alive in one actor per CPU or GPU.

Both only connect to a cluster that is already running and leave it running, except
`--ray local`, an instance of this run's own. A task whose worker or node dies is run
again by Ray; an exception the function raises itself reaches the caller as that
exception, not wrapped, so callers handle errors as they do for local workers. Tasks and
actors reach the object store the driver reaches (`STORE_LOCATION`).
"""

import logging
import os
import secrets
import socket
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from rainbench.errors import RainbenchError, first_line
from rainbench.parallel import WorkerPool

T = TypeVar("T")
R = TypeVar("R")

INSTALL = "pip install 'rainbench[cluster]'"
# Runs of a unit whose worker or node died before Ray gives up on it.
MAX_RETRIES = 3
_CONNECT_SECONDS = 10.0
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


class ActorLost(ClusterError):
    """An actor's process died running a unit, each time Ray restarted it: the unit
    itself kills it (a crash in native code, os._exit, the memory killer)."""


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
        self._opened = False
        self._set: list[str] = []  # environment variables set for a local instance
        store = {name: os.environ[name] for name in STORE_LOCATION if name in os.environ}
        self.runtime_env = {"env_vars": store} if store else None

    def __enter__(self):
        if not self.ray.is_initialized():
            try:
                self._connect()
            except BaseException:
                self.__exit__()  # what a local instance set in the environment goes
                raise
            self._opened = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._opened:
            # Disconnects this driver; the cluster, started by someone else, runs on (a
            # local instance stops).
            self.ray.shutdown()
            self._opened = False
        for name in self._set:
            os.environ.pop(name, None)
        self._set = []

    def _connect(self) -> None:
        if self.address == "local":
            self._own_token()
        else:
            _check_reachable(self.address)
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

    def get(self, ref):
        exceptions = self.ray.exceptions
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
        # A bounded number of units in flight, so the driver's memory does not grow with
        # the input: enough to keep every CPU of the cluster busy.
        pending = [task.remote(unit) for unit in _take(queue, self._in_flight())]
        while pending:
            done, pending = self.connection.ray.wait(pending, num_returns=1)
            result = self.connection.get(done[0])
            pending += [task.remote(unit) for unit in _take(queue, 1)]
            yield result

    def map_ordered(self, fn: Callable[[T], R], units: Iterable[T]) -> Iterator[R]:
        """Like `map_unordered`, but results come in the order of `units`."""
        task = self._task(fn)
        queue = iter(units)
        ahead = [task.remote(unit) for unit in _take(queue, self._in_flight())]
        while ahead:
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

    def _in_flight(self) -> int:
        slots = self.connection.gpus() if self.gpu else self.connection.cpus()
        return 2 * max(self.workers, slots)


class _Holder:
    """The actor: holds what `build()` makes, and calls functions on it."""

    def __init__(self, build: Callable[[], Any]):
        self.build = build
        self.held = None

    def call(self, fn: Callable[[Any, T], R], unit: T) -> R:
        # Built on the first call, not in the constructor: an error building it then
        # reaches the caller as itself, not as the actor's death.
        if self.held is None:
            self.held = self.build()
        return fn(self.held, unit)


class RayActors:
    """Actors on the cluster at `address`, each holding what `build()` returns (built once
    per actor): one per GPU of the cluster when `gpu`, else one per CPU, at most `most`.
    An actor whose node dies is built again elsewhere and its unit run again."""

    def __init__(self, address: str, build: Callable[[], Any], gpu: bool, most: int):
        self.connection = _Connection(address)
        self.build, self.gpu, self.most = build, gpu, max(1, most)
        self.actors: list = []

    def __enter__(self) -> "RayActors":
        self.connection.__enter__()
        try:
            self._start()
        except BaseException:
            self.connection.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for actor in self.actors:
            self.connection.ray.kill(actor)
        self.actors = []
        self.connection.__exit__(*exc)

    def _start(self) -> None:
        count = self.connection.gpus() if self.gpu else self.connection.cpus()
        self.actors = [self._new_actor() for _ in range(min(count, self.most))]

    def _new_actor(self):
        return (
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

    def _replace(self, actor):
        """A new actor in place of `actor`, which is dead."""
        self.connection.ray.kill(actor)
        self.actors[self.actors.index(actor)] = fresh = self._new_actor()
        return fresh

    def ask(self, fn: Callable[[Any, T], R], unit: T) -> R:
        """`fn(held, unit)` on one actor: a question about what the work is done with."""
        return self.connection.get(self.actors[0].call.remote(fn, unit))

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

        def following() -> list[T]:
            return [again.pop(0)] if again else list(_take(queue, 1))

        busy = {}
        for actor in self.actors:
            for unit in following():
                busy[actor.call.remote(fn, unit)] = actor, unit
        while busy:
            done, _ = self.connection.ray.wait(list(busy), num_returns=1)
            actor, unit = busy.pop(done[0])
            try:
                results = [self.connection.get(done[0])]
            except ActorLost as error:
                if lost is None:
                    raise
                actor = self._replace(actor)
                pieces = split(unit) if split is not None else []
                again[:0] = pieces if len(pieces) > 1 else []
                results = [] if len(pieces) > 1 else [lost(unit, str(error))]
            for unit in following():
                busy[actor.call.remote(fn, unit)] = actor, unit
            yield from results


def _check_reachable(address: str) -> None:
    """Refuse in seconds a HOST:PORT (or ray://HOST:PORT) where nobody listens, or where
    what listens is no Ray: Ray itself retries for minutes, in many lines. Both the head's
    GCS and a Ray client server speak gRPC, so a gRPC channel must come up."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto": Ray finds the address `ray start` left here, or says there is none
    try:
        socket.create_connection((host, int(port)), timeout=_CONNECT_SECONDS).close()
    except OSError as error:
        raise ClusterError(
            f"cannot connect to the Ray cluster at {address}: {first_line(error)}"
        ) from None
    if os.environ.get("RAY_USE_TLS", "0").lower() not in ("0", "false"):
        return  # a TLS cluster: a plain channel cannot tell
    import grpc  # comes with Ray

    channel = grpc.insecure_channel(f"{host}:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=_CONNECT_SECONDS)
        if not address.startswith("ray://"):
            _check_gcs(channel, address)
    except grpc.FutureTimeoutError:
        raise ClusterError(
            f"cannot connect to the Ray cluster at {address}: what listens there gave no "
            f"gRPC answer within {_CONNECT_SECONDS:g} s, so it is no Ray; {_PORTS}"
        ) from None
    finally:
        channel.close()


_PORTS = "give the head's GCS port (HEAD:6379 by default) or its client server's (ray://HEAD:10001)"


def _check_gcs(channel, address: str) -> None:
    """Refuse a port that speaks gRPC but is no head's GCS (a raylet's, an object
    manager's): Ray would retry it for 20 s, a warning a second. The question is the
    one a driver asks first, its cluster's ID; any answer but "no such method" passes
    (a cluster that wants a token refuses it, and Ray then says why)."""
    import grpc

    ask = channel.unary_unary(
        "/ray.rpc.NodeInfoGcsService/GetClusterId",
        request_serializer=bytes,  # an empty request: no field set
        response_deserializer=bytes,
    )
    try:
        ask(b"", timeout=_CONNECT_SECONDS)
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.UNIMPLEMENTED:
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
