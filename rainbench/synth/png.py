"""A small, deterministic PNG encoder for paired splits.

The same pixels always give the same bytes with the same zlib (the version is
recorded with each split): one filter for every row and a fixed compression
level, nothing adaptive. Pillow's encoder is not used because its bundled zlib
varies between wheels.
"""

import struct
import zlib

import numpy as np

LEVEL = 6
ZLIB_VERSION = zlib.ZLIB_RUNTIME_VERSION


def encode_png(pixels: np.ndarray) -> bytes:
    """PNG bytes of a uint8 H×W (grey) or H×W×3 (RGB) array."""
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3):
        raise ValueError(f"expected uint8 H×W or H×W×3, got {pixels.dtype} {pixels.shape}")
    if pixels.ndim == 3 and pixels.shape[2] != 3:
        raise ValueError(f"expected 3 channels, got {pixels.shape[2]}")
    height, width = pixels.shape[:2]
    colour_type = 2 if pixels.ndim == 3 else 0
    rows = pixels.reshape(height, -1)
    # Filter 2 ("up") on every row: the difference to the row above, modulo 256.
    up = np.empty((height, rows.shape[1] + 1), dtype=np.uint8)
    up[:, 0] = 2
    up[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=up[1:, 1:])
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(up.tobytes(), LEVEL)),
            _chunk(b"IEND", b""),
        )
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
