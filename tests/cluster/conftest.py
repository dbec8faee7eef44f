"""A real Ray cluster on this machine for the cluster tests: a head and a second node of
one CPU each, started with the `ray` command beside this Python and stopped by killing
exactly the processes they started (`ray stop` would stop every Ray on the machine).
Without token authentication, said explicitly: a ~/.ray/auth_token left by anything
else would turn it on, and then refuse this driver, which has no token. And a local S3
or GCS endpoint that only the driver is pointed at."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

RAY = Path(sys.executable).parent / "ray"
START_SECONDS = 90


class LocalCluster:
    """Ray nodes of one CPU each, every one in a session of its own, which its daemons
    and worker processes keep: killing a session's processes takes the node down."""

    def __init__(self, temp: Path):
        self.temp = temp
        self.address = f"127.0.0.1:{_free_port()}"
        self.sessions: list[int] = []

    def start_head(self) -> None:
        port = self.address.rpartition(":")[2]
        self._start("--head", "--port", port, "--include-dashboard", "false")

    def add_node(self, **env: str) -> int:
        """Another node, its processes given `env`; returns its session."""
        return self._start("--address", self.address, **env)

    def kill(self, session: int) -> None:
        for pid, sid in _sessions().items():
            if sid == session and pid != os.getpid():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        for session in self.sessions:
            self.kill(session)

    def _start(self, *args: str, **env: str) -> int:
        temp = self.temp / str(len(self.sessions))  # short: unix socket paths
        command = [str(RAY), "start", *args, "--node-ip-address", "127.0.0.1"]
        command += ["--num-cpus", "1", "--object-store-memory", str(100 * 2**20)]
        command += ["--disable-usage-stats", "--temp-dir", str(temp)]
        command += ["--ray-client-server-port", str(_free_port())]
        command += ["--dashboard-agent-listen-port", str(_free_port())]
        temp.mkdir(parents=True, exist_ok=True)
        process = subprocess.Popen(
            command,
            # A node's processes work in temp: what they leave behind stays out of the
            # folder the tests run in.
            cwd=temp,
            start_new_session=True,
            env={**os.environ, "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled", **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        output, _ = process.communicate(timeout=START_SECONDS)
        # The session's id is the pid of the `ray start` that made it.
        self.sessions.append(process.pid)
        if process.returncode != 0:
            pytest.fail(f"ray start failed: {output[-2000:]}")
        return process.pid


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _sessions() -> dict[int, int]:
    """pid → session id of every process this user can see."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        found[int(stat.parent.name)] = int(fields[3])  # after state, ppid, pgrp: session
    return found


@pytest.fixture(scope="session")
def local_cluster():
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'rainbench[cluster]'")
    cluster = LocalCluster(Path(tempfile.mkdtemp(prefix="rbray", dir="/tmp")))
    try:
        cluster.start_head()
        cluster.add_node()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.temp, ignore_errors=True)


@pytest.fixture
def lone_cluster():
    """A cluster of its own, a head of one CPU, for a test that takes it down."""
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'rainbench[cluster]'")
    cluster = LocalCluster(Path(tempfile.mkdtemp(prefix="rblone", dir="/tmp")))
    try:
        cluster.start_head()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.temp, ignore_errors=True)


@pytest.fixture
def ray_cluster(local_cluster) -> str:
    """The address ("127.0.0.1:PORT") of a cluster of two nodes of one CPU each."""
    return local_cluster.address


# Per store: its client's module and filesystem, the local server's module and
# arguments (the port last), and the variable that points a client at that server.
_STORES = {
    "s3": ("s3fs", "S3FileSystem", "moto.server", ["-H", "127.0.0.1", "-p"], "AWS_ENDPOINT_URL"),
    "gs": (
        "gcsfs",
        "GCSFileSystem",
        "gcp_storage_emulator",
        ["start", "--in-memory", "-q", "--host", "127.0.0.1", "--port"],
        "STORAGE_EMULATOR_HOST",
    ),
}


@pytest.fixture(params=sorted(_STORES))
def driver_store(request, tmp_path, monkeypatch, local_server) -> str:
    """`gs://bucket` or `s3://bucket` on a local endpoint (the GCS emulator or moto, a
    process of its own) that only this driver is pointed at: the Ray nodes were started
    with the environment's other one, where nothing listens. rainbench's mirrors under
    tmp_path."""
    client, kind, server_module, arguments, variable = _STORES[request.param]
    filesystem = getattr(pytest.importorskip(client), kind)
    pytest.importorskip(server_module)
    port = _free_port()
    server = local_server(server_module, [*arguments, str(port)], port)
    try:
        monkeypatch.setenv(variable, f"http://127.0.0.1:{port}")
        monkeypatch.setenv("RAINBENCH_CACHE", str(tmp_path / "cache"))
        filesystem.clear_instance_cache()
        filesystem().mkdir("bucket")
        yield f"{request.param}://bucket"
    finally:
        server.kill()
        server.wait()
        filesystem.clear_instance_cache()
