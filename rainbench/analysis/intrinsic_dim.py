"""Intrinsic dimension of image and rain patches, to check the NLCL journal's claim that
non-local image patches have a higher intrinsic dimension than rain patches: two
estimators (TwoNN, Levina–Bickel MLE), NLCL's non-local patch sampler, and a report.
"""

import math
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from itertools import groupby
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.spatial import cKDTree
from tqdm import tqdm

from rainbench.capture.formats import FORMATS
from rainbench.errors import RainbenchError
from rainbench.shards import manifest
from rainbench.shards.dataset import Dataset, DatasetError, open_dataset
from rainbench.shards.layout import GROUND_TRUTH, RAIN, member
from rainbench.shards.members import ShardError, open_shard, read_upright
from rainbench.wording import counted

# TwoNN fits the law of μ = r2/r1 on its lower 90 % only: the largest ratios come from
# the sparse tail of the sample and bend the line (Facco et al. 2017).
TWO_NN_DISCARD = 0.1
# Distinct patches an image's layer needs for an estimate: the estimators' relative
# standard error is about 1/√n, 10 % at 100 (with 8 patches TwoNN gave 53 on a photo
# whose estimate from 512 is 5–8); a layer with fewer has no estimate (nan).
MIN_PATCHES = 100
# References an image may have: 32768 patches of a layer, about 200 MB as float64; the
# neighbour search grows as n² (1024 references took 2 CPU minutes an image, so this
# about half an hour). More patches of one image hardly narrow the spread, which is
# over images, and many more would not fit in memory at all.
MOST_REFERENCES = 4096
# Images with both layers estimated that a conclusion needs: a two-sided sign test on
# fewer cannot reach p < 0.05 even when every image agrees (6 of 6: p = 0.031).
MIN_IMAGES = 6
SIGNIFICANCE = 0.05
ESTIMATORS = {"two_nn": "TwoNN", "mle": "MLE"}
# What decodes the pairs and estimates the dimensions: a report names their versions.
LIBRARIES = ("numpy", "scipy", "pillow")


def two_nn(points: np.ndarray) -> float:
    """The TwoNN estimate (Facco et al. 2017) of the intrinsic dimension of `points` (n×d).

    μ = r2/r1 of each point's two nearest neighbours is Pareto with exponent d on a
    locally uniform manifold, so −log(1 − F(μ)) = d · log μ: d is the slope of the line
    through the origin fitted to the empirical F, the largest 10 % of μ left out.
    Duplicate points are removed first (their r1 is 0).
    """
    points = _distinct(points, 3)
    distances, _ = cKDTree(points).query(points, k=3)
    mu = np.sort(distances[:, 2] / distances[:, 1])
    n = len(mu)
    keep = max(1, math.floor(n * (1 - TWO_NN_DISCARD)))
    x = np.log(mu[:keep])
    y = -np.log1p(-np.arange(1, keep + 1) / n)
    if not x @ x > 0:
        raise ValueError("every point's two nearest neighbours are equally far: no estimate")
    return float(x @ y / (x @ x))


def mle(points: np.ndarray, k: int = 20) -> float:
    """The Levina–Bickel maximum-likelihood estimate from `k` neighbours, with MacKay and
    Ghahramani's correction: the per-point inverse estimates are averaged, then inverted
    (averaging the estimates themselves is biased upwards). Duplicates are removed first.
    """
    if k < 2:
        raise ValueError(f"k must be at least 2, not {k}")
    points = _distinct(points, k + 1)
    distances, _ = cKDTree(points).query(points, k=k + 1)
    distances = distances[:, 1:]  # the first neighbour is the point itself
    inverse = np.log(distances[:, -1:] / distances[:, :-1]).sum(axis=1) / (k - 1)
    if not inverse.mean() > 0:
        raise ValueError(f"every point's {k} nearest neighbours are equally far: no estimate")
    return float(1 / inverse.mean())


def _distinct(points: np.ndarray, needed: int) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2:
        raise ValueError(f"points must be an n×d array, not of shape {points.shape}")
    points = np.unique(points, axis=0)
    if len(points) < needed:
        raise ValueError(f"need at least {needed} distinct points, got {len(points)}")
    return points


def random_positions(
    shape: tuple[int, ...], patch: int, count: int, rng: np.random.Generator
) -> np.ndarray:
    """`count` top-left corners (row, column) of patch×patch patches inside an image of
    `shape`, uniformly at random."""
    height, width = shape[:2]
    if height < patch or width < patch:
        raise ValueError(f"a {width}×{height} image is smaller than a {patch}×{patch} patch")
    rows = rng.integers(0, height - patch + 1, count)
    columns = rng.integers(0, width - patch + 1, count)
    return np.stack([rows, columns], axis=1)


def nonlocal_groups(
    image: np.ndarray,
    references: np.ndarray,
    patch: int = 16,
    window: int = 40,
    per_reference: int = 8,
) -> np.ndarray:
    """NLCL's non-local self-similar groups: for each reference corner (row, column), the
    `per_reference` patches within the window×window neighbourhood around it that are
    closest to it in L2, the reference itself first. Returns corners, m×per_reference×2.
    """
    image = _as_float(image)
    windows = sliding_window_view(image, (patch, patch), axis=(0, 1))
    last_row, last_column = windows.shape[0] - 1, windows.shape[1] - 1
    half = window // 2
    groups = np.empty((len(references), per_reference, 2), dtype=np.int64)
    for i, (row, column) in enumerate(np.asarray(references)):
        rows, columns = np.mgrid[
            max(0, row - half) : min(last_row, row - half + window - 1) + 1,
            max(0, column - half) : min(last_column, column - half + window - 1) + 1,
        ].reshape(2, -1)
        if len(rows) < per_reference:
            raise ValueError(
                f"only {len(rows)} patches in the window around ({row}, {column}), "
                f"fewer than the {per_reference} asked for"
            )
        candidates = windows[rows, columns].reshape(len(rows), -1)
        distances = np.square(candidates - windows[row, column].reshape(-1)).sum(axis=1)
        # The reference heads its group even where flat patches tie with it at 0.
        distances[(rows == row) & (columns == column)] = -1
        order = np.argsort(distances, kind="stable")[:per_reference]
        groups[i] = np.stack([rows[order], columns[order]], axis=1)
    return groups


def nonlocal_patches(
    image: np.ndarray,
    patch: int = 16,
    window: int = 40,
    per_reference: int = 8,
    references: int = 64,
    rng: np.random.Generator | None = None,
    unit_norm: bool = False,
) -> np.ndarray:
    """The non-local groups around `references` reference patches placed by
    `random_positions`, pooled: (references·per_reference)×(patch·patch·3) vectors,
    group by group, each group's reference first. See `patch_vectors` for the
    normalisation."""
    rng = rng if rng is not None else np.random.default_rng()
    corners = random_positions(image.shape, patch, references, rng)
    groups = nonlocal_groups(image, corners, patch, window, per_reference)
    return patch_vectors(image, groups.reshape(-1, 2), patch, unit_norm)


def random_patches(
    image: np.ndarray,
    patch: int = 16,
    count: int = 512,
    rng: np.random.Generator | None = None,
    unit_norm: bool = False,
) -> np.ndarray:
    """`count` patches at uniformly random places, as count×(patch·patch·3) vectors."""
    rng = rng if rng is not None else np.random.default_rng()
    return patch_vectors(image, random_positions(image.shape, patch, count, rng), patch, unit_norm)


def patch_vectors(
    image: np.ndarray, corners: np.ndarray, patch: int, unit_norm: bool = False
) -> np.ndarray:
    """The patches at `corners` (n×2, row and column) as n×(patch·patch·3) vectors, each
    less its own mean so that a brightness offset is not a dimension. With `unit_norm`
    each is also divided by its norm (flat patches stay 0), so contrast is not one either:
    the estimate then measures the patches' shapes only."""
    pixels = _checked(image)
    windows = sliding_window_view(pixels, (patch, patch), axis=(0, 1))
    values = windows[corners[:, 0], corners[:, 1]].reshape(len(corners), -1).astype(np.float64)
    # n·v − Σv over a patch's n values, in float64, is exact on 8-bit pixels and on flat
    # float32 ones: a flat patch is 0 and 8-bit patches a brightness step apart are one
    # point, not near duplicates an ulp apart that the estimators would read as dimensions.
    n = values.shape[1]
    scale = 255 if pixels.dtype == np.uint8 else 1
    vectors = (n * values - values.sum(axis=1, keepdims=True)) / (n * scale)
    if unit_norm:
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.where(norms > 0, norms, 1)
    return vectors


def _checked(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an H×W×3 image, not shape {image.shape}")
    return image


def _as_float(image: np.ndarray) -> np.ndarray:
    image = _checked(image)
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255
    return image.astype(np.float32, copy=False)


class AnalysisError(RainbenchError):
    """Settings no estimate can be made with; the message says which."""


@dataclass(frozen=True)
class Settings:
    """How patches are sampled and the dimension estimated; NLCL's sampler by default."""

    patch: int = 16
    window: int = 40
    per_reference: int = 8
    references: int = 64  # per image, so 512 patches of each layer per image
    k: int = 20  # neighbours of the MLE estimator
    unit_norm: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.seed < 0:  # numpy's generator takes none
            raise AnalysisError(
                f"the seed must be 0 or more, not {self.seed} (where the references fall)"
            )
        # A layer with an estimate has MIN_PATCHES distinct patches, k + 1 of which the MLE
        # needs; a k outside would make every MLE estimate "none", the error swallowed.
        if not 2 <= self.k < MIN_PATCHES:
            raise AnalysisError(
                f"k must be from 2 to {MIN_PATCHES - 1}, not {self.k} (the MLE's neighbours)"
            )

    @property
    def fewest_references(self) -> int:
        """The fewest references that sample MIN_PATCHES patches of a layer."""
        return math.ceil(MIN_PATCHES / self.per_reference)


@dataclass(frozen=True)
class Spread:
    """One estimate per image (nan where an image had too few distinct patches),
    summarised by the median and the inter-quartile range over images."""

    per_image: tuple[float, ...]

    def _percentile(self, q: float) -> float:
        values = [v for v in self.per_image if not math.isnan(v)]
        return float(np.percentile(values, q)) if values else math.nan

    @property
    def median(self) -> float:
        return self._percentile(50)

    @property
    def q25(self) -> float:
        return self._percentile(25)

    @property
    def q75(self) -> float:
        return self._percentile(75)

    def to_dict(self) -> dict:
        return {
            "median": _number(self.median),
            "q25": _number(self.q25),
            "q75": _number(self.q75),
            "images": sum(not math.isnan(v) for v in self.per_image),
            "per_image": [_number(v) for v in self.per_image],
        }


def _number(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 3)


@dataclass(frozen=True)
class Report:
    """Intrinsic dimensions of background (image) and rain patches, per estimator."""

    image_dim_two_nn: Spread
    rain_dim_two_nn: Spread
    image_dim_mle: Spread
    rain_dim_mle: Spread
    counts: dict[str, int]  # images; image_patches, rain_patches (sampled, distinct)
    settings: Settings

    def image_higher(self, estimator: str) -> tuple[int, int]:
        """On how many images the estimator put image patches above rain patches, of
        how many it could estimate both on: a paired comparison image by image."""
        higher, _, both = self._signs(estimator)
        return higher, both

    def _signs(self, estimator: str) -> tuple[int, int, int]:
        """Images where image patches came out higher, lower, and images with both
        layers estimated."""
        image, rain = self._pair(estimator)
        both = [
            (i, r)
            for i, r in zip(image.per_image, rain.per_image, strict=True)
            if not (math.isnan(i) or math.isnan(r))
        ]
        return sum(i > r for i, r in both), sum(i < r for i, r in both), len(both)

    def _pair(self, estimator: str) -> tuple[Spread, Spread]:
        if estimator not in ESTIMATORS:
            raise ValueError(f"unknown estimator {estimator!r}; known: {', '.join(ESTIMATORS)}")
        return getattr(self, f"image_dim_{estimator}"), getattr(self, f"rain_dim_{estimator}")

    def verdict(self) -> str:
        """One sentence: did image patches come out higher than rain patches? Judged
        image by image (the layers of an image are paired) with a two-sided sign test,
        not by the medians, which a few images can put either way."""
        signs = {name: self._signs(name) for name in ESTIMATORS}
        counts = [f"{higher} of {counted(both, 'image')}" for higher, _, both in signs.values()]
        if any(both < MIN_IMAGES for _, _, both in signs.values()):
            return (
                f"No conclusion: image patches came out higher than rain patches on "
                f"{counts[0]} with TwoNN and {counts[1]} with MLE, too few images for a "
                f"sign test to tell (it needs {MIN_IMAGES} with both layers estimated)."
            )
        found = {
            name: (_direction(higher, lower), _sign_test(higher, lower))
            for name, (higher, lower, _) in signs.items()
        }
        (two_nn, two_nn_p), (mle, mle_p) = found.values()
        if two_nn == mle:
            return (
                f"Image patches came out {two_nn} with both estimators: higher on "
                f"{counts[0]} with TwoNN (sign test p = {two_nn_p:.2g}) and {counts[1]} "
                f"with MLE (p = {mle_p:.2g})."
            )
        return (
            f"The estimators disagree: image patches came out {two_nn} with TwoNN (higher on "
            f"{counts[0]}, sign test p = {two_nn_p:.2g}) but {mle} with MLE (higher on "
            f"{counts[1]}, p = {mle_p:.2g})."
        )

    def to_dict(self) -> dict:
        return {
            "image_dim_two_nn": self.image_dim_two_nn.to_dict(),
            "rain_dim_two_nn": self.rain_dim_two_nn.to_dict(),
            "image_dim_mle": self.image_dim_mle.to_dict(),
            "rain_dim_mle": self.rain_dim_mle.to_dict(),
            "image_higher": {
                name: dict(zip(("images", "of"), self.image_higher(name), strict=True))
                for name in ("two_nn", "mle")
            },
            "counts": self.counts,
            "settings": asdict(self.settings),
            "verdict": self.verdict(),
        }

    def to_markdown(self) -> str:
        s = self.settings
        lines = [
            "| estimator | image patches | rain patches | image > rain |",
            "|---|---|---|---|",
        ]
        for name, title in (("two_nn", "TwoNN"), ("mle", f"MLE (k={s.k})")):
            image, rain = self._pair(name)
            wins, of = self.image_higher(name)
            lines.append(
                f"| {title} | {_cell(image)} | {_cell(rain)} | {wins} of {counted(of, 'image')} |"
            )
        c = self.counts
        lines += [
            "",
            "Median over images [inter-quartile range]. "
            f"{counted(c['images'], 'image')}; {c['image_patches']} image and "
            f"{c['rain_patches']} rain patches ({c['image_distinct']} and "
            f"{c['rain_distinct']} distinct) of "
            f"{s.patch}×{s.patch}×3, in non-local groups of {s.per_reference} within "
            f"{s.window}×{s.window} windows around {s.references} references per image; "
            + ("mean removed and unit norm." if s.unit_norm else "mean removed."),
            "",
            self.verdict(),
        ]
        return "\n".join(lines)


def _sign_test(higher: int, lower: int) -> float:
    """Two-sided exact sign test of `higher` against `lower` (ties left out)."""
    n = higher + lower
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(higher, lower) + 1)) / 2**n
    return min(1.0, 2 * tail)


def _direction(higher: int, lower: int) -> str:
    if _sign_test(higher, lower) >= SIGNIFICANCE:
        return "neither consistently higher nor lower than rain patches"
    return f"{'higher' if higher > lower else 'lower'} than rain patches"


def _cell(spread: Spread) -> str:
    if math.isnan(spread.median):
        return "—"
    return f"{spread.median:.1f} [{spread.q25:.1f}, {spread.q75:.1f}]"


def analyze(
    pairs: Iterable[tuple[np.ndarray, np.ndarray]],
    settings: Settings = Settings(),
    progress: bool = False,
) -> Report:
    """Intrinsic dimension of background and rain patches over (background, rain layer)
    pairs: H×W×3 floats in [0, 1], e.g. a synthetic pair's ground truth and rainy − clean,
    or a derainer's B̂ and R̂.

    Both layers of a pair are sampled at the same reference places (the groups then
    differ: each layer's own most similar patches), and each image gets its own
    estimate. The spread is over images, not patches: patches of one image are not
    independent, and a bootstrap that draws an image twice only adds duplicate points,
    which the estimators drop. Per-image sets also keep the estimators fast: in 768
    dimensions a k-d tree is close to brute force, about 0.15 s for 512 patches.

    The two estimators look at different scales of the same set: TwoNN's two nearest
    neighbours mostly lie in a patch's own group of `per_reference`, while the MLE's k
    neighbours reach across groups; where they disagree, say so rather than pick one.
    """
    s = settings
    if s.references < s.fewest_references:
        raise ValueError(
            f"{s.references} references of {s.per_reference} patches are too few: the "
            f"estimators need {MIN_PATCHES} patches of a layer, {s.fewest_references} references"
        )
    if s.references > MOST_REFERENCES:
        raise ValueError(f"{s.references} references are too many: at most {MOST_REFERENCES}")
    estimates: dict[tuple[str, str], list[float]] = {
        (layer, name): [] for layer in ("image", "rain") for name in ("two_nn", "mle")
    }
    counts = dict.fromkeys(
        ("images", "image_patches", "rain_patches", "image_distinct", "rain_distinct"), 0
    )
    for index, (background, rain) in enumerate(
        tqdm(pairs, desc="intrinsic dimension", unit="pair", disable=not progress)
    ):
        counts["images"] += 1
        for layer, picture in (("image", background), ("rain", rain)):
            if _places(picture.shape, s.patch) < MIN_PATCHES:
                # Too small to hold that many distinct patches (or even one): no estimate.
                estimates[layer, "two_nn"].append(math.nan)
                estimates[layer, "mle"].append(math.nan)
                continue
            rng = np.random.default_rng([s.seed, index])  # the same references in both layers
            patches = nonlocal_patches(
                picture, s.patch, s.window, s.per_reference, s.references, rng, s.unit_norm
            )
            distinct = len(np.unique(patches, axis=0))
            counts[f"{layer}_patches"] += len(patches)
            counts[f"{layer}_distinct"] += distinct
            enough = distinct >= MIN_PATCHES
            estimates[layer, "two_nn"].append(_or_nan(two_nn, patches) if enough else math.nan)
            estimates[layer, "mle"].append(_or_nan(mle, patches, s.k) if enough else math.nan)
    if not counts["images"]:
        raise ValueError("no pairs to analyse")
    return Report(
        image_dim_two_nn=Spread(tuple(estimates["image", "two_nn"])),
        rain_dim_two_nn=Spread(tuple(estimates["rain", "two_nn"])),
        image_dim_mle=Spread(tuple(estimates["image", "mle"])),
        rain_dim_mle=Spread(tuple(estimates["rain", "mle"])),
        counts=counts,
        settings=settings,
    )


def _places(shape: tuple[int, ...], patch: int) -> int:
    """Where a patch×patch patch can lie in an image of `shape`."""
    return max(0, shape[0] - patch + 1) * max(0, shape[1] - patch + 1)


def _or_nan(estimator, patches: np.ndarray, *args) -> float:
    """The estimate, or nan where the layer is too uniform to give one (a rain layer
    that is 0 almost everywhere has few distinct patches)."""
    try:
        return estimator(patches, *args)
    except ValueError:
        return math.nan


@dataclass(frozen=True)
class SplitPairs:
    """A paired split's pairs, read as they are iterated, and the sha256 of the
    synthetic.parquet that chose them: what a report names as its input."""

    pairs: Iterator[tuple[np.ndarray, np.ndarray]]
    manifest_sha256: str

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return self.pairs


def from_synthetic_split(
    dataset_root: str | Path, split: str, limit: int | None = None
) -> SplitPairs:
    """(ground truth, rain layer) of each pair of a paired split, as H×W×3 float32 in
    [0, 1], the rain layer being clip(rainy − ground truth, 0, 1): what the rain added
    (where the render saturated at white, less than the streaks drawn).

    Reads only the two members of each pair, shard by shard, as the pairs are drawn;
    an unknown split is refused at once.
    """
    dataset = open_dataset(dataset_root)  # a folder or an object store's URL
    dataset.read_info()
    table, digest = manifest.read_hashed(
        dataset.synthetic_manifest, manifest.SYNTHETIC, "analyze intrinsic-dim"
    )
    rows = [
        row
        for row in table.select(
            ["key", "split", "shard", "width", "height", "gt_sha256", "rain_sha256"]
        ).to_pylist()
        if row["split"] == split
    ]
    rows.sort(key=lambda row: (row["shard"], row["key"]))
    if not rows:
        known = sorted(set(table["split"].to_pylist()))
        raise DatasetError(
            f"no pairs in split {split!r} of {dataset_root}; paired splits: "
            + (", ".join(known) if known else "none (run rainbench synth)")
        )
    return SplitPairs(_read_pairs(dataset, rows[:limit] if limit is not None else rows), digest)


def _read_pairs(dataset: Dataset, rows: list[dict]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """A member that cannot be read, is not the bytes its row's digest gives, or is not
    the size its row says, stops the estimate with a one-line `ShardError` naming it."""
    for shard, members in groupby(rows, key=lambda row: row["shard"]):
        with open_shard(dataset.root, shard) as tar:
            for row in members:
                gt = _png(tar, row, member(row["key"], GROUND_TRUTH), row["gt_sha256"])
                rainy = _png(tar, row, member(row["key"], RAIN), row["rain_sha256"])
                # In 8-bit integers, so that equal differences are equal floats whatever the
                # background: a uniform haze is one flat picture, not ulp-sized texture.
                rain = np.clip(rainy.astype(np.int16) - gt, 0, 255)
                yield gt / np.float32(255), rain / np.float32(255)


def _png(tar: tarfile.TarFile, row: dict, name: str, sha256: str) -> np.ndarray:
    """A pair's PNG, which must be the bytes of `sha256` (the row's digest of it) and its
    row's width × height: the rain layer is the rainy picture less the ground truth,
    pixel by pixel."""
    size = (row["width"], row["height"])
    picture = read_upright(tar, row["shard"], name, FORMATS["png"], *size, sha256=sha256)
    if picture.size != size:
        raise ShardError(
            f"{row['shard']}:{name}: {picture.width}×{picture.height}, not the manifest's "
            f"{size[0]}×{size[1]} (run rainbench verify)"
        )
    return np.asarray(picture)
