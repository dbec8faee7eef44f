"""Intrinsic dimension: the estimators on manifolds of known dimension, NLCL's patch
sampler, the report on a rendered example, and reading pairs from a synthetic split."""

import hashlib
import io
import json
import math
import re
import shutil
import tarfile
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from rainbench import __version__
from rainbench.analysis.intrinsic_dim import (
    MIN_IMAGES,
    MIN_PATCHES,
    MOST_REFERENCES,
    AnalysisError,
    Report,
    Settings,
    Spread,
    analyze,
    from_synthetic_split,
    mle,
    nonlocal_groups,
    nonlocal_patches,
    patch_vectors,
    random_patches,
    random_positions,
    two_nn,
)
from rainbench.cli import main
from rainbench.demo.captures import sample_specs, write_capture
from rainbench.files import file_sha256
from rainbench.ingest import IngestOptions, ingest
from rainbench.shards import manifest
from rainbench.shards.dataset import DatasetError
from rainbench.shards.members import ShardError
from rainbench.synth.build import SynthOptions, synthesize
from rainbench.synth.render import render


def _subspace(n: int, d: int, seed: int) -> np.ndarray:
    """Gaussian points on a random d-dimensional linear subspace of R^64."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((64, d)))
    return rng.standard_normal((n, d)) @ basis.T


def _swiss_roll(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = 1.5 * np.pi * (1 + 2 * rng.uniform(size=n))
    height = 21 * rng.uniform(size=n)
    return np.stack([t * np.cos(t), height, t * np.sin(t)], axis=1)


@pytest.mark.parametrize("estimator", [two_nn, mle])
@pytest.mark.parametrize("d", [2, 5, 10])
def test_estimators_find_the_dimension_of_a_linear_subspace(estimator, d):
    assert estimator(_subspace(1500, d, seed=d)) == pytest.approx(d, rel=0.15)


@pytest.mark.parametrize("estimator", [two_nn, mle])
def test_estimators_find_the_swiss_roll_two_dimensional(estimator):
    assert estimator(_swiss_roll(1500, seed=1)) == pytest.approx(2, rel=0.15)


@pytest.mark.parametrize("estimator", [two_nn, mle])
@pytest.mark.parametrize("d", [3, 6])
def test_estimators_find_the_dimension_of_a_sphere_in_high_dimension(estimator, d):
    # Curved and without a boundary: the d-sphere in R^d+1, turned into R^64.
    points = _subspace(2000, d + 1, seed=d)
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    assert estimator(points) == pytest.approx(d, rel=0.1)


def test_the_mle_is_unbiased_with_few_neighbours():
    # Inverses averaged over points, each with k - 1: unbiased for 1/d at any k. The
    # per-point estimates averaged would give 2d at k = 3, and k - 2 there d/2.
    estimates = [mle(_subspace(2000, 5, seed=seed), k=3) for seed in range(3)]
    assert np.mean(estimates) == pytest.approx(5, rel=0.05)


@pytest.mark.parametrize("estimator", [two_nn, mle])
def test_duplicates_are_dropped_and_too_few_points_refused(estimator):
    points = _subspace(300, 3, seed=0)
    assert estimator(np.concatenate([points, points[:100]])) == estimator(points)
    with pytest.raises(ValueError, match="distinct points"):
        estimator(np.repeat(points[:2], 50, axis=0))
    with pytest.raises(ValueError, match="n×d"):
        estimator(points[0])


def _noise(height: int = 64, width: int = 80, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=(height, width, 3)).astype(np.float32)


def test_nonlocal_groups_start_at_the_reference_and_stay_in_the_window():
    image = _noise()
    corners = random_positions(image.shape, 16, 20, np.random.default_rng(1))
    groups = nonlocal_groups(image, corners, patch=16, window=40, per_reference=8)
    assert groups.shape == (20, 8, 2)
    assert np.array_equal(groups[:, 0], corners)
    offsets = groups - corners[:, None, :]
    assert offsets.min() >= -20 and offsets.max() <= 19
    for group in groups:
        assert len({tuple(corner) for corner in group}) == 8
        vectors = [image[r : r + 16, c : c + 16].ravel() for r, c in group]
        distances = [np.sum((v - vectors[0]) ** 2) for v in vectors]
        assert distances == sorted(distances)
    # On a flat image every candidate ties with the reference, which still comes first.
    flat = nonlocal_groups(np.zeros((64, 80, 3)), corners, per_reference=8)
    assert np.array_equal(flat[:, 0], corners)


def test_nonlocal_patches_are_the_groups_as_vectors():
    image = (_noise() * 255).round().astype(np.uint8)
    patches = nonlocal_patches(image, references=5, rng=np.random.default_rng(3))
    assert patches.shape == (5 * 8, 16 * 16 * 3)
    corners = random_positions(image.shape, 16, 5, np.random.default_rng(3))
    assert np.array_equal(patches[::8], patch_vectors(image, corners, 16))
    same = nonlocal_patches(image / np.float32(255), references=5, rng=np.random.default_rng(3))
    np.testing.assert_allclose(same, patches, atol=1e-6)


def test_patches_lose_their_mean_and_optionally_their_norm():
    image = _noise()
    brighter = random_patches(image + 0.2, count=30, rng=np.random.default_rng(0))
    patches = random_patches(image, count=30, rng=np.random.default_rng(0))
    assert patches.shape == (30, 768)
    np.testing.assert_allclose(patches.mean(axis=1), 0, atol=1e-6)
    np.testing.assert_allclose(brighter, patches, atol=1e-5)
    unit = random_patches(image, count=30, rng=np.random.default_rng(0), unit_norm=True)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1, rtol=1e-5)
    flat = patch_vectors(np.full((20, 20, 3), 0.5), np.array([[0, 0]]), 16, unit_norm=True)
    assert not flat.any()
    with pytest.raises(ValueError, match="smaller than"):
        random_patches(np.zeros((10, 40, 3)), patch=16, count=1)
    with pytest.raises(ValueError, match="H×W×3"):
        random_patches(np.zeros((40, 40)), count=1)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_a_flat_patch_is_zero_and_a_brightness_step_no_new_point(dtype):
    # A grey patch less its float32 mean was an ulp-sized speck at 136 of the 256 levels
    # (with unit_norm a unit vector), and an overcast sky's patches a level apart were
    # distinct near duplicates, not one point as a brightness offset should be.
    levels = np.arange(256, dtype=np.uint8)
    flat = np.repeat(np.repeat(levels[:, None, None], 16, axis=1), 3, axis=2)
    flat = np.broadcast_to(flat[:, :, None, :], (256, 16, 16, 3)).reshape(-1, 16, 3)
    image = flat if dtype == np.uint8 else flat / np.float32(255)
    corners = np.stack([np.arange(256) * 16, np.zeros(256, dtype=int)], axis=1)
    for unit_norm in (False, True):
        assert not patch_vectors(image, corners, 16, unit_norm).any()
    if dtype == np.uint8:
        texture = np.random.default_rng(0).integers(0, 200, (16, 16, 3), dtype=np.uint8)
        steps = np.concatenate([texture + step for step in range(0, 56, 5)])
        corners = np.stack([np.arange(0, len(steps), 16), np.zeros(len(steps) // 16, int)], 1)
        assert len(np.unique(patch_vectors(steps, corners, 16), axis=0)) == 1


def test_a_uniform_haze_is_a_rain_layer_of_no_dimension(tmp_path):
    # Rainy = clean + 8 everywhere: the rain layer is one flat picture. Subtracted as
    # floats, its patches differed by ulps over each background, and the estimators
    # measured the rounding: TwoNN about 30 against 5 for the image.
    from rainbench.synth.imports import import_paired

    for folder in ("input", "target"):
        (tmp_path / "set" / folder).mkdir(parents=True)
    for name in ("astronaut", "coffee"):
        clean = np.minimum(_photo(name, 96), 247)
        Image.fromarray(clean).save(tmp_path / "set" / "target" / f"{name}.png")
        Image.fromarray(clean + 8).save(tmp_path / "set" / "input" / f"{name}.png")
    import_paired(tmp_path / "set", "input-target", "haze", tmp_path / "ds", 10**9, workers=1)
    pairs = list(from_synthetic_split(tmp_path / "ds", "haze"))
    assert all(np.all(rain == np.float32(8 / 255)) for _, rain in pairs)
    report = analyze(pairs, Settings(references=16))
    assert report.counts["rain_distinct"] == 2  # one flat patch an image
    assert math.isnan(report.rain_dim_two_nn.median) and math.isnan(report.rain_dim_mle.median)
    assert report.image_dim_two_nn.median > 0


def _photo(name: str, height: int = 128) -> np.ndarray:
    from skimage import data, transform

    picture = getattr(data, name)()
    width = round(height * picture.shape[1] / picture.shape[0])
    resized = transform.resize(picture, (height, width), anti_aliasing=True)
    return (resized * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def rendered_report() -> Report:
    """Photographs and the streak layers rendered on them, as analyze takes them."""
    pairs = []
    for seed, name in enumerate(("astronaut", "coffee", "chelsea")):
        clean = _photo(name)
        streaks = render(clean, "streak", seed).streaks
        rain = np.repeat(streaks[:, :, None], 3, axis=2)
        pairs.append((clean / np.float32(255), rain / np.float32(255)))
    return analyze(pairs)


def test_report_on_rendered_streaks(rendered_report):
    # Measured (128 px high, seeds 0–2; also at 192, 256 and 384 px and other seeds):
    # with NLCL's non-local groups TwoNN puts image patches above streak patches on
    # every image (about 4.5–11 against 3–4); the MLE over k=20 neighbours, which
    # reach beyond one group of 8, does not agree, so only TwoNN's order is pinned.
    report = rendered_report
    assert report.image_higher("two_nn") == (3, 3)
    for spread in (
        report.image_dim_two_nn,
        report.rain_dim_two_nn,
        report.image_dim_mle,
        report.rain_dim_mle,
    ):
        assert all(1 < value < 30 for value in spread.per_image)
    assert report.counts["images"] == 3
    assert report.counts["image_patches"] == report.counts["rain_patches"] == 3 * 64 * 8
    assert report.to_dict()["settings"] == {
        "patch": 16,
        "window": 40,
        "per_reference": 8,
        "references": 64,
        "k": 20,
        "unit_norm": False,
        "seed": 0,
    }
    assert json.loads(json.dumps(report.to_dict()))["image_higher"]["two_nn"] == {
        "images": 3,
        "of": 3,
    }
    markdown = report.to_markdown()
    assert "| TwoNN |" in markdown and "3 of 3 images" in markdown
    # Three images cannot carry a conclusion, however they agree.
    assert report.verdict() in markdown and report.verdict().startswith("No conclusion")


def test_spread_and_verdict_without_estimates():
    spread = Spread((4.0, math.nan, 2.0, 6.0, 8.0))
    assert (spread.q25, spread.median, spread.q75) == (3.5, 5.0, 6.5)
    assert spread.to_dict()["images"] == 4 and spread.to_dict()["per_image"][1] is None
    empty = Spread((math.nan,) * 5)
    assert math.isnan(empty.median) and empty.to_dict()["median"] is None
    report = Report(spread, empty, spread, empty, {}, Settings())
    assert report.image_higher("mle") == (0, 0)
    assert report.verdict().startswith("No conclusion")
    with pytest.raises(ValueError, match="unknown estimator"):
        report.image_higher("pca")


def test_a_uniform_rain_layer_gives_no_estimate_rather_than_an_error():
    background = _photo("astronaut", 64) / np.float32(255)
    report = analyze([(background, np.zeros_like(background))], Settings(references=16))
    assert math.isnan(report.rain_dim_two_nn.median) and math.isnan(report.rain_dim_mle.median)
    assert report.counts["rain_distinct"] == 1
    assert report.image_dim_two_nn.median > 0
    assert "—" in report.to_markdown()


@pytest.mark.parametrize("side", [(12, 12), (16, 22)])
def test_pictures_too_small_for_the_sampler_give_no_estimate_rather_than_an_error(side):
    # Smaller than a patch, or too few patches for a group of 8: a traceback before.
    tiny = np.random.default_rng(0).random((*side, 3), dtype=np.float32)
    background = _photo("astronaut", 64) / np.float32(255)
    report = analyze([(tiny, tiny), (background, background)], Settings(references=16))
    assert math.isnan(report.image_dim_two_nn.per_image[0])
    assert math.isnan(report.rain_dim_mle.per_image[0])
    assert report.image_dim_two_nn.per_image[1] > 0 and report.counts["images"] == 2


@pytest.fixture(scope="module")
def synthetic_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("intrinsic")
    for spec in sample_specs(3, seed=8, size=(160, 120)):
        write_capture(root / "clean", spec)
    split = {"train": 0.0, "val": 0.0, "test": 1.0}
    ingest([root / "clean"], root / "ds", IngestOptions(workers=1, layer="clean", split=split))
    synthesize(root / "ds", SynthOptions(recipes=("streak",), workers=1))
    return root / "ds"


def test_from_synthetic_split_yields_ground_truth_and_rain_layer(synthetic_dataset):
    ds = synthetic_dataset
    rows = pd.read_parquet(ds / "manifests/synthetic.parquet").sort_values(["shard", "key"])
    pairs = list(from_synthetic_split(ds, "syn-streak", limit=None))
    assert len(pairs) == len(rows) == 3
    for (gt, rain), row in zip(pairs, rows.itertuples(), strict=True):
        assert gt.dtype == rain.dtype == np.float32
        assert gt.shape == rain.shape == (row.height, row.width, 3)
        with tarfile.open(ds / row.shard) as tar:
            stored = {
                name: np.asarray(
                    Image.open(io.BytesIO(tar.extractfile(f"{row.key}.{name}").read()))
                )
                for name in ("gt.png", "rain.png")
            }
        assert np.array_equal(gt, stored["gt.png"] / np.float32(255))
        added = stored["rain.png"].astype(np.int16) - stored["gt.png"]
        expected = np.clip(added, 0, 255) / np.float32(255)
        assert np.array_equal(rain, expected) and rain.max() > 0
    assert len(list(from_synthetic_split(ds, "syn-streak", limit=2))) == 2
    report = analyze(from_synthetic_split(ds, "syn-streak", limit=None))
    assert report.counts["images"] == 3


def test_the_cli_report_names_what_it_measured(synthetic_dataset, tmp_path):
    out = tmp_path / "id.json"
    args = ["analyze", "intrinsic-dim", str(synthetic_dataset), "--split", "syn-streak"]
    result = CliRunner().invoke(main, [*args, "--limit", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert (report["split"], report["limit"], report["counts"]["images"]) == ("syn-streak", 2, 2)
    assert report["tool"] == {"name": "rainbench", "version": __version__}
    # What it read the pairs from, and what computed the dimensions.
    chosen_by = synthetic_dataset / "manifests" / "synthetic.parquet"
    assert report["manifest_sha256"] == hashlib.sha256(chosen_by.read_bytes()).hexdigest()
    assert report["versions"] == {name: version(name) for name in ("numpy", "scipy", "pillow")}


def test_the_manifest_hash_is_that_of_the_file_the_pairs_were_chosen_from(
    synthetic_dataset, tmp_path, monkeypatch
):
    # A synth replacing synthetic.parquet as it is read: the pairs taken and the
    # manifest_sha256 the report records come from one and the same file.
    ds = shutil.copytree(synthetic_dataset, tmp_path / "ds")
    path = ds / "manifests" / "synthetic.parquet"
    tables = [manifest.read_manifest(path, manifest.SYNTHETIC)]
    tables.append(tables[0].slice(1))
    read, reads = manifest.read_manifest, []

    def read_then_replace(where, schema, *args, **kwargs):
        table = read(where, schema, *args, **kwargs)
        if Path(where) == path and len(reads) < replacements:
            reads.append(where)
            tables.reverse()
            manifest.write_manifest(path, tables[0])
        return table

    monkeypatch.setattr(manifest, "read_manifest", read_then_replace)
    replacements = 1
    pairs = from_synthetic_split(ds, "syn-streak")
    assert len(list(pairs)) == 2 and pairs.manifest_sha256 == file_sha256(path)
    replacements = 100  # replaced at every read
    with pytest.raises(DatasetError, match=r"replaced 5 times while analyze intrinsic-dim read"):
        from_synthetic_split(ds, "syn-streak")


def test_a_pair_picture_not_of_its_rows_size_stops_the_estimate_in_one_line(
    synthetic_dataset, tmp_path
):
    # The rain layer is rainy − ground truth: pictures of two sizes were a numpy traceback.
    # A row that says the other size (the member's bytes are still the row's).
    ds = shutil.copytree(synthetic_dataset, tmp_path / "ds")
    path = ds / "manifests" / "synthetic.parquet"
    table = manifest.read_manifest(path, manifest.SYNTHETIC)
    row = table.to_pandas().iloc[0]
    for name, other in (("width", row.height), ("height", row.width)):
        column = table[name].to_pylist()
        column[0] = other
        table = table.set_column(table.schema.get_field_index(name), name, [column])
    manifest.write_manifest(path, table)
    said = (
        f"{row.key}.gt.png: {row.width}×{row.height}, not the manifest's {row.height}×{row.width}"
    )
    with pytest.raises(ShardError, match=re.escape(said)):
        list(from_synthetic_split(ds, "syn-streak"))
    result = CliRunner().invoke(
        main, ["analyze", "intrinsic-dim", str(ds), "--split", "syn-streak"]
    )
    assert result.exit_code == 1 and result.stderr.strip().splitlines() == [
        f"error: {row.shard}:{said} (run rainbench verify)"
    ]


def test_a_pair_picture_whose_bytes_are_not_the_manifests_stops_the_estimate_in_one_line(
    synthetic_dataset, tmp_path
):
    # A ground truth of the right size that decodes, but is not the one made: only its
    # digest tells, where its pixels were measured as the pair's.
    ds = shutil.copytree(synthetic_dataset, tmp_path / "ds")
    row = pd.read_parquet(ds / "manifests/synthetic.parquet").sort_values(["shard", "key"]).iloc[0]
    other = io.BytesIO()
    Image.new("RGB", (row.width, row.height), (90, 90, 90)).save(other, "PNG")
    with tarfile.open(ds / row.shard, "a") as tar:  # the later member wins
        info = tarfile.TarInfo(f"{row.key}.gt.png")
        info.size = len(other.getvalue())
        tar.addfile(info, io.BytesIO(other.getvalue()))
    said = f"{row.shard}:{row.key}.gt.png: its bytes are not the manifest's (run rainbench verify)"
    with pytest.raises(ShardError, match=re.escape(said)):
        list(from_synthetic_split(ds, "syn-streak"))
    result = CliRunner().invoke(
        main, ["analyze", "intrinsic-dim", str(ds), "--split", "syn-streak"]
    )
    assert result.exit_code == 1 and result.stderr.strip().splitlines() == [f"error: {said}"]


def test_unknown_split_or_dataset_is_refused_at_once(synthetic_dataset, tmp_path):
    with pytest.raises(DatasetError, match=r"no pairs in split 'syn-hail'.*syn-streak"):
        from_synthetic_split(synthetic_dataset, "syn-hail", limit=None)
    with pytest.raises(DatasetError, match="not a rainbench dataset"):
        from_synthetic_split(tmp_path, "syn-streak", limit=None)


def _report(image: list[float], rain: list[float]) -> Report:
    image_spread, rain_spread = Spread(tuple(image)), Spread(tuple(rain))
    return Report(image_spread, rain_spread, image_spread, rain_spread, {}, Settings())


def test_few_images_give_no_conclusion_whatever_the_medians():
    # Medians 8.5 against 5.5, but 1 of 2 images: no claim either way.
    report = _report([7.0, 10.0], [8.0, 3.0])
    assert report.verdict() == (
        "No conclusion: image patches came out higher than rain patches on 1 of 2 images "
        f"with TwoNN and 1 of 2 images with MLE, too few images for a sign test to tell (it needs "
        f"{MIN_IMAGES} with both layers estimated)."
    )
    agreeing = _report([9.0] * (MIN_IMAGES - 1), [3.0] * (MIN_IMAGES - 1))
    assert agreeing.verdict().startswith("No conclusion")


def test_one_image_is_said_in_the_singular():
    counts = {"images": 1, "image_patches": 512, "rain_patches": 512}
    counts |= {"image_distinct": 512, "rain_distinct": 512}
    spread = Spread((7.0,))
    report = Report(spread, Spread((3.0,)), spread, Spread((3.0,)), counts, Settings())
    assert "on 1 of 1 image with TwoNN and 1 of 1 image with MLE" in report.verdict()
    markdown = report.to_markdown()
    assert "| 1 of 1 image |" in markdown and "images [inter-quartile range]. 1 image;" in markdown


def test_the_verdict_follows_the_images_not_the_medians():
    higher = _report([9.0] * 7, [3.0] * 7)
    assert higher.verdict().startswith(
        "Image patches came out higher than rain patches with both estimators: higher on "
        "7 of 7 images with TwoNN (sign test p = 0.016)"
    )
    # Medians far apart, carried by a few images: 4 of 8 higher is no difference.
    mixed = _report([20.0, 20.0, 20.0, 20.0, 1.0, 1.0, 1.0, 1.0], [2.0] * 8)
    assert mixed.verdict().startswith(
        "Image patches came out neither consistently higher nor lower than rain patches "
        "with both estimators: higher on 4 of 8 images"
    )
    image, rain = Spread((9.0,) * 7), Spread((3.0,) * 7)
    disagree = Report(image, rain, rain, image, {}, Settings())
    assert disagree.verdict().startswith(
        "The estimators disagree: image patches came out higher than rain patches with "
        "TwoNN (higher on 7 of 7 images, sign test p = 0.016) but lower than rain patches "
        "with MLE (higher on 0 of 7"
    )


def test_too_few_patches_are_refused_or_give_no_estimate():
    background = _photo("astronaut", 64) / np.float32(255)
    with pytest.raises(ValueError, match=f"estimators need {MIN_PATCHES} patches"):
        analyze([(background, background)], Settings(references=1))
    assert Settings().fewest_references * Settings().per_reference >= MIN_PATCHES
    # A layer with fewer distinct patches than that has no estimate: a few streaks on black.
    rain = np.zeros_like(background)
    rain[10:12, 30:33] = 1
    report = analyze([(background, rain)], Settings(references=16))
    assert report.counts["rain_distinct"] < MIN_PATCHES
    assert math.isnan(report.rain_dim_two_nn.median) and report.image_dim_two_nn.median > 0


def test_a_negative_seed_is_refused_in_one_line(synthetic_dataset):
    # numpy's generator takes none: a ValueError traceback once the first pair was read.
    with pytest.raises(AnalysisError, match="seed must be 0 or more, not -1"):
        Settings(seed=-1)
    args = ["analyze", "intrinsic-dim", str(synthetic_dataset), "--split", "syn-streak"]
    refused = CliRunner().invoke(main, [*args, "--seed", "-1"])
    assert refused.exit_code == 1 and refused.stderr.strip().splitlines() == [
        "error: the seed must be 0 or more, not -1 (where the references fall)"
    ]
    assert analyze(from_synthetic_split(synthetic_dataset, "syn-streak", 1), Settings(seed=2**70))


@pytest.mark.parametrize("k", [1, MIN_PATCHES])
def test_a_k_the_mle_cannot_use_is_refused_rather_than_every_estimate_none(k):
    # k = 1 made mle() refuse and k + 1 > MIN_PATCHES need more distinct patches than an
    # estimated layer may have: every MLE estimate came out "—", the error swallowed.
    with pytest.raises(AnalysisError, match=f"k must be from 2 to {MIN_PATCHES - 1}, not {k}"):
        Settings(k=k)
    background = _photo("astronaut", 64) / np.float32(255)
    report = analyze([(background, background)], Settings(references=16, k=MIN_PATCHES - 1))
    assert report.image_dim_mle.median > 0


def test_the_cli_refuses_too_few_references_and_makes_the_out_folder(synthetic_dataset, tmp_path):
    args = ["analyze", "intrinsic-dim", str(synthetic_dataset), "--split", "syn-streak"]
    refused = CliRunner().invoke(main, [*args, "--limit", "1", "--references", "1"])
    assert refused.exit_code == 2 and "--references" in refused.output
    # Too many: numpy's tracebacks (MemoryError, "maximum allowed dimension") before.
    for many in (10**20, MOST_REFERENCES + 1):
        refused = CliRunner().invoke(main, [*args, "--limit", "1", "--references", str(many)])
        assert refused.exit_code == 2 and "--references" in refused.output
    background = _photo("astronaut", 40) / np.float32(255)
    with pytest.raises(ValueError, match=f"too many: at most {MOST_REFERENCES}"):
        analyze([(background, background)], Settings(references=MOST_REFERENCES + 1))
    out = tmp_path / "new" / "folder" / "id.json"
    result = CliRunner().invoke(main, [*args, "--limit", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["verdict"].startswith("No conclusion")
    assert "No conclusion" in result.output
