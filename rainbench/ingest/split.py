"""Deterministic train/val/test assignment from a capture's key.

A capture's split depends only on its key and the fractions, never on what else
is in the dataset, so adding captures later never moves existing ones.
"""

from rainbench.seeds import seed_from

DEFAULT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}


def parse_fractions(text: str) -> dict[str, float]:
    """`"train=0.8,val=0.1,test=0.1"` → fractions; they must be ≥0 and sum to 1."""
    fractions: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        try:
            fraction = float(value)
        except ValueError:
            fraction = None
        if not sep or name not in DEFAULT_FRACTIONS or fraction is None:
            raise ValueError(f"expected train=F,val=F,test=F, got {text!r}")
        fractions[name] = fraction
    fractions = {name: fractions.get(name, 0.0) for name in DEFAULT_FRACTIONS}
    # Written so that a NaN (`train=nan`), which compares false with anything, fails it.
    if not all(f >= 0 for f in fractions.values()) or not abs(sum(fractions.values()) - 1) <= 1e-9:
        raise ValueError(f"split fractions must be ≥ 0 and sum to 1, got {text!r}")
    return fractions


def split_for_key(key: str, fractions: dict[str, float]) -> str:
    # A salted hash, so the split is independent of the key's (content) order.
    position = seed_from(f"rainbench-split:{key}", bits=64) / 2**64
    cumulative = 0.0
    for name, fraction in fractions.items():
        cumulative += fraction
        if position < cumulative:
            return name
    return next(name for name, f in reversed(fractions.items()) if f > 0)
