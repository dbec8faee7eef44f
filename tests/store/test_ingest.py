"""Ingest into and out of an object store (local S3 and GCS endpoints): the same inputs
give the shards and manifests a local ingest gives, captures can be read from the store,
a killed run resumes to the same dataset, incremental ingest from a fresh machine
(an empty cache) adds to what the store holds, and a writer on another machine is kept
out. Paired splits too: `synth`, `import-paired` and `pairs` on a URL write what they
write on a local copy, and a killed `synth` resumes to the same, its stray upload
removed."""

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import s3fs
from click.testing import CliRunner
from moto.server import ThreadedMotoServer
from PIL import Image

from rainbench import store as store_module
from rainbench.cli import main
from rainbench.demo.captures import render_scene, sample_specs, write_capture
from rainbench.ingest import IngestOptions, ingest
from rainbench.ingest import run as run_module
from rainbench.ingest import scan as scan_module
from rainbench.ingest import tag as tag_module
from rainbench.ingest import write as write_module
from rainbench.ingest.tag import tag_dataset
from rainbench.shards import dataset as dataset_module
from rainbench.shards import members as members_module
from rainbench.shards.dataset import DatasetError, open_dataset
from rainbench.shards.verify import verify
from rainbench.store import StoreError, StoreUnusable, filesystem
from rainbench.synth import splits as splits_module
from rainbench.synth.build import SynthOptions, synthesize
from rainbench.tagging.features import feature_column

OPTIONS = IngestOptions(workers=1, shard_bytes=150_000)
EVERYTHING_TEST = {"train": 0.0, "val": 0.0, "test": 1.0}


def snapshot(url: str) -> dict:
    """What a dataset in the store holds, with run ids, times and the ingest root aside:
    every shard's bytes and every manifest's rows."""
    fs, prefix = filesystem(url)
    fs.invalidate_cache()
    names = sorted(name[len(prefix) + 1 :] for name in fs.find(prefix))
    return _fingerprint(names, lambda name: fs.cat_file(f"{prefix}/{name}"))


def local_snapshot(ds, ignore: tuple[str, ...] = ()) -> dict:
    names = sorted(
        p.relative_to(ds).as_posix()
        for p in ds.rglob("*")
        if p.is_file() and p.name != ".lock" and not p.relative_to(ds).as_posix().startswith(".")
    )
    return _fingerprint(names, lambda name: (ds / name).read_bytes(), ignore)


def _fingerprint(names: list[str], read, ignore: tuple[str, ...] = ()) -> dict:
    result = {"names": names}
    for name in names:
        data = read(name)
        if name.startswith("shards/"):
            result[name] = hashlib.sha256(data).hexdigest()
        elif name.endswith(".parquet"):
            table = pd.read_parquet(pd.io.common.BytesIO(data))
            dropped = ["ingest_run", "run", "source_root", *ignore]  # run ids: times
            table = table.drop(columns=dropped, errors="ignore")
            result[name] = table.astype(str).to_dict("records")
    return result


@pytest.fixture
def raw(capture_folder, bad_folder):
    shutil.move(bad_folder[0], capture_folder / "bad")
    return capture_folder


@pytest.fixture
def reference(tmp_path, raw) -> dict:
    ingest([raw], tmp_path / "reference", OPTIONS)
    return local_snapshot(tmp_path / "reference")


def test_ingest_into_the_store_equals_a_local_ingest(bucket, raw, reference):
    url = f"{bucket}/ds"
    summary = ingest([raw], url, OPTIONS)
    assert summary.accepted > 0
    assert snapshot(url) == reference
    assert verify(open_dataset(url)) == []
    assert open_dataset(url).read_info()["name"] == "ds"


def test_ingest_from_the_store_equals_a_local_ingest(bucket, capture_folder, tmp_path):
    ingest([capture_folder], tmp_path / "local", OPTIONS)
    fs, raw = filesystem(f"{bucket}/raw")
    fs.put(str(capture_folder), raw, recursive=True)
    ingest([f"{bucket}/raw"], tmp_path / "from-store", OPTIONS)
    # The same captures and shards, byte for byte; file times and inodes are the store's.
    mtime = ("source_mtime_ns", "source_inode")
    from_store = local_snapshot(tmp_path / "from-store", mtime)
    assert from_store == local_snapshot(tmp_path / "local", mtime)
    samples = pd.read_parquet(tmp_path / "from-store/manifests/samples.parquet")
    assert set(samples["source_root"]) == {f"{bucket}/raw"}


def test_an_input_url_that_names_no_bucket_is_refused_and_nothing_is_made(tmp_path):
    with pytest.raises(StoreError, match=r"^s3://: no bucket named; give s3://BUCKET/PATH$"):
        ingest(["s3://"], tmp_path / "ds", OPTIONS)
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize("into", ["folder", "store"])
def test_an_input_url_that_cannot_be_read_leaves_nothing_to_resume(s3_bucket, tmp_path, into):
    """A mistyped input URL (a bucket that is not there) fails in one line and leaves no
    interrupted run behind: the next ingest into the same dataset, with good inputs, runs
    as if it had never been (it used to fail on the same bucket, whatever it was given)."""
    out = tmp_path / "ds" if into == "folder" else f"{s3_bucket}/ds"
    with pytest.raises(StoreError, match="bucket does not exist") as refused:
        ingest([f"{s3_bucket}-missing/raw"], out, OPTIONS)
    assert "\n" not in str(refused.value)
    assert into == "store" or not (tmp_path / "ds").exists()
    for spec in sample_specs(2, seed=2, size=(160, 120)):
        write_capture(tmp_path / "raw", spec)
    assert ingest([tmp_path / "raw"], out, OPTIONS).accepted == 2


class Killed(BaseException):
    """Stands in for SIGKILL: nothing after the crash point runs."""


def _killed_at_the_third_shard():
    """`write_unit` as an ingest killed when its third shard starts."""
    original, calls = run_module.write_unit, []

    def crashing(task):
        calls.append(task.shard)
        if len(calls) == 3:
            raise Killed(task.shard)
        return original(task)

    return crashing


def test_a_killed_ingest_into_the_store_resumes_to_the_same_dataset(
    bucket, raw, reference, monkeypatch
):
    url = f"{bucket}/ds"
    with monkeypatch.context() as patch:
        patch.setattr(run_module, "write_unit", _killed_at_the_third_shard())
        patch.setattr(run_module, "_COMMIT_SECONDS", 0)  # every finished shard is committed
        with pytest.raises(Killed):
            ingest([raw], url, OPTIONS)
    # What a reader sees meanwhile: no row whose shard is missing, nothing half written.
    problems = verify(open_dataset(url))
    assert not [p for p in problems if p.kind not in ("stray-shard", "dataset-json")]
    summary = ingest([raw], url, OPTIONS)
    assert summary.resumed
    assert snapshot(url) == reference
    assert verify(open_dataset(url)) == []


def test_kill_minus_nine_then_resume(bucket, raw, reference, tmp_path):
    url = f"{bucket}/ds"
    command = [sys.executable, "-m", "rainbench", "ingest", str(raw), "--out", url]
    command += ["--shard-size", "150KB", "-j", "2", "--no-progress"]
    process = subprocess.Popen(
        command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    fs, shards = filesystem(f"{url}/shards")
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:  # until a shard is up
        fs.invalidate_cache()
        if fs.exists(shards) and fs.find(shards):
            break
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # the ingest and its workers
    assert process.wait() == -signal.SIGKILL, "finished before it could be killed"
    resumed = subprocess.run(command, check=True, capture_output=True, text=True)
    assert resumed.stdout.startswith("resumed and finished")
    assert snapshot(url) == reference


def _keys(url: str) -> set[str]:
    return set(pd.read_parquet(open_dataset(url).samples_manifest)["key"])


def _mine_killed_then_theirs_committed(
    bucket, tmp_path, monkeypatch, committed_before_the_kill: bool = False
) -> tuple[str, IngestOptions, set[str]]:
    """An ingest of mine/ into the store killed at its third shard, then one of theirs/
    with another cache committed: the store's dataset, the options both used, and the
    keys the store then holds."""
    for folder, seed in (("mine", 2), ("theirs", 8)):
        for spec in sample_specs(6, seed=seed, size=(160, 120)):
            write_capture(tmp_path / folder, spec)
    url, small = f"{bucket}/ds", IngestOptions(workers=1, shard_bytes=5_000)
    with monkeypatch.context() as patch:
        patch.setattr(run_module, "write_unit", _killed_at_the_third_shard())
        if committed_before_the_kill:
            patch.setattr(run_module, "_COMMIT_SECONDS", 0)
        with pytest.raises(Killed):
            ingest([tmp_path / "mine"], url, small)
    cache = os.environ["RAINBENCH_CACHE"]
    monkeypatch.setenv("RAINBENCH_CACHE", str(tmp_path / "another-cache"))
    ingest([tmp_path / "theirs"], url, small)
    theirs = _keys(url)
    monkeypatch.setenv("RAINBENCH_CACHE", cache)
    return url, small, theirs


@pytest.mark.parametrize("committed_before_the_kill", [False, True])
def test_a_resumed_ingest_keeps_what_another_writer_committed_meanwhile(
    bucket, tmp_path, monkeypatch, committed_before_the_kill
):
    """Killed here, the store's lock then taken by an ingest with another cache (which
    plans from the store and commits), then resumed here: the resumed run plans again
    against the store, so no shard of the other's is overwritten and no row of it lost."""
    url, small, theirs = _mine_killed_then_theirs_committed(
        bucket, tmp_path, monkeypatch, committed_before_the_kill
    )
    summary = ingest([tmp_path / "mine"], url, small)
    assert summary.resumed
    assert theirs < _keys(url) and len(_keys(url)) == 12
    assert verify(open_dataset(url)) == []  # every shard as listed, none stray


def test_a_shard_missing_from_the_drivers_store_is_never_committed(bucket, raw, monkeypatch):
    """A worker's upload the driver's store does not have (the worker reached another
    store) stops the ingest in one line before anything names it."""
    url = f"{bucket}/ds"
    fs, path = filesystem(url)
    original = run_module.write_unit

    def uploaded_elsewhere(task):
        result = original(task)
        fs.rm_file(filesystem(f"{task.store}/{task.shard}")[1])
        return result

    monkeypatch.setattr(run_module, "write_unit", uploaded_elsewhere)
    with pytest.raises(DatasetError) as refused:
        ingest([raw], url, OPTIONS)
    message = str(refused.value)
    assert "is not there, though a worker uploaded it" in message and "\n" not in message
    fs.invalidate_cache()
    assert not fs.exists(f"{path}/dataset.json")
    assert not fs.exists(f"{path}/manifests/samples.parquet")


def test_objects_whose_keys_name_no_file_are_refused_and_counted(s3_bucket, tmp_path):
    """S3 only: the GCS emulator drops the connection rather than store such names."""
    fs, prefix = filesystem(f"{s3_bucket}/raw")
    for spec in sample_specs(2, seed=2, size=(160, 120)):
        write_capture(tmp_path / "raw", spec)
    fs.put(str(tmp_path / "raw"), prefix, recursive=True)
    photo = next(p for p in (tmp_path / "raw").rglob("*") if p.is_file()).read_bytes()
    for odd in ("../../escape.jpg", "./dot.jpg", "a//twice.jpg"):
        fs.pipe_file(f"{prefix}/{odd}", photo)
    summary = ingest([f"{s3_bucket}/raw/"], f"{s3_bucket}/ds", OPTIONS)
    assert summary.accepted == 2 and summary.rejected == {"not-a-file": 3}
    rejects = pd.read_parquet(open_dataset(f"{s3_bucket}/ds").rejects_manifest)
    assert sorted(rejects["source_path"]) == ["../../escape.jpg", "./dot.jpg", "a//twice.jpg"]
    assert set(rejects["message"].str.contains("names no file under the prefix")) == {True}


def test_objects_whose_keys_the_driver_reads_as_other_objects_are_refused_unread(
    s3_bucket, tmp_path
):
    """fsspec reads `::` as a chain of filesystems and s3fs ends a key at `?versionId=`:
    `raw/::a.jpg` would be read from `raw`, outside the prefix, and `raw/b.jpg::c.jpg`
    from `raw/b.jpg`. Each is refused in one line; nothing of another object is stored."""
    fs, prefix = filesystem(f"{s3_bucket}/raw")
    for spec in sample_specs(2, seed=2, size=(160, 120)):
        write_capture(tmp_path / "raw", spec)
    first, second = sorted(p for p in (tmp_path / "raw").rglob("*") if p.is_file())
    outside = first.read_bytes()
    fs.pipe_file(prefix, outside)  # the object `raw`, beside the prefix `raw/`
    fs.pipe_file(f"{prefix}/b.jpg", second.read_bytes())
    odd = ("::a.jpg", "b.jpg::c.jpg", "b.jpg?versionId=d.jpg")
    bucket = prefix.split("/")[0]
    for name in odd:  # as many bytes as the object each would be read from; s3fs would
        # itself store the last under `raw/b.jpg`
        body = bytes(len(outside if name[0] == ":" else second.read_bytes()))
        fs.call_s3("put_object", Bucket=bucket, Key=f"raw/{name}", Body=body)
    summary = ingest([f"{s3_bucket}/raw/"], f"{s3_bucket}/ds", OPTIONS)
    assert summary.accepted == 1 and summary.rejected == {"unreadable": 3}
    rejects = pd.read_parquet(open_dataset(f"{s3_bucket}/ds").rejects_manifest)
    assert sorted(rejects["source_path"]) == sorted(odd)
    for message in rejects["message"]:
        assert "would read another object under this name" in message and "\n" not in message


def test_an_object_gone_between_listing_and_reading_is_refused_saying_so(
    s3_bucket, tmp_path, monkeypatch
):
    fs, prefix = filesystem(f"{s3_bucket}/raw")
    for spec in sample_specs(2, seed=2, size=(160, 120)):
        write_capture(tmp_path / "raw", spec)
    fs.put(str(tmp_path / "raw"), prefix, recursive=True)
    listed = scan_module.listing

    def listed_then_deleted(url):
        found = listed(url)
        return {**found, "gone.jpg": next(iter(found.values()))}

    monkeypatch.setattr(scan_module, "listing", listed_then_deleted)
    summary = ingest([f"{s3_bucket}/raw/"], f"{s3_bucket}/ds", OPTIONS)
    assert summary.accepted == 2 and summary.rejected == {"unreadable": 1}
    rejects = pd.read_parquet(open_dataset(f"{s3_bucket}/ds").rejects_manifest)
    assert rejects[["source_path", "message"]].values.tolist() == [
        ["gone.jpg", "cannot read: no such object in the store"]
    ]


def test_messages_about_a_dataset_in_the_store_name_its_url(bucket, raw):
    url = f"{bucket}/ds"
    ingest([raw], url, OPTIONS)
    with pytest.raises(DatasetError) as refused:
        ingest([raw], url, IngestOptions(workers=1, split={"train": 0.5, "val": 0, "test": 0.5}))
    assert str(refused.value).startswith(f"{url} was created with --split")


def test_wrong_credentials_are_named_as_such(s3_bucket, s3_auth_after):
    """The store refuses the key (403): the error says to check the credentials (moto's
    own switch makes it refuse)."""
    before = s3_auth_after("0")  # every request from now on is checked
    try:
        result = CliRunner().invoke(main, ["stats", f"{s3_bucket}/ds"])
    finally:
        s3_auth_after(before)
    assert result.exit_code == 1
    assert "check the credentials (AWS_ACCESS_KEY_ID" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("credentials", ["refused", "none"])
def test_captures_the_reader_may_not_read_end_the_ingest_and_none_is_rejected(
    s3_bucket, s3_auth_after, tmp_path, credentials
):
    """The driver lists the captures in the store, but the process that reads them (a
    Ray worker whose `ray start` had no credentials, say) has a key the store refuses, or
    none: the ingest stops in one line saying to check them, and marks no capture as
    unreadable; the same ingest with good credentials then takes them all."""
    fs, prefix = filesystem(f"{s3_bucket}/raw")
    for spec in sample_specs(2, seed=2, size=(160, 120)):
        write_capture(tmp_path / "raw", spec)
    fs.put(str(tmp_path / "raw"), prefix, recursive=True)
    listed = run_module.walk_inputs
    refusing = []

    def forget_credentials() -> None:
        store_module._aws_session.cache_clear()  # a reader that never had them
        s3fs.S3FileSystem.clear_instance_cache()

    with pytest.MonkeyPatch.context() as barred:

        def listed_then_barred(inputs):
            found = listed(inputs)
            if credentials == "refused":
                refusing.append(s3_auth_after("0"))
                return found
            for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                barred.delenv(name)
            for name in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
                barred.setenv(name, str(tmp_path / "none"))
            barred.setenv("AWS_EC2_METADATA_DISABLED", "true")
            forget_credentials()
            return found

        barred.setattr(run_module, "walk_inputs", listed_then_barred)
        try:
            with pytest.raises(StoreUnusable, match="; check the credentials") as stopped:
                ingest([f"{s3_bucket}/raw"], tmp_path / "ds", OPTIONS)
        finally:
            for before in refusing:
                s3_auth_after(before)
    assert "\n" not in str(stopped.value)
    forget_credentials()
    summary = ingest([f"{s3_bucket}/raw"], tmp_path / "ds", OPTIONS)
    assert summary.accepted == 2 and summary.rejected == {}


def test_incremental_ingest_from_a_fresh_machine(bucket, raw, tmp_path, monkeypatch):
    url = f"{bucket}/ds"
    first = sorted(raw.rglob("*"))[: len(list(raw.rglob("*"))) // 2]
    half = tmp_path / "half"
    for path in first:
        if path.is_file():
            target = half / path.relative_to(raw)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    ingest([half], url, OPTIONS)
    before = open_dataset(url).read_info()["counts"]["samples"]
    monkeypatch.setenv("RAINBENCH_CACHE", str(tmp_path / "another-machine"))
    ingest([raw], url, OPTIONS)
    dataset = open_dataset(url)
    assert dataset.read_info()["counts"]["samples"] > before
    assert verify(dataset) == []


def _lock_key(url: str) -> str:
    return filesystem(f"{url}/{dataset_module.STORE_LOCK}")[1]


def test_a_writer_on_another_machine_is_kept_out(bucket, raw, monkeypatch, tmp_path):
    """Two machines ingesting into one URL: the second is refused in one line naming the
    first, and writes nothing; once the first is done, it goes ahead."""
    url = f"{bucket}/ds"
    fs, path = filesystem(url)
    other = {"host": "lab-node-7", "namespace": "pid:[1]", "pid": 4242, "started": 1}
    fs.pipe_file(_lock_key(url), json.dumps(other).encode())
    with pytest.raises(DatasetError) as refused:
        ingest([raw], url, OPTIONS)
    message = str(refused.value)
    assert "lab-node-7" in message and "pid 4242" in message and "\n" not in message
    fs.invalidate_cache()
    assert fs.find(path) == [_lock_key(url)]
    fs.rm_file(_lock_key(url))  # the other machine finished
    ingest([raw], url, OPTIONS)
    fs.invalidate_cache()
    assert not fs.exists(_lock_key(url))


def test_a_lock_larger_than_any_writer_leaves_is_read_no_further(bucket, raw, monkeypatch):
    """A holder padded to 8 MiB: a reader fetches 64 kB of it and finds no writer there,
    a writer is kept out by a lock that names nobody."""
    url = f"{bucket}/ds"
    other = {"host": "lab-node-7", "namespace": "pid:[1]", "pid": 4242, "started": 1}
    lock = json.dumps({**other, "pad": "x" * (8 << 20)}).encode()
    filesystem(url)[0].pipe_file(_lock_key(url), lock)
    dataset = open_dataset(url)
    fetched, read_range = [], dataset_module.read_range
    monkeypatch.setattr(
        dataset_module, "read_range", lambda *where: fetched.append(where) or read_range(*where)
    )
    assert dataset.writer() is None
    assert fetched == [(f"{url}/{dataset_module.STORE_LOCK}", 0, (64 << 10) + 1)]
    with pytest.raises(DatasetError, match=r"\(a holder that left no name\)"):
        ingest([raw], url, OPTIONS)


def test_a_lock_left_here_by_a_killed_writer_is_taken_over(bucket, raw, reference):
    url = f"{bucket}/ds"
    fs = filesystem(url)[0]
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    started = dataset_module._start_ticks(gone.pid)
    gone.wait()
    left = dataset_module._this_process() | {"pid": gone.pid, "started": started}
    fs.pipe_file(_lock_key(url), json.dumps(left).encode())
    ingest([raw], url, OPTIONS)
    assert snapshot(url) == reference  # the lock is gone too: nothing but the dataset


def test_a_live_writer_here_with_another_mirror_is_kept_out(bucket, raw):
    """The store's lock holds on one machine too, where the mirror's flock does not
    (another cache folder, another container with the same host name)."""
    url = f"{bucket}/ds"
    fs = filesystem(url)[0]
    alive = dataset_module._this_process()
    fs.pipe_file(_lock_key(url), json.dumps(alive).encode())
    with pytest.raises(DatasetError, match="another rainbench command is writing"):
        ingest([raw], url, OPTIONS)


def test_a_dataset_uploaded_with_its_fitted_tagger_tags_new_captures_with_it(
    bucket, capture_folder, tmp_path
):
    """A dataset fitted here (`rainbench tag --fit`) and copied to the store as it is:
    an ingest into the URL fetches its fitted tagger with the manifests and uses it."""
    from rainbench.shards.dataset import Dataset
    from rainbench.shards.fitted import INFO_KEY
    from rainbench.tagging.tagger import load_tagger

    files = sorted(p for p in capture_folder.rglob("*") if p.is_file())
    first, later = tmp_path / "first", tmp_path / "later"
    for index, path in enumerate(files):
        target = (first if index % 2 else later) / path.relative_to(capture_folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    local = tmp_path / "ds"
    ingest([first], local, OPTIONS)
    fitted = replace(load_tagger(), version="lab-fit-1")
    (local / "taggers").mkdir()
    (local / "taggers/tagger-fit-1.json").write_text(json.dumps(fitted.to_json()))
    info = Dataset(local).read_info()
    Dataset(local).write_info(
        {**info, INFO_KEY: {"version": "lab-fit-1", "path": "taggers/tagger-fit-1.json"}}
    )
    url = f"{bucket}/ds"
    fs, path = filesystem(url)
    fs.put(str(local), path, recursive=True)

    ingest([later], url, OPTIONS)
    rows = pd.read_parquet(open_dataset(url).samples_manifest)
    added = rows[rows["source_root"] == str(later.absolute())]
    assert len(added) and set(added["tagger_version"]) == {"lab-fit-1"}


def _name_fitted(url: str, version: str) -> None:
    """Put a fitted tagger of `version` at taggers/tagger-fit-1.json in the store and
    make dataset.json name it, as a `tag --fit` on another machine does."""
    from rainbench.tagging.tagger import load_tagger

    fs, prefix = filesystem(url)
    fitted = replace(load_tagger(), version=version)
    fs.pipe_file(f"{prefix}/taggers/tagger-fit-1.json", json.dumps(fitted.to_json()).encode())
    info = json.loads(fs.cat_file(f"{prefix}/dataset.json"))
    info["tagger"] = {"version": version, "path": "taggers/tagger-fit-1.json"}
    fs.pipe_file(f"{prefix}/dataset.json", json.dumps(info).encode())


def test_a_fitted_tagger_fetched_before_is_fetched_again_once_the_dataset_names_another(
    bucket, tmp_path
):
    """The URL's dataset was made again since (deleted, ingested and fitted anew from
    another cache): the copy of taggers/tagger-fit-1.json here is an older fit's, and
    neither readers nor an ingest from here use it."""
    from rainbench.shards.fitted import active_tagger

    for folder, seed in (("first", 2), ("second", 8), ("later", 12)):
        for spec in sample_specs(3, seed=seed, size=(160, 120)):
            write_capture(tmp_path / folder, spec)
    url = f"{bucket}/ds"
    ingest([tmp_path / "first"], url, OPTIONS)
    _name_fitted(url, "lab-fit-old")
    assert active_tagger(open_dataset(url)).version == "lab-fit-old"
    ingest([tmp_path / "second"], url, OPTIONS)  # the write mirror fetches it too
    _name_fitted(url, "lab-fit-new")
    assert active_tagger(open_dataset(url)).version == "lab-fit-new"
    ingest([tmp_path / "later"], url, OPTIONS)
    rows = pd.read_parquet(open_dataset(url).samples_manifest)
    added = rows[rows["source_root"] == str((tmp_path / "later").absolute())]
    assert len(added) and set(added["tagger_version"]) == {"lab-fit-new"}


def test_readers_fetch_only_the_fitted_tagger_dataset_json_names(bucket, raw, tmp_path):
    from rainbench.shards.fitted import active_tagger

    url = f"{bucket}/ds"
    ingest([raw], url, OPTIONS)
    fs, prefix = filesystem(url)
    fs.pipe_file(f"{prefix}/taggers/big-blob.bin", bytes(3 << 20))
    fs.pipe_file(f"{prefix}/taggers/tagger-fit-7.json", b"{}")
    stats = CliRunner().invoke(main, ["stats", url])
    assert stats.exit_code == 0, stats.output
    view = open_dataset(url)
    assert not (view.root / "taggers").exists()
    _name_fitted(url, "lab-fit-1")
    assert active_tagger(open_dataset(url)).version == "lab-fit-1"
    assert sorted(p.name for p in (view.root / "taggers").iterdir()) == ["tagger-fit-1.json"]
    # A huge object in the named one's place is refused, not copied.
    fs.pipe_file(f"{prefix}/taggers/tagger-fit-1.json", bytes(3 << 20))
    info = json.loads(fs.cat_file(f"{prefix}/dataset.json"))
    info["tagger"]["version"] = "lab-fit-2"
    fs.pipe_file(f"{prefix}/dataset.json", json.dumps(info).encode())
    with pytest.raises(DatasetError, match=f"{url}/taggers/tagger-fit-1.json is larger than"):
        active_tagger(open_dataset(url))


def test_a_fit_left_in_a_mirror_that_the_store_lacks_is_never_reused(bucket, raw):
    """A write mirror's copy of a fit the store no longer has (the URL's dataset was made
    again since) is not reused by `tag --fit`, whose result dataset.json would then name
    with nothing, or another fit, behind it in the store."""
    from dataclasses import replace

    from rainbench.ingest.taggers import FitReport, reusable
    from rainbench.shards.dataset import open_for_writing
    from rainbench.tagging.tagger import load_tagger

    url = f"{bucket}/ds"
    ingest([raw], url, OPTIONS)
    mirror = open_for_writing(url)
    base = load_tagger()
    scores = {"macro_f1": 0.5, "accuracy": 0.5, "f1": {}}
    report = FitReport(
        "lab-fit-1", "taggers/tagger-fit-1.json", False, base.version, "ab" * 32, {}, 0,
        None, 2, scores, scores,
    )  # fmt: skip
    stale = replace(base, version="lab-fit-1", calibration={"fit": report.to_dict()})
    (mirror.root / "taggers").mkdir()
    (mirror.root / "taggers/tagger-fit-1.json").write_text(json.dumps(stale.to_json()))
    assert reusable(mirror, "ab" * 32) is None
    assert not (mirror.root / "taggers/tagger-fit-1.json").exists()


def test_labels_and_tags_reach_the_store(bucket, raw, tmp_path):
    """`ingest --labels`, `rainbench tag` and `rainbench tag-eval` on a URL: the
    relabelled manifest is published, not only left in this machine's mirror."""
    url = f"{bucket}/ds"
    ingest([raw], url, OPTIONS)
    first = pd.read_parquet(open_dataset(url).samples_manifest).iloc[0]
    other = "fog-like" if first["rain_type"] != "fog-like" else "storm"
    sheet = tmp_path / "labels.csv"
    sheet.write_text(f"source_path,sha256,key,rain_type,note\n,,{first['key']},{other},\n")
    ingest([raw], url, IngestOptions(workers=1, shard_bytes=150_000, labels=sheet))
    stored = pd.read_parquet(open_dataset(url).samples_manifest).set_index("key")
    assert stored.loc[first["key"], "rain_type"] == other
    third = next(t for t in ("drizzle", "streak", "storm") if t not in (other, first["rain_type"]))
    sheet.write_text(f"source_path,sha256,key,rain_type,note\n,,{first['key']},{third},\n")
    tagged = CliRunner().invoke(main, ["tag", url, "--labels", str(sheet), "-j", "1"])
    assert tagged.exit_code == 0, tagged.output
    stored = pd.read_parquet(open_dataset(url).samples_manifest).set_index("key")
    assert stored.loc[first["key"], "rain_type"] == third
    measured = CliRunner().invoke(main, ["tag-eval", url, "--json"])
    assert measured.exit_code == 0, measured.output
    assert sum(json.loads(measured.output)["labels"].values()) == 1


def test_untagged_captures_in_the_store_are_tagged_later_a_shard_at_a_time(
    bucket, raw, tmp_path, monkeypatch
):
    """`ingest --no-tag` into a URL, then `rainbench tag`: the tags of a tagged ingest,
    published. Each shard is measured whole (here one per split, the train split's of
    several captures): a part of one would walk all its headers again, a request each."""
    whole = IngestOptions(workers=1)
    ingest([raw], tmp_path / "reference", whole)
    url = f"{bucket}/ds"
    ingest([raw], url, replace(whole, tag=False))
    assert pd.read_parquet(open_dataset(url).samples_manifest)["features_version"].isna().all()
    parts = []

    def measure_part(task):
        parts.append(task[1])
        return measure_shard(task)

    measure_shard = tag_module._measure_shard
    monkeypatch.setattr(tag_module, "_measure_shard", measure_part)

    tag_dataset(url, workers=1)

    assert len(parts) == len(set(parts))
    assert snapshot(url) == local_snapshot(tmp_path / "reference")


def test_a_tagger_fitted_on_a_url_is_kept_in_the_store(bucket, raw, tmp_path, monkeypatch):
    url = f"{bucket}/ds"
    ingest([raw], url, OPTIONS)
    samples = pd.read_parquet(open_dataset(url).samples_manifest).set_index("key")
    keys = sorted(samples.index)
    sheet = tmp_path / "labels.csv"
    # Labels the fit can learn: by one of the features the tagger reads.
    level = samples[feature_column("hf_share")]
    rows = [f"{key},{'storm' if level[key] > level.median() else 'streak'}" for key in keys]
    sheet.write_text("\n".join(["key,rain_type", *rows]) + "\n")
    from rainbench.ingest.taggers import FitReport

    # Used, as a fit that beat the shipped tagger is.
    monkeypatch.setattr(FitReport, "beats_shipped", property(lambda report: True))
    fitted = CliRunner().invoke(main, ["tag", url, "--labels", str(sheet), "--fit", "-j", "1"])
    assert fitted.exit_code == 0, fitted.output
    monkeypatch.setenv("RAINBENCH_CACHE", str(tmp_path / "another-machine"))
    measured = CliRunner().invoke(main, ["tag-eval", url, "--json"])
    assert measured.exit_code == 0, measured.output
    assert json.loads(measured.output)["fitted_to_these"]


SYNTH = SynthOptions(
    recipes=("streak", "drizzle"),
    source_split="test",
    source_layer="clean",
    workers=1,
    shard_bytes=60_000,
)


@pytest.fixture(scope="module")
def _ingested(tmp_path_factory):
    """Rainy and clean captures, ingested; no paired split yet."""
    root = tmp_path_factory.mktemp("paired-store")
    for spec in sample_specs(4, seed=2, size=(160, 120)):
        write_capture(root / "clean", spec)
    ds = root / "ds"
    ingest([root / "clean"], ds, IngestOptions(workers=1, layer="clean", split=EVERYTHING_TEST))
    return ds


def _both(bucket, source, tmp_path) -> tuple[str, object]:
    """The same dataset locally (a copy) and in the store."""
    local = shutil.copytree(source, tmp_path / "local")
    url = f"{bucket}/ds"
    fs, path = filesystem(url)
    fs.put(str(source), path, recursive=True)
    fs.rm_file(f"{path}/.lock")  # the copy's own flock file
    return url, local


def test_synth_into_the_store_equals_synth_locally(bucket, _ingested, tmp_path):
    url, local = _both(bucket, _ingested, tmp_path)
    synthesize(local, SYNTH)
    made = CliRunner().invoke(
        main,
        ["synth", url, "--recipes", "streak,drizzle", "--source-split", "test",
         "--source-layer", "clean", "--shard-size", "60KB", "-j", "1"],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    assert snapshot(url) == local_snapshot(local)
    assert verify(open_dataset(url)) == []


def test_a_killed_synth_into_the_store_resumes_to_the_same(
    bucket, _ingested, tmp_path, monkeypatch
):
    url, local = _both(bucket, _ingested, tmp_path)
    synthesize(local, SYNTH)
    committed = splits_module._commit

    def killed_at_the_second(*args):
        if killed_at_the_second.calls == 1:  # the second shard is uploaded, not listed
            raise Killed
        killed_at_the_second.calls += 1
        committed(*args)

    killed_at_the_second.calls = 0
    with monkeypatch.context() as patch:
        patch.setattr(splits_module, "_commit", killed_at_the_second)
        with pytest.raises(Killed):
            synthesize(url, SYNTH)
    assert [p.kind for p in verify(open_dataset(url))] == ["stray-shard"]
    # And one that an older killed run uploaded further on, which no run will overwrite.
    fs, stray = filesystem(f"{url}/shards/synthetic/syn-streak/syn-streak-000009.tar")
    fs.pipe_file(stray, bytes(1024))
    synthesize(url, SYNTH)
    assert snapshot(url) == local_snapshot(local)
    assert verify(open_dataset(url)) == []


def test_import_paired_into_the_store_equals_a_local_import(bucket, _ingested, tmp_path):
    folder = tmp_path / "Rain100L"
    for n in range(1, 4):
        for name, seed in ((f"rain-{n}.png", n), (f"norain-{n}.png", 100 + n)):
            pixels = np.random.default_rng(seed).integers(0, 256, (32, 48, 3), dtype=np.uint8)
            folder.mkdir(exist_ok=True)
            Image.fromarray(pixels).save(folder / name)
    url, local = _both(bucket, _ingested, tmp_path)
    for target in (str(local), url):
        imported = CliRunner().invoke(
            main,
            ["import-paired", str(folder), target, "--layout", "rain100", "--name", "rain100l"],
        )
        assert imported.exit_code == 0, imported.output
    assert snapshot(url) == local_snapshot(local)


def test_pairs_on_a_video_in_the_store_equal_pairs_locally(bucket, tmp_path, monkeypatch):
    pytest.importorskip("av")
    from rainbench.synth.video import encode_h264, render_rain_video

    rendered = render_rain_video(render_scene(160, 96, 3), "streak", 24, seed=1)
    (tmp_path / "raw").mkdir()
    encode_h264(rendered.frames, tmp_path / "raw" / "tripod.mp4", crf=18)
    source = tmp_path / "source"
    ingest([tmp_path / "raw"], source, IngestOptions(workers=1, split=EVERYTHING_TEST))
    url, local = _both(bucket, source, tmp_path)
    copies, copy = [], members_module._copy
    monkeypatch.setattr(members_module, "_copy", lambda *args: copies.append(1) or copy(*args))
    for target in (str(local), url):
        paired = CliRunner().invoke(main, ["pairs", target, "--window", "11", "-j", "1"])
        assert paired.exit_code == 0, paired.output
    assert snapshot(url) == local_snapshot(local)
    assert verify(open_dataset(url)) == []
    # The rain-free scan and every window read the video: fetched from the store once.
    assert len(copies) == 1


def test_a_resume_takes_no_other_upload_of_as_many_bytes_for_its_own_shard(
    bucket, raw, reference, monkeypatch
):
    # Killed with two shards uploaded but not committed; meanwhile another writer (from
    # another cache, say) put other bytes of the same length under one of their keys.
    # The resume must see that it is not its upload and write that shard again.
    url = f"{bucket}/ds"
    fs, path = filesystem(url)
    uploaded = []
    with monkeypatch.context() as patch:
        crashing = _killed_at_the_third_shard()
        patch.setattr(
            run_module, "write_unit", lambda task: uploaded.append(task.shard) or crashing(task)
        )
        with pytest.raises(Killed):
            ingest([raw], url, OPTIONS)
    key = f"{path}/{uploaded[0]}"
    fs.invalidate_cache()
    original = fs.cat_file(key)
    fs.pipe_file(key, original[:-1] + bytes([original[-1] ^ 0xFF]))  # same size
    summary = ingest([raw], url, OPTIONS)
    assert summary.resumed
    assert snapshot(url) == reference
    assert verify(open_dataset(url)) == []


@pytest.mark.parametrize("damage", ["not-parquet", "bomb"])
def test_a_plan_here_that_is_damaged_is_one_line_when_the_resume_plans_again(
    bucket, tmp_path, monkeypatch, damage
):
    # The plan of a store's dataset lies in the cache folder here; the resume reads its
    # shards to remove their uploads, bounded as a manifest is.
    # The store moved on: the resume plans again.
    url, small, _ = _mine_killed_then_theirs_committed(bucket, tmp_path, monkeypatch)
    (plan,) = Path(os.environ["RAINBENCH_CACHE"]).rglob(".ingest/plan.parquet")
    if damage == "bomb":  # a hundred thousand rows of one 16 MiB name: 1.6 TB decoded
        rows = pa.DictionaryArray.from_arrays(
            pa.array(np.zeros(100_000, np.int32)), ["/" * (16 << 20)]
        )
        pq.write_table(pa.table({"shard": rows}), plan, compression="zstd", store_schema=False)
    else:
        plan.write_bytes(b"not parquet")
    with pytest.raises(DatasetError, match=r"plan\.parquet: ") as refused:
        ingest([tmp_path / "mine"], url, small)
    assert "\n" not in str(refused.value)


def test_an_endpoint_that_dies_mid_ingest_is_named_by_the_failed_upload(raw, tmp_path, monkeypatch):
    """The store stops answering as a shard is uploaded: the one line names that shard,
    not the lock the failed run could not remove after it (docs/cluster.md: the next run
    takes it over)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("RAINBENCH_CACHE", str(tmp_path / "cache"))
    s3fs.S3FileSystem.clear_instance_cache()
    s3fs.S3FileSystem().mkdir("dying")

    def upload_as_the_store_dies(*args):
        server.stop()
        try:
            store_module.upload(*args)
        finally:
            upload_as_the_store_dies.failed = time.monotonic()

    monkeypatch.setattr(write_module, "upload", upload_as_the_store_dies)
    command = ["ingest", str(raw), "--out", "s3://dying/ds", "--shard-size", "150KB"]
    result = CliRunner().invoke(main, [*command, "-j", "1", "--no-progress"])
    # No second round of the client's retries (seconds) spent on the lock.
    assert time.monotonic() - upload_as_the_store_dies.failed < 2
    assert result.exit_code == 1
    assert "s3://dying/ds/shards/" in result.output
    assert dataset_module.STORE_LOCK not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_lock_that_cannot_be_removed_leaves_the_error_that_ended_the_run(s3_bucket, monkeypatch):
    """A run that fails, then fails to remove its lock from the store: the user reads
    the first failure; the lock stays for the next run."""

    def refused(url):
        raise StoreError(f"{url}: refused")

    monkeypatch.setattr(dataset_module, "delete", refused)
    lock = dataset_module._store_lock(f"{s3_bucket}/ds")
    with pytest.raises(ValueError, match="what ended the run"), lock:
        raise ValueError("what ended the run")
