"""Stage 2 of the loader: read members out of shards by name, with random access.

A shard's member offsets come from its tar headers (read once per process); a member
is then one seek and one read. Only picture and JSON members are ever read, and the
bytes are only ever decoded as pictures or JSON: nothing in a shard is unpickled or
`torch.load`ed, whatever its name. With `verify`, each shard's sha256 is checked
against shards.parquet when it is first opened. Shards are found through
`shards.members` (inside the dataset); only regular members are indexed, and a member
larger than the caller's limit (from the manifest) is never read. From an object store
(`root` a mirror folder, see `open_dataset`) the headers and each member are fetched by
range requests; a shard is never downloaded whole, and its member offsets are kept in the
mirror folder under the shard's sha256 and the upload read, so later workers and passes
skip the headers.
Every member is read from the upload its shard was indexed from (the store's ETag or
generation); a shard replaced in the store since is refused in one line, whether its
members were fetched ahead (`prefetch`: in a thread while the sample before decodes) or
not, and indexed afresh in the next pass.
"""

import contextlib
import hashlib
import json
import os
import re
import tarfile
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from rainbench.files import stream_sha256, write_atomic
from rainbench.shards import manifest
from rainbench.shards.dataset import Dataset, open_dataset
from rainbench.shards.members import (
    TAR_ERRORS,
    ShardError,
    open_shard,
    open_shard_file,
    refused,
    shard_url,
    size_limit,
    tar_failure,
)
from rainbench.store import opened_version, read_at, replaced, unusable, version

# Member suffixes the loader reads; anything else in a shard is never touched.
READABLE = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".heic", ".json")
_OPEN_FILES = 8  # shard files kept open per process
_AHEAD = 8  # members fetched ahead and not yet read, at most


class ShardReader:
    """Members of a dataset's shards by name (`read`), each one seek and one read in a
    shard file it keeps open. Threads may share a reader; a DataLoader worker forked or
    sent it opens files of its own."""

    def __init__(self, root: str | Path, verify: bool = False):
        self.root = open_dataset(root).root  # a URL: its local view
        self.verify = verify
        self._expected: dict[str, str] | None = None
        # shard → member → (offset, size), or why the member is refused
        self._index: dict[str, dict[str, tuple[int, int] | str]] = {}
        self._uploads: dict[str, str | None] = {}  # shard → the upload indexed (a store's)
        # shard → why it cannot be read: said again for its every sample (with
        # on_error="skip", and by each replacement tried), not found again by hashing the
        # whole shard or reading all its headers once more; until the next pass
        # (`read_again`), where a store's passing failure or a mended shard reads
        self._broken: dict[str, str] = {}
        self._files: OrderedDict[str, object] = OrderedDict()
        self._ahead: dict[tuple[str, str], Future] = {}
        self._threads: ThreadPoolExecutor | None = None
        # Threads iterating one dataset share its files, whose offset a seek and a read
        # use: one of them at a time.
        self._lock = threading.Lock()
        self._pid = os.getpid()  # the process whose files and threads these are

    def read(self, shard: str, member: str, limit: int | None = None) -> bytes:
        """The member's bytes; refused when larger than `limit` (default: what a picture
        within the pixel cap can take)."""
        if not member.lower().endswith(READABLE):
            raise ShardError(f"{shard}: refusing to read {member}: not a picture or JSON member")
        self._own()
        offsets = self._offsets(shard)
        if member not in offsets:
            raise ShardError(f"{shard}: no member {member} (run rainbench verify)")
        if isinstance(offsets[member], str):
            raise ShardError(offsets[member])
        start, size = offsets[member]
        limit = size_limit(None, None, None) if limit is None else limit
        if size > limit:
            raise ShardError(f"{shard}:{member}: {size} bytes, more than the {limit} allowed")
        ahead = self._ahead.pop((shard, member), None)
        if ahead is not None and ahead.exception() is None:
            data = ahead.result()
        else:  # read here, so a failure is reported as a read's
            with self._lock:
                handle = self._file(shard)
                try:
                    handle.seek(start)
                    data = handle.read(size)
                except Exception as error:  # the store's refusal, an object gone since
                    if replaced(error):
                        raise self._changed(shard) from None
                    what = f"{shard}:{member}: cannot read it"
                    raise self._unreadable(shard, what, error) from None
        if len(data) != size:
            raise ShardError(f"{shard}: {member} is cut short (run rainbench verify)")
        return data

    def prefetch(self, shard: str, members: list[str]) -> None:
        """From a store, start fetching `members` of `shard` in a thread, for `read` to
        take; a no-op for local files (the page cache reads ahead). Only members `read`
        would read without a limit are fetched, from the shard file `read` reads, so of
        the same upload; anything amiss is left for `read`."""
        if shard_url(self.root, shard) is None:
            return
        self._own()
        with self._lock:  # the members ahead and their threads, too, are shared
            try:
                offsets = self._offsets(shard)
                handle = self._file(shard)
            except Exception:
                return
            for member in members:
                where = offsets.get(member)
                if (shard, member) in self._ahead or not isinstance(where, tuple):
                    continue
                start, size = where
                if size > size_limit(None, None, None) or not member.lower().endswith(READABLE):
                    continue
                if len(self._ahead) >= _AHEAD:
                    self._ahead.pop(next(iter(self._ahead))).cancel()
                if self._threads is None:
                    self._threads = ThreadPoolExecutor(2, thread_name_prefix="rainbench-prefetch")
                self._ahead[(shard, member)] = self._threads.submit(
                    read_at, handle, start, start + size
                )

    def close(self) -> None:
        """Close the shard files and stop the prefetch threads; a later `read` opens
        them again."""
        for handle in self._files.values():
            handle.close()
        self._files.clear()
        self._ahead.clear()
        if self._threads is not None:
            self._threads.shutdown(cancel_futures=True)
            self._threads = None

    def __del__(self) -> None:
        # A loop that stops mid-epoch (a trainer at its last step) leaves files open, which
        # the garbage collector would close with a ResourceWarning each.
        for handle in getattr(self, "_files", {}).values():
            handle.close()

    def _own(self) -> None:
        """In a process forked after this reader read (a DataLoader worker), the files it
        inherited share their offsets with its parent's, and its prefetch threads do not
        exist: this process opens its own, and leaves those to the parent."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._files, self._ahead, self._threads = OrderedDict(), {}, None
            self._lock = threading.Lock()  # another thread may have held it at the fork

    def __getstate__(self) -> dict:
        # Sent to DataLoader workers without open files or threads; each starts its own.
        state = {**self.__dict__, "_files": OrderedDict(), "_ahead": {}, "_threads": None}
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

    def read_again(self) -> None:
        """Shards found unreadable are tried again from here (a new pass over the data)."""
        self._broken.clear()

    def _offsets(self, shard: str) -> dict[str, tuple[int, int] | str]:
        if shard in self._broken:
            raise ShardError(self._broken[shard])
        if shard not in self._index:
            try:
                if self.verify:
                    self._check_sha256(shard)
                if shard_url(self.root, shard) is None:
                    self._index[shard] = self._read_index(shard)
                else:
                    self._index[shard], self._uploads[shard] = self._kept_index(shard)
            except ShardError as error:
                self._broken[shard] = str(error)
                raise
        return self._index[shard]

    def _read_index(self, shard: str) -> dict[str, tuple[int, int] | str]:
        return self._headers(shard)[0]

    def _headers(self, shard: str) -> tuple[dict[str, tuple[int, int] | str], str | None]:
        """The shard's index from its tar headers, and which upload of it they were read
        from (`store.opened_version`; None for a local file)."""
        with open_shard(self.root, shard) as tar:
            try:
                index = {info.name: _where(shard, info) for info in tar}
            except Exception as error:
                raise self._unreadable(shard, f"cannot read shard {shard}", error) from None
            return index, opened_version(tar.fileobj)

    def _kept_index(self, shard: str) -> tuple[dict[str, tuple[int, int] | str], str | None]:
        """A store's shard's index and the upload it is of, from the mirror folder when an
        earlier reader kept it there for the upload the store holds now (one HEAD
        request): one range request per member header is the cost of streaming. Kept
        under the manifest's sha256 and that upload, as what the store held may not have
        been the manifest's shard (cut short, or another writer's bytes since replaced):
        its index would outlive the repair."""
        digest = self._expected_sha256(shard)
        try:
            upload = version(shard_url(self.root, shard))
        except Exception as error:  # the store's refusal, as for a read
            raise self._unreadable(shard, f"cannot read shard {shard}", error) from None
        if digest is None or not re.fullmatch("[0-9a-f]{64}", digest) or upload is None:
            return self._headers(shard)
        tag = hashlib.sha256(upload.encode()).hexdigest()[:16]
        path = self.root / "index" / f"{digest}-{tag}.json"
        try:
            kept = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(kept, list):
                return dict(_kept_entry(entry) for entry in kept), upload
        except (OSError, ValueError, TypeError, RecursionError):
            pass  # not kept yet, torn or not ours: read the headers again
        index, read = self._headers(shard)
        if read == upload:  # else replaced in between: kept by the next reader
            with contextlib.suppress(OSError):  # only a cache: a full disk costs nothing more
                write_atomic(path, json.dumps(list(index.items())).encode(), shared=True)
        return index, read

    def _file(self, shard: str):
        handle = self._files.pop(shard, None)
        if handle is None:
            handle = open_shard_file(self.root, shard)
            if opened_version(handle) != self._uploads.get(shard):
                handle.close()
                raise self._changed(shard)
            if len(self._files) >= _OPEN_FILES:
                _, oldest = self._files.popitem(last=False)
                oldest.close()
        self._files[shard] = handle
        return handle

    def _changed(self, shard: str) -> ShardError:
        """A shard the store holds another upload of than the one indexed: said again for
        its every sample until the next pass, which indexes it afresh."""
        self._index.pop(shard, None)
        if (handle := self._files.pop(shard, None)) is not None:
            handle.close()
        self._broken[shard] = (
            f"{shard}: the shard changed in the store since it was indexed (another upload "
            "under its key; run rainbench verify)"
        )
        return ShardError(self._broken[shard])

    def _unreadable(self, shard: str, what: str, error: Exception) -> Exception:
        """A failure reading `shard`, raised as one line: the store's refusal of this
        process (a `StoreUnusable`, which no `on_error` skips: no sample is to blame), a
        read that failed (a `ShardError` saying `what`), else the error itself."""
        url = shard_url(self.root, shard)
        if url is not None and (barred := unusable(url, error)) is not None:
            return barred
        if isinstance(error, TAR_ERRORS):
            return ShardError(f"{what}: {tar_failure(error)}")
        return error

    def _expected_sha256(self, shard: str) -> str | None:
        if self._expected is None:  # real and synthetic shards are all in shards.parquet
            shards = manifest.read_manifest(Dataset(self.root).shards_manifest, manifest.SHARDS)
            self._expected = dict(
                zip(shards["shard"].to_pylist(), shards["sha256"].to_pylist(), strict=True)
            )
        return self._expected.get(shard)

    def _check_sha256(self, shard: str) -> None:
        expected = self._expected_sha256(shard)
        if expected is None:
            raise ShardError(f"shard {shard} is not in shards.parquet")
        try:
            with open_shard_file(self.root, shard, stream=True) as handle:
                digest = stream_sha256(handle)
        except Exception as error:
            raise self._unreadable(shard, f"cannot read shard {shard}", error) from None
        if digest != expected:
            raise ShardError(
                f"shard {shard} is damaged: its sha256 differs from shards.parquet "
                "(run rainbench verify)"
            )


def _where(shard: str, info: tarfile.TarInfo) -> tuple[int, int] | str:
    """A member's (offset, size), or why it is refused."""
    if why := refused(info):
        return f"{shard}:{info.name}: {why}"
    return info.offset_data, info.size


def _kept_entry(entry: object) -> tuple[str, tuple[int, int] | str]:
    """A kept index's [name, where], as `_kept_index` wrote it; anything else is a
    ValueError (the mirror folder is no more trusted than the dataset)."""
    match entry:
        case [str(name), str(why)]:
            return name, why
        case [str(name), [int(start), int(size)]] if start >= 0 and size >= 0:
            return name, (start, size)
    raise ValueError(f"not an entry of a shard's index: {entry!r:.80}")
