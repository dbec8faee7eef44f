"""benchmarks/network_detector.py judge: a dataset in an object store gives the rows the
same dataset gives in a folder."""

import json

import pandas as pd
import pytest

from rainbench.ingest import IngestOptions, ingest

from ..tagging.test_local_detector_benchmark import lined_examples
from ..tagging.test_network_detector_benchmark import _briefly, _picture

pytest.importorskip("torch")


def test_judge_gives_a_dataset_in_a_store_the_rows_of_the_same_dataset_in_a_folder(
    load_benchmark, bucket, tmp_path, monkeypatch
):
    bench = load_benchmark("network_detector")
    with _briefly(bench):
        detector = bench.taught_detector(*lined_examples(), seed=0)
    network_file = tmp_path / "net.json"
    network_file.write_text(json.dumps(detector))
    raw = tmp_path / "raw"
    raw.mkdir()
    for index in range(4):
        level = 15 if index == 3 else 60  # one night scene
        _picture(index % 2 == 0, index, level).save(raw / f"{index}.jpg", quality=92)
    url = f"{bucket}/ds"
    for out in (tmp_path / "ds", url):
        ingest([raw], out, IngestOptions(workers=1))

    def judged(location) -> pd.DataFrame:
        table = tmp_path / "flags.csv"
        arguments = ["judge", str(location), "--detector", str(network_file), "-j", "1"]
        monkeypatch.setattr("sys.argv", ["network_detector.py", *arguments, "--csv", str(table)])
        assert bench.main() == 0
        return pd.read_csv(table).drop(columns="dataset")

    local, stored = judged(tmp_path / "ds"), judged(url)
    assert len(stored) == 4 and stored["p_network"].notna().all()
    pd.testing.assert_frame_equal(stored, local)
