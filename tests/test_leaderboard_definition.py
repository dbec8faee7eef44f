"""The published leaderboard definitions name real recipes and only the metric
names of the contract; the newest one renders with the recipes' current versions
(older ones stay as published). Their real-paired splits name a real-paired layout, a
pair count where one is known and a checksum list beside the definition, and each
list written so far is well formed."""

import re
import tomllib
from pathlib import Path

import pytest

from rainbench.shards import manifest
from rainbench.synth.importers import LAYOUTS, REAL_PAIRED
from rainbench.synth.protocol import protocol_split
from rainbench.synth.recipes import DEFAULT_RECIPES, RECIPES

DEFINITIONS = sorted(
    (Path(__file__).resolve().parents[1] / "benchmarks/leaderboard").glob("*.toml")
)
CONTRACT = {"psnr_y", "ssim_y", "psnr", "ssim", "niqe", "brisque", "piqe"}
KINDS = {"real", "synthetic", REAL_PAIRED}


@pytest.mark.parametrize("path", DEFINITIONS, ids=lambda p: p.name)
def test_definition_is_consistent(path):
    definition = tomllib.loads(path.read_text())
    assert path.stem == f"v{definition['protocol_version']}"
    metrics = definition["metrics"]
    assert set(metrics["full_reference"]) | set(metrics["no_reference"]) <= CONTRACT
    synthetic = [s for s in definition["splits"] if s["kind"] == "synthetic"]
    assert {s["recipe"] for s in synthetic} == set(DEFAULT_RECIPES)
    names = [split["name"] for split in definition["splits"]]
    assert len(names) == len(set(names))
    for split in definition["splits"]:
        assert split["kind"] in KINDS
        assert set(split["metrics"]) <= set(metrics)
        if split["kind"] == "synthetic":
            assert split["name"] == f"syn-{split['recipe']}"


@pytest.mark.parametrize("path", DEFINITIONS, ids=lambda p: p.name)
def test_real_paired_splits_name_a_layout_a_count_and_a_checksum_list(path):
    definition = tomllib.loads(path.read_text())
    for split in definition["splits"]:
        if split["kind"] != REAL_PAIRED:
            continue
        name = split["name"]
        assert re.fullmatch(manifest.SPLIT, name) and not name.startswith("syn-")
        assert LAYOUTS[split["layout"]].kind == REAL_PAIRED
        assert "full_reference" in split["metrics"]
        assert split["checksums"] == f"{path.stem}/{name}.sha256"
        assert split.get("pairs") is None or split["pairs"] > 0
        loaded = protocol_split(path, name)
        assert (loaded.layout, loaded.pairs) == (split["layout"], split.get("pairs"))
        if loaded.checksums.exists():
            lines = loaded.checksums.read_text().splitlines()
            paths = [line.split("  ", 1)[1] for line in lines]
            assert all(re.fullmatch(r"[0-9a-f]{64}  \S.*", line) for line in lines)
            assert paths == sorted(set(paths))


def test_v2_adds_the_public_real_test_splits():
    v2 = tomllib.loads(next(p for p in DEFINITIONS if p.stem == "v2").read_text())
    real = {s["name"]: s["layout"] for s in v2["splits"] if s["kind"] == REAL_PAIRED}
    assert real == {
        "spa-real-test-1000": "spa",
        "gt-rain-test": "gt-rain",
        "realrain-1k-l-test": "realrain-1k",
        "realrain-1k-h-test": "realrain-1k",
        "lhp-rain-test": "lhp-rain",
    }


def test_the_newest_definition_uses_the_current_recipes():
    newest = max(DEFINITIONS, key=lambda p: int(p.stem.removeprefix("v")))
    for split in tomllib.loads(newest.read_text())["splits"]:
        if split["kind"] == "synthetic":
            assert split["recipe_version"] == RECIPES[split["recipe"]].version, split["name"]
