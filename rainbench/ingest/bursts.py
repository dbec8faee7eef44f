"""Bursts: stills from a fixed camera taken moments apart are one sequence, as a video is.

Grouped over the whole samples manifest at the end of every ingest, so a later ingest
can extend a burst: stills of one camera (make and model), one size, one format (a
camera shooting RAW and JPEG makes a burst of each) and one source folder, ordered by
capture time (then path), where each follows the one before within the gap, are a
burst once there are at least `MIN_BURST` of them. A burst's `sequence` is its first
still's key; `sequence_index` numbers its stills from 0. A video is a sequence of its
own (its own key); a still without a capture time is never grouped.
"""

import itertools
import posixpath

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

DEFAULT_BURST_GAP = 2.0  # seconds between consecutive stills of a burst, at most
MIN_BURST = 3

_GROUPED_BY = ("camera_make", "camera_model", "width", "height", "format", "source_root")
# The columns `burst_columns` reads.
GROUPING = ("key", "kind", "captured_at", "source_path", *_GROUPED_BY)
# Microseconds apart below which a float holds the difference exactly, as Python's
# timedelta.total_seconds() divides it.
_EXACT_US = 1 << 53


def group_bursts(samples: pa.Table, gap: float = DEFAULT_BURST_GAP) -> pa.Table:
    """`samples` with `kind`, `sequence` and `sequence_index` recomputed (`gap` 0: no
    bursts). Deterministic: the same rows give the same columns in any row order."""
    table = samples
    for name, values in burst_columns(samples, gap).items():
        table = table.set_column(table.schema.get_field_index(name), name, values)
    return table


def burst_columns(samples: pa.Table, gap: float = DEFAULT_BURST_GAP) -> dict[str, pa.Array]:
    """The `kind`, `sequence` and `sequence_index` that `group_bursts` gives `samples`,
    which need only its `GROUPING` columns. Computed on the columns, not on a Python object
    per row: it runs over the whole dataset at the end of every ingest."""
    count = samples.num_rows
    kind = samples["kind"].combine_chunks() if count else pa.array([], pa.string())
    kinds = pc.if_else(pc.or_kleene(pc.is_null(kind), pc.equal(kind, "")), "still", kind)
    # Each row's sequence as the row whose key names it, and its place in the burst; -1: none.
    sequence = np.where(
        pc.equal(kinds, "video").to_numpy(zero_copy_only=False), np.arange(count), -1
    )
    position = np.full(count, -1, dtype=np.int64)
    if gap > 0:
        stills = pc.and_(pc.equal(kinds, "still"), pc.is_valid(samples["captured_at"]))
        rows = np.flatnonzero(stills.to_numpy(zero_copy_only=False))
        grouped = samples.select(["captured_at", "source_path", *_GROUPED_BY])
        if len(rows) < count:
            grouped = grouped.take(rows)
        for burst in _bursts(grouped, gap):
            members = rows[burst]
            sequence[members] = members[0]
            position[members] = np.arange(len(members))
    keys = samples["key"].combine_chunks() if count else pa.array([], pa.string())
    return {
        "kind": kinds,
        "sequence": keys.take(pa.array(sequence, mask=sequence < 0)),
        "sequence_index": pa.array(position, mask=position < 0),
    }


def _bursts(stills: pa.Table, gap: float) -> list[np.ndarray]:
    """The bursts among `stills` (each still of a burst by its row, in time order): each
    group's stills in capture time (then path) order, cut wherever two lie more than
    `gap` apart, the pieces of at least MIN_BURST."""
    folders = pa.chunked_array(
        [
            pa.array([posixpath.dirname(p) for p in chunk.to_pylist()], pa.string())
            for chunk in stills["source_path"].chunks
        ],
        pa.string(),
    )
    grouped = stills.append_column("folder", folders)
    groups = [*_GROUPED_BY, "folder"]
    # Stable: stills alike in time and path stay in the manifest's order, as Python's sort.
    order = pc.sort_indices(
        grouped, sort_keys=[(c, "ascending") for c in (*groups, "captured_at", "source_path")]
    )
    count = len(order)
    if count < MIN_BURST:
        return []
    starts = np.zeros(count, dtype=bool)
    starts[:1] = True
    for column in groups:  # a column at a time: the sorted rows are never held whole
        values = grouped[column].take(order).combine_chunks()
        now, before = values.slice(1), values.slice(0, count - 1)
        differ = pc.not_equal(now, before)
        # null is null's equal, and no value's
        differ = pc.if_else(pc.is_null(differ), pc.xor(pc.is_null(now), pc.is_null(before)), differ)
        starts[1:] |= differ.to_numpy(zero_copy_only=False)
    times = grouped["captured_at"].take(order).cast(pa.int64()).to_numpy()
    apart = np.diff(times)
    far = apart / 1e6 > gap
    for number in np.flatnonzero(apart >= _EXACT_US):
        far[number] = int(apart[number]) / 10**6 > gap
    starts[1:] |= far
    order = order.to_numpy()
    bounds = [*np.flatnonzero(starts), count]
    return [
        order[begin:end] for begin, end in itertools.pairwise(bounds) if end - begin >= MIN_BURST
    ]
