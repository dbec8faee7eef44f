"""`rainbench verify`: prove that a dataset on disk is what its manifests say.

Each shard is read once, in one pass that hashes the whole file and every member:
the shard's sha256 must match shards.parquet (which lists it once), every manifest
row's members must be there with the right sha256, and no shard or member may be on disk
that no manifest lists; one that cannot be opened is that shard's problem. What
readers trust beyond the hashes is checked in the same pass: a PNG's or JPEG's header
must declare the size its row gives (readers bound decoding by it), and a `<key>.json`
must be a JSON object naming its own row; a member name may be stored once (readers
would take the last copy, webdataset refuses the shard). A manifest row without a
value the format requires is reported where every other reader refuses the manifest,
and so is a measured capture whose stored features are no measurement (`rainbench tag`
measures it again).
A video member must open, hold the frames its row counts and declare its row's frame
size (its packets are demuxed, nothing is decoded; skipped where PyAV is not
installed). Nothing is decoded as a picture. The fitted tagger dataset.json names, if
any, must read as ingest reads it, and rejects.parquet as `stats` reads it.
Members are hashed in chunks as they stream by; one that is not a regular file (a
link, a sparse file, a device) is reported, never read. A dataset in an object store is
checked the same way: each shard object streams by once (no local copy), a video member
again for its demuxer, in as large pieces, and the store's listing stands for what is on
disk.
"""

import hashlib
import io
import json
import os
import struct
import tarfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from rainbench.capture.decode import PixelCapExceeded
from rainbench.capture.formats import FORMATS
from rainbench.capture.orientation import upright_size
from rainbench.capture.reject import CaptureRejected, Reason
from rainbench.capture.video import VideoFrames
from rainbench.errors import first_line
from rainbench.files import regular_file
from rainbench.parallel import WorkerPool
from rainbench.shards import manifest
from rainbench.shards.dataset import Dataset, DatasetBusy, DatasetError
from rainbench.shards.fitted import active_tagger
from rainbench.shards.layout import GROUND_TRUTH, METADATA, PREVIEW, RAIN
from rainbench.shards.layout import member as layout_member
from rainbench.shards.members import (
    TAR_ERRORS,
    ShardError,
    find_member,
    irregular,
    open_shard,
    shard_path,
    shard_url,
    tar_failure,
)
from rainbench.shards.tar import TMP_SUFFIX
from rainbench.store import STREAM_BLOCK, is_url, listing, open_stream
from rainbench.tagging.features import unusable_features

_CHUNK = 1 << 22
# A `<key>.json` is a few kilobytes; one larger than this is not parsed.
_METADATA_BYTES = 1 << 20
# The fields of a `<key>.json` that name its row: a capture's key and sha256, a pair's
# key, split and job.
_NAMING = ("key", "sha256", "split", "job")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG frame headers (SOF0–SOF15 but DHT, JPG and DAC), which give the picture's size.
_JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# A paired split's shard is renamed into place, listed in shards.parquet, then given its
# rows (`rainbench.synth.splits`): one found before the last step is the work of a run
# that was stopped, which the same command, run again, removes and writes anew.
_PAIRED_SHARDS = "shards/synthetic/"
_UNCOMMITTED = (
    "its pairs were never committed (a synth, pairs or import-paired run was stopped); "
    "run it again to finish"
)
_UNCOMMITTED_KINDS = ("stray-shard", "stray-temporary", "pairs-uncommitted")
_PAIR_COUNTS = "counts pairs"  # how dataset.json's count of pairs is said to disagree


@dataclass(frozen=True)
class Problem:
    kind: str  # e.g. shard-missing, shard-sha256, member-missing, stray-member
    where: str  # the shard or member concerned
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.where}: {self.detail}"

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Picture:
    """The pixel size a picture member's header must declare."""

    width: int  # as stored (a capture's row gives it upright)
    height: int
    exact: bool  # False: at most width × height pixels (a RAW's smaller preview)
    said: str  # what the row says, for the message


@dataclass(frozen=True)
class Entry:
    """What one manifest row expects in its shard."""

    key: str
    members: list[str]  # extensions, e.g. [jpg, json] or [rain.png, gt.png, json]
    hashes: dict[str, str]  # extension → expected sha256, for the members the row hashes
    sizes: dict[str, int | None] = field(default_factory=dict)  # extension → expected bytes
    pictures: dict[str, Picture] = field(default_factory=dict)  # extension → its header's size
    naming: dict[str, str] = field(default_factory=dict)  # what its <key>.json must say


@dataclass(frozen=True)
class ShardReading:
    shard: str
    sha256: str | None
    bytes: int
    members: dict[str, str]  # member name → sha256
    sizes: dict[str, int] = field(default_factory=dict)  # member name → bytes
    error: str | None = None
    refused: tuple[tuple[str, str], ...] = ()  # (member name, why) of members not read
    # Member names stored more than once, with how often: readers take the last copy.
    repeated: dict[str, int] = field(default_factory=dict)
    # A PNG's or JPEG's declared (width, height), or why its header does not say.
    headers: dict[str, tuple[int, int] | str] = field(default_factory=dict)
    # A <key>.json's naming fields (`_NAMING`), or why it is not a JSON object.
    metadata: dict[str, dict | str] = field(default_factory=dict)


def verify(dataset: Dataset, workers: int = os.cpu_count() or 1) -> list[Problem]:
    """Every problem found; an empty list means the dataset is sound.

    A dataset another process is writing to is not judged (`DatasetBusy`): its
    unfinished shards and its manifests mid-change are its writer's work, not damage.
    It is asked before and after, so a writer that starts meanwhile is caught too.
    """
    _refuse_while_written(dataset)
    problems = _verify(dataset, workers)
    _refuse_while_written(dataset)
    return problems


def left_by_a_stopped_run(problem: Problem) -> bool:
    """Whether `problem` is what a synth, pairs or import-paired run that was stopped may
    leave: a paired split's shard it never committed, or dataset.json's count of pairs
    before its last write. The same command, run again, removes or corrects it."""
    if problem.kind == "dataset-json":
        return problem.detail.startswith(_PAIR_COUNTS)
    return problem.kind in _UNCOMMITTED_KINDS and problem.where.startswith(_PAIRED_SHARDS)


def _refuse_while_written(dataset: Dataset) -> None:
    writer = dataset.writer()
    if writer is not None:
        raise DatasetBusy(
            f"{dataset.location} is being written by {writer}; run rainbench verify again "
            "once it has finished"
        )


def _verify(dataset: Dataset, workers: int) -> list[Problem]:
    pending = dataset.pending_run.exists()
    if not dataset.exists():
        if pending:  # the first ingest stopped before its first commit
            return [
                Problem(
                    "ingest-pending",
                    str(dataset.state_dir),
                    "the first ingest was interrupted before it stored anything; "
                    "re-run it to finish",
                )
            ]
        raise DatasetError(dataset.not_a_dataset("dataset.json"))
    info = dataset.read_info()
    problems: list[Problem] = []
    if pending:
        problems.append(
            Problem(
                "ingest-pending",
                str(dataset.state_dir),
                "an ingest was interrupted; "
                "re-run it to finish (unlisted shards below may be its work)",
            )
        )
    missing = _missing_manifests(dataset, info)
    if missing:  # every row and member check would follow from it: said once
        return [*problems, *missing]
    samples, faults = _read_rows(dataset.samples_manifest, manifest.SAMPLES)
    pairs, pair_faults = _read_rows(dataset.synthetic_manifest, manifest.SYNTHETIC)
    shards, _ = _read_rows(dataset.shards_manifest, manifest.SHARDS)
    listed = {row["shard"]: row for row in shards}
    problems += [
        Problem("duplicate-shard", name, f"listed {count} times in shards.parquet")
        for name, count in Counter(row["shard"] for row in shards).items()
        if count > 1
    ]
    rows_by_shard: dict[str, list[Entry]] = defaultdict(list)
    rows = [(row, "samples.parquet", _capture_entry(row)) for row in samples] + [
        (row, "synthetic.parquet", _pair_entry(row)) for row in pairs
    ]
    videos: dict[str, list[tuple[str, int | None, Picture | None]]] = defaultdict(list)
    for row in samples:
        if row["kind"] == "video":
            videos[row["shard"]].append(
                (layout_member(row["key"], row["members"][0]), row["frames"], _stored_size(row))
            )
    keep_gps = bool((info.get("options") or {}).get("keep_gps"))
    for index, row in enumerate(samples):
        problems += _check_values(row, keep_gps, faults.get(index, []))
        problems += _check_features(row)
    for index, wrong in sorted(pair_faults.items()):
        problems.append(Problem("row-value", pairs[index]["key"], "; ".join(wrong)))
    seen_keys: set[str] = set()
    for row, source, entry in rows:
        if row["key"] in seen_keys:
            problems.append(Problem("duplicate-key", row["key"], f"listed twice ({source})"))
        seen_keys.add(row["key"])
        if row["shard"] not in listed:
            problems.append(
                Problem(
                    "shard-unlisted",
                    row["shard"],
                    f"{source} row {row['key']} points at a shard not in shards.parquet",
                )
            )
        rows_by_shard[row["shard"]].append(entry)

    stored = _stored_names(dataset)
    tasks = []
    for name in listed:
        try:
            path = shard_path(dataset.root, name)
            url = shard_url(dataset.root, name)
        except ShardError as error:
            problems.append(Problem("shard-outside", name, str(error)))
            continue
        if name.startswith(_PAIRED_SHARDS) and not rows_by_shard[name]:
            problems.append(Problem("pairs-uncommitted", name, _UNCOMMITTED))
            continue  # its members are no row's yet: not one stray-member each
        if _on_disk(path) if url is None else name in stored:
            tasks.append((url or path.as_posix(), name))
        elif url is None and path.is_symlink():  # a loop, or a link to nothing
            problems.append(Problem("shard-missing", name, "a link that leads to no file"))
        else:
            problems.append(Problem("shard-missing", name, "listed in shards.parquet, not on disk"))
    # In the order shards are listed, however the workers finish: a run reports as the
    # last one did.
    corrupt = set()  # shards the hash pass could not read: their videos are not demuxed
    with WorkerPool(workers) as pool:
        for reading in pool.map_ordered(read_shard, tasks):
            problems += _check_shard(reading, listed[reading.shard], rows_by_shard[reading.shard])
            if reading.error:
                corrupt.add(reading.shard)
        checks = [
            (dataset.root.as_posix(), name, videos[name])
            for _, name in tasks
            if videos[name] and name not in corrupt
        ]
        for found in pool.map_ordered(check_videos, checks):
            problems += found

    for name in stored:
        if name.endswith(".tar") and name not in listed:
            stray = "on disk but not in shards.parquet"
            if name.startswith(_PAIRED_SHARDS):
                stray += f": {_UNCOMMITTED}"
            problems.append(Problem("stray-shard", name, stray))
    for name in stored:
        if name.endswith(TMP_SUFFIX):
            stray = "a shard that was never finished"
            if name.startswith(_PAIRED_SHARDS):
                stray += f": {_UNCOMMITTED}"
            problems.append(Problem("stray-temporary", name, stray))
    problems += _check_counts(info.get("counts"), samples, pairs)
    problems += _check_rejects(dataset)
    problems += _check_tagger(dataset)
    return problems


def _on_disk(path: Path) -> bool:
    """Whether a listed shard is there: one that this user may not look at (its folder
    refuses) is there, for reading it to report, not missing."""
    try:
        return path.exists()
    except OSError:
        return True


def _check_rejects(dataset: Dataset) -> list[Problem]:
    """rejects.parquet, which no row or shard check needs, read as `stats` reads it."""
    try:
        manifest.read_manifest(dataset.rejects_manifest, manifest.REJECTS)
    except DatasetError as error:  # its message names the file
        return [Problem("manifest-unreadable", "manifests/rejects.parquet", str(error))]
    return []


def _check_tagger(dataset: Dataset) -> list[Problem]:
    """The fitted tagger dataset.json names, read as ingest and `tag` read it: present,
    within its size, a tagger's parameters, and the version named."""
    try:
        active_tagger(dataset)
    except DatasetError as error:  # its message names the file
        return [Problem("tagger", "dataset.json", str(error))]
    return []


def _capture_entry(row: dict) -> Entry:
    """What a samples.parquet row expects: its capture's bytes and sha256; a PNG's or
    JPEG's header declaring its width × height once EXIF orientation is undone (the row
    gives the size upright); a RAW's preview no larger; its <key>.json naming it."""
    ext = row["members"][0]
    width, height = row["width"], row["height"]
    pictures = {}
    stored = _stored_size(row)
    if stored is not None:
        # A member that is not of the row's format (row-value says so) has no header to
        # hold to it.
        if row["format"] in ("jpeg", "png") and ext == FORMATS[row["format"]].ext:
            pictures[ext] = stored
        if PREVIEW in row["members"]:
            pictures[PREVIEW] = Picture(width, height, False, f"the manifest's {width}×{height}")
    return Entry(
        row["key"],
        row["members"],
        _given({ext: row["sha256"]}),
        {ext: row["bytes"]},
        pictures,
        _given({"key": row["key"], "sha256": row["sha256"]}),
    )


def _given(values: dict) -> dict:
    """`values` less those the row leaves null: a member has nothing to be compared with
    there, and row-value names the null once."""
    return {name: value for name, value in values.items() if value is not None}


def _stored_size(row: dict) -> Picture | None:
    """The size a capture's picture declares as stored: a still's header, a video's
    stream (its frames as decoded). The row gives it upright, so the turn its
    `orientation` names is undone; a video ingested before orientation was kept says its
    turn in `rotation` alone."""
    width, height = row["width"], row["height"]
    if width is None or height is None:
        return None
    said = f"the manifest's {width}×{height}"
    orientation, turn = row["orientation"], f"orientation {row['orientation']}"
    if orientation is None and row["rotation"] is not None:
        orientation, turn = _TURNS.get(row["rotation"]), f"rotation {row['rotation']}"
    stored = upright_size(width, height, orientation)
    if stored != (width, height):
        said += f" upright ({turn})"
    return Picture(*stored, True, said)


# A video's clockwise turn as the orientation that makes it (one without a mirror).
_TURNS = {0: 1, 90: 6, 180: 3, 270: 8}


def _pair_entry(row: dict) -> Entry:
    """What a synthetic.parquet row expects: its rain and ground truth's sha256, every
    PNG of the pair at its width × height, its <key>.json naming key, split and job."""
    width, height = row["width"], row["height"]
    pictures = {}
    if width is not None and height is not None:
        said = f"the manifest's {width}×{height}"
        pictures = {
            ext: Picture(width, height, True, said)
            for ext in row["members"]
            if ext.endswith(".png")
        }
    return Entry(
        row["key"],
        row["members"],
        _given({RAIN: row["rain_sha256"], GROUND_TRUTH: row["gt_sha256"]}),
        {},
        pictures,
        _given({"key": row["key"], "split": row["split"], "job": row["job"]}),
    )


# What a column of samples.parquet may hold beyond its pattern (docs/dataset-format.md);
# null aside. The labels' are row faults (`manifest.LABELS`), which every reader refuses.
_VALUES = {
    "split": manifest.CAPTURE_SPLITS,  # ingest.split's
    "format": tuple(FORMATS),
    "kind": ("still", "video"),
}
# The columns without which a manifest's rows cannot be checked against their members.
_INTEGRITY = {
    "samples.parquet": ("sha256", "bytes", "members"),
    "synthetic.parquet": ("rain_sha256", "gt_sha256", "members"),
    "shards.parquet": ("sha256", "bytes"),
}


def _missing_manifests(dataset: Dataset, info: dict) -> list[Problem]:
    """A manifest the dataset must have and lacks, or one without a column its checks
    need: one problem each, instead of one per row or member that would follow."""
    counts = info.get("counts") if isinstance(info.get("counts"), dict) else {}
    needed = {
        dataset.samples_manifest: bool(counts.get("samples")),
        dataset.synthetic_manifest: bool(counts.get("synthetic")),
        dataset.shards_manifest: bool(counts.get("shards")),
    }
    problems = []
    for path, must in needed.items():
        where = f"manifests/{path.name}"
        if not path.exists():
            if must:
                problems.append(
                    Problem("manifest-missing", where, "dataset.json counts its rows; it is gone")
                )
            continue
        try:
            present = set(pq.read_schema(regular_file(path)).names)
        except (pa.ArrowException, OSError, ValueError):
            continue  # no manifest at all: reading it says so, in one line
        lacking = [c for c in _INTEGRITY[path.name] if c not in present]
        if lacking and len(lacking) < len(_INTEGRITY[path.name]):
            problems.append(Problem("manifest-column", where, f"has no {', '.join(lacking)}"))
    return problems


def _read_rows(path: Path, schema: pa.Schema) -> tuple[list[dict], dict[int, list[str]]]:
    """The manifest's rows and what is wrong in each (`manifest.row_faults`), to be
    reported rather than refused. Timestamps come as microseconds: verify compares
    none, and one beyond a Python datetime's years is such a fault."""
    table = manifest.read_manifest(path, schema, check_values=False)
    faults = manifest.row_faults(table, schema)
    for index, column in enumerate(table.schema):
        if pa.types.is_timestamp(column.type):
            table = table.set_column(index, column.name, table[index].cast(pa.int64()))
    return table.to_pylist(), faults


def _check_values(row: dict, keep_gps: bool, faults: list[str]) -> list[Problem]:
    """A capture's labels within what each column may hold, after the row's `faults`."""
    wrong = faults + [
        f"{column} {row[column]!r} is none of {', '.join(allowed)}"
        for column, allowed in _VALUES.items()
        if row.get(column) is not None and row[column] not in allowed
    ]
    confidence = row.get("rain_type_confidence")
    if confidence is not None and not 0 <= confidence <= 1:
        wrong.append(f"rain_type_confidence {confidence} is outside [0, 1]")
    if row.get("layer") == "clean" and row.get("rain_type") is not None:
        wrong.append(f"a clean capture has rain_type {row['rain_type']!r}")
    stored, members, kind = FORMATS.get(row.get("format")), row.get("members"), row.get("kind")
    if stored is not None and members and members[0] != stored.ext:
        wrong.append(f"format {row['format']!r} is kept as .{stored.ext}, not .{members[0]}")
    elif (
        stored is not None
        and kind in (None, "still", "video")
        and stored.video != (kind == "video")
    ):
        # Readers tell videos by kind (null: a still): a video taken for a still would be
        # decoded as a picture, and verify would neither count its frames nor size them.
        wrong.append(
            f"format {row['format']!r} is a {'video' if stored.video else 'still'}'s, "
            f"kind {'null' if kind is None else repr(kind)}"
        )
    twice = [ext for ext, count in Counter(members or ()).items() if count > 1]
    if twice:
        wrong.append(f"members names {', '.join(twice)} more than once")
    located = [c for c in ("gps_lat", "gps_lon", "gps_alt") if row.get(c) is not None]
    if located and not keep_gps:
        wrong.append(f"{', '.join(located)} kept, in a dataset made without --keep-gps")
    return [Problem("row-value", row["key"], "; ".join(wrong))] if wrong else []


def _check_features(row: dict) -> list[Problem]:
    unusable = unusable_features(row)
    if not unusable:
        return []
    values = ", ".join(f"{column} {row[column]!r}" for column in unusable)
    return [
        Problem(
            "row-features",
            row["key"],
            f"{values}: no measurement (null, not a number or far beyond any picture's); "
            "rainbench tag measures the capture again",
        )
    ]


def _check_counts(counts: object, samples: list[dict], pairs: list[dict]) -> list[Problem]:
    """dataset.json's counts of captures and of pairs per paired split agree with the
    manifests (a dataset without pairs may have no `synthetic` count)."""
    counts = counts if isinstance(counts, dict) else {}
    problems = []
    if counts.get("samples") != len(samples):
        problems.append(
            Problem(
                "dataset-json",
                "dataset.json",
                f"counts {json.dumps(counts.get('samples'))[:200]} samples, samples.parquet "
                f"has {len(samples)}",
            )
        )
    listed = dict(sorted(Counter(row["split"] for row in pairs).items()))
    counted = counts.get("synthetic", {})
    if counted != listed:
        problems.append(
            Problem(
                "dataset-json",
                "dataset.json",
                f"{_PAIR_COUNTS} {json.dumps(counted)[:200]}, synthetic.parquet has "
                f"{json.dumps(listed)[:200]}",
            )
        )
    return problems


def _stored_names(dataset: Dataset) -> list[str]:
    """Every file under the dataset's shards/ (in a store: every object), relative to
    the dataset, in path order."""
    if dataset.url is not None:
        names = [f"shards/{name}" for name in listing(f"{dataset.url}/shards")]
    else:
        shards_dir = dataset.root / "shards"
        found = shards_dir.rglob("*") if shards_dir.exists() else []
        names = [
            path.relative_to(dataset.root).as_posix()
            for path in found
            if path.is_symlink() or not path.is_dir()
        ]
    return sorted(names, key=lambda name: name.split("/"))


def read_shard(task: tuple[str, str]) -> ShardReading:
    """One pass over the shard at `task`'s path or URL: its sha256 and every member's."""
    path, name = task
    whole = hashlib.sha256()
    members: dict[str, str] = {}
    sizes: dict[str, int] = {}
    headers: dict[str, tuple[int, int] | str] = {}
    metadata: dict[str, dict | str] = {}
    refused: list[tuple[str, str]] = []
    names: Counter[str] = Counter()
    if is_url(path):
        raw = open_stream(path)
    else:
        try:  # a file this user may not read is that shard's problem, not the end of verify
            raw = open(regular_file(Path(path)), "rb")  # noqa: SIM115 - closed below
        except OSError as error:
            return ShardReading(name, None, 0, {}, error=f"unreadable: {first_line(error)}")
    with raw:
        hashing = _HashingReader(raw, whole)
        try:
            with tarfile.open(fileobj=hashing, mode="r|") as archive:
                for member in archive:
                    names[member.name] += 1
                    if why := irregular(member):
                        refused.append((member.name, why))
                        continue
                    found = _read_member(archive.extractfile(member), member.name, member.size)
                    members[member.name], sizes[member.name] = found.sha256, member.size
                    if found.header is not None:
                        headers[member.name] = found.header
                    if found.metadata is not None:
                        metadata[member.name] = found.metadata
            while hashing.read(_CHUNK):
                pass
        except TAR_ERRORS as error:
            return ShardReading(
                name, None, 0, members, error=f"unreadable tar: {tar_failure(error)}"
            )
    return ShardReading(
        name,
        whole.hexdigest(),
        hashing.size,
        members,
        sizes,
        refused=tuple(refused),
        repeated={member: count for member, count in names.items() if count > 1},
        headers=headers,
        metadata=metadata,
    )


def check_videos(
    task: tuple[str, str, list[tuple[str, int | None, Picture | None]]],
) -> list[Problem]:
    """Each of the shard's video members (name, frames the manifest counts, the frame
    size its row gives, as stored) opens as a video with that many frames, its stream
    declaring that size (what readers bound decoding by). A member missing or not regular
    is left to the hash pass, which reports it; without PyAV nothing is checked."""
    root, shard, videos = task
    problems: list[Problem] = []
    try:
        tar = open_shard(Path(root), shard)
        url = shard_url(Path(root), shard)
    except ShardError:
        return problems
    with tar:
        for name, frames, size in videos:
            where = f"{shard}:{name}"
            try:
                info = find_member(tar, name)
                if irregular(info):
                    continue
                member = tar.extractfile(info)
                if url is not None:  # each of the demuxer's small reads would be a request
                    member = io.BufferedReader(member, STREAM_BLOCK)
                with VideoFrames(member) as video:
                    counted = len(video)
                    context = video.stream.codec_context
                    declared = (context.width, context.height)
            except KeyError:
                continue
            except TAR_ERRORS as error:
                problems.append(Problem("video-unreadable", where, tar_failure(error)))
                continue
            except PixelCapExceeded as error:  # the readers' cap, which no option of verify sets
                problems.append(Problem("video-unreadable", where, error.fact))
                continue
            except CaptureRejected as rejected:
                if rejected.reason == Reason.UNSUPPORTED:  # no PyAV here
                    return problems
                problems.append(Problem("video-unreadable", where, rejected.message))
                continue
            if frames is not None and counted != frames:
                problems.append(
                    Problem("video-frames", where, f"{counted} frames, the manifest says {frames}")
                )
            if size is not None:
                problems += _check_header(where, declared, size)
    return problems


@dataclass(frozen=True)
class _MemberReading:
    sha256: str
    header: tuple[int, int] | str | None  # PNG and JPEG members
    metadata: dict | str | None  # <key>.json members


def _read_member(handle, name: str, size: int) -> _MemberReading:
    """Hash the member in chunks; on the way, read a PNG's or JPEG's declared size from
    its header and keep a <key>.json's text to parse."""
    sha = hashlib.sha256()
    header = _Header(name.rsplit(".", 1)[-1]) if name.endswith((".png", ".jpg")) else None
    text = bytearray() if name.endswith(f".{METADATA}") and size <= _METADATA_BYTES else None
    while chunk := handle.read(_CHUNK):
        sha.update(chunk)
        if header is not None:
            header.feed(chunk)
        if text is not None:
            text += chunk
    metadata = None
    if name.endswith(f".{METADATA}"):
        metadata = (
            _naming(bytes(text))
            if text is not None
            else f"{size} bytes, more than a <key>.json holds; not parsed"
        )
    return _MemberReading(
        sha.hexdigest(), header.result() if header is not None else None, metadata
    )


def _naming(text: bytes) -> dict | str:
    """The naming fields of a <key>.json, or why it is no JSON object."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return "not JSON"
    if not isinstance(value, dict):
        return "not a JSON object"
    return {name: value[name] for name in _NAMING if name in value}


class _Header:
    """The pixel size a PNG's IHDR or a JPEG's frame header declares, found as the
    member's chunks stream by. Only the bytes of the segment header being read are kept:
    the JPEG segments before the frame header (EXIF, ICC, XMP) are skipped unread."""

    def __init__(self, ext: str) -> None:
        self.png = ext == "png"
        self.pending = b""  # bytes from the next segment on, not parsed yet
        self.skip = 0  # bytes still to pass over (the rest of a JPEG segment)
        self.size: tuple[int, int] | str | None = None
        self.started = False

    def feed(self, chunk: bytes) -> None:
        if self.size is not None:
            return
        if self.skip:  # within a segment that is passed over
            passed = min(self.skip, len(chunk))
            self.skip -= passed
            chunk = chunk[passed:]
        self.pending = self.pending + chunk if self.pending else chunk
        if self.png:
            self._png()
        else:
            self._jpeg()

    def result(self) -> tuple[int, int] | str:
        if self.size is not None:
            return self.size
        return "it ends before its header gives the size"

    def _png(self) -> None:
        data = self.pending
        if len(data) < 24:
            return
        if data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR":
            self.size = "no PNG header"
        else:
            self.size = struct.unpack(">II", data[16:24])

    def _jpeg(self) -> None:
        data, at = self.pending, 0
        if not self.started:
            if len(data) < 2:
                return
            if data[:2] != b"\xff\xd8":
                self.size = "no JPEG header"
                return
            self.started, at = True, 2
        while len(data) - at >= 4:
            if data[at] != 0xFF:  # junk between segments, which Pillow passes over too
                at += 1
                continue
            marker = data[at + 1]
            if marker == 0xFF:  # a fill byte
                at += 1
                continue
            if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
                at += 2
                continue
            if marker in (0xD9, 0xDA):
                self.size = "no frame header before its picture data"
                return
            if marker in _JPEG_FRAMES:
                if len(data) - at < 9:
                    break
                height, width = struct.unpack(">HH", data[at + 5 : at + 9])
                self.size = (width, height)
                return
            end = at + 2 + struct.unpack(">H", data[at + 2 : at + 4])[0]
            if end > len(data):
                self.skip, at = end - len(data), len(data)
                break
            at = end
        self.pending = data[at:]


class _HashingReader:
    def __init__(self, raw, sha) -> None:
        self.raw, self.sha, self.size = raw, sha, 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.sha.update(data)
        self.size += len(data)
        return data


def _check_shard(reading: ShardReading, listed: dict, entries: list[Entry]) -> list[Problem]:
    name = reading.shard
    if reading.error:
        return [Problem("shard-corrupt", name, reading.error)]
    refused = dict(reading.refused)
    problems = [Problem("member-type", f"{name}:{member}", why) for member, why in refused.items()]
    problems += [
        Problem(
            "member-repeated",
            f"{name}:{member}",
            f"stored {count} times: readers take the last copy, webdataset refuses the shard",
        )
        for member, count in reading.repeated.items()
    ]
    if reading.sha256 != listed["sha256"] or reading.bytes != listed["bytes"]:
        problems.append(
            Problem(
                "shard-sha256",
                name,
                f"sha256 {reading.sha256} ({reading.bytes} bytes) but shards.parquet says "
                f"{listed['sha256']} ({listed['bytes']} bytes)",
            )
        )
    expected: set[str] = set()
    for entry in entries:
        for ext in dict.fromkeys(entry.members):  # a member named twice is checked once
            member = layout_member(entry.key, ext)
            where = f"{name}:{member}"
            expected.add(member)
            if member not in reading.members:
                if member not in refused:
                    problems.append(Problem("member-missing", where, "not in the shard"))
            elif entry.sizes.get(ext) not in (None, reading.sizes[member]):
                problems.append(
                    Problem(
                        "member-size",
                        where,
                        f"{reading.sizes[member]} bytes, the manifest says {entry.sizes[ext]}",
                    )
                )
            elif ext in entry.hashes and reading.members[member] != entry.hashes[ext]:
                problems.append(
                    Problem("member-sha256", where, "content does not match the manifest's sha256")
                )
            elif ext in entry.pictures:
                problems += _check_header(where, reading.headers[member], entry.pictures[ext])
            elif ext == METADATA:
                problems += _check_naming(where, reading.metadata[member], entry.naming)
    for member in sorted(set(reading.members) - expected):
        problems.append(Problem("stray-member", f"{name}:{member}", "in the shard, not in any row"))
    if listed["samples"] != len(entries):
        problems.append(
            Problem(
                "shard-samples",
                name,
                f"shards.parquet counts {listed['samples']} samples, the manifests "
                f"list {len(entries)}",
            )
        )
    return problems


def _check_header(where: str, declared: tuple[int, int] | str, picture: Picture) -> list[Problem]:
    if isinstance(declared, str):
        return [Problem("member-header", where, declared)]
    width, height = declared
    if picture.exact and (width, height) != (picture.width, picture.height):
        return [
            Problem("member-header", where, f"its header declares {width}×{height}, {picture.said}")
        ]
    if not picture.exact and width * height > picture.width * picture.height:
        return [
            Problem(
                "member-header",
                where,
                f"its header declares {width}×{height}, more pixels than {picture.said}",
            )
        ]
    return []


def _check_naming(where: str, found: dict | str, naming: dict[str, str]) -> list[Problem]:
    """A <key>.json is a JSON object whose naming fields are its row's."""
    if isinstance(found, str):
        return [Problem("member-metadata", where, found)]
    wrong = [
        f"{name} {str(found[name])[:80]!r}, the row's {value!r}"
        if name in found
        else f"no {name}, the row's {value!r}"
        for name, value in naming.items()
        if found.get(name) != value
    ]
    return (
        [Problem("member-metadata", where, f"does not name its row: {'; '.join(wrong)}")]
        if wrong
        else []
    )
