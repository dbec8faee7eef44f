"""rainbench.store: which locations are URLs, the one-line hint when a store's driver is
missing, listings, ranged reads, block-wise downloads, objects made only where none is,
and mirror folders that only the cache can make."""

import json
import os
import tracemalloc
from pathlib import Path

import fsspec.core
import pytest
import s3fs

from rainbench import store


@pytest.mark.parametrize(
    ("location", "url"),
    [
        ("s3://bucket/ds", True),
        ("gs://bucket/ds", True),
        ("S3://bucket/ds", True),
        ("memory://ds", True),
        ("file:///data/ds", False),
        ("/data/ds", False),
        ("ds", False),
        ("s3:/bucket/ds", False),
    ],
)
def test_urls_and_paths(location, url):
    assert store.is_url(location) is url


@pytest.mark.parametrize(
    ("location", "path"),
    [
        ("file:///data/ds", Path("/data/ds")),
        ("FILE:///data/my%20ds/", Path("/data/my ds")),
        ("/data/ds", "/data/ds"),
        ("s3://bucket/ds", "s3://bucket/ds"),
        (Path("ds"), Path("ds")),
    ],
)
def test_a_file_url_is_the_local_path_it_names(location, path):
    # Taken as a path, file:///data/ds was file:/data/ds, a folder that does not exist.
    assert store.local_path(location) == path


@pytest.mark.parametrize("url", ["file://data/ds", "file://localhost/data/ds", "file://"])
def test_a_file_url_that_names_a_host_is_refused_in_one_line(url):
    with pytest.raises(store.StoreError) as refused:
        store.local_path(url)
    assert str(refused.value) == f"{url}: a file:// URL names a local path: file:///ABSOLUTE/PATH"


@pytest.mark.parametrize("url", ["s3://bucket", "s3://bucket/ds/", "gs://b/x", "memory://ds"])
def test_a_url_that_names_a_place_is_taken(url):
    assert store.check_url(url) == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3://", "s3://: no bucket named; give s3://BUCKET/PATH"),
        ("s3:///ds", "s3:///ds: no bucket named; give s3://BUCKET/PATH"),
        ("GS://", "GS://: no bucket named; give gs://BUCKET/PATH"),
        ("memory://", "memory://: nothing named after memory://"),
    ],
)
def test_a_url_that_names_no_bucket_is_refused_in_one_line(url, message, tmp_path, monkeypatch):
    # Once a mirror folder's name is made of it (the way RainDataset and every command
    # open a dataset in a store), it used to end in an AttributeError.
    monkeypatch.setenv("RAINBENCH_CACHE", str(tmp_path))
    with pytest.raises(store.StoreError) as refused:
        store.mirror_dir(url, "read")
    assert str(refused.value) == message


@pytest.mark.parametrize(
    ("url", "read"),
    [
        ("s3://bucket/raw/::a.jpg", None),  # fsspec: a chain; s3fs would read `raw`
        ("s3://bucket/raw/a.jpg::b.jpg", None),
        ("s3://bucket/raw/a.jpg?versionId=b.jpg", None),  # s3fs: a version of `raw/a.jpg`
        ("gs://bucket/raw/a.jpg?generation=5", None),
        ("s3://bucket/raw/a?b#c.jpg", "bucket/raw/a?b#c.jpg"),
        ("s3://bucket/raw//a.jpg", "bucket/raw//a.jpg"),
        ("s3://bucket/ds/", "bucket/ds"),
        ("gs://bucket/raw/a#b.jpg", "bucket/raw/a#b.jpg"),
    ],
)
def test_a_name_the_driver_reads_as_another_object_is_refused_in_one_line(url, read):
    pytest.importorskip("gcsfs")
    if read is not None:
        assert store.filesystem(url)[1] == read
        return
    with pytest.raises(store.StoreError) as refused:
        store.filesystem(url)
    assert str(refused.value).startswith(f"{url}: ") and "another object" in str(refused.value)


def test_a_missing_driver_names_the_extra_to_install(monkeypatch):
    def missing(url, **kwargs):
        raise ImportError("Install s3fs to access S3")

    monkeypatch.setattr(fsspec.core, "url_to_fs", missing)
    with pytest.raises(store.StoreError) as error:
        store.filesystem("s3://bucket/ds")
    assert str(error.value) == (
        "s3://bucket/ds: reading s3:// needs s3fs: pip install 'rainbench[cluster]'"
    )


def test_listing_size_and_ranged_reads(bucket, tmp_path):
    fs, root = store.filesystem(bucket)
    fs.pipe_file(f"{root}/raw/a.jpg", b"a" * 1000)
    fs.pipe_file(f"{root}/raw/sub/b.jpg", bytes(range(256)) * 4)
    found = store.listing(f"{bucket}/raw/")
    assert sorted(found) == ["a.jpg", "sub/b.jpg"]
    assert found["a.jpg"][0] == 1000 and found["a.jpg"][1] > 0
    assert store.listing(f"{bucket}/nothing") == {}
    assert store.size(f"{bucket}/raw/a.jpg") == 1000 and store.size(f"{bucket}/raw/x") == -1
    with store.open_ranged(f"{bucket}/raw/sub/b.jpg") as handle:
        handle.seek(300)
        assert handle.read(4) == bytes([44, 45, 46, 47])
    local = tmp_path / "up.bin"
    local.write_bytes(b"uploaded")
    store.upload(local, f"{bucket}/up.bin")
    assert store.read_bytes(f"{bucket}/up.bin") == b"uploaded"


def test_listing_leaves_out_folder_markers(bucket):
    # What a console's "Create folder" makes: an empty object whose key ends in `/`, here
    # one for the prefix listed and one under it; neither is a file to read.
    fs, root = store.filesystem(bucket)
    for key in ("raw/", "raw/sub/", "raw/sub/a.jpg"):
        fs.pipe_file(f"{root}/{key}", b"a" * key.endswith(".jpg"))
    assert sorted(store.listing(f"{bucket}/raw")) == ["sub/a.jpg"]


def test_download_copies_a_block_at_a_time_and_leaves_no_temporary(bucket, tmp_path):
    fs, root = store.filesystem(bucket)
    data = bytes(range(256)) * (3 * store.STREAM_BLOCK // 256 + 7)  # 3 blocks and a bit
    fs.pipe_file(f"{root}/m.parquet", data)
    target = tmp_path / "mirror" / "m.parquet"
    store.download(f"{bucket}/m.parquet", target)
    assert target.read_bytes() == data
    with pytest.raises(FileNotFoundError):
        store.download(f"{bucket}/gone.parquet", target)
    assert target.read_bytes() == data and os.listdir(target.parent) == ["m.parquet"]

    # Never the whole object in memory (a manifest of millions of rows): a local file,
    # where no server's buffers count, of eight blocks.
    source = tmp_path / "large.bin"
    source.write_bytes(os.urandom(8 * store.STREAM_BLOCK))
    tracemalloc.start()
    try:
        store.download(source.as_uri(), tmp_path / "copy.bin")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (tmp_path / "copy.bin").read_bytes() == source.read_bytes()
    assert peak < 4 * store.STREAM_BLOCK


def test_download_refuses_an_object_past_its_limit_unwritten(bucket, tmp_path, file_size_limit):
    """The store says how large the object is: nothing of it is written (a write past 4 kB
    would fail here), and the copy that was there stays."""
    fs, root = store.filesystem(bucket)
    fs.pipe_file(f"{root}/m.parquet", bytes(3 * store.STREAM_BLOCK))
    target = tmp_path / "mirror" / "m.parquet"
    target.parent.mkdir()
    target.write_bytes(b"the copy from before")
    with file_size_limit(4096), pytest.raises(ValueError, match=r"^larger than 1,000 bytes$"):
        store.download(f"{bucket}/m.parquet", target, limit=1000)
    assert target.read_bytes() == b"the copy from before"
    assert os.listdir(target.parent) == ["m.parquet"]  # no temporary left
    store.download(f"{bucket}/m.parquet", target, limit=3 * store.STREAM_BLOCK)
    assert target.stat().st_size == 3 * store.STREAM_BLOCK


def test_create_makes_an_object_only_where_none_is(bucket):
    url = f"{bucket}/ds/lock.json"
    assert store.create(url, b"first") and not store.create(url, b"second")
    assert store.read_bytes(url) == b"first"
    store.delete(url)
    store.delete(url)  # gone already: no error
    assert store.size(url) == -1


def test_the_stores_own_condition_refuses_a_writer_that_looked_too_early(s3_bucket, monkeypatch):
    """For a writer that looked before the first one wrote: S3's If-None-Match (moto
    honours it; the GCS emulator ignores gcsfs's ifGenerationMatch=0, so S3 only)."""
    url = f"{s3_bucket}/ds/lock.json"
    assert store.create(url, b"first")
    monkeypatch.setattr(s3fs.S3FileSystem, "exists", lambda self, path: False)
    assert not store.create(url, b"second")
    assert store.read_bytes(url) == b"first"


def test_only_folders_in_the_cache_stand_for_a_url(tmp_path, monkeypatch):
    monkeypatch.setenv("RAINBENCH_CACHE", str(tmp_path / "cache"))
    folder = store.mirror_dir("s3://bucket/ds/", "read")
    assert folder.is_relative_to(tmp_path / "cache")
    assert store.mirrored_url(folder) == "s3://bucket/ds"
    assert store.mirror_dir("s3://bucket/ds", "read") == folder
    assert store.mirror_dir("s3://bucket/ds", "write") != folder
    # A dataset's own files never redirect a reader into a store.
    planted = tmp_path / "ds"
    planted.mkdir()
    (planted / store.VIEW_FILE).write_text(json.dumps({"url": "s3://elsewhere"}))
    assert store.mirrored_url(planted) is None


def test_a_bucket_that_does_not_exist_is_named_in_the_error(bucket, tmp_path):
    from click.testing import CliRunner

    from rainbench.cli import main

    (tmp_path / "raw").mkdir()
    missing = f"{bucket}-nowhere/ds"
    result = CliRunner().invoke(main, ["ingest", str(tmp_path / "raw"), "--out", missing])
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: ") and f"{bucket}-nowhere" in line and "bucket" in line


@pytest.mark.parametrize("command", [["verify"], ["tag"], ["label"]])
def test_reading_from_a_bucket_that_does_not_exist_says_so(bucket, command):
    from click.testing import CliRunner

    from rainbench.cli import main

    result = CliRunner().invoke(main, [*command, f"{bucket}-nowhere/ds"])
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: ") and f"{bucket}-nowhere" in line
    assert "bucket does not exist" in line


def test_a_missing_dataset_in_a_bucket_is_no_missing_bucket(bucket):
    assert not store.bucket_missing(f"{bucket}/no-dataset")
    assert store.bucket_missing(f"{bucket}-nowhere/no-dataset")


@pytest.mark.parametrize(
    ("answer", "missing"),
    [(FileNotFoundError("404"), True), (PermissionError("403"), False), (OSError("500"), False)],
)
def test_only_a_404_for_the_bucket_says_it_is_missing(answer, missing, monkeypatch):
    """Credentials that may read objects but not look at the bucket are refused (403):
    that says nothing of the bucket, and no error may then claim it is missing."""

    class Store:
        def call_s3(self, *args, **kwargs):
            raise answer

        def call(self, *args, **kwargs):
            raise answer

    monkeypatch.setattr(store, "filesystem", lambda url: (Store(), url.split("://")[1]))
    assert store.bucket_missing("s3://bucket/ds") is missing
    assert store.bucket_missing("gs://bucket/ds") is missing


@pytest.mark.parametrize(
    ("url", "answer"),
    [
        ("s3://bucket/raw/a.jpg", PermissionError("Access Denied")),
        # gcsfs's 403: a plain OSError, its first line naming the object.
        ("gs://bucket/raw/a.jpg", OSError("Forbidden: bucket/raw/a.jpg\nno storage.objects.get")),
    ],
)
def test_a_refusal_by_either_store_says_to_check_the_credentials(url, answer, monkeypatch):
    class Store:
        def find(self, *args, **kwargs):
            raise answer

    monkeypatch.setattr(store, "filesystem", lambda url: (Store(), url.split("://")[1]))
    with pytest.raises(store.StoreUnusable, match="; check the credentials") as refused:
        store.listing(url)
    assert "\n" not in str(refused.value)
    assert store.unusable(url, answer) is not None
    assert store.unusable(url, OSError("Connection reset by peer")) is None
