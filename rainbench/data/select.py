"""Stage 1 of the loader: which samples, from the manifests alone. Labels and every
filter come from samples.parquet / synthetic.parquet joined by key, never from the tars.
"""

from dataclasses import dataclass
from numbers import Real
from pathlib import Path

import pandas as pd
from pandas.api.types import infer_dtype

from rainbench.errors import RainbenchError
from rainbench.shards import manifest
from rainbench.shards.dataset import Dataset, DatasetError
from rainbench.shards.layout import CONFIDENCE, GROUND_TRUTH, RAIN, member, picture_ext

# A real pair's recipe (`rainbench pairs`): its source_key is the sequence it comes from.
REAL_PAIR = "pairs:"


class SettingError(RainbenchError, ValueError):
    """A setting of `Filters`, `RainDataset` or `Loader` that cannot work (a filter of
    the wrong type, a mode, a crop, a rank, a decode device), refused in one line when
    it is made, not by every loader worker. A ValueError too, as Python's own refusals
    of an argument are."""


class OnlyVideos(DatasetError):
    """The filters select captures, every one of them a video, which single and unpaired
    mode skip (a video is no picture). `selection` names them in words ("the rainy
    captures of split train"), for a caller to say what it does not read."""

    def __init__(self, selection: str, where: object) -> None:
        self.selection = selection
        super().__init__(
            f"{selection} in {where} are all videos, which single and unpaired mode skip "
            "(a video is no picture): rainbench pairs makes real pairs of their frames, "
            "read in paired mode"
        )


@dataclass(frozen=True)
class Filters:
    """What to keep; None keeps everything. Values may be one or several (a tuple or a
    list of them). Values of the wrong type are a SettingError here: a number in place
    of a name would fail deep in pandas, and a byte string or a dict would be taken
    apart into values."""

    split: str | tuple[str, ...] | None = None
    layer: str | tuple[str, ...] | None = None
    rain_type: str | tuple[str, ...] | None = None
    camera_model: str | tuple[str, ...] | None = None
    min_confidence: float | None = None  # rain_type_confidence ≥ this (manual labels: 1.0)
    query: str | None = None  # any pandas query over the manifest's columns
    # Captures of a sequence (burst) that a real-paired split holds pairs of are the
    # frames the benchmark scores: left out unless this is True.
    paired_sequences: bool = False

    def __post_init__(self) -> None:
        for name in ("split", "layer", "rain_type", "camera_model"):
            value = getattr(self, name)
            several = isinstance(value, tuple | list)
            if not (value is None or isinstance(value, str) or several) or (
                several and not all(isinstance(item, str) for item in value)
            ):
                raise SettingError(
                    f"Filters({name}=…) is a str, or a tuple of them, or None; not {value!r}"
                )
        confidence = self.min_confidence
        if confidence is not None and (
            isinstance(confidence, bool)
            or not isinstance(confidence, Real)
            or not 0 <= confidence <= 1
        ):
            raise SettingError(
                f"Filters(min_confidence=…) is a number from 0 to 1, or None; not {confidence!r}"
            )
        if not (self.query is None or isinstance(self.query, str)):
            raise SettingError(f"Filters(query=…) is a str or None; not {self.query!r}")
        if not isinstance(self.paired_sequences, bool):
            raise SettingError(
                f"Filters(paired_sequences=…) is True or False; not {self.paired_sequences!r}"
            )


# What selects captures by their labels; pairs are selected by paired_split and query.
CAPTURE_FILTERS = ("split", "layer", "rain_type", "camera_model", "min_confidence")


def captures(root: Path, filters: Filters) -> pd.DataFrame:
    """Rows of samples.parquet that pass `filters`, each with `member`: the tar member
    holding the picture to decode (a RAW capture's stored preview). Videos are left out:
    they are no picture (read their frames with `rainbench.capture.video.VideoFrames`);
    so are the stills of a burst that real pairs were made of, unless
    `filters.paired_sequences`."""
    dataset = Dataset(Path(root))
    if not dataset.samples_manifest.exists():
        raise DatasetError(dataset.not_a_dataset("manifests/samples.parquet"))
    _check_labels(filters)
    every = manifest.read_manifest(dataset.samples_manifest, manifest.SAMPLES).to_pandas()
    if filters.split is not None:
        _check_splits(dataset, every, as_values(filters.split))
    stills = every["kind"].fillna("still") != "video"  # null: a still
    table = _keep(every[stills], filters)
    if table.empty and not _keep(every, filters).empty:
        raise OnlyVideos(_selection(filters), dataset.url or dataset.root)
    if not filters.paired_sequences:
        table = _without_paired_sequences(dataset, every, table)
    table["member"] = [
        member(key, picture_ext(fmt))
        for key, fmt in zip(table["key"], table["format"], strict=True)
    ]
    return table.reset_index(drop=True)


def pairs(root: Path, split: str | tuple[str, ...], filters: Filters) -> pd.DataFrame:
    """Rows of synthetic.parquet for the paired split(s) that pass `filters.query`, with
    their members: rain, ground truth and, for a real pair, its confidence map. The
    filters on capture labels are refused: a pair is no capture."""
    given = [name for name in CAPTURE_FILTERS if getattr(filters, name) is not None]
    if given:
        raise DatasetError(
            f"paired mode cannot filter by {', '.join(given)} (labels of captures, not of "
            "pairs): its split is paired_split, and Filters.query selects over "
            "synthetic.parquet's columns (recipe, source_key, group, intensity, …)"
        )
    dataset = Dataset(Path(root))
    where = dataset.url or root
    every = manifest.read_manifest(dataset.synthetic_manifest, manifest.SYNTHETIC).to_pandas()
    table = _keep(every, Filters(split=split))
    if table.empty:
        known = ", ".join(sorted(set(every["split"]))) or "none (run rainbench synth)"
        raise DatasetError(f"no pairs in split {split!r} of {where}; paired splits: {known}")
    chosen = _keep(table, Filters(query=filters.query))
    if chosen.empty:
        raise DatasetError(
            f"the query {filters.query!r} matches none of the {len(table)} pairs in split "
            f"{split!r} of {where}"
        )
    chosen["rain_member"] = chosen["key"] + "." + RAIN
    chosen["gt_member"] = chosen["key"] + "." + GROUND_TRUTH
    # A real pair's confidence map (`rainbench pairs`); None for pairs without one.
    chosen["confidence_member"] = [
        f"{key}.{CONFIDENCE}" if CONFIDENCE in list(members) else None
        for key, members in zip(chosen["key"], chosen["members"], strict=True)
    ]
    return chosen.reset_index(drop=True)


def _check_labels(filters: Filters) -> None:
    """Refuse a layer or rain type no capture can have (a misspelt "streaks", "clear"):
    it would select nothing, or drop silently out of a tuple of them."""
    for column in ("layer", "rain_type"):
        wanted = getattr(filters, column)
        allowed = manifest.LABELS[column]
        unknown = [] if wanted is None else [v for v in as_values(wanted) if v not in allowed]
        if unknown:
            raise DatasetError(
                f"no samples pass Filters({column}={unknown[0]!r}): a capture's {column} is "
                f"one of {', '.join(allowed)}"
            )


def _check_splits(dataset: Dataset, table: pd.DataFrame, wanted: tuple[str, ...]) -> None:
    """Refuse splits of which none holds a capture: a misspelt split would otherwise
    select nothing and be reported as an empty filter, or as another layer missing; and
    splits that hold only videos, which are no pictures."""
    known = sorted(set(table["split"].dropna()))
    where = dataset.url or dataset.root
    if not set(wanted) & set(known):
        text = (
            f"no captures in split {', '.join(wanted)} of {where}; its splits: {', '.join(known)}"
        )
        if dataset.synthetic_manifest.exists():
            paired = manifest.read_manifest(dataset.synthetic_manifest, manifest.SYNTHETIC)
            found = sorted(set(wanted) & set(paired["split"].to_pylist()))
            if found:
                text += f" ({', '.join(found)}: a paired split, read in paired mode)"
        raise DatasetError(text)
    stills = table[(table["kind"].fillna("still") != "video") & table["split"].isin(wanted)]
    if stills.empty:
        raise OnlyVideos(f"the captures of split {', '.join(wanted)}", where)


def _selection(filters: Filters) -> str:
    """The captures `filters` select, in words: their layer and split, and whether other
    filters narrowed them."""
    layer = f"{'/'.join(as_values(filters.layer))} " if filters.layer else ""
    split = f" of split {', '.join(as_values(filters.split))}" if filters.split else ""
    others = ("rain_type", "camera_model", "min_confidence", "query")
    narrowed = any(getattr(filters, name) not in (None, "") for name in others)
    return f"the {layer}captures{split}" + (" that pass the filters" if narrowed else "")


def _without_paired_sequences(
    dataset: Dataset, every: pd.DataFrame, table: pd.DataFrame
) -> pd.DataFrame:
    """`table` less the stills of every sequence a real-paired split holds pairs of. A
    pair names its sequence by the key of the burst's first still when it was made; a
    later ingest that extends the burst may renumber it, so the sequence that still is
    in now is left out too."""
    if not dataset.synthetic_manifest.exists():
        return table
    made = manifest.read_manifest(dataset.synthetic_manifest, manifest.SYNTHETIC).to_pandas()
    real = made[made["recipe"].fillna("").str.startswith(REAL_PAIR)]
    named = set(real["source_key"].dropna())
    sequences = named | set(every.loc[every["key"].isin(named), "sequence"].dropna())
    paired = table["sequence"].isin(sequences)
    if paired.any() and paired.all():
        splits = ", ".join(sorted(set(real["split"])))
        raise DatasetError(
            f"the {int(paired.sum())} captures that pass the filters are all frames of "
            f"sequences with real pairs (in {splits}), which the benchmark scores: left "
            "out so that nothing trains on them (Filters(paired_sequences=True) keeps them)"
        )
    return table[~paired]


def as_values(wanted: str | tuple[str, ...]) -> tuple[str, ...]:
    """A filter's value(s) as a tuple."""
    return (wanted,) if isinstance(wanted, str) else tuple(wanted)


def _keep(table: pd.DataFrame, filters: Filters) -> pd.DataFrame:
    for column in ("split", "layer", "rain_type", "camera_model"):
        wanted = getattr(filters, column)
        if wanted is not None:
            table = table[table[column].isin(as_values(wanted))]
    if filters.min_confidence is not None:
        table = table[table["rain_type_confidence"].fillna(-1) >= filters.min_confidence]
    if filters.query:
        table = table[_condition(table, filters.query)]
    return table.sort_values(["shard", "key"])


def _condition(table: pd.DataFrame, query: str) -> pd.Series:
    """Which rows of `table` `query` keeps: true or false for each row. pandas' own
    `query` takes anything else (a number, a column of them) as row labels, and picks
    rows by them, or a row as a Series; or stops on a condition for some rows only."""
    try:
        chosen = table.eval(query, target=None)
        if isinstance(chosen, pd.Series):
            chosen = chosen.reindex(table.index)  # a row it has no value for: null
    except Exception as error:  # pandas raises many kinds for a bad expression
        raise DatasetError(f"bad query {query!r}: {error}") from None
    if (
        not isinstance(chosen, pd.Series)
        or infer_dtype(chosen, skipna=False) not in ("boolean", "empty")
        or chosen.isna().any()
    ):
        raise DatasetError(
            f"bad query {query!r}: not a condition (true or false for each row, never null)"
        )
    return chosen
