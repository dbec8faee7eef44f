"""Stage 2 of the loader: read members out of shards by name, with random access.

A shard's member offsets come from its tar headers (read once per process); a member
is then one seek and one read. Only picture and JSON members are ever read, and the
bytes are only ever decoded as pictures or JSON: nothing in a shard is unpickled or
`torch.load`ed, whatever its name. With `verify`, each shard's sha256 is checked
against shards.parquet when it is first opened. Shards are found through
`shards.members.shard_path` (inside the dataset); only regular members are indexed,
and a member larger than the caller's limit (from the manifest) is never read.
"""

import tarfile
from collections import OrderedDict
from pathlib import Path

from rainbench.files import file_sha256
from rainbench.shards import manifest
from rainbench.shards.dataset import Dataset
from rainbench.shards.members import (
    ShardError,
    irregular,
    open_shard,
    shard_path,
    size_limit,
)

# Member suffixes the loader reads; anything else in a shard is never touched.
READABLE = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".heic", ".json")
_OPEN_FILES = 8  # shard files kept open per process


class ShardReader:
    def __init__(self, root: str | Path, verify: bool = False):
        self.root = Path(root)
        self.verify = verify
        self._expected: dict[str, str] | None = None
        # shard → member → (offset, size), or why the member is refused
        self._index: dict[str, dict[str, tuple[int, int] | str]] = {}
        self._files: OrderedDict[str, object] = OrderedDict()

    def read(self, shard: str, member: str, limit: int | None = None) -> bytes:
        """The member's bytes; refused when larger than `limit` (default: what a picture
        within the pixel cap can take)."""
        if not member.lower().endswith(READABLE):
            raise ShardError(f"{shard}: refusing to read {member}: not a picture or JSON member")
        offsets = self._offsets(shard)
        if member not in offsets:
            raise ShardError(f"{shard}: no member {member} (run rainbench verify)")
        if isinstance(offsets[member], str):
            raise ShardError(offsets[member])
        start, size = offsets[member]
        limit = size_limit(None, None, None) if limit is None else limit
        if size > limit:
            raise ShardError(f"{shard}:{member}: {size} bytes, more than the {limit} allowed")
        handle = self._file(shard)
        handle.seek(start)
        data = handle.read(size)
        if len(data) != size:
            raise ShardError(f"{shard}: {member} is cut short (run rainbench verify)")
        return data

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._files.clear()

    def __getstate__(self) -> dict:
        # Sent to DataLoader workers without open files; each opens its own.
        return {**self.__dict__, "_files": OrderedDict()}

    def _offsets(self, shard: str) -> dict[str, tuple[int, int] | str]:
        if shard not in self._index:
            if self.verify:
                self._check_sha256(shard, shard_path(self.root, shard))
            with open_shard(self.root, shard) as tar:
                try:
                    self._index[shard] = {info.name: _where(shard, info) for info in tar}
                except (OSError, tarfile.TarError, EOFError) as error:
                    raise ShardError(f"cannot read shard {shard}: {error}") from None
        return self._index[shard]

    def _file(self, shard: str):
        handle = self._files.pop(shard, None)
        if handle is None:
            handle = open(shard_path(self.root, shard), "rb")  # noqa: SIM115 (closed in close())
            if len(self._files) >= _OPEN_FILES:
                _, oldest = self._files.popitem(last=False)
                oldest.close()
        self._files[shard] = handle
        return handle

    def _check_sha256(self, shard: str, path: Path) -> None:
        if self._expected is None:  # real and synthetic shards are all in shards.parquet
            shards = manifest.read_manifest(Dataset(self.root).shards_manifest, manifest.SHARDS)
            self._expected = dict(
                zip(shards["shard"].to_pylist(), shards["sha256"].to_pylist(), strict=True)
            )
        expected = self._expected.get(shard)
        if expected is None:
            raise ShardError(f"shard {shard} is not in shards.parquet")
        try:
            digest = file_sha256(path)
        except OSError as error:
            raise ShardError(f"cannot read shard {shard}: {error.strerror or error}") from None
        if digest != expected:
            raise ShardError(
                f"shard {shard} is damaged: its sha256 differs from shards.parquet "
                "(run rainbench verify)"
            )


def _where(shard: str, info: tarfile.TarInfo) -> tuple[int, int] | str:
    """A member's (offset, size), or why it is refused."""
    if why := irregular(info):
        return f"{shard}:{info.name}: {why}"
    return info.offset_data, info.size
