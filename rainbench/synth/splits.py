"""Storing paired splits — synthetic renders and imported public sets — as shards
under `shards/synthetic/<split>/` with one `synthetic.parquet` row per pair.

Pairs are made in worker processes and written by this process in a fixed order,
shard after shard, each shard published and committed before the next begins. A
pair already in `synthetic.parquet` is never made again, so a re-run is a no-op
and a killed run, run again, writes exactly the shards an uninterrupted one would.

A job makes one pair, or several (`rainbench pairs`: one window of a sequence gives
a pair per target frame); a job that made several is done once any of its pairs is
stored, as they are committed together.
"""

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from rainbench import __version__
from rainbench.parallel import WorkerPool
from rainbench.shards import layout, manifest
from rainbench.shards.dataset import Dataset
from rainbench.shards.tar import ShardInfo, ShardWriter, publish
from rainbench.store import delete, listing, upload
from rainbench.synth.png import ZLIB_VERSION
from rainbench.versions import CAPTURE_LIBRARIES, installed_versions

# What a real pair estimated from a sequence adds to its row (manifest.SYNTHETIC).
_ESTIMATE_COLUMNS = (
    "frame_index",
    "window_start",
    "window_end",
    "confidence_mean",
    "moving_fraction",
    "gt_psnr_estimate",
)


@dataclass(frozen=True)
class PairJob:
    split: str
    job: str  # what makes this pair, e.g. "streak@1:<source key>:<seed>:0"; the key derives from it
    row: dict  # synthetic.parquet fields known before the pair is made
    task: object  # what the worker function needs, picklable

    @property
    def key(self) -> str:
        return hashlib.sha256(f"{self.split}\0{self.job}".encode()).hexdigest()[:24]

    def part_key(self, part: str | None) -> str:
        """The key of the pair `part` of a job that makes several; `key` when None."""
        if part is None:
            return self.key
        return hashlib.sha256(f"{self.split}\0{self.job}\0{part}".encode()).hexdigest()[:24]


@dataclass
class MadePair:
    members: dict[str, bytes]  # "rain.png", "gt.png", then optional layers ("streaks.png", …)
    metadata: dict  # width, height and the recipe's parameters; goes to <key>.json
    error: str | None = None  # why the pair could not be made (it is then skipped)
    part: str | None = None  # which of a job's several pairs this is; its key derives from it


@dataclass
class PairsSummary:
    stored: Counter = field(default_factory=Counter)  # per split
    existing: Counter = field(default_factory=Counter)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (job, why)
    shards: int = 0
    # Per split: pairs of an earlier version of how pairs are made, made again.
    replaced: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict:
        return {
            "stored": dict(self.stored),
            "existing": dict(self.existing),
            "replaced": {split: n for split, n in self.replaced.items() if n},
            "failed": self.failed,
            "shards": self.shards,
        }


def write_pairs(
    dataset: Dataset,
    jobs: list[PairJob],
    make: Callable[[object], MadePair | list[MadePair]],
    pool: WorkerPool,
    shard_bytes: int,
    run_id: str,
    progress: bool = False,
) -> PairsSummary:
    """Make and store every job's pair that the dataset does not hold yet.

    The caller holds the dataset's lock.
    """
    summary = PairsSummary()
    stored = manifest.read_manifest(dataset.synthetic_manifest, manifest.SYNTHETIC)
    # (split, job) of every stored pair: a job is done once its pairs are stored.
    stored_jobs = list(zip(stored["split"].to_pylist(), stored["job"].to_pylist(), strict=True))
    done = set(stored_jobs)
    for split in dict.fromkeys(job.split for job in jobs):
        _repair(dataset, split)
        # A job given twice is one job: its pairs stored twice would be scored twice.
        asked: dict[str, PairJob] = {}
        for job in jobs:
            if job.split == split:
                asked.setdefault(job.job, job)
        todo = [job for key, job in asked.items() if (split, key) not in done]
        wanted = {(split, key) for key in asked}
        summary.existing[split] = sum(1 for done in stored_jobs if done in wanted)
        bar = tqdm(total=len(todo), desc=split, unit="pair", disable=not progress or not todo)
        made = pool.map_ordered(make, [job.task for job in todo])
        filled = _fill_shards(
            dataset, split, zip(todo, made, strict=True), shard_bytes, summary, bar
        )
        for shard, info, rows in filled:
            _commit(dataset, split, shard, info, rows, run_id, shard_bytes)
            summary.shards += 1
            summary.stored[split] += len(rows)
        bar.close()
    return summary


def _fill_shards(
    dataset: Dataset,
    split: str,
    made: Iterator[tuple[PairJob, MadePair | list[MadePair]]],
    shard_bytes: int,
    summary: PairsSummary,
    bar: tqdm,
) -> Iterator[tuple[str, ShardInfo, list[dict]]]:
    """Write pairs into consecutive shards; yield (shard name, info, rows) per shard.

    A failure (a full disk) removes the shard being written, so no temporary is left.
    """
    index = _next_index(dataset, split)
    writer, rows = None, []
    try:
        for job, made_pairs in made:
            bar.update(1)
            made_pairs = made_pairs if isinstance(made_pairs, list) else [made_pairs]
            for pair in made_pairs:
                if pair.error:
                    summary.failed.append((_named(job, pair), pair.error))
                    continue
                if writer is None:
                    name = dataset.synthetic_shard_name(split, index)
                    writer, rows, size = ShardWriter(dataset.root / name), [], 0
                key = job.part_key(pair.part)
                members = _member_names(pair)
                for member in members[:-1]:
                    writer.add(layout.member(key, member), pair.members[member])
                writer.add(layout.member(key, layout.METADATA), _metadata_json(job, pair))
                rows.append(_row(job, pair, name, members))
                size += sum(len(data) for data in pair.members.values())
            # A job's pairs share a shard, so a job is stored whole or not at all.
            if writer is not None and size >= shard_bytes:
                yield name, _publish(dataset, writer), rows
                writer, index = None, index + 1
        if writer is not None:
            yield name, _publish(dataset, writer), rows
    except BaseException:
        if writer is not None:
            writer.discard()
        raise


def _publish(dataset: Dataset, writer: ShardWriter) -> ShardInfo:
    """Make a finished shard visible: renamed into place, or in a store uploaded to its
    key (a PUT is atomic) and not kept in the mirror."""
    with writer:
        info = writer.finish()
    if dataset.url is None:
        publish(writer.tmp_path, writer.path)
    else:
        upload(writer.tmp_path, f"{dataset.url}/{writer.path.relative_to(dataset.root).as_posix()}")
        writer.tmp_path.unlink()
    return info


def _named(job: PairJob, pair: MadePair) -> str:
    return job.job if pair.part is None else f"{job.job}:{pair.part}"


def _member_names(pair: MadePair) -> list[str]:
    return layout.pair_members(list(pair.members))


def _row(job: PairJob, pair: MadePair, shard: str, members: list[str]) -> dict:
    row = dict.fromkeys(manifest.SYNTHETIC.names)
    row.update(job.row)
    row.update(
        key=job.part_key(pair.part),
        split=job.split,
        job=job.job,
        shard=shard,
        width=pair.metadata["width"],
        height=pair.metadata["height"],
        members=members,
        rain_sha256=hashlib.sha256(pair.members[layout.RAIN]).hexdigest(),
        gt_sha256=hashlib.sha256(pair.members[layout.GROUND_TRUTH]).hexdigest(),
    )
    for name in ("recipe", "intensity", "compositing", *_ESTIMATE_COLUMNS):
        if name in pair.metadata:
            row[name] = pair.metadata[name]
    return row


def _metadata_json(job: PairJob, pair: MadePair) -> bytes:
    metadata = {
        **{k: v for k, v in job.row.items() if v is not None},
        **pair.metadata,
        "key": job.part_key(pair.part),
        "split": job.split,
        "job": job.job,
        "png_zlib_version": ZLIB_VERSION,
        "rainbench_version": __version__,
    }
    return json.dumps(metadata, sort_keys=True, ensure_ascii=False).encode()


def _commit(
    dataset: Dataset,
    split: str,
    name: str,
    info: ShardInfo,
    rows: list[dict],
    run_id: str,
    shard_bytes: int,
) -> None:
    for row in rows:
        row["run"] = run_id
    info_json = dataset.read_info()
    if _record_run(info_json, run_id, split, shard_bytes):
        # Recorded before the first rows that name it: a run killed before dataset.json's
        # counts are written has its pairs in the manifest, and they name this run.
        dataset.write_info(info_json)
    shards = manifest.read_manifest(dataset.shards_manifest, manifest.SHARDS)
    shard_row = {
        "shard": name,
        "split": split,
        "samples": len(rows),
        "bytes": info.bytes,
        "sha256": info.sha256,
        "ingest_run": run_id,
    }
    shards = pa.concat_tables([shards, manifest.rows_to_table([shard_row], manifest.SHARDS)])
    pairs = manifest.read_manifest(dataset.synthetic_manifest, manifest.SYNTHETIC)
    pairs = pa.concat_tables([pairs, manifest.rows_to_table(rows, manifest.SYNTHETIC)])
    # The shard first: a kill between the two writes leaves a listed shard without
    # rows, which _repair undoes on the next run.
    manifest.write_manifest(dataset.shards_manifest, shards.sort_by("shard"))
    manifest.write_manifest(
        dataset.synthetic_manifest, pairs.sort_by([("split", "ascending"), ("shard", "ascending")])
    )
    info_json["counts"].update(_counts(pairs, shards))
    _record_run(info_json, run_id, split, shard_bytes)
    dataset.write_info(info_json)


def _record_run(info: dict, run_id: str, split: str, shard_bytes: int) -> bool:
    """dataset.json's `pair_runs` entry of this run, as ingest keeps one per run in
    `runs`: the splits it stored pairs in, where its shards roll over, and the versions
    that made the pixels (another numpy may draw other rain from the same seed). Updated
    with each shard's commit, so what a killed run published is recorded. True when the
    entry is new, or new to `split`."""
    runs = info.setdefault("pair_runs", [])
    entry = next((run for run in runs if run["run_id"] == run_id), None)
    if entry is None:
        entry = {"run_id": run_id, "splits": [], "shard_bytes": shard_bytes}
        versions = {"rainbench": __version__, **installed_versions(CAPTURE_LIBRARIES)}
        entry |= {"tool_version": __version__, "versions": versions}
        runs.append(entry)
    new = split not in entry["splits"]
    entry["splits"] = list(dict.fromkeys([*entry["splits"], split]))
    entry["last_shard_at"] = datetime.now(UTC).isoformat()
    return new


def _counts(pairs: pa.Table, shards: pa.Table) -> dict:
    """dataset.json's counts that the paired splits change: pairs by split, and every
    listed shard as ingest counts them (the same counts whichever command ran last)."""
    return {
        "synthetic": dict(sorted(Counter(pairs["split"].to_pylist()).items())),
        "shards": shards.num_rows,
        "bytes": int(pc.sum(shards["bytes"]).as_py() or 0),
    }


def _next_index(dataset: Dataset, split: str) -> int:
    shards = manifest.read_manifest(dataset.shards_manifest, manifest.SHARDS)
    names = [
        n
        for n, s in zip(shards["shard"].to_pylist(), shards["split"].to_pylist(), strict=True)
        if s == split
    ]
    return 1 + max((int(n.rsplit("-", 1)[1].removesuffix(".tar")) for n in names), default=-1)


def _repair(dataset: Dataset, split: str) -> None:
    """Undo what a killed run left of this split, so it can be made again exactly.

    Unfinished shards and shards never listed are removed; so is a shard listed in
    shards.parquet whose rows never reached synthetic.parquet (a commit cut in two); and
    dataset.json's counts follow the manifests again (a kill before it was written).
    """
    folder = dataset.root / "shards" / "synthetic" / split
    pairs = manifest.read_manifest(dataset.synthetic_manifest, manifest.SYNTHETIC)
    with_rows = set(pairs["shard"].to_pylist())
    shards = manifest.read_manifest(dataset.shards_manifest, manifest.SHARDS)
    names, splits = shards["shard"].to_pylist(), shards["split"].to_pylist()
    keep = [n in with_rows or s != split for n, s in zip(names, splits, strict=True)]
    if not all(keep):
        shards = shards.filter(pa.array(keep))
        manifest.write_manifest(dataset.shards_manifest, shards)
    info = dataset.read_info()
    counts = _counts(pairs, shards)
    counted = {"synthetic": {}, **info["counts"]}  # none yet: no pairs, nothing to write
    if any(counted.get(name) != value for name, value in counts.items()):
        info["counts"].update(counts)
        dataset.write_info(info)
    listed = {n for n, k in zip(names, keep, strict=True) if k}
    for path in folder.iterdir() if folder.exists() else []:
        if path.relative_to(dataset.root).as_posix() not in listed:
            path.unlink()
    if dataset.url is not None:  # a killed run's uploads that its manifests never listed
        prefix = f"shards/synthetic/{split}"
        for name in listing(f"{dataset.url}/{prefix}"):
            if f"{prefix}/{name}" not in listed:
                delete(f"{dataset.url}/{prefix}/{name}")
