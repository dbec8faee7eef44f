"""`verify` catches every way a dataset can disagree with its manifests."""

import shutil

import pandas as pd
import pyarrow.parquet as pq
import pytest

from rainbench.ingest import IngestOptions, ingest
from rainbench.shards.dataset import Dataset, DatasetError
from rainbench.shards.tar import ShardWriter
from rainbench.shards.verify import verify


@pytest.fixture(scope="module")
def _sound(tmp_path_factory, _capture_folder):
    ds = tmp_path_factory.mktemp("verify") / "ds"
    ingest([_capture_folder], ds, IngestOptions(workers=1, shard_bytes=300_000))
    return ds


@pytest.fixture
def ds(tmp_path, _sound):
    return shutil.copytree(_sound, tmp_path / "ds")


def _kinds(ds) -> set[str]:
    return {p.kind for p in verify(Dataset(ds), workers=1)}


def _a_shard(ds):
    return ds / pd.read_parquet(ds / "manifests/shards.parquet").shard.iloc[0]


def test_sound_dataset_passes(ds):
    assert verify(Dataset(ds), workers=2) == []


def test_a_flipped_byte_is_caught(ds):
    shard = _a_shard(ds)
    data = bytearray(shard.read_bytes())
    data[1500] ^= 0x01  # inside the first member's content
    shard.write_bytes(bytes(data))
    assert _kinds(ds) == {"shard-sha256", "member-sha256"}


def test_a_truncated_shard_is_caught(ds):
    shard = _a_shard(ds)
    shard.write_bytes(shard.read_bytes()[:2000])
    assert "shard-corrupt" in _kinds(ds) or "shard-sha256" in _kinds(ds)
    problems = verify(Dataset(ds), workers=1)
    assert all(shard.name in p.where for p in problems)


def test_a_missing_shard_is_caught(ds):
    _a_shard(ds).unlink()
    assert _kinds(ds) == {"shard-missing"}


def test_stray_members_and_shards_are_caught(ds):
    with ShardWriter(ds / "shards/train/train-999999.tar") as writer:
        writer.add("deadbeef.jpg", b"x")
        writer.commit()
    assert _kinds(ds) == {"stray-shard"}
    (ds / "shards/train/train-999999.tar").unlink()
    (ds / "shards/train/train-000000.tar.tmp").write_bytes(b"")
    assert _kinds(ds) == {"stray-temporary"}


def test_a_manifest_row_without_its_member_is_caught(ds):
    table = pq.read_table(ds / "manifests/samples.parquet").to_pandas()
    table.loc[0, "key"] = "0" * 24
    table.to_parquet(ds / "manifests/samples.parquet")
    assert {"member-missing", "stray-member"} <= _kinds(ds)


def test_not_a_dataset(tmp_path):
    with pytest.raises(DatasetError, match="not a rainbench dataset"):
        verify(Dataset(tmp_path))


def test_a_member_of_another_size_than_the_manifest_says_is_caught(ds):
    table = pq.read_table(ds / "manifests/samples.parquet").to_pandas()
    table.loc[0, "bytes"] += 1
    table.to_parquet(ds / "manifests/samples.parquet")
    assert _kinds(ds) == {"member-size"}


def test_a_first_ingest_killed_before_its_first_commit_is_pending(tmp_path):
    (tmp_path / ".ingest").mkdir()
    (tmp_path / ".ingest" / "run.json").write_text("{}")
    assert [p.kind for p in verify(Dataset(tmp_path))] == ["ingest-pending"]
