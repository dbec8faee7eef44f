import numpy as np

from rainbench.parallel import WorkerPool
from rainbench.shards import manifest
from rainbench.shards.dataset import Dataset, initial_info
from rainbench.shards.layout import GROUND_TRUTH, RAIN
from rainbench.synth.png import encode_png
from rainbench.synth.splits import MadePair, PairJob, write_pairs


def _pair(seed: int) -> MadePair:
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, 255, (16, 24, 3), dtype=np.uint8)
    members = {RAIN: encode_png(255 - gt), GROUND_TRUTH: encode_png(gt)}
    return MadePair(members, {"width": 24, "height": 16, "recipe": "test"})


def test_a_job_given_twice_is_made_and_stored_once(tmp_path):
    dataset = Dataset(tmp_path / "ds")
    dataset.write_info(initial_info("ds", {}))
    jobs = [PairJob("s", f"test:{seed}", {"source_key": "a" * 24}, seed) for seed in (0, 1, 0)]
    with WorkerPool(1) as pool:
        summary = write_pairs(dataset, jobs, _pair, pool, 10**9, "run")
    assert summary.stored["s"] == 2
    stored = manifest.read_manifest(dataset.synthetic_manifest, manifest.SYNTHETIC)
    assert sorted(stored["job"].to_pylist()) == ["test:0", "test:1"]
