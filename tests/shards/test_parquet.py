"""A Parquet file is read as pyarrow reads it, unless it would decode to far more than its
size: then it is refused before it is decoded, whatever its footer says."""

import hashlib
import struct

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rainbench.shards import parquet
from rainbench.shards.parquet import TooLarge, read_table

SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("sha256", pa.string()),
        ("source_root", pa.string()),
        ("camera_make", pa.string()),
        ("width", pa.int64()),
        ("members", pa.list_(pa.string())),
        ("tag_caveats", pa.list_(pa.string())),
        ("feature", pa.float64()),
        ("captured_at", pa.timestamp("us")),
    ]
)


def _realistic(rows: int) -> pa.Table:
    """Rows as a manifest holds them: unique digests (a dictionary that overflows to plain
    pages), a long root repeated on every row, a few cameras, lists, an empty first one."""
    rng = np.random.default_rng(1)
    digests = [hashlib.sha256(str(row).encode()).hexdigest() for row in range(rows)]
    return pa.table(
        {
            "key": [digest[:24] for digest in digests],
            "sha256": digests,
            "source_root": ["/srv/lab/" + "captures/" * 60] * rows,
            "camera_make": rng.choice(["Canon", "Apple", "FUJIFILM", None], rows).tolist(),
            "width": rng.integers(100, 9000, rows),
            "members": [["jpg", "json"]] * rows,
            "tag_caveats": [["grey"] if row % 7 == 1 else [] for row in range(rows)],
            "feature": rng.random(rows),
            "captured_at": pa.array(rng.integers(0, 10**15, rows), pa.timestamp("us")),
        },
        schema=SCHEMA,
    )


def _bomb(path, length: int = 2 << 20, rows: int = 1000, stored: bool = False) -> None:
    """`rows` rows of one string of `length` characters (2 GiB, past the limit of 1 GiB):
    a dictionary of one entry and a run of zeros, a file of a few kilobytes. `stored`:
    with pyarrow's schema, which says the column is dictionary-encoded."""
    huge = pa.DictionaryArray.from_arrays(pa.array([0] * rows, pa.int32()), ["x" * length])
    table = pa.table({"key": pa.array(["0" * 24] * rows), "source_root": huge})
    pq.write_table(table, path, compression="zstd", store_schema=stored)


def _reads(monkeypatch) -> tuple[list[list[str]], list[list[str]]]:
    """The columns each read of `read_table` asks Arrow to keep dictionary-encoded, and
    those whose dictionaries' longest entries it looks up."""
    reads, read = [], pq.read_table
    looked_up, look_up = [], parquet._dictionaries

    def reading(source, **options):
        reads.append(options.get("read_dictionary"))
        return read(source, **options)

    def looking_up(handle, chunks):
        looked_up.append(sorted({chunk.column for chunk in chunks}))
        return look_up(handle, chunks)

    monkeypatch.setattr(parquet.pq, "read_table", reading)
    monkeypatch.setattr(parquet, "_dictionaries", looking_up)
    return reads, looked_up


def test_a_manifest_reads_as_pyarrow_reads_it(tmp_path, monkeypatch):
    path = tmp_path / "samples.parquet"
    pq.write_table(_realistic(30_000), path, compression="zstd")
    expected = pq.read_table(path, schema=SCHEMA), pq.read_table(path)
    reads, looked_up = _reads(monkeypatch)
    assert read_table(path, SCHEMA).equals(expected[0]) and read_table(path).equals(expected[1])
    # The digests' dictionaries overflow to plain pages: each page's size is too loose a
    # bound for each value, their longest entry is not; no text is measured value by value.
    assert looked_up == [["key"], ["sha256"]] * 2
    assert reads == [[], []]


def test_arrow_reads_through_a_file_of_its_own(tmp_path, monkeypatch):
    """Never through a Python file: Arrow's threads let go of one as the interpreter exits,
    and the process aborts after its work is done (exit 134, "terminate called without an
    active exception"; one `rainbench stats` in ten did)."""
    path = tmp_path / "samples.parquet"
    pq.write_table(_realistic(50), path)
    given = []
    reading, opening = pq.read_table, pq.ParquetFile
    monkeypatch.setattr(
        pq, "read_table", lambda source, **kw: reading(given.append(source) or source, **kw)
    )
    monkeypatch.setattr(
        pq, "ParquetFile", lambda source, **kw: opening(given.append(source) or source, **kw)
    )
    read_table(path, SCHEMA)
    assert given and all(isinstance(source, pa.NativeFile) for source in given)


def test_a_schema_casts_and_fills_as_pyarrow_s_does(tmp_path):
    """A column the file lacks is null; one of another type cast (7 reads as "7")."""
    path = tmp_path / "samples.parquet"
    table = _realistic(50).drop_columns(["camera_make"]).set_column(0, "key", pa.array(range(50)))
    pq.write_table(table, path)
    read = read_table(path, SCHEMA)
    assert read.equals(pq.read_table(path, schema=SCHEMA))
    assert read["key"][7].as_py() == "7" and read["camera_make"].null_count == 50


def test_text_a_bound_cannot_clear_is_measured_before_it_is_decoded(tmp_path, monkeypatch):
    """One long make among short ones: each value could be as long, so the column is read
    dictionary-encoded and measured, and then decoded, as it is far from the bound."""
    path = tmp_path / "samples.parquet"
    table = _realistic(5000)
    makes = ["Canon"] * 4999 + ["x" * (1 << 20)]
    pq.write_table(table.set_column(3, "camera_make", pa.array(makes)), path)
    expected = pq.read_table(path, schema=SCHEMA)
    reads, looked_up = _reads(monkeypatch)
    assert read_table(path, SCHEMA).equals(expected)
    assert looked_up[0] == ["camera_make"] and reads == [["camera_make"]]


@pytest.mark.parametrize("stored", [False, True], ids=["string", "stored-dictionary"])
def test_a_dictionary_bomb_is_refused_before_it_is_decoded(tmp_path, stored):
    path = tmp_path / "bomb.parquet"
    _bomb(path, stored=stored)
    with pytest.raises(TooLarge, match=r"^decoding it would take 2\.0 GiB, more than the 1\.0 GiB"):
        read_table(path)


def _footer_says(path, value: int, instead: int) -> None:
    """Make the footer give `instead` wherever it gives `value` (Thrift integers, in place)."""

    def varint(number: int, width: int = 0) -> bytes:
        number = number << 1  # zigzag, for numbers ≥ 0
        groups = []
        while number or not groups or len(groups) < width:
            groups.append(number & 0x7F)
            number >>= 7
        return bytes([*(g | 0x80 for g in groups[:-1]), groups[-1]])

    data = bytearray(path.read_bytes())
    length = struct.unpack("<I", data[-8:-4])[0]
    footer = len(data) - 8 - length
    old = varint(value)
    assert old in data[footer:]
    data[footer:] = data[footer:].replace(old, varint(instead, len(old)))
    path.write_bytes(bytes(data))


def _lists(path, values: int = 10_000_000) -> None:
    """One row whose list holds `values` entries: a run of zeros, a few hundred bytes."""
    indices = pa.DictionaryArray.from_arrays(pa.array(np.zeros(values, np.int32)), ["jpg"])
    lists = pa.ListArray.from_arrays(pa.array([0, values], pa.int32()), indices)
    pq.write_table(pa.table({"members": lists}), path, store_schema=False)


def test_what_a_file_costs_is_read_from_its_pages_not_its_footer(tmp_path, monkeypatch):
    """Arrow allocates what a page header declares, and reads a list's values as long as
    its pages hold them, whatever the footer says: the footer's lies change nothing."""
    monkeypatch.setattr(parquet, "DECODED_FLOOR", 1 << 20)  # the limit: 4096 times the size
    monkeypatch.setattr(parquet.pq, "read_table", _never)  # nothing is decoded
    monkeypatch.setattr(parquet, "_dictionaries", _never)
    bomb = tmp_path / "bomb.parquet"
    _bomb(bomb, 16 << 20, rows=10)  # its dictionary page alone is 16 MiB, from 1 kB
    dictionary = pq.read_metadata(bomb).row_group(0).column(1).total_uncompressed_size
    _footer_says(bomb, dictionary, 100)
    assert pq.read_metadata(bomb).row_group(0).column(1).total_uncompressed_size == 100
    with pytest.raises(TooLarge, match=r"^decoding it would take"):
        read_table(bomb)
    lists = tmp_path / "lists.parquet"
    _lists(lists)  # ten million values in a few hundred bytes
    _footer_says(lists, 10_000_000, 1)
    assert pq.read_metadata(lists).row_group(0).column(0).num_values == 1
    with pytest.raises(TooLarge, match=r"^decoding it would take"):
        read_table(lists)


def _never(*args, **options):
    pytest.fail("decoded")


def test_text_of_an_encoding_that_grows_unseen_is_refused(tmp_path):
    path = tmp_path / "delta.parquet"
    table = pa.table({"key": ["a" * 100 + str(row) for row in range(100)]})
    pq.write_table(table, path, use_dictionary=False, column_encoding="DELTA_BYTE_ARRAY")
    with pytest.raises(ValueError, match="column key is stored as DELTA_BYTE_ARRAY"):
        read_table(path)


def test_a_damaged_page_header_is_a_value_error(tmp_path):
    path = tmp_path / "samples.parquet"
    pq.write_table(_realistic(10), path)
    start = pq.read_metadata(path).row_group(0).column(4).data_page_offset
    data = bytearray(path.read_bytes())
    data[start : start + 12] = b"\xff" * 12
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="a page header is damaged"):
        read_table(path)
