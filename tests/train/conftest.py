"""The trainers' tiny dataset: four rainy and three clean captures in one train split,
and a synthetic streak split of pairs for validation."""

import pytest

from rainbench.demo.captures import sample_specs, write_capture
from rainbench.ingest import IngestOptions, ingest
from rainbench.synth.build import SynthOptions, synthesize


@pytest.fixture(scope="session")
def _dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("trainers")
    for spec in sample_specs(4, seed=6, size=(128, 96)):
        write_capture(root / "rainy", spec)
    for spec in sample_specs(3, seed=12, size=(128, 96)):
        write_capture(root / "clean", spec)
    ds = root / "ds"
    options = {"workers": 1, "split": {"train": 1.0}}
    ingest([root / "rainy"], ds, IngestOptions(**options))
    ingest([root / "clean"], ds, IngestOptions(layer="clean", **options))
    synthesize(ds, SynthOptions(recipes=("streak",), source_split="train", workers=1))
    return ds
