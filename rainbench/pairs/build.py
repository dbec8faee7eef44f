"""`rainbench pairs`: store real pairs estimated from a dataset's sequences — each video
capture, each burst of stills from a fixed camera — as a real-paired split.

A sequence is cut into windows (`rainbench.pairs.estimate.plan_windows`); each window
is one job that estimates the background of its frames and makes a pair per target
frame: the frame as decoded (`<key>.rain.png`), the background in that frame's
coordinates (`<key>.gt.png`) and the confidence map (`<key>.confidence.png`). When the
sequence holds rain-free frames (before or after the rain), they are the ground truth
instead. Storing goes through `rainbench.synth.splits.write_pairs`: a re-run is a
no-op, a killed run resumes, the same inputs give the same bytes.
"""

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from rainbench.capture.formats import FORMATS
from rainbench.capture.reject import CaptureRejected
from rainbench.errors import first_line
from rainbench.pairs.estimate import (
    RAIN_FREE,
    EstimateOptions,
    FrameSource,
    Window,
    check_options,
    estimate_window,
    find_rain_free,
    plan_windows,
)
from rainbench.parallel import WorkerPool, available_memory
from rainbench.shards import manifest
from rainbench.shards.dataset import Dataset, DatasetError, new_run_id, writing
from rainbench.shards.layout import CONFIDENCE, GROUND_TRUTH, PREVIEW, RAIN, member
from rainbench.shards.members import ShardError, open_shard, read_member, read_upright
from rainbench.synth.importers import ESTIMATED
from rainbench.synth.png import encode_png
from rainbench.synth.splits import MadePair, PairJob, PairsSummary, write_pairs

# The version of how pairs are made; part of every job. 2: a frame's confidence counts
# the clean samples other than the frame itself, and a frame too little of which is
# confident is not paired.
VERSION = "2"
DEFAULT_NAME = "lab-pairs"
DEFAULT_SHARD_BYTES = 1_000_000_000
_RESERVED = {"train", "val", "test", "synthetic"}
# What one worker holds to estimate a window: a base, the video's bytes, and about three
# times the window's 8-bit frames (the frames, registered in place, and the float32 row
# bands; benchmarks/pairs_cost.py: 590 MB for a 1080p window of 193 MB of frames).
_WORKER_BASE_BYTES = 256 << 20
_WINDOW_FRAME_COPIES = 3


@dataclass(frozen=True)
class PairsOptions:
    name: str = DEFAULT_NAME  # the real-paired split's name
    estimate: EstimateOptions = field(default_factory=EstimateOptions)
    sequences: tuple[str, ...] = ()  # only these sequences (keys); all rainy ones when empty
    shard_bytes: int = DEFAULT_SHARD_BYTES
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)


@dataclass(frozen=True)
class Sequence:
    """A sequence as the manifest holds it: one video, or a burst's stills in order."""

    key: str  # the video's key, or the burst's first still's
    frames: int
    rows: tuple[dict, ...]  # the video's row, or the stills' rows in burst order

    @property
    def video(self) -> bool:
        return self.rows[0].get("kind") == "video"


@dataclass(frozen=True)
class SequenceTask:
    root: Path
    sequence: Sequence
    options: EstimateOptions


@dataclass(frozen=True)
class WindowTask:
    root: Path
    sequence: Sequence
    window: Window
    rain_free: tuple[int, ...]
    options: EstimateOptions


def build_pairs(root: str | Path, options: PairsOptions, progress: bool = False) -> PairsSummary:
    """Add the pairs of every window of every chosen sequence that the split lacks."""
    try:
        check_options(options.estimate)
    except ValueError as error:
        raise DatasetError(str(error)) from None
    with writing(root) as dataset:
        _check_name(dataset, options.name)
        found = find_sequences(dataset, options.sequences)
        least = options.estimate.min_frames
        sequences = [s for s in found if s.frames >= least]
        if not sequences:
            raise DatasetError(f"nothing to pair in {dataset.location}: {_why_none(found, least)}")
        workers = min(options.workers, _workers_for_memory(sequences, options.estimate))
        with WorkerPool(workers) as pool:
            summary = _build(dataset, sequences, options, pool, progress)
        # Said, not silently dropped: a burst cut short or a clip too brief to pair.
        summary.failed[:0] = [
            (s.key, f"{s.frames} frame{'s' * (s.frames != 1)}, fewer than {least}: not paired")
            for s in found
            if s.frames < least
        ]
        return summary


def _why_none(found: list[Sequence], least: int) -> str:
    if not found:
        return (
            "no rainy video and no burst of stills (stills from one camera at one size, "
            "shot close together)"
        )
    return (
        f"{'its sequence has' if len(found) == 1 else f'all {len(found)} sequences have'} "
        f"fewer than {least} frames"
    )


def _build(
    dataset: Dataset,
    sequences: list[Sequence],
    options: PairsOptions,
    pool: WorkerPool,
    progress: bool,
) -> PairsSummary:
    """The pairs of `sequences`' windows that the split lacks, made in `pool` (the caller
    holds the dataset's lock)."""
    digest = _digest(options.estimate)
    stored = manifest.read_manifest(dataset.synthetic_manifest, manifest.SYNTHETIC)
    splits, stored_jobs = stored["split"].to_pylist(), stored["job"].to_pylist()
    done = {job for split, job in zip(splits, stored_jobs, strict=True) if split == options.name}
    # A split holds the pairs of one version and one set of options: two estimates of the
    # same frames in one split would be scored twice. Pairs made by an earlier version
    # are made again, as this version makes them, from the sequences the dataset holds.
    earlier = sum(
        split == options.name and not job.startswith(f"pairs@{VERSION}:")
        for split, job in zip(splits, stored_jobs, strict=True)
    )
    if earlier:
        _drop_split(dataset, options.name)
        done = set()
    if any(not job.endswith(f":{digest}") for job in done):
        raise DatasetError(
            f"--name {options.name}: the split holds pairs made with other options; give "
            "these another --name, or the same options again"
        )
    planned = [
        (sequence, window, _job_name(sequence, window, digest))
        for sequence in sequences
        for window in plan_windows(sequence.frames, options.estimate)
    ]
    pending = {s.key: s for s, _, job in planned if job not in done}
    rain_free = dict.fromkeys((s.key for s in sequences), ())
    if options.estimate.prefer_rain_free and pending:
        tasks = [SequenceTask(dataset.root, s, options.estimate) for s in pending.values()]
        found = pool.map_ordered(_rain_free, tasks)
        rain_free.update(zip(pending, found, strict=True))
    jobs = [
        PairJob(
            split=options.name,
            job=job,
            row={
                "recipe_version": VERSION,
                "source_key": sequence.key,
                "group": sequence.key,  # a sequence never straddles two splits
            },
            task=WindowTask(
                dataset.root, sequence, window, rain_free[sequence.key], options.estimate
            ),
        )
        for sequence, window, job in planned
    ]
    summary = write_pairs(
        dataset, jobs, make_window, pool, options.shard_bytes, new_run_id(), progress
    )
    summary.replaced[options.name] = earlier
    return summary


def _drop_split(dataset: Dataset, name: str) -> None:
    """The split's rows out of synthetic.parquet, in one atomic write; its shards, listed
    without rows then, are removed when write_pairs repairs the split."""
    pairs = manifest.read_manifest(dataset.synthetic_manifest, manifest.SYNTHETIC)
    kept = pairs.filter(pc.not_equal(pairs["split"], name))
    manifest.write_manifest(dataset.synthetic_manifest, kept)
    info = dataset.read_info()
    info["counts"].get("synthetic", {}).pop(name, None)
    dataset.write_info(info)


def _workers_for_memory(sequences: list[Sequence], options: EstimateOptions) -> int:
    """How many workers the free memory holds, each with the largest window: at least 1."""
    if not sequences:
        return 1
    need = max(
        _WORKER_BASE_BYTES
        + (sequence.rows[0]["bytes"] if sequence.video else 0)
        + _WINDOW_FRAME_COPIES
        * min(options.window, sequence.frames)
        * 3
        * max(row["width"] * row["height"] for row in sequence.rows)
        for sequence in sequences
    )
    return max(1, available_memory() // need)


def find_sequences(dataset: Dataset, keys: tuple[str, ...] = ()) -> list[Sequence]:
    """The rainy sequences of the dataset, by key: videos and bursts of stills.

    Asking for a key that is no sequence is an error, so a typo is not a silent no-op.
    """
    samples = manifest.read_manifest(dataset.samples_manifest, manifest.SAMPLES)
    rows = [row for row in samples.to_pylist() if row["layer"] == "rainy"]
    videos = [
        Sequence(row["key"], row["frames"] or 0, (row,))
        for row in rows
        if row.get("kind") == "video"
    ]
    bursts: dict[str, list[dict]] = {}
    for row in rows:
        if row.get("kind") != "video" and row.get("sequence"):
            bursts.setdefault(row["sequence"], []).append(row)
    stills = [
        Sequence(key, len(members), tuple(sorted(members, key=lambda r: r["sequence_index"])))
        for key, members in bursts.items()
    ]
    found = {s.key: s for s in sorted(videos + stills, key=lambda s: s.key)}
    unknown = [key for key in keys if key not in found]
    if unknown:
        raise DatasetError(
            f"--sequence {unknown[0]}: no rainy video or burst of stills has that key "
            f"in {dataset.location}"
        )
    return [found[key] for key in keys] if keys else list(found.values())


# A sequence that cannot be read: a missing or damaged shard or member, a video member
# whose stream no longer decodes. Its windows report why; the other sequences go on.
_UNREADABLE = (ShardError, DatasetError, CaptureRejected, ValueError, OSError)


def make_window(task: WindowTask) -> list[MadePair]:
    """The pairs of one window: one per target frame that is paired, and one carrying
    the reason for each target that is not (too much moves, registration failed)."""
    try:
        frames = _Remembered(open_frames(task.root, task.sequence))
        estimates = estimate_window(frames, task.window, task.rain_free, task.options)
        made = []
        for estimate in estimates:
            if estimate.skipped == RAIN_FREE:  # clean already: its own ground truth
                continue
            part = str(estimate.index)
            if estimate.skipped is not None:
                why = f"frame {estimate.index}: {estimate.skipped}"
                made.append(MadePair({}, {}, error=why, part=part))
                continue
            rain = frames.read([estimate.index])[0]
            made.append(_pair(estimate, rain, task.options, part))
        return made
    except _UNREADABLE as error:
        return [MadePair({}, {}, error=first_line(error))]


def _pair(estimate, rain: np.ndarray, options: EstimateOptions, part: str) -> MadePair:
    height, width = rain.shape[:2]
    confidence = estimate.confidence
    members = {
        RAIN: encode_png(np.ascontiguousarray(rain)),
        GROUND_TRUTH: encode_png(estimate.gt),
        CONFIDENCE: encode_png(confidence),
    }
    metadata = {
        "width": width,
        "height": height,
        "recipe": f"{ESTIMATED}{estimate.method}",
        "frame_index": estimate.index,
        "window_start": estimate.window[0],
        "window_end": estimate.window[1],
        "confidence_mean": round(float(confidence.mean()) / 255, 6),
        "moving_fraction": round(float(estimate.moving), 6),
        "gt_psnr_estimate": round(float(estimate.gt_psnr_estimate), 4),
        "shift": [round(float(v), 4) for v in estimate.shift],
        "estimate_options": asdict(options),
    }
    return MadePair(members, metadata, part=part)


def _rain_free(task: SequenceTask) -> tuple[int, ...]:
    """The sequence's rain-free frames; none when it cannot be read (its windows then
    report why)."""
    try:
        return tuple(find_rain_free(open_frames(task.root, task.sequence), task.options))
    except _UNREADABLE:
        return ()


def open_frames(root: Path, sequence: Sequence) -> FrameSource:
    """The sequence's frames, addressed by index: a video's decoded frames, or a burst's
    stills decoded upright."""
    if sequence.video:
        return _VideoFrames(root, sequence.rows[0])
    return _BurstFrames(root, sequence.rows)


class _VideoFrames:
    def __init__(self, root: Path, row: dict):
        from rainbench.capture.video import VideoFrames

        shard, ext = row["shard"], FORMATS[row["format"]].ext
        with open_shard(root, shard) as tar:
            data = read_member(tar, shard, member(row["key"], ext), row["bytes"])
        self._frames = VideoFrames(data)

    def __len__(self) -> int:
        return len(self._frames)

    def read(self, indices) -> np.ndarray:
        return self._frames.read(list(indices))


class _BurstFrames:
    def __init__(self, root: Path, rows: tuple[dict, ...]):
        self._root, self._rows = root, rows

    def __len__(self) -> int:
        return len(self._rows)

    def read(self, indices) -> np.ndarray:
        return np.stack([self._still(self._rows[index]) for index in indices])

    def _still(self, row: dict) -> np.ndarray:
        fmt = FORMATS[row["format"]]
        # A RAW capture's pixels are its rendered preview; anything else is decoded as stored.
        ext, fmt, stored = (
            (PREVIEW, FORMATS["jpeg"], None) if fmt.raw else (fmt.ext, fmt, row["bytes"])
        )
        with open_shard(self._root, row["shard"]) as tar:
            image = read_upright(
                tar, row["shard"], member(row["key"], ext), fmt, row["width"], row["height"], stored
            )
        return np.asarray(image.convert("RGB"))


class _Remembered:
    """A frame source that keeps the frames of its last read, so the rainy frame of a
    pair is not decoded twice."""

    def __init__(self, frames: FrameSource):
        self._frames, self._kept = frames, {}

    def __len__(self) -> int:
        return len(self._frames)

    def read(self, indices) -> np.ndarray:
        indices = list(indices)
        missing = [index for index in indices if index not in self._kept]
        if missing:
            self._kept = {
                **{i: self._kept[i] for i in indices if i in self._kept},
                **dict(zip(missing, self._frames.read(missing), strict=True)),
            }
        return np.stack([self._kept[index] for index in indices])


def _check_name(dataset: Dataset, name: str) -> None:
    if not re.fullmatch(manifest.SPLIT, name) or name in _RESERVED or name.startswith("syn-"):
        raise DatasetError(
            f"--name {name[:40]!r}{'…' if len(name) > 40 else ''}: use at most "
            f"{manifest.SPLIT_MAX} lower-case letters, digits, - and _; not train, val, "
            "test, synthetic or a syn-* name"
        )
    stored = manifest.read_manifest(dataset.synthetic_manifest, manifest.SYNTHETIC)
    others = {
        recipe
        for split, recipe in zip(
            stored["split"].to_pylist(), stored["recipe"].to_pylist(), strict=True
        )
        if split == name and not recipe.startswith(ESTIMATED)
    }
    if others:
        raise DatasetError(
            f"--name {name}: the split holds pairs made otherwise ({sorted(others)[0]}); "
            "choose another name"
        )


def _digest(options: EstimateOptions) -> str:
    text = json.dumps(asdict(options), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _job_name(sequence: Sequence, window: Window, digest: str) -> str:
    return f"pairs@{VERSION}:{sequence.key}:{window.start}-{window.end}:{digest}"
