"""Reading a dataset's shards: the one way a reader opens a shard and takes a member
out of it, from a folder or, by range requests, from an object store. What a dataset
says is untrusted: a shard must lie inside the dataset, a member must be a regular
file no larger than the manifest allows, and a picture's header must not declare more
pixels than the manifest gives before one is decoded.
"""

import hashlib
import os
import re
import shutil
import tarfile
import tempfile
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

from rainbench.capture.decode import (
    MAX_PIXELS_ENV,
    PixelCapExceeded,
    header_size,
    load_stored,
    megapixels,
    readers_max_pixels,
)
from rainbench.capture.formats import Format
from rainbench.capture.orientation import turn_upright
from rainbench.capture.reject import CaptureRejected
from rainbench.capture.source import CaptureFile
from rainbench.errors import first_line
from rainbench.files import leads_inside, regular_file, stream_sha256
from rainbench.shards.dataset import DatasetError
from rainbench.shards.manifest import SHARD
from rainbench.store import STREAM_BLOCK, mirrored_url, open_ranged, open_stream, unusable

# A member whose size the manifest does not give (a RAW's preview, a pair's PNGs) may
# hold its pixels at 8 bytes each (16-bit RGBA, uncompressed) and this much metadata.
_BYTES_PER_PIXEL = 8
_METADATA_BYTES = 16 << 20
_REGULAR = (tarfile.REGTYPE, tarfile.AREGTYPE)
_KINDS = {
    tarfile.SYMTYPE: "symbolic link",
    tarfile.LNKTYPE: "hard link",
    tarfile.CHRTYPE: "device",
    tarfile.BLKTYPE: "device",
    tarfile.FIFOTYPE: "fifo",
    tarfile.DIRTYPE: "directory",
}
# What tarfile raises on a damaged or forged shard: besides its own errors, a header's
# number it cannot use (a GNU sparse 1.0 map that is not one, a PAX size no seek can
# reach) surfaces as ValueError or OverflowError.
TAR_ERRORS = (OSError, tarfile.TarError, EOFError, ValueError, OverflowError)
# Each open shard's members by name. tarfile's own `getmember` scans the whole member
# list for every name, so reading all of a shard's N members costs N² comparisons: for
# a shard of 30 000 small captures, longer than reading them.
_NAMED: "weakref.WeakKeyDictionary[tarfile.TarFile, dict[str, tarfile.TarInfo]]" = (
    weakref.WeakKeyDictionary()
)
# Each open shard read from a store by its URL there: a failure reading one of its
# members may be the store refusing this process (`_reading`), which no member is to blame for.
_URLS: "weakref.WeakKeyDictionary[tarfile.TarFile, str]" = weakref.WeakKeyDictionary()


class ShardError(DatasetError):
    """A shard or member is missing, damaged or not what the manifest says; the message
    names it."""


def shard_path(root: Path, shard: str) -> Path:
    """The file of `shard` (a path from a manifest), refused unless it is a shard path
    and lies inside the dataset at `root` once links are resolved."""
    if not re.fullmatch(SHARD, shard):
        raise ShardError(f"{shard!r} is not a shard path; refused")
    path = root / shard
    if not leads_inside(path, root):
        raise ShardError(f"shard {shard} leads outside {root}; refused")
    return path


def shard_url(root: Path, shard: str) -> str | None:
    """Where `shard` lies in the store when `root` mirrors one (None for a local
    dataset); refused unless it is a shard path, whose pattern keeps it under the URL."""
    url = mirrored_url(Path(root))
    if url is None:
        return None
    if not re.fullmatch(SHARD, shard):
        raise ShardError(f"{shard!r} is not a shard path; refused")
    return f"{url}/{shard}"


def open_shard_file(root: Path, shard: str, stream: bool = False):
    """The shard's bytes as a binary file: the local file, or the store's object read by
    range requests (`stream`: in large pieces, for one pass over all of it)."""
    url = shard_url(root, shard)
    try:
        if url is None:
            return open(regular_file(shard_path(root, shard)), "rb")  # the caller closes it
        return open_stream(url) if stream else open_ranged(url)
    except OSError as error:
        # A store's client says no more of a missing object than its key.
        missing = url is not None and isinstance(error, FileNotFoundError)
        why = "no such object in the store" if missing else first_line(error)
        raise ShardError(f"cannot read shard {shard}: {why}") from None


def open_shard(root: Path, shard: str) -> tarfile.TarFile:
    """The shard as an uncompressed tar (nothing in it is inflated); see `shard_path`.
    From a store, only the headers and the members read are fetched."""
    url = shard_url(root, shard)
    with _reading(url, f"cannot read shard {shard}"):
        if url is None:
            return tarfile.open(regular_file(shard_path(root, shard)), "r:")
        # The store's file object holds no descriptor: it goes with the tar.
        tar = tarfile.open(fileobj=open_shard_file(root, shard), mode="r:")  # noqa: SIM115
    _URLS[tar] = url
    return tar


@contextmanager
def _reading(url: str | None, what: str) -> Iterator[None]:
    """A failure reading a shard, from the store at `url` (None: a local file), as one
    line: the store's refusal of this process as `store.unusable` says it (check the
    credentials), else one of `TAR_ERRORS` as a ShardError saying `what`."""
    try:
        yield
    except Exception as error:
        if url is not None and (barred := unusable(url, error)) is not None:
            raise barred from None
        if isinstance(error, TAR_ERRORS):
            raise ShardError(f"{what}: {tar_failure(error)}") from None
        raise


def tar_failure(error: BaseException) -> str:
    """What a failure from `TAR_ERRORS` says, in one line. A ValueError's message may
    quote a header's bytes (hundreds of them, escaped): it is named, not quoted."""
    if isinstance(error, ValueError | OverflowError):
        return f"a damaged tar header ({type(error).__name__})"
    return first_line(error)


def read_member(
    tar: tarfile.TarFile, shard: str, name: str, limit: int, sha256: str | None = None
) -> bytes:
    """The bytes of member `name`: a regular file of at most `limit` bytes, and with
    `sha256` (the manifest's), those bytes and no others."""
    where = f"{shard}:{name}"
    handle, size = _open_member(tar, shard, name, limit)
    with _reading(_URLS.get(tar), f"{where}: cannot read it"):
        data = handle.read(size)
    if len(data) != size:
        raise ShardError(f"{where}: cut short (run rainbench verify)")
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise ShardError(f"{where}: its bytes are not the manifest's (run rainbench verify)")
    return data


# The member last copied from a store in this process, by (shard URL, name, sha256): the
# windows of one video, read one after another, copy it once, not once each.
_COPIED: dict[tuple[str, str, str], BinaryIO] = {}


def open_member(
    tar: tarfile.TarFile,
    root: Path,
    shard: str,
    name: str,
    limit: int,
    sha256: str | None = None,
) -> BinaryIO:
    """Member `name`, a regular file of at most `limit` bytes, as a seekable binary file
    (a video of several GB is never held whole): read where it lies in a local shard,
    usable while `tar` is open; from a store, copied first in large pieces to a
    temporary file, as a demuxer's many small reads would each be a request. With
    `sha256` (the manifest's), its bytes are those or it is refused (a video damaged in
    place may still decode), and the copy is kept until another member is copied, and
    opened again by the next call for the same bytes. A member cut short reads short:
    its reader refuses it."""
    handle, size = _open_member(tar, shard, name, limit)
    where, url = f"{shard}:{name}", shard_url(root, shard)
    if url is None:
        return _checked(handle, where, sha256, url)
    if sha256 is None:
        return _copy(handle, size, url, where)
    key = (url, name, sha256)
    if key not in _COPIED:
        for copy in _COPIED.values():
            copy.close()
        _COPIED.clear()
        _COPIED[key] = _checked(_copy(handle, size, url, where), where, sha256, url)
    # Its own descriptor and position: the kept copy stays open when the caller closes.
    return CaptureFile(os.dup(_COPIED[key].fileno()), size)


def _checked(handle: BinaryIO, where: str, sha256: str | None, url: str | None) -> BinaryIO:
    """`handle` rewound, once its bytes are found to be `sha256`'s (None: unchecked);
    else closed, and refused as `read_member` refuses other bytes."""
    if sha256 is None:
        return handle
    try:
        with _reading(url, f"{where}: cannot read it"):
            found = stream_sha256(handle, 1 << 20)  # a video is never held whole
            handle.seek(0)
    except BaseException:
        handle.close()
        raise
    if found != sha256:
        handle.close()
        raise ShardError(f"{where}: its bytes are not the manifest's (run rainbench verify)")
    return handle


def _copy(handle: BinaryIO, size: int, url: str, where: str) -> BinaryIO:
    """A store's member (`where`, in the shard at `url`) in a temporary file, copied in
    large pieces."""
    spool = tempfile.TemporaryFile()  # noqa: SIM115 - the caller closes it
    try:
        with _reading(url, f"{where}: cannot read it"):
            shutil.copyfileobj(handle, spool, STREAM_BLOCK)
    except BaseException:
        spool.close()
        raise
    if spool.tell() != size:
        spool.close()
        raise ShardError(f"{where}: cut short (run rainbench verify)")
    spool.seek(0)
    return spool


def _open_member(tar: tarfile.TarFile, shard: str, name: str, limit: int) -> tuple[BinaryIO, int]:
    where, url = f"{shard}:{name}", _URLS.get(tar)
    try:
        with _reading(url, f"cannot read shard {shard}"):  # the headers, read once
            info = find_member(tar, name)
    except KeyError:
        raise ShardError(f"{where}: not in the shard (run rainbench verify)") from None
    if why := refused(info):
        raise ShardError(f"{where}: {why}")
    if info.size > limit:
        raise ShardError(f"{where}: {info.size} bytes, more than the {limit} allowed; refused")
    with _reading(url, f"{where}: cannot read it"):
        return tar.extractfile(info), info.size  # type: ignore[return-value]


def find_member(tar: tarfile.TarFile, name: str) -> tarfile.TarInfo:
    """`tar.getmember(name)` from an index made once per shard: the last member of that
    name, as tarfile takes it; KeyError when there is none."""
    named = _NAMED.get(tar)
    if named is None:
        named = _NAMED[tar] = {member.name: member for member in tar.getmembers()}
    return named[name.rstrip("/")]


def refused(info: tarfile.TarInfo) -> str | None:
    """Why a member is refused unread, or None: it is not a regular file (`irregular`),
    or its size is negative, which tarfile takes as given from a forged PAX record and
    no read accepts. (A size past the end of the shard, tarfile refuses itself.)"""
    if info.size < 0:
        return f"its header gives a negative size ({info.size}); refused (run rainbench verify)"
    return irregular(info)


def irregular(info: tarfile.TarInfo) -> str | None:
    """Why a member is refused unread, or None for a regular file: a link stands for
    another member (or a file outside), a sparse member inflates to a size nothing
    bounds, a device is no data at all."""
    if info.type in _REGULAR and info.sparse is None:
        return None
    kind = "sparse file" if info.sparse is not None else _KINDS.get(info.type, "special file")
    return f"a {kind}, not a regular file; refused"


def pixel_limit(width: int | None, height: int | None) -> int:
    """The most pixels a picture of the manifest's `width` × `height` may declare: no
    more than the readers' cap either (`readers_max_pixels`)."""
    cap = readers_max_pixels()
    if width and height and width > 0 and height > 0:
        return min(width * height, cap)
    return cap


def size_limit(stored_bytes: int | None, width: int | None, height: int | None) -> int:
    """The most bytes a member may hold: the manifest's `bytes` (a capture as stored), or
    else what a picture of its size can take."""
    if stored_bytes is not None and stored_bytes >= 0:
        return stored_bytes
    return pixel_limit(width, height) * _BYTES_PER_PIXEL + _METADATA_BYTES


def too_many_pixels(where: str, width: int | None, height: int | None) -> ShardError:
    """A member refused for declaring more pixels than `pixel_limit` lets a reader take."""
    return ShardError(
        f"{where}: its header declares more pixels than the manifest's {width}×{height} "
        f"{_or_the_cap()}; not decoded"
    )


def _or_the_cap() -> str:
    """The other bound of a picture than its manifest row's size, and what raises it."""
    return f"(or the {megapixels(readers_max_pixels())} cap readers keep: {MAX_PIXELS_ENV})"


def decode_picture(
    data: bytes, fmt: Format, where: str, width: int | None, height: int | None
) -> tuple[Image.Image, int]:
    """`load_stored`, once the header declares no more pixels than the manifest's size."""
    try:
        return load_stored(data, fmt, pixel_limit(width, height))
    except PixelCapExceeded:
        raise too_many_pixels(where, width, height) from None
    except CaptureRejected as rejected:  # a library it needs is not installed (HEIC's)
        raise ShardError(f"{where}: {rejected.message}") from None
    except UnidentifiedImageError:  # its message names a memory address: not reproducible
        raise ShardError(f"{where}: does not decode: no readable {fmt.name} header") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ShardError(f"{where}: does not decode: {first_line(error)}") from None


def read_upright(
    tar: tarfile.TarFile,
    shard: str,
    name: str,
    fmt: Format,
    width: int | None,
    height: int | None,
    stored_bytes: int | None = None,
    sha256: str | None = None,
) -> Image.Image:
    """Member `name` decoded as `fmt` and turned upright, read within the manifest row's
    sizes: `stored_bytes` (a capture as stored) and `width` × `height`; with `sha256`,
    only if its bytes are the manifest's."""
    data = read_member(tar, shard, name, size_limit(stored_bytes, width, height), sha256)
    image, orientation = decode_picture(data, fmt, f"{shard}:{name}", width, height)
    return turn_upright(image, orientation)


def check_jpeg(data: bytes, where: str, width: int | None, height: int | None) -> None:
    """For a decoder other than Pillow's (nvJPEG): refuse a JPEG whose header (read by
    Pillow, which decodes nothing to read a JPEG's) declares too many pixels."""
    size = header_size(data)
    if size is None:
        raise ShardError(f"{where}: no readable JPEG header")
    if size[0] * size[1] > pixel_limit(width, height):
        raise ShardError(
            f"{where}: its header declares {size[0]}×{size[1]}, more pixels than the "
            f"manifest's {width}×{height} {_or_the_cap()}; not decoded"
        )
