"""Fake evaluation results, written in code exactly as the harness lays them out:
RESULTS/<model>/<dataset>/<split>.parquet + .json + .crops/<key>.png, and the rainy input
and ground-truth crops under RESULTS/_reference/<dataset>/<split>.crops/.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageFilter

LOWER_IS_BETTER = {
    "psnr_y": False,
    "ssim_y": False,
    "psnr": False,
    "ssim": False,
    "niqe": True,
    "brisque": True,
    "piqe": True,
}
NO_REFERENCE = ("niqe", "brisque", "piqe")
FULL_REFERENCE = ("psnr_y", "ssim_y", "psnr", "ssim")
CROP = 160


def write_run(
    root: Path,
    model: str,
    dataset: str,
    split: str,
    *,
    kind: str,
    metrics: dict[str, list],
    rain_types: list | None = None,
    status: list[str] | None = None,
    s_per_mp: list[float] | None = None,
    keys: list[str] | None = None,
    provenance: bool = True,
    finished: bool = True,
    lower_is_better: dict[str, bool] | None = None,
    version: str = "1.0",
    crops: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write one run's Parquet (one row per image) and JSON; returns the Parquet's path."""
    n = len(next(iter(metrics.values())))
    keys = keys or [f"{dataset}-{split}-{i:03d}" for i in range(n)]
    status = status or ["ok"] * n
    rain_types = rain_types or [None] * n
    s_per_mp = s_per_mp or [0.5] * n
    columns = {
        "key": (keys, pa.string()),
        "split": ([split] * n, pa.string()),
        "kind": ([kind] * n, pa.string()),
        "rain_type": (rain_types, pa.string()),
        "width": ([640] * n, pa.int64()),
        "height": ([480] * n, pa.int64()),
        "status": (status, pa.string()),
        "error": (
            [None if s == "ok" else "RuntimeError: out of memory" for s in status],
            pa.string(),
        ),
        "seconds": ([v * 0.3072 for v in s_per_mp], pa.float64()),
        "s_per_mp": (s_per_mp, pa.float64()),
        "peak_mem_mb": ([512.0] * n, pa.float64()),
    }
    for metric, values in metrics.items():
        values = [None if s != "ok" else v for v, s in zip(values, status, strict=True)]
        columns[metric] = (values, pa.float64())
    table = pa.table({name: pa.array(values, type) for name, (values, type) in columns.items()})
    folder = root / model / dataset
    folder.mkdir(parents=True, exist_ok=True)
    parquet = folder / f"{split}.parquet"
    pq.write_table(table, parquet)
    for key, image in (crops or {}).items():
        _save(folder / f"{split}.crops" / f"{key}.png", image)
    if provenance:
        directions = {m: LOWER_IS_BETTER[m] for m in metrics if m in LOWER_IS_BETTER}
        (folder / f"{split}.json").write_text(
            json.dumps(
                {
                    "model": {
                        "name": model,
                        "version": version,
                        "description": f"{model}, a test derainer",
                        "options": {"strength": 1.0},
                    },
                    "checkpoint": {"path": f"weights/{model}.pt", "sha256": "ab" * 32}
                    if model != "identity"
                    else None,
                    "dataset": {
                        "name": dataset,
                        "path": f"/data/{dataset}",
                        "manifest": "manifests/samples.parquet",
                        "manifest_sha256": "cd" * 32,
                        "split_sha256": "ef" * 32,
                    },
                    "split": split,
                    "kind": kind,
                    "metrics": list(metrics),
                    "unavailable_metrics": {},
                    "lower_is_better": {**directions, **(lower_is_better or {})},
                    "metric_protocol_version": "1",
                    "tile": {"size": 512, "overlap": 32} if model == "nlcl" else None,
                    "device": "cuda:0" if model == "nlcl" else "cpu",
                    "hardware": {"cpu": "Test CPU", "gpu": None, "cores": 8},
                    "versions": {"rainbench": "0.1.0", "numpy": "2.0"},
                    "started_at": "2025-01-01T10:00:00+00:00",
                    "finished_at": "2025-01-01T10:05:00+00:00" if finished else None,
                    "images": {
                        "ok": status.count("ok"),
                        "failed": status.count("failed"),
                    },
                    "crops": {key: [40, 20, CROP] for key in crops or {}},
                },
                indent=2,
            )
        )
    return parquet


def _save(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def scene(seed: int, size: int = CROP) -> np.ndarray:
    """A clean street-like picture: sky gradient, buildings with windows, a road."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, size)[:, None, None]
    sky = np.array([120, 160, 210]) * (1 - 0.4 * y) + np.array([200, 210, 220]) * 0.4 * y
    image = np.broadcast_to(sky, (size, size, 3)).copy()
    for _ in range(4):
        left = int(rng.integers(0, size - 30))
        width, top = int(rng.integers(24, 50)), int(rng.integers(size // 4, size // 2))
        image[top:, left : left + width] = rng.integers(60, 170, 3)
        image[top + 6 : size - 40 : 12, left + 5 : left + width - 5 : 9] = (240, 220, 140)
    image[size * 3 // 4 :] = (70, 72, 78)
    image[size * 7 // 8 : size * 7 // 8 + 3, ::16] = (230, 230, 230)
    return image.astype(np.uint8)


def rainy(clean: np.ndarray, seed: int) -> np.ndarray:
    """Bright slanted streaks and a light veil over `clean`."""
    rng = np.random.default_rng(seed)
    drops = (rng.random(clean.shape[:2]) > 0.99).astype(np.float64)
    layer = np.zeros(clean.shape[:2])
    for step in range(10):  # each drop becomes a streak slanting down to the right
        layer = np.maximum(layer, np.roll(drops, (2 * step, step), axis=(0, 1)))
    out = clean * 0.8 + 40 + layer[..., None] * 150
    return np.clip(out, 0, 255).astype(np.uint8)


def derained(clean: np.ndarray, rain: np.ndarray, quality: float) -> np.ndarray:
    out = quality * clean.astype(np.float64) + (1 - quality) * rain
    return np.asarray(Image.fromarray(out.astype(np.uint8)).filter(ImageFilter.SMOOTH))


# Fake models: quality in [0, 1], and the median seconds per megapixel.
MODELS = {"nlcl": (0.85, 0.9), "guided-filter": (0.5, 0.04), "identity": (0.0, 0.002)}
REAL_TYPES = ["drizzle"] * 6 + ["streak"] * 6 + ["storm"] * 5 + ["fog-like"] * 4 + [None] * 3


def build_results(root: Path) -> Path:
    """A small results directory: three models on a real and a synthetic split, one
    model with failed images and a fourth model whose real-split run has not finished."""
    rng = np.random.default_rng(7)
    crop_keys = 3
    real_keys = [f"cap{i:03d}" for i in range(len(REAL_TYPES))]
    syn_keys = [f"syn{i:03d}" for i in range(16)]
    clean = {key: scene(i) for i, key in enumerate(real_keys[:crop_keys] + syn_keys[:crop_keys])}
    rain = {key: rainy(image, i) for i, (key, image) in enumerate(clean.items())}
    reference = root / "_reference" / "demo"
    for key in real_keys[:crop_keys]:
        _save(reference / "test.crops" / f"{key}.input.png", rain[key])
    for key in syn_keys[:crop_keys]:
        _save(reference / "syn-streak.crops" / f"{key}.input.png", rain[key])
        _save(reference / "syn-streak.crops" / f"{key}.gt.png", clean[key])
    for model, (quality, speed) in MODELS.items():
        n = len(real_keys)
        status = ["ok"] * n
        if model == "guided-filter":
            status[4] = status[9] = "failed"
        write_run(
            root,
            model,
            "demo",
            "test",
            kind="real",
            keys=real_keys,
            rain_types=REAL_TYPES,
            status=status,
            s_per_mp=list(speed * rng.uniform(0.8, 1.2, n)),
            metrics={
                "niqe": list(6.5 - 2.5 * quality + rng.normal(0, 0.6, n)),
                "brisque": list(45 - 20 * quality + rng.normal(0, 5, n)),
                "piqe": list(50 - 18 * quality + rng.normal(0, 6, n)),
            },
            crops={k: derained(clean[k], rain[k], quality) for k in real_keys[:crop_keys]},
        )
        n = len(syn_keys)
        write_run(
            root,
            model,
            "demo",
            "syn-streak",
            kind="synthetic",
            keys=syn_keys,
            rain_types=["streak"] * n,
            s_per_mp=list(speed * rng.uniform(0.8, 1.2, n)),
            metrics={
                "psnr_y": list(24 + 8 * quality + rng.normal(0, 1.2, n)),
                "ssim_y": list(0.7 + 0.25 * quality + rng.normal(0, 0.02, n)),
                "psnr": list(23 + 8 * quality + rng.normal(0, 1.2, n)),
                "ssim": list(0.68 + 0.25 * quality + rng.normal(0, 0.02, n)),
                "niqe": list(6.0 - 2 * quality + rng.normal(0, 0.5, n)),
            },
            crops={k: derained(clean[k], rain[k], quality) for k in syn_keys[:crop_keys]},
        )
    write_run(
        root,
        "restormer-wip",
        "demo",
        "test",
        kind="real",
        keys=real_keys[:10],
        rain_types=REAL_TYPES[:10],
        s_per_mp=[1.7] * 10,
        metrics={
            "niqe": list(4.0 + rng.normal(0, 0.5, 10)),
            "brisque": list(30 + rng.normal(0, 5, 10)),
            "piqe": list(35 + rng.normal(0, 5, 10)),
        },
        finished=False,
    )
    return root


@pytest.fixture(scope="session")
def _results(tmp_path_factory) -> Path:
    return build_results(tmp_path_factory.mktemp("results") / "results")


@pytest.fixture
def results_dir(tmp_path, _results) -> Path:
    """A fresh copy of the fake results, safe to change."""
    return Path(shutil.copytree(_results, tmp_path / "results"))


@pytest.fixture(name="write_run")
def write_run_fixture():
    return write_run
