"""`rainbench score --ray`: images scored as Ray tasks give the rows scored here."""

import numpy as np
import pyarrow.parquet as pq
from click.testing import CliRunner
from PIL import Image

from rainbench.cli import main


def _score(tmp_path, out: str, *more: str) -> list[dict]:
    command = ["score", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref")]
    command += ["--metrics", "psnr_y,ssim_y", "--no-cache", "--out", str(tmp_path / out)]
    result = CliRunner().invoke(main, [*command, *more])
    assert result.exit_code == 0, result.output
    return pq.read_table(tmp_path / out).to_pylist()


def test_score_on_ray_gives_the_local_rows(tmp_path, ray_cluster):
    rng = np.random.default_rng(4)
    for folder in ("pred", "ref"):
        (tmp_path / folder).mkdir()
    for index in range(5):
        truth = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        noisy = np.clip(truth + rng.normal(0, 8, truth.shape), 0, 255).astype(np.uint8)
        Image.fromarray(truth).save(tmp_path / "ref" / f"{index}.png")
        Image.fromarray(noisy).save(tmp_path / "pred" / f"{index}.png")
    here = _score(tmp_path, "here.parquet", "-j", "1")
    assert _score(tmp_path, "ray.parquet", "--ray", ray_cluster) == here
