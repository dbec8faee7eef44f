"""Stage 1 of the loader: which samples, from the manifests alone. Labels and every
filter come from samples.parquet / synthetic.parquet joined by key, never from the tars.
"""

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from rainbench.shards import manifest
from rainbench.shards.dataset import Dataset, DatasetError
from rainbench.shards.layout import CONFIDENCE, GROUND_TRUTH, RAIN, member, picture_ext


@dataclass(frozen=True)
class Filters:
    """What to keep; None keeps everything. Values may be one or several."""

    split: str | tuple[str, ...] | None = None
    layer: str | tuple[str, ...] | None = None
    rain_type: str | tuple[str, ...] | None = None
    camera_model: str | tuple[str, ...] | None = None
    min_confidence: float | None = None  # rain_type_confidence ≥ this (manual labels: 1.0)
    query: str | None = None  # any pandas query over the manifest's columns


def captures(root: Path, filters: Filters) -> pd.DataFrame:
    """Rows of samples.parquet that pass `filters`, each with `member`: the tar member
    holding the picture to decode (a RAW capture's stored preview). Videos are left out:
    they are no picture (read their frames with `rainbench.capture.video.VideoFrames`)."""
    dataset = Dataset(Path(root))
    if not dataset.samples_manifest.exists():
        raise DatasetError(
            f"{dataset.url or root} is not a rainbench dataset (no manifests/samples.parquet)"
        )
    table = manifest.read_manifest(dataset.samples_manifest, manifest.SAMPLES).to_pandas()
    table = table[table["kind"].fillna("still") != "video"]  # null: written before videos
    if filters.split is not None:
        _check_splits(dataset, table, _values(filters.split))
    table = _keep(table, filters)
    table["member"] = [
        member(key, picture_ext(fmt))
        for key, fmt in zip(table["key"], table["format"], strict=True)
    ]
    return table.reset_index(drop=True)


def pairs(root: Path, split: str | tuple[str, ...], query: str | None = None) -> pd.DataFrame:
    """Rows of synthetic.parquet for the paired split(s), with their members: rain,
    ground truth and, for a real pair, its confidence map."""
    dataset = Dataset(Path(root))
    table = manifest.read_manifest(dataset.synthetic_manifest, manifest.SYNTHETIC).to_pandas()
    table = _keep(table, Filters(split=split, query=query))
    if table.empty:
        known = sorted(set(manifest.read_manifest(dataset.synthetic_manifest, manifest.SYNTHETIC)
                           ["split"].to_pylist()))  # fmt: skip
        where = dataset.url or root
        raise DatasetError(f"no pairs in split {split!r} of {where}; paired splits: {known}")
    table["rain_member"] = table["key"] + "." + RAIN
    table["gt_member"] = table["key"] + "." + GROUND_TRUTH
    # A real pair's confidence map (`rainbench pairs`); None for pairs without one.
    table["confidence_member"] = [
        f"{key}.{CONFIDENCE}" if CONFIDENCE in list(members) else None
        for key, members in zip(table["key"], table["members"], strict=True)
    ]
    return table.reset_index(drop=True)


def _check_splits(dataset: Dataset, table: pd.DataFrame, wanted: tuple[str, ...]) -> None:
    """Refuse splits of which none holds a capture: a misspelt split would otherwise
    select nothing and be reported as an empty filter, or as another layer missing."""
    known = sorted(set(table["split"].dropna()))
    if set(wanted) & set(known):
        return
    where = dataset.url or dataset.root
    text = f"no captures in split {', '.join(wanted)} of {where}; its splits: {', '.join(known)}"
    if dataset.synthetic_manifest.exists():
        paired = manifest.read_manifest(dataset.synthetic_manifest, manifest.SYNTHETIC)
        found = sorted(set(wanted) & set(paired["split"].to_pylist()))
        if found:
            text += f" ({', '.join(found)}: a paired split, read in paired mode)"
    raise DatasetError(text)


def _values(wanted: str | tuple[str, ...]) -> tuple[str, ...]:
    return (wanted,) if isinstance(wanted, str) else tuple(wanted)


def _keep(table: pd.DataFrame, filters: Filters) -> pd.DataFrame:
    for column in ("split", "layer", "rain_type", "camera_model"):
        wanted = getattr(filters, column)
        if wanted is not None:
            table = table[table[column].isin(_values(wanted))]
    if filters.min_confidence is not None:
        table = table[table["rain_type_confidence"].fillna(-1) >= filters.min_confidence]
    if filters.query:
        try:
            table = table.query(filters.query)
        except Exception as error:  # pandas raises many kinds for a bad expression
            raise DatasetError(f"bad query {filters.query!r}: {error}") from None
    return table.sort_values(["shard", "key"])
