"""The per-metric summary `rainbench score` prints: its means."""

import math

import numpy as np

from rainbench.metrics.report import summary


def test_a_mean_of_finite_values_is_finite_however_large_they_are():
    big = 1e308  # each finite, their sum not
    rows = [{"psnr": big}, {"psnr": big}, {"psnr": big}, {"psnr": None}]
    [line] = summary(rows, ("psnr",))
    assert (line["mean"], line["finite_mean"]) == (big, big)
    assert (line["images"], line["infinite"], line["failed"]) == (3, 0, 1)
    [line] = summary([{"psnr": big}, {"psnr": -big}, {"psnr": big}], ("psnr",))
    assert line["mean"] == big / 3
    [line] = summary([{"psnr": big}, {"psnr": math.inf}], ("psnr",))
    assert (line["mean"], line["finite_mean"]) == (math.inf, big)


def test_ordinary_means_are_the_sum_in_order_over_the_count():
    values = list(np.random.default_rng(3).normal(30, 4, 1001))
    rows = [{"psnr_y": value} for value in values]
    [line] = summary(rows, ("psnr_y",))
    assert line["mean"] == line["finite_mean"] == sum(values) / len(values)
