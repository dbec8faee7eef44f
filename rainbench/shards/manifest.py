"""The Parquet manifests: their schemas (the contract in DESIGN.md, documented in
docs/dataset-format.md), reading them, and replacing them atomically.
"""

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from rainbench.shards.dataset import write_atomic
from rainbench.tagging.features import FEATURE_NAMES, feature_column

_TS = pa.timestamp("us")

SAMPLES = pa.schema(
    [
        ("key", pa.string()),
        ("sha256", pa.string()),
        ("shard", pa.string()),
        ("split", pa.string()),
        ("layer", pa.string()),
        ("rain_type", pa.string()),
        ("rain_type_source", pa.string()),
        ("rain_type_confidence", pa.float64()),
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("format", pa.string()),
        ("bytes", pa.int64()),
        ("source_path", pa.string()),
        ("captured_at", _TS),
        ("camera_make", pa.string()),
        ("camera_model", pa.string()),
        # Beyond the contract's minimum:
        ("members", pa.list_(pa.string())),  # tar member extensions, e.g. [jpg, json]
        ("mode", pa.string()),
        ("orientation", pa.int64()),
        ("lens_model", pa.string()),
        ("exposure_time", pa.float64()),
        ("f_number", pa.float64()),
        ("iso", pa.int64()),
        ("focal_length_mm", pa.float64()),
        ("gps_lat", pa.float64()),  # null unless ingested with --keep-gps
        ("gps_lon", pa.float64()),
        ("gps_alt", pa.float64()),
        ("phash", pa.string()),  # 64-bit pHash of the upright picture, hex
        ("near_dup_of", pa.string()),  # key of the earlier capture it nearly duplicates
        ("near_dup_distance", pa.int64()),  # pHash bits between them
        ("rain_type_auto", pa.string()),  # the tagger's pick, also where a label overrides it
        ("rain_type_note", pa.string()),  # the label sheet's note
        ("looks_rainy", pa.bool_()),  # clean captures: the tagger sees rain
        ("tag_caveats", pa.list_(pa.string())),  # why confidence is capped: tiny, grey, night
        ("tagger_version", pa.string()),
        ("features_version", pa.string()),
        *((feature_column(name), pa.float64()) for name in FEATURE_NAMES),
        ("source_root", pa.string()),
        ("source_size", pa.int64()),
        ("source_mtime_ns", pa.int64()),
        ("source_sha256", pa.string()),  # of the file as found (before GPS removal)
        ("ingest_run", pa.string()),
    ]
)

SHARDS = pa.schema(
    [
        ("shard", pa.string()),
        ("split", pa.string()),
        ("samples", pa.int64()),
        ("bytes", pa.int64()),
        ("sha256", pa.string()),
        ("ingest_run", pa.string()),
    ]
)

SYNTHETIC = pa.schema(
    [
        ("key", pa.string()),
        ("split", pa.string()),  # e.g. syn-streak, or the name given to an imported set
        ("recipe", pa.string()),  # a rain recipe, or import:<layout> for an imported set
        ("recipe_version", pa.string()),
        ("shard", pa.string()),
        ("source_key", pa.string()),  # the clean capture rendered on (synthetic pairs)
        ("seed", pa.int64()),  # the derived seed of this render (synthetic pairs)
        ("job", pa.string()),  # what made the pair; the key is derived from it
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("members", pa.list_(pa.string())),  # e.g. [rain.png, gt.png, streaks.png, json]
        ("rain_sha256", pa.string()),  # of the <key>.rain.png member
        ("gt_sha256", pa.string()),  # of the <key>.gt.png member
        ("intensity", pa.float64()),  # target mean rain intensity E[R] (synthetic pairs)
        ("compositing", pa.string()),
        ("group", pa.string()),  # an imported set's subset (DID-MDN heavy/medium/light, …)
        ("source_rain", pa.string()),  # an imported pair's files, relative to the set's root
        ("source_gt", pa.string()),
        ("run", pa.string()),
    ]
)

REJECTS = pa.schema(
    [
        ("source_path", pa.string()),
        ("reason", pa.string()),
        ("message", pa.string()),
        ("duplicate_of", pa.string()),  # key of the stored capture, for reason "duplicate"
        ("source_root", pa.string()),
        ("source_size", pa.int64()),
        ("source_mtime_ns", pa.int64()),
        ("ingest_run", pa.string()),
    ]
)


def read_manifest(path: Path, schema: pa.Schema) -> pa.Table:
    """The manifest at `path`, or an empty table of `schema` when there is none yet."""
    if not path.exists():
        return schema.empty_table()
    return pq.read_table(path, schema=schema)


def write_manifest(path: Path, table: pa.Table) -> None:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    write_atomic(path, buffer.getvalue())


def rows_to_table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=schema)
