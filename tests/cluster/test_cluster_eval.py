"""`rainbench eval --ray`: actors on a real two-node Ray cluster score every image as
the local path does, into the same one results Parquet and provenance per split, and a
run cut short resumes."""

import json
import os
import sys

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from rainbench.cli import main
from rainbench.demo.captures import sample_specs, write_capture
from rainbench.ingest import IngestOptions, ingest
from rainbench.leaderboard.eval import (
    EvalError,
    EvalSettings,
    Output,
    Source,
    evaluate_on_ray,
)
from rainbench.synth.build import SynthOptions, synthesize

METRICS = "psnr_y,ssim_y,psnr,ssim,piqe"
# What any two runs measure differently: time and memory.
_MEASURED = ("seconds", "s_per_mp", "peak_mem_mb")
_RUN_VARIES = ("started_at", "finished_at", "hardware", "threads")


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    """Rainy captures in two shards of split test, and clean ones made into syn-streak."""
    root = tmp_path_factory.mktemp("eval")
    everything_test = {"train": 0.0, "val": 0.0, "test": 1.0}
    for spec in sample_specs(4, seed=2, size=(160, 120)):
        write_capture(root / "rainy", spec)
    for spec in sample_specs(3, seed=9, size=(160, 120)):
        write_capture(root / "clean", spec)
    ds = root / "ds"
    small = {"workers": 1, "split": everything_test, "shard_bytes": 60_000}
    ingest([root / "rainy"], ds, IngestOptions(**small))
    ingest([root / "clean"], ds, IngestOptions(layer="clean", **small))
    synthesize(ds, SynthOptions(recipes=("streak",), workers=1))
    return ds


def _eval(ds, results, *more: str) -> list[dict]:
    command = ["eval", str(ds), "--model", "guided", "--split", "all", "--metrics", METRICS]
    result = CliRunner().invoke(main, [*command, "--results", str(results), "--json", *more])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def results_of(results) -> dict:
    """Every results file: rows less what is measured, provenance less when and where."""
    found = {}
    for path in sorted(p for p in results.rglob("*") if p.is_file()):
        name = path.relative_to(results).as_posix()
        if path.suffix == ".parquet":
            found[name] = pq.read_table(path).drop(list(_MEASURED)).to_pylist()
        elif path.suffix == ".json":
            found[name] = {
                k: v for k, v in json.loads(path.read_text()).items() if k not in _RUN_VARIES
            }
        else:
            found[name] = path.read_bytes()
    return found


@pytest.fixture(scope="module")
def local(tmp_path_factory, ds) -> dict:
    results = tmp_path_factory.mktemp("local") / "res"
    _eval(ds, results)
    return results_of(results)


def test_eval_on_ray_scores_as_the_local_path(tmp_path, ds, local, ray_cluster):
    results = tmp_path / "res"
    reports = _eval(ds, results, "--ray", ray_cluster)
    assert {(r["split"], r["scored"], r["failed"]) for r in reports} == {
        ("syn-streak", 3, 0),
        ("test", 4, 0),
    }
    assert len(local) > 4  # rows, provenance and crops of both splits
    assert results_of(results) == local


def test_eval_on_ray_resumes_a_run_cut_short(tmp_path, ds, local, ray_cluster):
    results = tmp_path / "res"
    _eval(ds, results, "--split", "test")
    # As a kill between two flushes leaves it: the provenance, and only some rows.
    table_path = results / "guided" / "ds" / "test.parquet"
    pq.write_table(pq.read_table(table_path).slice(0, 2), table_path)
    reports = _eval(ds, results, "--ray", ray_cluster)
    test = next(r for r in reports if r["split"] == "test")
    assert (test["scored"], test["skipped"]) == (2, 2)
    assert results_of(results) == local


class _DiesOnOne(Source):
    """Gives each image back as it is, but ends its process on the first key in sorted
    order, as a crash in a derainer's native code would."""

    name = "dies-on-one"

    def __init__(self, doomed: str):
        self.doomed = doomed

    def info(self) -> dict:
        return {"name": self.name}

    def run(self, items, split):
        if any(item.key == self.doomed for item in items):
            os._exit(1)
        return [Output(item.rain, None, 0.0, None) for item in items]


def _dies_on(doomed: str):
    return lambda settings: _DiesOnOne(doomed)


def test_an_image_that_kills_its_worker_fails_alone_and_the_run_goes_on(tmp_path, ds, ray_cluster):
    ray = pytest.importorskip("ray")
    module = sys.modules[__name__]
    ray.cloudpickle.register_pickle_by_value(module)  # Ray's workers cannot import tests
    try:
        rows = pq.read_table(ds / "manifests" / "samples.parquet").to_pylist()
        keys = sorted(row["key"] for row in rows if row["layer"] == "rainy")
        settings = EvalSettings(metrics=("piqe",), crops=0)
        [report] = evaluate_on_ray(
            _dies_on(keys[0]), ray_cluster, ds, "test", tmp_path / "res", settings
        )
    finally:
        ray.cloudpickle.unregister_pickle_by_value(module)
    assert (report.scored, report.failed) == (4, 1)
    table = pq.read_table(tmp_path / "res" / "dies-on-one" / "ds" / "test.parquet")
    failed = [row for row in table.to_pylist() if row["status"] == "failed"]
    assert [row["key"] for row in failed] == [keys[0]]
    assert failed[0]["error"].startswith("its Ray worker died scoring it, each time Ray")


def _unknown(settings):
    raise EvalError("unknown derainer 'plugged'; known: guided, identity")


def test_a_source_a_worker_cannot_build_is_refused_saying_where(tmp_path, ds, ray_cluster):
    # A plugin installed where the driver runs and not on the cluster's nodes.
    ray = pytest.importorskip("ray")
    module = sys.modules[__name__]
    ray.cloudpickle.register_pickle_by_value(module)
    try:
        with pytest.raises(EvalError) as refused:
            evaluate_on_ray(_unknown, ray_cluster, ds, "test", tmp_path / "res", EvalSettings())
    finally:
        ray.cloudpickle.unregister_pickle_by_value(module)
    assert str(refused.value) == (
        "on the Ray cluster's workers: unknown derainer 'plugged'; known: guided, identity"
    )
