"""ISO base media file format (ISO/IEC 14496-12) boxes, as HEIF stills and MP4/MOV
videos store them: walking the boxes of a byte range, and telling a cut file from a
damaged one.
"""

import struct
from collections.abc import Iterator

from rainbench.capture.reject import CaptureRejected, Reason


def boxes(data: bytes, pos: int, end: int, what: str) -> Iterator[tuple[bytes, int, int, int]]:
    """Type, header start, payload start and end of each box in data[pos:end]; a box
    running past `end` is refused as a truncated `what` file."""
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        head = 8
        if size == 1 and pos + 16 <= end:
            (size,) = struct.unpack_from(">Q", data, pos + 8)
            head = 16
        elif size == 0:  # the box runs to the end of its parent
            size = end - pos
        if size < head or pos + size > end:
            raise CaptureRejected(
                Reason.TRUNCATED, f"{what} {kind!r} box at offset {pos} runs past its parent"
            )
        yield kind, pos, pos + head, pos + size
        pos += size


def ends_inside_a_box(data: bytes) -> bool:
    """Whether the file stops before its last top-level box ends."""
    position = 0
    while position < len(data):
        if position + 8 > len(data):
            return True
        size = int.from_bytes(data[position : position + 4], "big")
        if size == 1:  # a 64-bit size follows the box type
            if position + 16 > len(data):
                return True
            size = int.from_bytes(data[position + 8 : position + 16], "big")
        if size == 0:  # the box runs to the end of the file
            return False
        if size < 8 or not data[position + 4 : position + 8].isalnum():
            return False  # no box header here: corrupt, not truncated
        position += size
    return position > len(data)
