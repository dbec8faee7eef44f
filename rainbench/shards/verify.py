"""`rainbench verify`: prove that a dataset on disk is what its manifests say.

Each shard is read once, in one pass that hashes the whole file and every member:
the shard's sha256 must match shards.parquet, every manifest row's members must be
there with the right sha256, and nothing may be on disk that no manifest lists. A
video member must open and hold the frames its row counts (its packets are demuxed,
nothing is decoded; skipped where PyAV is not installed). Nothing is decoded as a
picture.
Members are hashed in chunks as they stream by; one that is not a regular file (a
link, a sparse file, a device) is reported, never read. A dataset in an object store is
checked the same way: each shard object streams by once (no local copy), and the
store's listing stands for what is on disk.
"""

import hashlib
import os
import tarfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from rainbench.capture.reject import CaptureRejected, Reason
from rainbench.capture.video import VideoFrames
from rainbench.errors import first_line
from rainbench.files import regular_file
from rainbench.parallel import distribute
from rainbench.shards import manifest
from rainbench.shards.dataset import Dataset, DatasetError
from rainbench.shards.layout import GROUND_TRUTH, RAIN
from rainbench.shards.layout import member as layout_member
from rainbench.shards.members import ShardError, irregular, open_shard, shard_path, shard_url
from rainbench.shards.tar import TMP_SUFFIX
from rainbench.store import is_url, listing, open_stream

_CHUNK = 1 << 22


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
class Entry:
    """What one manifest row expects in its shard."""

    key: str
    members: list[str]  # extensions, e.g. [jpg, json] or [rain.png, gt.png, json]
    hashes: dict[str, str]  # extension → expected sha256, for the members the row hashes
    sizes: dict[str, int | None] = field(default_factory=dict)  # extension → expected bytes


@dataclass(frozen=True)
class ShardReading:
    shard: str
    sha256: str | None
    bytes: int
    members: dict[str, str]  # member name → sha256
    sizes: dict[str, int] = field(default_factory=dict)  # member name → bytes
    error: str | None = None
    refused: tuple[tuple[str, str], ...] = ()  # (member name, why) of members not read


def verify(dataset: Dataset, workers: int = os.cpu_count() or 1) -> list[Problem]:
    """Every problem found; an empty list means the dataset is sound."""
    pending = (dataset.state_dir / "run.json").exists()
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
        raise DatasetError(
            f"{dataset.url or dataset.root} is not a rainbench dataset (no dataset.json)"
        )
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
    samples = manifest.read_manifest(dataset.samples_manifest, manifest.SAMPLES).to_pylist()
    pairs = manifest.read_manifest(dataset.synthetic_manifest, manifest.SYNTHETIC).to_pylist()
    shards = manifest.read_manifest(dataset.shards_manifest, manifest.SHARDS).to_pylist()
    listed = {row["shard"]: row for row in shards}
    rows_by_shard: dict[str, list[Entry]] = defaultdict(list)
    rows = [
        (
            row,
            "samples.parquet",
            {row["members"][0]: row["sha256"]},
            {row["members"][0]: row["bytes"]},
        )
        for row in samples
    ] + [
        (row, "synthetic.parquet", {RAIN: row["rain_sha256"], GROUND_TRUTH: row["gt_sha256"]}, {})
        for row in pairs
    ]
    videos: dict[str, list[tuple[str, int | None]]] = defaultdict(list)
    for row in samples:
        if row["kind"] == "video":
            videos[row["shard"]].append(
                (layout_member(row["key"], row["members"][0]), row["frames"])
            )
    seen_keys: set[str] = set()
    for row, source, hashes, sizes in rows:
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
        rows_by_shard[row["shard"]].append(Entry(row["key"], row["members"], hashes, sizes))

    stored = _stored_names(dataset)
    tasks = []
    for name in listed:
        try:
            path = shard_path(dataset.root, name)
            url = shard_url(dataset.root, name)
        except ShardError as error:
            problems.append(Problem("shard-outside", name, str(error)))
            continue
        if path.exists() if url is None else name in stored:
            tasks.append((url or path.as_posix(), name))
        else:
            problems.append(Problem("shard-missing", name, "listed in shards.parquet, not on disk"))
    for reading in distribute(read_shard, tasks, workers):
        problems += _check_shard(reading, listed[reading.shard], rows_by_shard[reading.shard])
    checks = [(dataset.root.as_posix(), name, videos[name]) for _, name in tasks if videos[name]]
    for found in distribute(check_videos, checks, workers):
        problems += found

    for name in stored:
        if name.endswith(".tar") and name not in listed:
            problems.append(Problem("stray-shard", name, "on disk but not in shards.parquet"))
    for name in stored:
        if name.endswith(TMP_SUFFIX):
            problems.append(Problem("stray-temporary", name, "a shard that was never finished"))
    counts = info.get("counts")
    counted = counts.get("samples") if isinstance(counts, dict) else None
    if counted != len(samples):
        problems.append(
            Problem(
                "dataset-json",
                "dataset.json",
                f"counts {counted} samples, samples.parquet has {len(samples)}",
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
    refused: list[tuple[str, str]] = []
    if not is_url(path):
        try:
            regular_file(Path(path))
        except OSError as error:
            return ShardReading(name, None, 0, {}, error=f"unreadable: {first_line(error)}")
    with open_stream(path) if is_url(path) else open(path, "rb") as raw:
        hashing = _HashingReader(raw, whole)
        try:
            with tarfile.open(fileobj=hashing, mode="r|") as archive:
                for member in archive:
                    if why := irregular(member):
                        refused.append((member.name, why))
                        continue
                    members[member.name] = _member_sha256(archive.extractfile(member))
                    sizes[member.name] = member.size
        except (tarfile.TarError, OSError, EOFError) as error:
            return ShardReading(name, None, 0, members, error=f"unreadable tar: {error}")
        while hashing.read(_CHUNK):
            pass
    return ShardReading(
        name, whole.hexdigest(), hashing.size, members, sizes, refused=tuple(refused)
    )


def check_videos(task: tuple[str, str, list[tuple[str, int | None]]]) -> list[Problem]:
    """Each of the shard's video members (name, frames the manifest counts) opens as a
    video with that many frames. A member missing or not regular is left to the hash
    pass, which reports it; without PyAV nothing is checked."""
    root, shard, videos = task
    problems: list[Problem] = []
    try:
        tar = open_shard(Path(root), shard)
    except ShardError:
        return problems
    with tar:
        for name, frames in videos:
            where = f"{shard}:{name}"
            try:
                info = tar.getmember(name)
                if irregular(info):
                    continue
                with VideoFrames(tar.extractfile(info)) as video:
                    counted = len(video)
            except KeyError:
                continue
            except (OSError, tarfile.TarError, EOFError) as error:
                problems.append(Problem("video-unreadable", where, str(error)))
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
    return problems


def _member_sha256(handle) -> str:
    sha = hashlib.sha256()
    while chunk := handle.read(_CHUNK):
        sha.update(chunk)
    return sha.hexdigest()


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
        for ext in entry.members:
            member = layout_member(entry.key, ext)
            expected.add(member)
            if member not in reading.members:
                if member not in refused:
                    problems.append(
                        Problem("member-missing", f"{name}:{member}", "not in the shard")
                    )
            elif entry.sizes.get(ext) not in (None, reading.sizes[member]):
                problems.append(
                    Problem(
                        "member-size",
                        f"{name}:{member}",
                        f"{reading.sizes[member]} bytes, the manifest says {entry.sizes[ext]}",
                    )
                )
            elif ext in entry.hashes and reading.members[member] != entry.hashes[ext]:
                problems.append(
                    Problem(
                        "member-sha256",
                        f"{name}:{member}",
                        "content does not match the manifest's sha256",
                    )
                )
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
