"""`rainbench verify`: prove that a dataset on disk is what its manifests say.

Each shard is read once, in one pass that hashes the whole file and every member:
the shard's sha256 must match shards.parquet, every manifest row's members must be
there with the right sha256, and nothing may be on disk that no manifest lists.
"""

import hashlib
import json
import os
import tarfile
from collections import defaultdict
from dataclasses import dataclass

from rainbench.parallel import distribute
from rainbench.shards import manifest
from rainbench.shards.dataset import Dataset, DatasetError
from rainbench.shards.tar import TMP_SUFFIX


@dataclass(frozen=True)
class Problem:
    kind: str  # e.g. shard-missing, shard-sha256, member-missing, stray-member
    where: str  # the shard or member concerned
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.where}: {self.detail}"


@dataclass(frozen=True)
class Entry:
    """What one manifest row expects in its shard."""

    key: str
    members: list[str]  # extensions, e.g. [jpg, json] or [rain.png, gt.png, json]
    hashes: dict[str, str]  # extension → expected sha256, for the members the row hashes


@dataclass(frozen=True)
class ShardReading:
    shard: str
    sha256: str | None
    bytes: int
    members: dict[str, str]  # member name → sha256
    error: str | None = None


def verify(dataset: Dataset, workers: int = os.cpu_count() or 1) -> list[Problem]:
    """Every problem found; an empty list means the dataset is sound."""
    if not dataset.exists():
        raise DatasetError(f"{dataset.root} is not a rainbench dataset (no dataset.json)")
    problems: list[Problem] = []
    if (dataset.state_dir / "run.json").exists():
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
    rows = [(row, "samples.parquet", {row["members"][0]: row["sha256"]}) for row in samples] + [
        (row, "synthetic.parquet", {"rain.png": row["rain_sha256"], "gt.png": row["gt_sha256"]})
        for row in pairs
    ]
    seen_keys: set[str] = set()
    for row, source, hashes in rows:
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
        rows_by_shard[row["shard"]].append(Entry(row["key"], row["members"], hashes))

    present = [dataset.root / name for name in listed if (dataset.root / name).exists()]
    for name in listed:
        if not (dataset.root / name).exists():
            problems.append(Problem("shard-missing", name, "listed in shards.parquet, not on disk"))
    tasks = [(path.as_posix(), path.relative_to(dataset.root).as_posix()) for path in present]
    for reading in distribute(read_shard, tasks, workers):
        problems += _check_shard(reading, listed[reading.shard], rows_by_shard[reading.shard])

    shards_dir = dataset.root / "shards"
    on_disk = sorted(shards_dir.rglob("*.tar")) if shards_dir.exists() else []
    for path in on_disk:
        name = path.relative_to(dataset.root).as_posix()
        if name not in listed:
            problems.append(Problem("stray-shard", name, "on disk but not in shards.parquet"))
    for path in sorted(shards_dir.rglob(f"*{TMP_SUFFIX}")) if shards_dir.exists() else []:
        problems.append(
            Problem(
                "stray-temporary",
                path.relative_to(dataset.root).as_posix(),
                "a shard that was never finished",
            )
        )
    info = dataset.read_info()
    counted = info.get("counts", {}).get("samples")
    if counted != len(samples):
        problems.append(
            Problem(
                "dataset-json",
                "dataset.json",
                f"counts {counted} samples, samples.parquet has {len(samples)}",
            )
        )
    return problems


def read_shard(task: tuple[str, str]) -> ShardReading:
    path, name = task
    whole = hashlib.sha256()
    members: dict[str, str] = {}
    with open(path, "rb") as raw:
        hashing = _HashingReader(raw, whole)
        try:
            with tarfile.open(fileobj=hashing, mode="r|") as archive:
                for member in archive:
                    data = archive.extractfile(member).read() if member.isfile() else b""
                    members[member.name] = hashlib.sha256(data).hexdigest()
        except (tarfile.TarError, OSError, EOFError) as error:
            return ShardReading(name, None, 0, members, f"unreadable tar: {error}")
        while hashing.read(1 << 22):
            pass
    return ShardReading(name, whole.hexdigest(), hashing.size, members)


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
    problems = []
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
            member = f"{entry.key}.{ext}"
            expected.add(member)
            if member not in reading.members:
                problems.append(Problem("member-missing", f"{name}:{member}", "not in the shard"))
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


def problems_to_json(problems: list[Problem]) -> str:
    return json.dumps([p.__dict__ for p in problems], indent=2)
