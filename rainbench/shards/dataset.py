"""A dataset directory: where things live, `dataset.json`, and the lock that keeps a
second writer out. A dataset in an object store is worked on through a local mirror
folder (`open_dataset`, `open_for_writing`) holding its dataset.json and manifests;
its shards stay in the store, and so does a lock that keeps writers on other machines
out.
"""

import errno
import fcntl
import json
import math
import os
import re
import shlex
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rainbench import __version__
from rainbench.errors import RainbenchError, first_line
from rainbench.files import leads_inside, naming, regular_file, write_atomic
from rainbench.parallel import refuse_while_importing_main
from rainbench.shards.layout import STORED_SPLIT
from rainbench.store import (
    StoreError,
    StoreUnusable,
    bucket_missing,
    create,
    delete,
    download,
    is_url,
    mirror_dir,
    mirrored_url,
    read_range,
    shown,
    upload,
)

SCHEMA_VERSION = 1
# The manifests in the order a reader fetches them from a store; a writer pushes them in
# the reverse order and dataset.json last, so a reader never holds a sample row whose
# shard its shards.parquet lacks.
_FETCH_ORDER = ("samples.parquet", "synthetic.parquet", "rejects.parquet", "shards.parquet")
# The store's writer lock: not `.lock`, the local flock file, which a dataset copied to the
# store as it is (`aws s3 sync`) brings along.
STORE_LOCK = ".writer-lock.json"
# A writer's lock names it in under 1 kB (`_this_process`): what a reader fetches of one.
_LOCK_BYTES = 64 << 10
# The fitted taggers' folder (`rainbench.ingest.taggers`, which fetches and uploads them
# in a store: a mirror holds only those asked for).
TAGGERS = "taggers"
# Every name rainbench puts at a dataset's top level (`.dataset.json.tmp`: write_atomic's,
# left by a kill -9). A folder without dataset.json that holds only these is the start of
# a dataset, a first ingest killed before its first commit, and a writer goes on in it;
# anything else there (hidden names aside) is somebody else's, and no writer touches it.
OWN_NAMES = frozenset(
    {"dataset.json", ".dataset.json.tmp", "manifests", "shards", ".ingest", ".lock"}
    | {STORE_LOCK, TAGGERS}
)
# dataset.json grows by one entry per ingest run, 0.7 to 1.3 kB as written (every
# rejection reason, a label sheet and the libraries' versions counted, two inputs): 32 MiB
# keeps 25 000 runs or more, an ingest an hour for almost three years. What it bounds:
# parsing a hostile file of this size takes at most some 850 MB (`[{},{},…]`), about one
# 250 MP capture's decode.
MAX_INFO_BYTES = 32 << 20
# A manifest in a store is fetched whole to its mirror here (`Dataset.pull`): one larger
# than this is refused unfetched. samples.parquet takes some 410 bytes a capture, with
# the tagger's features (measured on a million rows), the other manifests less: 16 GiB
# is some 40 million captures, whose table alone takes some 39 GB of memory to read.
MAX_MANIFEST_BYTES = 16 << 30
# The names of split fractions in `options.split`: one path segment, as a split's are.
_SPLIT_NAME = re.compile(STORED_SPLIT)
# A reader's look at the lock (`Dataset.writer`) holds it, shared, for an instant: a
# writer that meets it then tries again this much later before it gives up.
_LOCK_RETRY_S = 0.05


class DatasetError(RainbenchError):
    """A problem with a dataset the user should fix; the message is one line."""


class DatasetBusy(DatasetError):
    """A reader found the dataset being written by another process: what it would read
    now is a half-made change, not damage."""


@dataclass(frozen=True)
class Dataset:
    root: Path

    @property
    def manifests(self) -> Path:
        return self.inside("manifests")

    @property
    def samples_manifest(self) -> Path:
        return self.inside("manifests/samples.parquet")

    @property
    def shards_manifest(self) -> Path:
        return self.inside("manifests/shards.parquet")

    @property
    def rejects_manifest(self) -> Path:
        return self.inside("manifests/rejects.parquet")

    @property
    def info_path(self) -> Path:
        return self.inside("dataset.json")

    @property
    def state_dir(self) -> Path:
        """Work in progress of an unfinished ingest; absent when none is pending."""
        return self.inside(".ingest")

    @property
    def pending_run(self) -> Path:
        """The settings of an ingest that was interrupted, which the next one resumes."""
        return self.state_dir / "run.json"

    @property
    def taggers(self) -> Path:
        """The dataset's fitted taggers (`rainbench.ingest.taggers`)."""
        return self.inside(TAGGERS)

    def inside(self, name: str) -> Path:
        """The dataset's file or folder `name`, refused unless it lies inside the
        dataset once links are followed (as a shard must, `shards.members.shard_path`):
        a link the dataset holds never takes a reader, or a writer, elsewhere."""
        path = self.root / name
        if not leads_inside(path, self.root):
            raise DatasetError(f"{self.location}/{name} leads outside the dataset; refused")
        try:
            os.stat(path)
        except OSError as error:
            # A link loop reads as a missing file to exists(): refused, lest a reader
            # see an empty dataset. A missing file is for its writer to make.
            if error.errno == errno.ELOOP:
                raise DatasetError(
                    f"{self.location}/{name}: cannot follow its links ({first_line(error)}); "
                    "refused"
                ) from None
        return path

    def shard_name(self, split: str, index: int) -> str:
        """A shard's path relative to the dataset root."""
        return f"shards/{split}/{split}-{index:06d}.tar"

    def synthetic_shard_name(self, split: str, index: int) -> str:
        return f"shards/synthetic/{split}/{split}-{index:06d}.tar"

    @property
    def synthetic_manifest(self) -> Path:
        return self.inside("manifests/synthetic.parquet")

    @property
    def url(self) -> str | None:
        """The object-store URL this folder mirrors; None for a local dataset."""
        return mirrored_url(self.root)

    @property
    def location(self) -> str:
        """Where the dataset is, as a user names it: its URL, or its absolute path."""
        return self.url or str(self.root.absolute())

    @property
    def folder_name(self) -> str:
        """The name of the folder the dataset is in (a URL's last part), the name a new
        dataset takes: `.` or `..` stand for the folder they name, not ''."""
        return Path(self.url or os.path.abspath(self.root)).name

    def exists(self) -> bool:
        return self.info_path.exists()

    def not_a_dataset(self, missing: str) -> str:
        """Why this is no dataset, when it lacks the file `missing`: a local folder that
        is not there, or a file, said as such; the first ingest into it interrupted before
        it committed anything; else the file it lacks."""
        if self.url is None and not self.root.is_dir():
            what = "is a file, not a dataset folder" if self.root.exists() else "does not exist"
            return f"{self.root} {what}"
        if self.url is not None and bucket_missing(self.url):
            return f"{self.url}: the bucket does not exist"
        if self.pending_run.exists():
            return (
                f"{self.url or self.root} is not a dataset yet: an ingest into it was "
                "interrupted before its first commit; run the same ingest again to finish it"
            )
        return f"{self.url or self.root} is not a rainbench dataset (no {missing})"

    def pull(self) -> None:
        """Refresh a mirror's dataset.json and manifests from the store (a no-op for a
        local dataset); a file the store no longer has is removed here too, and a
        manifest larger than MAX_MANIFEST_BYTES is refused, its copy here left as it was."""
        if self.url is None:
            return
        names = [f"manifests/{name}" for name in _FETCH_ORDER] + ["dataset.json"]
        for name in names:
            url = f"{self.url}/{name}"
            try:
                if name == "dataset.json":  # as far as `read_info` reads it, which refuses it then
                    write_atomic(self.root / name, stored_info(url), shared=True)
                else:  # a block at a time: a manifest of millions of rows is large
                    download(url, self.root / name, MAX_MANIFEST_BYTES)
            except FileNotFoundError:
                (self.root / name).unlink(missing_ok=True)
            except ValueError as error:  # past `download`'s limit: nothing of it kept here
                raise DatasetError(
                    f"{url}: {error}, more than any manifest rainbench writes; refused unfetched"
                ) from None

    def push(self) -> None:
        """Publish a mirror's manifests, then dataset.json, to the store (each upload is
        atomic); a no-op for a local dataset, whose files are already in place."""
        if self.url is None:
            return
        for name in reversed(_FETCH_ORDER):
            if (self.manifests / name).exists():
                upload(self.manifests / name, f"{self.url}/manifests/{name}")
        if self.info_path.exists():
            upload(self.info_path, f"{self.url}/dataset.json")

    def read_info(self) -> dict:
        """dataset.json, refused in one line unless it has the shape writers rely on
        (docs/dataset-format.md)."""
        where = shown(self.info_path)  # a store's by its URL, not by the local copy's path
        try:
            info = read_json(self.info_path, MAX_INFO_BYTES)
        except (FileNotFoundError, NotADirectoryError):
            raise DatasetError(self.not_a_dataset("dataset.json")) from None
        except OSError as error:
            raise DatasetError(f"{where}: cannot read it: {error.strerror}") from None
        except ValueError as error:  # too large, not UTF-8, not JSON
            raise DatasetError(f"{where}: cannot read it: {error}") from None
        if not isinstance(info, dict):
            raise DatasetError(f"{where}: not a rainbench dataset.json (not an object)")
        problem = _info_problem(info)
        if problem:
            raise DatasetError(f"{where}: {problem}; refused")
        return info

    def write_info(self, info: dict) -> None:
        """Replace dataset.json: the commit point of every change to the manifests, so a
        mirror publishes its manifests to the store here."""
        write_atomic(self.info_path, (json.dumps(info, indent=2, default=str) + "\n").encode())
        self.push()

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the dataset's writer lock; a second writer is refused at once.

        flock is released by the kernel when the holder dies, so a killed ingest
        never leaves a stale lock behind. A dataset in a store is also locked there
        (`_store_lock`), against writers on other machines. The folder is checked
        first (`_check_folder`, `_check_links`): nothing is made in a file's place,
        among somebody else's files or through a link out of the dataset.
        """
        refuse_while_importing_main()  # else the script's own process holds the lock
        made = first_missing(self.root) if self.url is None else None
        self._check_folder()
        self._check_links()
        with ExitStack() as held:
            try:
                held.enter_context(writer_lock(self.root / ".lock"))
            except LockHeld as error:
                raise DatasetError(
                    f"another rainbench command is writing to {self.location}: {error.holder}; "
                    "wait for it to finish"
                ) from None
            if made:  # a writer that stored nothing leaves no folder behind
                held.callback(remove_if_only_lock, self.root / ".lock", made)
            if self.url is not None:
                held.enter_context(_store_lock(self.url))
            yield

    def _check_folder(self) -> None:
        """Make the dataset's folder, refusing a file in its place and a folder that
        holds anything but a dataset's own files (`OWN_NAMES`): a user's photos, say,
        named by mistake."""
        if self.root.exists() and not self.root.is_dir():
            raise DatasetError(f"{self.root} is a file, not a folder; give a dataset folder")
        if self.url is None and self.root.is_dir() and not self.exists():
            # Hidden names aside (.DS_Store, a file manager's): no one's photos.
            foreign = sorted(
                name
                for name in os.listdir(self.root)
                if name not in OWN_NAMES and not name.startswith(".")
            )
            if foreign:
                shown = ", ".join(foreign[:3]) + (
                    f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
                )
                raise DatasetError(
                    f"{self.root} is not empty and not a rainbench dataset (it holds "
                    f"{shown}); give a new or empty folder"
                )
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise DatasetError(
                f"{self.root}: cannot make the folder: {first_line(error)}"
            ) from None

    def _check_links(self) -> None:
        """Refuse, before a writer makes or replaces anything, a dataset whose own names
        (`OWN_NAMES`) or split folders lead outside it: writers build a new shard's path
        from the split's name, not through `shards.members.shard_path`."""
        names = sorted(OWN_NAMES)
        for folder in ("shards", "shards/synthetic"):
            if self.inside(folder).is_dir():
                names += [f"{folder}/{child.name}" for child in (self.root / folder).iterdir()]
        for name in names:
            self.inside(name)

    def writer(self) -> str | None:
        """Who is writing to the dataset now, as the writer put itself down
        ("pid N (command …)"), or None when nobody is. A local dataset's flock is tried,
        shared and without waiting, and let go at once: only a live holder keeps it. A
        store's lock object names its holder; one left by a killed writer on this
        machine does not count (`_left_here_by_the_dead`)."""
        if self.url is not None:
            holder = _lock_holder(f"{self.url}/{STORE_LOCK}")
            if holder is None or _left_here_by_the_dead(holder):
                return None
            return _holder_text(holder)
        return lock_holder(self.inside(".lock"))


def lock_holder(path: Path) -> str | None:
    """Who holds the flock of `writer_lock` on `path` now, as the holder put itself down,
    or None when nobody does. The flock is tried, shared and without waiting, and let go
    at once: only a live holder keeps it."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError:  # no lock file: nobody ever wrote here, or nobody can
        return None
    with handle:
        if _flock(handle, fcntl.LOCK_SH):
            fcntl.flock(handle, fcntl.LOCK_UN)
            return None
        return _one_line(handle.read(1000).decode("utf-8", "replace")) or "another process"


def stored_info(url: str) -> bytes:
    """A store's dataset.json as far as `Dataset.read_info` reads it (one byte past
    MAX_INFO_BYTES: a longer one is refused there), never a hostile size whole."""
    return read_range(url, 0, MAX_INFO_BYTES + 1)


def read_json(path: Path, limit: int) -> object:
    """The JSON in the file at `path`, which must be a regular file of at most `limit`
    bytes of UTF-8: larger, or nested too deep to parse, is a ValueError, read no
    further, so what a hostile file costs its reader is bounded."""
    with open(regular_file(path), "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"larger than {limit >> 20} MiB, more than rainbench ever writes there")
    try:
        return json.loads(data.decode("utf-8"))
    except RecursionError:
        raise ValueError("not JSON (nested too deep)") from None
    except ValueError as error:
        raise ValueError(f"not JSON ({error})") from None


def _info_problem(info: dict) -> str | None:
    """What of dataset.json's shape (docs/dataset-format.md) is wrong for the readers
    and writers that rely on it, or None: the name becomes a results folder and a
    heading; counts are updated in place; runs are found by id and a run's label sheet
    marked unapplied; a run that stores pairs is found by id and its splits extended
    (`pair_runs`); the split fractions assign new captures' splits."""
    name = info.get("name", "")
    if not isinstance(name, str) or any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "its name is not one line of text"
    if "counts" not in info:
        return "it has no counts"
    if not isinstance(info["counts"], dict):
        return "its counts are not an object"
    runs = info.get("runs")
    if not isinstance(runs, list) or not all(
        isinstance(run, dict)
        and isinstance(run.get("run_id"), str)
        and isinstance(run.get("labels") or {}, dict)
        for run in runs
    ):
        return "its runs are not a list of runs, each with its run_id"
    pair_runs = info.get("pair_runs", [])
    if not isinstance(pair_runs, list) or not all(
        isinstance(run, dict)
        and isinstance(run.get("run_id"), str)
        and isinstance(run.get("splits"), list)
        for run in pair_runs
    ):
        return "its pair_runs are not a list of runs, each with its run_id and splits"
    options = info.get("options", {})
    if not isinstance(options, dict):
        return "its options are not an object"
    if "keep_gps" in options and not isinstance(options["keep_gps"], bool):
        return "its option keep_gps is not true or false"
    if "split" in options and not _fractions(options["split"]):
        return "its option split is not split names with fractions ≥ 0 that sum to 1"
    return None


def _fractions(split: object) -> bool:
    """Whether `split` is split fractions: names to numbers ≥ 0 that sum to 1."""
    return (
        isinstance(split, dict)
        and all(isinstance(name, str) and _SPLIT_NAME.fullmatch(name) for name in split)
        and all(
            isinstance(share, int | float) and not isinstance(share, bool) and 0 <= share <= 1
            for share in split.values()
        )
        and math.isclose(sum(split.values()), 1, abs_tol=1e-9)
    )


class LockHeld(RainbenchError):
    """Another process holds a `writer_lock`; `holder` is how it put itself down."""

    def __init__(self, holder: str):
        super().__init__(holder)
        self.holder = holder


# The descriptors of the writer locks this process holds. A flock belongs to the open
# file, which a forked child (a DataLoader worker, a pool's process) shares: the child lets
# go of it at once (`_let_go_in_child`), or a killed holder's lock would stay held, naming
# the dead, until its children noticed and exited too.
_HELD_LOCKS: set[int] = set()


def _let_go_in_child() -> None:
    """In a forked child: each held lock's descriptor now points at /dev/null (the number
    stays valid for the handle the child inherited, the lock is the parent's alone)."""
    for descriptor in _HELD_LOCKS:
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, descriptor)
        os.close(null)
    _HELD_LOCKS.clear()


os.register_at_fork(after_in_child=_let_go_in_child)


@contextmanager
def writer_lock(path: Path) -> Iterator[None]:
    """Hold the flock on the file `path` (made if missing), which names its holder
    ("pid N (command …)") while held; a second process is refused at once (`LockHeld`).
    The kernel releases a flock when its holder dies, so a killed writer leaves no stale
    lock behind (its forked children hold no copy). A dataset's lock (`Dataset.lock`) and
    a training run's are this one."""
    with open(path, "a+") as handle:
        if not (_flock(handle, fcntl.LOCK_EX) or _flock(handle, fcntl.LOCK_EX, _LOCK_RETRY_S)):
            handle.seek(0)
            raise LockHeld(_one_line(handle.read(1000)) or "another process")
        if not _still_at(handle, path):  # removed by its last holder (`remove_if_only_lock`)
            raise LockHeld("another process, which has just removed the folder")
        handle.seek(0)
        handle.truncate()
        with naming(path):  # unbuffered: a full disk fails here once, not as the file closes
            os.write(handle.fileno(), f"pid {os.getpid()} ({_command()})".encode(handle.encoding))
        _HELD_LOCKS.add(handle.fileno())
        try:
            yield
        finally:
            _HELD_LOCKS.discard(handle.fileno())
            handle.truncate(0)


def _still_at(handle, path: Path) -> bool:
    """Whether the file open as `handle` is still the one at `path`."""
    try:
        return os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
    except FileNotFoundError:
        return False


def first_missing(folder: Path) -> Path | None:
    """The outermost of `folder` and its parents that does not exist; None if it does."""
    missing = None
    while not folder.exists():
        missing, folder = folder, folder.parent
    return missing


def remove_if_only_lock(path: Path, made: Path) -> None:
    """Remove the folder of the lock file `path`, and its parents up to `made`, when
    nothing else is in it (a writer made them and stored nothing). The lock goes first,
    while it is still held: a process that takes it after sees it gone (`writer_lock`)
    and writes nothing."""
    if os.listdir(path.parent) != [path.name]:
        return
    path.unlink()
    folder = path.parent
    with suppress(OSError):  # another process made a file there meanwhile: it stays
        while True:
            folder.rmdir()
            if folder == made:
                break
            folder = folder.parent


def _flock(handle, mode: int, wait: float = 0) -> bool:
    """Whether the lock `mode` on `handle` was taken, without blocking (after `wait`)."""
    if wait:
        time.sleep(wait)
    try:
        fcntl.flock(handle, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _command() -> str:
    """This process's command line, one line of at most 200 characters: how a reader
    or another writer finds out what holds the lock."""
    program = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if program == "__main__.py":  # python -m rainbench: a package's __main__ as argv[0]
        package = os.path.basename(os.path.dirname(sys.argv[0]))
        words = ["python", "-m", package] if package else ["python", program]
    else:
        words = [program] if program and not program.startswith("-") else ["python", program]
    return _one_line(shlex.join([word for word in words if word] + sys.argv[1:]))


def _one_line(text: str, limit: int = 200) -> str:
    text = "".join(c if c.isprintable() else "?" for c in text.strip())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@contextmanager
def _store_lock(url: str) -> Iterator[None]:
    """Keep writers on other machines out of a dataset in a store: a STORE_LOCK object,
    made only where none is (the store's conditional write), naming its holder, and
    removed at the end. Read back before going on: on a store that ignores the
    condition, of two writers within one round trip the earlier one then sees the
    later one's lock and stops (they may still both go on; see `store.create`).

    A lock left by a killed writer on this machine (same host and process namespace, its
    process gone) is taken over: writers here already queue on the mirror's flock, which
    the caller holds. One from another machine is refused with where it comes from.
    """
    lock_url = f"{url}/{STORE_LOCK}"
    mine = json.dumps(_this_process(), sort_keys=True).encode()
    if not create(lock_url, mine):
        holder = _lock_holder(lock_url)
        if holder is None or not _left_here_by_the_dead(holder):
            _refuse(url, lock_url, holder)
        delete(lock_url)
        if not create(lock_url, mine):
            _refuse(url, lock_url, _lock_holder(lock_url))
    if read_range(lock_url, 0, len(mine) + 1) != mine:
        _refuse(url, lock_url, _lock_holder(lock_url))
    try:
        yield
    except BaseException as error:
        # What ended the run is what the user needs to read; a lock it cannot remove is
        # left for the next run here to take over. Where the store itself stopped
        # answering, asking it again would only spend another round of retries.
        if not isinstance(error, StoreUnusable):
            with suppress(StoreError):
                _release(lock_url, mine)
        raise
    _release(lock_url, mine)


def _release(lock_url: str, mine: bytes) -> None:
    try:
        if read_range(lock_url, 0, len(mine) + 1) == mine:
            delete(lock_url)
    except FileNotFoundError:
        pass


def _this_process() -> dict:
    return {
        "host": socket.gethostname(),
        "namespace": _pid_namespace(),
        "pid": os.getpid(),
        "command": _command(),
        "started": _start_ticks(os.getpid()),
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
        "token": uuid.uuid4().hex,
    }


def _lock_holder(lock_url: str) -> dict | None:
    """The lock's holder as it wrote itself down; None when gone, unreadable, or larger
    than any lock a writer leaves (read no further)."""
    try:
        data = read_range(lock_url, 0, _LOCK_BYTES + 1)
        holder = json.loads(data) if len(data) <= _LOCK_BYTES else None
    except (FileNotFoundError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _left_here_by_the_dead(holder: dict) -> bool:
    """Whether the lock was taken on this machine by a process that no longer runs
    (a pid reused since has another start time)."""
    if holder.get("host") != socket.gethostname() or holder.get("namespace") != _pid_namespace():
        return False
    pid = holder.get("pid")
    return not isinstance(pid, int) or _start_ticks(pid) != holder.get("started")


def _holder_text(holder: dict) -> str:
    command = holder.get("command")
    return (
        f"host {holder.get('host')}, pid {holder.get('pid')}"
        + (f" ({_one_line(command)})" if isinstance(command, str) else "")
        + f", since {holder.get('since')}"
    )


def _refuse(url: str, lock_url: str, holder: dict | None) -> None:
    who = _holder_text(holder) if holder else "a holder that left no name"
    raise DatasetError(
        f"another rainbench command is writing to {url} ({who}); wait for it to finish. "
        f"If it was killed, run it again on that host to resume, or delete {lock_url}"
    )


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _start_ticks(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot); None when it does not run."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def open_dataset(location: str | os.PathLike) -> Dataset:
    """The dataset at `location` for reading: a local folder as it is, or a URL's local
    view with dataset.json and the manifests fetched afresh (shards stay in the store)."""
    if not is_url(location):
        return Dataset(Path(location))
    dataset = Dataset(mirror_dir(str(location), "read"))
    dataset.pull()
    return dataset


def open_for_writing(location: str | os.PathLike) -> Dataset:
    """The dataset at `location` for a writer: a local folder, or a URL's local state
    folder (its lock, an ingest's journal and unpublished shards), refreshed from the
    store by the writer under its lock (`Dataset.pull`)."""
    if not is_url(location):
        return Dataset(Path(location))
    return Dataset(mirror_dir(str(location), "write"))


@contextmanager
def writing(location: str | os.PathLike, must_exist: bool = True) -> Iterator[Dataset]:
    """The dataset at `location` (a folder or a URL) under its writer's lock; a store's
    mirror refreshed under that lock. With `must_exist`, a location that holds no
    dataset is refused, a local one before the lock, which would make the folder."""
    dataset = open_for_writing(location)
    if must_exist and dataset.url is None:
        dataset.read_info()
    with dataset.lock():
        dataset.pull()
        if must_exist:
            dataset.read_info()
        yield dataset


def new_run_id() -> str:
    """A sortable, unique id for one run of a command that writes to a dataset."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]


def initial_info(name: str, options: dict) -> dict:
    """dataset.json of a new, empty dataset."""
    now = datetime.now(UTC).isoformat()
    return {
        "name": "".join(c if 32 <= ord(c) != 127 else "_" for c in name),  # one line of text
        "schema_version": SCHEMA_VERSION,
        "created_at": now,
        "updated_at": now,
        "tool": {"name": "rainbench", "version": __version__},
        "options": options,
        "counts": {"samples": 0, "shards": 0, "bytes": 0, "splits": {}, "layers": {}},
        "runs": [],
    }
