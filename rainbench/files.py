"""Files as every stage writes and checks them: replaced atomically (a reader sees the
old file or the complete new one, never a mix, even after a power cut) and hashed.
"""

import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def write_atomic(path: Path, data: bytes, shared: bool = False) -> None:
    """Replace `path` with `data` so that readers see the old file or the new, never a mix.
    `shared`: processes that hold no lock may write it at once (a store's read view);
    each writes its own temporary file and the last rename wins."""
    with replacing(path, shared) as handle:
        handle.write(data)


@contextmanager
def replacing(path: Path, shared: bool = False) -> Iterator[BinaryIO]:
    """A file to write that replaces `path` when the block ends, as `write_atomic` does,
    for content too large to hold in memory whole first (a manifest of a million rows)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp" if shared else f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:  # disk full, interrupted: no half-written file stays behind
        tmp.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.filename == str(tmp):
            error.filename = str(path)  # the file the user named, not its temporary one
        say_where(error, path)
        raise
    fsync_dir(path.parent)


@contextmanager
def naming(path: Path) -> Iterator[None]:
    """Run the block so that an OSError it raises naming no file (a full disk, a
    file-size limit) names `path`."""
    try:
        yield
    except OSError as error:
        say_where(error, path)
        raise


def say_where(error: BaseException, path: Path) -> None:
    """Make `error` name `path` when it is an OSError that names no file: a failed write
    (a full disk, a file-size limit) says only why, and the one line the user sees must
    say where too."""
    if isinstance(error, OSError) and error.filename is None:
        error.filename = str(path)


def regular_file(path: Path) -> Path:
    """`path`, refused with an OSError unless it is a regular file once links are
    followed (a missing one is left for opening it to report): a FIFO or a device that a
    dataset names would block its reader, or never end."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return path
    if not stat.S_ISREG(mode):
        raise OSError(errno.EINVAL, "not a regular file; refused", str(path))
    return path


def leads_inside(path: Path, root: Path) -> bool:
    """Whether `path` lies inside `root` once every link in either is followed: the one
    test that a name read from a dataset, a set or a results folder leads nowhere else.
    A link loop is no error here (`os.path.realpath`, unlike `Path.resolve` before
    Python 3.13): it is judged by where it stands, and opening it then fails as any
    unreadable file does."""
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(root))


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries, so a rename in it survives a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_sha256(path: Path) -> str:
    """The hex SHA-256 of the file at `path`, read in 4 MiB pieces."""
    with open(path, "rb") as handle:
        return stream_sha256(handle)


def stream_sha256(handle: BinaryIO, piece: int = 1 << 22) -> str:
    """The hex SHA-256 of what is left to read from `handle` (a file, or an object in a
    store read as a stream), read in pieces of `piece` bytes (4 MiB)."""
    sha = hashlib.sha256()
    while chunk := handle.read(piece):
        sha.update(chunk)
    return sha.hexdigest()
