"""A dataset's own taggers: fitted to its manual labels by `rainbench tag DS --fit`, kept
versioned as DS/taggers/tagger-fit-<n>.json, the active one named in dataset.json under
"tagger". Ingest and `rainbench tag` use the active one in place of the shipped tagger.
A fit becomes the active tagger, whether or not it beat the shipped one in
cross-validation (the output says which); `rainbench tag DS --tagger shipped` makes the
shipped one active again. Fits stay on disk.

In a store, a mirror holds the fits it was asked for: a reader fetches the active one
alone, again whenever the copy here is not the version dataset.json names (the URL holds
a dataset made anew since); `--fit` fetches them all, and uploads the one it adds.
"""

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

from rainbench.errors import first_line
from rainbench.files import write_atomic
from rainbench.shards.dataset import TAGGERS, Dataset, DatasetError, read_json
from rainbench.store import listing, read_range, upload
from rainbench.tagging.tagger import Tagger, load_tagger

FOLDER = TAGGERS
INFO_KEY = "tagger"  # dataset.json: {"version", "path"} of the active fitted tagger
_FIT_NAME = re.compile(r"tagger-fit-[0-9]+\.json")
_FITTED = re.compile(rf"{FOLDER}/{_FIT_NAME.pattern}")
# A fit is some 25 kB; a file named like one but far larger is no tagger, never fetched
# from a store nor read here.
MAX_BYTES = 1 << 20


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
    """The dataset's fitted tagger when it has one, else the shipped tagger; always the
    version dataset.json names."""
    entry = _active_entry(dataset)
    if entry is None:
        return load_tagger()
    path = dataset.inside(entry["path"])
    shown = f"{dataset.location}/{entry['path']}"
    try:
        if dataset.url is not None and _version(path) != entry["version"]:
            _fetch(dataset, entry["path"])
        tagger = _read(path, shown)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DatasetError(
            f"{shown}: cannot read the dataset's fitted tagger ({first_line(error)}); "
            "fit it again with rainbench tag --fit"
        ) from None
    if tagger.version != entry["version"]:
        raise DatasetError(
            f"{shown} holds tagger {tagger.version}, not {entry['version']}, which "
            "dataset.json names; fit it again with rainbench tag --fit"
        )
    return tagger


def _read(path: Path, shown: str) -> Tagger:
    """The fitted tagger stored at `path` (`shown` to the user): a file larger than
    MAX_BYTES is refused unread, and parameters that are no tagger's in `from_json`."""
    return Tagger.from_json(read_json(path, MAX_BYTES), source=shown)


def _version(path: Path) -> str | None:
    """The version a stored tagger file says it is; None when there is none to read."""
    try:
        found = read_json(path, MAX_BYTES)
    except (OSError, ValueError):
        return None
    return found.get("version") if isinstance(found, dict) else None


def _fetch(dataset: Dataset, name: str) -> None:
    """Copy the store's `name` (under the dataset) into the mirror: one ranged read, so a
    huge object in its place costs no more than MAX_BYTES."""
    data = read_range(f"{dataset.url}/{name}", 0, MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise DatasetError(
            f"{dataset.url}/{name} is larger than {MAX_BYTES >> 20} MB, which no fitted "
            "tagger is; refused"
        )
    dataset.taggers.mkdir(exist_ok=True)
    write_atomic(dataset.root / name, data, shared=True)


def _fits(dataset: Dataset) -> list[Path]:
    """The dataset's stored fits. A mirror's are first made the store's: each fetched, and
    those the store no longer has removed, so none is left from an earlier dataset at the
    same URL."""
    folder = dataset.taggers
    if dataset.url is not None:
        stored = {
            name
            for name, (size, _) in listing(f"{dataset.url}/{FOLDER}").items()
            if _FIT_NAME.fullmatch(name) and size <= MAX_BYTES
        }
        for path in folder.glob("tagger-fit-*.json"):
            if path.name not in stored:
                path.unlink()
        for name in sorted(stored):
            _fetch(dataset, f"{FOLDER}/{name}")
    return list(folder.glob("tagger-fit-*.json"))


def reusable(dataset: Dataset, labels_sha256: str) -> tuple[Tagger, FitReport] | None:
    """A stored tagger, the newest, fitted to these very labels from the shipped tagger
    of today, so fitting again would give the same tagger; with its report."""
    base = load_tagger().version
    for path in sorted(_fits(dataset), reverse=True, key=_number):
        try:
            tagger = _read(path, f"{dataset.location}/{FOLDER}/{path.name}")
        except (OSError, ValueError, KeyError, TypeError):
            continue  # unreadable: fitted again, into a new file
        report = tagger.calibration.get("fit")
        if (
            isinstance(report, dict)
            and report.get("labels_sha256") == labels_sha256
            and report.get("base_version") == base
        ):
            fields = {name: value for name, value in report.items() if name != "beats_shipped"}
            try:  # a report this tool wrote: its fields, and scores that compare
                found = FitReport(**{**fields, "reused": True})
                if isinstance(found.beats_shipped, bool):
                    return tagger, found
            except (TypeError, KeyError):
                pass  # fitted again, into a new file
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
    filled in (`use_fitted` makes it the active one); in a store, uploaded at once, before
    dataset.json can name it."""
    folder = dataset.taggers
    folder.mkdir(exist_ok=True)
    taken = [path.name for path in folder.glob("tagger-fit-*.json")]
    if dataset.url is not None:  # and never a name the store has, whatever is here
        taken += listing(f"{dataset.url}/{FOLDER}")
    number = max([0, *(_number(Path(name)) for name in taken if _FIT_NAME.fullmatch(name))]) + 1
    version = f"{report.base_version}-fit-{number}-{report.labels_sha256[:8]}"
    path = f"{FOLDER}/tagger-fit-{number}.json"
    report = replace(report, version=version, path=path, reused=False)
    calibration = {"fit": report.to_dict(), "command": "rainbench tag DS --fit"}
    fitted = replace(
        tagger, version=version, calibration=calibration, source=f"{dataset.location}/{path}"
    )
    write_atomic(
        dataset.root / path, (json.dumps(fitted.to_json(), indent=1) + "\n").encode("utf-8")
    )
    if dataset.url is not None:
        upload(dataset.root / path, f"{dataset.url}/{path}")
    return fitted, report


def _active_entry(dataset: Dataset) -> dict | None:
    if not dataset.exists():
        return None
    entry = dataset.read_info().get(INFO_KEY)
    if entry is None:
        return None
    info = f"{dataset.location}/dataset.json"
    if not isinstance(entry, dict) or not all(
        isinstance(entry.get(name), str) for name in ("version", "path")
    ):
        raise DatasetError(f"{info}: '{INFO_KEY}' is not a tagger's version and path")
    if not _FITTED.fullmatch(entry["path"]):  # a name from the dataset: never outside it
        raise DatasetError(
            f"{info}: tagger path {entry['path']!r} is not {FOLDER}/tagger-fit-<n>.json; refused"
        )
    return entry
