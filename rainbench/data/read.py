"""Stage 2 of the loader: read members out of shards by name, with random access.

A shard's member offsets come from its tar headers (read once per process); a member
is then one seek and one read. Only picture and JSON members are ever read, and the
bytes are only ever decoded as pictures or JSON: nothing in a shard is unpickled or
`torch.load`ed, whatever its name. With `verify`, each shard's sha256 is checked
against shards.parquet when it is first opened.
"""

import tarfile
from collections import OrderedDict
from pathlib import Path

from rainbench.shards import manifest
from rainbench.shards.dataset import Dataset, DatasetError
from rainbench.shards.tar import file_sha256

# Member suffixes the loader reads; anything else in a shard is never touched.
READABLE = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".heic", ".json")
_OPEN_FILES = 8  # shard files kept open per process


class ShardError(DatasetError):
    """A shard is missing, damaged or not what the manifest says; the message names it."""


class ShardReader:
    def __init__(self, root: str | Path, verify: bool = False):
        self.root = Path(root)
        self.verify = verify
        self._expected: dict[str, str] | None = None
        self._index: dict[str, dict[str, tuple[int, int]]] = {}
        self._files: OrderedDict[str, object] = OrderedDict()

    def read(self, shard: str, member: str) -> bytes:
        if not member.lower().endswith(READABLE):
            raise ShardError(f"{shard}: refusing to read {member}: not a picture or JSON member")
        offsets = self._offsets(shard)
        if member not in offsets:
            raise ShardError(f"{shard}: no member {member} (run rainbench verify)")
        start, size = offsets[member]
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

    def _offsets(self, shard: str) -> dict[str, tuple[int, int]]:
        if shard not in self._index:
            path = self.root / shard
            if self.verify:
                self._check_sha256(shard, path)
            try:
                with tarfile.open(path) as tar:
                    self._index[shard] = {
                        info.name: (info.offset_data, info.size) for info in tar if info.isfile()
                    }
            except (OSError, tarfile.TarError) as error:
                raise ShardError(f"cannot read shard {shard}: {error}") from None
        return self._index[shard]

    def _file(self, shard: str):
        handle = self._files.pop(shard, None)
        if handle is None:
            handle = open(self.root / shard, "rb")  # noqa: SIM115 (kept open, closed in close())
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
