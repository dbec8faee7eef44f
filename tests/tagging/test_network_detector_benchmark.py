"""benchmarks/network_detector.py: the network file it teaches reads back to the same
networks, its threshold keeps clean flags within the budget on held-out decisions, and
`judge` gives both detectors' flags for every capture of a dataset."""

import argparse
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from rainbench.ingest.run import IngestOptions, ingest
from rainbench.tagging.tagger import load_tagger
from rainbench.train.tagger import CHECK_MODELS, FLAG_THRESHOLDS, RAIN_MODELS

from .test_local_detector_benchmark import lined_examples, lined_luma

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("network_detector")


@contextmanager
def _briefly(bench) -> Iterator[None]:
    """Networks taught in a few steps (the teaching lives in tagging_local_detector,
    which network_detector imported)."""
    teacher = bench.taught_network.__globals__
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(teacher, "STEPS", 40)
        patch.setitem(teacher, "CROP", 32)
        yield


@pytest.fixture(scope="module")
def detector(bench) -> dict:
    """A network file taught briefly, as JSON gives it back."""
    with _briefly(bench):
        return json.loads(json.dumps(bench.taught_detector(*lined_examples(), seed=0)))


def test_the_file_reads_back_to_the_networks_it_was_taught(bench, detector):
    assert len(detector["networks"]) == bench.NETWORKS
    assert detector["flag_threshold"] in FLAG_THRESHOLDS
    held = detector["calibration"]["held_out"]
    chosen = held[detector["pooling"]]
    assert detector["flag_threshold"] == chosen["flag_threshold"]
    assert all(held[pooling]["clean_flagged"] <= 0.05 for pooling in bench.POOLINGS)
    # On lines this plain, networks that never saw a background still find the rain.
    assert chosen["rain_flagged"] > 0.5
    worst = max(held[pooling]["worst_rain_flagged"] for pooling in bench.POOLINGS)
    assert chosen["worst_rain_flagged"] == worst
    nets = bench.networks_of(detector)
    sample = lined_luma(True, np.random.default_rng(5))
    measured, luma = lined_examples()
    with _briefly(bench):  # the seeds recorded teach the same network again
        [first] = bench._taught(measured, luma, detector["calibration"]["teach_seeds"][:1])
    assert bench.pooled_logits([first], sample) == bench.pooled_logits(nets[:1], sample)
    rng = np.random.default_rng(6)
    rain = [bench.network_probability(detector, nets, lined_luma(True, rng)) for _ in range(5)]
    clean = [bench.network_probability(detector, nets, lined_luma(False, rng)) for _ in range(5)]
    assert min(rain) > max(clean)


def _picture(rainy: bool, seed: int, level: float = 60) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = rng.normal(level, 6, (240, 320, 3))
    if rainy:
        for column in rng.choice(320, 40, replace=False):
            top = rng.integers(0, 160)
            pixels[top : top + 60, column] += 120
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def test_judge_gives_both_detectors_flags_for_every_capture(
    bench, detector, tmp_path, monkeypatch, capsys
):
    network_file = tmp_path / "net.json"
    network_file.write_text(json.dumps(detector))
    raw = tmp_path / "raw"
    raw.mkdir()
    for index in range(6):
        # The last two are night scenes: the tagger gives them its `night` caveat.
        level = 15 if index >= 4 else 60
        _picture(index % 2 == 0, index, level).save(raw / f"{index}.jpg", quality=92)
    (raw / "broken.jpg").write_bytes(b"\xff\xd8\xff")
    ingest([raw], tmp_path / "ds", IngestOptions(workers=1, layer="clean"))
    table = tmp_path / "flags.csv"
    arguments = ["judge", str(tmp_path / "ds"), "--detector", str(network_file)]
    monkeypatch.setattr(
        "sys.argv", ["network_detector.py", *arguments, "--csv", str(table), "-j", "1"]
    )
    assert bench.main() == 0
    rows = pd.read_csv(table)
    assert len(rows) == 6  # the broken file was rejected by ingest, never a capture
    assert set(rows["layer"]) == {"clean"}
    tagger = load_tagger()
    # The shipped detector's decision is the one ingest stored as looks_rainy.
    stored = pd.read_parquet(tmp_path / "ds" / "manifests" / "samples.parquet")
    flags = dict(zip(stored["key"], stored["looks_rainy"], strict=True))
    assert all(rows["flag_tagger"] == rows["key"].map(flags))
    assert all(rows["flag_tagger"] == (rows["p_tagger"] >= tagger.flag_threshold))
    names = dict(zip(stored["key"], stored["source_path"], strict=True))
    rainy = rows["key"].map(names).str.extract(r"(\d)\.jpg$")[0].astype(int) % 2 == 0
    assert rows["p_network"][rainy].min() > rows["p_network"][~rainy].max()
    # The candidate takes the tagger's flag at night and the networks' by day.
    night = rows["key"].map(names).str.contains(r"[45]\.jpg$")
    assert list(rows["night"]) == list(night)
    chosen = rows["flag_tagger"].where(night, rows["flag_network"])
    assert list(rows["flag_by_light"]) == list(chosen)
    assert list(rows["flag_either"]) == list(rows["flag_tagger"] | rows["flag_network"])
    printed = capsys.readouterr().out
    assert f"| {tmp_path / 'ds'} | clean | all | 6 |" in printed
    assert "| networks by day, its tagger at night | networks or its tagger |" in printed


def test_judge_without_a_network_file_says_how_to_make_one(bench, tmp_path, monkeypatch):
    monkeypatch.setattr(
        "sys.argv",
        ["network_detector.py", "judge", str(tmp_path), "--detector", str(tmp_path / "no.json")],
    )
    with pytest.raises(SystemExit, match=r"network_detector\.py teach"):
        bench.main()


def test_check_judges_the_file_on_each_seed_and_condition(bench, detector, monkeypatch):
    def rendered(per_cell, seed, workers, cache):
        measured, luma = lined_examples()
        fresh, pixels = [], {}
        for m in measured:
            if m.example.model in (RAIN_MODELS[-1], None):
                # The last rain model's lines stand in for the model no calibration saw.
                model = m.example.model and CHECK_MODELS[0]
                example = replace(m.example, model=model, seed=m.example.seed + 1000 * seed)
                # Seed 2's rain is a night scene's, to the tagger's eyes.
                dark = {"brightness": 0.05} if seed == 2 and model else {}
                fresh.append(replace(m, example=example, features={**m.features, **dark}))
                pixels[example] = luma[m.example]
        return fresh, pixels

    monkeypatch.setattr(bench, "rendered", rendered)
    args = argparse.Namespace(per_cell=1, workers=1, cache=None, judge_seeds=[1, 2])
    lines = bench.checked(detector, args)
    rows = [line.split(" | ") for line in lines if line.startswith(("| 1 |", "| 2 |"))]
    assert [row[0] for row in rows] == ["| 1"] * 4 + ["| 2"] * 4  # each detector, each seed
    # Rain flagged by the two taken by light: the networks' by day, the tagger's at night.
    assert rows[2][3] == rows[1][3] and rows[6][3] == rows[4][3]
    assert rows[0][3] != rows[1][3] and rows[4][3] != rows[5][3]
    # Either flags what one of them flags, and so at least as much rain and clean as each.
    for seed in (rows[:4], rows[4:]):
        for column in (3, 4):
            share = [float(row[column].rstrip("%")) for row in seed]
            assert share[3] >= max(share[:2])
    head = next(line for line in lines if line.startswith("| condition"))
    assert head.endswith(
        " | networks or tagger (the larger P(rain) − its threshold) | rainy examples |"
    )
    worst = next(line for line in lines if line.startswith("| worst"))
    conditions = [line.split(" | ")[0] for line in lines if line.startswith("| height")]
    assert conditions == ["| height: ≤ 320 px"]  # every example is 48 rows: no other row
    assert worst.split(" | ")[2] == "100.0%"  # the networks find every plain line
