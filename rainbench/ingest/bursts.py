"""Bursts: stills from a fixed camera taken moments apart are one sequence, as a video is.

Grouped over the whole samples manifest at the end of every ingest, so a later ingest
can extend a burst: stills of one camera (make and model), one size, one format (a
camera shooting RAW and JPEG makes a burst of each) and one source folder, ordered by
capture time (then path), where each follows the one before within the gap, are a
burst once there are at least `MIN_BURST` of them. A burst's `sequence` is its first
still's key; `sequence_index` numbers its stills from 0. A video is a sequence of its
own (its own key); a still without a capture time is never grouped.
"""

import posixpath
from datetime import datetime

import pyarrow as pa

DEFAULT_BURST_GAP = 2.0  # seconds between consecutive stills of a burst, at most
MIN_BURST = 3

_GROUPED_BY = ("camera_make", "camera_model", "width", "height", "format", "source_root")


def group_bursts(samples: pa.Table, gap: float = DEFAULT_BURST_GAP) -> pa.Table:
    """`samples` with `kind`, `sequence` and `sequence_index` recomputed (`gap` 0: no
    bursts). Deterministic: the same rows give the same columns in any row order."""
    columns = ["key", "kind", "captured_at", "source_path", *_GROUPED_BY]
    rows = samples.select(columns).to_pylist()
    kinds = [row["kind"] or "still" for row in rows]
    sequence = [
        row["key"] if kind == "video" else None for row, kind in zip(rows, kinds, strict=True)
    ]
    position: list[int | None] = [None] * len(rows)
    groups: dict[tuple, list[int]] = {}
    for number, row in enumerate(rows):
        if kinds[number] == "still" and row["captured_at"] is not None and gap > 0:
            folder = posixpath.dirname(row["source_path"])
            groups.setdefault((*(row[c] for c in _GROUPED_BY), folder), []).append(number)
    for members in groups.values():
        members.sort(key=lambda n: (rows[n]["captured_at"], rows[n]["source_path"]))
        for burst in _runs(members, [rows[n]["captured_at"] for n in members], gap):
            if len(burst) >= MIN_BURST:
                for index, number in enumerate(burst):
                    sequence[number], position[number] = rows[burst[0]]["key"], index
    table = samples
    for name, values, kind in (
        ("kind", kinds, pa.string()),
        ("sequence", sequence, pa.string()),
        ("sequence_index", position, pa.int64()),
    ):
        table = table.set_column(
            table.schema.get_field_index(name), name, pa.array(values, type=kind)
        )
    return table


def _runs(members: list[int], times: list[datetime], gap: float) -> list[list[int]]:
    """`members` (in time order) cut wherever consecutive times lie more than `gap` apart."""
    runs: list[list[int]] = []
    for number, (member, moment) in enumerate(zip(members, times, strict=True)):
        if number and (moment - times[number - 1]).total_seconds() <= gap:
            runs[-1].append(member)
        else:
            runs.append([member])
    return runs
