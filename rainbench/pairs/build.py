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
import posixpath
import re
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rainbench.capture.decode import PixelCapExceeded
from rainbench.capture.formats import FORMATS
from rainbench.capture.reject import CaptureRejected
from rainbench.capture.video import MAX_FRAMES
from rainbench.errors import first_line
from rainbench.pairs.estimate import (
    MIN_SIDE,
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
from rainbench.shards.layout import CONFIDENCE, GROUND_TRUTH, METADATA, PREVIEW, RAIN, member
from rainbench.shards.members import (
    ShardError,
    open_member,
    open_shard,
    read_member,
    read_upright,
)
from rainbench.synth.importers import ESTIMATED
from rainbench.synth.png import encode_png
from rainbench.synth.protocol import PROTOCOL_SPLIT_NAMES
from rainbench.synth.splits import MadePair, PairJob, PairsSummary, write_pairs
from rainbench.wording import counted

# The version of how pairs are made; part of every job. 2: a frame's confidence counts
# the clean samples other than the frame itself, and a frame too little of which is
# confident is not paired. 3: rain-free frames are found against the sequence (and are
# never targets), `lowrank` predicts its own quality, a pan's frames are not
# registered, and a job names its sequence's frames. 4: each frame's exposure gain is
# fitted, the samples are brought to one exposure and the background is given its
# target's (the pair's `exposure_gain`), and a rain-free one the rain's.
VERSION = "4"
DEFAULT_NAME = "lab-pairs"
DEFAULT_SHARD_BYTES = 1_000_000_000
_RESERVED = {*manifest.RESERVED_PAIRED, manifest.EVERY_SPLIT}
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


@dataclass
class RealPairsSummary(PairsSummary):
    """What `write_pairs` reports, and per split the pairs dropped because their
    sequence's frames changed since they were made (a burst grew): made again."""

    changed: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict:
        changed = {split: n for split, n in self.changed.items() if n}
        return {**super().to_dict(), "changed": changed}


@dataclass(frozen=True)
class Sequence:
    """A sequence as the manifest holds it: one video, or a burst's stills in order."""

    key: str  # the video's key, or the burst's first still's
    frames: int
    rows: tuple[dict, ...]  # the video's row, or the stills' rows in burst order

    @property
    def video(self) -> bool:
        return self.rows[0].get("kind") == "video"

    @property
    def clean(self) -> tuple[int, ...]:
        """The frames of a burst's clean stills (shot before or after the rain and
        ingested with --layer clean): rain-free by the lab's word, never paired."""
        return tuple(i for i, row in enumerate(self.rows) if row["layer"] != "rainy")


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


def build_pairs(
    root: str | Path, options: PairsOptions, progress: bool = False
) -> RealPairsSummary:
    """Add the pairs of every window of every chosen sequence that the split lacks, in
    place of the pairs of a sequence whose frames changed since they were made."""
    try:
        check_options(options.estimate)
    except ValueError as error:
        raise DatasetError(str(error)) from None
    with writing(root) as dataset:
        _check_name(dataset, options.name)
        every = find_sequences(dataset)
        found = find_sequences(dataset, options.sequences) if options.sequences else every
        least = options.estimate.min_frames
        # The same footage twice (one clip in two containers) would be paired twice;
        # a sequence asked for by key is paired whatever it repeats.
        long_enough = [s for s in found if s.frames >= least]
        repeats = {} if options.sequences else near_duplicates(dataset.root, long_enough)
        sequences = [s for s in long_enough if s.key not in repeats]
        if not sequences:
            why = _why_none(dataset, found, least)
            raise DatasetError(f"nothing to pair in {dataset.location}: {why}")
        workers = min(options.workers, _workers_for_memory(sequences, options.estimate))
        with WorkerPool(workers) as pool:
            summary = _build(dataset, sequences, every, options, pool, progress)
        # Said, not silently dropped: a burst cut short, a clip too brief to pair, a copy.
        summary.failed[:0] = [
            (s.key, f"{s.frames} frame{'s' * (s.frames != 1)}, fewer than {least}: not paired")
            for s in found
            if s.frames < least
        ] + [
            (
                s.key,
                f"the same footage as {repeats[s.key]} (a near-duplicate): not paired; "
                "pair it with --sequence",
            )
            for s in long_enough
            if s.key in repeats
        ]
        return summary


def near_duplicates(root: Path, sequences: list[Sequence]) -> dict[str, str]:
    """The sequences that repeat another of `sequences` (one clip in two containers, or
    encoded twice), by key, each with the key of the sequence it repeats: linked by
    ingest's `near_dup_of`, as many frames, and the same rain in them; or the bursts
    of one camera's shots in RAW and in JPEG, the JPEGs kept. A second take from the
    same tripod, or a burst of the same scene, has other drops: no repeat."""
    near = {s.key: {row.get("near_dup_of") or row["key"] for row in s.rows} for s in sequences}
    # Originals first: not RAW (its pixels are a reduced preview), then sequences fewest
    # of whose frames repeat a capture outside them.
    order = sorted(
        sequences,
        key=lambda s: (
            FORMATS[s.rows[0]["format"]].raw,
            len(near[s.key] - {row["key"] for row in s.rows}),
            s.key,
        ),
    )
    middles: dict[str, np.ndarray | None] = {}
    kept: list[Sequence] = []
    repeats = {}
    for sequence in order:
        for original in kept:
            if original.frames == sequence.frames and (
                _same_shots(original, sequence)
                or (
                    near[sequence.key] & near[original.key]
                    and _same_footage(root, original, sequence, middles)
                )
            ):
                repeats[sequence.key] = original.key
                break
        else:
            kept.append(sequence)
    return repeats


# A copy's middle frame is this much closer (in mean squared error) to the original's
# than the original's is to its next frame: a remux is the same pixels, a second encode
# the same rain; another take of the same scene has other drops.
_REPEAT_SHARE = 0.25


def _same_footage(
    root: Path, original: Sequence, copy: Sequence, middles: dict[str, np.ndarray | None]
) -> bool:
    """Whether `copy` holds `original`'s footage; `middles` keeps each sequence's middle
    two frames (grey, subsampled to about 360 rows) between calls."""
    for sequence in (original, copy):
        if sequence.key not in middles:
            middles[sequence.key] = _middle(root, sequence)
    own, other = middles[original.key], middles[copy.key]
    if own is None or other is None or own.shape != other.shape:
        return False
    apart = float(np.mean((own[1] - own[0]) ** 2))
    # At most, not below: where the middle frame repeats (a frame-rate conversion), apart
    # is 0, and a remux, the same pixels, is 0 from it too.
    return float(np.mean((other[0] - own[0]) ** 2)) <= _REPEAT_SHARE * apart


def _same_shots(original: Sequence, copy: Sequence) -> bool:
    """Whether two bursts are one camera's shots saved twice (RAW and JPEG): taken in one
    folder at the same instants. Their pixels differ in size and look, so
    `_same_footage` cannot tell."""
    if original.video or copy.video:
        return False
    shot = ("camera_make", "camera_model", "source_root")
    return all(original.rows[0][c] == copy.rows[0][c] for c in shot) and all(
        posixpath.dirname(a["source_path"]) == posixpath.dirname(b["source_path"])
        and a["captured_at"] == b["captured_at"]
        for a, b in zip(original.rows, copy.rows, strict=True)
    )


def _middle(root: Path, sequence: Sequence) -> np.ndarray | None:
    middle = max(0, sequence.frames // 2 - 1)
    try:
        with open_frames(root, sequence) as source:
            frames = source.read([middle, middle + 1])
    except _UNREADABLE:
        return None
    step = max(1, frames.shape[1] // 360)
    return frames[:, ::step, ::step].mean(axis=3, dtype=np.float32)


def _why_none(dataset: Dataset, found: list[Sequence], least: int) -> str:
    if not found:
        why = (
            "no rainy video and no burst of stills (stills from one camera at one size, "
            "shot close together)"
        )
        # Stills ingest could not place in time are never a burst: say so, not nothing.
        samples = manifest.read_manifest(dataset.samples_manifest, manifest.SAMPLES)
        untimed = sum(
            row["layer"] == "rainy" and row["kind"] != "video" and row["captured_at"] is None
            for row in samples.select(["layer", "kind", "captured_at"]).to_pylist()
        )
        if untimed:
            why += (
                f"; {counted(untimed, 'rainy still')} without a capture time (EXIF "
                "DateTimeOriginal), which a burst needs"
            )
        return why
    return (
        f"{'its sequence has' if len(found) == 1 else f'all {len(found)} sequences have'} "
        f"fewer than {least} frames"
    )


def _build(
    dataset: Dataset,
    sequences: list[Sequence],
    every: list[Sequence],
    options: PairsOptions,
    pool: WorkerPool,
    progress: bool,
) -> RealPairsSummary:
    """The pairs of `sequences`' windows that the split lacks, made in `pool` (the caller
    holds the dataset's lock); `every`: the sequences the dataset holds."""
    digest = _digest(options.estimate)
    stored = _split_rows(dataset, options.name)
    # A split holds the pairs of one version and one set of options: two estimates of the
    # same frames in one split would be scored twice. Pairs made by an earlier version
    # are made again, as this version makes them, from the sequences the dataset holds.
    earlier = sum(not row["job"].startswith(f"pairs@{VERSION}:") for row in stored)
    other = next((row for row in stored if not row["job"].endswith(f":{digest}")), None)
    if not earlier and other is not None:
        raise DatasetError(
            f"--name {options.name}: the split holds pairs made with "
            f"{_options_held(dataset, other, options.estimate)}; give these another --name, "
            "or the same options again"
        )
    # A count of frames no ingest stores (an edited or damaged manifest) would plan
    # windows without end: that sequence does not open.
    unopened = {
        s.key: f"the manifest says {s.frames} frames, more than a video may hold "
        f"({MAX_FRAMES}): run rainbench verify"
        for s in sequences
        if s.frames > MAX_FRAMES
    }
    planned = _planned(sequences, digest, options.estimate)
    # Pairs of a sequence whose frames changed since (a burst that grew, or one whose
    # first still is another now): the same frames would be paired twice.
    planned_jobs = {job for _, _, job in planned}
    paired, existing = {s.key for s in sequences}, {s.key for s in every}
    changed = [
        row
        for row in stored
        if row["source_key"] not in existing
        or (row["source_key"] in paired and row["job"] not in planned_jobs)
    ]
    # Each sequence is opened, and its rain-free frames found, once; a sequence that
    # does not open (a video with other frames than the manifest counts) fails once, not
    # once for each of the windows its count would make. Those whose pairs changed are
    # opened first: one that does not open keeps its pairs, never dropped for a count
    # it does not hold.
    rain_free: dict[str, tuple[int, ...]] = {}
    changed_keys = {row["source_key"] for row in changed} & paired
    reopened = [s for s in sequences if s.key in changed_keys and s.key not in unopened]
    _open(dataset.root, reopened, options, pool, rain_free, unopened)
    changed = [row for row in changed if row["source_key"] not in unopened]
    planned = [(s, window, job) for s, window, job in planned if s.key not in unopened]
    # They (all, from an earlier version) are dropped with the shards that hold them, in
    # one write of the manifest, and those shards' other pairs made again — whichever
    # sequences were asked for — so a run killed after it resumes as any other.
    dropped = {row["shard"] for row in (stored if earlier else changed)}
    if dropped:
        _drop_rows(dataset, options.name, dropped)
        lost = {row["source_key"] for row in stored if row["shard"] in dropped}
        stored = [row for row in stored if row["shard"] not in dropped]
        least = options.estimate.min_frames
        again = [s for s in every if s.key in lost - paired and s.frames >= least]
        planned += _planned(again, digest, options.estimate)
    done = {row["job"] for row in stored}
    pending = {s.key: s for s, _, job in planned if job not in done and s.key not in rain_free}
    _open(dataset.root, list(pending.values()), options, pool, rain_free, unopened)
    jobs = [
        PairJob(
            split=options.name,
            job=job,
            row={
                "recipe_version": VERSION,
                "source_key": sequence.key,
                "group": sequence.key,  # a sequence never straddles two splits
            },
            # A sequence all of whose pairs are stored was not opened: none is made.
            task=WindowTask(
                dataset.root, sequence, window, rain_free.get(sequence.key, ()), options.estimate
            ),
        )
        for sequence, window, job in planned
        if sequence.key not in unopened
    ]
    run = new_run_id()
    made = write_pairs(dataset, jobs, make_window, pool, options.shard_bytes, run, progress)
    summary = RealPairsSummary(**{f.name: getattr(made, f.name) for f in fields(made)})
    summary.failed += [(key, f"not paired: {why}") for key, why in unopened.items()]
    summary.failed += _dry_targets(planned, rain_free, stored, options.estimate.stride)
    summary.existing[options.name] += 0  # the split is reported even when no sequence opened
    summary.replaced[options.name] = earlier
    summary.changed[options.name] = len(changed)
    return summary


def _options_held(dataset: Dataset, row: dict, asked: EstimateOptions) -> str:
    """How the options of stored pair `row` differ from `asked`, as the command's options
    ('--stride 8 (these: --stride 4)'), from its metadata: 'other options' where that
    cannot be read."""
    try:
        with open_shard(dataset.root, row["shard"]) as tar:
            data = read_member(tar, row["shard"], member(row["key"], METADATA), 1 << 20)
        held = json.loads(data)["estimate_options"]
        given = asdict(asked)
        differ = [name for name in given if held[name] != given[name]]
    except (ShardError, DatasetError, OSError, ValueError, KeyError, TypeError):
        return "other options"
    if not differ:  # options this version does not record
        return "other options"
    return (
        f"{' '.join(_as_option(name, held[name]) for name in differ)} (these: "
        f"{' '.join(_as_option(name, given[name]) for name in differ)})"
    )


# The options `rainbench pairs` takes, as it names them; the others are the library's.
_FLAGS = {"method", "percentile", "window", "stride", "max_moving", "min_confident"}
_SWITCHES = {"register": "register", "prefer_rain_free": "rain-free"}


def _as_option(name: str, value: object) -> str:
    if name in _SWITCHES:
        return f"--{'' if value else 'no-'}{_SWITCHES[name]}"
    return f"--{name.replace('_', '-')} {value}" if name in _FLAGS else f"{name} {value}"


def _dry_targets(
    planned: list[tuple[Sequence, Window, str]],
    rain_free: dict[str, tuple[int, ...]],
    stored: list[dict],
    stride: int,
) -> list[tuple[str, str]]:
    """Why each sequence without a pair makes none when every frame it would pair is
    rain-free: such a frame is skipped, neither paired nor failed, and a run of such
    sequences alone would store nothing without a word."""
    targets: dict[str, set[int]] = {}
    frames: dict[str, int] = {}
    for sequence, window, _ in planned:
        targets.setdefault(sequence.key, set()).update(window.targets)
        frames[sequence.key] = sequence.frames
    paired = {row["source_key"] for row in stored}
    found = []
    for key, chosen in targets.items():
        dry = set(rain_free.get(key, ()))
        if key in paired or not chosen <= dry:
            continue
        rainy = frames[key] - len(dry)
        if not rainy:
            found.append((key, f"not paired: all {frames[key]} frames are rain-free"))
            continue
        picked = (
            f"frame {min(chosen)}, the one --stride {stride} picks, is"
            if len(chosen) == 1
            else f"the {len(chosen)} frames --stride {stride} picks are all"
        )
        found.append(
            (
                key,
                f"not paired: {picked} rain-free (a dry frame is never paired as rainy); "
                f"--stride 1 pairs every frame, {counted(rainy, 'rainy one')} among them",
            )
        )
    return found


def _planned(
    sequences: list[Sequence], digest: str, options: EstimateOptions
) -> list[tuple[Sequence, Window, str]]:
    """Every window of `sequences`, with its job (none of a sequence whose count of
    frames exceeds MAX_FRAMES: no video holds it)."""
    return [
        (sequence, window, _job_name(sequence, window, digest))
        for sequence in sequences
        if sequence.frames <= MAX_FRAMES
        for window in plan_windows(sequence.frames, options)
    ]


def _split_rows(dataset: Dataset, name: str) -> list[dict]:
    pairs = manifest.read_manifest(dataset.synthetic_manifest, manifest.SYNTHETIC)
    columns = ["key", "job", "shard", "source_key"]
    return pairs.filter(pc.equal(pairs["split"], name)).select(columns).to_pylist()


def _drop_rows(dataset: Dataset, name: str, shards: set[str]) -> None:
    """The split's rows in `shards` out of synthetic.parquet, in one atomic write; the
    shards, listed without rows then, are removed when write_pairs repairs the split."""
    pairs = manifest.read_manifest(dataset.synthetic_manifest, manifest.SYNTHETIC)
    dropped = pc.and_(
        pc.equal(pairs["split"], name), pc.is_in(pairs["shard"], pa.array(sorted(shards)))
    )
    kept = pairs.filter(pc.invert(dropped))
    manifest.write_manifest(dataset.synthetic_manifest, kept)
    info = dataset.read_info()
    info["counts"]["synthetic"] = dict(sorted(Counter(kept["split"].to_pylist()).items()))
    dataset.write_info(info)


def _workers_for_memory(sequences: list[Sequence], options: EstimateOptions) -> int:
    """How many workers the free memory holds, each with the largest window (a video is
    decoded from its shard, never held whole): at least 1."""
    if not sequences:
        return 1
    need = max(
        _WORKER_BASE_BYTES
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
    The sequences come in key order, each once, however `keys` orders or repeats them:
    the same sequences make the same shards.
    """
    samples = manifest.read_manifest(dataset.samples_manifest, manifest.SAMPLES)
    rows = samples.to_pylist()
    videos = [
        Sequence(row["key"], row["frames"] or 0, (row,))
        for row in rows
        if row.get("kind") == "video" and row["layer"] == "rainy"
    ]
    bursts: dict[str, list[dict]] = {}
    for row in rows:
        if row.get("kind") != "video" and row.get("sequence"):
            bursts.setdefault(row["sequence"], []).append(row)
    # A burst holds its clean stills too (`Sequence.clean`), so that its frame i is its
    # still of sequence_index i; one of clean stills alone is no rainy sequence.
    stills = [
        Sequence(key, len(members), tuple(sorted(members, key=lambda r: r["sequence_index"])))
        for key, members in bursts.items()
        if any(row["layer"] == "rainy" for row in members)
    ]
    found = {s.key: s for s in sorted(videos + stills, key=lambda s: s.key)}
    unknown = [key for key in keys if key not in found]
    if unknown:
        raise DatasetError(
            f"--sequence {unknown[0]}: no rainy video or burst of stills has that key "
            f"in {dataset.location}"
        )
    return [s for key, s in found.items() if not keys or key in keys]


# A sequence that cannot be read: a missing or damaged shard or member, a video member
# whose stream no longer decodes. Its windows report why; the other sequences go on.
_UNREADABLE = (ShardError, DatasetError, CaptureRejected, ValueError, OSError)


def make_window(task: WindowTask) -> list[MadePair]:
    """The pairs of one window: one per target frame that is paired, and one carrying
    the reason for each target that is not (too much moves, registration failed)."""
    try:
        with open_frames(task.root, task.sequence) as source:
            frames = _Remembered(source)
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
    except MemoryError:  # one window's frames at once: said, and the other windows go on
        frames = task.window.end - task.window.start + 1
        return [MadePair({}, {}, error=_out_of_memory(task.sequence, frames))]


def _out_of_memory(sequence: Sequence, frames: int) -> str:
    row = sequence.rows[0]
    return (
        f"not enough memory for {frames} frames of {row['width']}×{row['height']} at once: "
        "give a smaller --window, or fewer --workers"
    )


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
        "exposure_gain": estimate.exposure,
        "estimate_options": asdict(options),
    }
    return MadePair(members, metadata, part=part)


def _open(
    root: Path,
    sequences: list[Sequence],
    options: PairsOptions,
    pool: WorkerPool,
    rain_free: dict[str, tuple[int, ...]],
    unopened: dict[str, str],
) -> None:
    """Open each of `sequences` in `pool`: its rain-free frames into `rain_free` (found
    whatever `prefer_rain_free` says: a dry frame is never paired as a rainy one), or
    why it does not open into `unopened`, by key."""
    tasks = [SequenceTask(root, s, options.estimate) for s in sequences]
    for sequence, found in zip(sequences, pool.map_ordered(_rain_free, tasks), strict=True):
        if isinstance(found, str):
            unopened[sequence.key] = found
        else:
            rain_free[sequence.key] = found


def _rain_free(task: SequenceTask) -> tuple[int, ...] | str:
    """The sequence's rain-free frames, its clean stills among them (only those when a
    frame cannot be read: the windows that need it report why, the others are paired),
    or why the sequence does not open: it cannot be read, or its frames are smaller
    than MIN_SIDE."""
    clean = task.sequence.clean
    try:
        frames = open_frames(task.root, task.sequence)
    except _UNREADABLE as error:
        return first_line(error)
    with frames:
        try:
            height, width = frames.read([0])[0].shape[:2]
            if min(height, width) < MIN_SIDE:
                return f"frames of {width}×{height} px: pairs needs {MIN_SIDE} px a side"
            return tuple(sorted({*find_rain_free(frames, task.options), *clean}))
        except _UNREADABLE:
            return clean
        except MemoryError:  # it reads the sequence in chunks of --window frames
            return _out_of_memory(task.sequence, min(task.options.window, len(frames)))


def open_frames(root: Path, sequence: Sequence) -> "_VideoFrames | _BurstFrames":
    """The sequence's frames, addressed by index: a video's decoded frames, or a burst's
    stills decoded upright. Use it in a `with` block: a video's shard (and, from a
    store, its temporary copy) stays open until the block ends."""
    if sequence.video:
        return _VideoFrames(root, sequence.rows[0])
    return _BurstFrames(root, sequence.rows)


class _VideoFrames:
    """A video's frames, decoded from its member where it lies in the shard (held open
    until `close`): a video of several GB is never held in memory whole. Its windows are
    planned from the manifest's count of frames, so a video holding another count is
    refused as it opens, not part-way through a window."""

    def __init__(self, root: Path, row: dict):
        from rainbench.capture.video import VideoFrames

        shard, ext = row["shard"], FORMATS[row["format"]].ext
        self._tar = open_shard(root, shard)
        self._video = self._frames = None
        try:
            name = member(row["key"], ext)
            self._video = open_member(self._tar, root, shard, name, row["bytes"], row["sha256"])
            try:
                self._frames = VideoFrames(self._video)
            except PixelCapExceeded as error:  # the readers' cap: pairs has no --max-pixels
                raise ShardError(f"{shard}:{name}: {error.fact}") from None
            if len(self._frames) != row["frames"]:
                raise ShardError(
                    f"{shard}:{name}: {len(self._frames)} frames, the manifest says "
                    f"{row['frames']} (run rainbench verify)"
                )
        except BaseException:
            self.close()
            raise

    def __len__(self) -> int:
        return len(self._frames)

    def __enter__(self) -> "_VideoFrames":
        return self

    def __exit__(self, *_) -> None:
        self.close()

    def read(self, indices) -> np.ndarray:
        return self._frames.read(list(indices))

    def close(self) -> None:
        """The decoder, the member (a store's temporary copy) and the shard, closed."""
        for part in (self._frames, self._video, self._tar):
            if part is not None:
                part.close()


class _BurstFrames:
    def __init__(self, root: Path, rows: tuple[dict, ...]):
        self._root, self._rows = root, rows

    def __enter__(self) -> "_BurstFrames":
        return self

    def __exit__(self, *_) -> None:
        pass  # each still's shard is opened and closed as it is read

    def __len__(self) -> int:
        return len(self._rows)

    def read(self, indices) -> np.ndarray:
        return np.stack([self._still(self._rows[index]) for index in indices])

    def _still(self, row: dict) -> np.ndarray:
        fmt = FORMATS[row["format"]]
        # A RAW capture's pixels are its rendered preview; anything else is decoded as stored,
        # only if its bytes are the manifest's, as a video's are.
        ext, fmt, stored, sha256 = (
            (PREVIEW, FORMATS["jpeg"], None, None)
            if fmt.raw
            else (fmt.ext, fmt, row["bytes"], row["sha256"])
        )
        with open_shard(self._root, row["shard"]) as tar:
            image = read_upright(
                tar,
                row["shard"],
                member(row["key"], ext),
                fmt,
                row["width"],
                row["height"],
                stored,
                sha256,
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
            "test, synthetic, all or a syn-* name"
        )
    if name in PROTOCOL_SPLIT_NAMES:  # scored as the public set: only its import makes it
        raise DatasetError(
            f"--name {name} is a leaderboard protocol's split of a public set, made only by "
            "rainbench import-paired --protocol; choose another name"
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
    """The job of a window: its sequence, which frames the sequence holds (a burst that
    grew is another sequence under the same key), the window and the options."""
    frames = "\0".join(row["key"] for row in sequence.rows)
    held = hashlib.sha256(frames.encode()).hexdigest()[:12]
    return f"pairs@{VERSION}:{sequence.key}:{held}:{window.start}-{window.end}:{digest}"
