"""`rainbench.cluster`'s check on connect: a cluster whose workers run another rainbench
than the driver, or cannot import one, is refused in one line before any work goes in."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import rainbench
from rainbench import __version__
from rainbench.cluster import _version_probe


def _on_path(root, init: str) -> str:
    """A folder holding a package `rainbench` whose `__init__.py` is `init`."""
    (root / "rainbench").mkdir(parents=True)
    (root / "rainbench" / "__init__.py").write_text(init)
    return str(root)


# The driver, a process of its own (one that was the driver of a cluster since killed
# would be ended by Ray): prints the error its pool refuses to start with.
_DRIVER = """
import sys
from rainbench.cluster import ClusterError, RayPool
try:
    with RayPool(sys.argv[1], 2) as pool:
        print(sorted(pool.map_unordered(abs, range(-2, 2))))
except ClusterError as error:
    print("error:", error)
"""


@pytest.mark.parametrize(
    ("init", "said"),
    [
        (
            '__version__ = "0.0.9"\n',
            "runs rainbench 0.0.9 on its workers (node NODE), this driver "
            f"{__version__}: install the same version on every node",
        ),
        (
            'raise ImportError("no rainbench here")\n',
            "has workers (node NODE) that cannot import rainbench (ImportError: no "
            f"rainbench here): install rainbench {__version__} on every node",
        ),
    ],
    ids=["other-version", "none"],
)
def test_a_node_with_another_rainbench_is_refused_in_one_line_on_connect(
    lone_cluster, tmp_path, init, said
):
    lone_cluster.add_node(PYTHONPATH=_on_path(tmp_path / "site", init))
    # Ray puts the driver's working folder on its workers' path, ahead of PYTHONPATH:
    # out of the repository, so that the node's workers import the package made here.
    repository = str(Path(rainbench.__file__).parents[1])
    ran = subprocess.run(
        [sys.executable, "-c", _DRIVER, lone_cluster.address],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": repository, "RAY_AUTH_MODE": "disabled"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    expected = re.escape(f"error: the Ray cluster at {lone_cluster.address} {said}\n")
    assert re.fullmatch(expected.replace("NODE", r"[\d.]+"), ran.stdout)


def test_the_probe_answers_the_version_this_process_imports():
    assert _version_probe()() == (__version__, "")
