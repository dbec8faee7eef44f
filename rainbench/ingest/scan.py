"""Phase 1, scan: find the capture files under the inputs, skip those the dataset
already knows, and probe the rest in parallel.

Each probe lands in an append-only journal as soon as it finishes, so a killed
run re-probes only what it had not finished.
"""

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from rainbench.capture.exif import CaptureExif
from rainbench.capture.formats import is_capture_name
from rainbench.capture.probe import Probe, probe_many
from rainbench.capture.reject import Reason
from rainbench.capture.source import SourceFile, name_text
from rainbench.files import regular_file, write_atomic
from rainbench.shards.dataset import DatasetError
from rainbench.shards.layout import member
from rainbench.store import check_url, is_url, listing
from rainbench.tagging.measure import compute_features

# Parts of an object's key that name no folder: a key with one is refused, never read
# (a path made of it would point elsewhere, `../x.jpg` out of the ingest root).
_NO_FOLDER = ("", ".", "..")
# (root, path, size, mtime_ns, inode): a file is re-probed only when one of these
# changes. The inode catches a file replaced by another of the same size and time (a
# copy that kept the original's mtime, an rsync).
FileId = tuple[str, str, int, int, int]
# A journal line is one probe's record, some kB as written: two names of at most 4096
# bytes, EXIF texts of at most 1024 characters (exif.MAX_TEXT), a message of at most
# _MESSAGE_CHARS (as JSON, at most 6 bytes a character), numbers. A longer line is none
# that rainbench wrote, refused before it is parsed.
_RECORD_BYTES = 1 << 20
# A decoder's message may quote a hostile file's fields at any length (a TIFF tag's
# thousands of values): what is kept of it.
_MESSAGE_CHARS = 64 << 10


def file_id(source: SourceFile) -> FileId:
    return (source.root, source.path, source.size, source.mtime_ns, source.inode)


def is_known(source: SourceFile, known: set[FileId]) -> bool:
    """Whether `known` holds `source` as it is now. A record without an inode (0: an
    object in a store, or a row written before inodes were kept) matches on the rest."""
    found = file_id(source)
    return found in known or (*found[:4], 0) in known


def walk_inputs(inputs: Iterable[Path | str]) -> tuple[list[SourceFile], int]:
    """Capture files under `inputs` in a stable order, and how many files were ignored.

    A directory is walked recursively (hidden entries and symlinked directories are
    not followed; a symlinked directory named like a capture is listed, for the probe
    to refuse); a file given directly is taken as is; a URL (`s3://bucket/raw`) is
    walked as a folder of objects. Sidecars and other files without a capture extension
    are ignored, not rejected.
    """
    found: list[SourceFile] = []
    ignored = 0
    # An input given twice (`raw raw`, or `raw raw/IMG_0001.jpg`) names its files once:
    # else each is probed and counted as often as it is named.
    walked: set[tuple[Path, Path] | str] = set()
    for entry in inputs:
        if is_url(entry):
            if str(entry) not in walked:
                walked.add(str(entry))
                stored, skipped = _store_sources(str(entry))
                found += stored
                ignored += skipped
            continue
        entry = _absolute(Path(entry))
        if entry.is_dir():
            root = entry
            names = _walk(entry)
        else:
            root, names = entry.parent, iter([entry])
        for path in names:
            if (root, path) in walked:
                continue
            walked.add((root, path))
            if not is_capture_name(path.name):
                ignored += 1
                continue
            found.append(_source(root, path))
    found.sort(key=lambda s: (s.root, s.path))
    return found, ignored


def _store_sources(url: str) -> tuple[list[SourceFile], int]:
    """The capture objects under the prefix `url`, walked as a folder is (hidden folders
    skipped), with size and modification time from the store's listing; and how many
    objects were ignored. A key with a part that names no folder is kept, for the probe
    to refuse."""
    root = check_url(url).rstrip("/")
    found, ignored = [], 0
    for relative, (size, mtime) in sorted(listing(root).items()):
        *folders, name = relative.split("/")
        if any(part.startswith(".") and part not in _NO_FOLDER for part in folders):
            continue
        if not is_capture_name(name):
            ignored += 1
            continue
        found.append(SourceFile(name_text(root), name_text(relative), size, mtime))
    return found, ignored


def _absolute(path: Path) -> Path:
    """`path` made absolute, without its `..` parts where taking them out still names
    the same folder (after a symlinked folder it does not): a folder given as `../raw`
    is then the same root as when given as its absolute path, and its captures are
    known either way, not duplicates of themselves."""
    given = path.absolute()
    plain = Path(os.path.normpath(given))
    try:
        return plain if os.path.samefile(plain, given) else given
    except OSError:  # missing: the probe or the caller says so, under the name given
        return given


def _walk(root: Path) -> Iterator[Path]:
    for folder, dirs, files in os.walk(root, onerror=_unlisted):
        links = [d for d in dirs if is_capture_name(d) and os.path.islink(os.path.join(folder, d))]
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files + links):
            yield Path(folder) / name


def _unlisted(error: OSError) -> None:
    """A folder under the inputs that cannot be listed (not the user's, a path longer
    than the system takes) stops the walk: skipped, its captures would be lost unsaid.
    One that is gone since its parent was listed held nothing to lose."""
    if not isinstance(error, FileNotFoundError):
        raise OSError(error.errno, f"cannot list this folder: {error.strerror}", error.filename)


def _source(root: Path, path: Path) -> SourceFile:
    try:
        stat = path.stat()
        size, mtime, inode = stat.st_size, stat.st_mtime_ns, stat.st_ino
    except OSError:  # a dangling symlink or a loop: probing reports it as unreadable
        size, mtime, inode = -1, -1, 0
    relative = path.relative_to(root).as_posix()
    return SourceFile(name_text(root.as_posix()), name_text(relative), size, mtime, inode)


def probe_batch(task: tuple[list[SourceFile], bool, int, str, bool]) -> list[dict]:
    """Probe a batch of files (in a worker process) and return journal records, each
    with its rain-type features when the task's last item (tag) says so.

    A RAW's rendered preview is staged on disk under the run's state directory
    rather than sent back, so results stay small.
    """
    sources, keep_gps, max_pixels, staging, tag = task
    records = [to_record(_refused_name(s)) for s in sources if _has_no_folder(s)]
    readable = [s for s in sources if not _has_no_folder(s)]
    measure = compute_features if tag else None
    options = {"keep_gps": keep_gps, "max_pixels": max_pixels, "measure": measure}
    for result in probe_many(readable, **options):
        for ext, data in result.extra_members.items():
            write_atomic(Path(staging) / member(result.key, ext), data)
        records.append(to_record(result))
    return records


def _has_no_folder(source: SourceFile) -> bool:
    return any(part in _NO_FOLDER for part in source.path.split("/"))


def _refused_name(source: SourceFile) -> Probe:
    message = "its key has an empty, '.' or '..' part, which names no file under the prefix"
    return Probe(source, Reason.NOT_A_FILE, f"{message}; not read")


def to_record(result: Probe) -> dict:
    record = asdict(result)
    record["extra_members"] = sorted(result.extra_members)
    if result.message and len(result.message) > _MESSAGE_CHARS:
        record["message"] = result.message[:_MESSAGE_CHARS] + "…"
    record["exif"] = {
        name: value.isoformat() if isinstance(value, datetime) else value
        for name, value in record["exif"].items()
    }
    return record


def from_record(record: dict) -> Probe:
    exif = dict(record["exif"])
    if exif.get("captured_at"):
        exif["captured_at"] = datetime.fromisoformat(exif["captured_at"])
    return Probe(
        **{
            **record,
            "source": SourceFile(**record["source"]),
            "reason": Reason(record["reason"]) if record["reason"] else None,
            "exif": CaptureExif(**exif),
            # The bytes wait in the staging directory; only their names are journaled.
            "extra_members": dict.fromkeys(record["extra_members"], b""),
        }
    )


class Journal:
    """Append-only JSON lines of probe records; a torn last line (a kill) is ignored."""

    def __init__(self, path: Path):
        self.path = path

    def load(self) -> dict[FileId, Probe]:
        """The journaled probes; a torn tail is cut off so later appends start clean."""
        records: dict[FileId, Probe] = {}
        if not self.path.exists():
            return records
        valid = 0
        with open(regular_file(self.path), "rb") as handle:
            while line := handle.readline(_RECORD_BYTES + 1):
                if len(line) > _RECORD_BYTES:
                    raise DatasetError(
                        f"{self.path}: a line of more than {_RECORD_BYTES >> 20} MiB, longer "
                        "than any record an ingest writes; remove "
                        f"{self.path.parent} to scan afresh"
                    )
                try:
                    result = from_record(json.loads(line))
                except (ValueError, KeyError, TypeError, AttributeError):
                    break  # torn, or damaged from outside: probed again
                if not line.endswith(b"\n"):
                    break
                records[file_id(result.source)] = result
                valid += len(line)
        os.truncate(self.path, valid)
        return records

    def append(self, records: list[dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
