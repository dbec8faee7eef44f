"""A dataset's own taggers: fitted to its manual labels by `rainbench tag DS --fit`, kept
versioned as DS/taggers/tagger-fit-<n>.json, the active one named in dataset.json under
"tagger". Ingest and `rainbench tag` use the active one in place of the shipped tagger.
A fit becomes the active tagger, whether or not it beat the shipped one in
cross-validation (the output says which); `rainbench tag DS --tagger shipped` makes the
shipped one active again. Fits stay on disk.
"""

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

from rainbench.files import regular_file, write_atomic
from rainbench.shards.dataset import TAGGERS, Dataset, DatasetError
from rainbench.tagging.tagger import Tagger, load_tagger

FOLDER = TAGGERS
INFO_KEY = "tagger"  # dataset.json: {"version", "path"} of the active fitted tagger
_FITTED = re.compile(rf"{FOLDER}/tagger-fit-[0-9]+\.json")


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


def active_tagger(dataset: Dataset) -> Tagger:
    """The dataset's fitted tagger when it has one, else the shipped tagger."""
    entry = _active_entry(dataset)
    if entry is None:
        return load_tagger()
    path = dataset.root / entry["path"]
    if not path.resolve().is_relative_to(dataset.root.resolve()):
        raise DatasetError(f"{path} leads outside the dataset; refused")
    try:
        tagger = Tagger.from_json(json.loads(regular_file(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DatasetError(
            f"{path}: cannot read the dataset's fitted tagger ({error}); "
            "fit it again with rainbench tag --fit"
        ) from None
    return tagger


def reusable(dataset: Dataset, labels_sha256: str) -> tuple[Tagger, FitReport] | None:
    """A stored tagger, the newest, fitted to these very labels from the shipped tagger
    of today, so fitting again would give the same tagger; with its report."""
    base = load_tagger().version
    for path in sorted(
        (dataset.root / FOLDER).glob("tagger-fit-*.json"), reverse=True, key=_number
    ):
        try:
            tagger = Tagger.from_json(json.loads(regular_file(path).read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # unreadable: fitted again, into a new file
        report = tagger.calibration.get("fit")
        if (
            isinstance(report, dict)
            and report.get("labels_sha256") == labels_sha256
            and report.get("base_version") == base
        ):
            fields = {name: value for name, value in report.items() if name != "beats_shipped"}
            return tagger, FitReport(**{**fields, "reused": True})
    return None


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
    filled in (`use_fitted` makes it the active one)."""
    folder = dataset.root / FOLDER
    folder.mkdir(exist_ok=True)
    number = max([0, *map(_number, folder.glob("tagger-fit-*.json"))]) + 1
    version = f"{report.base_version}-fit-{number}-{report.labels_sha256[:8]}"
    path = f"{FOLDER}/tagger-fit-{number}.json"
    report = replace(report, version=version, path=path, reused=False)
    calibration = {"fit": report.to_dict(), "command": "rainbench tag DS --fit"}
    fitted = replace(tagger, version=version, calibration=calibration)
    write_atomic(
        dataset.root / path, (json.dumps(fitted.to_json(), indent=1) + "\n").encode("utf-8")
    )
    return fitted, report


def _active_entry(dataset: Dataset) -> dict | None:
    if not dataset.exists():
        return None
    entry = dataset.read_info().get(INFO_KEY)
    if entry is None:
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        raise DatasetError(f"{dataset.info_path}: '{INFO_KEY}' is not a tagger's version and path")
    if not _FITTED.fullmatch(entry["path"]):  # a name from the dataset: never outside it
        raise DatasetError(
            f"{dataset.info_path}: tagger path {entry['path']!r} is not "
            f"{FOLDER}/tagger-fit-<n>.json; refused"
        )
    return entry
