"""`rainbench eval`: run one derainer over a dataset's splits, streamed from the shards,
and score every output. One Parquet per (model, dataset, split) with a row per image
(metrics, speed, memory, status), a provenance JSON beside it, and crops of the first
images for the leaderboard's visual comparison.

A derainer that raises, returns NaN or the wrong shape on an image is recorded for
that image and the run goes on; so is an image that cannot be read from its shard
(`shards.members` bounds what is read and decoded by the manifest). Rows are flushed
as the run goes, so a killed run resumes where it stopped, and a finished one re-run
is a no-op.

On a Ray cluster (`evaluate_on_ray`) each shard is a unit of work for an actor that
builds the derainer and the metrics once (and holds a GPU when the device is cuda);
this process still writes the one results Parquet and provenance JSON per split.
"""

import contextlib
import hashlib
import io
import json
import os
import platform
import tarfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image
from tqdm import tqdm

from rainbench import __version__
from rainbench.capture.formats import FORMATS, Format
from rainbench.cluster import ClusterError, RayActors
from rainbench.errors import RainbenchError, first_line
from rainbench.files import file_sha256, leads_inside, regular_file, write_atomic
from rainbench.leaderboard.results import (
    REFERENCE,
    STATUSES,
    LeaderboardError,
    check_scores_file,
    read_provenance,
    split_lock,
)
from rainbench.metrics.engine import metric_failure
from rainbench.metrics.registry import (
    PROTOCOL_VERSION,
    MetricError,
    MetricSpec,
    check_metric,
    create_metric,
    list_metrics,
    versions,
)
from rainbench.metrics.report import cpu_model
from rainbench.metrics.weights import loaded_weights
from rainbench.pairs.estimate import CONFIDENT  # a real pair's pixel is scored from it on
from rainbench.shards import manifest
from rainbench.shards.dataset import (
    Dataset,
    DatasetError,
    LockHeld,
    first_missing,
    open_dataset,
    remove_if_only_lock,
    writer_lock,
)
from rainbench.shards.layout import CONFIDENCE, GROUND_TRUTH, PREVIEW, RAIN, member
from rainbench.shards.members import (
    ShardError,
    open_shard,
    read_upright,
)
from rainbench.synth.importers import paired_kind
from rainbench.threads import set_torch_threads, torch_threads

REAL_METRICS = ("niqe", "brisque", "piqe")
PAIRED_METRICS = ("psnr_y", "ssim_y", "psnr", "ssim", *REAL_METRICS)
CROP_SIDE = 256  # px: the crops the leaderboard's comparison strip shows
_FLUSH_SECONDS = 10.0


class EvalError(DatasetError):
    """The run cannot start (unknown split, results made otherwise); one line."""


class EvalWarning(UserWarning):
    """A chosen split left out of the run (none of the metrics asked for applies to it);
    the CLI prints it as one `warning:` line."""


@dataclass(frozen=True)
class EvalSettings:
    metrics: tuple[str, ...] | None = None  # None: by split kind (REAL/PAIRED_METRICS)
    device: str = "cpu"
    tile: int | None = None  # derain in tiles of this side when an image is larger
    overlap: int = 32
    batch: int = 4  # images of one size derained together
    crops: int = 3  # images per split whose crops are kept for the comparison strip
    weights_dir: Path | None = None
    # Results made otherwise (another checkpoint, metrics, dataset manifest…) are scored
    # again from the start instead of refused.
    rescore_stale: bool = False
    # Images that failed in an earlier run (an out-of-memory, a command that crashed) are
    # derained and scored again instead of kept as failures.
    retry_failed: bool = False
    threads: int | None = None  # torch's CPU threads; None: chosen from the free CPUs


@dataclass
class SplitReport:
    dataset: str
    split: str
    kind: str
    path: Path
    scored: int = 0  # images scored by this run
    skipped: int = 0  # already in the results
    dropped: int = 0  # results of images that left the split or changed since
    failed: int = 0  # of those scored here
    # Of those scored here and not failed: a chosen metric failed on the output (its value
    # is null, its error in the row's); --retry-failed scores them again too.
    metric_failed: int = 0
    failed_before: int = 0  # of those already done: kept failures (--retry-failed)
    unavailable_metrics: dict[str, str] = field(default_factory=dict)
    videos: int = 0  # the split's rainy videos, left to the real pairs made of them
    model: str | None = None  # what the results are filed under
    # Of the split's images, how many come from captures the model trained on, when its
    # checkpoint says which: {"images": n, "of": total}; the leaderboard does not rank
    # a row with n > 0.
    trained_on: dict | None = None

    def to_dict(self) -> dict:
        return {**self.__dict__, "path": str(self.path)}


@dataclass
class Item:
    """One image to derain: the rainy input and, for a pair, its ground truth."""

    key: str
    rain_type: str | None
    rain: np.ndarray  # uint8 H×W×3
    gt: np.ndarray | None
    # A real pair's confident pixels (confidence ≥ CONFIDENT), the only ones its
    # full-reference metrics score; None: every pixel.
    mask: np.ndarray | None = None


@dataclass
class Output:
    image: np.ndarray | None  # uint8 H×W×3, None when the derainer failed
    error: str | None
    seconds: float | None  # None: not timed (outputs made elsewhere)
    peak_mem_mb: float | None


@dataclass
class Crops:
    """The crops of one image the leaderboard's comparison strip shows."""

    place: list[int]  # left, top, side
    output: np.ndarray
    rain: np.ndarray
    gt: np.ndarray | None


@dataclass
class Scored:
    """One image's results row, with its crops when it is one whose crops are kept."""

    row: dict
    crops: Crops | None = None


class Source:
    """Where outputs come from: a derainer, or a folder of outputs computed elsewhere.
    Subclasses (rainbench.leaderboard.sources) implement `run`."""

    name: str

    def info(self) -> dict:
        raise NotImplementedError

    def output_sha256(self, keys: list[str], split: str) -> dict[str, str] | None:
        """Each key's output by its sha256, when the source has them before running (a
        folder of outputs); None when the run makes them."""
        return None

    def run(self, items: list[Item], split: str) -> list[Output]:
        raise NotImplementedError

    def trained_on(self) -> frozenset[str] | None:
        """The keys of the captures the source's model was trained on, when its checkpoint
        says (`rainbench.models.trained_on`); None: nothing to compare."""
        return None


def evaluate(
    source: Source,
    dataset_path: str | Path,
    split: str,
    results: Path,
    settings: EvalSettings,
    checkpoint: Path | None = None,
    progress: bool = False,
) -> list[SplitReport]:
    """Score `source` on `split` ("all": every split) of the dataset at `dataset_path`,
    with torch's CPU threads `settings.threads` (None: chosen from the free CPUs), put back
    as they were on return."""
    _check_tiles(settings)
    dataset, name, splits, chosen = _chosen(dataset_path, split, settings.metrics)
    checkpoint_info = _checkpoint_info(checkpoint)
    _need_torch()
    with torch_threads(requested=settings.threads) as threads:
        settings = replace(settings, threads=threads)
        runs = [
            _SplitRun(
                source, dataset, name, wanted, splits[wanted], results, settings, checkpoint_info
            )
            for wanted in chosen
        ]
        return _execute(runs, progress)


def evaluate_on_ray(
    build_source: Callable[[EvalSettings], Source],
    address: str,
    dataset_path: str | Path,
    split: str,
    results: Path,
    settings: EvalSettings,
    checkpoint: Path | None = None,
    progress: bool = False,
) -> list[SplitReport]:
    """`evaluate`, with the images derained and scored by actors on the Ray cluster at
    `address`, each building its source with `build_source(settings)`. The dataset must
    be where every node sees it (shared storage, a URL); results are written here."""
    _check_tiles(settings)
    dataset, name, splits, chosen = _chosen(dataset_path, split, settings.metrics)
    checkpoint_info = _checkpoint_info(checkpoint)
    gpu = settings.device.startswith("cuda")
    # Ray gives each actor its GPU as the only one it sees.
    there = replace(settings, device="cuda") if gpu else settings
    location = dataset_path if "://" in str(dataset_path) else Path(dataset_path).absolute()
    build = partial(_Worker, build_source, there, Path(results).absolute(), location)
    with RayActors(address, build, gpu, most=_shard_count(dataset, chosen)) as actors:
        source = _ClusterSource(actors)
        runs = [
            _SplitRun(
                source, dataset, name, wanted, splits[wanted], results, settings, checkpoint_info
            )
            for wanted in chosen
        ]
        return _execute(runs, progress)


def _execute(runs: list["_SplitRun"], progress: bool) -> list[SplitReport]:
    """Every split's earlier results checked before any image is derained, so that one
    refused split leaves the others as they were; then each split scored in turn. Each
    split's results are locked first (`_SplitRun.lock`)."""
    with contextlib.ExitStack() as held:
        for run in runs:
            run.lock(held)
        for run in runs:
            run.prepare()
        _check_scorable(runs)
        refused = [run for run in runs if run.refusal]
        if len(refused) == 1:
            raise EvalError(f"{refused[0].info_path}: {refused[0].refusal}; {_REMEDY}")
        if refused:
            each = "; ".join(f"{run.info_path.name} {run.refusal}" for run in refused)
            raise EvalError(
                f"the earlier results of {len(refused)} splits in {refused[0].folder} are "
                f"refused, nothing was derained: {each}; {_REMEDY}"
            )
        return [run.execute(progress) for run in runs]


def _check_scorable(runs: list["_SplitRun"]) -> None:
    """Refuse, before any image is derained, a split none of whose metrics can run here
    (`--metrics brisque` without its weights): its images would be derained for no score,
    and the results would refuse the run that has the weights as made otherwise."""
    idle = [run for run in runs if not run.metrics]
    if not idle:
        return
    why: dict[str, str] = {}
    for run in idle:
        why.update(run.report.unavailable_metrics)
    reasons = "; ".join(
        reason if reason.startswith(name) else f"{name}: {reason}" for name, reason in why.items()
    )
    splits = ", ".join(f"{run.name}/{run.split}" for run in idle)
    raise EvalError(f"no metric can score {splits} here, so nothing was derained: {reasons}")


# --name files the new results beside the earlier ones (`--model guided --option radius=8
# --name guided-r8`), --rescore-stale replaces them.
_REMEDY = (
    "give another --name (a variant beside them) or --results folder, or --rescore-stale "
    "to score them again"
)


def _check_tiles(settings: EvalSettings) -> None:
    """Tiles that cannot be laid out refused before anything is read or written: found
    only at the first image larger than a tile, they would fail every such image, and
    those failures, kept as results, would refuse the corrected run as made otherwise."""
    if settings.tile and not 0 <= settings.overlap < settings.tile:
        raise EvalError(
            f"tiles need an overlap of at least 0 and less than the tile: --overlap "
            f"{settings.overlap} with --tile {settings.tile}"
        )


def _chosen(
    dataset_path: str | Path, split: str, metrics: tuple[str, ...] | None
) -> tuple[Dataset, str, dict[str, str], list]:
    """The dataset, its name, its splits (name → kind) and those `split` chooses that
    one of `metrics` applies to (`_scorable`)."""
    dataset = open_dataset(dataset_path)  # a URL: its manifests here, shards read by range
    if not (dataset.samples_manifest.exists() or dataset.synthetic_manifest.exists()):
        raise EvalError(
            dataset.not_a_dataset("manifests/samples.parquet or manifests/synthetic.parquet")
        )
    name = dataset.read_info().get("name") or dataset.folder_name
    splits = _splits(dataset)
    if split == "all" and not splits:
        raise EvalError(
            f"{dataset_path} has nothing to evaluate: no rainy stills and no pairs (clean "
            "captures are not derained; a video is scored through its pairs: rainbench pairs)"
        )
    chosen = sorted(splits) if split == "all" else [split]
    for wanted in chosen:
        if wanted not in splits:
            known = ", ".join(sorted(splits)) or "none"
            if wanted in _sample_splits(dataset):  # there, but nothing in it to derain
                raise EvalError(
                    f"{dataset_path}'s split {wanted!r} holds no rainy stills to derain (clean "
                    "captures are not derained; a video is scored through its pairs: "
                    f"rainbench pairs); splits to evaluate: {known}"
                )
            raise EvalError(f"{dataset_path} has no split {wanted!r}; known: {known}")
    return dataset, name, splits, _scorable(dataset_path, name, chosen, splits, metrics)


def _scorable(
    dataset_path: str | Path,
    name: str,
    chosen: list[str],
    splits: dict[str, str],
    metrics: tuple[str, ...] | None,
) -> list[str]:
    """The `chosen` splits one of `metrics` (None: the defaults) applies to. A split
    none applies to would be derained for no score at all: it is left out with an
    `EvalWarning` naming the metrics that apply, and when every chosen split is, the run
    is refused."""
    if metrics is None:
        return chosen
    specs = [check_metric(metric) for metric in metrics]
    unscorable = [s for s in chosen if not any(_applies(spec, splits[s]) for spec in specs)]
    if not unscorable:
        return chosen
    # Only a real split refuses a metric: a full-reference one, for want of a ground truth.
    given = f"{', '.join(metrics)} need{'s' * (len(metrics) == 1)} a ground truth"
    real = ", ".join(spec.name for spec in list_metrics() if _applies(spec, "real"))
    if len(unscorable) == len(chosen):
        one = len(unscorable) == 1
        raise EvalError(
            f"{dataset_path}: nothing to evaluate: {given}, which its real "
            f"{'split' if one else 'splits'} {', '.join(repr(s) for s in unscorable)} "
            f"{'has' if one else 'have'} not; give --metrics with any of {real} "
            f"for {'it' if one else 'them'}"
        )
    for split in unscorable:
        warnings.warn(
            f"{name}/{split} ({splits[split]}) not evaluated: {given}, which it has not; "
            f"--metrics with any of {real} scores it",
            EvalWarning,
            stacklevel=2,
        )
    return [s for s in chosen if s not in unscorable]


def _applies(spec: MetricSpec, kind: str) -> bool:
    """Whether a split of `kind` is scored with the metric: a full-reference one needs
    the ground truth a real split has not."""
    return not (spec.full_reference and kind == "real")


def _need_torch() -> None:
    """Without torch, which every derainer runs under, one line saying what to install
    instead of a traceback."""
    try:
        import torch  # noqa: F401
    except ImportError as error:
        raise EvalError(
            f"rainbench eval needs torch ({first_line(error)}): pip install 'rainbench[eval]'"
        ) from None


def _checkpoint_info(checkpoint: Path | None) -> dict | None:
    return {"path": str(checkpoint), "sha256": file_sha256(checkpoint)} if checkpoint else None


def _shard_count(dataset: Dataset, splits: list[str]) -> int:
    """How many shards hold the images of `splits`: more actors than that would idle."""
    wanted, shards = set(splits), set()
    for path, schema in (
        (dataset.samples_manifest, manifest.SAMPLES),
        (dataset.synthetic_manifest, manifest.SYNTHETIC),
    ):
        table = manifest.read_manifest(path, schema)
        pairs = zip(table["shard"].to_pylist(), table["split"].to_pylist(), strict=True)
        shards |= {shard for shard, split in pairs if split in wanted}
    return len(shards)


def _sample_splits(dataset: Dataset) -> set[str]:
    """Every split a capture of the dataset is in, whatever its layer and kind."""
    samples = manifest.read_manifest(dataset.samples_manifest, manifest.SAMPLES)
    return set(samples["split"].to_pylist())


def _splits(dataset: Dataset) -> dict[str, str]:
    """Split name → kind, for the real splits holding rainy stills (a video is scored
    through its real pairs) and every paired split: synthetic, imported or real-paired
    by what made its pairs."""
    samples = manifest.read_manifest(dataset.samples_manifest, manifest.SAMPLES)
    columns = (samples[name].to_pylist() for name in ("split", "layer", "kind"))
    found = {
        split: "real"
        for split, layer, kind in zip(*columns, strict=True)
        if layer == "rainy" and kind != "video"
    }
    pairs = manifest.read_manifest(dataset.synthetic_manifest, manifest.SYNTHETIC)
    for split, recipe in zip(pairs["split"].to_pylist(), pairs["recipe"].to_pylist(), strict=True):
        found[split] = paired_kind(recipe)
    return found


# What a real pair's row says of its estimated ground truth (`_SplitRun._ground_truth`).
_ESTIMATE_FIGURES = (
    "confidence_mean",
    "moving_fraction",
    "gt_psnr_estimate",
    "window_start",
    "window_end",
)


# What a re-run with nothing left to score records of itself (`_SplitRun.execute`): the
# inputs it read, where and as it found them.
_READ_ANEW = ("model", "checkpoint", "dataset", "trained_on")

# What every evaluation has written in its provenance, and resuming reads.
_ALWAYS_WRITTEN = ("model", "dataset", "kind", "metrics", "started_at")


def _earlier_provenance(path: Path) -> dict:
    """The provenance of the results already at `path`'s run, which this run resumes or
    finds stale; refused in one line unless eval could have written it: checked as the
    leaderboard checks it, and for what resuming reads besides."""
    try:
        before = read_provenance(regular_file(path))
    except OSError as error:
        raise EvalError(f"{path}: cannot read it: {first_line(error)}; move it away") from None
    except LeaderboardError as error:
        raise EvalError(f"{error}; move it away") from None
    missing = [key for key in _ALWAYS_WRITTEN if key not in before]
    if missing:
        raise EvalError(
            f"{path}: not an evaluation's provenance (no {', '.join(missing)}); move it away"
        )
    if not isinstance(before.get("weights"), dict | None):
        raise EvalError(f"{path}: weights must be an object or null; move it away")
    return before


class _SplitRun:
    def __init__(
        self,
        source: Source,
        dataset: Dataset,
        name: str,
        split: str,
        kind: str,
        results: Path,
        settings: EvalSettings,
        checkpoint: dict | None,
    ):
        self.source, self.dataset, self.name = source, dataset, name
        self.split, self.kind, self.settings = split, kind, settings
        self.folder = results / _model_folder(source.name) / _safe(name)
        self.table_path = _inside(results, self.folder / f"{split}.parquet")
        self.info_path = _inside(results, self.folder / f"{split}.json")
        self.crop_dir = _inside(results, self.folder / f"{split}.crops")
        self.lock_path = _inside(results, split_lock(self.folder, split))
        self.reference_dir = _inside(results, results / REFERENCE / _safe(name) / f"{split}.crops")
        self.checkpoint = checkpoint
        self.report = SplitReport(name, split, kind, self.table_path, model=source.name)
        self.unreadable: list[dict] = []  # failed rows of images that could not be read
        # The results on disk are a finished run's, of the split as it is (set by _resume).
        self.finished = False
        self.refusal: str | None = None  # why the results on disk are refused (prepare)
        # The output crops on disk that stay: those of earlier rows kept ok (_resume).
        self.crops_kept: set[str] = set()

    def lock(self, held: contextlib.ExitStack) -> None:
        """Hold this split's results lock in `held`: a second eval of the same model,
        dataset and split into this folder is refused at once, not run beside this one,
        where each would replace the other's rows and provenance with its own."""
        made = first_missing(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            held.enter_context(writer_lock(self.lock_path))
        except LockHeld as error:
            raise EvalError(
                f"another rainbench command is evaluating into {self.folder} "
                f"({self.split}): {error.holder}; wait for it to finish"
            ) from None
        if made:  # a run refused before it wrote anything leaves no folder behind
            held.callback(remove_if_only_lock, self.lock_path, made)

    def prepare(self) -> None:
        """Read the split, build the metrics and check the results on disk, writing
        nothing: `refusal` says why they cannot be resumed (unless --rescore-stale)."""
        self.rows_manifest = self._manifest_rows()
        images = {row["key"]: _image_sha256(row) for row in self.rows_manifest}
        # What each row is of: its images and, when the source has them already (a
        # folder of outputs), its output file.
        outputs = self.source.output_sha256(list(images), self.split) or {}
        self.identities = {
            key: _with_output(identity, outputs.get(key)) for key, identity in images.items()
        }
        if isinstance(self.source, _ClusterSource):
            described = self.source.describe(self.kind)
            self.metrics = [(name, None) for name in described["metrics"]]
            self.report.unavailable_metrics.update(described["unavailable"])
            hardware, threads = described["hardware"], described["threads"]
        else:
            self.metrics = self._metrics()
            hardware, threads = _hardware(self.settings.device), self.settings.threads
        self.report.trained_on = self._trained_on(self.source.trained_on())
        self.provenance = self._provenance(self.metrics, hardware, threads, images)
        self.before, self.table, self.stale = None, None, False
        if self.info_path.exists():
            self.before = _earlier_provenance(self.info_path)
            if self.table_path.exists():
                self.table = self._earlier_table(self.before)
            stale = self._stale(self.before, self.provenance)
            # Rows scored elsewhere are not joined by rows scored here: the file would
            # hold values of two environments and record one. A finished run with nothing
            # left to score mixes nothing, and keeps the record of where it was scored.
            elsewhere = self._elsewhere(self.before, self.provenance)
            if elsewhere and (stale or self._scores_any()):
                stale += elsewhere
            if stale and not self.settings.rescore_stale:
                self.refusal = ", ".join(stale)
            self.stale = bool(stale)
        elif self.table_path.exists():  # eval writes the JSON before any row: not its table
            raise EvalError(
                f"{self.table_path}: no {self.info_path.name} beside it, so eval did not "
                "write it; not replaced: move it away"
            )

    def execute(self, progress: bool) -> SplitReport:
        rows_manifest, identities = self.rows_manifest, self.identities
        metrics, provenance = self.metrics, self.provenance
        done = self._resume(provenance, identities)
        todo = [row for row in rows_manifest if row["key"] not in done]
        self.report.skipped = len(rows_manifest) - len(todo)
        if not todo and self.finished:  # a re-run of a finished run: nothing is scored
            # and the provenance stays that of the run that scored, but for what this run
            # read anew: where the dataset, its manifest, the model and its checkpoint are
            # now (a dataset moved, a manifest whose other splits changed), and the overlap
            # with the training captures, where results from before it was recorded lack
            # it, so that the leaderboard sees it. Unchanged, nothing is written.
            now = {**self.before, **{what: provenance[what] for what in _READ_ANEW}}
            if now != self.before:
                self._write_json(now)
            return self.report
        self._remove_crops(keep=self.crops_kept)
        crop_keys = set(sorted(row["key"] for row in rows_manifest)[: self.settings.crops])
        columns = [name for name, _ in metrics]
        rows = list(done.values())
        last_flush = time.monotonic()
        bar = tqdm(
            total=len(todo),
            desc=f"{self.source.name} on {self.name}/{self.split}",
            unit="image",
            disable=not progress,
        )
        groups = self._groups()
        for row in rows:  # results from before groups were recorded (read as null) gain theirs
            if row.get("group") is None:
                row["group"] = groups.get(row["key"])
        with bar:
            try:
                for scored in self._scored(todo, metrics, columns, crop_keys):
                    for one in scored:
                        one.row["image_sha256"] = identities[one.row["key"]]
                        one.row["group"] = groups.get(one.row["key"])
                        # The crops first: a row kept while they failed to save (a full
                        # disk) would count as done on resume, and they would never be made.
                        if one.crops is not None:
                            self._save_crops(one.row["key"], one.crops, provenance)
                        else:  # an earlier output's crop would stand for this row's
                            (self.crop_dir / f"{one.row['key']}.png").unlink(missing_ok=True)
                        rows.append(self._count(one.row))
                        bar.update(1)
                    if time.monotonic() - last_flush > _FLUSH_SECONDS:
                        self._flush(rows, columns, provenance)
                        last_flush = time.monotonic()
            except BaseException:
                # Whatever ends the run early (a cluster lost, an interrupt), the rows made
                # so far are kept for the next run to resume from; what ended it is said.
                with contextlib.suppress(Exception):
                    self._flush(rows, columns, provenance)
                raise
        rows += [
            self._count(
                {**row, "image_sha256": identities[row["key"]], "group": groups.get(row["key"])}
            )
            for row in self.unreadable
        ]
        self._flush(rows, columns, provenance)
        statuses = [row["status"] for row in rows]
        provenance["images"] = {"ok": statuses.count("ok"), "failed": statuses.count("failed")}
        provenance["finished_at"] = _now()
        self._write_json(provenance)
        return self.report

    def _scored(
        self, rows: list[dict], metrics: list, columns: list[str], crop_keys: set[str]
    ) -> Iterator[list[Scored]]:
        """The images of `rows` derained and scored, a batch at a time here, or a shard
        at a time by the cluster's actors."""
        if not isinstance(self.source, _ClusterSource):
            yield from self._score(rows, metrics, columns, crop_keys)
            return
        by_shard: dict[str, list[dict]] = {}
        for row in rows:
            by_shard.setdefault(row["shard"], []).append(row)
        units = [
            _Unit(
                self.name, self.split, self.kind, shard_rows, frozenset(crop_keys), tuple(columns)
            )
            for shard_rows in by_shard.values()
        ]
        yield from self.source.score(units)

    def _score(
        self, rows: list[dict], metrics: list, columns: list[str], crop_keys: set[str]
    ) -> Iterator[list[Scored]]:
        for items in self._batches(rows):
            outputs = self.source.run(items, self.split)
            yield [
                Scored(
                    self._row(item, output, metrics, columns),
                    _crops(item, output.image)
                    if item.key in crop_keys and output.image is not None
                    else None,
                )
                for item, output in zip(items, outputs, strict=True)
            ]

    def _count(self, row: dict) -> dict:
        self.report.scored += 1
        self.report.failed += row["status"] == "failed"
        self.report.metric_failed += row["status"] == "ok" and row["error"] is not None
        return row

    def _groups(self) -> dict[str, str]:
        """Key → the sequence a real pair's frame comes from (a video, a burst, a public
        set's scene): frames of one sequence are not independent images, and the
        leaderboard's intervals resample them together. Other splits have none."""
        if self.kind != "real-paired":
            return {}
        return {row["key"]: row["group"] for row in self.rows_manifest if row.get("group")}

    def _manifest_rows(self) -> list[dict]:
        if self.kind == "real":
            table = self._read_manifest(self.dataset.samples_manifest, manifest.SAMPLES)
            # A video is scored through the real pairs made of its frames.
            rainy = [
                row
                for row in table.to_pylist()
                if row["split"] == self.split and row["layer"] == "rainy"
            ]
            rows = [row for row in rainy if row.get("kind") != "video"]
            self.report.videos = len(rainy) - len(rows)
        else:
            table = self._read_manifest(self.dataset.synthetic_manifest, manifest.SYNTHETIC)
            rows = [row for row in table.to_pylist() if row["split"] == self.split]
        return sorted(rows, key=lambda row: (row["shard"], row["key"]))

    def _read_manifest(self, path: Path, schema: pa.Schema) -> pa.Table:
        """The manifest the split's rows come from, its sha256 kept for the provenance
        (`manifest_sha256`): that of the very file read, even where an ingest replaces it as
        eval reads it (`manifest.read_hashed`)."""
        table, self.manifest_sha256 = manifest.read_hashed(path, schema, "eval")
        return table

    def _metrics(self) -> list[tuple[str, object]]:
        """The metrics to compute, built once; those that cannot run here are reported."""
        built, unavailable = _build_metrics(self.kind, self.settings)
        self.report.unavailable_metrics.update(unavailable)
        return built

    def _provenance(
        self,
        metrics: list[tuple[str, object]],
        hardware: dict,
        threads: int | None,
        identities: dict[str, str],
    ) -> dict:
        manifest_path = self.dataset.synthetic_manifest
        if self.kind == "real":
            manifest_path = self.dataset.samples_manifest
        return {
            "model": self.source.info(),
            "checkpoint": self.checkpoint,
            "dataset": {
                "name": self.name,
                "path": self.dataset.location,
                "manifest": manifest_path.name,
                "manifest_sha256": self.manifest_sha256,
                # Which dataset, whatever its path or name: copies keep it, another
                # ingest of the same name does not.
                "created_at": self.dataset.read_info().get("created_at"),
                # What is scored: each image's identity, as each results row records it.
                "split_sha256": _split_sha256(identities),
            },
            "split": self.split,
            "kind": self.kind,
            "trained_on": self.report.trained_on,
            "metrics": [name for name, _ in metrics],
            "unavailable_metrics": self.report.unavailable_metrics,
            "lower_is_better": {name: check_metric(name).lower_is_better for name, _ in metrics},
            "metric_protocol_version": PROTOCOL_VERSION,
            # The weight files the metrics load, by their sha256: other weights, other values.
            "weights": loaded_weights([name for name, _ in metrics], self.settings.weights_dir),
            "tile": (
                {"size": self.settings.tile, "overlap": self.settings.overlap}
                if self.settings.tile
                else None
            ),
            "batch": self.settings.batch,
            "device": self.settings.device,
            "threads": threads,
            "hardware": hardware,
            "versions": {"rainbench": __version__, **versions()},
            "started_at": _now(),
            "finished_at": None,
            "images": {"ok": 0, "failed": 0},
            "crops": {},
            **({"ground_truth": self._ground_truth()} if self.kind == "real-paired" else {}),
        }

    def _trained_on(self, trained: frozenset[str] | None) -> dict | None:
        """How many of the split's images come from captures in `trained`: a still by its
        key; a pair by its source (`source_key`: the clean capture a synthetic pair is
        rendered on, the video of a real pair) and, for a burst's pair, by any still of
        the burst (its source_key is the first still's key, which the others name as
        their `sequence`): frames of one scene are not unseen because another was seen.
        None when the source does not say what it was trained on."""
        if trained is None:
            return None
        rows = self.rows_manifest
        if self.kind == "real":
            seen = sum(row["key"] in trained for row in rows)
        else:
            samples = manifest.read_manifest(self.dataset.samples_manifest, manifest.SAMPLES)
            burst_seen = {
                sequence
                for key, sequence in zip(
                    samples["key"].to_pylist(), samples["sequence"].to_pylist(), strict=True
                )
                if sequence and key in trained
            }
            seen = sum(
                row["source_key"] in trained or row["source_key"] in burst_seen for row in rows
            )
        return {"images": seen, "of": len(rows)}

    def _ground_truth(self) -> dict:
        """How a real-paired split's ground truth was made and how good it is said to be:
        the methods, and for pairs estimated by `rainbench pairs` their confidence and
        the estimate's own spread as psnr_y."""
        rows = self.rows_manifest
        methods = Counter(row["recipe"] for row in rows)
        # Pairs estimated by `rainbench pairs` carry every figure below; other real pairs
        # (an imported set's, an earlier version's) may lack some: they are not counted.
        estimated = [row for row in rows if all(row[c] is not None for c in _ESTIMATE_FIGURES)]
        if not estimated:
            return {"methods": dict(sorted(methods.items()))}
        return {
            "methods": dict(sorted(methods.items())),
            "confident_from": CONFIDENT / 255,
            "confidence_mean": round(float(np.mean([r["confidence_mean"] for r in estimated])), 4),
            "moving_mean": round(float(np.mean([r["moving_fraction"] for r in estimated])), 4),
            "gt_psnr_estimate_median": round(
                float(np.median([r["gt_psnr_estimate"] for r in estimated])), 2
            ),
            "window_frames_max": max(r["window_end"] - r["window_start"] + 1 for r in estimated),
        }

    def _stale(self, before: dict, provenance: dict) -> list[str]:
        """Why the results on disk (their provenance `before`) were made otherwise than
        these would be, each saying what differs; none when they can be resumed."""
        stale = [
            f"made with another {what.replace('_', ' ')} ({difference})"
            for what in (
                "model",
                "checkpoint",
                "kind",
                "metrics",
                "tile",
                "metric_protocol_version",
                "weights",
            )
            # Results from before the weights were recorded are taken as they are.
            if (what != "weights" or what in before)
            and (difference := _difference(what, before.get(what), provenance[what]))
        ]
        created, now = before["dataset"], provenance["dataset"]
        if created.get("created_at", now["created_at"]) != now["created_at"]:
            stale.append(
                f"made on another dataset named {self.name} (created {created['created_at']}, "
                f"this one {now['created_at']})"
            )
        # Results from before each row named its images: valid while the whole manifest is
        # as it was, and then they are the images scored now.
        if (
            self._unnamed()
            and created.get("manifest_sha256") != provenance["dataset"]["manifest_sha256"]
        ):
            stale.append(
                f"the dataset's {provenance['dataset']['manifest']} changed since these results "
                "were made"
            )
        return stale

    def _elsewhere(self, before: dict, provenance: dict) -> list[str]:
        """Why the results on disk (their provenance `before`), made the same way, may
        hold other values than these would: other versions of what computes them, or
        another device; each saying what differs. Results from before either was
        recorded are taken as they are."""
        found = []
        if "versions" in before and (
            difference := _difference("versions", before["versions"], provenance["versions"])
        ):
            found.append(f"made with other versions ({difference})")
        if "device" in before and (
            difference := _difference("device", _device(before), _device(provenance))
        ):
            found.append(f"made on another device ({difference})")
        return found

    def _earlier_table(self, before: dict) -> pa.Table:
        """The rows on disk, refused in one line unless the leaderboard could read them
        with the metrics `before` lists: a metric column dropped or turned to text by
        hand would be read as done, its values null or text taken for numbers."""
        try:
            check_scores_file(self.table_path, before["metrics"], self.info_path.name)
        except LeaderboardError as error:
            raise EvalError(f"{error}; move it away") from None
        return manifest.read_manifest(self.table_path, _schema(list(self.provenance["metrics"])))

    def _unnamed(self) -> bool:
        return self.table is not None and self.table["image_sha256"].null_count > 0

    def _kept(self, identities: dict[str, str]) -> tuple[dict[str, dict], int]:
        """The earlier rows a resume keeps, by key: those of images still in the split as
        they were (`identities`, key → the row's identity); and how many rows it drops as
        no longer of the split."""
        rows = self.table.to_pylist()
        if self._unnamed():
            for row in rows:
                row["image_sha256"] = identities.get(row["key"])
        # An image added to the split is scored; one that left it or changed (its bytes,
        # its rain type) loses its row, and is scored again if it is still there.
        kept = {row["key"]: row for row in rows if self._still_valid(row, identities)}
        return kept, len(rows) - len(kept)

    def _not_retried(self, kept: dict[str, dict]) -> dict[str, dict]:
        """The rows `kept` that a resume does not score again: all, less failures with
        --retry-failed."""
        if not self.settings.retry_failed:
            return kept
        return {key: row for key, row in kept.items() if not _failure(row)}

    def _finished(self, dropped: int) -> bool:
        """Whether the results on disk are a finished run's, of the split as it is."""
        return bool(self.before.get("finished_at")) and not self._unnamed() and not dropped

    def _scores_any(self) -> bool:
        """Whether resuming the results on disk would derain any image."""
        if self.table is None:
            return True
        kept, dropped = self._kept(self.identities)
        done = self._not_retried(kept)
        return not self._finished(dropped) or any(key not in done for key in self.identities)

    def _resume(self, provenance: dict, identities: dict[str, str]) -> dict[str, dict]:
        """Rows already scored, by key, checked by `prepare` to be scored the same way:
        those of images still in the split as they were (`identities`, key → the
        row's identity)."""
        if self.before is None:
            self._write_json(provenance)
            return {}
        before, table = self.before, self.table
        if self.stale:  # made otherwise, and --rescore-stale: scored again from the start
            # The old rows go first: a run killed now must not find them under the new
            # provenance.
            self.table_path.unlink(missing_ok=True)
            self._write_json(provenance)
            return {}
        provenance["started_at"] = before["started_at"]
        if table is None:
            return {}
        kept, self.report.dropped = self._kept(identities)
        done = self._not_retried(kept)
        # Crops stay with the rows kept ok; a retried row's is replaced as it is scored.
        self.crops_kept = {key for key, row in kept.items() if row["status"] == "ok"}
        self.report.failed_before = sum(_failure(row) for row in done.values())
        self.finished = self._finished(self.report.dropped)
        # Each flush writes the JSON before the rows (`_flush`): it holds the crop
        # position of every row done, and of any that a kill left undone, which are
        # derained again and placed anew.
        provenance["crops"] = {
            key: place
            for key, place in (before.get("crops") or {}).items()
            if key in done and done[key]["status"] == "ok"
        }
        return done

    def _still_valid(self, row: dict, identities: dict[str, str]) -> bool:
        """Whether an earlier row is of an image still in the split as it was, and as
        eval writes rows: of this split and its kind, ok or failed (the leaderboard
        refuses other statuses)."""
        return (
            row["key"] in identities
            and identities[row["key"]] == row["image_sha256"]
            and (row["split"], row["kind"]) == (self.split, self.kind)
            and row["status"] in STATUSES
        )

    def _batches(self, rows: list[dict]) -> Iterator[list[Item]]:
        """Items read shard by shard, grouped into batches of one image size."""
        pending: dict[tuple, list[Item]] = {}
        for item in self._items(rows):
            group = pending.setdefault(item.rain.shape, [])
            group.append(item)
            if len(group) >= self.settings.batch:
                yield pending.pop(item.rain.shape)
            elif sum(map(len, pending.values())) > self.settings.batch:
                # Captures of many sizes: never hold more than a batch's worth of images.
                yield pending.pop(next(iter(pending)))
        yield from pending.values()

    def _items(self, rows: list[dict]) -> Iterator[Item]:
        """The images, shard by shard; one that cannot be read becomes a failed row."""
        by_shard: dict[str, list[dict]] = {}
        for row in rows:
            by_shard.setdefault(row["shard"], []).append(row)
        for shard, members in by_shard.items():
            try:
                tar = open_shard(self.dataset.root, shard)
            except ShardError as error:
                for row in members:
                    self._unreadable(row, error)
                continue
            with tar:
                for row in members:
                    try:
                        item = self._item(tar, row)
                    except ShardError as error:
                        self._unreadable(row, error)
                        continue
                    yield item

    def _item(self, tar: tarfile.TarFile, row: dict) -> Item:
        key = row["key"]
        if self.kind != "real":
            mask = None
            if CONFIDENCE in row["members"]:
                confidence = _picture(tar, row, member(key, CONFIDENCE), FORMATS["png"])
                mask = np.atleast_3d(confidence)[..., 0] >= CONFIDENT  # stored grey, read RGB
            png = FORMATS["png"]
            return Item(
                key,
                row["recipe"],
                _picture(tar, row, member(key, RAIN), png, sha256=row["rain_sha256"]),
                _picture(tar, row, member(key, GROUND_TRUTH), png, sha256=row["gt_sha256"]),
                mask,
            )
        fmt = FORMATS[row["format"]]
        if fmt.raw:  # camera RAW: the stored sRGB preview is the picture to derain
            image = _picture(tar, row, member(key, PREVIEW), FORMATS["jpeg"])
        else:
            image = _picture(tar, row, member(key, fmt.ext), fmt, row["bytes"], row["sha256"])
        return Item(key, row["rain_type"], image, None)

    def _unreadable(self, row: dict, error: ShardError) -> None:
        self.unreadable.append(_failed(row, self.split, self.kind, f"unreadable: {error}"))

    def _row(self, item: Item, output: Output, metrics: list, columns: list[str]) -> dict:
        height, width = item.rain.shape[:2]
        row = {
            "key": item.key,
            "split": self.split,
            "kind": self.kind,
            "rain_type": item.rain_type,
            "width": width,
            "height": height,
            "status": "ok",
            "error": output.error,
            "seconds": None if output.seconds is None else round(output.seconds, 6),
            "s_per_mp": (
                None
                if output.seconds is None
                else round(output.seconds / (width * height / 1e6), 6)
            ),
            "peak_mem_mb": output.peak_mem_mb,
            **dict.fromkeys(columns),
        }
        if output.image is None:
            row["status"] = "failed"
            return row
        problems = []
        for name, metric in metrics:
            try:
                value = (
                    metric(output.image, item.gt, item.mask)
                    if metric.spec.full_reference
                    else metric(output.image)
                )
                row[name] = value
            except (MetricError, ValueError, RuntimeError) as error:
                problems.append(metric_failure(name, error))
        if problems:
            row["error"] = "; ".join(problems)
        return row

    def _remove_crops(self, keep: set[str]) -> None:
        """Remove the output crops of every image but those of `keep`: the leaderboard
        shows each crop in the folder, so one of results made otherwise (--rescore-stale),
        of an image that changed, failed or left the split would pass for this run's."""
        if self.crop_dir.is_dir():
            for path in self.crop_dir.glob("*.png"):
                if path.stem not in keep:
                    path.unlink(missing_ok=True)

    def _save_crops(self, key: str, crops: Crops, provenance: dict) -> None:
        _save_png(self.crop_dir / f"{key}.png", crops.output)
        # The reference crops are every model's: evals of other models write them at once.
        _save_png(self.reference_dir / f"{key}.input.png", crops.rain, shared=True)
        if crops.gt is not None:
            _save_png(self.reference_dir / f"{key}.gt.png", crops.gt, shared=True)
        # Recorded once the crops exist; the next flush makes it durable with the row.
        provenance["crops"][key] = crops.place

    def _flush(self, rows: list[dict], columns: list[str], provenance: dict) -> None:
        """Save the rows so far with the crop positions they come with: the JSON first,
        so that rows on disk never lack their positions, whenever the run is killed."""
        self._write_json(provenance)
        table = pa.Table.from_pylist(sorted(rows, key=lambda r: r["key"]), schema=_schema(columns))
        manifest.write_manifest(self.table_path, table)

    def _write_json(self, provenance: dict) -> None:
        text = json.dumps(provenance, indent=2, ensure_ascii=False) + "\n"
        write_atomic(self.info_path, text.encode())


def _failure(row: dict) -> bool:
    """Whether a results row is a failure --retry-failed does again: its image failed
    (not derained, not read), or a metric failed on its output (an out-of-memory): an ok
    row's error is only ever a metric's (`_row`)."""
    return row["status"] == "failed" or row.get("error") is not None


def _failed(row: dict, split: str, kind: str, error: str) -> dict:
    """The results row of a manifest row's image that failed before it was derained."""
    return {
        "key": row["key"],
        "split": split,
        "kind": kind,
        "rain_type": row["rain_type"] if kind == "real" else row["recipe"],
        "width": row["width"],
        "height": row["height"],
        "status": "failed",
        "error": error,
    }


@dataclass(frozen=True)
class _Unit:
    """The work of one actor call: the images of one shard of a split."""

    name: str  # the dataset's
    split: str
    kind: str
    rows: list[dict]  # manifest rows
    crop_keys: frozenset[str]
    metrics: tuple[str, ...]  # what the driver records the split as scored with


class _Worker:
    """What each Ray actor holds: the source, built once, and the metrics, built once per
    kind of split. It derains and scores a unit's images as this process would."""

    def __init__(
        self,
        build_source: Callable[[EvalSettings], Source],
        settings: EvalSettings,
        results: Path,
        dataset: str | Path,
    ):
        _need_torch()
        # For good: the actor's process is Ray's, started for this run and ended with it.
        self.settings = replace(settings, threads=set_torch_threads(requested=settings.threads))
        self.source = build_source(self.settings)
        self.results, self.dataset = results, open_dataset(dataset)
        self.metrics: dict[str, tuple[list, dict[str, str]]] = {}

    def identity(self, _: None) -> tuple[str, dict, frozenset[str] | None]:
        return self.source.name, self.source.info(), self.source.trained_on()

    def output_sha256(self, question: tuple[list[str], str]) -> dict[str, str] | None:
        return self.source.output_sha256(*question)

    def describe(self, kind: str) -> dict:
        built, unavailable = self._metrics(kind)
        return {
            "metrics": [name for name, _ in built],
            "unavailable": unavailable,
            "hardware": _hardware(self.settings.device),
            "threads": self.settings.threads,
        }

    def score(self, unit: _Unit) -> list[Scored]:
        run = _SplitRun(
            self.source, self.dataset, unit.name, unit.split, unit.kind, self.results,
            self.settings, None,
        )  # fmt: skip
        built, unavailable = self._metrics(unit.kind)
        # The driver's metrics, which another actor reported (`describe`): a metric this
        # actor cannot run (its weights not on this node) fails on each of its rows, as a
        # metric failing on an output does, rather than leave a null that reads as done.
        metrics = [(name, metric) for name, metric in built if name in unit.metrics]
        lacking = [name for name in unit.metrics if name not in dict(metrics)]
        scored = [
            one
            for batch in run._score(unit.rows, metrics, list(unit.metrics), set(unit.crop_keys))
            for one in batch
        ]
        said = [
            metric_failure(
                name,
                MetricError(
                    "cannot run on the Ray worker that scored it: "
                    + unavailable.get(name, "not among the metrics it built")
                ),
            )
            for name in lacking
        ]
        for one in scored:
            if one.row["status"] == "ok" and said:
                one.row["error"] = "; ".join(filter(None, [one.row["error"], *said]))
        return scored + [Scored(r) for r in run.unreadable]

    def _metrics(self, kind: str) -> tuple[list, dict[str, str]]:
        if kind not in self.metrics:
            self.metrics[kind] = _build_metrics(kind, self.settings)
        return self.metrics[kind]


class _ClusterSource(Source):
    """The source as this process sees it while actors run it: its name and info, asked
    of one of them."""

    def __init__(self, actors: RayActors):
        self.actors = actors
        try:  # the first question builds the source, on a worker
            self.name, self._info, self._trained_on = actors.ask(_Worker.identity, None)
        except ClusterError:  # the driver's own: the cluster itself is gone
            raise
        except RainbenchError as error:
            # What the driver has (a plugin, a checkpoint) a worker may lack: say where.
            raise EvalError(f"on the Ray cluster's workers: {error}") from None

    def info(self) -> dict:
        return self._info

    def trained_on(self) -> frozenset[str] | None:
        return self._trained_on

    def describe(self, kind: str) -> dict:
        return self.actors.ask(_Worker.describe, kind)

    def output_sha256(self, keys: list[str], split: str) -> dict[str, str] | None:
        return self.actors.ask(_Worker.output_sha256, (keys, split))

    def score(self, units: list[_Unit]) -> Iterator[list[Scored]]:
        return self.actors.map_unordered(_Worker.score, units, _one_by_one, _lost)


def _one_by_one(unit: _Unit) -> list[_Unit]:
    """A unit whose actor died (the derainer, or a metric, ended its process), image by
    image: the images that do not kill it are scored, and the one that does is blamed."""
    return [replace(unit, rows=[row]) for row in unit.rows]


def _lost(unit: _Unit, why: str) -> list[Scored]:
    """The failed row of the one image of a unit that kills its actor each time."""
    error = f"its Ray worker died scoring it, each time Ray restarted the worker ({why})"
    return [Scored(_failed(row, unit.split, unit.kind, error)) for row in unit.rows]


def _build_metrics(kind: str, settings: EvalSettings) -> tuple[list, dict[str, str]]:
    """The metrics a split of this kind is scored with, built, and why any cannot run."""
    names = settings.metrics or (REAL_METRICS if kind == "real" else PAIRED_METRICS)
    built, unavailable = [], {}
    for name in names:
        if not _applies(check_metric(name), kind):
            continue
        try:
            metric = create_metric(name, weights_dir=settings.weights_dir, device=settings.device)
        except MetricError as error:
            unavailable[name] = str(error)
            continue
        built.append((name, metric))
    return built, unavailable


def _crops(item: Item, output: np.ndarray) -> Crops:
    """The centre square, at most CROP_SIDE, of the output, the input and the truth."""
    height, width = item.rain.shape[:2]
    side = min(CROP_SIDE, height, width)
    top, left = (height - side) // 2, (width - side) // 2
    box = (slice(top, top + side), slice(left, left + side))
    gt = item.gt[box].copy() if item.gt is not None else None
    return Crops([left, top, side], output[box].copy(), item.rain[box].copy(), gt)


def _schema(metrics: list[str]) -> pa.Schema:
    return pa.schema(
        [
            ("key", pa.string()),
            # What was scored: the sha256 of the image's bytes and rain type (a pair's rainy
            # and ground-truth images), so a changed image is scored again.
            ("image_sha256", pa.string()),
            ("split", pa.string()),
            ("kind", pa.string()),
            ("rain_type", pa.string()),
            # A real pair's sequence (_groups): the unit the leaderboard's bootstrap draws.
            ("group", pa.string()),
            ("width", pa.int64()),
            ("height", pa.int64()),
            ("status", pa.string()),
            ("error", pa.string()),
            ("seconds", pa.float64()),
            ("s_per_mp", pa.float64()),
            ("peak_mem_mb", pa.float64()),
            *((name, pa.float64()) for name in metrics),
        ]
    )


def _picture(
    tar: tarfile.TarFile,
    row: dict,
    name: str,
    fmt: Format,
    stored_bytes: int | None = None,
    sha256: str | None = None,
) -> np.ndarray:
    """Member `name` as upright uint8 RGB, read and decoded within the manifest row's
    sizes: `stored_bytes` (a capture as stored) and width × height; with `sha256`, only
    if its bytes are those the manifest names (what is scored is what the row says)."""
    picture = read_upright(
        tar, row["shard"], name, fmt, row["width"], row["height"], stored_bytes, sha256
    )
    return np.asarray(picture)


def _save_png(path: Path, pixels: np.ndarray, shared: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, "PNG")
    write_atomic(path, buffer.getvalue(), shared)


def _hardware(device: str) -> dict:
    gpu = None
    if device.startswith("cuda"):
        import torch

        gpu = torch.cuda.get_device_name(torch.device(device))
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "gpu": gpu, "os": platform.platform()}


def _image_sha256(row: dict) -> str:
    """What a results row is of: the hashes of the image's bytes (a capture's; a pair's
    rainy and ground-truth images) and its rain type (the per-type columns read it)."""
    columns = ("sha256", "rain_sha256", "gt_sha256", "rain_type")
    return hashlib.sha256(" ".join(str(row.get(c) or "") for c in columns).encode()).hexdigest()


def _with_output(identity: str, output_sha256: str | None) -> str:
    """A row's identity: its images', and its output file's when known before running."""
    if output_sha256 is None:
        return identity
    return hashlib.sha256(f"{identity} output {output_sha256}".encode()).hexdigest()


# Parts of a model's record that describe it without changing its outputs: where its code
# or outputs lie, its package's version (its `version` says when outputs change), a
# command's timeout.
_DESCRIPTIVE = ("source", "folder", "files", "outputs_sha256", "timeout")


def _as_set(names) -> frozenset[str] | None:
    """A provenance's metric list as a set; None where it is no list (edited by hand)."""
    return frozenset(map(str, names)) if isinstance(names, list) else None


def _difference(what: str, before, now) -> str | None:
    """What differs between the provenance's `what` of earlier results and of these, on
    one line (`options {'size': 3} → {'size': 7}`); None when they are the same."""
    if what == "model":
        before, now = dict(before or {}), dict(now or {})
        # Results from before the registered name was recorded were filed under the name.
        before.setdefault("registered", before.get("name"))
        if "registered" not in now:
            before.pop("registered")
        # An external command's timeout was one of its options before it was only on
        # record: results of then are not of another model.
        if "command" in before and isinstance(before.get("options"), dict):
            before["options"] = {k: v for k, v in before["options"].items() if k != "timeout"}
        keys = sorted((before.keys() | now.keys()) - set(_DESCRIPTIVE))
        return (
            ", ".join(
                f"{key} {_shown(before.get(key))} → {_shown(now.get(key))}"
                for key in keys
                if before.get(key) != now.get(key)
            )
            or None
        )
    if what == "versions":  # of what computes the values: 'torch 2.4.1+cpu → 2.5.1+cpu'
        before, now = before or {}, now or {}
        names = sorted(n for n in before.keys() | now.keys() if before.get(n) != now.get(n))
        changed = (f"{n} {before.get(n) or 'none'} → {now.get(n) or 'none'}" for n in names)
        return ", ".join(changed) or None
    if what == "device":  # `_device`'s, key by key
        changed = (
            f"{key} {_shown(before.get(key))} → {_shown(now.get(key))}"
            for key in now
            if before.get(key) != now.get(key)
        )
        return ", ".join(changed) or None
    if what == "metrics" and (named := _as_set(now)) is not None and named == _as_set(before):
        return None  # a set: the order --metrics named them in changes no value
    if what == "checkpoint":  # the same by its bytes, whatever path names it
        before, now = ((info or {}).get("sha256") for info in (before, now))
        return None if before == now else f"sha256 {_short(before)} → {_short(now)}"
    if what == "weights":
        before, now = before or {}, now or {}
        files = sorted(f for f in before.keys() | now.keys() if before.get(f) != now.get(f))
        changed = (f"{f} {_short(before.get(f))} → {_short(now.get(f))}" for f in files)
        return ", ".join(changed) or None
    return None if before == now else f"{_shown(before)} → {_shown(now)}"


def _device(provenance: dict) -> dict:
    """What derained and scored a run's images, as far as it may change their values:
    the kind of device (`cuda`, whichever index), the GPU's model and the CPU's (which
    scores the metrics numpy computes, by instructions of its own)."""
    hardware = provenance.get("hardware") or {}
    return {
        "device": str(provenance.get("device")).partition(":")[0],
        "gpu": hardware.get("gpu"),
        "cpu": hardware.get("cpu"),
    }


def _short(sha256: object) -> str:
    # str(): what an earlier provenance records is shown whatever it is.
    return "none" if sha256 is None else f"{str(sha256)[:12]}…"


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:79] + "…"


def _split_sha256(identities: dict[str, str]) -> str:
    """The sha256 of a split as scored: its keys with their images' identities, sorted."""
    lines = sorted(f"{key} {identity}" for key, identity in identities.items())
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _inside(results: Path, path: Path) -> Path:
    """`path`, refused unless it stays inside the results folder."""
    if not leads_inside(path, results):
        raise EvalError(f"{path} would lie outside the results folder {results}; refused")
    return path


def _model_folder(name: str) -> str:
    """The folder of a method's results, refused when it is that of the reference crops,
    where the leaderboard reads no results."""
    folder = _safe(name)
    if folder == REFERENCE:
        raise EvalError(
            f"a method cannot be named {name!r}: {REFERENCE}/ holds the inputs' and ground "
            "truths' crops, and the leaderboard reads no results there; give another --name"
        )
    return folder


def _safe(name: str) -> str:
    """A name usable as one folder: path separators and leading dots replaced."""
    return name.replace("/", "_").replace("\\", "_").lstrip(".") or "_"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
