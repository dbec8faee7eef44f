"""What `rainbench stats` counts per rain type."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rainbench.demo.captures import CaptureSpec, write_capture
from rainbench.ingest import IngestOptions, ingest
from rainbench.shards.dataset import Dataset, DatasetError
from rainbench.shards.stats import dataset_stats, rain_type_counts


def test_a_capture_labelled_clean_is_not_counted_as_untagged():
    samples = pa.table(
        {
            "rain_type": ["storm", None, None, None, "storm"],
            "layer": ["rainy", "rainy", "rainy", "clean", "rainy"],
            "rain_type_source": ["auto", "manual", None, None, "manual"],
        }
    )
    assert rain_type_counts(samples) == {
        "storm": 2,
        "labelled no rain": 1,
        "untagged": 1,
        "clean layer": 1,
    }


@pytest.mark.parametrize("lost", ["samples", "shards"])
def test_a_lost_manifest_is_refused_not_counted_as_empty(tmp_path, lost):
    write_capture(tmp_path / "raw", CaptureSpec("a.jpg", 64, 48, seed=0))
    ds = tmp_path / "ds"
    ingest([tmp_path / "raw"], ds, IngestOptions(workers=1))
    assert dataset_stats(Dataset(ds))["samples"] == 1
    (ds / f"manifests/{lost}.parquet").unlink()
    with pytest.raises(DatasetError, match=f"{lost}.parquet: gone, though dataset.json counts"):
        dataset_stats(Dataset(ds))


def test_rejects_without_a_reason_are_counted_as_unknown(tmp_path):
    raw = tmp_path / "raw"
    write_capture(raw, CaptureSpec("a.jpg", 64, 48, seed=0))
    (raw / "b.jpg").write_bytes(b"not a jpeg")
    ds = tmp_path / "ds"
    ingest([raw], ds, IngestOptions(workers=1))
    assert list(dataset_stats(Dataset(ds))["rejects"]) == ["not-an-image"]
    rejects = ds / "manifests" / "rejects.parquet"
    pq.write_table(pq.read_table(rejects).drop_columns(["reason"]), rejects)  # by hand
    assert dataset_stats(Dataset(ds))["rejects"] == {"unknown": 1}  # before: {None: 1}
