"""`rainbench score --ray`: images scored as Ray tasks give the rows scored here, on a
cluster and on a local instance started for the run, which leaves nothing in $HOME."""

import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from PIL import Image

from rainbench.cli import main


@pytest.fixture
def images(tmp_path) -> list[str]:
    """`score`'s arguments for five predictions of five references, in tmp_path."""
    rng = np.random.default_rng(4)
    for folder in ("pred", "ref"):
        (tmp_path / folder).mkdir()
    for index in range(5):
        truth = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        noisy = np.clip(truth + rng.normal(0, 8, truth.shape), 0, 255).astype(np.uint8)
        Image.fromarray(truth).save(tmp_path / "ref" / f"{index}.png")
        Image.fromarray(noisy).save(tmp_path / "pred" / f"{index}.png")
    command = ["score", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref")]
    return [*command, "--metrics", "psnr_y,ssim_y", "--no-cache"]


def _score(images: list[str], out, *more: str) -> list[dict]:
    result = CliRunner().invoke(main, [*images, "--out", str(out), *more])
    assert result.exit_code == 0, result.output
    return pq.read_table(out).to_pylist()


def test_score_on_ray_gives_the_local_rows(tmp_path, images, ray_cluster):
    here = _score(images, tmp_path / "here.parquet", "-j", "1")
    assert _score(images, tmp_path / "ray.parquet", "--ray", ray_cluster) == here


def test_score_on_cuda_wants_the_clusters_gpus(tmp_path, images, ray_cluster):
    out = tmp_path / "cuda.parquet"
    result = CliRunner().invoke(
        main, [*images, "--out", str(out), "--device", "cuda", "--ray", ray_cluster]
    )
    assert result.exit_code == 1, result.output
    assert "the Ray cluster has no GPU; give --device cpu" in result.output
    assert not out.exists()


def test_a_local_instance_leaves_no_token_in_home(tmp_path, images):
    """Ray turns token checks on for an instance it starts, and would keep the token in
    ~/.ray/auth_token, where it outlives the run and turns them on for every later
    `ray start` and `--ray auto` on the machine; `--ray local` gives Ray one instead."""
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'rainbench[cluster]'")
    home = tmp_path / "home"
    home.mkdir()
    env = {name: value for name, value in os.environ.items() if not name.startswith("RAY_")}
    out = tmp_path / "local.parquet"
    ran = subprocess.run(
        [sys.executable, "-m", "rainbench", *images, "--out", str(out), "--ray", "local"],
        env={**env, "HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stderr
    assert not (home / ".ray").exists()
    assert pq.read_table(out).to_pylist() == _score(images, tmp_path / "here.parquet", "-j", "1")


_TWICE = """
import os
from rainbench.cluster import RayPool


def double(x):
    return 2 * x


for attempt in range(2):
    with RayPool("local", 1) as pool:
        print(sorted(pool.map_unordered(double, [1, 2])))
    print(sorted(name for name in os.environ if name.startswith("RAY_AUTH")))
"""


def test_local_instances_one_after_another_in_one_process(tmp_path):
    """Ray keeps the first local instance's token for the life of the process: the
    second must be started with the same one, or it refuses its own driver."""
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'rainbench[cluster]'")
    home = tmp_path / "home"
    home.mkdir()
    env = {name: value for name, value in os.environ.items() if not name.startswith("RAY_")}
    ran = subprocess.run(
        [sys.executable, "-c", _TWICE],
        env={**env, "HOME": str(home), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split("\n") == ["[2, 4]", "[]", "[2, 4]", "[]", ""]
    assert not (home / ".ray").exists()
