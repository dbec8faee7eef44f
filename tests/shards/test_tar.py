import errno
import hashlib
import io
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


class _Pieces(io.BytesIO):
    """A file that records how much each read asked for."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.asked: list[int] = []

    def read(self, size: int = -1) -> bytes:
        self.asked.append(size)
        return super().read(size)


def test_a_member_from_a_file_is_the_member_from_bytes_read_in_pieces(tmp_path):
    data = bytes(range(256)) * 9000  # over 2 MiB: more than one piece
    by_bytes = _write(tmp_path / "a" / "s-000000.tar", [("k.mp4", data), ("k.json", b"{}")])
    source = _Pieces(data)
    with ShardWriter(tmp_path / "b" / "s-000000.tar") as writer:
        digest = writer.add_file("k.mp4", source, len(data))
        writer.add("k.json", b"{}")
        assert writer.commit() == by_bytes
    assert digest == hashlib.sha256(data).hexdigest()
    assert len(source.asked) > 1 and 0 < max(source.asked) < len(data)


def test_a_member_that_fails_as_it_is_added_leaves_no_trace(tmp_path):
    expected = _write(tmp_path / "a" / "s-000000.tar", [("a.jpg", b"a")])
    with ShardWriter(tmp_path / "b" / "s-000000.tar") as writer:
        writer.add("a.jpg", b"a")
        with pytest.raises(EOFError):  # the file is shorter than its size
            writer.add_file("b.mp4", io.BytesIO(b"short"), 2000)
        with pytest.raises(ValueError), writer.tentative():  # its check failed
            writer.add_file("c.mp4", io.BytesIO(b"c" * 3000), 3000)
            raise ValueError("not the planned bytes")
        assert writer.commit() == expected


def test_a_member_of_8_gib_or_more_gets_a_size_record_every_tar_reader_knows(tmp_path):
    # USTAR's size field stops below 8 GiB; a camera's long 4K video may not. Only the
    # header is written here (9 GiB of data would take minutes): a reader must find the
    # member's name and whole size in it.
    with ShardWriter(tmp_path / "s-000000.tar") as writer:
        writer._header("k.mp4", 9 << 30)
        writer._file.flush()
        with tarfile.open(writer.tmp_path, "r:") as tar:
            found = tar.next()
    assert (found.name, found.size) == ("k.mp4", 9 << 30)


@pytest.mark.parametrize("limit", [4096, 9000, 16384])
def test_a_write_that_fails_names_the_shard_and_leaves_no_temporary(
    tmp_path, file_size_limit, limit
):
    """A member's bytes still buffered when the limit is hit fail as the shard is closed
    in finish() (9000): its temporary goes all the same."""
    path = tmp_path / "s-000000.tar"
    with pytest.raises(OSError) as failed, file_size_limit(limit), ShardWriter(path) as writer:
        writer.add("k.jpg", bytes(100 if limit < 16384 else 9000))
        writer.finish()
    assert failed.value.errno == errno.EFBIG and failed.value.filename == str(path)
    assert list(tmp_path.iterdir()) == []
