"""`rainbench stats`: what a dataset holds, from its manifests alone."""

from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc

from rainbench.shards import manifest
from rainbench.shards.dataset import Dataset, DatasetError
from rainbench.store import shown


def dataset_stats(dataset: Dataset) -> dict:
    info = dataset.read_info()
    _refuse_lost_manifests(dataset, info)
    samples = manifest.read_manifest(dataset.samples_manifest, manifest.SAMPLES)
    shards = manifest.read_manifest(dataset.shards_manifest, manifest.SHARDS)
    rejects = manifest.read_manifest(dataset.rejects_manifest, manifest.REJECTS)
    pairs = manifest.read_manifest(dataset.synthetic_manifest, manifest.SYNTHETIC)

    def count(column: str, missing: str = "unknown") -> dict[str, int]:
        return _counts(samples[column], missing)

    cameras = Counter(
        _camera(make, model)
        for make, model in zip(
            samples["camera_make"].to_pylist(), samples["camera_model"].to_pylist(), strict=True
        )
    )
    dates = pc.min_max(samples["captured_at"])
    first, last = dates["min"].as_py(), dates["max"].as_py()
    return {
        "name": info.get("name"),
        "samples": samples.num_rows,
        "shards": shards.num_rows,
        "shard_bytes": int(pc.sum(shards["bytes"]).as_py() or 0),
        "capture_bytes": int(pc.sum(samples["bytes"]).as_py() or 0),
        "splits": count("split"),
        "layers": count("layer"),
        "rain_types": rain_type_counts(samples),
        "rain_type_sources": count("rain_type_source", missing="none"),
        "looks_rainy": int(pc.sum(samples["looks_rainy"]).as_py() or 0),
        "formats": count("format"),
        "cameras": dict(cameras.most_common()),
        "near_duplicates": samples.num_rows - samples["near_dup_of"].null_count,
        "captured_from": first.isoformat() if first else None,
        "captured_to": last.isoformat() if last else None,
        "rejects": _counts(rejects["reason"]),
        "paired_splits": dict(sorted(Counter(pairs["split"].to_pylist()).items())),
    }


def _counts(column: pa.ChunkedArray, missing: str = "unknown") -> dict[str, int]:
    """How often each value occurs, the commonest first; a row without one (a column added
    since the file was written, or dropped by hand) counted as `missing`."""
    values = (missing if v is None else str(v) for v in column.to_pylist())
    return dict(Counter(values).most_common())


def _refuse_lost_manifests(dataset: Dataset, info: dict) -> None:
    """A manifest reads as empty where there is none yet; one that dataset.json counts
    rows of and that is gone was lost, and counting it as empty would show a dataset that
    lost its captures as one that never had any."""
    counts = info.get("counts") if isinstance(info.get("counts"), dict) else {}
    for path, counted in (
        (dataset.samples_manifest, "samples"),
        (dataset.shards_manifest, "shards"),
        (dataset.synthetic_manifest, "synthetic"),
    ):
        if counts.get(counted) and not path.exists():
            raise DatasetError(
                f"{shown(path)}: gone, though dataset.json counts its rows; "
                f"rainbench verify {dataset.location} says what else is damaged"
            )


# rain_type_counts' names for captures without a rain type, apart from "untagged".
CLEAN_LAYER = "clean layer"
LABELLED_NO_RAIN = "labelled no rain"


def rain_type_counts(samples: pa.Table) -> dict[str, int]:
    """Captures per rain type; captures of the clean layer, rainy ones a person labelled
    clean (no rain visible) and rainy ones without a tag (never measured) counted apart."""
    names = (
        rain_type
        or (
            CLEAN_LAYER
            if layer == "clean"
            else LABELLED_NO_RAIN
            if source == "manual"
            else "untagged"
        )
        for rain_type, layer, source in zip(
            samples["rain_type"].to_pylist(),
            samples["layer"].to_pylist(),
            samples["rain_type_source"].to_pylist(),
            strict=True,
        )
    )
    return dict(Counter(names).most_common())


def _camera(make: str | None, model: str | None) -> str:
    """ "Canon EOS R6", also when the model repeats the make (as Canon's do)."""
    if make and model and model.lower().startswith(make.lower()):
        return model
    return " ".join(part for part in (make, model) if part) or "unknown"
