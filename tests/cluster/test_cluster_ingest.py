"""`rainbench ingest --ray`: on a real Ray cluster of two nodes the dataset comes out as
the local path writes it, also when a worker or a whole node dies mid-run, or the
driver is killed and the next run finishes its work; into an object store, the workers
upload to the store the driver commits to."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from rainbench.cli import main
from rainbench.demo.captures import sample_specs, write_capture
from rainbench.ingest import IngestOptions, ingest
from rainbench.ingest import run as run_module
from rainbench.ingest.scan import probe_batch
from rainbench.shards.dataset import open_dataset
from rainbench.shards.verify import verify

SHARD_BYTES = 150_000
# What two local runs of the same ingest also write differently: when, and under what id.
_RUN_VARIES = ("run_id", "started_at", "finished_at")


def contents(ds: Path) -> dict:
    """Every file of the dataset: shards by their bytes, manifests by their rows, and
    dataset.json, each less what differs between any two runs (run ids and times)."""
    found = {}
    for path in sorted(p for p in ds.rglob("*") if p.is_file() and p.name != ".lock"):
        name = path.relative_to(ds).as_posix()
        if path.suffix == ".parquet":
            table = pq.read_table(path)
            if "ingest_run" in table.column_names:
                table = table.drop(["ingest_run"])
            found[name] = (table.schema, table.to_pylist())
        elif path.name == "dataset.json":
            info = json.loads(path.read_text())
            for moment in ("created_at", "updated_at"):
                info.pop(moment)
            info["runs"] = [
                {k: v for k, v in r.items() if k not in _RUN_VARIES} for r in info["runs"]
            ]
            found[name] = info
        else:
            found[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


@pytest.fixture(scope="module")
def local(tmp_path_factory, _capture_folder) -> dict:
    ds = tmp_path_factory.mktemp("local") / "ds"
    ingest([_capture_folder], ds, IngestOptions(workers=2, shard_bytes=SHARD_BYTES))
    return contents(ds)


def test_ray_ingest_writes_what_the_local_path_writes(
    tmp_path, _capture_folder, local, ray_cluster
):
    ds = tmp_path / "ds"
    result = CliRunner().invoke(
        main,
        [
            "ingest",
            str(_capture_folder),
            "--out",
            str(ds),
            "--shard-size",
            str(SHARD_BYTES),
            "-j",
            "2",
            "--ray",
            ray_cluster,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "33 accepted" in result.output
    assert contents(ds) == local


def _dies_once(task):
    """probe_batch, except that the first call anywhere kills its own worker process."""
    marker = Path(task[3]).parents[2] / "killed-a-worker"  # beside the dataset
    if not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return probe_batch(task)


def test_a_worker_killed_mid_run_is_retried_and_the_dataset_is_the_same(
    tmp_path, _capture_folder, local, ray_cluster, monkeypatch
):
    import ray.cloudpickle

    # Ray ships this function by value: its workers cannot import a test module.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    monkeypatch.setattr(run_module, "probe_batch", _dies_once)
    ds = tmp_path / "ds"
    options = IngestOptions(workers=2, shard_bytes=SHARD_BYTES, ray=ray_cluster)
    summary = ingest([_capture_folder], ds, options)
    assert (tmp_path / "killed-a-worker").exists()
    assert not (ds / ".ingest").exists()
    assert summary.accepted == 33
    assert contents(ds) == local


def _node_dies_once(task):
    """probe_batch, except that the first call on the doomed node takes the node down:
    its raylet (this worker's parent), then this worker."""
    marker = Path(task[3]).parents[2] / "killed-a-node"
    if os.environ.get("RAINBENCH_DOOMED_NODE") and not marker.exists():
        marker.touch()
        os.kill(os.getppid(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)
    return probe_batch(task)


def test_a_node_lost_mid_run_is_retried_and_the_dataset_is_the_same(
    tmp_path, _capture_folder, local, local_cluster, monkeypatch
):
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    doomed = local_cluster.add_node(RAINBENCH_DOOMED_NODE="1")
    monkeypatch.setattr(run_module, "probe_batch", _node_dies_once)
    ds = tmp_path / "ds"
    options = IngestOptions(workers=3, shard_bytes=SHARD_BYTES, ray=local_cluster.address)
    try:
        summary = ingest([_capture_folder], ds, options)
    finally:
        local_cluster.kill(doomed)  # what is left of it
    assert (tmp_path / "killed-a-node").exists()
    assert summary.accepted == 33
    assert contents(ds) == local


# The driver, in a process of its own: shard writing slowed so a kill lands mid-write.
_DRIVER = """
import sys, time
from pathlib import Path
from rainbench.ingest import IngestOptions, ingest
from rainbench.ingest import run
from rainbench.ingest.write import write_unit

def slow_write(task):
    time.sleep(0.5)
    return write_unit(task)

run.write_unit = slow_write
raw, ds, address = sys.argv[1:]
ingest([Path(raw)], Path(ds), IngestOptions(workers=2, shard_bytes=int(150_000), ray=address))
"""


def test_a_killed_driver_leaves_a_run_the_next_one_finishes(
    tmp_path, _capture_folder, local, ray_cluster
):
    ds = tmp_path / "ds"
    driver = subprocess.Popen(
        [sys.executable, "-c", _DRIVER, str(_capture_folder), str(ds), ray_cluster],
        start_new_session=True,
    )
    done = ds / ".ingest" / "done"
    deadline = time.monotonic() + 60
    while len(list(done.glob("*.json")) if done.exists() else []) < 2:
        assert driver.poll() is None, "the driver ended before it could be killed"
        assert time.monotonic() < deadline, "the driver wrote no shard within a minute"
        time.sleep(0.02)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    assert (ds / ".ingest" / "run.json").exists()
    summary = ingest(
        [_capture_folder],
        ds,
        IngestOptions(workers=2, shard_bytes=SHARD_BYTES, ray=ray_cluster),
    )
    assert summary.resumed
    assert contents(ds) == local


def test_workers_upload_to_the_store_the_driver_commits_to(tmp_path, ray_cluster, driver_store):
    """The nodes were started with another AWS_ENDPOINT_URL (STORAGE_EMULATOR_HOST) than
    the driver's: the tasks are given the driver's, so the shards land where the
    manifests go."""
    for spec in sample_specs(4, seed=2, size=(160, 120)):
        write_capture(tmp_path / "raw", spec)
    url = f"{driver_store}/ds"
    options = IngestOptions(workers=2, shard_bytes=20_000, ray=ray_cluster)
    summary = ingest([tmp_path / "raw"], url, options)
    assert summary.accepted == 4 and summary.shards > 1
    assert verify(open_dataset(url), workers=1) == []
