"""The public real-rain paired sets laid out as their downloads are, in miniature:
tiny random PNGs under each set's own folder and file names (GT-RAIN, RealRain-1k,
LHP-Rain, SPA-Data), built in code so that no file of those sets enters the repository;
and a leaderboard definition naming one of them as a protocol split.
"""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SIZE = (16, 12)  # width, height


def write_png(path: Path, seed: int, size: tuple[int, int] = SIZE) -> np.ndarray:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return pixels


def _write_all(root: Path, names: list[str]) -> Path:
    for seed, name in enumerate(names):
        write_png(root / name, seed)
    return root


def gt_rain_scene(scene: str, rainy: int, clean: int = 1) -> list[str]:
    """A GT-RAIN scene folder: rainy frames R-000…, clean frames C-000…."""
    frames = [f"{scene}/{scene}-Webcam-R-{n:03d}.png" for n in range(rainy)]
    return frames + [f"{scene}/{scene}-Webcam-C-{n:03d}.png" for n in range(clean)]


@pytest.fixture
def gt_rain(tmp_path) -> Path:
    """GT-RAIN/ as its three archives unzip: 5 test pairs from 2 scenes, each with one
    clean frame; the validation scene Gurutto_1-2 with a clean frame per rainy one."""
    root = tmp_path / "GT-RAIN"
    _write_all(root / "GT-RAIN_train", gt_rain_scene("Table_Rock_0-1", 2))
    _write_all(root / "GT-RAIN_val", gt_rain_scene("Gurutto_1-2", 2, clean=2))
    _write_all(
        root / "GT-RAIN_test", gt_rain_scene("Oinari_0-0", 3) + gt_rain_scene("M1135_0-0", 2)
    )
    return root


@pytest.fixture
def realrain_1k(tmp_path) -> Path:
    """RealRain-1k/ with its light and heavy sets, each with train/ and test/ folders of
    numbered input/ and target/ images; 2 test pairs in each set."""
    root = tmp_path / "RealRain-1k"
    for variant, numbers in (("L", {"train": [1, 2], "test": [3, 17]}), ("H", {"test": [4, 5]})):
        for partition, found in numbers.items():
            folder = f"RealRain-1k-{variant}/{partition}"
            _write_all(
                root,
                [f"{folder}/{role}/{n}.png" for n in found for role in ("input", "target")],
            )
    return root


@pytest.fixture
def lhp_rain(tmp_path) -> Path:
    """LHP-Rain/ with test/ as flat input/ and gt/ folders of one frame per sequence
    (2701, 2702) and train/ as per-sequence folders (0001 with three frames, 0002 with
    two), a ground truth per rainy frame."""
    root = tmp_path / "LHP-Rain"
    _write_all(root / "test", [f"{role}/{n}.png" for n in (2701, 2702) for role in ("input", "gt")])
    frames = [("0001", n) for n in range(3)] + [("0002", n) for n in range(2)]
    _write_all(
        root / "train",
        [f"{role}/{seq}/{n:03d}.png" for seq, n in frames for role in ("input", "gt")],
    )
    return root


@pytest.fixture
def spa_data(tmp_path) -> Path:
    """SPA-Data/ with testing/ (real_test_1000.txt listing 3 pairs as the release
    writes them) and training/ (real_world.txt listing crops of videos 000 and 001)."""
    root = tmp_path / "SPA-Data"
    test = [
        (f"real_test_1000/rain/{n:03d}.png", f"real_test_1000/gt/{n:03d}gt.png") for n in range(3)
    ]
    train = [
        (f"real_world/{v}/{v}-{f}/{v}-{f}_1_1.png", f"real_world_gt/{v}/{v}-{f}/{v}-{f}_1_1.png")
        for v in ("000", "001")
        for f in (1, 2)
    ]
    for folder, listed, name in [
        ("testing", test, "real_test_1000"),
        ("training", train, "real_world"),
    ]:
        _write_all(root / folder, [path for pair in listed for path in pair])
        lines = "".join(f"/{rain} /{gt}\n" for rain, gt in listed)
        (root / folder / f"{name}.txt").write_text(lines)
    return root


@pytest.fixture
def protocol_file(tmp_path):
    """Writes a definition `v9.toml` whose one real-paired split, gt-rain-test, holds
    `pairs` pairs (none stated: None) with its checksum list at `checksums`."""

    def write(pairs: int | None = 5, checksums: str = "v9/gt-rain-test.sha256") -> Path:
        count = f"pairs = {pairs}\n" if pairs is not None else ""
        path = tmp_path / "v9.toml"
        path.write_text(
            'protocol_version = "9"\n[[splits]]\nname = "gt-rain-test"\nkind = "real-paired"\n'
            f'layout = "gt-rain"\n{count}checksums = "{checksums}"\nmetrics = ["full_reference"]\n'
        )
        return path

    return write
