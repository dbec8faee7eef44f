"""A dataset's own taggers: fitted to its manual labels by `rainbench tag DS --fit`, kept
versioned as DS/taggers/tagger-fit-<n>.json, the active one named in dataset.json under
"tagger". Ingest and `rainbench tag` use the active one in place of the shipped tagger.
A fit becomes the active tagger, whether or not it beat the shipped one in
cross-validation (the output says which); `rainbench tag DS --tagger shipped` makes the
shipped one active again. Fits stay on disk.

In a store, a mirror holds the fits it was asked for: a reader fetches the active one
alone, again whenever the copy here is not the version dataset.json names (the URL holds
a dataset made anew since); `--fit` fetches them all, and uploads the one it adds. The
active one is read by `rainbench.shards.fitted`, as `verify` reads it.
"""

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

from rainbench import __version__
from rainbench.files import write_atomic
from rainbench.shards.dataset import Dataset
from rainbench.shards.fitted import FIT_NAME, FOLDER, INFO_KEY, MAX_BYTES, fetch, read_fitted
from rainbench.store import listing, upload
from rainbench.tagging.tagger import Tagger, load_tagger
from rainbench.versions import CAPTURE_LIBRARIES, installed_versions


@dataclass
class FitReport:
    """What `--fit` fitted (or found already fitted to the same labels), and how well the
    fit agreed with labels it never saw, beside the shipped tagger on the same captures."""

    version: str
    path: str  # relative to the dataset
    reused: bool  # the active tagger was already fitted to exactly these labels
    base_version: str
    labels_sha256: str
    labels: dict[str, int]  # per rain type
    clean_labels_unused: int  # manual "clean" labels: the fit learns rain types only
    penalty: float | None  # None: cross-validation kept the shipped weights
    folds: int
    cv_fitted: dict  # macro_f1, accuracy, f1 per type
    cv_shipped: dict
    # Scenes among the labelled captures (a burst, a video or near-duplicates are one):
    # a scene's captures are always held out together. None in reports from before.
    scenes: int | None = None

    @property
    def beats_shipped(self) -> bool:
        """Whether the fit agreed better than the shipped tagger with labels it never saw."""
        return self.cv_fitted["macro_f1"] > self.cv_shipped["macro_f1"]

    def to_dict(self) -> dict:
        return {**self.__dict__, "beats_shipped": self.beats_shipped}


def _fits(dataset: Dataset) -> list[Path]:
    """The dataset's stored fits. A mirror's are first made the store's: each fetched, and
    those the store no longer has removed, so none is left from an earlier dataset at the
    same URL."""
    folder = dataset.taggers
    if dataset.url is not None:
        stored = {
            name
            for name, (size, _) in listing(f"{dataset.url}/{FOLDER}").items()
            if FIT_NAME.fullmatch(name) and size <= MAX_BYTES
        }
        for path in folder.glob("tagger-fit-*.json"):
            if path.name not in stored:
                path.unlink()
        for name in sorted(stored):
            fetch(dataset, f"{FOLDER}/{name}")
    return list(folder.glob("tagger-fit-*.json"))


def reusable(dataset: Dataset, labels_sha256: str) -> tuple[Tagger, FitReport] | None:
    """A stored tagger, the newest, fitted to these very labels from the shipped tagger
    of today, so fitting again would give the same tagger; with its report, which must
    name the very file and version it is in: dataset.json will name them."""
    base = load_tagger().version
    for path in sorted(_fits(dataset), reverse=True, key=_number):
        try:
            tagger = read_fitted(path, f"{dataset.location}/{FOLDER}/{path.name}")
        except (OSError, ValueError, KeyError, TypeError):
            continue  # unreadable: fitted again, into a new file
        report = tagger.calibration.get("fit")
        if (
            isinstance(report, dict)
            and report.get("labels_sha256") == labels_sha256
            and report.get("base_version") == base
            and report.get("path") == f"{FOLDER}/{path.name}"
            and report.get("version") == tagger.version
        ):
            found = _stored_report(report)
            if found is not None:
                return tagger, found
    return None


def _stored_report(report: dict) -> FitReport | None:
    """A stored fit's report, reused; None (fitted again, into a new file) for one this
    tool did not write: fields FitReport has not or lacks, or values of other types than
    the output prints and compares, as a forged or damaged file may hold. Its names are
    the file's own (`reusable`) and its labels counts (`Tagger.from_json`) already."""
    fields = {name: value for name, value in report.items() if name != "beats_shipped"}
    try:
        found = FitReport(**{**fields, "reused": True})
    except TypeError:
        return None
    well_typed = (
        _count(found.clean_labels_unused)
        and _count(found.folds)
        and (found.scenes is None or _count(found.scenes))
        and (found.penalty is None or _finite(found.penalty))
        and _agreement(found.cv_fitted)
        and _agreement(found.cv_shipped)
    )
    return found if well_typed else None


def _count(value: object) -> bool:
    return type(value) is int and value >= 0


def _finite(value: object) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _agreement(value: object) -> bool:
    """Cross-validated agreement as `tagging.fit.Agreement.to_dict` gives it."""
    return (
        isinstance(value, dict)
        and _finite(value.get("macro_f1"))
        and _finite(value.get("accuracy"))
        and isinstance(value.get("f1"), dict)
        and all(_finite(score) for score in value["f1"].values())
    )


def _number(path: Path) -> int:
    number = path.stem.rsplit("-", 1)[1]
    return int(number) if number.isdigit() else -1


def use_fitted(dataset: Dataset, report: FitReport) -> None:
    """Make the stored tagger of `report` the dataset's tagger."""
    info = dataset.read_info()
    info[INFO_KEY] = {"version": report.version, "path": report.path}
    dataset.write_info(info)


def use_shipped(dataset: Dataset) -> str | None:
    """Make the shipped tagger the dataset's tagger again; the fitted taggers stay in
    taggers/. The version of the fitted tagger that was active, if one was."""
    info = dataset.read_info()
    entry = info.pop(INFO_KEY, None)
    if entry is not None:
        dataset.write_info(info)
    return entry.get("version") if isinstance(entry, dict) else None


def store_fitted(dataset: Dataset, tagger: Tagger, report: FitReport) -> tuple[Tagger, FitReport]:
    """Write the fitted tagger as the next tagger-fit-<n>.json, named and its report
    filled in (`use_fitted` makes it the active one); in a store, uploaded at once, before
    dataset.json can name it."""
    folder = dataset.taggers
    folder.mkdir(exist_ok=True)
    taken = [path.name for path in folder.glob("tagger-fit-*.json")]
    if dataset.url is not None:  # and never a name the store has, whatever is here
        taken += listing(f"{dataset.url}/{FOLDER}")
    number = max([0, *(_number(Path(name)) for name in taken if FIT_NAME.fullmatch(name))]) + 1
    version = f"{report.base_version}-fit-{number}-{report.labels_sha256[:8]}"
    path = f"{FOLDER}/tagger-fit-{number}.json"
    report = replace(report, version=version, path=path, reused=False)
    calibration = {
        "fit": report.to_dict(),
        "command": "rainbench tag DS --fit",
        "versions": {"rainbench": __version__, **installed_versions(CAPTURE_LIBRARIES)},
    }
    fitted = replace(
        tagger, version=version, calibration=calibration, source=f"{dataset.location}/{path}"
    )
    write_atomic(
        dataset.root / path, (json.dumps(fitted.to_json(), indent=1) + "\n").encode("utf-8")
    )
    if dataset.url is not None:
        upload(dataset.root / path, f"{dataset.url}/{path}")
    return fitted, report
