"""Writing shards: reproducible tar files that become visible only when complete.

Members carry fixed metadata (mtime 0, uid/gid 0, mode 0444), so the same samples
always give byte-identical shards. The shard is written under a temporary name,
hashed while it is written, flushed to disk and only then renamed.
"""

import hashlib
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from rainbench.shards.dataset import fsync_dir

_BLOCK = tarfile.BLOCKSIZE
_RECORD = tarfile.RECORDSIZE
TMP_SUFFIX = ".tmp"


@dataclass(frozen=True)
class ShardInfo:
    sha256: str
    bytes: int


class ShardWriter:
    """Append members to a new shard; `commit()` makes it visible at `path`.

    Used as a context manager: leaving the block without committing removes the
    temporary file, so nothing half-written is ever left behind by an error.
    """

    def __init__(self, path: Path):
        self.path = path
        self._tmp = path.with_name(path.name + TMP_SUFFIX)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self._tmp, "wb")  # noqa: SIM115 - closed by commit() or __exit__
        self._sha = hashlib.sha256()
        self._size = 0

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._file.closed:
            self._file.close()
            self._tmp.unlink(missing_ok=True)

    def add(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = 0
        info.mode = 0o444
        self._write(info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict"))
        self._write(data)
        self._write(bytes(-len(data) % _BLOCK))

    def commit(self) -> ShardInfo:
        self._write(bytes(2 * _BLOCK))
        self._write(bytes(-self._size % _RECORD))
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._tmp, self.path)
        fsync_dir(self.path.parent)
        return ShardInfo(self._sha.hexdigest(), self._size)

    def _write(self, data: bytes) -> None:
        self._file.write(data)
        self._sha.update(data)
        self._size += len(data)


def file_sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            sha.update(chunk)
    return sha.hexdigest()
