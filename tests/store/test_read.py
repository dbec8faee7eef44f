"""Reading a dataset from an object store (local S3 and GCS endpoints): verify streams
each shard once and finds damage, the loader and eval read members by range and give
what they give locally, and names from the store's manifests are checked as locally."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import s3fs
import torch
from click.testing import CliRunner
from torch.utils.data import DataLoader

from rainbench import store as store_module
from rainbench.cli import main
from rainbench.data import RainDataset
from rainbench.data.read import ShardReader
from rainbench.demo.captures import sample_specs, write_capture
from rainbench.ingest import IngestOptions, ingest
from rainbench.leaderboard import eval as eval_module
from rainbench.leaderboard.eval import EvalSettings, evaluate
from rainbench.leaderboard.sources import DerainerSource
from rainbench.models.registry import create_derainer
from rainbench.shards import dataset as dataset_module
from rainbench.shards import manifest
from rainbench.shards.dataset import DatasetError, open_dataset
from rainbench.shards.members import ShardError, shard_url
from rainbench.shards.verify import verify
from rainbench.store import StoreError, filesystem, mirror_dir
from rainbench.synth.build import SynthOptions, synthesize

EVERYTHING_TEST = {"train": 0.0, "val": 0.0, "test": 1.0}


@pytest.fixture(scope="module")
def local_ds(tmp_path_factory):
    """Rainy captures in one shard, clean ones rendered into syn-streak pairs."""
    root = tmp_path_factory.mktemp("store-read")
    for spec in sample_specs(12, seed=4, size=(160, 120)):
        write_capture(root / "rainy", spec)
    for spec in sample_specs(2, seed=9, size=(160, 120)):
        write_capture(root / "clean", spec)
    ds = root / "ds"
    ingest([root / "rainy"], ds, IngestOptions(workers=1, split=EVERYTHING_TEST))
    ingest([root / "clean"], ds, IngestOptions(workers=1, layer="clean", split=EVERYTHING_TEST))
    synthesize(ds, SynthOptions(recipes=("streak",), workers=1))
    return ds


@pytest.fixture
def url(bucket, local_ds) -> str:
    """The dataset uploaded to the store as it is on disk."""
    target = f"{bucket}/ds"
    fs, path = filesystem(target)
    fs.put(str(local_ds), path, recursive=True)
    return target


def _key(url: str, name: str) -> str:
    return filesystem(f"{url}/{name}")[1]


def _shards(local_ds) -> list[str]:
    return manifest.read_manifest(local_ds / "manifests/shards.parquet", manifest.SHARDS)[
        "shard"
    ].to_pylist()


def test_verify_streams_the_store_and_finds_damage(url, local_ds):
    assert verify(open_dataset(url), workers=1) == []
    fs = filesystem(url)[0]
    first, second = _shards(local_ds)[:2]
    damaged = bytearray(fs.cat_file(_key(url, first)))
    damaged[520] ^= 0xFF  # in the first member's bytes
    fs.pipe_file(_key(url, first), bytes(damaged))
    fs.rm_file(_key(url, second))
    fs.pipe_file(_key(url, "shards/test/test-000099.tar"), b"")
    problems = verify(open_dataset(url), workers=1)
    kinds = {(p.kind, p.where) for p in problems}
    assert ("shard-sha256", first) in kinds
    assert ("shard-missing", second) in kinds
    assert ("stray-shard", "shards/test/test-000099.tar") in kinds


def test_verify_demuxes_a_video_in_the_store_in_large_reads(bucket, tmp_path, monkeypatch):
    # The demuxer reads some kB at a time: each read a request of its own, thousands for
    # a video of some GB.
    av = pytest.importorskip("av", reason="videos need rainbench[video]")
    noise = np.random.default_rng(0)
    (tmp_path / "raw").mkdir()
    with av.open(str(tmp_path / "raw" / "rain.mp4"), "w", format="mp4") as output:
        stream = output.add_stream("libx264", rate=24, options={"crf": "10"})
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        for _ in range(48):
            pixels = noise.integers(0, 256, (120, 160, 3), dtype=np.uint8)
            output.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        output.mux(stream.encode())
    ingest([tmp_path / "raw"], tmp_path / "ds", IngestOptions(workers=1, split=EVERYTHING_TEST))
    url = f"{bucket}/ds"
    fs, path = filesystem(url)
    fs.put(str(tmp_path / "ds"), path, recursive=True)
    [shard] = _shards(tmp_path / "ds")
    with fs.open(_key(url, shard)) as handle:
        kind = type(handle)  # the store's own file class: S3File, GCSFile
    original, fetched = kind._fetch_range, []

    def counting(self, start, end):
        if self.path.endswith(".tar"):
            fetched.append(end - start)
        return original(self, start, end)

    monkeypatch.setattr(kind, "_fetch_range", counting)
    assert verify(open_dataset(url), workers=1) == []
    # The hash pass, the tar headers, and the video in a few large pieces.
    assert (tmp_path / "ds" / shard).stat().st_size > 1 << 19 and len(fetched) <= 10


def test_the_cli_verifies_and_counts_a_dataset_in_the_store(url):
    verified = CliRunner().invoke(main, ["verify", url, "-j", "1"])
    assert verified.exit_code == 0, verified.output
    assert verified.output.strip() == f"{url}: ok"
    stats = CliRunner().invoke(main, ["stats", url, "--json"])
    assert stats.exit_code == 0 and json.loads(stats.output)["samples"] == 14


def _crops(root, workers: int = 0) -> dict[str, torch.Tensor]:
    dataset = RainDataset(root, crop=64, seed=3)
    loader = DataLoader(dataset, batch_size=None, num_workers=workers)
    return {sample["key"]: sample["image"] for sample in loader}


def test_the_loader_reads_the_store_as_it_reads_local_files(url, local_ds):
    local = _crops(local_ds)
    remote = _crops(url, workers=2)  # each worker opens its own connection
    assert local.keys() == remote.keys() and len(local) == 14
    for key, crop in local.items():
        assert torch.equal(crop, remote[key])


def test_the_loader_fetches_members_by_range_never_whole_shards(url, local_ds, monkeypatch):
    fetched: list[int] = []
    fs = filesystem(url)[0]
    with fs.open(_key(url, _shards(local_ds)[0])) as handle:
        kind = type(handle)  # the store's own file class: S3File, GCSFile
    original = kind._fetch_range

    def counting(self, start, end):
        data = original(self, start, end)
        if self.path.endswith(".tar"):  # the shard's, not the manifests' copies
            fetched.append(len(data))
        return data

    monkeypatch.setattr(kind, "_fetch_range", counting)
    dataset = RainDataset(url, crop=64, shuffle=False, filters=_rainy())
    next(iter(dataset))
    shard = dataset.samples["shard"].iloc[0]
    size = (local_ds / shard).stat().st_size
    # The tar headers (512 bytes each), one capture and the next one fetched ahead, of a
    # shard of 12 captures.
    assert sum(fetched) < size / 4
    assert dataset.samples["bytes"].iloc[0] in fetched
    assert max(fetched) <= dataset.samples["bytes"].iloc[:2].max()


@pytest.mark.parametrize(
    "kept",
    [
        lambda entries: [[name, [0]] for name, _ in entries],  # no size
        lambda entries: [[name, [-1, 5]] for name, _ in entries],
        lambda entries: {"not": "a list"},
    ],
    ids=["short", "negative", "object"],
)
def test_a_kept_index_not_as_the_reader_wrote_it_is_read_again(url, local_ds, kept):
    # The mirror folder is no more trusted than the dataset: an index kept there that
    # the reader did not write is ignored, and the shard's headers are read again.
    local = _crops(local_ds)
    _crops(url)
    indexes = list((open_dataset(url).root / "index").glob("*.json"))
    assert indexes
    for path in indexes:
        path.write_text(json.dumps(kept(json.loads(path.read_text()))))
    remote = _crops(url)
    assert local.keys() == remote.keys()
    for key, crop in local.items():
        assert torch.equal(crop, remote[key])


def test_a_shard_replaced_in_the_store_is_read_afresh_once_mended(url, local_ds):
    # Other bytes stood under a shard's key for a while (another writer's, killed before
    # it committed: docs/cluster.md): the loader fails on them, and once the shard is
    # uploaded again it reads the shard, not by the other bytes' index kept meanwhile.
    fs = filesystem(url)[0]
    shard = RainDataset(local_ds, filters=_rainy()).samples["shard"].iloc[0]
    other = next(name for name in _shards(local_ds) if name != shard)
    fs.pipe_file(_key(url, shard), (local_ds / other).read_bytes())
    with pytest.raises(ShardError, match=f"^{shard}: no member "):
        _crops(url)
    fs.pipe_file(_key(url, shard), (local_ds / shard).read_bytes())
    local, remote = _crops(local_ds), _crops(url)
    assert local.keys() == remote.keys()
    for key, crop in local.items():
        assert torch.equal(crop, remote[key])


def test_a_shard_gone_from_the_store_is_named_in_one_line(url, local_ds):
    dataset = RainDataset(url, crop=32, shuffle=False, filters=_rainy())
    shard = dataset.samples["shard"].iloc[0]
    samples = iter(DataLoader(dataset, batch_size=None))
    next(samples)  # the shard is open, its headers read
    filesystem(url)[0].rm_file(_key(url, shard))
    with pytest.raises(ShardError, match=f"^{shard}:[0-9a-f]+\\.[a-z]+: cannot read it: "):
        list(samples)
    with pytest.raises(ShardError, match=f"^cannot read shard {shard}: no such object in the"):
        _crops(url)


def test_credentials_refused_in_the_middle_of_an_epoch_say_so_in_one_line(
    s3_bucket, local_ds, s3_auth_after
):
    """Credentials that stop working while a job trains (they expire, say), once the
    loader has opened a shard: one line saying to check them, not the client's error."""
    target = f"{s3_bucket}/ds"
    fs, path = filesystem(target)
    fs.put(str(local_ds), path, recursive=True)
    dataset = RainDataset(target, crop=32, shuffle=False, filters=_rainy())
    samples = iter(DataLoader(dataset, batch_size=None))
    next(samples)  # the shard is open, its headers read
    before = s3_auth_after("0")
    try:
        with pytest.raises(StoreError, match="; check the credentials") as refused:
            list(samples)
    finally:
        s3_auth_after(before)
    assert "\n" not in str(refused.value)


def _rainy():
    from rainbench.data import Filters

    return Filters(layer="rainy")


def test_eval_on_the_store_gives_the_rows_it_gives_locally(url, local_ds, tmp_path):
    settings = EvalSettings(metrics=("psnr", "ssim", "piqe"), batch=2, crops=0)  # piqe: test too
    source = DerainerSource(create_derainer("identity"), "cpu", None, 32)
    evaluate(source, local_ds, "all", tmp_path / "local", settings)
    evaluate(source, url, "all", tmp_path / "store", settings)
    for split in ("syn-streak", "test"):
        local = pd.read_parquet(tmp_path / f"local/identity/ds/{split}.parquet")
        remote = pd.read_parquet(tmp_path / f"store/identity/ds/{split}.parquet")
        assert len(local) > 0 and (remote["status"] == "ok").all()
        measured = ["seconds", "s_per_mp", "peak_mem_mb"]  # this run's timings and memory
        pd.testing.assert_frame_equal(local.drop(columns=measured), remote.drop(columns=measured))
        info = json.loads((tmp_path / f"store/identity/ds/{split}.json").read_text())
        assert info["dataset"]["path"] == url


@pytest.mark.parametrize("when", ["opening", "reading"])
def test_credentials_refused_while_eval_reads_the_shards_say_so_in_one_line(
    s3_bucket, local_ds, tmp_path, s3_auth_after, monkeypatch, when
):
    """Credentials that stop working as eval opens a shard, or once it has: the run
    stops with one line saying to check them, as the loader's does, rather than filing
    every image as unreadable."""
    target = f"{s3_bucket}/ds"
    fs, path = filesystem(target)
    fs.put(str(local_ds), path, recursive=True)
    opened, before = eval_module.open_shard, []

    def refused_from_then_on(root, shard):
        if when == "opening":
            before.append(s3_auth_after("0"))
            return opened(root, shard)
        tar = opened(root, shard)
        before.append(s3_auth_after("0"))
        return tar

    monkeypatch.setattr(eval_module, "open_shard", refused_from_then_on)
    source = DerainerSource(create_derainer("identity"), "cpu", None, 32)
    settings = EvalSettings(metrics=("piqe",), batch=2, crops=0)
    try:
        with pytest.raises(StoreError, match="; check the credentials") as refused:
            evaluate(source, target, "test", tmp_path / "res", settings)
    finally:
        if before:
            s3_auth_after(before[0])
    assert "\n" not in str(refused.value)


def test_a_manifest_naming_a_shard_outside_the_dataset_is_refused(url, local_ds, tmp_path):
    samples = pd.read_parquet(local_ds / "manifests/samples.parquet")
    samples.loc[0, "shard"] = "shards/../../elsewhere/test-000000.tar"
    bad = tmp_path / "samples.parquet"
    samples.to_parquet(bad)
    filesystem(url)[0].put_file(str(bad), _key(url, "manifests/samples.parquet"))
    # Named by its URL, not by the local copy's path that the user never chose.
    said = f"^{url}/manifests/samples.parquet: shard .* is not a valid shard path"
    with pytest.raises(DatasetError, match=said):
        RainDataset(url)
    root = open_dataset(url.replace("/ds", "/other")).root
    with pytest.raises(ShardError, match="not a shard path"):
        shard_url(root, "shards/../../elsewhere/test-000000.tar")
    shutil.rmtree(root)


def test_a_damaged_dataset_json_in_the_store_is_named_by_its_url(url):
    filesystem(url)[0].pipe_file(_key(url, "dataset.json"), b"[1,2")
    verified = CliRunner().invoke(main, ["verify", url, "-j", "1"])
    assert verified.exit_code == 1
    assert verified.output.startswith(f"error: {url}/dataset.json: cannot read it")


def test_a_manifest_larger_than_rainbench_writes_is_refused_unfetched(url, monkeypatch):
    monkeypatch.setattr(dataset_module, "MAX_MANIFEST_BYTES", 1000)
    said = f"{url}/manifests/samples.parquet: larger than 1,000 bytes, more than any manifest "
    with pytest.raises(DatasetError) as refused:
        open_dataset(url)
    assert str(refused.value) == said + "rainbench writes; refused unfetched"
    assert not any((mirror_dir(url, "read") / "manifests").iterdir())  # nothing kept there
    verified = CliRunner().invoke(main, ["verify", url, "-j", "1"])
    assert (
        verified.exit_code == 1
        and verified.output == f"error: {said}rainbench writes; refused unfetched\n"
    )


def test_the_commands_a_new_user_runs_against_the_store(bucket, tmp_path):
    """ingest into the store, verify it, eval a derainer on it, train from it."""
    for spec in sample_specs(4, seed=2, size=(160, 120)):
        write_capture(tmp_path / "raw", spec)
    url = f"{bucket}/ds"
    runner = CliRunner()
    ingested = runner.invoke(main, ["ingest", str(tmp_path / "raw"), "--out", url, "-j", "1"])
    assert ingested.exit_code == 0, ingested.output
    assert ingested.output.startswith(f"{url}: 4 accepted")
    verified = runner.invoke(main, ["verify", url, "-j", "1"])
    assert verified.exit_code == 0, verified.output
    results = tmp_path / "res"
    command = ["eval", "--model", "guided", "--dataset", url, "--split", "all"]
    evaluated = runner.invoke(main, [*command, "--results", str(results), "--metrics", "piqe"])
    assert evaluated.exit_code == 0, evaluated.output
    scored = pd.concat(pd.read_parquet(p) for p in (results / "guided" / "ds").glob("*.parquet"))
    assert len(scored) == 4 and (scored["status"] == "ok").all()
    assert len(_crops(url)) == 4


def test_a_url_with_no_dataset_is_named_in_the_error(bucket):
    with pytest.raises(DatasetError, match=f"^{bucket}/nothing is not a rainbench dataset"):
        RainDataset(f"{bucket}/nothing")
    with pytest.raises(DatasetError, match=f"^{bucket}/nothing is not a rainbench dataset"):
        verify(open_dataset(f"{bucket}/nothing"))


def test_training_reads_its_shards_from_the_store(url, tmp_path):
    """`rainbench train` on a URL: the same loader as the README's loop, by range."""
    args = ["train", "nlcl", "--dataset", url, "--out", str(tmp_path / "run"), "--split", "test"]
    args += ["--crop", "48", "--channels", "8", "--blocks", "2", "-j", "0", "--steps", "2"]
    args += ["--val-split", "syn-streak", "--val-dataset", url, "--validate-every", "2"]
    trained = CliRunner().invoke(main, [*args, "--no-progress", "--threads", "1"])
    assert trained.exit_code == 0, trained.output
    assert (tmp_path / "run" / "checkpoints" / "last.pt").exists()
    validation = (tmp_path / "run" / "validation.csv").read_text()
    assert "psnr_y" in validation


def test_the_label_page_reads_its_pictures_from_the_store(url, local_ds, tmp_path):
    page = tmp_path / "labels.html"
    made = CliRunner().invoke(main, ["label", url, "--out", str(page), "-j", "1", "--json"])
    assert made.exit_code == 0, made.output
    summary = json.loads(made.output)
    assert summary["cards"] == summary["rainy"] > 0 and summary["unreadable"] == []
    locally = CliRunner().invoke(main, ["label", str(local_ds), "--out", str(tmp_path / "l.html")])
    assert locally.exit_code == 0, locally.output
    assert page.read_bytes() == (tmp_path / "l.html").read_bytes()


def test_analyze_reads_a_paired_split_from_the_store(url, local_ds):
    args = ["analyze", "intrinsic-dim", "--split", "syn-streak", "--limit", "2", "--json"]
    remote = CliRunner().invoke(main, [args[0], args[1], url, *args[2:]])
    local = CliRunner().invoke(main, [args[0], args[1], str(local_ds), *args[2:]])
    assert remote.exit_code == local.exit_code == 0, remote.output
    remote_report, local_report = json.loads(remote.output), json.loads(local.output)
    assert remote_report.pop("dataset") == url
    assert remote_report == {k: v for k, v in local_report.items() if k != "dataset"}


@pytest.mark.parametrize("workers", [0, 2])
def test_the_loader_without_credentials_says_so_in_one_line(
    s3_bucket, local_ds, monkeypatch, tmp_path, workers
):
    """A training script on a machine without the store's credentials: one line saying
    to check them, from the loader's processes too, not the store client's own error."""
    target = f"{s3_bucket}/ds"
    fs, path = filesystem(target)
    fs.put(str(local_ds), path, recursive=True)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    for name in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
        monkeypatch.setenv(name, str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    store_module._aws_session.cache_clear()
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        with pytest.raises(StoreError, match=r"; check the credentials") as refused:
            list(DataLoader(RainDataset(target, crop=32), batch_size=4, num_workers=workers))
    finally:
        store_module._aws_session.cache_clear()  # the next test's credentials
        s3fs.S3FileSystem.clear_instance_cache()
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("prefetch", [True, False], ids=["prefetched", "read-here"])
def test_a_shard_replaced_mid_epoch_is_said_to_have_changed(
    s3_bucket, local_ds, prefetch, monkeypatch
):
    """Another upload under a shard's key once its headers are read: its members are not
    where the index says, and S3 refuses a read of the upload indexed (its ETag), whether
    a member was fetched ahead in a thread or is read here. (The GCS emulator serves any
    generation asked for: it cannot show the same of GCS.)"""
    if not prefetch:
        monkeypatch.setattr(ShardReader, "prefetch", lambda *_: None)
    target = f"{s3_bucket}/ds"
    fs, path = filesystem(target)
    fs.put(str(local_ds), path, recursive=True)
    dataset = RainDataset(target, crop=32, shuffle=False, filters=_rainy())
    shard = dataset.samples["shard"].iloc[0]
    samples = iter(dataset)
    next(samples)  # the shard's headers read, the next capture fetched ahead
    other = next(name for name in _shards(local_ds) if name != shard)
    fs.pipe_file(_key(target, shard), (local_ds / other).read_bytes())
    with pytest.raises(ShardError, match=f"^{shard}: the shard changed in the store since it "):
        list(samples)
    fs.pipe_file(_key(target, shard), (local_ds / shard).read_bytes())
    assert len(list(samples)) == 0 and len(list(dataset)) == 12  # the next pass reads it
