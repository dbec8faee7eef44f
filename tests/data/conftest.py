"""Datasets for the loader tests, built in code: captures of every kind in one split
with a synthetic split, and a dataset of two splits with a burst that real pairs were
made of."""

import shutil

import pytest

from rainbench.demo.captures import (
    render_scene,
    sample_specs,
    write_capture,
)
from rainbench.ingest import IngestOptions, ingest
from rainbench.synth.build import SynthOptions, synthesize

EVERYTHING_TEST = {"train": 0.0, "val": 0.0, "test": 1.0}
HALVES = {"train": 0.5, "val": 0.0, "test": 0.5}


@pytest.fixture(scope="session")
def _dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for spec in sample_specs(14, seed=4, size=(160, 120)):
        write_capture(root / "rainy", spec)
    for spec in sample_specs(3, seed=11, size=(160, 120)):
        write_capture(root / "clean", spec)
    ds = root / "ds"
    ingest(
        [root / "rainy"], ds, IngestOptions(workers=1, shard_bytes=150_000, split=EVERYTHING_TEST)
    )
    ingest([root / "clean"], ds, IngestOptions(workers=1, layer="clean", split=EVERYTHING_TEST))
    synthesize(ds, SynthOptions(recipes=("streak",), workers=1))
    return ds


@pytest.fixture
def ds(tmp_path, _dataset):
    return shutil.copytree(_dataset, tmp_path / "ds")


@pytest.fixture(scope="session")
def two_splits(tmp_path_factory, write_burst):
    """Half the captures in train, half in test, by key: rainy and clean lone stills,
    and a burst of rainy stills (in both splits) that real pairs were made of."""
    from rainbench.pairs.build import PairsOptions, build_pairs
    from rainbench.synth.video import render_rain_video

    root = tmp_path_factory.mktemp("two-splits")
    for spec in sample_specs(6, seed=21, size=(96, 64)):
        write_capture(root / "rainy", spec)
    for spec in sample_specs(6, seed=22, size=(96, 64)):
        write_capture(root / "clean", spec)
    frames = render_rain_video(render_scene(96, 64, 5), "drizzle", 8, seed=2, shake=0.0,
                               moving_object=False).frames  # fmt: skip
    write_burst(root / "rainy", frames)
    ds = root / "ds"
    ingest([root / "rainy"], ds, IngestOptions(workers=1, split=HALVES))
    ingest([root / "clean"], ds, IngestOptions(workers=1, layer="clean", split=HALVES))
    build_pairs(ds, PairsOptions(workers=1))
    return ds
