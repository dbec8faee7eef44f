"""Tagging a dataset's captures: the manifest columns a capture's features and tag
fill, and `rainbench tag`, which re-runs the tagger over samples.parquet and applies
label sheets without touching a shard; with --fit it first refits the tagger to the
dataset's manual labels (rainbench.ingest.taggers keeps the fitted one).

Manual labels always win: a row whose `rain_type_source` is `manual` keeps its rain
type whatever the tagger says (its `rain_type_auto` is still refreshed), until a
later label sheet says otherwise.
"""

import hashlib
import json
import shlex
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL.Image import Image

from rainbench import __version__
from rainbench.capture.formats import FORMATS
from rainbench.capture.source import name_text
from rainbench.files import file_sha256
from rainbench.ingest.taggers import FitReport, reusable, store_fitted, use_fitted, use_shipped
from rainbench.parallel import WorkerPool
from rainbench.shards import manifest
from rainbench.shards.dataset import Dataset, DatasetError, writing
from rainbench.shards.fitted import active_tagger
from rainbench.shards.layout import member
from rainbench.shards.members import (
    ShardError,
    open_member,
    open_shard,
    pixel_limit,
    read_member,
    size_limit,
)
from rainbench.shards.stats import rain_type_counts
from rainbench.tagging.features import (
    FEATURE_NAMES,
    FEATURES_VERSION,
    feature_column,
    stored_features,
)
from rainbench.tagging.labels import (
    Label,
    LabelProblem,
    LabelSheetError,
    match_labels,
    read_label_sheet,
)
from rainbench.tagging.tagger import RAIN_TYPES, Tagger, load_tagger

# Everything the tagger and label sheets own in a samples row.
TAG_COLUMNS = (
    "rain_type",
    "rain_type_source",
    "rain_type_confidence",
    "rain_type_auto",
    "rain_type_note",
    "looks_rainy",
    "tag_caveats",
    "tagger_version",
)


class LabelsRejected(DatasetError):
    """A label sheet has problems; nothing from it was applied."""

    def __init__(self, problems: list[LabelProblem], rest: bool = True):
        self.problems = problems
        self.summary = None  # an ingest's summary, when it ingested before matching the sheet
        # `rest`: whether any row could apply without the others (not so where no row
        # names a capture), which --skip-bad-labels would do.
        super().__init__(
            f"{sum(p.rows for p in problems)} label problem(s); nothing from the sheet was applied"
            + (" (--skip-bad-labels applies the rest)" if rest else "")
        )


@dataclass
class TagSummary:
    samples: int = 0
    measured: int = 0  # captures whose features were missing, stale or unusable, decoded again
    unmeasurable: list[str] = field(default_factory=list)  # keys that could not be decoded
    # Keys whose stored features were no measurement (null, NaN, ±inf, far beyond any
    # picture's): decoded again, as missing ones are; those that failed are unmeasurable.
    unusable: list[str] = field(default_factory=list)
    labelled: int = 0  # labels applied from the sheet
    empty_sheet: str | None = None  # the sheet, when it had a header and no label rows
    label_problems: list[str] = field(default_factory=list)  # skipped with --skip-bad-labels
    changed: int = 0  # rows whose tag changed (its columns but the tagger's version)
    rain_types_changed: int = 0  # of those, rows whose rain_type itself changed
    rain_types: dict[str, int] = field(default_factory=dict)
    manual: int = 0
    looks_rainy: int = 0
    tagger: str | None = None  # the version that tagged: shipped, or the dataset's fitted one
    fit: dict | None = None  # with --fit: the FitReport
    # With shipped=True: the fitted tagger the shipped one replaced ("" when none was active).
    replaced: str | None = None
    # The label sheet applied: its file name, sha256, label rows and captures labelled.
    sheet: dict | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def feature_columns(features: dict[str, float] | None) -> dict:
    """The manifest's feature columns for one capture (all null when unmeasured)."""
    values = {feature_column(name): (features or {}).get(name) for name in FEATURE_NAMES}
    return {**values, "features_version": FEATURES_VERSION if features else None}


def auto_tag_columns(
    features: dict[str, float] | None, layer: str, height: int, tagger: Tagger
) -> dict:
    """The tag columns the tagger gives one capture (untagged when unmeasured)."""
    if features is None:
        return dict.fromkeys(TAG_COLUMNS)
    tag = tagger.tag(features, layer, height)
    return {
        "rain_type": tag.rain_type,
        "rain_type_source": "auto" if tag.rain_type else None,
        "rain_type_confidence": tag.confidence,
        "rain_type_auto": tag.rain_type,
        "rain_type_note": None,
        "looks_rainy": tag.looks_rainy,
        "tag_caveats": list(tag.caveats),
        "tagger_version": tagger.version,
    }


def read_labels(sheet: Path) -> tuple[list[Label], list[LabelProblem]]:
    """A label sheet's labels and row problems; an unusable sheet is a DatasetError."""
    try:
        return read_label_sheet(sheet)
    except LabelSheetError as error:
        raise DatasetError(str(error)) from None


def require_dataset(dataset: Dataset) -> None:
    """Refuse in one line a folder that is no dataset. A dataset whose ingests accepted
    no capture has no samples.parquet yet, and is one of no captures, as stats has it."""
    if not dataset.samples_manifest.exists() and (
        not dataset.exists() or dataset.pending_run.exists()
    ):
        raise DatasetError(dataset.not_a_dataset("manifests/samples.parquet"))


def tag_dataset(
    path: str | Path,
    labels: Path | None = None,
    skip_bad_labels: bool = False,
    workers: int = 1,
    fit: bool = False,
    shipped: bool = False,
) -> TagSummary:
    """Re-tag every capture of the dataset at `path` from its stored features, and
    apply the label sheet `labels` if given. With `fit`, first refit the tagger to the
    dataset's manual labels (the sheet's included) and keep it; it becomes the dataset's
    tagger when it beat the shipped one in cross-validation, else the shipped one is.
    With `shipped`, the shipped tagger becomes the dataset's tagger again. Only
    samples.parquet, and with `fit` or `shipped` dataset.json and taggers/, are written."""
    with writing(path) as dataset:
        require_dataset(dataset)
        if dataset.pending_run.exists():
            # Its captures not yet committed were tagged when it planned them: a tagger
            # made active now would never tag them, nor could a sheet name them.
            raise DatasetError(
                f"{dataset.location}: an ingest into it was interrupted; run the same "
                "ingest again to finish it, then tag"
            )
        summary = retag(dataset, labels, skip_bad_labels, workers, fit, shipped)
        info = dataset.read_info()
        sheets = info.get("label_sheets", [])
        # Which sheet labelled the captures, as an ingest run records its own; the same
        # sheet applied again to the same effect is not, as an ingest finding nothing new
        # adds no run.
        if summary.sheet is not None and not (
            sheets and {name: sheets[-1].get(name) for name in summary.sheet} == summary.sheet
        ):
            applied = {"applied_at": datetime.now(UTC).isoformat(), "tool_version": __version__}
            info["label_sheets"] = [*sheets, {**summary.sheet, **applied}]
            dataset.write_info(info)
        return summary


def retag(
    dataset: Dataset,
    labels: Path | None,
    skip_bad_labels: bool,
    workers: int,
    fit: bool = False,
    shipped: bool = False,
) -> TagSummary:
    """`tag_dataset` for a caller that already holds the dataset's lock (ingest)."""
    summary = TagSummary()
    samples = manifest.read_manifest(dataset.samples_manifest, manifest.SAMPLES)
    matched: dict[str, Label] = {}
    if labels is not None:
        found, problems = read_labels(labels)
        sheet_rows = len(found) + len(problems)  # the sheet's label rows, good or not
        rejects = manifest.read_manifest(dataset.rejects_manifest, manifest.REJECTS)
        match = match_labels(found, samples, rejects, sheet=str(labels))
        problems = sorted([*problems, *match.problems], key=lambda p: p.line)
        if problems and not skip_bad_labels:
            raise LabelsRejected(problems, rest=bool(match.labels))
        # A sheet's name that is not UTF-8 as ingest stores a capture's (`\xHH`): a lone
        # surrogate is no text to a JSON reader.
        summary.label_problems = [str(replace(p, sheet=name_text(p.sheet))) for p in problems]
        matched = match.labels
        if not found and not problems:
            summary.empty_sheet = name_text(str(labels))
        summary.sheet = {
            "file": name_text(labels.name),
            "sha256": file_sha256(labels),
            "rows": sheet_rows,
            "labelled": len(matched),
            # Rows, as `rows` counts them: one problem may stand for many (`LabelProblem.rows`).
            "skipped": sum(p.rows for p in problems),
        }
    rows = samples.to_pylist()  # every row sized: read_manifest refuses one that is not
    _measure_missing(dataset, rows, workers, summary)
    # A tag changes when what it says does, not only the tagger version that said it.
    said = [name for name in TAG_COLUMNS if name != "tagger_version"]
    before = [{name: row[name] for name in said} for row in rows]
    if shipped:
        summary.replaced = use_shipped(dataset) or ""
    # A fit tags every row again and replaces the active tagger, which is then not read:
    # one damaged or missing is what the refusal to read it says --fit mends.
    tagger = load_tagger() if fit else active_tagger(dataset)
    for row in rows:
        _tag_row(row, tagger, matched.get(row["key"]))
    if fit:
        from rainbench.tagging.fit import TooFewLabels

        # The labels are in the rows now, so the fit sees the sheet's too; the fitted
        # tagger then re-tags, and the manual labels it was fitted to still win.
        try:
            tagger, report = _fit(dataset, rows)
        except TooFewLabels as error:  # all or nothing: the sheet is not applied either
            unapplied = (
                f"; nothing was changed (to apply the sheet alone: rainbench tag "
                f"{shlex.quote(str(dataset.location))} --labels {shlex.quote(str(labels))}"
                # Without it, the sheet's bad rows would refuse it all.
                + (" --skip-bad-labels" if summary.label_problems else "")
                + ")"
                if matched
                else ""
            )
            raise TooFewLabels(f"{error}{unapplied}") from None
        summary.fit = report.to_dict()
        for row in rows:
            _tag_row(row, tagger, None)
    after = [{name: row[name] for name in said} for row in rows]
    summary.changed = sum(old != new for old, new in zip(before, after, strict=True))
    summary.rain_types_changed = sum(
        old["rain_type"] != new["rain_type"] for old, new in zip(before, after, strict=True)
    )
    summary.tagger = tagger.version
    summary.labelled = len(matched)
    table = pa.Table.from_pylist(rows, schema=manifest.SAMPLES)
    if not table.equals(samples):
        manifest.write_manifest(dataset.samples_manifest, table)
        dataset.push()  # in a store's mirror: published (a no-op for a local dataset)
    summary.samples = table.num_rows
    summary.rain_types = rain_type_counts(table)
    summary.manual = sum(source == "manual" for source in table["rain_type_source"].to_pylist())
    summary.looks_rainy = sum(bool(flag) for flag in table["looks_rainy"].to_pylist())
    return summary


def _fit(dataset: Dataset, rows: list[dict]) -> tuple[Tagger, FitReport]:
    """The shipped tagger refitted to the rows' manual rain-type labels and stored (one
    stored before, when it was fitted to these very labels), made the dataset's tagger:
    what --fit asks for, even where cross-validation found it no better than the shipped
    one (the report says so; `--tagger shipped` goes back)."""
    manual = [row for row in rows if row["rain_type_source"] == "manual"]
    labelled = sorted(
        (row for row in manual if row["rain_type"] in RAIN_TYPES and stored_features(row)),
        key=lambda row: row["key"],
    )
    scenes = _scenes(labelled, rows)
    # The scenes decide the folds, so they are part of what the fit was made from.
    pairs = [
        [row["key"], row["rain_type"], scene] for row, scene in zip(labelled, scenes, strict=True)
    ]
    digest = hashlib.sha256(json.dumps([FEATURES_VERSION, pairs]).encode()).hexdigest()
    found = reusable(dataset, digest)
    if found is None:
        found = _fit_anew(dataset, labelled, manual, scenes, digest)
    tagger, report = found
    use_fitted(dataset, report)
    return tagger, report


def _fit_anew(
    dataset: Dataset, labelled: list[dict], manual: list[dict], scenes: list[str], digest: str
) -> tuple[Tagger, FitReport]:
    # Imported here: fitting needs scipy, which tagging from stored features never does.
    from rainbench.tagging.fit import fit_to_labels

    base = load_tagger()
    features = np.array(
        [[row[feature_column(name)] for name in FEATURE_NAMES] for row in labelled], dtype=float
    )
    labels = [row["rain_type"] for row in labelled]
    fitted = fit_to_labels(base, features, labels, [row["key"] for row in labelled], scenes)
    report = FitReport(
        version="",
        path="",
        reused=False,
        base_version=base.version,
        labels_sha256=digest,
        labels=fitted.counts,
        scenes=len(set(scenes)),
        clean_labels_unused=sum(row["rain_type"] is None for row in manual),
        penalty=fitted.penalty,
        folds=fitted.folds,
        cv_fitted=fitted.fitted.to_dict(),
        cv_shipped=fitted.shipped.to_dict(),
    )
    return store_fitted(dataset, fitted.tagger, report)


def _scenes(rows: list[dict], every: Sequence[dict] = ()) -> list[str]:
    """Each row's scene, named by its smallest key: captures joined, directly or through
    others, by a sequence (a burst or a video) or a near-duplicate link are one scene.
    `every`: the dataset's rows, whose links join `rows` too (a label's near-duplicate of
    a burst's unlabelled still is of that burst's scene)."""
    parent: dict[str, str] = {}

    def root(name: str) -> str:
        while parent.setdefault(name, name) != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    for row in (*rows, *every):
        for link in (row["near_dup_of"], row["sequence"]):
            if link:
                first, second = sorted((root(row["key"]), root(link)))
                parent[second] = first
    return [root(row["key"]) for row in rows]


def _tag_row(row: dict, tagger: Tagger, label: Label | None) -> None:
    features = stored_features(row)
    manual = {name: row[name] for name in ("rain_type", "rain_type_confidence", "rain_type_note")}
    was_manual = row["rain_type_source"] == "manual"
    row.update(auto_tag_columns(features, row["layer"], row["height"], tagger))
    if label is not None:
        rain_type = None if label.rain_type == "clean" else label.rain_type
        row.update(
            rain_type=rain_type,
            rain_type_source="manual",
            rain_type_confidence=1.0 if rain_type else None,
            rain_type_note=label.note,
        )
    elif was_manual:
        row.update(manual, rain_type_source="manual")


# Units of measuring per worker, at least, where the captures allow: enough that the
# workers finish close together.
_PARTS_PER_WORKER = 4


@dataclass(frozen=True)
class Stale:
    """A capture to measure again, with the manifest's sizes that bound reading it and
    its digest: bytes damaged in place are not measured as if they were the capture."""

    key: str
    format: str
    bytes: int | None
    width: int | None
    height: int | None
    sha256: str | None

    @classmethod
    def of(cls, row: dict) -> "Stale":
        """The capture of a samples.parquet row."""
        return cls(
            row["key"], row["format"], row["bytes"], row["width"], row["height"], row["sha256"]
        )


def _measure_missing(dataset: Dataset, rows: list[dict], workers: int, summary: TagSummary) -> None:
    """Decode (at preview scale) the captures whose features are missing, of another
    version or no measurement, a shard's captures a part at a time, and store fresh
    features in their rows."""
    stale: dict[str, list[Stale]] = {}
    for row in rows:
        if stored_features(row) is None:
            if row["features_version"] == FEATURES_VERSION:
                summary.unusable.append(row["key"])
            stale.setdefault(row["shard"], []).append(Stale.of(row))
    if not stale:
        return
    by_key = {row["key"]: row for row in rows}
    # A 1 GB shard holds hundreds of captures: parts of one keep every worker busy on a
    # dataset of few shards. Each part walks all the shard's headers again (tarfile
    # indexes them all): cheap on a disk, a range request per header from a store, so
    # a store's shard stays whole.
    count = sum(map(len, stale.values()))
    part = max(1, -(-count // (_PARTS_PER_WORKER * workers))) if dataset.url is None else count
    tasks = [
        (dataset.root, shard, members[start : start + part])
        for shard, members in sorted(stale.items())
        for start in range(0, len(members), part)
    ]
    with WorkerPool(workers) as pool:
        for results in pool.map_unordered(_measure_shard, tasks):
            for key, features in results:
                if features is None:
                    summary.unmeasurable.append(key)
                    continue
                by_key[key].update(feature_columns(features))
                summary.measured += 1
    summary.unmeasurable.sort()
    summary.unusable.sort()


def _measure_shard(task: tuple[Path, str, list[Stale]]) -> list[tuple[str, dict | None]]:
    # Imported in the worker: measuring needs scipy, which tagging from stored
    # features (and ingest's main process, which imports this module) never does.
    from rainbench.tagging.measure import compute_features

    return [
        (key, None if preview is None else compute_features(preview))
        for key, preview in previews(*task)
    ]


def previews(root: Path, shard: str, members: list[Stale]) -> Iterator[tuple[str, Image | None]]:
    """Each of a shard's `members` with its upright preview, decoded as ingest decoded it
    (a video's middle frame), or None where the shard or the capture cannot be read."""
    # Imported where it runs, in a worker, as the features are (above).
    from rainbench.capture.decode import decode_capture, readers_max_pixels, reduce_for_preview
    from rainbench.capture.reject import CaptureRejected
    from rainbench.capture.video import middle_frame

    try:
        tar = open_shard(root, shard)
    except ShardError:
        yield from ((stale.key, None) for stale in members)  # verify names the shard
        return
    with tar:
        for stale in members:
            fmt = FORMATS[stale.format]
            limit = size_limit(stale.bytes, stale.width, stale.height)
            # A RAW's sensor is a little larger than the picture the manifest sizes.
            pixels = readers_max_pixels() if fmt.raw else pixel_limit(stale.width, stale.height)
            name = member(stale.key, fmt.ext)
            try:
                if fmt.video:  # measured on its middle frame, as ingest did
                    with open_member(tar, root, shard, name, limit, stale.sha256) as video:
                        preview = reduce_for_preview(middle_frame(video, pixels))
                else:
                    data = read_member(tar, shard, name, limit, stale.sha256)
                    preview = decode_capture(data, fmt, pixels).preview
            except (ShardError, CaptureRejected):
                preview = None
            yield stale.key, preview
