"""The ingest orchestrator: lock the dataset, finish any interrupted run, then
scan → plan → write → finalize the new one.

Crash safety rests on three rules: shards appear only complete (temporary name,
fsync, rename); manifests and dataset.json are replaced atomically; and every
phase's progress is recorded under `DS/.ingest/` before it is relied on, so
re-running after a kill continues the same run and ends with exactly the dataset
an uninterrupted run would have written.
"""

import errno
import json
import os
import shutil
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from rainbench import __version__
from rainbench.capture.decode import (
    DEFAULT_MAX_PIXELS,
    MAX_PIXELS_ENV,
    megapixels,
    readers_max_pixels,
)
from rainbench.capture.reject import STICKY, Reason, for_want_of_library
from rainbench.capture.source import SourceFile, name_text
from rainbench.cluster import import_ray, make_pool
from rainbench.errors import first_line
from rainbench.files import file_sha256, write_atomic
from rainbench.ingest.bursts import DEFAULT_BURST_GAP, GROUPING, burst_columns
from rainbench.ingest.plan import Plan, PlanSettings, make_plan
from rainbench.ingest.scan import Journal, file_id, is_known, probe_batch, walk_inputs
from rainbench.ingest.split import DEFAULT_FRACTIONS
from rainbench.ingest.tag import LabelsRejected, read_labels, retag
from rainbench.ingest.write import (
    UnitResult,
    UnitTask,
    marker_path,
    read_marker,
    write_marker,
    write_unit,
)
from rainbench.parallel import WorkerPool
from rainbench.shards import manifest
from rainbench.shards.dataset import (
    MAX_INFO_BYTES,
    Dataset,
    DatasetError,
    initial_info,
    new_run_id,
    open_for_writing,
    read_json,
    stored_info,
)
from rainbench.shards.fitted import active_tagger
from rainbench.shards.tar import TMP_SUFFIX, publish
from rainbench.store import delete, is_url, version
from rainbench.tagging.tagger import LAYERS
from rainbench.versions import CAPTURE_LIBRARIES, installed_versions

DEFAULT_SHARD_BYTES = 1_000_000_000
DEFAULT_NEAR_DUP_BITS = 8  # of 64: re-encodes and resizes land within ~4
_COMMIT_SECONDS = 5.0  # how often finished shards are published to the manifests
# A commit rewrites the whole manifests, so its cost grows with the dataset (seconds at a
# few hundred thousand captures: benchmarks/commit_cost.py), and committing every
# _COMMIT_SECONDS would make the write phase quadratic in it. One that takes longer than
# this runs that much less often, so commits take at most a tenth of the write phase.
_COMMIT_BUDGET = 0.5
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
# What a run's settings (run.json) always hold; _start_settings writes them.
_SETTINGS = frozenset(
    (
        "run_id",
        "inputs",
        "layer",
        "keep_gps",
        "max_pixels",
        "shard_bytes",
        "split",
        "near_dup_bits",
        "name",
    )
)


class OptionsConflict(DatasetError):
    """Settings that cannot go together: on the command line, a usage error."""


class IngestWarning(UserWarning):
    """A setting that stores what later commands refuse (a --max-pixels above the readers'
    cap); the CLI prints it as one `warning:` line."""


@dataclass(frozen=True)
class IngestOptions:
    layer: str = "rainy"
    keep_gps: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    shard_bytes: int = DEFAULT_SHARD_BYTES
    split: dict[str, float] | None = None  # None: the dataset's, else the defaults
    near_dup_bits: int = DEFAULT_NEAR_DUP_BITS
    burst_gap: float = DEFAULT_BURST_GAP  # seconds between a burst's stills; 0: no bursts
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    name: str | None = None
    labels: Path | None = None  # a label sheet applied once the captures are in
    skip_bad_labels: bool = False  # apply a sheet's good labels despite problems
    # Measure and tag each capture's rain type as it goes in; False leaves both to a
    # later `rainbench tag`, which decodes each capture again at preview size.
    tag: bool = True
    # A Ray cluster's address ("auto": the one `ray start` runs here) to probe and write
    # on; None: local worker processes. Its nodes must all see the inputs and the dataset.
    ray: str | None = None


@dataclass
class IngestSummary:
    accepted: int = 0
    duplicates: int = 0
    near_duplicates: int = 0
    unchanged: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    ignored: int = 0  # files without a capture extension
    scanned: int = 0  # files probed by this process
    scanned_bytes: int = 0
    shards: int = 0
    seconds: float = 0.0
    resumed: bool = False
    tagging: dict | None = None  # what applying the label sheet did
    untagged: int = 0  # the dataset's captures never measured for tagging (--no-tag)
    # Of the rejected, those refused for want of an optional library, by the message that
    # says what to install: the next ingest takes them in once it is installed.
    missing_libraries: dict[str, int] = field(default_factory=dict)
    # (source root, path) → (reason, message), for each file rejected: a file that the
    # resumed run and the run after it both reject (one that may read later) counts once.
    rejected_files: dict[tuple[str, str], tuple[str, str | None]] = field(
        default_factory=dict, repr=False
    )
    # inputs → files ignored under them: a resumed run and the run after it that walk the
    # same inputs count their ignored files once.
    ignored_under: dict[tuple[str, ...], int] = field(default_factory=dict, repr=False)

    @property
    def images_per_second(self) -> float:
        return self.scanned / self.seconds if self.seconds else 0.0

    @property
    def mb_per_second(self) -> float:
        return self.scanned_bytes / 1e6 / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict:
        fields = asdict(self)
        del fields["rejected_files"]  # the counts say it; the manifest lists them
        del fields["ignored_under"]  # `ignored` says it
        return {
            **fields,
            "images_per_second": round(self.images_per_second, 2),
            "mb_per_second": round(self.mb_per_second, 2),
        }


def ingest(
    inputs: list[Path], out: Path, options: IngestOptions | None = None, progress: bool = False
) -> IngestSummary:
    """Ingest the captures under `inputs` into the dataset at `out`."""
    options = options or IngestOptions()
    if options.layer not in LAYERS:
        raise DatasetError(f"--layer must be {' or '.join(LAYERS)}, not {options.layer!r}")
    for entry in inputs:
        if not is_url(entry) and not Path(entry).exists():
            raise DatasetError(f"input not found: {entry}")
    if options.labels is not None and not options.tag:
        raise OptionsConflict(
            "--no-tag with --labels: a sheet is applied by tagging, which --no-tag leaves "
            f"out; after this ingest, rainbench tag {out} --labels {options.labels}"
        )
    if options.labels is not None:
        # A broken sheet or an unknown rain type is refused before any work is done.
        _, problems = read_labels(options.labels)
        if problems and not options.skip_bad_labels:
            raise LabelsRejected(problems)
    if options.ray is not None:
        import_ray()  # no Ray: said before the dataset is made or locked
    if options.max_pixels > (cap := readers_max_pixels()):
        warnings.warn(
            f"--max-pixels {options.max_pixels} is above the {megapixels(cap)} cap readers "
            f"keep: captures above it need {MAX_PIXELS_ENV}={options.max_pixels} (or higher) "
            "set for train, eval, synth, label, pairs, verify, score and the loader",
            IngestWarning,
            stacklevel=2,
        )
    dataset = open_for_writing(out)
    with _locked(dataset), make_pool(options.workers, options.ray) as pool:
        summary = IngestSummary()
        pending = dataset.pending_run
        if not pending.exists():
            dataset.pull()  # in a store: its manifests as they are now (locally: nothing)
        if pending.exists():
            summary.resumed = True
            interrupted = _interrupted_settings(pending)
            if _moved_on(dataset):
                _plan_again(dataset, interrupted)
            interrupted["workers"] = options.workers  # the rest of its settings stand
            _Run(dataset, interrupted, pool, progress).execute(summary)
        elif dataset.state_dir.exists():
            # Leftovers of a run that was killed while cleaning up after itself.
            shutil.rmtree(dataset.state_dir)
        settings = _start_settings(dataset, inputs, options)
        _Run(dataset, settings, pool, progress).execute(summary)
        if options.labels is not None:
            try:
                tagged = retag(dataset, options.labels, options.skip_bad_labels, options.workers)
            except LabelsRejected as rejected:
                # The captures are in; the sheet's rows name some that are not. The run's
                # entry says so, and the caller still gets what was ingested.
                _sheet_not_applied(dataset, settings["run_id"])
                rejected.summary = summary
                raise
            summary.tagging = tagged.to_dict()
        return summary


def _sheet_not_applied(dataset: Dataset, run_id: str) -> None:
    info = dataset.read_info()
    for entry in info["runs"]:
        if entry["run_id"] == run_id and entry.get("labels"):
            entry["labels"]["applied"] = False
    dataset.write_info(info)
    dataset.push()  # in a store's mirror: published (a no-op for a local dataset)


@contextmanager
def _locked(dataset: Dataset) -> Iterator[None]:
    """Hold the dataset's lock; a full disk ends the run in a one-line `DatasetError`.

    Everything the run had finished is kept for the next run to resume from; a shard
    not yet published is removed (under the lock, so it is this run's).
    """
    try:
        with dataset.lock():
            try:
                yield
            except OSError as error:
                if error.errno in _NO_SPACE:
                    _remove_unpublished(dataset)
                raise
    except OSError as error:
        if error.errno not in _NO_SPACE:
            raise
        where = dataset.root if dataset.url is None else f"{dataset.root} ({dataset.url}'s state)"
        raise DatasetError(
            f"{where}: {error.strerror}; free some space and run the same ingest again to resume"
        ) from None


def _remove_unpublished(dataset: Dataset) -> None:
    shards_dir = dataset.root / "shards"
    for leftover in shards_dir.glob(f"*/*{TMP_SUFFIX}") if shards_dir.exists() else []:
        leftover.unlink()


def _interrupted_settings(pending: Path) -> dict:
    """The settings of the run that was interrupted, as it wrote them (atomically, so
    only damage from outside makes them unreadable): what dataset.json records of a run,
    so no larger than it may be."""
    try:
        settings = read_json(pending, MAX_INFO_BYTES)
    except (OSError, ValueError) as error:
        settings, why = None, first_line(error)
    else:
        why = "not the settings of an ingest"
    if not isinstance(settings, dict) or not settings.keys() >= _SETTINGS:
        raise DatasetError(
            f"{pending}: cannot resume the interrupted ingest ({why}); remove "
            f"{pending.parent} to start it afresh (rainbench verify then names any shard "
            "it left)"
        )
    return settings


def _moved_on(dataset: Dataset) -> bool:
    """Whether a dataset in a store changed since its mirror here last pulled or pushed
    it: another writer (another cache folder or machine, once this one's lock was gone)
    committed meanwhile, which the interrupted run's plan knows nothing of. A local
    dataset's interrupted run is in the dataset itself, finished by whichever writer
    comes next: no other commit gets in between."""
    if dataset.url is None:
        return False
    try:
        stored = stored_info(f"{dataset.url}/dataset.json")
    except FileNotFoundError:
        stored = None
    try:
        seen = dataset.info_path.read_bytes()
    except FileNotFoundError:
        seen = None
    return stored != seen


_PLANNED_SHARDS = pa.schema([manifest.SAMPLES.field("shard")])
# A file's identity in samples.parquet, as `Plan.seen_again` gives it.
_IDENTITY = ("source_size", "source_mtime_ns", "source_inode")
# The columns of samples.parquet that a finished run counts (`_write_info`, `untagged`).
_COUNTED = pa.schema(
    [manifest.SAMPLES.field(name) for name in ("split", "layer", "features_version")]
)
# The columns of samples.parquet that bursts are kept in (`_group_bursts`).
_BURST_COLUMNS = ("sequence", "sequence_index")
# The columns of samples.parquet that scan and plan look up (`_known_files`, `make_plan`)
# and the summary of a run with nothing new counts.
_LOOKED_UP = [
    "key",
    "sha256",
    "split",
    "phash",
    "near_dup_of",
    "source_root",
    "source_path",
    "source_size",
    "source_mtime_ns",
    "source_inode",
    "features_version",
]


def _plan_again(dataset: Dataset, settings: dict) -> None:
    """Make an interrupted run plan again against what the store holds now. Its probes
    stand; its plan and finished shards do not, since another writer may have committed
    shards under the same names. What it uploaded that no manifest lists goes; nothing
    committed ever does."""
    state = dataset.state_dir
    plan = state / "plan.parquet"
    # Read as a manifest is, its decoding bounded by its size: the plan of a store's
    # dataset lies in the cache folder here, where anything may have replaced it.
    planned = set(manifest.read_manifest(plan, _PLANNED_SHARDS)["shard"].to_pylist())
    # The plan goes first: a kill from here on leaves a run that plans again.
    for name in ("plan.parquet", "plan-rejects.parquet"):
        (state / name).unlink(missing_ok=True)
    shutil.rmtree(state / "done", ignore_errors=True)
    dataset.pull()
    _check_fixed(dataset, settings, f" in the ingest interrupted here; remove {state} to drop it")
    shards = manifest.read_manifest(dataset.shards_manifest, manifest.SHARDS)
    for shard in sorted(planned - set(shards["shard"].to_pylist())):
        delete(f"{dataset.url}/{shard}")


def _option_text(value) -> str:
    """A setting as the CLI's option takes it: train=0.8,val=0.1,test=0.1, or on/off."""
    if isinstance(value, dict):
        return ",".join(f"{name}={share:g}" for name, share in value.items())
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _check_fixed(dataset: Dataset, settings: dict, what: str = "") -> None:
    """Refuse run settings (`split`, `keep_gps`) other than the dataset's fixed ones."""
    fixed = dataset.read_info().get("options", {}) if dataset.exists() else {}
    for name in ("split", "keep_gps"):
        if name in fixed and fixed[name] != settings[name]:
            raise DatasetError(
                f"{dataset.location} was created with --{name.replace('_', '-')} "
                f"{_option_text(fixed[name])}; a dataset keeps one such setting (got "
                f"{_option_text(settings[name])}{what})"
            )


def _start_settings(dataset: Dataset, inputs: list[Path], options: IngestOptions) -> dict:
    """The run's settings, checked against the dataset's fixed ones."""
    info = dataset.read_info() if dataset.exists() else {}
    fractions = options.split or info.get("options", {}).get("split") or DEFAULT_FRACTIONS
    _check_fixed(dataset, {"split": fractions, "keep_gps": options.keep_gps})
    return {
        "run_id": new_run_id(),
        "started_at": datetime.now(UTC).isoformat(),
        "inputs": [p if is_url(p) else Path(p).absolute().as_posix() for p in inputs],
        "layer": options.layer,
        "keep_gps": options.keep_gps,
        "max_pixels": options.max_pixels,
        "shard_bytes": options.shard_bytes,
        "split": fractions,
        "near_dup_bits": options.near_dup_bits,
        "burst_gap": options.burst_gap,
        "workers": options.workers,
        "tag": options.tag,
        # The label sheet applied once the captures are in: where and which bytes.
        "labels": (
            # A name not UTF-8 as a capture's is stored (`\xHH`): JSON holds no lone surrogate.
            {"path": name_text(str(options.labels)), "sha256": file_sha256(Path(options.labels))}
            if options.labels is not None
            else None
        ),
        "name": options.name or info.get("name") or Path(dataset.url or dataset.root).name,
        "tool_version": __version__,
        # The driver's at the first start; any other set its processes had is added to
        # "other_versions" as met (`_worked_with`).
        "versions": _versions_here(),
        "other_versions": [],
    }


@cache  # once a process: what it has imported stays as it was, whatever is installed later
def _versions_here() -> dict:
    """rainbench's and the capture libraries' versions in this process."""
    return {"rainbench": __version__, **installed_versions(CAPTURE_LIBRARIES)}


def _with_versions(call: tuple[Callable, object]) -> tuple[dict, object]:
    """`fn(task)` and the versions of the process that ran it: a worker's, which on a
    Ray cluster need not be the driver's. The function travels with the task, so what
    the driver's module names at the time (a test's stand-in too) is what runs."""
    fn, task = call
    return _versions_here(), fn(task)


class _Run:
    def __init__(self, dataset: Dataset, settings: dict, pool: WorkerPool, progress: bool):
        self.dataset = dataset
        self.settings = settings
        self.pool = pool
        self.progress = progress
        state = dataset.state_dir
        self.journal = Journal(state / "scan.jsonl")
        self.plan_path = state / "plan.parquet"
        self.plan_rejects_path = state / "plan-rejects.parquet"
        self.staging = state / "staging"
        self.markers = state / "done"

    def execute(self, summary: IngestSummary) -> None:
        started = time.perf_counter()
        self._worked_with(_versions_here())  # a resumption plans, commits and finalizes
        # Read whole, so that the whole manifest is checked before the run relies on it,
        # then only what scan and plan look up is kept: a third of it.
        samples = manifest.read_manifest(self.dataset.samples_manifest, manifest.SAMPLES)
        samples = samples.select(_LOOKED_UP)
        if not self.plan_path.exists():
            rejects = manifest.read_manifest(self.dataset.rejects_manifest, manifest.REJECTS)
            probes = self._scan(samples, rejects, summary)
            if not probes:
                if not self.dataset.exists():
                    # Nothing to start a dataset with: none is made, so its settings
                    # (the split) stay open for the first ingest that has captures.
                    shutil.rmtree(self.dataset.state_dir)
                    where = ", ".join(str(p) for p in self.settings["inputs"])
                    others = f" ({summary.ignored} without a capture's extension)"
                    raise DatasetError(
                        f"no captures under {where}{others if summary.ignored else ''}; "
                        f"nothing was written to {self.dataset.location}"
                    )
                self._group_bursts()
                shutil.rmtree(self.dataset.state_dir)
                summary.untagged = samples["features_version"].null_count
                summary.seconds += time.perf_counter() - started
                return
            shards = manifest.read_manifest(self.dataset.shards_manifest, manifest.SHARDS)
            self._save_plan(make_plan(self.dataset, probes, samples, shards, self._plan_settings()))
            # The plan is on disk: the probes and manifests it was made from are let go
            # before it is read back, so the driver holds one per-capture copy, not two.
            del probes, rejects, shards
        del samples  # a resumed run's too, read only to be checked
        plan = self._load_plan()
        results = self._write(plan, summary)
        self._finalize(plan, results, summary)
        summary.seconds += time.perf_counter() - started

    def _worked_with(self, versions: dict) -> None:
        """Add `versions` to the run's other versions unless it has them, in run.json
        before the work done with them is kept, so that a run resumed after an upgrade
        names both its starts' versions."""
        first = self.settings.get("versions")
        if first is None:  # a run an older rainbench started: its versions are unknown
            return
        others = self.settings.setdefault("other_versions", [])
        # A rainbench that recorded its start's versions without its own: tool_version.
        if versions in [{"rainbench": self.settings["tool_version"], **first}, *others]:
            return
        others.append(versions)
        if self.dataset.pending_run.exists():  # else the scan writes it, these included
            write_atomic(self.dataset.pending_run, json.dumps(self.settings, indent=2).encode())

    # -- phase 1: scan -------------------------------------------------------------------

    def _scan(self, samples: pa.Table, rejects: pa.Table, summary: IngestSummary) -> list:
        # Walked before the settings are written: inputs that cannot be walked (a bucket
        # that is not there, a store out of reach) leave no interrupted run, which every
        # later ingest into this dataset would try to finish first, failing the same way.
        sources, ignored = walk_inputs(self.settings["inputs"])
        write_atomic(self.dataset.pending_run, json.dumps(self.settings, indent=2).encode())
        summary.ignored_under[tuple(map(str, self.settings["inputs"]))] = ignored
        summary.ignored = sum(summary.ignored_under.values())
        runs = self.dataset.read_info().get("runs", []) if self.dataset.exists() else []
        caps = {run.get("run_id"): run.get("max_pixels") for run in runs}
        known = _known_files(samples, rejects, caps, self.settings["max_pixels"], sources)
        journaled = self.journal.load()
        sources = [s for s in sources if not is_known(s, known)]
        todo = [s for s in sources if file_id(s) not in journaled]
        self.staging.mkdir(parents=True, exist_ok=True)
        batch = max(1, min(16, len(todo) // (8 * self.settings["workers"]) or 1))
        tasks = [
            (
                todo[i : i + batch],
                self.settings["keep_gps"],
                self.settings["max_pixels"],
                # Absolute, as every path a task is given: a Ray task runs in its
                # worker's folder, not in this one.
                self.staging.absolute().as_posix(),
                self.settings.get("tag", True),  # absent from a run.json from before it
            )
            for i in range(0, len(todo), batch)
        ]
        bar = self._bar(len(todo), "scan", "img")
        for versions, records in self.pool.map_unordered(
            _with_versions, [(probe_batch, task) for task in tasks]
        ):
            self._worked_with(versions)
            self.journal.append(records)
            summary.scanned += len(records)
            summary.scanned_bytes += sum(max(0, r["source"]["size"]) for r in records)
            bar.update(len(records))
        bar.close()
        wanted = {file_id(s) for s in sources}
        return [p for fid, p in self.journal.load().items() if fid in wanted]

    # -- phase 2: plan -------------------------------------------------------------------

    def _plan_settings(self) -> PlanSettings:
        s = self.settings
        return PlanSettings(
            s["layer"],
            s["split"],
            s["shard_bytes"],
            s["near_dup_bits"],
            s["run_id"],
            active_tagger(self.dataset),
        )

    def _save_plan(self, plan: Plan) -> None:
        # The rejects first: plan.parquet is the marker that planning is complete.
        rejects = manifest.rows_to_table(plan.rejects, manifest.REJECTS)
        manifest.write_manifest(self.plan_rejects_path, rejects)
        table = manifest.rows_to_table(plan.rows, manifest.SAMPLES)
        table = table.replace_schema_metadata({"seen_again": json.dumps(plan.seen_again)})
        manifest.write_manifest(self.plan_path, table)

    def _load_plan(self) -> Plan:
        # Always read back from disk, also right after saving, so a fresh run and a
        # resumed one write from exactly the same rows (types included).
        table = manifest.read_manifest(self.plan_path, manifest.SAMPLES)
        # No larger than the file read_manifest bounded; what it holds is checked.
        metadata = pq.read_schema(self.plan_path).metadata or {}
        try:
            seen_again = json.loads(metadata.get(b"seen_again", b"{}"))
        except (ValueError, RecursionError):
            seen_again = None
        if not isinstance(seen_again, dict):
            raise DatasetError(
                f"{self.plan_path}: not a plan an ingest wrote (its files seen again do not "
                f"read); remove {self.plan_path.parent} to plan afresh"
            )
        rejects = manifest.read_manifest(self.plan_rejects_path, manifest.REJECTS).to_pylist()
        return Plan(table.to_pylist(), rejects, seen_again)

    # -- phase 3: write ------------------------------------------------------------------

    def _write(self, plan: Plan, summary: IngestSummary) -> list[UnitResult]:
        _remove_unpublished(self.dataset)
        results: list[UnitResult] = []
        tasks = []
        for shard, rows in plan.units().items():
            marker = read_marker(marker_path(self.markers, shard))
            shard_file = self.dataset.root / shard
            if marker and (marker.sha256 is None or _still_published(self.dataset, marker)):
                results.append(marker)
            else:
                shard_file.unlink(missing_ok=True)
                tasks.append(self._task(shard, rows))
        if results:  # finished before a kill: publish what was not yet
            self._commit(plan, results)
        bar = self._bar(sum(len(t.rows) for t in tasks), "write", "img")
        last_commit, spacing = time.monotonic(), _COMMIT_SECONDS
        for versions, result in self.pool.map_unordered(
            _with_versions, [(write_unit, task) for task in tasks]
        ):
            self._worked_with(versions)
            if result.sha256 and self.dataset.url is None:
                publish(self.dataset.root / result.tmp, self.dataset.root / result.shard)
            elif result.sha256:  # uploaded by the worker: to the store this driver commits to?
                result.version = _check_uploaded(self.dataset, result)
            write_marker(self.markers, result)
            results.append(result)
            bar.update(result.samples + len(result.dropped))
            if time.monotonic() - last_commit > spacing:
                began = time.monotonic()
                self._commit(plan, results)
                last_commit = time.monotonic()
                spacing = _COMMIT_SECONDS * max(1.0, (last_commit - began) / _COMMIT_BUDGET)
        bar.close()
        # Every shard of this run is published: what waits now was written by a task
        # that outlived a killed run's driver (Ray stops them within seconds).
        _remove_unpublished(self.dataset)
        self._commit(plan, results)
        summary.shards += sum(1 for r in results if r.sha256)
        return results

    def _task(self, shard: str, rows: list[dict]) -> UnitTask:
        return UnitTask(
            self.dataset.root.absolute().as_posix(),
            shard,
            rows,
            self.settings["keep_gps"],
            self.staging.absolute().as_posix(),
            self.dataset.url,
        )

    def _commit(self, plan: Plan, results: list[UnitResult]) -> None:
        """Publish finished shards: their rows join samples.parquet, their hashes shards.parquet.

        Idempotent row by row and shard by shard, so a kill between the two manifest
        writes is repaired by the next commit.
        """
        done = {r.shard: r for r in results if r.sha256}
        dropped = {d["key"] for r in results for d in r.dropped}
        samples = manifest.read_manifest(self.dataset.samples_manifest, manifest.SAMPLES)
        shards = manifest.read_manifest(self.dataset.shards_manifest, manifest.SHARDS)
        present = set(shards["shard"].to_pylist())
        stored = _among(samples["key"], [r["key"] for r in plan.rows])
        new_rows = [
            r
            for r in plan.rows
            if r["shard"] in done and r["key"] not in stored and r["key"] not in dropped
        ]
        new_shards = [
            {
                "shard": r.shard,
                "split": r.shard.split("/")[1],
                "samples": r.samples,
                "bytes": r.bytes,
                "sha256": r.sha256,
                "ingest_run": self.settings["run_id"],
            }
            for r in done.values()
            if r.shard not in present
        ]
        if not new_shards and not new_rows:
            return
        shards = pa.concat_tables([shards, manifest.rows_to_table(new_shards, manifest.SHARDS)])
        # Shards first: a shard listed without its rows is harmless, rows without
        # their shard are not.
        manifest.write_manifest(self.dataset.shards_manifest, shards.sort_by("shard"))
        parts = [samples, manifest.rows_to_table(new_rows, manifest.SAMPLES)]
        del samples  # `_sorted` lets each old column go once it has its sorted copy
        samples = _sorted(parts, [("shard", "ascending"), ("key", "ascending")])
        manifest.write_manifest(self.dataset.samples_manifest, samples)
        self._write_info(samples, shards, run=None)

    # -- phase 4: finalize ---------------------------------------------------------------

    def _finalize(self, plan: Plan, results: list[UnitResult], summary: IngestSummary) -> None:
        run_id = self.settings["run_id"]
        by_key = {r["key"]: r for r in plan.rows}
        lost = [
            {**_reject_of(by_key[d["key"]], run_id), "reason": d["reason"], "message": d["message"]}
            for r in results
            for d in r.dropped
        ]
        why_lost = {d["key"]: d["reason"] for r in results for d in r.dropped}
        run_rejects = [_unless_original_lost(r, why_lost) for r in plan.rejects] + lost
        old = manifest.read_manifest(self.dataset.rejects_manifest, manifest.REJECTS)
        seen = {(r["source_root"], r["source_path"]) for r in run_rejects + plan.rows}
        kept = _without_files(old, seen)
        del old
        # In one piece, as the rows were when they went through Python: the same file.
        rejects = pa.concat_tables([kept, manifest.rows_to_table(run_rejects, manifest.REJECTS)])
        rejects = rejects.combine_chunks().sort_by(
            [("source_root", "ascending"), ("source_path", "ascending")]
        )
        manifest.write_manifest(self.dataset.rejects_manifest, rejects)
        if plan.seen_again:  # so the next run knows these files without reading them
            samples = manifest.read_manifest(self.dataset.samples_manifest, manifest.SAMPLES)
            manifest.write_manifest(
                self.dataset.samples_manifest, _with_identities(samples, plan.seen_again)
            )
        self._group_bursts()

        accepted = len(plan.rows) - len(lost)
        reasons = Counter(r["reason"] for r in run_rejects)
        run_summary = {
            "accepted": accepted,
            "duplicates": reasons.pop("duplicate", 0),
            "near_duplicates": sum(
                1 for r in plan.rows if r["near_dup_of"] and r["key"] not in why_lost
            ),
            "unchanged": plan.unchanged,
            "rejected": dict(sorted(reasons.items())),
        }
        summary.accepted += run_summary["accepted"]
        summary.near_duplicates += run_summary["near_duplicates"]
        summary.unchanged += run_summary["unchanged"]
        for row in plan.rows:  # a file an earlier run of this ingest rejected, read now
            summary.rejected_files.pop((row["source_root"], row["source_path"]), None)
        for reject in run_rejects:
            where = reject["source_root"], reject["source_path"]
            summary.rejected_files[where] = reject["reason"], reject["message"]
        counted = Counter(reason for reason, _ in summary.rejected_files.values())
        summary.duplicates = counted.pop("duplicate", 0)
        summary.rejected = dict(sorted(counted.items()))
        wanting = Counter(
            message
            for _, message in summary.rejected_files.values()
            if for_want_of_library(message)
        )
        summary.missing_libraries = dict(sorted(wanting.items()))
        # Only what is counted: this run wrote the manifest last, and read it whole before.
        samples = manifest.read_manifest(self.dataset.samples_manifest, _COUNTED)
        shards = manifest.read_manifest(self.dataset.shards_manifest, manifest.SHARDS)
        summary.untagged = samples["features_version"].null_count
        self._write_info(samples, shards, run=run_summary)
        # run.json goes first: without it the rest of the state is known to be stale.
        self.dataset.pending_run.unlink()
        shutil.rmtree(self.dataset.state_dir)

    def _group_bursts(self) -> None:
        """Bursts regrouped over the whole manifest (new stills may extend one); the
        manifest is rewritten only when that changes something, so re-running it (a
        resumed finalize, an ingest with nothing new) changes nothing more. Grouped on
        the columns it needs alone (the manifest was read whole, and checked, earlier in
        the run): the whole is read again only to be rewritten."""
        path = self.dataset.samples_manifest
        if not path.exists():
            return
        gap = self.settings.get("burst_gap", DEFAULT_BURST_GAP)  # a run.json from before bursts
        kept = (*GROUPING, *_BURST_COLUMNS)
        grouping = manifest.read_manifest(
            path, pa.schema([manifest.SAMPLES.field(c) for c in kept])
        )
        grouped = burst_columns(grouping, gap)
        if all(grouping[name].equals(pa.chunked_array([grouped[name]])) for name in grouped):
            return
        del grouping
        samples = manifest.read_manifest(path, manifest.SAMPLES)
        for name, values in grouped.items():
            samples = samples.set_column(samples.schema.get_field_index(name), name, values)
        manifest.write_manifest(path, samples)

    def _write_info(self, samples: pa.Table, shards: pa.Table, run: dict | None) -> None:
        fixed = {"split": self.settings["split"], "keep_gps": self.settings["keep_gps"]}
        if self.dataset.exists():
            info = self.dataset.read_info()
            # A dataset `import-paired` made has none of ingest's fixed settings: the first
            # ingest into it fixes them, as for a dataset it makes (`_check_fixed`).
            info["options"] = {**fixed, **info.get("options", {})}
        else:
            info = initial_info(self.settings["name"], fixed)
        info["tool"] = {"name": "rainbench", "version": __version__}
        info["updated_at"] = datetime.now(UTC).isoformat()
        info["counts"] = {
            **info["counts"],  # synthetic splits' counts are kept up by synth
            "samples": samples.num_rows,
            "shards": shards.num_rows,
            "bytes": int(pc.sum(shards["bytes"]).as_py() or 0),
            "splits": _counts(samples["split"]),
            "layers": _counts(samples["layer"]),
        }
        if run is not None:
            keys = (
                "run_id",
                "started_at",
                "inputs",
                "layer",
                "shard_bytes",
                "near_dup_bits",
                "max_pixels",
                "tool_version",
            )
            entry = {
                **{k: self.settings[k] for k in keys},
                "inputs": [name_text(p) for p in self.settings["inputs"]],
                # Absent from the settings of runs started by older versions.
                "burst_gap": self.settings.get("burst_gap", DEFAULT_BURST_GAP),
                "tag": self.settings.get("tag", True),
                "labels": self.settings.get("labels"),
                "versions": self.settings.get("versions"),
                "other_versions": self.settings.get("other_versions", []),
                "finished_at": datetime.now(UTC).isoformat(),
                **run,
            }
            # A run killed after publishing this entry publishes it again on resume.
            info["runs"] = [r for r in info["runs"] if r["run_id"] != entry["run_id"]] + [entry]
        self.dataset.write_info(info)

    def _bar(self, total: int, phase: str, unit: str) -> tqdm:
        return tqdm(
            total=total,
            desc=phase,
            unit=unit,
            disable=not self.progress or not total,
            file=sys.stderr,
            dynamic_ncols=True,
        )


def _known_files(
    samples: pa.Table,
    rejects: pa.Table,
    caps: dict[str, object],
    max_pixels: int,
    sources: list[SourceFile],
) -> set:
    """Of `sources`, the files already decided: stored captures, and refusals a re-run
    would repeat. A capture refused as too large by a run with a lower `--max-pixels`
    (`caps`: each run's) than this one's is no longer decided. Only the rows of the
    sources' roots and paths are looked at, so a run adding a few files to a large dataset
    holds no Python object per row."""
    columns = ["source_root", "source_path", "source_size", "source_mtime_ns", "source_inode"]
    sticky = {str(reason) for reason in STICKY}
    files = {(source.root, source.path) for source in sources}
    rows = samples.select(columns).filter(_maybe_of(samples, files)).to_pylist()
    for row in rejects.filter(_maybe_of(rejects, files)).to_pylist():
        cap = caps.get(row["ingest_run"])
        cap = cap if isinstance(cap, int) else DEFAULT_MAX_PIXELS  # a run without one
        raised = row["reason"] == Reason.TOO_MANY_PIXELS and max_pixels > cap
        if row["reason"] in sticky and not raised:
            rows.append(row)
    # A row written before inodes were kept has none: 0, matched on the rest.
    return {(*(r[c] for c in columns[:4]), r["source_inode"] or 0) for r in rows}


def _maybe_of(table: pa.Table, files: set[tuple[str, str]]) -> pa.ChunkedArray:
    """Which rows of `table` may be of one of `files` (source_root, source_path): their
    root is one of the files' and their path one of the files', checked on the columns;
    a few such rows are of none (another file's root with a third's path)."""
    roots = pa.array({root for root, _ in files}, pa.string())
    paths = pa.array({path for _, path in files}, pa.string())
    return pc.and_(
        pc.is_in(table["source_root"], value_set=roots),
        pc.is_in(table["source_path"], value_set=paths),
    )


def _without_files(table: pa.Table, files: set[tuple[str, str]]) -> pa.Table:
    """The rows of `table` whose (source_root, source_path) is none of `files`: only the
    rows of their roots and paths are looked at as Python objects."""
    columns = ["source_root", "source_path"]
    rows = pc.indices_nonzero(_maybe_of(table, files))
    found = table.select(columns).take(rows).to_pylist()
    gone = [
        number
        for number, row in zip(rows.to_pylist(), found, strict=True)
        if (row["source_root"], row["source_path"]) in files
    ]
    keep = np.ones(table.num_rows, dtype=bool)
    keep[gone] = False
    return table.filter(keep)


def _among(keys: pa.ChunkedArray, wanted: list[str]) -> set[str]:
    """Those of `wanted` that `keys` holds, without a Python object for each key."""
    return set(keys.filter(pc.is_in(keys, value_set=pa.array(wanted, pa.string()))).to_pylist())


def _sorted(parts: list[pa.Table], keys: list[tuple[str, str]]) -> pa.Table:
    """`pa.concat_tables(parts).sort_by(keys)`, the same table to the byte, made a column
    at a time: each column's rows are let go once their sorted copy is made, so the rows
    are held about once, not twice. `parts` is emptied; the caller must hold none of them.
    """
    table = pa.concat_tables(parts)
    parts.clear()
    order = pc.sort_indices(table, sort_keys=keys)
    schema, columns = table.schema, table.columns
    del table
    for number, column in enumerate(columns):
        columns[number] = column.take(order)
        del column
        # The old column's memory given back at once: else the allocator keeps much of
        # it while the next columns are copied (80 MB more at 400,000 captures).
        pa.default_memory_pool().release_unused()
    return pa.Table.from_arrays(columns, schema=schema)


def _counts(values: pa.ChunkedArray) -> dict[str, int]:
    """Each value's count, in the order the values first appear (as `Counter` gives)."""
    counted = pc.value_counts(values)
    return dict(
        zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist(), strict=True)
    )


def _with_identities(samples: pa.Table, identities: dict[str, list[int]]) -> pa.Table:
    """`samples` with the given captures' files as they are now: [size, mtime_ns, inode]
    by key. Applying it twice (a resumed run) changes nothing more. Each column in one
    piece, as the manifest has always been written after this, and changed on its
    columns, not on a Python object per row."""
    seen = pc.is_in(samples["key"], value_set=pa.array(list(identities), pa.string()))
    keys = samples["key"].filter(seen).to_pylist()
    table = samples.combine_chunks()
    seen = seen.combine_chunks()
    for number, name in enumerate(_IDENTITY):
        now = pa.array([identities[key][number] for key in keys], pa.int64())
        values = pc.replace_with_mask(table[name].combine_chunks(), seen, now)
        table = table.set_column(table.schema.get_field_index(name), name, values)
    return table


def _unless_original_lost(reject: dict, why_lost: dict[str, str]) -> dict:
    """`reject`, unless it is a duplicate of a capture this run lost before storing it
    (changed or gone since its probe): that repeats nothing the dataset holds, and as a
    duplicate it would never be read again. Refused as changed instead, so the next run
    reads it again and stores its bytes."""
    why = why_lost.get(reject.get("duplicate_of") or "")
    if why is None:
        return reject
    return {
        **reject,
        "reason": str(Reason.CHANGED),
        "message": f"{reject['message']}, not stored ({why}); read again by the next ingest",
        "duplicate_of": None,
    }


def _reject_of(row: dict, run_id: str) -> dict:
    return {
        "source_path": row["source_path"],
        "reason": None,
        "message": None,
        "duplicate_of": None,
        "source_root": row["source_root"],
        "source_size": row["source_size"],
        "source_mtime_ns": row["source_mtime_ns"],
        "source_inode": row["source_inode"],
        "ingest_run": run_id,
    }


def _check_uploaded(dataset: Dataset, result: UnitResult) -> str:
    """Which upload of the shard the store holds (`store.version`, one HEAD request).
    Refuse to go on, nothing of the shard committed, when the store this driver reaches
    lacks what a worker uploaded: the workers reach another store."""
    found = version(f"{dataset.url}/{result.shard}")
    size = _size_of(found)
    if size != result.bytes:
        what = "is not there" if size < 0 else f"has {size} bytes, not {result.bytes}"
        raise DatasetError(
            f"{dataset.url}/{result.shard} {what}, though a worker uploaded it: the workers "
            "reach another object store than this machine (their AWS_ENDPOINT_URL, region "
            "or credentials differ); nothing of it was committed. Give the Ray nodes this "
            "machine's store settings, then run the same ingest again to resume"
        )
    return found


def _still_published(dataset: Dataset, marker: UnitResult) -> bool:
    """Whether the shard a finished unit published is still there as it left it: in a
    store, the same upload (another writer may have put as many bytes under the key
    since), where the marker names it; else a file of its size."""
    if dataset.url is None:
        try:
            return (dataset.root / marker.shard).stat().st_size == marker.bytes
        except FileNotFoundError:
            return False
    found = version(f"{dataset.url}/{marker.shard}")
    if marker.version is not None:  # markers written before versions were kept have none
        return found == marker.version
    return _size_of(found) == marker.bytes


def _size_of(found: str | None) -> int:
    """The object's size in a `store.version` (-1: no object)."""
    return -1 if found is None else int(found.partition(":")[0])
