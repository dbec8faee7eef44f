"""Reading a file from a raw folder nobody vouches for: only regular files are opened,
a read never goes past the size the open file reports, and every file name becomes
text that can be stored (Parquet strings are UTF-8) and turned back into the name.
"""

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from rainbench.capture.reject import CaptureRejected, Reason
from rainbench.errors import first_line
from rainbench.store import StoreError, is_url, read_bytes

# A name's bytes that are not UTF-8 reach Python as surrogates U+DC80–U+DCFF
# (surrogateescape). They are stored as `\xHH`; a backslash that would read as the
# start of such an escape, or of `\\`, is doubled, so the text maps back to one name.
_UNDECODABLE = re.compile("[\udc80-\udcff]")
_LOOKS_ESCAPED = re.compile(r"\\(?=\\|x[89a-fA-F][0-9a-fA-F]|[\udc80-\udcff])")
_ESCAPE = re.compile(r"\\(\\|x[89a-fA-F][0-9a-fA-F])")
_READ_CHUNK = 1 << 30  # Linux returns at most ~2 GiB from one read()


def name_text(name: str) -> str:
    """A file name as it is stored: UTF-8 names unchanged (unless a backslash in them
    reads as an escape), undecodable bytes as `\\xHH`."""
    name = _LOOKS_ESCAPED.sub(r"\\\\", name)
    return _UNDECODABLE.sub(lambda m: f"\\x{ord(m.group()) - 0xDC00:02x}", name)


def name_on_disk(text: str) -> str:
    """The name `name_text` stored, as Python names it on disk (surrogateescape)."""

    def unescape(match: re.Match) -> str:
        escaped = match.group(1)
        return "\\" if escaped == "\\" else chr(0xDC00 + int(escaped[1:], 16))

    return _ESCAPE.sub(unescape, text)


@dataclass(frozen=True)
class SourceFile:
    root: str  # absolute ingest root, POSIX, as `name_text` stores it
    path: str  # relative to root, POSIX, as `name_text` stores it
    size: int
    mtime_ns: int
    inode: int = 0  # 0 where there is none to know (an object in a store)

    @property
    def absolute(self) -> Path:
        return Path(name_on_disk(self.root)) / name_on_disk(self.path)


def read_capture(source: SourceFile) -> bytes:
    """The bytes of `source`, which must still have the size the scan found; a symlink
    is followed only to a regular file inside the ingest root. A root that is a URL
    (`s3://bucket/raw`) is read from its object store."""
    if is_url(source.root):
        return _read_object(source)
    return read_regular(source.absolute, source.size, Path(name_on_disk(source.root)))


def _read_object(source: SourceFile) -> bytes:
    url = f"{name_on_disk(source.root)}/{name_on_disk(source.path)}"
    try:
        data = read_bytes(url)
    except (OSError, StoreError) as error:
        raise CaptureRejected(Reason.UNREADABLE, f"cannot read: {first_line(error)}") from None
    if len(data) != source.size:
        raise CaptureRejected(
            Reason.CHANGED, f"the object changed size since the scan ({source.size} → {len(data)})"
        )
    return data


def read_regular(path: Path, size: int | None = None, within: Path | None = None) -> bytes:
    """Read the regular file at `path`, or refuse it with a `CaptureRejected`.

    FIFOs, sockets, devices and directories are refused from their `lstat`, never
    opened; the open itself cannot block or follow a link swapped in meanwhile
    (O_NONBLOCK, O_NOFOLLOW), and `fstat` on the open file confirms what was read.
    `size`: the size the file must have. `within`: a symlink must lead inside it.
    """
    try:
        target, found = _resolve(path, within)
        fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as error:
        raise CaptureRejected(Reason.UNREADABLE, f"cannot read: {_why(error)}") from None
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode) or _identity(opened) != _identity(found):
            raise CaptureRejected(Reason.CHANGED, "the file was replaced as it was opened")
        if size is not None and opened.st_size != size:
            raise CaptureRejected(
                Reason.CHANGED, f"the file changed size since the scan ({size} → {opened.st_size})"
            )
        return _read_exactly(fd, opened.st_size)
    except OSError as error:
        raise CaptureRejected(Reason.UNREADABLE, f"cannot read: {_why(error)}") from None
    finally:
        os.close(fd)


def _resolve(path: Path, within: Path | None) -> tuple[str, os.stat_result]:
    """The regular file `path` names (itself, or a symlink's final target) and its stat."""
    found = os.lstat(path)
    target = os.fspath(path)
    if stat.S_ISLNK(found.st_mode):
        target = os.path.realpath(path, strict=True)  # OSError for a loop or a dangling link
        if within is not None:
            root = os.path.realpath(within)
            if os.path.commonpath([root, target]) != root:
                raise CaptureRejected(
                    Reason.LINK_OUTSIDE,
                    f"a symlink leading outside the ingest root (to {name_text(target)})",
                )
        found = os.stat(target)
        if not stat.S_ISREG(found.st_mode):
            raise CaptureRejected(
                Reason.NOT_A_FILE, f"not a regular file: a symlink to {_kind(found.st_mode)}"
            )
    elif not stat.S_ISREG(found.st_mode):
        raise CaptureRejected(Reason.NOT_A_FILE, f"not a regular file: {_kind(found.st_mode)}")
    return target, found


def _read_exactly(fd: int, size: int) -> bytes:
    parts = []
    left = size
    try:
        while left:
            part = os.read(fd, min(left, _READ_CHUNK))
            if not part:
                raise CaptureRejected(Reason.CHANGED, "the file shrank while being read")
            parts.append(part)
            left -= len(part)
        data = b"".join(parts)
    except MemoryError:
        raise CaptureRejected(
            Reason.UNREADABLE, f"cannot read: too large to hold in memory ({size} bytes)"
        ) from None
    if os.read(fd, 1):
        raise CaptureRejected(Reason.CHANGED, "the file grew while being read")
    return data


def _identity(found: os.stat_result) -> tuple[int, int]:
    return found.st_dev, found.st_ino


def _kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    )
    return next((name for test, name in kinds if test(mode)), "a special file")


def _why(error: OSError) -> str:
    return error.strerror or str(error)
