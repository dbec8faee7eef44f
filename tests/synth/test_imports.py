"""`rainbench import-paired` end to end: a folder laid out like Rain100L becomes a
paired split; problems are reported, never guessed."""

import io
import tarfile

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from rainbench.cli import main
from rainbench.shards.dataset import Dataset, DatasetError
from rainbench.shards.verify import verify
from rainbench.synth.imports import import_paired


def _png(path, seed, size=(48, 32)):
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return pixels


@pytest.fixture
def rain100l(tmp_path):
    root = tmp_path / "Rain100L"
    truth = {}
    for n in range(1, 6):
        truth[n] = (_png(root / f"rain-{n}.png", n), _png(root / f"norain-{n}.png", 100 + n))
    (root / "norain-5.png").unlink()  # a missing partner
    _png(root / "norain-4.png", 104, size=(40, 32))  # a size mismatch
    return root, truth


def test_rain100l_folder_becomes_a_split(tmp_path, rain100l):
    root, truth = rain100l
    ds = tmp_path / "ds"
    summary, problems = import_paired(root, "rain100", "rain100l", ds, 10**9, workers=1)
    assert summary.stored["rain100l"] == 3
    assert {p.kind for p in problems} == {"missing-gt", "size-mismatch"}
    assert verify(Dataset(ds)) == []
    pairs = pd.read_parquet(ds / "manifests/synthetic.parquet")
    assert sorted(pairs.source_rain) == ["rain-1.png", "rain-2.png", "rain-3.png"]
    assert set(pairs.recipe) == {"import:rain100"}
    for pair in pairs.itertuples():
        with tarfile.open(ds / pair.shard) as archive:
            rain = archive.extractfile(f"{pair.key}.rain.png").read()
            gt = archive.extractfile(f"{pair.key}.gt.png").read()
        n = int(pair.source_rain.split("-")[1].split(".")[0])
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(rain))), truth[n][0])
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(gt))), truth[n][1])
    again, _ = import_paired(root, "rain100", "rain100l", ds, 10**9, workers=1)
    assert sum(again.stored.values()) == 0 and again.existing["rain100l"] == 3


def test_names_are_checked(tmp_path, rain100l):
    for bad in ("test", "syn-streak", "Rain.100", ""):
        with pytest.raises(DatasetError, match="--name"):
            import_paired(rain100l[0], "rain100", bad, tmp_path / "ds", 10**9, workers=1)


def test_cli_reports_problems_and_fails_on_the_wrong_layout(tmp_path, rain100l):
    runner = CliRunner()
    ds = str(tmp_path / "ds")
    ok = runner.invoke(
        main,
        [
            "import-paired",
            str(rain100l[0]),
            "--layout",
            "rain100",
            "--name",
            "rain100l",
            "--into",
            ds,
            "--no-progress",
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert "missing-gt" in ok.output and "rain100l: 3 pairs stored" in ok.output
    wrong = runner.invoke(
        main,
        [
            "import-paired",
            str(rain100l[0]),
            "--layout",
            "rain1400",
            "--name",
            "other",
            "--into",
            ds,
            "--no-progress",
        ],
    )
    assert wrong.exit_code == 1
    assert "no-pairs" in wrong.output
