"""Fixtures that make captures in code: a varied capture folder (every format, mode
and orientation, EXIF with GPS, awkward names), near-duplicates and bad files.
Image sizes are small so the suite stays fast; benchmarks use 12 MP.
"""

import contextlib
import importlib.util
import os
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# One torch thread everywhere, subprocesses too: runs compared bit for bit (a resumed
# training, a killed one) must not differ by a thread count that follows the machine's
# load (rainbench.threads reads this as the user's choice).
os.environ.setdefault("OMP_NUM_THREADS", "1")

from rainbench.demo.captures import (
    CaptureSpec,
    sample_specs,
    write_bad_corpus,
    write_capture,
    write_near_duplicates,
    write_picture,
)
from rainbench.parallel import WorkerPool

# Object stores: only the local S3 endpoint and GCS emulator tests/store starts (on these
# ports), with fake credentials, never a real store. Set here, before any worker pool
# starts, because forkserver workers keep the environment their server started with.
_ports = []
for _ in range(2):
    with socket.socket() as _probe:
        _probe.bind(("127.0.0.1", 0))
        _ports.append(_probe.getsockname()[1])
os.environ.update(
    AWS_ENDPOINT_URL=f"http://127.0.0.1:{_ports[0]}",
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_DEFAULT_REGION="us-east-1",
    STORAGE_EMULATOR_HOST=f"http://127.0.0.1:{_ports[1]}",
    # gcsfs asks a bucket's layout over gRPC first, which no emulator answers: each
    # lookup would wait 60 s before falling back to the JSON API the emulator speaks.
    GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT="false",
)
# Nor a developer's own readers' pixel cap: tests set the one they mean.
for _name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "RAINBENCH_MAX_PIXELS"):
    os.environ.pop(_name, None)

SMALL = (480, 360)
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="session")
def load_benchmark():
    """Import benchmarks/<name>.py as a module, as it runs as a script: with its folder,
    and so `bench`, its shared helpers, importable."""

    def load(name: str):
        with pytest.MonkeyPatch.context() as patch:
            patch.syspath_prepend(str(BENCHMARKS))
            spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="session")
def local_server():
    """Start `python -m MODULE ARGUMENTS…` in a process of its own, its output dropped
    (a test's commands print to the same stream), and return it once it listens on
    127.0.0.1:`port`; the caller stops it."""

    def start(module: str, arguments: list[str], port: int) -> subprocess.Popen:
        server = subprocess.Popen(
            [sys.executable, "-m", module, *arguments],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 90
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return server
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    server.kill()
                    pytest.fail(f"{module} did not start listening on port {port}")
                time.sleep(0.1)

    return start


def _write_burst(root: Path, frames: list[np.ndarray], first: int = 0) -> None:
    """Stills of one camera a second apart, named and timed from frame `first` on: what
    ingest groups as a burst."""
    start = datetime(2026, 5, 1, 14, 0, 0)
    for index, frame in enumerate(frames, start=first):
        spec = CaptureSpec(
            name=f"burst/IMG_{index:04d}.jpg",
            quality=95,
            make="Canon",
            model="EOS R6",
            captured_at=start + timedelta(seconds=index),
        )
        write_picture(root, spec, Image.fromarray(frame))


@pytest.fixture(scope="session")
def write_burst():
    """`write_burst(root, frames, first=0)`: a burst of stills of `frames` in `root`."""
    return _write_burst


@contextlib.contextmanager
def _file_size_limit(size: int) -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


class _PoolElsewhere(WorkerPool):
    """Runs each unit in a folder of its own, as a Ray task runs in its worker's."""

    def __init__(self, folder: Path):
        super().__init__(1)
        self.folder = folder

    def map_unordered(self, fn, units):
        for unit in units:
            with contextlib.chdir(self.folder):
                result = fn(unit)
            yield result

    map_ordered = map_unordered


@pytest.fixture
def pool_elsewhere(tmp_path) -> WorkerPool:
    """A one-worker pool whose units run in `pool_elsewhere.folder` (empty, under
    tmp_path): a relative path handed to a unit would be read or written there."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    return _PoolElsewhere(folder)


# Run in a subprocess before the code of `held_at_rename`: its first os.replace waits for
# the `go` file, its output written and not yet put in place.
_HELD_AT_RENAME = """
import os, time
from pathlib import Path
replace = os.replace
def held(*names):
    Path({ready!r}).touch()
    while not Path({go!r}).exists():
        time.sleep(0.01)
    replace(*names)
os.replace = held
"""


@pytest.fixture
def held_at_rename(tmp_path):
    """`process, release = held_at_rename(code)` runs the Python `code` in a subprocess
    and returns once it waits just before its first rename (another writer may then
    write the same file); `release()` lets it go on."""
    folder = tmp_path / "held"
    folder.mkdir()
    ready, go = folder / "ready", folder / "go"

    def start(code: str) -> tuple[subprocess.Popen, Callable[[], None]]:
        script = _HELD_AT_RENAME.format(ready=str(ready), go=str(go)) + code
        process = subprocess.Popen(
            [sys.executable, "-c", script], stderr=subprocess.PIPE, text=True
        )
        while not ready.exists() and process.poll() is None:
            time.sleep(0.01)
        return process, go.touch

    return start


@pytest.fixture(scope="session")
def file_size_limit():
    """`with file_size_limit(size):` writes past `size` bytes fail with EFBIG in this
    process (Python ignores SIGXFSZ), as on a full disk or under a quota, root too."""
    return _file_size_limit


@pytest.fixture(scope="session")
def capture_specs() -> list[CaptureSpec]:
    # 33 in a row cover every rare kind (grey, CMYK, 16-bit, alpha, WebP, TIFF, DNG, HEIC).
    return sample_specs(33, seed=3, size=SMALL)


@pytest.fixture(scope="session")
def _capture_folder(tmp_path_factory, capture_specs) -> Path:
    root = tmp_path_factory.mktemp("captures") / "raw"
    for spec in capture_specs:
        write_capture(root, spec)
    return root


@pytest.fixture
def capture_folder(tmp_path, _capture_folder) -> Path:
    """A fresh copy of the sample captures, safe to add to or touch."""
    return Path(shutil.copytree(_capture_folder, tmp_path / "raw", symlinks=True))


@pytest.fixture
def bad_folder(tmp_path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "bad"
    return root, write_bad_corpus(root)


@pytest.fixture
def near_duplicate_folder(tmp_path) -> tuple[Path, dict[str, Path]]:
    root = tmp_path / "near"
    spec = CaptureSpec("scene.jpg", *SMALL, orientation=1, seed=11)
    return root, write_near_duplicates(root, spec)


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server(tmp_path):
    """A folder served over HTTP on 127.0.0.1; yields (folder, base URL)."""
    folder = tmp_path / "served"
    folder.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def any_niqe_parameters(monkeypatch, tmp_path):
    """A NIQE file of the right form (not the published values), for tests of anything
    but the values."""
    import numpy as np
    import scipy.io

    from rainbench.metrics import weights

    path = tmp_path / "niqe_modelparameters.mat"
    scipy.io.savemat(path, {"mu_prisparam": np.zeros((1, 36)), "cov_prisparam": np.eye(36)})
    monkeypatch.setattr(
        weights, "require", lambda metric, weights_dir=None: path if metric == "niqe" else None
    )


@pytest.fixture
def session_processes():
    """A function: the living (not zombie) processes of a session, read from /proc."""
    if not Path("/proc/self/stat").exists():
        pytest.skip("reads /proc (Linux)")

    def living(session: int) -> set[int]:
        found = set()
        for entry in Path("/proc").iterdir():
            try:
                # After the command's closing parenthesis: state, ppid, pgrp, session, …
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[3]) == session:
                found.add(int(entry.name))
        return found

    return living


@pytest.fixture
def browser_tooling():
    """Playwright's sync API and a Chromium executable, or a skip (a failure on CI, where
    .ci/run installs Chromium)."""
    reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright, reason = None, "playwright is not installed (pip install playwright)"
    executable = next(
        filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None
    )
    if reason is None and executable is None:
        reason = "no chromium, chromium-browser or google-chrome on PATH"
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tooling missing on CI: {reason}")
        pytest.skip(reason)
    return sync_playwright, executable
