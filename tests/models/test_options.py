"""Derainer number options: integers stay integers, reals are finite, bools, text and
lists are refused, ranges hold, and every refusal is one line naming the option."""

import math

import numpy as np
import pytest

from rainbench.models.options import number_option
from rainbench.models.registry import DerainerError


@pytest.mark.parametrize("value", [2.7, 2.0, True, "3", [1, 2], {"a": 1}, math.inf, math.nan])
def test_an_integer_option_takes_only_integers(value):
    with pytest.raises(DerainerError) as caught:
        number_option("guided", "radius", value, int, low=1)
    message = str(caught.value)
    assert message.startswith("guided: radius must be at least 1 (an integer), not ")
    assert "\n" not in message


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 10**400, False, "0.1", None])
def test_a_real_option_takes_only_finite_numbers(value):
    with pytest.raises(DerainerError, match=r"^dcp: eps must be positive \(a finite number\)"):
        number_option("dcp", "eps", value, float, low=0, low_open=True)


def test_numbers_of_the_right_kind_pass_converted():
    assert number_option("x", "n", np.int64(3), int, low=1) == 3
    assert type(number_option("x", "n", np.int64(3), int)) is int
    assert number_option("x", "f", 2, float) == 2.0
    assert type(number_option("x", "f", np.float32(0.5), float)) is float
    assert number_option("x", "f", None, float, optional=True) is None


@pytest.mark.parametrize(
    ("value", "bounds", "message"),
    [
        (0, {"low": 1}, "at least 1"),
        (0.0, {"low": 0, "low_open": True}, "positive"),
        (1.5, {"low": 0, "low_open": True, "high": 1}, r"in \(0, 1\]"),
        (0.0, {"low": 0, "low_open": True, "high": 1}, r"in \(0, 1\]"),
        (11, {"low": 1, "high": 10}, "at least 1 and at most 10"),
        (-1, {"high": 0.5}, None),
    ],
)
def test_ranges_are_checked(value, bounds, message):
    if message is None:
        assert number_option("x", "v", value, float, **bounds) == value
        return
    with pytest.raises(DerainerError, match=message):
        number_option("x", "v", value, float, **bounds)
    edge = bounds.get("high", 1)
    assert number_option("x", "v", edge, float, **bounds) == edge


def test_a_long_value_is_cut_to_stay_short():
    with pytest.raises(DerainerError) as caught:
        number_option("x", "v", "y" * 500, int)
    assert len(str(caught.value)) < 100 and str(caught.value).endswith("…")
