import tarfile

import pytest

from rainbench.files import file_sha256
from rainbench.shards.tar import TMP_SUFFIX, ShardWriter


def _write(path, members):
    with ShardWriter(path) as writer:
        for name, data in members:
            writer.add(name, data)
        return writer.commit()


def test_shard_reads_back_with_tarfile_and_is_reproducible(tmp_path):
    members = [("abc.jpg", b"\xff\xd8" + bytes(1000)), ("abc.json", b'{"key": "abc"}')]
    first = _write(tmp_path / "a" / "s-000000.tar", members)
    second = _write(tmp_path / "b" / "s-000000.tar", members)
    assert first == second
    assert first.sha256 == file_sha256(tmp_path / "a" / "s-000000.tar")
    assert first.bytes == (tmp_path / "a" / "s-000000.tar").stat().st_size
    with tarfile.open(tmp_path / "a" / "s-000000.tar") as archive:
        infos = archive.getmembers()
        assert [i.name for i in infos] == ["abc.jpg", "abc.json"]
        assert all(i.mtime == 0 and i.uid == 0 and i.mode == 0o444 for i in infos)
        assert archive.extractfile("abc.json").read() == b'{"key": "abc"}'


def test_nothing_visible_until_commit_and_error_leaves_nothing(tmp_path):
    path = tmp_path / "s-000000.tar"
    with pytest.raises(RuntimeError), ShardWriter(path) as writer:
        writer.add("k.jpg", b"x")
        assert not path.exists()
        assert writer.tmp_path.exists() and writer.tmp_path.parent == tmp_path
        assert writer.tmp_path.name.startswith(path.name + ".")
        assert writer.tmp_path.name.endswith(TMP_SUFFIX)
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_a_writer_left_over_from_a_killed_run_never_touches_the_published_shard(tmp_path):
    """A Ray task can outlive its killed driver by seconds, while the next run writes
    the same shard: each writer has a temporary file of its own."""
    path = tmp_path / "s-000000.tar"
    stale = ShardWriter(path)
    stale.add("k.jpg", b"old run, half written")
    published = _write(path, [("k.jpg", b"new run")])
    stale.add("k.json", b"{}")
    stale.finish()
    assert published.sha256 == file_sha256(path)
    assert stale.tmp_path.exists()  # never published: the next run's cleanup removes it
