"""Reading a Parquet file somebody else wrote (a manifest, eval's scores) at a cost bound
by its size: what decoding it takes is known before it is decoded, and a file that would
take more than its size allows is refused (`TooLarge`).

A small file can ask for a great deal: one huge string a dictionary repeats on every
row, a row count or a list's length that run-length encoding keeps to a few bytes, a page
whose header declares gigabytes that a compressor makes from kilobytes. Arrow believes
each page header and none of the footer's totals, so the cost is summed from the page
headers themselves (`_chunks`) before a page is decompressed. Text is bound by its plain
pages' size and, for each value a dictionary encodes, by the dictionary page's size, or
where that is too loose, its longest entry (`_text_bounds`); text no bound clears is read
dictionary-encoded, and what it decodes to is summed from the entries' lengths at the
indices before one value is copied out.
"""

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

# What a file of n bytes may decode to: DECODED_RATIO × n, and DECODED_FLOOR whatever its
# size (about what one 250 MP capture's decode takes, which readers allow anyway). A
# manifest rainbench writes decodes to 2 to 12 times its size; a 4000-character ingest
# root repeated on every row of a rejects.parquet makes it some 300, and on a million
# empty files' rows, as unlike a real ingest as it gets, 1700. A dictionary bomb asks for
# millions of times its size.
DECODED_RATIO = 4096
DECODED_FLOOR = 1 << 30
# What Arrow holds at most per value it reads, beyond the pages: 8 bytes of a fixed-width
# value (or a dictionary index and an offset), a validity bit, and the two 2-byte levels
# a list's value decodes with.
_PER_VALUE = 16
# The longest page header read: no writer's comes near it (Arrow's leaves out a page's
# minimum and maximum past 4 kB each), and parsing one costs no more than this.
_HEADER_MAX = 1 << 20
# Page types and encodings, as parquet.thrift numbers them.
_DATA_PAGE, _DICTIONARY_PAGE, _DATA_PAGE_V2 = 0, 2, 3
_BY_DICTIONARY = (2, 8)  # PLAIN_DICTIONARY, RLE_DICTIONARY
_DELTA_BYTE_ARRAY = 7  # each value the last one's prefix and a suffix: it grows unseen
# Arrow reads a column chunk from a parquet-mr before 1.2.9 (PARQUET-816) up to this many
# bytes past its end.
_PARQUET_MR_PAD = 100


class TooLarge(ValueError):
    """A Parquet file would decode to more than its size allows; the message is one line."""


@dataclass
class _Chunk:
    """What the page headers of one column chunk say Arrow will read of it."""

    group: int  # its row group
    leaf: str  # its leaf column's path: `key`, `members.list.element`
    text: bool  # its values are byte arrays
    cost: int = 0  # its pages decompressed, and _PER_VALUE for each value
    plain: int = 0  # text: the decompressed size of its pages not encoded by a dictionary
    indices: int = 0  # text: the values of its pages encoded by one
    entries: int | None = None  # text: its dictionary page's entries, where it has one
    dictionary: int = 0  # text: that page decompressed, which no entry outgrows

    @property
    def column(self) -> str:
        return self.leaf.split(".")[0]


def read_table(path: Path, schema: pa.Schema | None = None) -> pa.Table:
    """The table in the Parquet file at `path`: with `schema`, that schema's columns
    (those the file lacks null, the others cast as `pq.read_table(schema=…)` casts them),
    else every column as stored.

    Raises `TooLarge` for a file that would decode to more than max(DECODED_FLOOR,
    DECODED_RATIO × its size), before it is decoded; ValueError for one whose page headers
    are damaged, or whose text is stored so that its size is not known before decoding;
    and pyarrow's errors for a file that is no Parquet, or whose text is no UTF-8.
    """
    # Arrow's own file, not Python's: a Python file that Arrow's threads let go of while
    # the interpreter exits aborts the process after the command's work is done
    # ("terminate called without an active exception", apache/arrow#34314).
    with pa.OSFile(str(path)) as handle:
        size = os.fstat(handle.fileno()).st_size
        limit = max(DECODED_FLOOR, DECODED_RATIO * size)
        parquet = pq.ParquetFile(handle)
        stored = parquet.schema_arrow
        wanted = stored if schema is None else schema
        names = {name for name in stored.names if name in wanted.names}
        dotted = sorted(name for name in names if "." in name)
        if dotted:  # a leaf's path would not say which column it is in
            raise ValueError(f"column {dotted[0]!r} has a dot in its name")
        footer = _footer(handle.fileno(), size)
        chunks = list(_chunks(handle.fileno(), size, parquet, footer, names))
        # A column it lacks: a null for each row of each row group.
        rows = max(_number(footer, 3), sum(_number(group, 3) for group in _items(footer, 4)))
        cost = sum(chunk.cost for chunk in chunks) + _PER_VALUE * rows * (len(wanted) - len(names))
        if cost > limit:
            raise TooLarge(_too_large(cost, limit, size))
        # Text whose bound fits is read as it is, the rest dictionary-encoded and measured.
        bounds = _text_bounds(handle, chunks, limit - cost)
        exact = {name for name, bound in bounds.items() if bound is None}
        read = pa.schema([_encoded(stored.field(f.name)) if f.name in exact else f for f in wanted])
        encoded = sorted({chunk.leaf for chunk in chunks if chunk.text and chunk.column in exact})
        # Not pre-buffered: the file's pages are read a column chunk at a time as they
        # are decoded, not held whole beside the table (a manifest rewritten by a commit).
        table = pq.read_table(handle, schema=read, read_dictionary=encoded, pre_buffer=False)
    decoded = sum(_decoded(chunk) for column in table.columns for chunk in column.chunks)
    if decoded > limit:
        raise TooLarge(_too_large(decoded, limit, size))
    table = table.cast(wanted) if exact else table
    # Arrow reads text as it finds it: a string that is no UTF-8 would end its first
    # reader's to_pylist() in a traceback.
    table.validate(full=True)
    return table


def _too_large(cost: int, limit: int, size: int) -> str:
    return (
        f"decoding it would take {cost / (1 << 30):.1f} GiB, more than the "
        f"{limit / (1 << 30):.1f} GiB a file of {size:,} bytes may ({DECODED_RATIO} times "
        f"its size, {DECODED_FLOOR >> 30} GiB at least)"
    )


def _footer(fd: int, size: int) -> dict:
    """The file's footer, parsed here: pyarrow aborts the process on a column chunk's
    damaged metadata (its size statistics) where it is asked for it one by one."""
    tail = os.pread(fd, 8, max(size - 8, 0))
    length = int.from_bytes(tail[:4], "little")
    if len(tail) < 8 or tail[4:] != b"PAR1" or length > size - 12:
        raise ValueError("the footer is damaged")
    try:
        return _Compact(os.pread(fd, length, size - 8 - length)).struct()
    except IndexError:
        raise ValueError("the footer is damaged (cut short)") from None


def _chunks(
    fd: int, size: int, parquet: pq.ParquetFile, footer: dict, names: set[str]
) -> Iterator[_Chunk]:
    """What Arrow reads of each column chunk of the columns `names`, from its page headers
    (and the footer's counts, where they say more): a list's values are bound by no row
    count."""
    pad = _PARQUET_MR_PAD if "parquet-mr" in (parquet.metadata.created_by or "") else 0
    for group, row_group in enumerate(_items(footer, 4)):
        columns = _items(row_group, 1)
        if len(columns) != len(parquet.schema):
            raise ValueError(f"row group {group} has other columns than the file's schema")
        for index, column in enumerate(columns):
            leaf = parquet.schema.column(index)
            chunk = _Chunk(group, leaf.path, leaf.physical_type == "BYTE_ARRAY")
            if chunk.column not in names:
                continue
            meta = column.get(3) if isinstance(column, dict) else None  # ColumnMetaData
            values = 0
            for kind, decompressed, header in _pages(fd, size, meta, pad):
                chunk.cost += decompressed
                if kind == _DICTIONARY_PAGE and chunk.text:
                    chunk.entries, chunk.dictionary = _number(header.get(7), 1), decompressed
                if kind not in (_DATA_PAGE, _DATA_PAGE_V2):
                    continue
                data = header.get(5 if kind == _DATA_PAGE else 8)
                count = _number(data, 1)
                values += count
                encoding = data.get(2 if kind == _DATA_PAGE else 4)
                if chunk.text and encoding == _DELTA_BYTE_ARRAY:
                    raise ValueError(
                        f"column {chunk.leaf} is stored as DELTA_BYTE_ARRAY, whose decoded "
                        "size is not known before decoding"
                    )
                if chunk.text and encoding in _BY_DICTIONARY:
                    chunk.indices += count
                elif chunk.text:
                    chunk.plain += decompressed
            width = _PER_VALUE + (leaf.length or 0)  # a fixed-length byte array's length
            chunk.cost += width * max(values, _number(meta, 5), _number(row_group, 3))
            yield chunk


def _number(fields: object, field: int) -> int:
    """The count, size or offset Thrift `fields` (a page header's or the footer's) give as
    `field`; ValueError unless they give one."""
    number = fields.get(field) if isinstance(fields, dict) else None
    if not isinstance(number, int) or number < 0:
        raise ValueError("a page header or the footer is damaged (a number missing)")
    return number


def _items(fields: object, field: int) -> list:
    """The list Thrift `fields` give as `field`; ValueError unless they give one."""
    items = fields.get(field) if isinstance(fields, dict) else None
    if not isinstance(items, list):
        raise ValueError("the footer is damaged (a list missing)")
    return items


def _pages(fd: int, size: int, meta: object, pad: int) -> Iterator[tuple[int, int, dict]]:
    """(type, decompressed size, header) of each page of the column chunk `meta` (its
    ColumnMetaData) that Arrow reads: from its first page on, no further than its length
    (`pad` more, as Arrow reads an old parquet-mr's), until its data pages hold the values
    the footer says it has."""
    start = _number(meta, 9)  # its first data page
    dictionary = meta.get(11)  # its dictionary page, where it has one
    if isinstance(dictionary, int) and 0 < dictionary < start:
        start = dictionary
    end = min(start + _number(meta, 7) + pad, size)
    seen, values = 0, _number(meta, 5)
    while start < end and seen < values:
        length, header = _page_header(fd, start, end)
        kind, decompressed, compressed = (_number(header, field) for field in (1, 2, 3))
        if kind in (_DATA_PAGE, _DATA_PAGE_V2):
            seen += _number(header.get(5 if kind == _DATA_PAGE else 8), 1)
        yield kind, decompressed, header
        start += length + compressed


def _text_bounds(handle, chunks: list[_Chunk], room: int) -> dict[str, int | None]:
    """What each column's text decodes to at most, the columns together kept within
    `room`: its plain pages' size, and for each value a dictionary encodes, the dictionary
    page's size. Until they fit, the largest bound is narrowed to the dictionary's longest
    entry (`_dictionaries`), or where it has been, made None: a column to read
    dictionary-encoded and measure, as is one whose longest entry is not known."""
    bounds = _bounds(chunks, lambda chunk: chunk.dictionary)
    narrowed = set()
    while sum(bound or 0 for bound in bounds.values()) > room:
        name = max(bounds, key=lambda name: bounds[name] or 0)
        if name in narrowed:
            bounds[name] = None
            continue
        narrowed.add(name)
        column = [chunk for chunk in chunks if chunk.column == name]
        bounds[name] = _bounds(column, _dictionaries(handle, column))[name]
    return bounds


def _bounds(chunks: list[_Chunk], longest: Callable[[_Chunk], int | None]) -> dict[str, int | None]:
    """Each text column's bound, given the `longest` entry a chunk's dictionary holds
    (None where that is not known)."""
    bounds: dict[str, int | None] = {}
    for chunk in chunks:
        if not chunk.text:
            continue
        entry = longest(chunk) if chunk.indices else 0
        known = bounds.get(chunk.column, 0)
        if known is None or entry is None:
            bounds[chunk.column] = None
        else:
            bounds[chunk.column] = known + chunk.plain + chunk.indices * entry
    return bounds


def _dictionaries(handle, chunks: list[_Chunk]) -> Callable[[_Chunk], int | None]:
    """The length of the longest entry of each of `chunks`' dictionaries, as Arrow decodes
    it to read its row group's first row with the text dictionary-encoded (the pages that
    takes are in the chunks' cost); None for a dictionary Arrow has not read whole (an
    empty first list leaves it unread), or text in a struct."""
    encoded = [chunk for chunk in chunks if chunk.indices]
    leaves = sorted({chunk.leaf for chunk in encoded})
    columns = sorted({chunk.column for chunk in encoded})
    reader = pq.ParquetFile(handle, read_dictionary=leaves)
    found: dict[tuple[int, str], tuple[int, int]] = {}
    for group in sorted({chunk.group for chunk in encoded}):
        rows = reader.iter_batches(1, row_groups=[group], columns=columns, use_threads=False)
        first = next(rows, None)
        for leaf in leaves if first is not None else ():
            array = first.column(leaf.split(".")[0])
            if _is_list(array.type):
                array = array.values
            if pa.types.is_dictionary(array.type) and _is_text(array.type.value_type):
                lengths = pc.binary_length(array.dictionary)
                found[group, leaf] = (len(array.dictionary), pc.max(lengths).as_py() or 0)

    def longest(chunk: _Chunk) -> int | None:
        entries, length = found.get((chunk.group, chunk.leaf), (None, 0))
        return length if entries == chunk.entries else None

    return longest


def _page_header(fd: int, offset: int, end: int) -> tuple[int, dict]:
    """The length and fields of the page header at `offset`, read no further than `end`
    nor _HEADER_MAX bytes on."""
    most = min(end - offset, _HEADER_MAX)
    want = min(4096, most)
    while True:
        reader = _Compact(os.pread(fd, want, offset))
        try:
            fields = reader.struct()
        except IndexError:
            if want >= most:
                raise ValueError(f"the page header at byte {offset} is cut short") from None
            want = min(want * 16, most)
        else:
            return reader.at, fields


class _Compact:
    """Thrift's compact protocol over `data`, as far as a page header and the footer need:
    a struct as its fields by id, integers, structs and lists of them; text, doubles and
    maps skipped. Running out of `data` is an IndexError."""

    def __init__(self, data: bytes):
        self.data, self.at = data, 0

    def byte(self) -> int:
        value = self.data[self.at]
        self.at += 1
        return value

    def skip(self, count: int) -> None:
        self.room(count)
        self.at += count

    def room(self, count: int) -> None:
        """Raise IndexError unless `count` more bytes are there (each element of a list
        takes one at least: a count beyond them is found before looping over it)."""
        if count > len(self.data) - self.at:
            raise IndexError("past the end")

    def varint(self) -> int:
        value = shift = 0
        while True:
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7
            if shift > 63:
                raise ValueError("a page header is damaged (a number too long)")

    def signed(self) -> int:
        value = self.varint()
        return (value >> 1) ^ -(value & 1)

    def struct(self, depth: int = 0) -> dict[int, object]:
        fields: dict[int, object] = {}
        field = 0
        while head := self.byte():
            kind, delta = head & 0x0F, head >> 4
            field = field + delta if delta else self.signed()
            fields[field] = self.value(kind, depth)
        return fields

    def value(self, kind: int, depth: int) -> object:
        if depth > 16:
            raise ValueError("a page header is damaged (nested too deep)")
        if kind in (1, 2):  # a boolean, in its field's header
            return kind == 1
        if kind == 3:
            return self.byte()
        if kind in (4, 5, 6):
            return self.signed()
        if kind == 7:
            return self.skip(8)
        if kind == 8:
            return self.skip(self.varint())
        if kind in (9, 10):  # a list or a set: a boolean element takes a byte
            head = self.byte()
            count = self.varint() if head >> 4 == 15 else head >> 4
            self.room(count)
            element = 3 if head & 0x0F in (1, 2) else head & 0x0F
            return [self.value(element, depth + 1) for _ in range(count)]
        if kind == 11:  # a map
            count = self.varint()
            kinds = self.byte() if count else 0
            self.room(count)
            for _ in range(count):
                for part in (kinds >> 4, kinds & 0x0F):
                    self.value(3 if part in (1, 2) else part, depth + 1)
            return None
        if kind == 12:
            return self.struct(depth + 1)
        raise ValueError(f"a page header is damaged (no Thrift type {kind})")


def _is_text(kind: pa.DataType) -> bool:
    return (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
    )


def _is_list(kind: pa.DataType) -> bool:
    return pa.types.is_list(kind) or pa.types.is_large_list(kind)


def _encoded(field: pa.Field) -> pa.Field:
    """`field` with its text read as a dictionary: a string column, or a list of strings.
    Text in any other type is refused: its decoded size is not known before decoding."""
    kind = field.type
    if _is_text(kind):
        return field.with_type(pa.dictionary(pa.int32(), kind))
    if _is_list(kind) and _is_text(kind.value_type):
        lists = pa.list_ if pa.types.is_list(kind) else pa.large_list
        return field.with_type(lists(_encoded(kind.value_field)))
    if pa.types.is_dictionary(kind) or (_is_list(kind) and pa.types.is_dictionary(kind.value_type)):
        return field  # stored dictionary-encoded, and read so
    raise ValueError(
        f"column {field.name} holds text in a {kind}, whose decoded size is not known "
        "before decoding"
    )


def _decoded(array: pa.Array) -> int:
    """The bytes `array` takes once its dictionaries are decoded, from their entries'
    lengths at the indices."""
    kind = array.type
    if pa.types.is_dictionary(kind) and _is_text(kind.value_type):
        lengths = pc.binary_length(array.dictionary)
        return _PER_VALUE * len(array) + (pc.sum(pc.take(lengths, array.indices)).as_py() or 0)
    if _is_list(kind):
        return _PER_VALUE * len(array) + _decoded(array.flatten())
    return array.nbytes
