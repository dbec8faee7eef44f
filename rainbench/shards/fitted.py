"""A dataset's active fitted tagger as stored (`rainbench tag DS --fit` writes it, in
`rainbench.ingest.taggers`): dataset.json names it under "tagger" by version and path,
DS/taggers/tagger-fit-<n>.json. Here it is found, fetched from a store and read, and
refused in one line when it is not what dataset.json says; ingest, `tag` and `verify`
read it the same way.

In a store, a mirror holds the fits it was asked for: a reader fetches the active one
alone, again whenever the copy here is not the version dataset.json names (the URL holds
a dataset made anew since).
"""

import re
from pathlib import Path

from rainbench.errors import first_line
from rainbench.files import write_atomic
from rainbench.shards.dataset import TAGGERS, Dataset, DatasetError, read_json
from rainbench.store import read_range
from rainbench.tagging.tagger import Tagger, load_tagger

FOLDER = TAGGERS
INFO_KEY = "tagger"  # dataset.json: {"version", "path"} of the active fitted tagger
FIT_NAME = re.compile(r"tagger-fit-[0-9]+\.json")
_FITTED = re.compile(rf"{FOLDER}/{FIT_NAME.pattern}")
# A fit is some 25 kB; a file named like one but far larger is no tagger, never fetched
# from a store nor read here.
MAX_BYTES = 1 << 20


def active_tagger(dataset: Dataset) -> Tagger:
    """The dataset's fitted tagger when it has one, else the shipped tagger; always the
    version dataset.json names."""
    entry = active_entry(dataset)
    if entry is None:
        return load_tagger()
    path = dataset.inside(entry["path"])
    shown = f"{dataset.location}/{entry['path']}"
    try:
        if dataset.url is not None and version_of(path) != entry["version"]:
            fetch(dataset, entry["path"])
        tagger = read_fitted(path, shown)
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


def read_fitted(path: Path, shown: str) -> Tagger:
    """The fitted tagger stored at `path` (`shown` to the user): a file larger than
    MAX_BYTES is refused unread, and parameters that are no tagger's in `from_json`."""
    return Tagger.from_json(read_json(path, MAX_BYTES), source=shown)


def version_of(path: Path) -> str | None:
    """The version a stored tagger file says it is; None when there is none to read."""
    try:
        found = read_json(path, MAX_BYTES)
    except (OSError, ValueError):
        return None
    return found.get("version") if isinstance(found, dict) else None


def fetch(dataset: Dataset, name: str) -> None:
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


def active_entry(dataset: Dataset) -> dict | None:
    """dataset.json's entry naming the active fitted tagger, refused unless it gives a
    version and a path in taggers/; None when the shipped tagger is the active one."""
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
    if not entry["version"].isprintable():  # printed in outputs that are read by line
        raise DatasetError(
            f"{info}: tagger version {entry['version']!r} holds a control character; refused"
        )
    if not _FITTED.fullmatch(entry["path"]):  # a name from the dataset: never outside it
        raise DatasetError(
            f"{info}: tagger path {entry['path']!r} is not {FOLDER}/tagger-fit-<n>.json; refused"
        )
    return entry
