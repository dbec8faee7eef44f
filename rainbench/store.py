"""Object stores (`s3://`, `gs://`, any fsspec protocol) as places for datasets and
captures: telling a URL from a local path, the fsspec filesystem behind it, reading by
range or as a stream, copying to a file a block at a time, atomic uploads, objects made
only where none is, and the local folders that mirror a store's URL.

Credentials and endpoints come from where each store's own client looks (AWS_* and
AWS_ENDPOINT_URL, ~/.aws, GOOGLE_APPLICATION_CREDENTIALS, fsspec's configuration);
rainbench keeps no secrets. A plain path never touches this module's filesystems.
"""

import errno
import hashlib
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote

from rainbench.errors import RainbenchError, first_line
from rainbench.files import fsync_dir, leads_inside

_URL = re.compile(r"^([a-z][a-z0-9+.-]*)://", re.IGNORECASE)
_EXTRAS = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs"}
STREAM_BLOCK = 8 << 20  # what a sequential read (verify's hash) fetches at a time
VIEW_FILE = "store.json"  # in a mirror folder: the URL it mirrors
# What a refusal (403: wrong credentials, or none for this bucket) adds to the store's word.
_DENIED = (
    "check the credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or AWS_PROFILE; "
    "GOOGLE_APPLICATION_CREDENTIALS for gs://) and that they may use this bucket; with "
    "--ray the workers need them too, in the environment `ray start` ran in (docs/cluster.md)"
)


class StoreError(RainbenchError):
    """An object store cannot be reached or read; the message is one line."""


class StoreUnusable(StoreError):
    """This process cannot use the store: it refuses the credentials (403), there are
    none, or no answer comes. No object being read is to blame for it."""


def unusable(url: str, error: BaseException) -> StoreUnusable | None:
    """`error`, met reading `url`, as a `StoreUnusable` when it is of that kind: a
    refusal (a 403: s3fs raises PermissionError, gcsfs an OSError saying "Forbidden") or
    an error of S3's client itself, which s3fs passes on as it is only where no answer
    came (no credentials to sign with, an endpoint out of reach, a timeout); None for any
    other error."""
    if isinstance(error, StoreUnusable):
        return error
    client = from_store_client(error)
    no_credentials = client and type(error).__name__ == "NoCredentialsError"
    refused = isinstance(error, PermissionError) or (
        isinstance(error, OSError) and str(error).startswith("Forbidden:")
    )
    if refused or no_credentials:
        return StoreUnusable(f"{url}: {first_line(error)}; {_DENIED}")
    return StoreUnusable(f"{url}: {first_line(error)}") if client else None


def from_store_client(error: BaseException) -> bool:
    """Whether botocore (S3's client, under s3fs) raised `error`: it reports missing
    credentials and the like in its own classes, not as OSError, wherever a store is
    touched, on a Ray worker too. Known by module, so nothing imports botocore for it."""
    return any(
        kind.__module__.split(".")[0] in ("botocore", "aiobotocore") for kind in type(error).__mro__
    )


def is_url(location: object) -> bool:
    """Whether `location` names a place in an object store (`s3://…`, `gs://…`); plain
    paths and `file://` URLs stay local."""
    match = _URL.match(str(location)) if isinstance(location, str) else None
    return bool(match) and match.group(1).lower() != "file"


def local_path(location: str | os.PathLike) -> str | os.PathLike:
    """`location` with a `file://` URL turned into the path it names: `file:///data/ds`
    is `/data/ds`, as fsspec and pyarrow read it, with escapes decoded as pyarrow does
    and `Path.as_uri()` writes them (`%20`); any other location as it is. One that names
    a host (`file://data/ds`, where a slash is missing) is refused in one line."""
    match = _URL.match(location) if isinstance(location, str) else None
    if match is None or match.group(1).lower() != "file":
        return location
    path = location[match.end() :]
    if not path.startswith("/"):
        raise StoreError(f"{location}: a file:// URL names a local path: file:///ABSOLUTE/PATH")
    return Path(unquote(path))


def check_url(url: str) -> str:
    """`url` itself, refused in one line when it names no place in a store: nothing after
    `://`, or for S3 and GCS no bucket (`s3:///ds`, what `s3://$BUCKET/ds` gives while
    BUCKET is unset)."""
    scheme = _URL.match(url).group(1).lower()
    path = url[len(scheme) + 3 :]
    if scheme in _EXTRAS and not path.split("/", 1)[0]:
        raise StoreError(f"{url}: no bucket named; give {scheme}://BUCKET/PATH")
    if not path.strip("/"):
        raise StoreError(f"{url}: nothing named after {scheme}://")
    return url


def filesystem(url: str):
    """The fsspec filesystem for `url` and the path inside it."""
    try:
        import fsspec.core
    except ImportError:
        raise StoreError(_install_hint(url)) from None
    driver = _EXTRAS.get(_URL.match(url).group(1).lower())
    # No cached listings: an object replaced since (by another writer) is read as it is.
    settings = {"use_listings_cache": False} if driver else {}
    if driver == "s3fs":
        settings["session"] = _aws_session()
    try:
        fs, path = fsspec.core.url_to_fs(url, **settings)
    except ImportError:
        raise StoreError(_install_hint(url)) from None
    except ValueError as error:
        raise StoreError(f"{url}: {error}") from None
    if driver and not _reads_as_named(fs, path, url):
        raise StoreError(
            f"{url}: {driver} would read another object under this name ('::', "
            "'?versionId=' or '#N' in a key mean more to it than text); not read"
        )
    return fs, path


def _reads_as_named(fs, path: str, url: str) -> bool:
    """Whether the driver asks the store for the very object `url` names. Keys come from
    a store's listing, and any text is a key: fsspec reads `::` as a chain of
    filesystems and drops what follows it, s3fs ends a key at `?versionId=`, gcsfs may
    take `#N` for a generation; such a key would be read as another object, one outside
    the prefix listed even (`raw/::a.jpg` is `raw`)."""
    bucket, key, version = fs.split_path(path)
    return version is None and f"{bucket}/{key}".rstrip("/") == url.split("://", 1)[1].rstrip("/")


@lru_cache(maxsize=1)
def _aws_session():
    """One botocore session per process, inherited by the processes it forks (DataLoader
    workers): they find S3's service description already parsed, half a second each."""
    try:
        from aiobotocore.session import AioSession
    except ImportError:
        return None
    return AioSession()


def _install_hint(url: str) -> str:
    scheme = _URL.match(url).group(1).lower()
    package = _EXTRAS.get(scheme, f"the fsspec driver for {scheme}://")
    return f"{url}: reading {scheme}:// needs {package}: pip install 'rainbench[cluster]'"


@contextmanager
def _reporting(url: str, writing: bool = False) -> Iterator[None]:
    """A store's failure as a one-line `StoreError`; a missing object stays a
    FileNotFoundError, which callers take as "not there"."""
    try:
        yield
    except FileNotFoundError as error:
        # A missing bucket is a wrong address, not an object that is not there yet: s3fs
        # says NoSuchBucket; gcsfs names only the request, so a write is the tell (an
        # object is always there to be written, unless its bucket is not).
        if writing:
            raise StoreError(f"{url}: the bucket does not exist") from None
        if any(words in str(error) for words in ("bucket does not exist", "NoSuchBucket")):
            raise StoreError(f"{url}: {first_line(error)}") from None
        # The clients say no more than the key (s3fs) or the request: say what is missing.
        raise FileNotFoundError(errno.ENOENT, "no such object in the store", url) from None
    except OSError as error:  # a refusal says to check the credentials (`unusable`)
        raise unusable(url, error) or StoreError(f"{url}: {first_line(error)}") from None
    except ValueError as error:
        raise StoreError(f"{url}: {first_line(error)}") from None
    except Exception as error:  # S3's client's own (no credentials to sign with): no OSError
        if (barred := unusable(url, error)) is None:
            raise
        raise barred from None


def open_ranged(url: str):
    """`url` as a seekable binary file in which every read is one range request for
    exactly the bytes asked for: a tar header, a member, never the whole object."""
    return _open(url, cache_type="none")


def open_stream(url: str):
    """`url` as a binary file for one sequential pass, fetched in large pieces."""
    return _open(url, cache_type="readahead", block_size=STREAM_BLOCK)


def _open(url: str, **settings):
    fs, path = filesystem(url)
    with _reporting(url):
        return fs.open(path, "rb", **settings)


def read_bytes(url: str) -> bytes:
    fs, path = filesystem(url)
    with _reporting(url):
        return fs.cat_file(path)


def read_range(url: str, start: int, end: int) -> bytes:
    """Bytes `start` to `end` of the object at `url`: one range request, no file state,
    so threads may share it."""
    fs, path = filesystem(url)
    with _reporting(url):
        return fs.cat_file(path, start=start, end=end)


def read_at(handle, start: int, end: int) -> bytes:
    """Bytes `start` to `end` of the upload an open store file (`open_ranged`) reads: one
    range request that leaves the file's position alone, so threads may share the file.
    Where the store checks the upload on every request (S3's ETag), another upload under
    the key since the file was opened is refused (see `replaced`)."""
    return handle._fetch_range(start, end)  # fsspec's range hook, which reads go through


def replaced(error: BaseException) -> bool:
    """Whether `error`, from reading an open store file, says that the store holds
    another upload of the object than the one opened (s3fs's FileExpired: the ETag no
    longer matches). Known by name, so nothing imports s3fs for it."""
    return any(kind.__name__ == "FileExpired" for kind in type(error).__mro__)


def download(url: str, local: Path, limit: int | None = None) -> None:
    """Copy the object at `url` to `local` a block at a time (a manifest of millions of
    rows is never held whole), so that readers of `local` see the old file or the new:
    a temporary of this process's own beside it, renamed (processes that hold no lock
    may refresh one mirror at once; the last rename wins). An object larger than `limit`
    bytes is a ValueError: refused before a byte is written where the store says its
    size, else once that many bytes have come, and `local` is left as it was."""
    local.parent.mkdir(parents=True, exist_ok=True)
    tmp = local.with_name(f".{local.name}.{os.getpid()}.tmp")
    try:
        with open_stream(url) as source, open(tmp, "wb") as handle:
            said = getattr(source, "size", None) or 0  # the size the store gives, if it does
            copied = 0
            while limit is None or max(said, copied) <= limit:
                with _reporting(url):
                    block = source.read(STREAM_BLOCK)
                if not block:
                    break
                copied += len(block)
                handle.write(block)
            if limit is not None and max(said, copied) > limit:
                raise ValueError(f"larger than {limit:,} bytes")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, local)
    except BaseException:  # a store's failure, disk full, interrupted: no temporary stays
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(local.parent)


def upload(local: Path, url: str) -> None:
    """Put the file at `local` under `url`. An object store's PUT (and a multipart
    upload's completion) is atomic: readers see the whole object or none."""
    fs, path = filesystem(url)
    with _reporting(url, writing=True):
        fs.put_file(os.fspath(local), path)


def create(url: str, data: bytes) -> bool:
    """Put `data` at `url` unless an object is there already: True when this call made
    it. Exclusive where the store has conditional writes (S3's If-None-Match, GCS's
    generation match). A store that ignores the condition is asked first, so only two
    writers within one round trip of each other could both pass."""
    fs, path = filesystem(url)
    with _reporting(url, writing=True):
        try:
            if fs.exists(path):
                return False
            fs.pipe_file(path, data, mode="create")
        except FileExistsError:
            return False
    return True


def delete(url: str) -> None:
    """Remove the object at `url`; one already gone is no error."""
    fs, path = filesystem(url)
    try:
        with _reporting(url):
            fs.rm_file(path)
    except FileNotFoundError:
        pass


def listing(url: str) -> dict[str, tuple[int, int]]:
    """Every object under `url`: its path relative to `url` → (size, mtime in ns), as
    the store's listing gives them (no object is opened). A key ending in `/` is a
    folder marker (what a console's "Create folder" makes), no file: left out, as
    fsspec's drivers would read another key under its name (the one without the `/`)."""
    fs, path = filesystem(url)
    root = path.rstrip("/")
    try:
        with _reporting(url):
            found = fs.find(root, detail=True)
    except FileNotFoundError:
        return {}
    objects = {}
    for name, info in found.items():
        if info.get("type") == "directory" or name.endswith("/"):
            continue
        if not name.startswith(root + "/"):
            continue
        objects[name[len(root) + 1 :]] = (int(info.get("size") or 0), _mtime_ns(info))
    return objects


def _mtime_ns(info: dict) -> int:
    """Modification time from a listing: S3's LastModified, GCS's updated, or mtime."""
    value = info.get("LastModified") or info.get("updated") or info.get("mtime")
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, datetime):
        return int(value.timestamp()) * 1_000_000_000 + value.microsecond * 1000
    return int(float(value) * 1e9) if value is not None else 0


def size(url: str) -> int:
    """The object's size in bytes, or -1 when there is none."""
    fs, path = filesystem(url)
    try:
        with _reporting(url):
            return int(fs.size(path))
    except FileNotFoundError:
        return -1


def version(url: str) -> str | None:
    """Which upload the object at `url` is (one HEAD request): its size and the store's
    tag of that upload — S3's ETag, GCS's generation, else its modification time — so
    that another upload of as many bytes tells apart; None when there is no object."""
    fs, path = filesystem(url)
    try:
        with _reporting(url):
            info = fs.info(path)
    except FileNotFoundError:
        return None
    return _upload_tag(info)


def opened_version(handle: object) -> str | None:
    """`version` of the upload an open store file reads, from what the store said when
    it was opened (no request); None for a file of another kind."""
    details = getattr(handle, "details", None)
    return _upload_tag(details) if isinstance(details, dict) else None


def _upload_tag(info: dict) -> str:
    tag = info.get("ETag") or info.get("generation") or info.get("etag") or _mtime_ns(info)
    return f"{int(info.get('size') or 0)}:{str(tag).strip(chr(34))}"


def bucket_missing(url: str) -> bool:
    """Whether the store says that the bucket of `url` does not exist (one request, no
    listing); False where it says it does, or cannot tell: no right to ask, the store
    unreachable, a kind of store other than S3 and GCS."""
    fs, path = filesystem(url)
    bucket = path.split("/", 1)[0]
    driver = _EXTRAS.get(_URL.match(url).group(1).lower())
    try:
        if driver == "s3fs":
            fs.call_s3("head_bucket", Bucket=bucket)
        elif driver == "gcsfs":
            fs.call("GET", f"b/{bucket}")
    except FileNotFoundError:  # both clients' word for a 404
        return True
    except Exception:  # refused, unreachable, or any other answer: it cannot tell
        return False
    return False


def cache_root() -> Path:
    """Where rainbench keeps its local mirrors: $RAINBENCH_CACHE, else
    $XDG_CACHE_HOME/rainbench, else ~/.cache/rainbench."""
    if explicit := os.environ.get("RAINBENCH_CACHE"):
        return Path(explicit).absolute()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).absolute() / "rainbench"


def mirror_dir(url: str, purpose: str) -> Path:
    """The local folder mirroring `url` for `purpose` (`read`: a view readers refresh;
    `write`: an ingest's state and lock), named by the URL's hash and marked with it."""
    url = check_url(url).rstrip("/")
    folder = cache_root() / "store" / purpose / hashlib.sha256(url.encode()).hexdigest()[:24]
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / VIEW_FILE
    if not marker.exists():  # renamed into place: a reader never finds half of it
        tmp = folder / f".{VIEW_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps({"url": url}) + "\n", encoding="utf-8")
        os.replace(tmp, marker)
    return folder


@lru_cache(maxsize=64)
def mirrored_url(folder: Path) -> str | None:
    """The URL a mirror folder stands for, or None for any other folder. Only folders
    under the cache root count: a dataset's own files never redirect a reader."""
    try:
        if not leads_inside(folder, cache_root() / "store"):
            return None
        return json.loads((folder / VIEW_FILE).read_text(encoding="utf-8"))["url"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def shown(path: Path) -> str:
    """`path` as the user names it: a file in a mirror by its URL in the store, for a
    message about it; any other by itself."""
    for folder in path.parents:
        if (url := mirrored_url(folder)) is not None:
            return f"{url}/{path.relative_to(folder).as_posix()}"
    return str(path)
