"""Metric validity: how far each no-reference metric agrees with psnr_y and ssim_y on the
paired splits, the pairs of methods it ranks against them, and how the leaderboard and
its formats show both."""

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats

from rainbench.cli import main
from rainbench.leaderboard.html import render_html
from rainbench.leaderboard.latex import render_latex
from rainbench.leaderboard.markdown import render_markdown
from rainbench.leaderboard.ranking import leaderboard_tables
from rainbench.leaderboard.results import load_results
from rainbench.leaderboard.validity import (
    _kendall_rows,
    _weighted_spearman,
    discordance_text,
    results_validity,
    split_validity,
)

IMAGES = 12
BASE = 22 + 0.5 * np.arange(IMAGES)  # each image's PSNR-Y before deraining


def _write_damage(root, write_run, kind="synthetic", models=("restormer", "identity", "smear")):
    """A paired split where PIQE rewards damage and NIQE tracks the ground truth: restormer
    gains 4 dB over the rainy input, smear loses 3 dB, yet smear has the best PIQE."""
    rng = np.random.default_rng(3)
    design = {
        "restormer": (4.0, 0.85, 40.0),
        "identity": (0.0, 0.75, 60.0),
        "smear": (-3.0, 0.65, 30.0),
    }
    for model in models:
        gain, ssim, piqe = design[model]
        psnr = BASE + gain
        write_run(
            root,
            model,
            "ds",
            "syn",
            kind=kind,
            metrics={
                "psnr_y": list(psnr),
                "ssim_y": list(ssim + 0.005 * np.arange(IMAGES)),
                "niqe": list(12 - 0.25 * psnr),  # lower is better, and falls as PSNR rises
                "piqe": list(piqe + rng.normal(0, 2, IMAGES)),
            },
        )
    return root


def _validity(root, split="syn", **options):
    table = next(t for t in leaderboard_tables(load_results(root)) if t.split == split)
    return split_validity(table, **options)


def _metric(validity, name):
    return next(m for m in validity.metrics if m.metric == name)


def _agreement(validity, metric, reference):
    return next(a for a in _metric(validity, metric).agreements if a.reference == reference)


def test_a_metric_that_tracks_the_ground_truth_agrees_fully(tmp_path, write_run):
    validity = _validity(_write_damage(tmp_path, write_run))
    niqe = _metric(validity, "niqe")
    assert niqe.models == ("restormer", "identity", "smear") and niqe.images == IMAGES
    for reference in ("psnr_y", "ssim_y"):
        agreement = _agreement(validity, "niqe", reference)
        assert agreement.across_methods.value == pytest.approx(1.0)
        assert agreement.across_methods.n == 3
        assert agreement.across_methods.low == pytest.approx(1.0)
    psnr = _agreement(validity, "niqe", "psnr_y").across_images
    assert psnr.value == pytest.approx(1.0) and psnr.low == pytest.approx(1.0) and psnr.n == IMAGES
    assert niqe.discordances == ()


def test_a_metric_that_rewards_damage_is_caught(tmp_path, write_run):
    validity = _validity(_write_damage(tmp_path, write_run))
    piqe = _metric(validity, "piqe")
    # Of the three pairs, PIQE orders only (restormer, identity) as PSNR-Y does.
    assert _agreement(validity, "piqe", "psnr_y").across_methods.value == pytest.approx(-1 / 3)
    assert [(d.above, d.below) for d in piqe.discordances] == [
        ("smear", "restormer"),
        ("smear", "identity"),
    ]
    smear = piqe.discordances[1]
    assert smear.advantages["psnr_y"].mean == pytest.approx(3.0)
    assert smear.advantages["ssim_y"].mean == pytest.approx(0.1)
    assert discordance_text(smear) == (
        "⚠ PIQE ranks smear above identity, which beats it by 3.0 dB PSNR-Y [3.0, 3.0] "
        "and 0.10 SSIM-Y [0.10, 0.10]"
    )
    assert validity.discordances == piqe.discordances


def test_correlations_match_scipy(tmp_path, write_run):
    rng = np.random.default_rng(11)
    models = ("a", "b", "c", "d", "e")
    values = {}
    for i, model in enumerate(models):
        psnr = 25 + i * 0.4 + rng.normal(0, 2, IMAGES)
        values[model] = {
            "psnr_y": psnr,
            "ssim_y": 0.8 + rng.normal(0, 0.05, IMAGES),
            "brisque": 40 - psnr + rng.normal(0, 3, IMAGES),
        }
        write_run(
            tmp_path,
            model,
            "ds",
            "syn",
            kind="synthetic",
            metrics={k: list(v) for k, v in values[model].items()},
        )
    validity = _validity(tmp_path)
    for reference in ("psnr_y", "ssim_y"):
        found = _agreement(validity, "brisque", reference)
        oriented = -np.array([values[m]["brisque"].mean() for m in models])
        means = np.array([values[m][reference].mean() for m in models])
        assert found.across_methods.value == pytest.approx(stats.kendalltau(oriented, means)[0])
        pooled = stats.spearmanr(
            -np.concatenate([values[m]["brisque"] for m in models]),
            np.concatenate([values[m][reference] for m in models]),
        )[0]
        assert found.across_images.value == pytest.approx(pooled)
        for correlation in (found.across_methods, found.across_images):
            assert -1 <= correlation.low <= correlation.high <= 1


def test_rank_correlations_with_ties_match_scipy():
    rng = np.random.default_rng(5)
    x = rng.integers(0, 4, (6, 9)).astype(float)
    y = rng.integers(0, 4, (6, 9)).astype(float)
    kendall = _kendall_rows(x, y)
    for row in range(6):
        assert kendall[row] == pytest.approx(stats.kendalltau(x[row], y[row])[0])
    assert math.isnan(_kendall_rows(np.ones((1, 3)), y[:1, :3])[0])
    # A resample as counts per image gives what scipy gives on the images repeated.
    counts = rng.integers(0, 3, (5, 9))
    found = _weighted_spearman(x[:2], y[:2], counts)
    for row, repeat in enumerate(counts):
        pooled = [np.repeat(values[:2], repeat, axis=1).ravel() for values in (x, y)]
        assert found[row] == pytest.approx(stats.spearmanr(*pooled)[0])
    constant = _weighted_spearman(np.ones((2, 9)), y[:2], np.ones((1, 9)))
    assert math.isnan(constant[0])


def test_the_bootstrap_is_deterministic_and_its_seed_recorded(tmp_path, write_run):
    root = _write_damage(tmp_path, write_run)
    first = _validity(root)
    assert _validity(root) == first
    assert (first.seed, first.resamples) == (0, 2000)
    other = _validity(root, seed=1, resamples=500)
    assert (other.seed, other.resamples) == (1, 500)
    mine, theirs = (_agreement(v, "piqe", "ssim_y").across_images for v in (first, other))
    assert mine.value == theirs.value and (mine.low, mine.high) != (theirs.low, theirs.high)
    assert json.loads(json.dumps(first.to_dict()))["seed"] == 0


def test_a_lead_within_the_noise_is_no_warning(tmp_path, write_run):
    rng = np.random.default_rng(0)
    for model, piqe in (("better", 60.0), ("worse", 30.0)):
        # "better" leads on average, but by less than the image-to-image noise.
        write_run(
            tmp_path,
            model,
            "ds",
            "syn",
            kind="synthetic",
            metrics={
                "psnr_y": list(25 + (0.1 if model == "better" else 0) + rng.normal(0, 2, 8)),
                "ssim_y": list(0.8 + rng.normal(0, 0.05, 8)),
                "piqe": [piqe] * 8,
            },
        )
    validity = _validity(tmp_path)
    assert validity.discordances == ()
    # With two methods τ is +1 or -1, and the caveat says so.
    assert abs(_agreement(validity, "piqe", "psnr_y").across_methods.value) == 1
    assert "With 2 methods τ can only be +1 or −1." in render_markdown(load_results(tmp_path))


def test_a_split_of_one_image_has_no_interval_and_no_warning(tmp_path, write_run):
    # Every resample of one image is that image: a lead of exactly its difference, which
    # would look certain ([3.0, 3.0]) and be flagged.
    for model, psnr, ssim, piqe in (("clean", 28.0, 0.85, 60.0), ("smear", 25.0, 0.7, 30.0)):
        metrics = {"psnr_y": [psnr], "ssim_y": [ssim], "piqe": [piqe]}
        write_run(tmp_path, model, "ds", "syn", kind="synthetic", metrics=metrics)
    validity = _validity(tmp_path)
    assert validity.discordances == ()
    [table] = [t for t in leaderboard_tables(load_results(tmp_path)) if t.split == "syn"]
    estimate = table.rows[0].estimates["psnr_y"]
    assert estimate.n == 1 and math.isnan(estimate.low) and math.isnan(estimate.high)


def test_a_single_method_has_no_tau_and_no_warnings(tmp_path, write_run):
    _write_damage(tmp_path, write_run, models=("identity",))
    validity = _validity(tmp_path)
    agreement = _agreement(validity, "niqe", "psnr_y")
    assert math.isnan(agreement.across_methods.value) and agreement.across_methods.n == 1
    assert agreement.across_images.value == pytest.approx(1.0)
    assert validity.discordances == ()
    assert (
        json.loads(json.dumps(validity.to_dict()))["metrics"][0]["agreements"][0]["across_methods"][
            "value"
        ]
        is None
    )
    markdown = render_markdown(load_results(tmp_path))
    assert "| *τ with PSNR-Y across methods* |" in markdown and "— (n=1)" in markdown


def test_missing_metrics_runs_and_images(tmp_path, write_run):
    _write_damage(tmp_path, write_run, models=("restormer", "identity"))
    # A third run without NIQE, one failed image, and a run that has not finished.
    write_run(
        tmp_path,
        "smear",
        "ds",
        "syn",
        kind="synthetic",
        metrics={"psnr_y": list(BASE - 3), "ssim_y": [0.6] * IMAGES, "piqe": [30.0] * IMAGES},
        status=["failed"] + ["ok"] * (IMAGES - 1),
    )
    write_run(
        tmp_path,
        "wip",
        "ds",
        "syn",
        kind="synthetic",
        metrics={"psnr_y": [40.0] * 3, "ssim_y": [0.99] * 3, "piqe": [1.0] * 3},
        finished=False,
    )
    validity = _validity(tmp_path)
    assert validity.left_out == ("wip",)
    assert _metric(validity, "niqe").models == ("restormer", "identity")
    assert _metric(validity, "niqe").images == IMAGES
    piqe = _metric(validity, "piqe")
    assert piqe.models == ("restormer", "identity", "smear") and piqe.images == IMAGES - 1
    assert "Left out of τ and ρ as incomplete: wip." in render_markdown(load_results(tmp_path))


def test_runs_the_table_calls_not_comparable_are_left_out(tmp_path, write_run):
    # The table does not rank a run under an older metric protocol, or on another version
    # of the split: its values are not comparable. Compared, they flagged NIQE for ranking
    # an old run above a new one that "beat" it only by the old PSNR-Y and SSIM-Y's lower
    # readings of the same quality.
    _write_damage(tmp_path, write_run, models=("restormer", "identity"))
    earlier = {"finished_at": "2024-12-31T10:05:00+00:00", "dataset": {"split_sha256": "01" * 32}}
    for model, change in (("old", {"metric_protocol_version": "0"}), ("moved", earlier)):
        path = write_run(
            tmp_path,
            model,
            "ds",
            "syn",
            kind="synthetic",
            metrics={
                "psnr_y": list(BASE + 2),
                "ssim_y": [0.8] * IMAGES,
                "niqe": [1.0] * IMAGES,  # far the best NIQE
                "piqe": [50.0] * IMAGES,
            },
        )
        sidecar = path.with_suffix(".json")
        provenance = json.loads(sidecar.read_text())
        provenance["dataset"].update(change.pop("dataset", {}))
        provenance.update(change)
        sidecar.write_text(json.dumps(provenance))
    validity = _validity(tmp_path)
    assert not validity.discordances
    assert _metric(validity, "niqe").models == ("restormer", "identity")
    assert validity.left_out == () and validity.stale == ("moved", "old")
    assert (
        "Left out of τ and ρ as not comparable with the other runs (an older metric protocol "
        "or another version of the split): moved, old."
    ) in render_markdown(load_results(tmp_path))
    # LaTeX says the caveats too, in symbols pdfLaTeX's text fonts have.
    assert (
        "Left out of $\\tau$ and $\\rho$ as not comparable with the other runs (an older "
        "metric protocol or another version of the split): moved, old.\\par"
    ) in render_latex(load_results(tmp_path))


def test_a_row_without_a_key_is_left_out_of_the_common_images(tmp_path, write_run):
    # A results file edited by hand: its null key is no image to match across runs.
    for model, gain in (("a", 0.0), ("b", 3.0)):
        psnr = list(BASE[:5] + gain)
        metrics = {"psnr_y": psnr, "ssim_y": list(np.array(psnr) / 40), "niqe": [-p for p in psnr]}
        keys = [None, "k1", "k2", "k3", "k4"]
        write_run(tmp_path, model, "ds", "syn", kind="synthetic", metrics=metrics, keys=keys)
    assert _metric(_validity(tmp_path), "niqe").images == 4
    shown = CliRunner().invoke(main, ["metrics", "validity", str(tmp_path)])
    assert shown.exit_code == 0 and "(4 images)" in shown.output


def test_only_registered_no_reference_metrics_against_what_references_there_are(
    tmp_path, write_run
):
    write_run(
        tmp_path,
        "a",
        "ds",
        "syn",
        kind="synthetic",
        metrics={"psnr_y": [30.0, 31.0], "mymetric": [1.0, 2.0], "psnr": [29.0, 30.0]},
        lower_is_better={"mymetric": True},
    )
    assert _validity(tmp_path) is None  # no registered no-reference metric
    write_run(
        tmp_path,
        "a",
        "ds",
        "syn2",
        kind="synthetic",
        metrics={"psnr_y": [30.0, 31.0], "niqe": [5.0, 4.0]},
    )
    only_psnr = _validity(tmp_path, "syn2")
    assert only_psnr.references == ("psnr_y",)
    assert [a.reference for a in _metric(only_psnr, "niqe").agreements] == ["psnr_y"]
    write_run(tmp_path, "a", "ds", "nr", kind="synthetic", metrics={"niqe": [5.0, 4.0]})
    assert _validity(tmp_path, "nr") is None  # nothing to check it against


@pytest.mark.parametrize("kind", ["imported", "real-paired"])
def test_every_paired_kind_is_checked(tmp_path, write_run, kind):
    validity = _validity(_write_damage(tmp_path, write_run, kind=kind))
    assert validity.kind == kind and len(_metric(validity, "piqe").discordances) == 2


def test_real_splits_are_not_checked_but_point_to_the_paired_ones(tmp_path, write_run):
    _write_damage(tmp_path, write_run)
    for model, piqe in (("identity", 50.0), ("smear", 20.0)):
        write_run(tmp_path, model, "ds", "test", kind="real", metrics={"piqe": [piqe] * 4})
    results = load_results(tmp_path)
    assert [(v.split, v.kind) for v in results_validity(results)] == [("syn", "synthetic")]
    assert _validity(tmp_path, "test") is None
    note = (
        "No ground truth here: how far PIQE agrees with the full-reference metrics is "
        "measured on ds's paired splits (syn), where they rank 2 pairs of methods against them."
    )
    assert note in render_markdown(results)
    assert note.replace("'", "&#x27;") in render_html(results)


def test_markdown_html_and_latex_show_the_rows_and_warnings(tmp_path, write_run):
    results = load_results(_write_damage(tmp_path, write_run))
    warning = (
        "⚠ PIQE ranks smear above identity, which beats it by 3.0 dB PSNR-Y \\[3.0, 3.0\\] "
        "and 0.10 SSIM-Y \\[0.10, 0.10\\]."
    )
    markdown = render_markdown(results)
    assert f"- {warning}" in markdown
    assert "| PIQE ↓ ⚠ (95% CI) |" in markdown and "| NIQE ↓ (95% CI) |" in markdown
    assert "| *ρ with SSIM-Y across images* |" in markdown
    assert "Can a no-reference metric be trusted here?" in markdown
    page = render_html(results)
    assert warning.replace("\\", "") in page
    assert page.count('<span class="flag"') == 1 and '<tfoot class="agreement">' in page
    assert page.count("<tr>", page.index("<tfoot")) == 4  # τ and ρ against each reference
    assert 'class="disagree"' in page and 'class="agree"' in page
    latex = render_latex(results)
    assert "\\textbf{Warning:} PIQE ranks smear above identity" in latex
    assert "\\multicolumn{2}{l}{$\\tau$ with PSNR-Y across methods}" in latex


def test_no_paired_no_reference_metric_leaves_the_leaderboard_as_it_was(tmp_path, write_run):
    write_run(tmp_path, "a", "ds", "syn", kind="synthetic", metrics={"psnr_y": [30.0]})
    write_run(tmp_path, "a", "ds", "test", kind="real", metrics={"niqe": [3.0]})
    results = load_results(tmp_path)
    assert results_validity(results) == []
    assert "trusted" not in render_markdown(results) and "<tfoot" not in render_html(results)


def test_a_method_infinite_on_every_image_is_said_not_to_leave_the_split_unchecked(
    tmp_path, write_run
):
    # An outputs folder that holds the ground truths: PSNR-Y is infinite on every image,
    # which drops every image for all methods.
    _write_damage(tmp_path, write_run, models=("restormer", "identity"))
    write_run(
        tmp_path,
        "truths",
        "ds",
        "syn",
        kind="synthetic",
        metrics={"psnr_y": [math.inf] * IMAGES, "ssim_y": [1.0] * IMAGES, "piqe": [9.0] * IMAGES},
    )
    results = load_results(tmp_path)
    [validity] = results_validity(results)
    assert [m.metric for m in validity.metrics] == ["niqe"]  # truths did not compute it
    why = (
        "PIQE is not measured: no image has a finite PIQE, PSNR-Y and SSIM-Y from every "
        "method (truths's PSNR-Y is infinite on 12 of 12 images)."
    )
    assert validity.unmeasured == (why,)
    assert json.loads(json.dumps(validity.to_dict()))["unmeasured"] == [why]
    assert why.replace("'", "&#x27;") in render_html(results)
    assert f"{why}\\par" in render_latex(results)
    markdown = render_markdown(results)
    assert why in markdown
    # Where nothing could be measured, the table has no rows of empty cells.
    truths = {"psnr_y": [math.inf] * 2, "ssim_y": [1.0] * 2, "piqe": [9.0] * 2}
    write_run(tmp_path, "truths", "ds", "syn2", kind="synthetic", metrics=truths)
    rainy = {**truths, "psnr_y": [30.0] * 2}
    write_run(tmp_path, "identity", "ds", "syn2", kind="synthetic", metrics=rainy)
    validity = _validity(tmp_path, "syn2")
    assert validity.metrics == () and len(validity.unmeasured) == 1
    shown = CliRunner().invoke(main, ["metrics", "validity", str(tmp_path)])
    assert shown.exit_code == 0 and shown.output.count("is not measured") == 2
    results = load_results(tmp_path)
    assert "τ with" not in render_markdown(results).split("## ds / syn2")[-1]
    assert render_html(results).count('<tfoot class="agreement">') == 1  # syn's alone
