"""Publishing: reading a results directory, the ranked tables with bootstrap intervals,
and the Markdown, CSV, LaTeX and HTML renderings."""

import base64
import csv
import hashlib
import html.parser
import io
import json
import math
import os
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from rainbench import __version__
from rainbench.leaderboard import markdown
from rainbench.leaderboard.bootstrap import estimate, seed_for, units_of
from rainbench.leaderboard.csv import CSV_COLUMNS, render_csv
from rainbench.leaderboard.eval import CROP_SIDE
from rainbench.leaderboard.html import render_html
from rainbench.leaderboard.latex import render_latex
from rainbench.leaderboard.markdown import render_markdown
from rainbench.leaderboard.publish import FORMATS, render_leaderboard, write_leaderboard
from rainbench.leaderboard.ranking import leaderboard_tables
from rainbench.leaderboard.results import LeaderboardError, load_results, split_lock
from rainbench.shards.dataset import writer_lock


def _table(root, split):
    return next(t for t in leaderboard_tables(load_results(root)) if t.split == split)


def _ranks(table):
    return {row.model: row.rank for row in table.rows}


def test_the_fastest_is_marked_among_the_ranked_rows(tmp_path, write_run):
    # A run that failed on its hardest image timed only the easy ones: not the fastest.
    slow = {"psnr_y": [30.0] * 3}
    write_run(tmp_path, "slow", "ds", "syn", kind="synthetic", metrics=slow, s_per_mp=[2.0] * 3)
    crashy = {"psnr_y": [35.0, 36.0, None]}
    status = ["ok", "ok", "failed"]
    write_run(
        tmp_path,
        "crashy",
        "ds",
        "syn",
        kind="synthetic",
        metrics=crashy,
        s_per_mp=[0.1] * 3,
        status=status,
    )
    table = _table(tmp_path, "syn")
    assert table.best_speed() == 2.0
    page = render_html(load_results(tmp_path))
    assert '<td class="best"><span class="mean">2.000</span></td>' in page
    assert '<td class="best"><span class="mean">0.100</span></td>' not in page


def test_interval_contains_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    widths = []
    for n in (10, 100, 1000, 20000):
        values = rng.normal(5, 1, n)
        found = estimate(values, seed_for("demo", "test", "nlcl", "niqe"))
        assert found.low < found.mean < found.high
        assert found.mean == pytest.approx(values.mean())
        assert found.n == n
        widths.append(found.high - found.low)
    assert widths == sorted(widths, reverse=True)
    # The percentile interval of a mean of unit-variance values: about ±1.96/√n.
    assert widths[2] == pytest.approx(2 * 1.96 / math.sqrt(1000), rel=0.15)


def test_frames_of_one_sequence_are_drawn_together():
    # Two videos of three frames each, alike within a video: two values' worth of
    # evidence, not six. Drawn by video, a quarter of the resamples hold only the first.
    values = np.array([1.0, 1.0, 1.0, 5.0, 5.0, 5.0])
    units = units_of(["a", "a", "a", "b", "b", "b"])
    by_video = estimate(values, seed=3, units=units)
    by_frame = estimate(values, seed=3)
    assert by_video.mean == by_frame.mean == 3.0
    assert (by_video.low, by_video.high) == (1.0, 5.0)
    assert by_frame.low > 1.0 and by_frame.high < 5.0
    # One video's frames say nothing of how videos differ: no interval at all.
    one = estimate(values, seed=3, units=units_of(["a"] * 6))
    assert one.mean == 3.0 and math.isnan(one.low) and math.isnan(one.high)
    # A frame without a sequence is a unit of its own; all alone: the plain bootstrap.
    assert units_of(["a", None, "a", float("nan")]).tolist() == [0, 1, 0, 2]
    assert units_of([None, None]) is None and units_of(None) is None


def test_a_run_from_before_sequences_were_recorded_is_drawn_by_them_too(tmp_path, write_run):
    # eval's rows gained `group` later: an older run's frames, drawn one by one, had an
    # interval as if six videos were scored, narrower than the same scores' in a run
    # that recorded them, and one where a single sequence gives none.
    values = [20.0, 20.0, 20.0, 30.0, 30.0, 30.0]
    for model, split, groups in (
        ("new", "two", ["a"] * 3 + ["b"] * 3),
        ("old", "two", None),
        ("new", "one", ["a"] * 6),
        ("old", "one", None),
    ):
        path = write_run(
            tmp_path, model, "ds", split, kind="real-paired", metrics={"psnr_y": values}
        )
        if groups:
            table = pq.read_table(path)
            pq.write_table(table.append_column("group", pa.array(groups)), path)
    for split, interval in (("two", (20.0, 30.0)), ("one", (math.nan, math.nan))):
        found = {
            row.model: (row.estimates["psnr_y"].low, row.estimates["psnr_y"].high)
            for row in _table(tmp_path, split).rows
        }
        np.testing.assert_array_equal(found["old"], found["new"])
        np.testing.assert_array_equal(found["old"], interval)


def test_bootstrap_is_seeded_by_what_it_estimates():
    values = np.random.default_rng(1).normal(0, 1, 50)
    first = estimate(values, seed_for("demo", "test", "nlcl", "niqe"))
    assert estimate(values, seed_for("demo", "test", "nlcl", "niqe")) == first
    assert estimate(values, seed_for("demo", "test", "nlcl", "piqe")) != first
    assert estimate(np.array([2.5]), 0) == estimate(np.array([2.5]), 1)
    empty = estimate(np.array([]), 0)
    assert empty.n == 0 and math.isnan(empty.mean) and not empty.present


@pytest.mark.parametrize("fmt", FORMATS)
def test_output_is_reproducible(results_dir, tmp_path, fmt):
    first = write_leaderboard(results_dir, fmt, tmp_path / f"first.{fmt}").read_bytes()
    second = write_leaderboard(results_dir, fmt, tmp_path / f"second.{fmt}").read_bytes()
    assert first == second


def test_lower_is_better_metrics_rank_the_smallest_first(tmp_path, write_run):
    for model, niqe in (("blurry", 6.0), ("sharp", 3.0), ("middle", 4.5)):
        write_run(tmp_path, model, "ds", "test", kind="real", metrics={"niqe": [niqe] * 4})
        write_run(
            tmp_path, model, "ds", "syn", kind="synthetic", metrics={"psnr_y": [40 - niqe] * 4}
        )
    real = _table(tmp_path, "test")
    assert real.primary == "niqe" and real.lower_is_better["niqe"]
    assert [row.model for row in real.rows] == ["sharp", "middle", "blurry"]
    assert real.best("niqe") == 3.0
    synthetic = _table(tmp_path, "syn")
    assert synthetic.primary == "psnr_y"
    assert _ranks(synthetic) == {"sharp": 1, "middle": 2, "blurry": 3}
    assert synthetic.best("psnr_y") == 37.0


def test_real_split_without_niqe_ranks_by_the_first_no_reference_metric(tmp_path, write_run):
    for model, piqe in (("a", 30.0), ("b", 20.0)):
        write_run(
            tmp_path, model, "ds", "test", kind="real", metrics={"piqe": [piqe], "brisque": [1.0]}
        )
    table = _table(tmp_path, "test")
    assert table.metrics == ("brisque", "piqe")
    assert table.primary == "brisque"
    assert _ranks(table) == {"a": 1, "b": 1}  # equal brisque


def test_direction_comes_from_the_json(tmp_path, write_run):
    for model, value in (("a", 1.0), ("b", 2.0)):
        write_run(
            tmp_path,
            model,
            "ds",
            "test",
            kind="real",
            metrics={"mymetric": [value] * 3},
            lower_is_better={"mymetric": True},
        )
    table = _table(tmp_path, "test")
    assert table.primary == "mymetric"
    assert _ranks(table) == {"a": 1, "b": 2}


def test_a_metric_of_unknown_direction_is_an_error(tmp_path, write_run):
    write_run(tmp_path, "a", "ds", "test", kind="real", metrics={"mymetric": [1.0]})
    with pytest.raises(LeaderboardError, match="mymetric"):
        leaderboard_tables(load_results(tmp_path))


def test_ties_share_a_rank(tmp_path, write_run):
    for model, psnr in (("a", 30.0), ("b", 31.0), ("c", 31.0), ("d", 29.0)):
        write_run(tmp_path, model, "ds", "syn", kind="synthetic", metrics={"psnr_y": [psnr] * 5})
    table = _table(tmp_path, "syn")
    assert _ranks(table) == {"b": 1, "c": 1, "a": 3, "d": 4}
    assert [row.model for row in table.rows] == ["b", "c", "a", "d"]


def test_the_same_scores_in_another_row_order_tie(tmp_path, write_run):
    # Summed in row order, these means differ in their last bit (20.6652 and
    # 20.665200000000006): a ranked 2nd behind b with the same scores, and only b bold.
    psnr = [29.109, 18.094, 11.229, 10.496, 34.398]
    keys = [f"k{i}" for i in range(len(psnr))]
    write_run(tmp_path, "a", "ds", "syn", kind="synthetic", metrics={"psnr_y": psnr}, keys=keys)
    write_run(
        tmp_path,
        "b",
        "ds",
        "syn",
        kind="synthetic",
        metrics={"psnr_y": psnr[::-1]},
        keys=keys[::-1],
    )
    table = _table(tmp_path, "syn")
    assert _ranks(table) == {"a": 1, "b": 1}
    assert table.rows[0].estimates["psnr_y"].mean == table.rows[1].estimates["psnr_y"].mean
    assert render_markdown(load_results(tmp_path)).count("**20.67**") == 2  # both bold


def test_per_rain_type_columns(results_dir):
    table = _table(results_dir, "test")
    assert table.rain_types == ("drizzle", "streak", "storm", "fog-like", "untagged")
    scores = pd.read_parquet(results_dir / "guided-filter" / "demo" / "test.parquet")
    ok = scores[scores["status"] == "ok"]
    row = next(r for r in table.rows if r.model == "guided-filter")
    drizzle = ok[ok["rain_type"] == "drizzle"]["niqe"]
    assert row.by_rain_type["drizzle"].mean == pytest.approx(drizzle.mean())
    assert row.by_rain_type["drizzle"].n == len(drizzle) == 5  # one drizzle image failed
    untagged = ok[ok["rain_type"].isna()]["niqe"]
    assert row.by_rain_type["untagged"].mean == pytest.approx(untagged.mean())
    # The unfinished run covers the first ten images only: no storm ones.
    wip = next(r for r in table.rows if r.model == "restormer-wip")
    assert not wip.by_rain_type["storm"].present
    assert _table(results_dir, "syn-streak").rain_types == ()
    markdown = render_markdown(load_results(results_dir))
    assert "| drizzle: NIQE ↓ | streak: NIQE ↓ |" in markdown
    rows = list(csv.DictReader(io.StringIO(render_csv(load_results(results_dir)))))
    storm = [r for r in rows if r["rain_type"] == "storm" and r["model"] == "nlcl"]
    assert [r["metric"] for r in storm] == ["niqe"] and storm[0]["n"] == "5"


def test_failed_images_are_excluded_from_means_but_counted(tmp_path, write_run):
    write_run(
        tmp_path,
        "flaky",
        "ds",
        "test",
        kind="real",
        metrics={"niqe": [4.0, 6.0, 1.0]},
        status=["ok", "ok", "failed"],
        s_per_mp=[1.0, 3.0, 100.0],
    )
    table = _table(tmp_path, "test")
    (row,) = table.rows
    assert row.estimates["niqe"].mean == 5.0 and row.estimates["niqe"].n == 2
    assert (row.images_ok, row.images_failed) == (2, 1)
    assert row.s_per_mp == 2.0
    results = load_results(tmp_path)
    markdown = render_markdown(results)
    assert "2 ok, 1 failed" in markdown
    assert "Failed images (excluded from the means): flaky 1 of 3." in markdown
    assert "1 failed" in render_html(results)
    rows = list(csv.DictReader(io.StringIO(render_csv(results))))
    assert (rows[0]["images_ok"], rows[0]["images_failed"], rows[0]["n"]) == ("2", "1", "2")


def test_a_mean_of_finite_values_is_finite_however_large_they_are(tmp_path, write_run):
    """Values each finite but whose sum is not (1e308 on every image): a finite mean
    and interval, as an unbounded float would give them, not an infinite one."""
    big = 1e308
    runs = {"huge": [big] * 4, "signs": [big, -big, big, big], "plain": [30.0, 32.0, 31.0, 33.0]}
    for model, values in runs.items():
        write_run(tmp_path, model, "ds", "syn", kind="synthetic", metrics={"psnr_y": values})
    table = _table(tmp_path, "syn")
    found = {row.model: row.estimates["psnr_y"] for row in table.rows}
    assert (found["huge"].mean, found["huge"].low, found["huge"].high) == (big, big, big)
    assert found["huge"].infinite == 0
    assert found["signs"].mean == big / 2 and -big <= found["signs"].low < found["signs"].high
    assert math.isfinite(found["signs"].high)
    assert _ranks(table) == {"huge": 1, "signs": 2, "plain": 3}
    plain = estimate(np.array(runs["plain"]), seed_for("ds", "syn", "plain", "psnr_y"))
    assert found["plain"] == plain  # ordinary values: estimated as they are


def test_an_infinite_psnr_stays_in_the_mean_and_is_shown(tmp_path, write_run):
    # An output equal to its ground truth has an infinite PSNR: "perfect" is everywhere
    # equal to it; "once" is infinite on one image of three, so its mean is too, but a
    # smaller share of its images is: it ranks second, above any finite mean.
    inf = math.inf
    runs = {"perfect": [inf, inf, inf], "once": [30.0, inf, 31.0], "plain": [30.0, 32.0, 31.0]}
    for model, values in runs.items():
        write_run(
            tmp_path,
            model,
            "ds",
            "syn",
            kind="synthetic",
            metrics={"psnr_y": values, "ssim_y": [0.9, 1.0, 0.95]},
        )
    table = _table(tmp_path, "syn")
    assert _ranks(table) == {"perfect": 1, "once": 2, "plain": 3}
    plain = next(r for r in table.rows if r.model == "plain").estimates["psnr_y"]
    assert (plain.mean, plain.n, plain.infinite) == (31.0, 3, 0)
    assert plain.low < 31.0 < plain.high
    once = next(r for r in table.rows if r.model == "once").estimates["psnr_y"]
    assert (once.mean, once.n, once.infinite) == (inf, 3, 1)
    # Some resamples draw no infinite image: the interval's low end is a finite mean.
    assert 30.0 <= once.low <= 31.0 and once.high == inf
    perfect = next(r for r in table.rows if r.model == "perfect").estimates["psnr_y"]
    assert (perfect.low, perfect.high, perfect.n) == (inf, inf, 3)
    results = load_results(tmp_path)
    markdown = render_markdown(results)
    assert "| 1 | perfect 1.0 | **∞** [∞, ∞] |" in markdown
    assert "Infinite values (PSNR where an output equals its ground truth; PSNR-Y also" in markdown
    assert "| 2 | once 1.0 | ∞ [30.00, ∞] |" in markdown
    assert "perfect: PSNR-Y on 3 of 3; once: PSNR-Y on 1 of 3." in markdown
    page = render_html(results)
    assert "perfect: PSNR-Y on 3 of 3" in page and "An infinite mean has no bar." in page
    assert "$\\infty$" in render_latex(results)
    rows = list(csv.DictReader(io.StringIO(render_csv(results))))
    perfect_rows = [r for r in rows if r["model"] == "perfect" and r["metric"] == "psnr_y"]
    assert [(r["mean"], r["low"], r["high"]) for r in perfect_rows] == [("inf", "inf", "inf")]
    assert float(perfect_rows[0]["mean"]) == inf


def test_a_run_under_an_older_metric_protocol_is_shown_not_ranked(tmp_path, write_run):
    # Values by another protocol (another crop, rounding or colour conversion) are not
    # comparable: ranking them together let a protocol change decide a rank.
    def run(model, niqe, protocol):
        path = write_run(tmp_path, model, "ds", "test", kind="real", metrics={"niqe": niqe})
        sidecar = path.with_suffix(".json")
        provenance = json.loads(sidecar.read_text())
        provenance["metric_protocol_version"] = protocol
        sidecar.write_text(json.dumps(provenance))

    run("new", [5.0, 5.0], 2)
    run("old", [1.0, 1.0], 1)  # better by the old protocol's values
    run("also-new", [6.0, 6.0], 2)
    table = _table(tmp_path, "test")
    assert _ranks(table) == {"new": 1, "also-new": 2, "old": None}
    reasons = {row.model: row.unranked for row in table.rows}
    assert reasons["old"] == (
        "its values follow metric protocol 1, the newest run's 2; run rainbench eval "
        "--rescore-stale for it again"
    )


def test_a_rank_compares_only_runs_that_scored_every_image_of_the_same_split(tmp_path, write_run):
    def run(model, niqe, **options):
        return write_run(
            tmp_path, model, "ds", "test", kind="real", metrics={"niqe": niqe}, **options
        )

    run("whole", [5.0, 5.0, 5.0])
    run("crashy", [1.0, 1.0, 9.0], status=["ok", "ok", "failed"])  # failed on its worst image
    run("blind", [2.0, 2.0, None])  # niqe could not be computed on one output
    write_run(tmp_path, "x", "ds", "other", kind="real", metrics={"niqe": [2.0, None]})
    write_run(tmp_path, "y", "ds", "other", kind="real", metrics={"niqe": [3.0, None]})
    run("running", [1.0, 1.0, 1.0], finished=False)
    older = run("older", [3.0, 3.0, 3.0])
    sidecar = older.with_suffix(".json")
    provenance = json.loads(sidecar.read_text())
    provenance["dataset"]["split_sha256"] = "01" * 32
    provenance["finished_at"] = "2024-12-31T10:05:00+00:00"  # before the others
    sidecar.write_text(json.dumps(provenance))
    table = _table(tmp_path, "test")
    assert _ranks(table) == {
        "whole": 1, "crashy": None, "blind": None, "running": None, "older": None
    }  # fmt: skip
    reasons = {row.model: row.unranked for row in table.rows}
    assert reasons["whole"] is None
    assert reasons["crashy"] == "it failed on 1 of 3 images"
    assert reasons["blind"] == "niqe was not computed on 1 of 3 images"
    assert reasons["running"] == "its run has not finished"
    assert reasons["older"].startswith(
        "it was scored on another version of the split (split 010101"
    )
    markdown = render_markdown(load_results(tmp_path))
    assert "| 1 | whole 1.0 | **5.000** [5.000, 5.000] |" in markdown  # the best of the ranked
    assert (
        "Not ranked, as a rank compares methods on every image of the split and on none they "
        "trained on: " in markdown
    )
    assert "crashy (it failed on 1 of 3 images)" in markdown
    # An image no method has a value for is no one's loss.
    assert _ranks(_table(tmp_path, "other")) == {"x": 1, "y": 2}


def test_a_split_counts_the_images_of_its_version_not_a_stale_runs(tmp_path, write_run):
    # The split was rendered again under other keys since "before" was scored: its four
    # images are no longer the split's, which has four, not eight.
    write_run(tmp_path, "now", "ds", "syn", kind="synthetic", metrics={"psnr_y": [30.0] * 4})
    before = write_run(
        tmp_path,
        "before",
        "ds",
        "syn",
        kind="synthetic",
        metrics={"psnr_y": [31.0] * 4},
        keys=[f"old-{i}" for i in range(4)],
    )
    _provenance_change(
        lambda p: p.update(
            finished_at="2024-12-31T10:05:00+00:00",
            dataset={**p["dataset"], "split_sha256": "01" * 32},
        )
    )(before)
    table = _table(tmp_path, "syn")
    assert table.images == 4 and _ranks(table) == {"now": 1, "before": None}
    assert "## ds / syn (synthetic rain, 4 images)" in render_markdown(load_results(tmp_path))


def test_a_mean_that_left_out_an_image_others_scored_is_said_and_not_the_best(tmp_path, write_run):
    # PIQE failed on the output of a's hardest image: its mean over the two easy ones
    # (30) is no better than b's over all three, which it beats on those two (31).
    write_run(
        tmp_path, "a", "ds", "test", kind="real",
        metrics={"niqe": [5.0] * 3, "piqe": [30.0, 30.0, None]},
    )  # fmt: skip
    write_run(
        tmp_path, "b", "ds", "test", kind="real",
        metrics={"niqe": [5.1] * 3, "piqe": [31.0, 31.0, 90.0]},
    )  # fmt: skip
    table = _table(tmp_path, "test")
    assert _ranks(table) == {"a": 1, "b": 2}  # the primary metric is whole for both
    assert table.best("piqe") == pytest.approx(50.6667, abs=1e-4)
    results = load_results(tmp_path)
    markdown = render_markdown(results)
    assert "| 1 | a 1.0 | **5.000** [5.000, 5.000] | 30.00 [30.00, 30.00] |" in markdown
    assert "| 2 | b 1.0 | 5.100 [5.100, 5.100] | **50.67** [31.00, 90.00] |" in markdown
    note = "Values missing where a metric failed on an output: a: PIQE on 1 of 3 images."
    for text in (markdown, render_html(results), render_latex(results)):
        assert note in text
    assert {row.model: row.missing for row in table.rows} == {"a": {"piqe": 1}, "b": {}}


def test_an_unranked_rows_mean_equal_to_the_best_is_not_marked_best(tmp_path, write_run):
    # b failed on its third image: its mean over the other two equals a's best, but the
    # best of a column is the ranked rows'.
    write_run(tmp_path, "a", "ds", "test", kind="real", metrics={"niqe": [5.0] * 3})
    write_run(
        tmp_path, "b", "ds", "test", kind="real",
        metrics={"niqe": [5.0, 5.0, 9.0]}, status=["ok", "ok", "failed"],
    )  # fmt: skip
    table = _table(tmp_path, "test")
    assert _ranks(table) == {"a": 1, "b": None}
    markdown = render_markdown(load_results(tmp_path))
    [row_a] = [line for line in markdown.splitlines() if line.startswith("| 1 | a ")]
    [row_b] = [line for line in markdown.splitlines() if line.startswith("| — | b ")]
    assert row_a.count("**") == 4 and "**" not in row_b  # a's NIQE, whole and by type


def test_a_row_trained_on_its_one_image_says_so_in_the_singular(tmp_path, write_run):
    sidecar = write_run(tmp_path, "nlcl", "ds", "train", kind="real", metrics={"niqe": [5.0]})
    sidecar = sidecar.with_suffix(".json")
    provenance = json.loads(sidecar.read_text())
    provenance["trained_on"] = {"images": 1, "of": 1}
    sidecar.write_text(json.dumps(provenance))
    [row] = _table(tmp_path, "train").rows
    assert (row.rank, row.unranked) == (None, "trained on 1 of its 1 image")
    assert f"Made by rainbench {__version__} from 1 result file." in render_markdown(
        load_results(tmp_path)
    )


def test_every_row_without_a_rank_says_why_in_every_format(tmp_path, write_run):
    def run(model, split="test", **options):
        options.setdefault("metrics", {"niqe": [5.0, 5.0]})
        return write_run(tmp_path, model, "ds", split, kind="real", **options)

    run("whole")
    run("other", metrics={"piqe": [20.0, 20.0]})  # its run did not compute niqe
    run("crashed", status=["failed", "failed"])
    run("blank", keys=["x1", "x2"], metrics={"niqe": [None, None]})  # no run has a value
    sidecar = run("unscored", "bare").with_suffix(".json")  # no metric at all
    provenance = json.loads(sidecar.read_text())
    provenance["metrics"] = []
    sidecar.write_text(json.dumps(provenance))
    assert {row.model: row.unranked for row in _table(tmp_path, "test").rows} == {
        "whole": None,
        "other": "its run did not compute niqe, the metric this split is ranked by",
        "crashed": "it failed on 2 of 2 images",
        "blank": "niqe was not computed on any of its 2 images",
    }
    [row] = _table(tmp_path, "bare").rows
    assert (row.rank, row.unranked) == (None, "no metric was computed on this split")
    results = load_results(tmp_path)
    lead = "Not ranked, as a rank compares methods on every image of the split and on none"
    reasons = (
        "blank (niqe was not computed on any of its 2 images); crashed (it failed on 2 of 2 "
        "images); other (its run did not compute niqe, the metric this split is ranked by)."
    )
    for text in (render_markdown(results), render_html(results), render_latex(results)):
        assert text.count(lead) == 2
        assert reasons in text
        assert "unscored (no metric was computed on this split)." in text


def test_a_count_of_one_is_singular(tmp_path, write_run):
    write_run(tmp_path, "a", "ds", "test", kind="real", metrics={"niqe": [5.0]}, status=["failed"])
    write_run(tmp_path, "b", "ds", "test", kind="real", metrics={"niqe": [4.0]})
    results = load_results(tmp_path)
    assert "## ds / test (real rain, 1 image)" in render_markdown(results)
    assert '<p class="meta">1 image · ' in render_html(results)
    assert "(real rain, 1 image, ranked by NIQE)" in render_latex(results)
    assert "a (it failed on 1 of 1 image)" in render_markdown(results)


def test_the_notes_on_reading_a_page_say_what_the_number_after_a_name_is(results_dir):
    results = load_results(results_dir)
    said = "The number after a model's name is its derainer's version (guided 1: the derainer"
    assert said in render_markdown(results)
    assert said.replace("'", "&#x27;") in render_html(results)


def test_metrics_not_computed_are_named_with_the_fix(tmp_path, write_run):
    why = "niqe needs niqe_modelparameters.mat; provide it: rainbench weights extract-niqe X"
    for model in ("identity", "guided"):
        parquet = write_run(tmp_path, model, "ds", "test", kind="real", metrics={"piqe": [30.0]})
        sidecar = parquet.with_suffix(".json")
        provenance = json.loads(sidecar.read_text())
        provenance["unavailable_metrics"] = {"niqe": why}
        sidecar.write_text(json.dumps(provenance))
    write_run(tmp_path, "identity", "ds", "syn-streak", kind="synthetic", metrics={"psnr": [30.0]})
    results = load_results(tmp_path)
    markdown = render_markdown(results)
    assert markdown.count(f"Not computed: {why}.") == 1  # once a page, not per run or table
    assert render_html(results).count(f"Not computed: {why}.") == 1


def test_incomplete_runs_are_flagged(tmp_path, write_run):
    write_run(tmp_path, "done", "ds", "test", kind="real", metrics={"niqe": [4.0]})
    write_run(
        tmp_path, "running", "ds", "test", kind="real", metrics={"niqe": [4.5]}, finished=False
    )
    write_run(
        tmp_path, "bare", "ds", "test", kind="real", metrics={"niqe": [5.0]}, provenance=False
    )
    write_run(
        tmp_path, "started", "ds", "test", kind="real", metrics={"niqe": [5.0]}, finished=False
    )
    (tmp_path / "started" / "ds" / "test.parquet").unlink()
    results = load_results(tmp_path)
    assert {run.model: run.complete for run in results.runs} == {
        "done": True,
        "running": False,
        "bare": False,
        "started": False,
    }
    table = _table(tmp_path, "test")
    started = next(r for r in table.rows if r.model == "started")
    assert started.rank is None and started.images_ok == 0 and table.rows[-1] is started
    markdown = render_markdown(results)
    assert "running 1.0 (incomplete)" in markdown and "done 1.0 (incomplete)" not in markdown
    assert "bare (incomplete)" in markdown
    rows = list(csv.DictReader(io.StringIO(render_csv(results))))
    assert {r["model"]: r["complete"] for r in rows} == {
        "done": "true",
        "running": "false",
        "bare": "false",
        "started": "false",
    }
    assert render_html(results).count('class="badge"') == 3


def test_paired_kinds_are_tables_of_their_own_in_a_fixed_order(tmp_path, write_run):
    for split, kind in (
        ("syn-streak", "synthetic"),
        ("rain100l", "imported"),
        ("spa-test", "real-paired"),
        ("test", "real"),
    ):
        metrics = {"niqe": [4.0]} if kind == "real" else {"psnr_y": [30.0], "niqe": [4.0]}
        write_run(tmp_path, "identity", "ds", split, kind=kind, metrics=metrics)
    tables = leaderboard_tables(load_results(tmp_path))
    assert [(t.split, t.primary) for t in tables] == [
        ("test", "niqe"),
        ("spa-test", "psnr_y"),
        ("rain100l", "psnr_y"),
        ("syn-streak", "psnr_y"),
    ]
    text = render_markdown(load_results(tmp_path))
    assert "## ds / spa-test (real rain, ground truth estimated from video, 1 image)" in text
    assert "## ds / rain100l (public paired set, 1 image)" in text
    assert (
        "1 real-rain split without ground truth, scored with no-reference metrics, 1 real-rain "
        "split with ground truth estimated from video, 1 public paired set with the ground truth "
        "of its rendered rain and 1 synthetic split with known ground truth."
    ) in render_html(load_results(tmp_path))


def test_a_split_whose_runs_disagree_on_its_kind_is_an_error(tmp_path, write_run):
    write_run(tmp_path, "a", "ds", "spa", kind="real-paired", metrics={"psnr_y": [30.0]})
    write_run(tmp_path, "b", "ds", "spa", kind="imported", metrics={"psnr_y": [30.0]})
    with pytest.raises(LeaderboardError, match="disagree on the kind of split"):
        leaderboard_tables(load_results(tmp_path))


def test_a_row_from_imported_weights_says_so(tmp_path, write_run):
    write_run(tmp_path, "nlcl", "ds", "syn-streak", kind="synthetic", metrics={"psnr_y": [30.0]})
    path = write_run(
        tmp_path, "nlcl-published", "ds", "syn-streak", kind="synthetic", metrics={"psnr_y": [31.0]}
    )
    info = json.loads(path.with_suffix(".json").read_text())
    info["model"]["options"] = {"step": None, "imported_from": {"sha256": "ef" * 32}}
    path.with_suffix(".json").write_text(json.dumps(info))
    text = render_markdown(load_results(tmp_path))
    assert "nlcl-published 1.0 (imported weights)" in text
    assert "nlcl 1.0 (imported weights)" not in text
    page = render_html(load_results(tmp_path))
    assert page.count(">imported weights</span>") == 1
    published = page.index("<strong>nlcl-published</strong>")
    assert page.index(">imported weights</span>", published) < page.index("</td>", published)


def test_every_format_renders(results_dir):
    results = load_results(results_dir)
    markdown = render_markdown(results)
    assert "## demo / test (real rain, 24 images)" in markdown
    assert "## demo / syn-streak (synthetic rain, 16 images)" in markdown
    assert "| rank | model | NIQE ↓ (95% CI) |" in markdown
    assert "metric protocol v1; NIQE ↓, BRISQUE ↓, PIQE ↓" in markdown
    assert (
        "manifest cdcdcdcdcdcd, split efefefefefef" in markdown
        and "checkpoint abababababab" in markdown
    )

    frame = pd.read_csv(io.StringIO(render_csv(results)))
    assert tuple(frame.columns) == CSV_COLUMNS
    overall = frame[frame["rain_type"] == "all"]
    assert not overall.duplicated(["dataset", "split", "model", "metric"]).any()
    # 4 models × 3 metrics on test, 3 models × 5 metrics on syn-streak, plus rain types.
    assert len(overall) == 4 * 3 + 3 * 5
    nlcl = overall[(overall["model"] == "nlcl") & (overall["metric"] == "psnr_y")].iloc[0]
    found = next(r for r in _table(results_dir, "syn-streak").rows if r.model == "nlcl")
    assert nlcl["mean"] == found.estimates["psnr_y"].mean
    assert nlcl["low"] == found.estimates["psnr_y"].low and nlcl["rank"] == 1

    latex = render_latex(results)
    assert latex.count("\\begin{tabular}") == 2
    for rule in ("\\toprule", "\\midrule", "\\bottomrule", "\\cmidrule"):
        assert rule in latex
    assert "\\pm" not in latex
    assert re.search(r"\\textbf\{\d+\.\d+\} \[\d+\.\d+, \d+\.\d+\]", latex)
    assert "restormer-wip 1.0 (incomplete)" in latex

    page = render_html(results)
    assert page.startswith("<!doctype html>")
    assert page.count("<table>") == 2 and page.count("<svg") == 4
    assert "data:image/png;base64," in page
    assert "<details>" in page


def test_html_references_nothing_outside(results_dir):
    page = render_html(load_results(results_dir))
    assert "http://" not in page and "https://" not in page
    links = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert links and all(link.startswith(("data:", "#")) for link in links)
    assert "<script" not in page and "@import" not in page and "url(" not in page


def test_html_escapes_names(tmp_path, write_run):
    write_run(tmp_path, "<b>&bold", "ds", "test", kind="real", metrics={"niqe": [3.0]})
    page = render_html(load_results(tmp_path))
    assert "&lt;b&gt;&amp;bold" in page and "<b>&bold" not in page


def test_html_anchors_and_latex_labels_are_one_per_table(tmp_path, write_run):
    # Each pair of titles makes one anchor (rain_x, rain-x) or one label (雨, 雪) alike.
    for dataset in ("rain_x", "rain-x", "雨", "雪"):
        write_run(tmp_path, "m", dataset, "test", kind="real", metrics={"niqe": [3.0]})
    results = load_results(tmp_path)
    page = render_html(results)
    anchors = re.findall(r'<section class="split" id="([^"]*)"', page)
    assert len(anchors) == len(set(anchors)) == 4
    assert re.findall(r'<li><a href="#([^"]*)"', page) == anchors
    labels = re.findall(r"\\label\{([^}]*)\}", render_latex(results))
    assert len(labels) == len(set(labels)) == 4


def test_html_provenance_says_where_a_derainers_code_came_from(tmp_path, write_run):
    parquet = write_run(tmp_path, "median7", "ds", "test", kind="real", metrics={"niqe": [3.0]})
    provenance = json.loads(parquet.with_suffix(".json").read_text())
    provenance["model"] |= {
        "registered": "median",
        "source": {"package": "h3<b>", "version": "0.1", "entry_point": "h3:median_spec"},
    }
    parquet.with_suffix(".json").write_text(json.dumps(provenance))
    page = render_html(load_results(tmp_path))
    assert "<dt>code</dt><dd>median from h3&lt;b&gt; 0.1 (h3:median_spec)</dd>" in page


def test_latex_and_markdown_escape_names(tmp_path, write_run):
    write_run(tmp_path, "a_b&c|d", "ds", "test", kind="real", metrics={"niqe": [3.0]})
    results = load_results(tmp_path)
    assert "a\\_b\\&c\\textbar{}d" in render_latex(results)
    assert "a_b&c\\|d" in render_markdown(results)


def test_latex_holds_no_control_character_from_a_name(tmp_path, write_run):
    hostile = "a\x1b]0;pwned\x07\x0c\n\nb\x7f\x9bc"  # a folder's name may hold any of them
    write_run(tmp_path, hostile, "ds\x01", "test", kind="real", metrics={"niqe": [3.0]})
    latex = render_latex(load_results(tmp_path))
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]|\n\n(?!\\begin)", latex)
    assert "a ]0;pwned    b  c" in latex and "ds " in latex


def test_reference_crops_are_not_a_model(results_dir):
    assert "_reference" not in {run.model for run in load_results(results_dir).runs}


def _garbage_parquet(parquet):
    parquet.write_bytes(b"PAR1 not really")


def _bad_json(parquet):
    parquet.with_suffix(".json").write_text('{"model": ')


def _json_list(parquet):
    parquet.with_suffix(".json").write_text("[]")


def _json_wrong_type(parquet):
    provenance = json.loads(parquet.with_suffix(".json").read_text())
    provenance["lower_is_better"] = ["niqe"]
    parquet.with_suffix(".json").write_text(json.dumps(provenance))


def _no_status(parquet):
    pq.write_table(pq.read_table(parquet).drop_columns(["status"]), parquet)


def _odd_status(parquet):
    table = pq.read_table(parquet)
    column = table.column_names.index("status")
    pq.write_table(table.set_column(column, "status", pa.array(["done"] * len(table))), parquet)


def _text_metric(parquet):
    table = pq.read_table(parquet)
    column = table.column_names.index("niqe")
    pq.write_table(table.set_column(column, "niqe", pa.array(["4"] * len(table))), parquet)


def _odd_kind(parquet):
    provenance = json.loads(parquet.with_suffix(".json").read_text())
    provenance["kind"] = "paired"
    parquet.with_suffix(".json").write_text(json.dumps(provenance))


def _provenance_change(change):
    def damage(parquet):
        provenance = json.loads(parquet.with_suffix(".json").read_text())
        change(provenance)
        parquet.with_suffix(".json").write_text(json.dumps(provenance))

    return damage


def _column(name, values):
    def damage(parquet):
        table = pq.read_table(parquet)
        column = table.column_names.index(name)
        pq.write_table(table.set_column(column, name, values), parquet)

    return damage


def _row_again(parquet):
    """The first image's row twice, the copy with a better score."""
    table = pq.read_table(parquet)
    copy = table.slice(0, 1).set_column(table.column_names.index("niqe"), "niqe", [[0.0]])
    pq.write_table(pa.concat_tables([table, copy]), parquet)


def _row_from_elsewhere(parquet):
    """A row of an image the split does not have, its key unlike any of the split's."""
    table = pq.read_table(parquet)
    other = table.slice(0, 1).set_column(0, "key", [["f" * 24]])
    pq.write_table(pa.concat_tables([table, other]), parquet)


def _deep_json(parquet):
    parquet.with_suffix(".json").write_text("[" * 100_000 + "]" * 100_000)


def _huge_json(parquet):
    parquet.with_suffix(".json").write_text(json.dumps({"pad": "x" * (8 << 20)}))


@pytest.mark.parametrize(
    "damage",
    [
        _garbage_parquet,
        _bad_json,
        _json_list,
        _json_wrong_type,
        _no_status,
        _odd_status,
        _text_metric,
        _odd_kind,
        pytest.param(
            _provenance_change(lambda p: p.update(unavailable_metrics={"niqe": None})),
            id="reason-not-text",
        ),
        pytest.param(
            _provenance_change(lambda p: p["model"].update(options="x")), id="options-not-object"
        ),
        pytest.param(
            _provenance_change(lambda p: p["dataset"].update(split_sha256=7)),
            id="split-sha256-not-text",
        ),
        pytest.param(
            _provenance_change(lambda p: p.update(trained_on={"images": 2})), id="trained-on-half"
        ),
        pytest.param(
            _provenance_change(lambda p: p.update(ground_truth={"gt_psnr_estimate_median": 30.0})),
            id="ground-truth-half",
        ),
        pytest.param(_column("status", pa.array([None, None], pa.string())), id="status-null"),
        pytest.param(_column("status", pa.array([math.nan, math.nan])), id="status-nan"),
        pytest.param(_column("key", pa.array([{"a": 1}, {"a": 2}])), id="key-not-text"),
        pytest.param(_column("key", pa.array(["k0", "k0"])), id="key-twice"),
        pytest.param(
            _column("key", pa.array([b"k0", b"\xff\xfe"]).view(pa.string())), id="key-not-utf8"
        ),
        pytest.param(_column("key", pa.array([None, None], pa.string())), id="key-null-twice"),
        pytest.param(_row_again, id="row-twice"),
        pytest.param(_row_from_elsewhere, id="row-from-elsewhere"),
        pytest.param(_provenance_change(lambda p: p.update(images={"ok": 2})), id="images-half"),
        _deep_json,
        _huge_json,
    ],
)
def test_a_malformed_file_is_a_one_line_error_naming_it(tmp_path, write_run, damage):
    parquet = write_run(tmp_path, "a", "ds", "test", kind="real", metrics={"niqe": [3.0, 4.0]})
    damage(parquet)
    with pytest.raises(LeaderboardError) as caught:
        leaderboard_tables(load_results(tmp_path))
    message = str(caught.value)
    assert "\n" not in message
    assert str(parquet.parent) in message and "test." in message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        # 2.0 is a number: "must be a number" said nothing of what was wrong with it.
        (lambda p: p["images"].update(ok=2.0), "images.ok must be a whole number"),
        # true is no count (Python's bool is an int): taken, it was "counts True and 0".
        (lambda p: p["images"].update(ok=True), "images.ok must be a whole number"),
        # ... and a row shown as "trained on True of its 2 images".
        (
            lambda p: p.update(trained_on={"images": True, "of": 2}),
            "trained_on.images must be a whole number",
        ),
        (
            lambda p: p.update(
                ground_truth={
                    "confident_from": False,
                    "confidence_mean": 0.9,
                    "moving_mean": 0.1,
                    "gt_psnr_estimate_median": 40,
                    "window_frames_max": 9,
                }
            ),
            "ground_truth.confident_from must be a number",
        ),
    ],
)
def test_a_count_or_figure_edited_into_another_type_is_named_as_json_says(
    tmp_path, write_run, change, expected
):
    parquet = write_run(tmp_path, "a", "ds", "test", kind="real", metrics={"niqe": [3.0, 4.0]})
    _provenance_change(change)(parquet)
    with pytest.raises(LeaderboardError, match=f"test.json: {re.escape(expected)}$"):
        load_results(tmp_path)


def test_scores_that_decode_to_far_more_than_their_file_are_refused_undecoded(tmp_path, write_run):
    """A thousand rows of one 2 MiB error message: 2 GiB from a file of kilobytes."""
    parquet = write_run(tmp_path, "a", "ds", "test", kind="real", metrics={"niqe": [3.0, 4.0]})
    table = pq.read_table(parquet)
    rows = 1000
    error = pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, np.int32)), ["e" * (2 << 20)])
    table = pa.table({name: pa.repeat(table[name][0], rows) for name in table.column_names})
    pq.write_table(table.set_column(table.column_names.index("error"), "error", error), parquet)
    with pytest.raises(LeaderboardError) as caught:
        load_results(tmp_path)
    assert str(caught.value).startswith(f"{parquet}: refused: decoding it would take 2.0 GiB")
    assert str(caught.value).endswith("; no evaluation writes such a file")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _bomb_header(path):
    """A PNG header of 16000 × 16000 pixels: Pillow's bomb guard refuses it on open."""
    header = struct.pack(">IIBBBBB", 16000, 16000, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IEND", b""))


def _wider_than_eval_writes(path):
    Image.new("RGB", (CROP_SIDE + 1, 8)).save(path)


def _text_bomb(path):
    """A small PNG whose text chunk inflates to 5 MB, past Pillow's limit."""
    png = path.read_bytes()
    text = _png_chunk(b"zTXt", b"k\x00\x00" + zlib.compress(bytes(5 << 20)))
    path.write_bytes(png[:33] + text + png[33:])  # after the signature and header


def _heavier_than_eval_writes(path):
    path.write_bytes(path.read_bytes() + bytes(1 << 20))


@pytest.mark.parametrize(
    "damage", [_bomb_header, _wider_than_eval_writes, _text_bomb, _heavier_than_eval_writes]
)
def test_a_crop_larger_than_eval_writes_is_shown_as_missing(tmp_path, write_run, damage):
    crops = {"k0": np.zeros((16, 16, 3), np.uint8), "k1": np.zeros((16, 16, 3), np.uint8)}
    parquet = write_run(
        tmp_path,
        "a",
        "ds",
        "test",
        kind="real",
        keys=["k0", "k1"],
        metrics={"niqe": [3.0, 4.0]},
        crops=crops,
    )
    damage(parquet.with_suffix(".crops") / "k0.png")
    page = render_html(load_results(tmp_path))
    assert page.count('class="missing">no crop') == 1
    assert page.count("data:image/png;base64,") == 1  # k1 still shown


def test_an_unfinished_run_has_rows_its_json_does_not_count_yet(tmp_path, write_run):
    parquet = write_run(
        tmp_path, "a", "ds", "test", kind="real", metrics={"niqe": [3.0, 4.0]}, finished=False
    )
    _row_from_elsewhere(parquet)
    assert len(load_results(tmp_path).runs[0].scores) == 3


def test_a_finished_run_an_eval_is_extending_now_is_said_so_not_called_tampered(
    tmp_path, write_run
):
    parquet = write_run(tmp_path, "a", "ds", "test", kind="real", metrics={"niqe": [3.0, 4.0]})
    _row_from_elsewhere(parquet)  # as an eval run again with new images writes them
    with pytest.raises(LeaderboardError, match="rows were added or removed after eval"):
        load_results(tmp_path)
    eval_running = writer_lock(split_lock(parquet.parent, "test"))
    with eval_running, pytest.raises(LeaderboardError) as busy:
        load_results(tmp_path)
    assert str(busy.value).startswith(f"{parquet}: an eval is writing it now (pid {os.getpid()} ")
    assert str(busy.value).endswith("make the leaderboard again once it has finished")


def _link_out(crop: Path, outside: Path) -> None:
    crop.unlink()
    crop.symlink_to(outside)


def _folder_out(crop: Path, outside: Path) -> None:
    """The crops' folder a link to a folder outside the results that holds `crop`'s name."""
    (outside.parent / crop.name).write_bytes(outside.read_bytes())
    folder = crop.parent
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    folder.symlink_to(outside.parent)


def _link_inside(crop: Path, outside: Path) -> None:
    """A link to another crop of the results: eval writes no links, so none is read."""
    crop.unlink()
    crop.symlink_to(crop.with_name(crop.name.replace("k0", "k1")))


@pytest.mark.parametrize(
    ("damage", "reference", "missing", "shown"),
    [
        (_link_out, False, 1, 5),
        (_folder_out, False, 2, 4),
        (_link_inside, False, 1, 5),
        (_link_out, True, 1, 5),
        (_folder_out, True, 0, 2),  # no input or ground-truth column at all
        (_link_inside, True, 1, 5),
    ],
)
def test_a_crop_that_leads_out_of_the_results_is_not_read(
    tmp_path, write_run, damage, reference, missing, shown
):
    """The page embeds a crop's bytes: one read through a link would publish whatever
    file of the machine it leads to (a results folder may come from anyone)."""
    secret = tmp_path / "private" / "secret.png"
    secret.parent.mkdir()
    Image.new("RGB", (8, 8), (255, 0, 0)).save(secret)
    results = tmp_path / "results"
    crops = {"k0": np.zeros((16, 16, 3), np.uint8), "k1": np.zeros((16, 16, 3), np.uint8)}
    parquet = write_run(
        results,
        "a",
        "ds",
        "test",
        kind="synthetic",
        keys=["k0", "k1"],
        metrics={"psnr_y": [30.0, 31.0]},
        crops=crops,
    )
    reference_crops = results / "_reference" / "ds" / "test.crops"
    reference_crops.mkdir(parents=True)
    for key, image in crops.items():
        for part in ("input", "gt"):
            Image.fromarray(image).save(reference_crops / f"{key}.{part}.png")
    if reference:
        damage(reference_crops / "k0.input.png", secret)
    else:
        damage(parquet.with_suffix(".crops") / "k0.png", secret)
    page = render_html(load_results(results))
    assert base64.b64encode(secret.read_bytes()).decode() not in page
    assert "secret" not in page
    assert page.count('class="missing">no crop') == missing
    assert page.count("data:image/png;base64,") == shown


def test_no_results_is_an_error(tmp_path):
    with pytest.raises(LeaderboardError, match="no such results directory"):
        load_results(tmp_path / "missing")
    with pytest.raises(LeaderboardError, match="no results"):
        load_results(tmp_path)


def test_unknown_format_is_an_error(results_dir, tmp_path):
    with pytest.raises(LeaderboardError, match="unknown format"):
        write_leaderboard(results_dir, "pdf", tmp_path / "x.pdf")


# Names a results folder may hold that are markup in Markdown or a formula in a sheet.
HOSTILE_MODELS = (
    "*a* _b_ __c__ `d` [e](f) ~~g~~ $h$ \\i | j &amp; &k <!-- l",
    "- 1. # m",
    "12) n",
    "# o #",
    '=HYPERLINK("evil.example","p")',
    "+q",
    "@SUM(1)",
    "\tr",
)
HOSTILE_DATASET = "<img src=x onerror=alert(1)>"


class _Cells(html.parser.HTMLParser):
    """Every td, li and h2 of rendered HTML: its text and the tags inside it."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.found: dict[str, list[tuple[str, set[str]]]] = {"td": [], "li": [], "h2": []}
        self.open: str | None = None

    def handle_starttag(self, tag, attrs):
        if tag in self.found:
            self.open = tag
            self.found[tag].append(("", set()))
        elif self.open:
            self.found[self.open][-1][1].add(tag)

    def handle_endtag(self, tag):
        if tag == self.open:
            self.open = None

    def handle_data(self, data):
        if self.open:
            text, tags = self.found[self.open][-1]
            self.found[self.open][-1] = (text + data, tags)


def test_markdown_renders_any_name_as_its_plain_text(tmp_path, write_run):
    markdown_it = pytest.importorskip("markdown_it")
    for index, model in enumerate(HOSTILE_MODELS):
        values = [3.0 + index]
        write_run(tmp_path, model, HOSTILE_DATASET, "-test", kind="real", metrics={"niqe": values})
    text = render_markdown(load_results(tmp_path))
    assert "<img" not in text
    rendered = markdown_it.MarkdownIt("commonmark").enable(["table", "strikethrough"])
    cells = _Cells()
    cells.feed(rendered.render(text))
    # As HTML shows text: a tab is a space, and a cell's leading space is not shown.
    shown = {f"{name} 1.0".replace("\t", " ").strip() for name in HOSTILE_MODELS}
    models = {text for text, tags in cells.found["td"] if text in shown}
    assert models == shown
    assert all(tags <= {"strong"} for _, tags in cells.found["td"])  # only the best is bold
    provenance = [(text, tags) for text, tags in cells.found["li"] if "checkpoint" in text]
    assert {text.split(":")[0].strip() for text, _ in provenance} == shown
    assert all(not tags for _, tags in provenance)
    assert cells.found["h2"] == [(f"{HOSTILE_DATASET} / -test (real rain, 1 image)", set())]


def test_markdown_escapes_only_what_would_be_markup():
    assert markdown._md("a_b&c|d") == "a_b&c\\|d"
    assert markdown._md("_a_ &amp; &#1; <b>") == "\\_a\\_ &amp;amp; &amp;#1; &lt;b&gt;"
    assert markdown._md("- x") == "\\- x" and markdown._md("3. x") == "3\\. x"
    assert markdown._md("syn-streak 1.0") == "syn-streak 1.0"
    assert markdown._md("two\nlines") == "two lines"
    assert markdown._md_code("a`b") == "``a`b``" and markdown._md_code("`") == "`` ` ``"


def test_csv_holds_no_escape_sequence_from_a_name(tmp_path, write_run):
    write_run(
        tmp_path, "a\x1b]0;pwned\x07b", "ds\x9b2J", "test", kind="real", metrics={"niqe": [3.0]}
    )
    rows = list(csv.reader(io.StringIO(render_csv(load_results(tmp_path)))))
    assert {(row[0], row[3]) for row in rows[1:]} == {("ds 2J", "a ]0;pwned b")}


def test_csv_cells_never_start_a_formula_but_numbers_stay_numbers(tmp_path, write_run):
    for index, model in enumerate(HOSTILE_MODELS):
        write_run(
            tmp_path,
            model,
            "=ds",
            "@split",
            kind="real",
            metrics={"mymetric": [-1.5 - index, -2.5]},
            rain_types=["+x", "-2"],
            lower_is_better={"mymetric": True},
            version="-1+1",
        )
    rows = list(csv.reader(io.StringIO(render_csv(load_results(tmp_path)))))[1:]
    for row in rows:
        for cell in row:
            assert not cell.startswith(("=", "+", "@", "\t", "\r")), row
            assert not cell.startswith("-") or re.fullmatch(r"-[\d.e+-]+", cell), row
    frame = pd.read_csv(io.StringIO(render_csv(load_results(tmp_path))), keep_default_na=False)
    assert set(frame["model"]) == {
        "'" + m if m.startswith(("=", "+", "-", "@", "\t")) else m for m in HOSTILE_MODELS
    }
    assert set(frame["dataset"]) == {"'=ds"} and set(frame["split"]) == {"'@split"}
    assert set(frame["model_version"]) == {"'-1+1"}
    assert set(frame["rain_type"]) == {"all", "'+x", "-2"}  # -2 stays a number
    assert frame["mean"].dtype == np.float64 and (frame["mean"] < 0).all()


REPOSITORY = Path(__file__).resolve().parents[2]
# sha256 of each format rendered from _golden_results (the rainbench version in each
# replaced by "VERSION"): any change to a rendering's bytes changes its digest. Where a
# change is meant, write the new digests here and say why in the commit.
GOLDEN = {
    "md": "044567b8cfda1ff5d023352951c0ec1ec58244de5e13797a352482192eaf9784",
    "csv": "d1db5a1b82516b1308b377a1d71c63963c22b17615fca76d4cc9aadaf026b9a5",
    "latex": "54908a9166d5b13bc152840aab44f2c400372985e0910b40e822a103c2890728",
    "html": "1a51691e8d36d36f604083e89743531742f2f2ca193ca69a3f9fe934493e4b59",
}


def _golden_results(root, write_run):
    """Constant scores, so that every interval is the mean itself and no digest depends on
    the resampling: a real split with rain types, a failed image, a model without the
    primary metric and one without a version; a synthetic split with a tie and an
    incomplete run."""
    types = ["drizzle", "drizzle", "storm", None]
    write_run(
        root,
        "alpha",
        "ds",
        "test",
        kind="real",
        metrics={"niqe": [3.0] * 4, "piqe": [20.0] * 4},
        rain_types=types,
    )
    write_run(
        root,
        "beta",
        "ds",
        "test",
        kind="real",
        metrics={"niqe": [4.0] * 4},
        rain_types=types,
        status=["ok", "ok", "ok", "failed"],
        s_per_mp=[2.0] * 4,
    )
    write_run(root, "gamma", "ds", "test", kind="real", metrics={"piqe": [10.0] * 4}, version="")
    write_run(
        root,
        "alpha",
        "ds",
        "syn",
        kind="synthetic",
        metrics={"psnr_y": [30.0] * 2, "ssim_y": [0.9] * 2},
    )
    write_run(
        root, "beta", "ds", "syn", kind="synthetic", metrics={"psnr_y": [30.0] * 2}, finished=False
    )
    return root


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_renders_the_same_bytes_as_published(tmp_path, write_run, fmt):
    root = _golden_results(tmp_path / "golden", write_run)
    text = render_leaderboard(root, fmt).replace(__version__, "VERSION")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert digest == GOLDEN[fmt], f"the {fmt} rendering changed:\n{text[:4000]}"


def test_the_published_leaderboard_is_what_its_results_render():
    """docs/leaderboard.md is benchmarks/leaderboard/publish.py's page: its intro, then
    the Markdown of the committed results with every heading one level down."""
    published = (REPOSITORY / "docs" / "leaderboard.md").read_text(encoding="utf-8")
    text = render_leaderboard(REPOSITORY / "benchmarks" / "leaderboard" / "results", "md")
    demoted = "\n".join("#" + line if line.startswith("#") else line for line in text.splitlines())
    assert published.startswith("# Leaderboard\n")
    assert published.endswith("\n\n" + demoted)


def test_out_replaces_a_leaderboard_of_any_format_and_no_other_file(results_dir, tmp_path):
    from click.testing import CliRunner

    from rainbench.cli import main

    def publish(fmt: str, out: Path):
        argv = ["leaderboard", "--results", str(results_dir), "--format", fmt, "--out", str(out)]
        return CliRunner().invoke(main, argv)

    page = tmp_path / "lb"
    for fmt in (*FORMATS, *FORMATS):  # each replaces the last, whatever its format
        assert publish(fmt, page).exit_code == 0
    results = sorted(results_dir.rglob("*.parquet"))[0]
    kept = results.read_bytes()
    notes = tmp_path / "notes.md"
    notes.write_text("# my notes\n")
    for out in (results, notes):
        refused = publish("md", out)
        assert refused.exit_code == 1, refused.output
        assert refused.output.startswith(f"error: {out} exists and is not a leaderboard")
        assert refused.output.count("\n") == 1
    assert results.read_bytes() == kept and notes.read_text() == "# my notes\n"


def test_two_leaderboards_written_at_once_into_one_out_both_finish(
    results_dir, tmp_path, held_at_rename
):
    # The first waits with its page written, just before it puts it in place, while the
    # second is written whole; a temporary of the same name was taken from under it.
    out = tmp_path / "lb.md"
    first, release = held_at_rename(
        "from rainbench.leaderboard.publish import write_leaderboard\n"
        f"write_leaderboard(Path({str(results_dir)!r}), 'md', Path({str(out)!r}))\n"
    )
    write_leaderboard(results_dir, "md", out)
    release()
    assert first.wait(timeout=60) == 0, first.stderr.read()
    assert out.read_text() == render_leaderboard(results_dir, "md")
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
