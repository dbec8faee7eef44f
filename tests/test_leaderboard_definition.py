"""The published leaderboard definitions name real recipes and only the metric
names of the contract; the newest one renders with the recipes' current versions
(older ones stay as published)."""

import tomllib
from pathlib import Path

import pytest

from rainbench.synth.recipes import DEFAULT_RECIPES, RECIPES

DEFINITIONS = sorted(
    (Path(__file__).resolve().parents[1] / "benchmarks/leaderboard").glob("*.toml")
)
CONTRACT = {"psnr_y", "ssim_y", "psnr", "ssim", "niqe", "brisque", "piqe"}


@pytest.mark.parametrize("path", DEFINITIONS, ids=lambda p: p.name)
def test_definition_is_consistent(path):
    definition = tomllib.loads(path.read_text())
    assert path.stem == f"v{definition['protocol_version']}"
    metrics = definition["metrics"]
    assert set(metrics["full_reference"]) | set(metrics["no_reference"]) <= CONTRACT
    synthetic = [s for s in definition["splits"] if s["kind"] == "synthetic"]
    assert {s["recipe"] for s in synthetic} == set(DEFAULT_RECIPES)
    for split in definition["splits"]:
        assert set(split["metrics"]) <= set(metrics)
        if split["kind"] == "synthetic":
            assert split["name"] == f"syn-{split['recipe']}"


def test_the_newest_definition_uses_the_current_recipes():
    newest = max(DEFINITIONS, key=lambda p: int(p.stem.removeprefix("v")))
    for split in tomllib.loads(newest.read_text())["splits"]:
        if split["kind"] == "synthetic":
            assert split["recipe_version"] == RECIPES[split["recipe"]].version, split["name"]
