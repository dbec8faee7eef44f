"""Seeds derived from names: the same parts give the same seed on every machine and in
every process, whatever else runs, so a render, a crop order or a bootstrap is
reproducible from what it is about rather than from a global random state.
"""

import hashlib


def seed_from(*parts: object, bits: int = 63, separator: str = "\0") -> int:
    """The first `bits` (at most 64) of the SHA-256 of `parts` joined by `separator`.

    63 bits by default, so a seed fits a signed 64-bit Parquet column. Callers salt
    the parts with their own name, so two uses never share a stream.
    """
    text = separator.join(map(str, parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> (64 - bits)
