"""Reading a file from a raw folder nobody vouches for: only regular files are opened,
a read never goes past the size the open file reports, and every file name becomes
text that can be stored (Parquet strings are UTF-8) and turned back into the name.
A capture is opened, not read: a video of several GB is read in pieces (`CaptureFile`).
"""

import bisect
import io
import os
import re
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rainbench.capture.reject import CaptureRejected, Reason
from rainbench.errors import first_line
from rainbench.files import leads_inside
from rainbench.store import STREAM_BLOCK, StoreError, is_url, open_stream, unusable

# A name's bytes that are not UTF-8 reach Python as surrogates U+DC80–U+DCFF
# (surrogateescape). They are stored as `\xHH`; a backslash that would read as the
# start of such an escape, or of `\\`, is doubled, so the text maps back to one name.
_UNDECODABLE = re.compile("[\udc80-\udcff]")
_LOOKS_ESCAPED = re.compile(r"\\(?=\\|x[89a-fA-F][0-9a-fA-F]|[\udc80-\udcff])")
_ESCAPE = re.compile(r"\\(\\|x[89a-fA-F][0-9a-fA-F])")
_READ_CHUNK = 1 << 30  # Linux returns at most ~2 GiB from one read()
_WINDOW = 64 << 10  # what a small read of a CaptureFile fetches and keeps
# A still is read whole to be decoded, so its file is bounded by its pixels before it is
# read: 16 bytes a pixel (four 32-bit float channels, uncompressed; a 16-bit RGB TIFF
# takes 6, a camera RAW 1 to 2, JPEG and HEIF under 1) and 16 MiB besides for what a
# picture carries beyond its pixels (EXIF, XMP, ICC profiles, a RAW's previews). At the
# 250 MP cap that is 4 GB: a 50 MP 16-bit TIFF (300 MB) or a 100 MB RAW is far inside it,
# a file of tens of GB named .jpg is refused unread.
_STILL_BYTES_PER_PIXEL = 16
_STILL_EXTRA_BYTES = 16 << 20


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
    """The bytes of `source`, which must still have the size the scan found; see
    `open_capture`."""
    with open_capture(source) as capture:
        return capture.read_all()


def open_capture(source: SourceFile) -> "CaptureFile":
    """`source` opened for reading, still of the size the scan found; a symlink is followed
    only to a regular file inside the ingest root. A root that is a URL (`s3://bucket/raw`)
    is read from its object store into a temporary file, never into memory."""
    if is_url(source.root):
        return _spool_object(source)
    return open_regular(source.absolute, source.size, Path(name_on_disk(source.root)))


def _spool_object(source: SourceFile) -> "CaptureFile":
    url = f"{name_on_disk(source.root)}/{name_on_disk(source.path)}"
    spool = tempfile.TemporaryFile()  # noqa: SIM115 - the CaptureFile closes it
    try:
        with open_stream(url) as stream:
            while chunk := stream.read(STREAM_BLOCK):
                spool.write(chunk)
        spool.flush()
    except Exception as error:
        spool.close()
        # A store that refuses this process (or that it cannot ask) ends the ingest: the
        # object is not to blame, and every other would be rejected the same way.
        if (barred := unusable(url, error)) is not None:
            raise barred from None
        if isinstance(error, (OSError, StoreError)):
            raise CaptureRejected(Reason.UNREADABLE, f"cannot read: {first_line(error)}") from None
        raise
    if (read := spool.tell()) != source.size:
        spool.close()
        raise CaptureRejected(
            Reason.CHANGED, f"the object changed size since the scan ({source.size} → {read})"
        )
    fd = os.dup(spool.fileno())
    spool.close()  # the file lives on, unnamed, while `fd` is open
    return CaptureFile(fd, source.size)


def max_still_bytes(max_pixels: int) -> int:
    """The most bytes a still of at most `max_pixels` is read whole at."""
    return _STILL_BYTES_PER_PIXEL * max_pixels + _STILL_EXTRA_BYTES


def check_still_size(size: int, max_pixels: int) -> None:
    """Refuse, before it is read, a still of `size` bytes larger than any picture of at
    most `max_pixels` is (`max_still_bytes`)."""
    if size > max_still_bytes(max_pixels):
        raise CaptureRejected(
            Reason.TOO_MANY_PIXELS,
            f"a still of {size} bytes, more than a picture of {max_pixels} pixels takes "
            f"({_STILL_BYTES_PER_PIXEL} bytes a pixel, {_STILL_EXTRA_BYTES >> 20} MiB besides); "
            "not read",
        )


def read_regular(
    path: Path, size: int | None = None, within: Path | None = None, max_pixels: int | None = None
) -> bytes:
    """The bytes of the regular file at `path` (see `open_regular`); with `max_pixels`, a
    still's, refused unread when larger than a picture of that many pixels takes
    (`check_still_size`)."""
    with open_regular(path, size, within) as opened:
        if max_pixels is not None:
            check_still_size(opened.size, max_pixels)
        return opened.read_all()


def open_regular(path: Path, size: int | None = None, within: Path | None = None) -> "CaptureFile":
    """Open the regular file at `path`, or refuse it with a `CaptureRejected`.

    FIFOs, sockets, devices and directories are refused from their `lstat`, never
    opened; the open itself cannot block or follow a link swapped in meanwhile
    (O_NONBLOCK, O_NOFOLLOW), and `fstat` on the open file confirms what is read.
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
        if within is not None:
            _check_inside(path, opened, within)
    except OSError as error:
        os.close(fd)
        raise CaptureRejected(Reason.UNREADABLE, f"cannot read: {_why(error)}") from None
    except CaptureRejected:
        os.close(fd)
        raise
    return CaptureFile(fd, opened.st_size)


class CaptureFile(io.RawIOBase):
    """An open capture file that is never read whole unless asked (`read_all`): a video
    of several GB is walked by its headers (`capture[a:b]`, `capture[i]`, `find`, as
    on bytes), and decoded, hashed and copied into a shard as a seekable binary file.

    `edited` gives a view of the same file in which same-length edits (offset,
    replacement) are made to every byte read: a video's location removed without a
    copy of it. A read that finds the file shorter than its size, or a file whose size
    or time changed while it was read (`check_unchanged`), is refused as `changed`.
    """

    def __init__(
        self,
        fd: int,
        size: int,
        edits: Sequence[tuple[int, bytes]] = (),
        opened: tuple[int, int] | None = None,
    ):
        super().__init__()
        self._fd, self.size, self._position = fd, size, 0
        self._owner = opened is None  # a view made by `edited` leaves the descriptor be
        self.edits = _disjoint(edits)
        self._starts = [at for at, _ in self.edits]
        self._cached: tuple[int, bytes] = (0, b"")  # the last window read for small reads
        self._whole: bytes | None = None
        if opened is None:
            found = os.fstat(fd)
            opened = (found.st_size, found.st_mtime_ns)
        self._opened = opened

    def edited(self, edits: Sequence[tuple[int, bytes]]) -> "CaptureFile":
        """A view of this file with `edits` made (its own position; usable while this
        file is open); this file itself when there are none."""
        return CaptureFile(self._fd, self.size, edits, self._opened) if edits else self

    def view(self) -> "CaptureFile":
        """Another file object over this file's bytes, at its start: two readers (two
        demuxers) never move each other's position."""
        return CaptureFile(self._fd, self.size, self.edits, self._opened)

    def close(self) -> None:
        if not self.closed and self._owner:
            os.close(self._fd)
        super().close()

    def pread(self, offset: int, length: int) -> bytes:
        """`length` bytes from `offset` (fewer only at the end of the file), edited."""
        length = max(0, min(length, self.size - offset))
        parts, at, left = [], offset, length
        try:
            while left:
                part = os.pread(self._fd, min(left, _READ_CHUNK), at)
                if not part:
                    raise CaptureRejected(Reason.CHANGED, "the file shrank while being read")
                parts.append(part)
                at += len(part)
                left -= len(part)
        except OSError as error:
            raise CaptureRejected(Reason.UNREADABLE, f"cannot read: {_why(error)}") from None
        except MemoryError:  # a container's metadata span of GBs, on a small worker
            raise CaptureRejected(
                Reason.UNREADABLE, f"cannot read: too large to hold in memory ({length} bytes)"
            ) from None
        return self.edit(parts[0] if len(parts) == 1 else b"".join(parts), offset)

    def read_all(self) -> bytes:
        """The whole file (a still: `check_still_size` bounds it), read once and kept, so a
        file read ahead on a thread is not read again when it is probed."""
        if self._whole is None:
            try:
                self._whole = self.pread(0, self.size) + self._beyond_end()
            except MemoryError:
                raise CaptureRejected(
                    Reason.UNREADABLE,
                    f"cannot read: too large to hold in memory ({self.size} bytes)",
                ) from None
        return self._whole

    def check_unchanged(self) -> None:
        """Refuse the file if it was written to since it was opened: what was read of it
        in several passes (parsed, decoded, hashed) may then not be one file."""
        self._beyond_end()
        try:
            now = os.fstat(self._fd)
        except OSError as error:
            raise CaptureRejected(Reason.UNREADABLE, f"cannot read: {_why(error)}") from None
        if (now.st_size, now.st_mtime_ns) != self._opened:
            raise CaptureRejected(Reason.CHANGED, "the file changed while being read")

    def _beyond_end(self) -> bytes:
        try:
            grown = os.pread(self._fd, 1, self.size)
        except OSError as error:
            raise CaptureRejected(Reason.UNREADABLE, f"cannot read: {_why(error)}") from None
        if grown:
            raise CaptureRejected(Reason.CHANGED, "the file grew while being read")
        return b""

    def edit(self, data: bytes, offset: int) -> bytes:
        """`data`, the file's bytes at `offset` as read, with this view's edits made."""
        # The edits are disjoint and sorted: those that can touch the data lie between the
        # last one starting at or before it and the first one starting after it.
        first = max(bisect.bisect_right(self._starts, offset) - 1, 0)
        last = bisect.bisect_left(self._starts, offset + len(data))
        touched = [
            self.edits[index]
            for index in range(first, last)
            if self.edits[index][0] + len(self.edits[index][1]) > offset
        ]
        return apply_edits(data, offset, touched) if touched else data

    # Bytes-like access, for parsers walking a container's headers: small reads come
    # from one cached window, so a walk costs a system call per window, not per field.
    def __len__(self) -> int:
        return self.size

    def __getitem__(self, key: int | slice) -> int | bytes:
        if isinstance(key, int):
            if not -self.size <= key < self.size:
                raise IndexError("capture index out of range")
            return self._small(key % self.size, 1)[0]
        start, stop, step = key.indices(self.size)
        if step != 1:
            raise ValueError("a capture is sliced without a step")
        return self._small(start, stop - start) if stop > start else b""

    def find(self, sub: bytes, start: int = 0, end: int | None = None) -> int:
        start, end, _ = slice(start, end).indices(self.size)
        found = self[start:end].find(sub)
        return found if found < 0 else start + found

    def _small(self, offset: int, length: int) -> bytes:
        if length > _WINDOW:
            return self.pread(offset, length)
        at, window = self._cached
        if not (at <= offset and offset + length <= at + len(window)):
            at, window = offset, self.pread(offset, _WINDOW)
            self._cached = at, window
        return window[offset - at : offset - at + length]

    # A seekable binary file, for PyAV, hashing and the shard writer.
    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.pread(self._position, len(buffer))
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._position = base + offset
        return self._position

    def tell(self) -> int:
        return self._position


def apply_edits(data: bytes, offset: int, edits: Sequence[tuple[int, bytes]]) -> bytes:
    """`data`, the bytes at `offset` of a file, with the file's same-length `edits`
    (offset, replacement) made where they fall in it, in order (a later one wins)."""
    buffer = None
    for at, replacement in edits:
        low, high = max(at, offset), min(at + len(replacement), offset + len(data))
        if low < high:
            buffer = bytearray(data) if buffer is None else buffer
            buffer[low - offset : high - offset] = replacement[low - at : high - at]
    return data if buffer is None else bytes(buffer)


def _disjoint(edits: Sequence[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """`edits` as edits sorted by offset that do not overlap, with the effect of making
    them in their order: edits that overlap become one."""
    groups: list[tuple[int, int, list[int]]] = []  # start, stop, the edits' positions
    for number in sorted(range(len(edits)), key=lambda n: edits[n][0]):
        at, replacement = edits[number]
        stop = at + len(replacement)
        if groups and at < groups[-1][1]:
            start, high, members = groups[-1]
            groups[-1] = (start, max(high, stop), [*members, number])
        elif replacement:
            groups.append((at, stop, [number]))
    return [
        edits[members[0]]
        if len(members) == 1
        else (start, apply_edits(bytes(stop - start), start, [edits[n] for n in sorted(members)]))
        for start, stop, members in groups
    ]


def _resolve(path: Path, within: Path | None) -> tuple[str, os.stat_result]:
    """The regular file `path` names (itself, or a symlink's final target) and its stat."""
    found = os.lstat(path)
    target = os.fspath(path)
    if stat.S_ISLNK(found.st_mode):
        target = os.path.realpath(path, strict=True)  # OSError for a loop or a dangling link
        if within is not None and not leads_inside(Path(target), within):
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


def _check_inside(path: Path, opened: os.stat_result, within: Path) -> None:
    """Refuse the open file unless `path` still leads to it inside `within`. O_NOFOLLOW
    guards only the last part of a path: a folder on it swapped for a link since the
    scan (a raw folder being written) would lead the open anywhere. Checked on the open
    file, before any byte of it is read, so no swap before or after the open escapes."""
    where = os.path.realpath(path, strict=True)
    if not leads_inside(Path(where), within):
        raise CaptureRejected(
            Reason.LINK_OUTSIDE,
            f"a link on its path leads outside the ingest root (to {name_text(where)}); not read",
        )
    if _identity(os.stat(where)) != _identity(opened):
        raise CaptureRejected(Reason.CHANGED, "the file was replaced as it was opened")


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
