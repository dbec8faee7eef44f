"""Phase 2, plan: turn the run's probes into manifest rows and units of work.

Exact duplicates (same stored bytes) are refused and recorded; near-duplicates
are kept and point at the capture they repeat, and share its split so the same
scene never straddles train and test. Accepted captures are grouped per split
into shards of about `shard_bytes`. Everything here is a pure function of the
existing manifests and the probes, so a resumed run plans exactly the same.
"""

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rainbench.capture.phash import HashIndex
from rainbench.capture.probe import Probe
from rainbench.capture.reject import Reason
from rainbench.ingest.split import split_for_key
from rainbench.ingest.tag import auto_tag_columns, feature_columns
from rainbench.shards.dataset import Dataset, DatasetError
from rainbench.tagging.tagger import Tagger


@dataclass(frozen=True)
class PlanSettings:
    layer: str
    fractions: dict[str, float]
    shard_bytes: int
    near_dup_bits: int
    run_id: str
    tagger: Tagger  # the dataset's fitted tagger, or the shipped one


@dataclass
class Plan:
    rows: list[dict] = field(default_factory=list)  # new samples, `shard` assigned
    rejects: list[dict] = field(default_factory=list)
    # Stored captures seen again, touched or replaced by a copy (same bytes, same place):
    # key → the file's [size, mtime_ns, inode] now, which its manifest row takes on.
    seen_again: dict[str, list[int]] = field(default_factory=dict)

    @property
    def unchanged(self) -> int:
        return len(self.seen_again)

    def units(self) -> dict[str, list[dict]]:
        """Rows grouped by shard, in plan order: one unit of work per shard."""
        units: dict[str, list[dict]] = {}
        for row in self.rows:
            units.setdefault(row["shard"], []).append(row)
        return units


def make_plan(
    dataset: Dataset,
    probes: list[Probe],
    samples: pa.Table,
    shards: pa.Table,
    settings: PlanSettings,
) -> Plan:
    plan = Plan()
    known = _KnownCaptures(samples, probes)
    accepted: list[Probe] = []
    for result in sorted(probes, key=lambda p: (p.source.root, p.source.path)):
        if result.reason is not None:
            plan.rejects.append(reject_row(result, result.reason, result.message, settings.run_id))
            continue
        original = known.by_sha.get(result.sha256)
        if original is None:
            if known.sha_of_key.get(result.key, result.sha256) != result.sha256:
                raise DatasetError(f"key collision on {result.key}: two contents share a key")
            known.add_sha(result)
            accepted.append(result)
        elif original == (result.source.root, result.source.path, result.key):
            source = result.source
            plan.seen_again[result.key] = [source.size, source.mtime_ns, source.inode]
        else:
            # A name under another root is given whole, or it would read as the file itself.
            same_root = original[0] == result.source.root
            where = original[1] if same_root else f"{original[0].rstrip('/')}/{original[1]}"
            message = f"same bytes as {where} (key {original[2]})"
            row = reject_row(result, Reason.DUPLICATE, message, settings.run_id)
            row["duplicate_of"] = original[2]
            plan.rejects.append(row)
    links = _near_duplicates(accepted, samples, settings.near_dup_bits)
    # Of the stored splits, only those a new capture may take: its group's root's.
    roots = [links[r.key][0] if r.key in links else r.key for r in accepted]
    stored = _rows_of(samples.select(["key", "split"]), "key", roots)
    splits = {row["key"]: row["split"] for row in stored}
    for result in accepted:
        near = links.get(result.key)
        root = near[0] if near else result.key
        split = splits.get(root) or split_for_key(root, settings.fractions)
        splits[result.key] = split
        plan.rows.append(sample_row(result, split, settings, near))
    _assign_shards(dataset, plan.rows, shards, settings.shard_bytes)
    return plan


def _rows_of(table: pa.Table, column: str, values: list[str]) -> list[dict]:
    """The rows of `table` (in its order) whose `column` holds one of `values`: what a
    plan looks up of a large dataset, without a Python object for each of its rows."""
    wanted = pc.is_in(table[column], value_set=pa.array(values, pa.string()))
    return table.filter(wanted).to_pylist()


class _KnownCaptures:
    """The stored captures that share a content or a key with one of `probes`."""

    def __init__(self, samples: pa.Table, probes: list[Probe]):
        samples = samples.select(["sha256", "source_root", "source_path", "key"])
        read = [p for p in probes if p.reason is None]  # a refused file is looked up in none
        shas = pa.array([p.sha256 for p in read], pa.string())
        keys = pa.array([p.key for p in read], pa.string())
        shared = pc.or_(
            pc.is_in(samples["sha256"], value_set=shas), pc.is_in(samples["key"], value_set=keys)
        )
        columns = samples.filter(shared).to_pylist()
        self.by_sha = {c["sha256"]: (c["source_root"], c["source_path"], c["key"]) for c in columns}
        self.sha_of_key = {c["key"]: c["sha256"] for c in columns}

    def add_sha(self, result: Probe) -> None:
        self.by_sha[result.sha256] = (result.source.root, result.source.path, result.key)
        self.sha_of_key[result.key] = result.sha256


def _near_duplicates(
    accepted: list[Probe], samples: pa.Table, max_bits: int
) -> dict[str, tuple[str, int]]:
    """For each new capture that nearly repeats an earlier one: (root key, distance).

    Earlier means already in the dataset, or before it in this run's order. The
    root is the first capture of the group, so groups never chain into each other.
    Every capture's hash is indexed at once; a capture's search is then limited to those
    before it, as if they had been added one by one.
    """
    stored = samples.num_rows
    hashes = np.empty(stored + len(accepted), dtype=np.uint64)
    start = 0
    for piece in samples["phash"].chunks:  # a piece at a time: no Python str per capture
        hashes[start : start + len(piece)] = np.array(
            [int(h, 16) for h in piece.to_pylist()], dtype=np.uint64
        )
        start += len(piece)
    hashes[stored:] = np.array([result.phash[0] for result in accepted], dtype=np.uint64)
    index = HashIndex(hashes, max_bits)
    roots: list[str] = []  # of this run's captures; a stored one's is looked up when found

    def root_of(earlier: int) -> str:
        if earlier >= stored:
            return roots[earlier - stored]
        return samples["near_dup_of"][earlier].as_py() or samples["key"][earlier].as_py()

    links: dict[str, tuple[str, int]] = {}
    for result in accepted:
        found = index.nearest(result.phash, stored + len(roots))
        # A stored capture may name this one as its root: it was its group's root in a run
        # that lost it before its write, and is its root again now, no near-duplicate of
        # itself.
        root = root_of(found[1]) if found is not None else result.key
        if root == result.key:
            roots.append(result.key)
        else:
            links[result.key] = (root, found[0])
            roots.append(root)
    return links


def _assign_shards(dataset: Dataset, rows: list[dict], shards: pa.Table, shard_bytes: int) -> None:
    next_index: dict[str, int] = {}
    for name, split in zip(shards["shard"].to_pylist(), shards["split"].to_pylist(), strict=True):
        index = int(name.rsplit("-", 1)[1].removesuffix(".tar"))
        next_index[split] = max(next_index.get(split, 0), index + 1)
    filled: dict[str, int] = {}
    current: dict[str, str] = {}
    for row in rows:
        split = row["split"]
        if split not in current or filled[split] >= shard_bytes:
            index = next_index.get(split, 0)
            next_index[split] = index + 1
            current[split], filled[split] = dataset.shard_name(split, index), 0
        row["shard"] = current[split]
        filled[split] += row["bytes"]


def sample_row(
    result: Probe, split: str, settings: PlanSettings, near: tuple[str, int] | None
) -> dict:
    exif = result.exif
    return {
        "key": result.key,
        "sha256": result.sha256,
        "shard": None,
        "split": split,
        "layer": settings.layer,
        "width": result.width,
        "height": result.height,
        "format": result.format,
        "bytes": result.bytes,
        "source_path": result.source.path,
        "captured_at": exif.captured_at,
        "camera_make": exif.camera_make,
        "camera_model": exif.camera_model,
        "members": [result.ext, *sorted(result.extra_members), "json"],
        "mode": result.mode,
        "kind": result.kind,
        "codec": result.codec,
        "frame_rate": result.frame_rate,
        "duration_s": result.duration_s,
        "frames": result.frames,
        "rotation": result.rotation,
        # A video is a sequence of its own; bursts of stills are grouped once all are in.
        "sequence": result.key if result.kind == "video" else None,
        "sequence_index": None,
        "orientation": exif.orientation,
        "lens_model": exif.lens_model,
        "exposure_time": exif.exposure_time,
        "f_number": exif.f_number,
        "iso": exif.iso,
        "focal_length_mm": exif.focal_length_mm,
        "gps_lat": exif.gps_lat,
        "gps_lon": exif.gps_lon,
        "gps_alt": exif.gps_alt,
        "phash": f"{result.phash[0]:016x}",
        "near_dup_of": near[0] if near else None,
        "near_dup_distance": near[1] if near else None,
        "source_root": result.source.root,
        "source_size": result.source.size,
        "source_mtime_ns": result.source.mtime_ns,
        "source_inode": result.source.inode,
        "source_sha256": result.source_sha256,
        "ingest_run": settings.run_id,
        **auto_tag_columns(result.features, settings.layer, result.height, settings.tagger),
        **feature_columns(result.features),
    }


def reject_row(result: Probe, reason: Reason, message: str | None, run_id: str) -> dict:
    return {
        "source_path": result.source.path,
        "reason": str(reason),
        "message": message,
        "duplicate_of": None,
        "source_root": result.source.root,
        "source_size": result.source.size,
        "source_mtime_ns": result.source.mtime_ns,
        "source_inode": result.source.inode,
        "ingest_run": run_id,
    }
