"""Phase 3, write: one unit of work = one shard. The worker re-reads each capture,
re-derives the stored bytes, checks them against the planned sha256, and writes
`<key>.<ext>`, any staged extra members and `<key>.json` into the shard under its
temporary name. A video is copied into the shard in pieces, hashed on the way, and
taken out again when its hash is not the planned one.

The orchestrator then publishes the shard (flush, rename) and leaves a small
"done" marker beside the run's state: a shard without its marker is redone. A shard of
a dataset in an object store is uploaded by the worker that wrote it (one atomic PUT to
its final key), wherever that worker runs, and its temporary file removed.
"""

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from rainbench import __version__
from rainbench.capture.probe import stored_capture
from rainbench.capture.reject import CaptureRejected, Reason
from rainbench.capture.source import SourceFile, open_capture
from rainbench.files import write_atomic
from rainbench.shards.dataset import read_json
from rainbench.shards.layout import METADATA, member
from rainbench.shards.tar import ShardWriter
from rainbench.store import upload

# A done marker holds its shard's hash and an entry for each capture dropped from the
# shard, some 100 bytes as written (a few kB where the reason names a path): 64 MiB is far
# more than a shard's captures make, and what reading a hostile one costs stays bounded.
_MARKER_BYTES = 64 << 20
# The capture facts frozen into each sample's `<key>.json` member. Mutable facts
# (split, layer, rain type, near-duplicate links) live in the manifests only.
METADATA_FIELDS = (
    "key",
    "sha256",
    "format",
    "width",
    "height",
    "mode",
    "bytes",
    "source_path",
    "source_sha256",
    "orientation",
    "camera_make",
    "camera_model",
    "lens_model",
    "captured_at",
    "exposure_time",
    "f_number",
    "iso",
    "focal_length_mm",
    "phash",
)
GPS_FIELDS = ("gps_lat", "gps_lon", "gps_alt")
VIDEO_FIELDS = ("kind", "codec", "frame_rate", "duration_s", "frames", "rotation")


@dataclass(frozen=True)
class UnitTask:
    dataset_root: str
    shard: str  # relative to the dataset root
    rows: list[dict]
    keep_gps: bool
    staging: str  # where the scan phase left extra members
    store: str | None = None  # the dataset's URL when it lives in an object store


@dataclass
class UnitResult:
    shard: str
    sha256: str | None  # None when every capture of the unit was lost
    bytes: int
    samples: int
    dropped: list[dict] = field(default_factory=list)  # {key, reason, message}
    tmp: str | None = None  # where the shard waits to be published, beside `shard`
    # In a store: which upload of the shard is this run's (`store.version`), so that a
    # resume takes no other writer's upload of as many bytes under the same key for it.
    version: str | None = None


def marker_path(markers: Path, shard: str) -> Path:
    return markers / (Path(shard).stem + ".json")


def write_unit(task: UnitTask) -> UnitResult:
    result = UnitResult(task.shard, None, 0, 0)
    with ShardWriter(Path(task.dataset_root) / task.shard) as writer:
        for row in task.rows:
            try:
                _add_capture(writer, row, task.keep_gps)
            except CaptureRejected as rejected:
                result.dropped.append(
                    {"key": row["key"], "reason": str(rejected.reason), "message": rejected.message}
                )
                continue
            key, members = row["key"], row["members"]
            for ext in members[1:-1]:
                staged = Path(task.staging) / member(key, ext)
                writer.add(member(key, ext), staged.read_bytes())
            writer.add(member(key, METADATA), metadata_json(row, task.keep_gps))
            result.samples += 1
        if result.samples:
            info = writer.finish()
            result.sha256, result.bytes = info.sha256, info.bytes
            result.tmp = (Path(task.shard).parent / writer.tmp_path.name).as_posix()
            if task.store is not None:
                upload(writer.tmp_path, f"{task.store}/{task.shard}")
                writer.tmp_path.unlink()
    return result


def write_marker(markers: Path, result: UnitResult) -> None:
    marker = json.dumps(result.__dict__, sort_keys=True).encode()
    write_atomic(marker_path(markers, result.shard), marker)


def read_marker(path: Path) -> UnitResult | None:
    """The marker at `path`; None where there is none, or none that is whole (damaged,
    larger than any marker, not a marker's fields): its shard is then written again."""
    try:
        return UnitResult(**read_json(path, _MARKER_BYTES))
    except (OSError, ValueError, TypeError):
        return None


def _add_capture(writer: ShardWriter, row: dict, keep_gps: bool) -> None:
    """Write the capture's `<key>.<ext>` member, re-derived from its file, if it is still
    what was planned; a video is copied in pieces and taken out again if it is not."""
    source = SourceFile(row["source_root"], row["source_path"], row["source_size"], 0)
    name = member(row["key"], row["members"][0])
    with open_capture(source) as capture:
        stored = stored_capture(capture, source, keep_gps)
        if stored.format.name != row["format"]:
            raise _changed()
        if isinstance(stored.stored, bytes):
            if hashlib.sha256(stored.stored).hexdigest() != row["sha256"]:
                raise _changed()
            writer.add(name, stored.stored)
            return
        with writer.tentative():
            if writer.add_file(name, stored.stored, stored.size) != row["sha256"]:
                raise _changed()
            capture.check_unchanged()


def _changed() -> CaptureRejected:
    return CaptureRejected(Reason.CHANGED, "the file changed between scanning and writing")


def metadata_json(row: dict, keep_gps: bool) -> bytes:
    fields = METADATA_FIELDS + (GPS_FIELDS if keep_gps else ())
    if row.get("kind") == "video":  # a still's member stays as it was before videos
        fields += VIDEO_FIELDS
    metadata = {name: row[name] for name in fields}
    if isinstance(metadata["captured_at"], datetime):
        metadata["captured_at"] = metadata["captured_at"].isoformat()
    metadata["rainbench_version"] = __version__
    return json.dumps(metadata, sort_keys=True, ensure_ascii=False).encode()
