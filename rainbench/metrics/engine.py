"""Scoring many images: pair predictions with references by name, decode each image
once for all metrics, score the images on every core (largest first; as many workers as
memory holds for the largest images), and cache each value by
(prediction sha256, reference sha256, metric, protocol version) so re-scoring is free.

A file that cannot be read, or a metric that fails on one image, is recorded in that
image's `status` and the run goes on.
"""

import functools
import hashlib
import os
import sqlite3
import sys
import unicodedata
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import UnidentifiedImageError

from rainbench.capture.decode import (
    FLOAT_TIFF,
    MAX_PIXELS_ENV,
    PixelCapExceeded,
    float_tiff,
    header_size,
    load_stored,
    megapixels,
    readers_max_pixels,
)
from rainbench.capture.formats import CAPTURE_SUFFIXES, FORMATS, is_capture_name, sniff
from rainbench.capture.orientation import swaps_axes, turn_upright
from rainbench.capture.reject import CaptureRejected, Reason
from rainbench.capture.source import name_text, open_regular, read_regular
from rainbench.cluster import make_pool
from rainbench.files import leads_inside
from rainbench.metrics import weights
from rainbench.metrics.registry import (
    PROTOCOL_VERSION,
    Metric,
    MetricError,
    MetricSpec,
    cache_versions,
    check_metric,
    create_metric,
    size_mismatch,
)
from rainbench.parallel import available_memory
from rainbench.threads import choose_threads

DEFAULT_CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rainbench" / "scores.sqlite"
)


@dataclass(frozen=True)
class ScoreJob:
    name: str  # the file's path relative to the prediction folder
    pred: Path
    ref: Path | None


@dataclass
class Pairing:
    jobs: list[ScoreJob]
    unmatched_pred: list[str] = field(default_factory=list)
    unmatched_ref: list[str] = field(default_factory=list)
    # Files that are no image rainbench reads (a .npy, a .txt), left out of the pairing.
    unsupported_pred: list[str] = field(default_factory=list)
    unsupported_ref: list[str] = field(default_factory=list)
    # Links that lead out of their folder, left out: as ingest refuses them (link-outside).
    outside_pred: list[str] = field(default_factory=list)
    outside_ref: list[str] = field(default_factory=list)
    # Of the unmatched, those whose stem another file on their side has too (ambiguous),
    # grouped by stem: said as such, as their names may well be on the other side.
    ambiguous_pred: list[str] = field(default_factory=list)
    ambiguous_ref: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ScoreSettings:
    metrics: tuple[str, ...]
    options: dict  # passed to every create_metric (weights_dir, device)
    cache: str | None  # SQLite file, or None for no cache


def pair_folders(pred_dir: Path, ref_dir: Path | None) -> Pairing:
    """Predictions paired with references of the same relative path and stem.

    The extension may differ (a derainer may write PNG for a JPEG input); a stem
    found twice on one side is ambiguous and reported as unmatched. Names are given
    as ingest stores them (`name_text`: bytes that are not UTF-8 as `\\xHH`).
    Files that are no image (by their extension; hidden ones aside) are listed apart.
    """
    preds, pred_twice, pred_other, pred_out = _images_by_stem(pred_dir)
    if ref_dir is None:
        return Pairing(
            [ScoreJob(_name(path, pred_dir), path, None) for _, path in sorted(preds.items())],
            _names(pred_twice, pred_dir),
            unsupported_pred=_names(pred_other, pred_dir),
            outside_pred=_names(pred_out, pred_dir),
            ambiguous_pred=_names(pred_twice, pred_dir),
        )
    refs, ref_twice, ref_other, ref_out = _images_by_stem(ref_dir)
    jobs = [
        ScoreJob(_name(preds[s], pred_dir), preds[s], refs[s])
        for s in sorted(preds.keys() & refs.keys())
    ]
    return Pairing(
        jobs,
        sorted(_names([preds[s] for s in preds.keys() - refs.keys()] + pred_twice, pred_dir)),
        sorted(_names([refs[s] for s in refs.keys() - preds.keys()] + ref_twice, ref_dir)),
        _names(pred_other, pred_dir),
        _names(ref_other, ref_dir),
        _names(pred_out, pred_dir),
        _names(ref_out, ref_dir),
        _names(pred_twice, pred_dir),
        _names(ref_twice, ref_dir),
    )


def _names(paths: list[Path], folder: Path) -> list[str]:
    return [_name(path, folder) for path in paths]


def _name(path: Path, folder: Path) -> str:
    return name_text(path.relative_to(folder).as_posix())


def _images_by_stem(
    folder: Path,
) -> tuple[dict[str, Path], list[Path], list[Path], list[Path]]:
    """The images under `folder` by relative path without extension, those whose stem
    is found twice (ambiguous: left unmatched, and reported), the other files (not
    hidden) that are no image, and the links that lead out of `folder` (rglob follows
    no linked folder)."""
    by_stem: dict[str, list[Path]] = {}
    other, outside = [], []
    for path in sorted(folder.rglob("*")):
        if path.is_symlink() and not leads_inside(path, folder):
            outside.append(path)
            continue
        # Folders are walked. Whatever else bears an image's name is a prediction or a
        # reference, one that cannot be read (a dangling link, a link loop, a FIFO)
        # included: its row says why, rather than its name going unsaid.
        if path.is_dir():
            continue
        if _scored_name(path.name):
            # NFC: a name copied from macOS (decomposed) pairs with the same name typed
            # elsewhere (composed).
            stem = path.relative_to(folder).with_suffix("").as_posix()
            by_stem.setdefault(unicodedata.normalize("NFC", stem), []).append(path)
        elif not path.name.startswith("."):
            other.append(path)
    found = {stem: paths[0] for stem, paths in by_stem.items() if len(paths) == 1}
    twice = [path for paths in by_stem.values() if len(paths) > 1 for path in paths]
    return found, twice, other, outside


def _scored_name(name: str) -> bool:
    """Whether a file of this name is an image to score: a capture's extension, but not a
    video's (a clip is no prediction to compare, and Pillow reads none)."""
    if not is_capture_name(name):
        return False
    return not FORMATS[CAPTURE_SUFFIXES[name[name.rfind(".") :].lower()]].video


@dataclass(frozen=True)
class ScorePlan:
    """How `score` runs: the jobs largest first, in how many processes, each with how
    many of torch's CPU threads; paths absolute (a Ray task runs in its worker's folder)."""

    jobs: list[ScoreJob]
    settings: ScoreSettings  # with the threads, and the device, each process takes
    identities: dict[str, str]  # cache_identities
    workers: int
    threads: int
    ray: str | None
    gpu: bool
    # The readers' pixel cap, read here: a Ray worker has not this process's environment.
    max_pixels: int


def score(
    jobs: list[ScoreJob], settings: ScoreSettings, workers: int, ray: str | None = None
) -> list[dict]:
    """One row per job, in name order: name, hashes, size, a column per metric, status.

    With `ray` (a cluster address, or "auto") the images are scored as Ray tasks
    (`rainbench.cluster.make_pool`), each on a GPU of the cluster when the device is
    CUDA; locally, `workers` is first cut to what the memory here holds for the largest
    image.
    """
    return run_plan(plan_scoring(jobs, settings, workers, ray))


def plan_scoring(
    jobs: list[ScoreJob], settings: ScoreSettings, workers: int, ray: str | None = None
) -> ScorePlan:
    """How `score` would run these jobs (its provenance records the workers and threads)."""
    jobs, settings = _absolute(jobs, settings)
    max_pixels = readers_max_pixels()
    specs = [check_metric(metric) for metric in settings.metrics]
    # Said once, before any image is read, rather than as every image's failure.
    compared = [spec.name for spec in specs if spec.full_reference]
    if compared and any(job.ref is None for job in jobs):
        raise MetricError(
            f"{', '.join(compared)} {'is' if len(compared) == 1 else 'are'} full-reference: "
            "score against a folder of ground truths (--ref), or name no-reference metrics "
            "(rainbench metrics lists them)"
        )
    # Fails fast on a missing weight file, without building (importing torch) here.
    identities = cache_identities(settings)
    # One image per unit, largest first, so no worker idles while another has a backlog.
    sizes = {job: _pixels(job) for job in jobs}
    ordered = sorted(jobs, key=lambda job: sizes[job], reverse=True)
    if ray is None:
        largest = [worker_memory(specs, sizes[job]) for job in ordered[:workers]]
        workers = workers_for_memory(largest, available_memory())
    # One torch thread per process where several share the cores (a pool's workers, Ray's
    # one-CPU tasks); a process alone takes the free CPUs, as training does.
    threads = 1 if workers > 1 or ray is not None else choose_threads()
    options = {**settings.options, "threads": threads}
    gpu = ray is not None and str(options.get("device", "cpu")).startswith("cuda")
    if gpu:  # Ray shows each task only the GPU it was given, as cuda:0
        options["device"] = "cuda"
    settings = ScoreSettings(settings.metrics, options, settings.cache)
    return ScorePlan(ordered, settings, identities, workers, threads, ray, gpu, max_pixels)


def run_plan(plan: ScorePlan) -> list[dict]:
    """The rows of `score`, as `plan` says to make them."""
    tune = plan.ray is not None or plan.workers > 1  # the units run in worker processes
    rows, caching = [], plan.settings.cache is not None
    with make_pool(plan.workers, plan.ray, plan.gpu) as pool:
        units = [(job, plan.settings, tune, plan.identities, plan.max_pixels) for job in plan.jobs]
        for row in pool.map_unordered(score_one, units):
            if caching:
                caching = _store(plan.settings.cache, [row], plan.identities)
            rows.append(row)
    return sorted(rows, key=lambda row: row["name"])


def _absolute(
    jobs: list[ScoreJob], settings: ScoreSettings
) -> tuple[list[ScoreJob], ScoreSettings]:
    """The jobs and settings with every path absolute: a Ray task runs in its worker's
    folder, not in this one (`--pred out/` would be read there)."""
    jobs = [
        ScoreJob(job.name, job.pred.absolute(), None if job.ref is None else job.ref.absolute())
        for job in jobs
    ]
    options = dict(settings.options)
    if options.get("weights_dir"):
        options["weights_dir"] = str(Path(options["weights_dir"]).absolute())
    cache = None if settings.cache is None else str(Path(settings.cache).absolute())
    return jobs, ScoreSettings(settings.metrics, options, cache)


def cache_identities(settings: ScoreSettings) -> dict[str, str]:
    """What each metric's value depends on beyond the two images: the protocol, the
    sha256 of the weight file it loads and the versions of what computes it. The cache
    keys values by it, so a value computed with other weights or libraries is computed
    again rather than read."""
    libraries = ", ".join(f"{name} {number}" for name, number in cache_versions().items())
    identities = {}
    for metric in settings.metrics:
        loaded = weights.required(metric, settings.options.get("weights_dir"))
        sha256 = loaded.sha256 if loaded is not None else "none"
        identities[metric] = f"{PROTOCOL_VERSION}; weights {sha256}; {libraries}"
    return identities


# -- memory -------------------------------------------------------------------------------

# A worker with torch and pyiqa imported and no image yet (measured: 0.45 GB), rounded up.
WORKER_BASE_BYTES = 1 << 30
# The decoded prediction and reference (uint8 RGB), held while every metric runs.
DECODED_BYTES_PER_PIXEL = 6
_HEADER_BYTES = 1 << 18  # enough for a PNG, JPEG, TIFF or WebP header, EXIF included


def worker_memory(specs: list[MetricSpec], pixels: int) -> int:
    """Bytes one worker needs to score an image of `pixels` with these metrics: they
    run one after another, so the hungriest one counts."""
    hungriest = max((spec.peak_bytes_per_pixel for spec in specs), default=0.0)
    return WORKER_BASE_BYTES + int(pixels * (hungriest + DECODED_BYTES_PER_PIXEL))


def workers_for_memory(needs: list[int], available: int) -> int:
    """How many workers fit: `needs` are the bytes of the largest images, largest first,
    one per worker wanted. Each worker's first image is one of them and the largest it
    will see; at least one."""
    total = 0
    for fitting, need in enumerate(needs):
        total += need
        if total > available:
            return max(1, fitting)
    return max(1, len(needs))


def _pixels(job: ScoreJob) -> int:
    """The prediction's size from its header (the whole file read only when the header is
    not in its first bytes); its file size when unreadable: still a fair order."""
    try:
        # A FIFO or a device is refused, not opened to wait on; its row says why.
        with open_regular(job.pred) as file:
            head = file.pread(0, _HEADER_BYTES)
            width_height = header_size(head)
            if width_height is None and len(head) == _HEADER_BYTES:
                width_height = header_size(file.pread(0, file.size))
            size = file.size
    except CaptureRejected:
        return 0
    return width_height[0] * width_height[1] if width_height else size


# -- in each worker process ---------------------------------------------------------------

# The metrics built in this process, by name and every option they were built with
# (weights dir, device, threads): a worker builds each once, whatever runs it (this pool's
# processes, Ray's, or the caller's own); a later score with other options in the same
# process builds its own rather than reusing one built for another run's.
_BUILT: dict[tuple, Metric] = {}


def built_metric(name: str, options: dict) -> Metric:
    key = (name, tuple(sorted(options.items())))
    if key not in _BUILT:
        _BUILT[key] = create_metric(name, **options)
    return _BUILT[key]


def score_one(task: tuple[ScoreJob, ScoreSettings, bool, dict[str, str], int]) -> dict:
    job, settings, tune, identities, max_pixels = task
    if tune:
        _tune_worker()
    metrics = {name: built_metric(name, settings.options) for name in settings.metrics}
    cache = _open_cache(settings.cache)
    try:
        return _score_one(job, metrics, cache, identities, max_pixels)
    finally:
        if cache is not None:
            cache.close()


@functools.cache  # once per process
def _tune_worker() -> None:
    """Ask torch for transparent huge pages, if it is not imported yet in this worker
    (torch reads the variable at its first allocation). NIQE and PIQE allocate and free
    a band's float buffers, hundreds of MB, for every band of every image, and the kernel
    faults each block in anew; with 2 MB pages, far fewer faults. Only in pool workers,
    never in the caller's process; values are the same either way.
    """
    if "torch" not in sys.modules:
        os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")


def _score_one(
    job: ScoreJob, metrics: dict[str, Metric], cache, identities: dict[str, str], max_pixels: int
) -> dict:
    row: dict = {
        "name": job.name,
        "pred_sha256": None,
        "ref_sha256": None,
        "width": None,
        "height": None,
        "status": "ok",
    }
    # A FIFO, a device or a dangling link is refused, not read; so is a file larger than a
    # picture within the pixel cap takes. The row is the prediction's: a reference that
    # cannot be read is named.
    try:
        pred_bytes = read_regular(job.pred, max_pixels=max_pixels)
    except CaptureRejected as rejected:
        row["status"] = f"error: {_unread(rejected)}"
        return row
    row["pred_sha256"] = hashlib.sha256(pred_bytes).hexdigest()
    try:
        ref_bytes = read_regular(job.ref, max_pixels=max_pixels) if job.ref else None
    except CaptureRejected as rejected:
        row["status"] = f"error: reference {name_text(job.ref.name)}: {_unread(rejected)}"
        return row
    row["ref_sha256"] = hashlib.sha256(ref_bytes).hexdigest() if ref_bytes is not None else None
    known = _cached(cache, row["pred_sha256"], row["ref_sha256"], identities)
    row.update(known)
    todo = [name for name in metrics if name not in known]
    if not todo:
        row["width"], row["height"] = _cached_size(pred_bytes, job.pred, max_pixels)
        return row
    try:  # decoded once, for every metric that needs computing
        pred, pred_turn = _decode(pred_bytes, job.pred, max_pixels)
        try:
            ref, ref_turn = (
                _decode(ref_bytes, job.ref, max_pixels) if ref_bytes is not None else (None, 1)
            )
        except MetricError as error:  # it most often has the prediction's name: said whose
            raise MetricError(f"reference {error}") from None
    except MetricError as error:
        row.update(dict.fromkeys(todo))
        row["status"] = f"error: {error}"
        return row
    row["height"], row["width"] = pred.shape[:2]
    failures = []
    # A size that differs fails every full-reference metric alike: said once, naming them.
    compared = [name for name in todo if metrics[name].spec.full_reference]
    mismatch = size_mismatch(pred, ref) if ref is not None and compared else None
    if mismatch:
        row.update(dict.fromkeys(compared))
        mismatch += _turn_hint(pred, ref, pred_turn, ref_turn)
        failures.append(f"{mismatch}: {', '.join(compared)} not scored")
        todo = [name for name in todo if name not in compared]
    for name in todo:
        metric = metrics[name]
        try:
            row[name] = metric(pred, ref) if metric.spec.full_reference else metric(pred)
        except MetricError as error:
            row[name] = None
            failures.append(metric_failure(name, error))
    if failures:
        row["status"] = "error: " + "; ".join(failures)
    return row


def _cached_size(data: bytes, path: Path, max_pixels: int) -> tuple[int | None, int | None]:
    """The upright (width, height) of a prediction whose every value is cached: from its
    header, or where Pillow reads none (a HEIC), decoded, as a row computed anew gives it."""
    size = header_size(data)
    if size is not None:
        return size
    try:
        height, width = _decode(data, path, max_pixels)[0].shape[:2]
    except MetricError:
        return None, None
    return width, height


def _turn_hint(pred: np.ndarray, ref: np.ndarray, pred_turn: int, ref_turn: int) -> str:
    """Why two sizes may be each other's transpose: every image is compared upright,
    turned by its EXIF orientation (as OpenCV's `imread` turns it), and a derainer that
    read its input's stored pixels (PIL's `Image.open` does not turn them) wrote them so."""
    if pred.shape[:2] != ref.shape[1::-1]:
        return ""
    for side, other, turn in (
        ("reference", "prediction", ref_turn),
        ("prediction", "reference", pred_turn),
    ):
        if swaps_axes(turn):
            return (
                f" (the {side} is turned upright by its EXIF orientation {turn}; as stored, "
                f"unturned, it has the {other}'s size)"
            )
    return ""


def _unread(rejected: CaptureRejected) -> str:
    """Why a file was not read, with what raises the cap where it was too large."""
    if rejected.reason == Reason.TOO_MANY_PIXELS:
        return f"{rejected.message} (the pixel cap readers keep: {MAX_PIXELS_ENV})"
    return rejected.message


def _decode(data: bytes, path: Path, max_pixels: int) -> tuple[np.ndarray, int]:
    """The image upright (as it is shown), and the EXIF orientation that turned it; one
    whose header declares more than `max_pixels` is refused undecoded."""
    fmt = sniff(data, path.name)
    name = name_text(path.name)
    if fmt is None or fmt.raw or fmt.video:
        raise MetricError(f"{name} is not an image that can be scored")
    if fmt.name == "tiff" and float_tiff(data):
        raise MetricError(f"{name} is {FLOAT_TIFF}")
    try:
        image, turn = load_stored(data, fmt, max_pixels)
    except PixelCapExceeded:  # load_stored read the header only: the size is past the cap
        raise MetricError(
            f"{name} is not decoded: its header declares more than the "
            f"{megapixels(max_pixels)} cap readers keep ({MAX_PIXELS_ENV})"
        ) from None
    except CaptureRejected as rejected:  # a library it needs is not installed (HEIC's)
        raise MetricError(f"{name}: {rejected.message}") from None
    except UnidentifiedImageError:  # its message names a memory address: not reproducible
        raise MetricError(f"{name} does not decode: no readable {fmt.name} header") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise MetricError(f"{name} does not decode: {error}") from None
    return np.asarray(turn_upright(image, turn)), turn


def metric_failure(name: str, error: Exception) -> str:
    """A metric's failure on one image, on one line, its name said once (most metrics'
    messages start with it already); an unexpected error keeps its type."""
    lines = str(error).strip().splitlines() or [""]
    text = lines[0] if isinstance(error, MetricError) else f"{type(error).__name__}: {lines[0]}"
    return text if text.startswith((f"{name}:", f"{name} ")) else f"{name}: {text}"


# -- the cache ----------------------------------------------------------------------------

_SCHEMA = """create table if not exists scores (
    pred_sha256 text not null, ref_sha256 text not null, metric text not null,
    protocol text not null, value real not null,
    primary key (pred_sha256, ref_sha256, metric, protocol))"""
# `protocol` holds the metric's identity (cache_identities), not only PROTOCOL_VERSION.


# Seconds a cache write waits for another process's (SQLite's own default is 5), and a
# read for another's commit (SQLite's default).
_CACHE_WAIT_S = 60
_CACHE_READ_WAIT_S = 5


def _open_cache(path: str | None):
    """The cache, read-only; None where there is none to read. A cache is only ever a
    shortcut: one that cannot be read now (another score holding it past SQLite's wait),
    or at all (a damaged one, a file that is no SQLite database), is none, and the values
    are computed; storing into the latter ends the run in one line (`_store`)."""
    if path is None or not Path(path).exists():
        return None
    cache = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=_CACHE_READ_WAIT_S)
    try:
        # A cache whose first write failed (a full disk) is an empty file, without the table.
        found = cache.execute("select 1 from sqlite_master where name = 'scores'").fetchone()
    except sqlite3.DatabaseError:  # OperationalError among them
        found = None
    if found is None:
        cache.close()
        return None
    return cache


def _cached(cache, pred_sha: str, ref_sha: str | None, identities: dict[str, str]) -> dict:
    """The values cached for this pair under each metric's identity (`protocol`); none
    where the cache cannot be read now (`_open_cache`)."""
    if cache is None or not identities:
        return {}
    either = " or ".join(["(metric = ? and protocol = ?)"] * len(identities))
    try:
        # A value that is no number (the column takes any type: a text of GBs, in a cache
        # written by something else) is not read, and is computed anew.
        found = cache.execute(
            f"select metric, value from scores where pred_sha256 = ? and ref_sha256 = ? "
            f"and typeof(value) in ('real', 'integer') and ({either})",
            (pred_sha, ref_sha or "", *(item for pair in identities.items() for item in pair)),
        )
        return dict(found.fetchall())
    except sqlite3.DatabaseError:
        return {}


def _store(path: str, rows: list[dict], identities: dict[str, str]) -> bool:
    """Cache `rows`' values; False when another process held the cache past our wait,
    which the run goes on without (a cache is only a shortcut)."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        _insert(path, rows, identities)
    # A full disk, a read-only folder, a writer; OSError: a file where a folder of its path
    # should be, which the cache's folder cannot be made through.
    except (sqlite3.OperationalError, OSError) as error:
        if isinstance(error, sqlite3.OperationalError) and "locked" in str(error):
            warnings.warn(
                f"{path}: another process held the score cache for {_CACHE_WAIT_S} s "
                f"({error}); the rest of this run's values are not cached",
                CacheWarning,
                stacklevel=2,
            )
            return False
        why = f"{error.strerror}: {error.filename}" if isinstance(error, OSError) else error
        raise MetricError(
            f"{path}: the score cache cannot be written ({why}); free some space or name "
            "another --cache, or score with --no-cache"
        ) from None
    except sqlite3.DatabaseError as error:  # "file is not a database", "malformed"
        raise MetricError(
            f"{path}: not a score cache, or a damaged one ({error}); name another --cache "
            "(a damaged cache may be deleted: it is only a shortcut), or score with --no-cache"
        ) from None
    return True


class CacheWarning(UserWarning):
    """The score cache could not be written: the run goes on, its values not cached."""


def _insert(path: str, rows: list[dict], identities: dict[str, str]) -> None:
    with sqlite3.connect(path, timeout=_CACHE_WAIT_S) as cache:
        cache.execute(_SCHEMA)
        cache.executemany(
            "insert or replace into scores values (?, ?, ?, ?, ?)",
            [
                (
                    row["pred_sha256"],
                    row["ref_sha256"] or "",
                    metric,
                    identity,
                    row[metric],  # inf (identical images) is a REAL to SQLite too
                )
                for row in rows
                if row["pred_sha256"]
                for metric, identity in identities.items()
                if row.get(metric) is not None
            ],
        )
