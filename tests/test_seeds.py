"""One seed derivation: each former copy of it (synth renders, tagger calibration,
loader crops and order, leaderboard bootstrap, split assignment) gives the seeds it
gave before."""

import hashlib

from rainbench.seeds import seed_from


def _digest64(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def test_default_is_63_bits_of_the_parts_joined_by_nul():
    parts = ("rainbench-synth", "0123abcd", "storm", 7, 1)
    assert seed_from(*parts) == _digest64("\0".join(map(str, parts))) >> 1
    assert seed_from(*parts) < 2**63


def test_64_bits_and_another_separator():
    assert seed_from("rainbench-data", 3, 1, "order", bits=64) == _digest64(
        "rainbench-data\x003\x001\x00order"
    )
    assert seed_from("demo", "test", "nlcl", bits=64, separator="\x1f") == _digest64(
        "demo\x1ftest\x1fnlcl"
    )


def test_pinned_values():
    assert seed_from("rainbench-synth", "0123abcd", "storm", 7, 0) == 1837998520959717224
    assert seed_from("rainbench-split:abc", bits=64) == _digest64("rainbench-split:abc")
