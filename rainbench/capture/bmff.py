"""ISO base media file format (ISO/IEC 14496-12) boxes, as HEIF stills and MP4/MOV
videos store them: walking the boxes of a byte range, and telling a cut file from a
damaged one.
"""

from collections.abc import Iterator

from rainbench.capture.reject import CaptureRejected, Reason
from rainbench.capture.source import CaptureFile


def boxes(
    data: bytes | CaptureFile, pos: int, end: int, what: str
) -> Iterator[tuple[bytes, int, int, int]]:
    """Type, header start, payload start and end of each box in data[pos:end]; a box
    running past `end` is refused as a truncated `what` file. `data` is only sliced, so
    anything sliced like bytes (a video's open file) is walked by its headers alone."""
    while pos + 8 <= end:
        header = data[pos : pos + 16]
        size, kind, head = int.from_bytes(header[:4], "big"), header[4:8], 8
        if size == 1 and pos + 16 <= end:
            size, head = int.from_bytes(header[8:16], "big"), 16
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
