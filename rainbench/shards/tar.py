"""Writing shards: reproducible tar files that become visible only when complete.

Members carry fixed metadata (mtime 0, uid/gid 0, mode 0444), so the same samples
always give byte-identical shards. The shard is written under a temporary name,
hashed while it is written, flushed to disk and only then renamed. Each writer's
temporary name is its own, so a writer left over from a killed run (a Ray task outlives
its driver for a few seconds) never writes into the file a new run publishes.
"""

import contextlib
import hashlib
import os
import secrets
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from rainbench.files import fsync_dir, naming

_BLOCK = tarfile.BLOCKSIZE
_RECORD = tarfile.RECORDSIZE
_CHUNK = 1 << 20  # what add_file reads at a time
_USTAR_LIMIT = 8 << 30  # the first size a USTAR header cannot hold (11 octal digits)
TMP_SUFFIX = ".tmp"


@dataclass(frozen=True)
class ShardInfo:
    sha256: str
    bytes: int


class ShardWriter:
    """Append members to a new shard, written under a temporary name.

    `finish()` completes the file and `publish()` makes it visible; `commit()` does
    both. Used as a context manager: leaving the block before `finish()` removes
    the temporary file, so an error never leaves a half-written shard behind.
    """

    def __init__(self, path: Path):
        self.path = path
        self.tmp_path = path.with_name(f"{path.name}.{secrets.token_hex(6)}{TMP_SUFFIX}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.tmp_path, "wb")  # noqa: SIM115 - closed by finish() or __exit__
        self._sha = hashlib.sha256()
        self._size = 0
        self._finished = False

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()

    def discard(self) -> None:
        """Remove the temporary file of a shard that was not finished (a no-op after
        `finish()`), also when writing it failed (a full disk): what is still buffered
        for it is dropped, and `finish()` failing to close it does not keep it."""
        if not self._finished:
            with contextlib.suppress(OSError):
                self._file.close()
            self.tmp_path.unlink(missing_ok=True)

    def add(self, name: str, data: bytes) -> None:
        self._header(name, len(data))
        self._write(data)
        self._write(bytes(-len(data) % _BLOCK))

    def add_file(self, name: str, file: BinaryIO, size: int) -> str:
        """Add a member of `size` bytes read from `file` in pieces, never held whole (a
        video of several GB); the sha256 of its bytes. A file that ends early (EOFError)
        or fails to read leaves no trace of the member."""
        digest = hashlib.sha256()
        with self.tentative():
            self._header(name, size)
            left = size
            while left:
                chunk = file.read(min(left, _CHUNK))
                if not chunk:
                    raise EOFError(f"{name}: the file ends {left} bytes before its size")
                digest.update(chunk)
                self._write(chunk)
                left -= len(chunk)
            self._write(bytes(-size % _BLOCK))
        return digest.hexdigest()

    @contextmanager
    def tentative(self) -> Iterator[None]:
        """Members added in the block are taken out again if it raises: a capture found
        to have changed as it was copied in leaves the shard as it was before."""
        size, sha = self._size, self._sha.copy()
        try:
            yield
        except BaseException:
            self._file.seek(size)
            self._file.truncate()
            self._size, self._sha = size, sha
            raise

    def finish(self) -> ShardInfo:
        """Write the end-of-archive blocks and close; the shard waits at `tmp_path`."""
        self._write(bytes(2 * _BLOCK))
        self._write(bytes(-self._size % _RECORD))
        with naming(self.path):
            self._file.close()
        self._finished = True
        return ShardInfo(self._sha.hexdigest(), self._size)

    def commit(self) -> ShardInfo:
        info = self.finish()
        publish(self.tmp_path, self.path)
        return info

    def _header(self, name: str, size: int) -> None:
        info = tarfile.TarInfo(name)
        info.size = size
        info.mtime = 0
        info.mode = 0o444
        # USTAR holds sizes below 8 GiB; a larger member (a long 4K video) gets a POSIX
        # (pax) size record before its header, which every tar reader knows.
        big = size >= _USTAR_LIMIT
        self._write(
            info.tobuf(tarfile.PAX_FORMAT if big else tarfile.USTAR_FORMAT, "utf-8", "strict")
        )

    def _write(self, data: bytes) -> None:
        with naming(self.path):
            self._file.write(data)
        self._sha.update(data)
        self._size += len(data)


def publish(tmp: Path, path: Path) -> None:
    """Make the finished shard waiting at `tmp`, its temporary name, visible at `path`.

    Flushed to disk before the rename, so even after a power cut a shard under its
    final name is complete. The ingest's main process calls this, keeping the
    disk waits off the workers.
    """
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
