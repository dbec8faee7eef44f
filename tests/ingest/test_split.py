import pytest

from rainbench.ingest.split import DEFAULT_FRACTIONS, parse_fractions, split_for_key


def test_split_is_a_function_of_the_key_alone():
    keys = [f"{i:024x}" for i in range(2000)]
    first = [split_for_key(k, DEFAULT_FRACTIONS) for k in keys]
    assert first == [split_for_key(k, dict(DEFAULT_FRACTIONS)) for k in keys]
    shares = {name: first.count(name) / len(keys) for name in DEFAULT_FRACTIONS}
    assert shares["train"] == pytest.approx(0.8, abs=0.03)
    assert shares["val"] == pytest.approx(0.1, abs=0.02)
    assert shares["test"] == pytest.approx(0.1, abs=0.02)


def test_zero_fraction_split_never_chosen():
    fractions = {"train": 0.5, "val": 0.0, "test": 0.5}
    assert {split_for_key(f"{i:x}", fractions) for i in range(500)} == {"train", "test"}


def test_parse_fractions():
    assert parse_fractions("train=0.7,val=0.2,test=0.1") == {"train": 0.7, "val": 0.2, "test": 0.1}
    assert parse_fractions("train=1") == {"train": 1.0, "val": 0.0, "test": 0.0}
    for bad in ("train=0.5,val=0.1", "train=0.8,dev=0.2", "train", "train=-1,val=2"):
        with pytest.raises(ValueError):
            parse_fractions(bad)


def test_parse_fractions_refuses_nan_and_what_is_no_number():
    with pytest.raises(ValueError, match="must be ≥ 0 and sum to 1"):
        parse_fractions("train=nan,val=0.5,test=0.5")
    with pytest.raises(ValueError, match="expected train=F,val=F,test=F"):
        parse_fractions("train=0.8,val=0.1,test=abc")
