"""Labelled examples for fitting and judging the tagger, and the fit itself: rain of each
type from several independently written rain models, rendered on every freely licensed
photograph the environment offers, cropped, exposed, lit by day or night, passed
through a random camera chain (scale, tone, noise, sharpening) and JPEG, then decoded
and measured exactly as ingest does.

Judging never uses what a fit saw: leave-one-rain-model-out and
leave-one-background-out, with the worst case reported beside the pooled figures.
"""

import io
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from rainbench import __version__
from rainbench.capture.decode import Decoded, decode_capture
from rainbench.capture.formats import FORMATS
from rainbench.errors import RainbenchError
from rainbench.parallel import WorkerPool
from rainbench.seeds import seed_from
from rainbench.synth.acquisition import Acquisition, acquire, draw_acquisition
from rainbench.tagging.features import FEATURE_NAMES, FEATURES_VERSION
from rainbench.tagging.fit import softmax_regression
from rainbench.tagging.measure import compute_features
from rainbench.tagging.scores import calibration_error, decide_all, f1_scores
from rainbench.tagging.tagger import (
    CLASSES,
    RAIN_TYPES,
    UNLIKE,
    Tagger,
    expand,
    load_tagger,
    with_rain,
)
from rainbench.versions import installed_versions

# The photographs rain is rendered on, by name: every photograph of a scene that the
# installed packages bring under a licence that allows it. scikit-image's and
# matplotlib's samples are in the public domain or under CC0 (their docstrings say so);
# scikit-learn's two are under CC BY 2.0 (its datasets/images/README.txt names the
# authors; docs/tagging.md credits them). Pictures of no scene (microscopy, documents,
# drawings) and those with no stated licence are left out.
BACKGROUNDS: dict[str, str] = {
    "astronaut": "skimage:astronaut.png",
    "brick": "skimage:brick.png",
    "camera": "skimage:camera.png",
    "chelsea": "skimage:chelsea.png",
    "clock": "skimage:clock_motion.png",
    "coffee": "skimage:coffee.png",
    "coins": "skimage:coins.png",
    "grass": "skimage:grass.png",
    "gravel": "skimage:gravel.png",
    "hubble": "skimage:hubble_deep_field.jpg",
    "rocket": "skimage:rocket.jpg",
    "hopper": "matplotlib:grace_hopper.jpg",
    "temple": "sklearn:china.jpg",
    "flower": "sklearn:flower.jpg",
}
# What makes, measures and fits the examples: the photographs' packages among them.
EXAMPLE_LIBRARIES = ("numpy", "scipy", "pillow", "scikit-image", "matplotlib", "scikit-learn")

# The rain models calibration fits on, each written separately with its own streak
# physics: version 1's Gaussian-profile streaks added to the scene, version 2's drops by
# size, speed and depth lit by the scene, screen-blended thresholded noise, and Garg and
# Nayar's alpha-blended streaks (the check model of taggers 2 to 4). Fits on more models
# type rain from a model they never saw better in the worst case
# (benchmarks/tagging_models.py).
RAIN_MODELS = ("v1", "v2", "screen", "photometric")
# Rain models no calibration fits on: the robustness benchmark judges fits on every
# calibration model by them, as the shipped tagger meets rain from a renderer it never
# saw. Drops projected through a pinhole camera by depth (rainbench.synth.particles).
CHECK_MODELS = ("particles",)

# The version calibrate_tagger.py gives the tagger it fits: 3 added the detector, 4 the
# photographs scikit-learn brings to the backgrounds, 5 the photometric rain model.
VERSION = "5"

# Capture heights, px, cycled over the examples: the real photographs this must hold
# on are 170–2848 px tall, most near 512.
HEIGHTS = (180, 320, 480, 720, 1080, 1600, 2400)
QUALITIES = (40, 55, 70, 85, 95)  # JPEG qualities, cycled
NIGHT_SHARE = 0.25  # scenes exposed as night, lit by a few lamps
LARGEST_RENDER = 2400  # rows: a chain's down-scaling renders at most this high first
ASPECTS = (4 / 3, 3 / 2, 16 / 9, 3 / 4)

# Inputs of the model and how each is transformed: the thin-line features, the
# orientation votes and the veil's. The other features of version 1 (high frequency,
# streak density and lags) are still measured and stored, but left out: fits on them
# judged a rain model they had not seen worse (docs/tagging.md).
INPUTS: tuple[tuple[str, str, float], ...] = (
    ("streak_energy", "linear", 0.0),
    ("streak_coherence", "linear", 0.0),
    ("streak_agreement", "linear", 0.0),
    ("streak_blocks", "linear", 0.0),
    *(
        item
        for prefix in ("thin", "ridge")
        for item in (
            (f"{prefix}_polarity", "linear", 0.0),
            (f"{prefix}_coherence", "linear", 0.0),
            (f"{prefix}_excess", "linear", 0.0),
            (f"{prefix}_density", "log", 1e-4),
            (f"{prefix}_segments", "log", 0.1),
            (f"{prefix}_length", "log", 1.0),
            (f"{prefix}_spread", "linear", 0.0),
            (f"{prefix}_on_dark", "linear", 0.0),
            (f"{prefix}_clutter", "log", 1e-4),
        )
    ),
    ("dark_channel", "log", 1e-3),
    ("transmission", "linear", 0.0),
    ("veil_gradient", "linear", 0.0),
    ("contrast", "log", 1e-3),
    ("brightness", "linear", 0.0),
    ("black_level", "log", 1e-3),
    ("saturation", "linear", 0.0),
)


@dataclass(frozen=True)
class Example:
    """How one labelled example is made; a pure function of these fields."""

    background: str  # a key of BACKGROUNDS
    label: str  # one of CLASSES
    model: str | None  # one of RAIN_MODELS or CHECK_MODELS; None for clean
    seed: int
    height: int  # capture rows, after the chain's down-scaling
    quality: int  # JPEG
    night: bool


@dataclass(frozen=True)
class Measured:
    example: Example
    features: dict[str, float]
    height: int  # as decoded


def examples(
    backgrounds: tuple[str, ...],
    per_cell: int,
    seed: int,
    models: tuple[str, ...] = RAIN_MODELS,
    clean: bool = True,
) -> list[Example]:
    """For every background: `per_cell` examples of every rain type from every one of
    `models`, and (with `clean`) as many clean ones as rainy ones of a type; sizes,
    qualities and night drawn evenly from the example's seed."""
    made = []
    for background in backgrounds:
        cells = [(label, model) for label in RAIN_TYPES for model in models]
        cells += [("clean", None)] * len(models) * clean
        for cell, (label, model) in enumerate(cells):
            for index in range(per_cell):
                drawn = _derive(seed, background, label, model, cell, index)
                # Conditions from the seed's digits: even over many examples, and never
                # in step with the order of backgrounds and cells.
                made.append(
                    Example(
                        background=background,
                        label=label,
                        model=model,
                        seed=drawn,
                        height=HEIGHTS[drawn % len(HEIGHTS)],
                        quality=QUALITIES[drawn // len(HEIGHTS) % len(QUALITIES)],
                        night=drawn // 1000 % 1000 < NIGHT_SHARE * 1000,
                    )
                )
    return made


def measure_all(todo: list[Example], workers: int) -> Iterator[Measured]:
    """Render and measure examples in parallel, in the order given."""
    with WorkerPool(workers) as pool:
        yield from pool.map_ordered(measure, todo)


def measure(example: Example) -> Measured:
    """Render `example` and measure it as ingest measures a capture."""
    decoded = decoded_example(example)
    return Measured(example, compute_features(decoded.preview), decoded.height)


def decoded_example(example: Example) -> Decoded:
    """`example` rendered through its camera chain and JPEG, then decoded by ingest's own
    decode: what ingest would see of such a capture."""
    chain, rng = drawn_chain(example)
    rows = min(round(example.height / chain.scale), max(LARGEST_RENDER, example.height))
    chain = replace(chain, scale=example.height / rows, quality=None)
    clean = _scene(example.background, rows, rng, example.night)
    pixels = clean if example.model is None else rain(example, clean)
    pixels = acquire(pixels, chain, example.seed)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=example.quality)
    return decode_capture(buffer.getvalue(), FORMATS["jpeg"])


def drawn_chain(example: Example) -> tuple[Acquisition, np.random.Generator]:
    """The camera chain an example goes through, drawn first from its seed, and the
    generator left for the rest of its drawing."""
    rng = np.random.default_rng(example.seed)
    return draw_acquisition(rng), rng


def rain(example: Example, clean: np.ndarray) -> np.ndarray:
    """`clean` with rain of the example's type from its model, before any camera chain."""
    # Imported here: each model loads only in the workers that render it.
    if example.model == "v1":
        from rainbench.synth.render import render

        return render(clean, example.label, example.seed).rain
    if example.model == "v2":
        from rainbench.synth.physical import render_physical
        from rainbench.synth.recipes import RECIPES, V2_RECIPES

        recipe = next(RECIPES[n] for n in V2_RECIPES if RECIPES[n].rain_type == example.label)
        return render_physical(
            clean, recipe, example.seed, night=example.night, acquisition=False
        ).rain
    if example.model == "screen":
        from rainbench.synth.screen import render_screen

        return render_screen(clean, example.label, example.seed)[0]
    if example.model == "photometric":
        from rainbench.synth.photometric import render_photometric

        return render_photometric(clean, example.label, example.seed)[0]
    if example.model == "particles":
        from rainbench.synth.particles import render_particles

        return render_particles(clean, example.label, example.seed)[0]
    known = ", ".join(RAIN_MODELS + CHECK_MODELS)
    raise ValueError(f"unknown rain model {example.model!r}; known: {known}")


def fit(
    measured: list[Measured],
    l2: float,
    products: bool,
    calibration: dict,
    detector: bool = False,
) -> Tagger:
    """A multinomial logistic regression with an L2 penalty, fitted by Newton's method,
    with the calibration examples' spread kept for the unlike-calibration caveat; with
    `detector`, a logistic regression of rain against clean on DETECTOR_INPUTS too
    (the shipped kind, VERSION; without it, as tagger 2 was made)."""
    inputs = tuple(name for name, _, _ in INPUTS)
    raw = feature_matrix(measured)[:, [FEATURE_NAMES.index(name) for name in inputs]]
    model = Tagger(
        version=VERSION if detector else f"{VERSION}-no-detector",
        features_version=FEATURES_VERSION,
        inputs=inputs,
        transforms=tuple(kind for _, kind, _ in INPUTS),
        offsets=tuple(offset for _, _, offset in INPUTS),
        mean=np.zeros(len(inputs)),
        scale=np.ones(len(inputs)),
        expanded_mean=np.array([]),
        expanded_scale=np.array([]),
        weights=np.zeros((len(CLASSES), len(inputs))),
        bias=np.zeros(len(CLASSES)),
        flag_threshold=0.5,
        calibration=calibration,
        products=products,
        capped=("tiny", UNLIKE),
    )
    x = model.transform(raw)
    model = replace(model, mean=x.mean(axis=0), scale=x.std(axis=0) + 1e-9)
    x = model.transform(raw)
    expanded = expand(x) if products else x
    expanded_mean, expanded_scale = expanded.mean(axis=0), expanded.std(axis=0) + 1e-9
    y = np.array([CLASSES.index(m.example.label) for m in measured])
    theta = softmax_regression(
        (expanded - expanded_mean) / expanded_scale, np.eye(len(CLASSES))[y], l2
    )
    # As many clean examples as of one rain type were fitted; a capture is as likely
    # clean as rainy before it is looked at, so P(rain) reads as the evidence says.
    clean = int(np.sum(y == 0))
    theta[0, -1] += np.log(max(len(y) - clean, 1) / max(clean, 1))
    # The spread, shrunk towards the identity so that a direction the examples never
    # varied in does not make every capture "unlike".
    covariance = np.cov(x, rowvar=False) + SPREAD_SHRINK * np.eye(len(inputs))
    precision = np.linalg.inv(covariance)
    distance = np.einsum("ij,jk,ik->i", x, precision, x)
    ood = {
        "mean": [0.0] * len(inputs),
        "precision": [[float(f"{v:.9g}") for v in row] for row in precision],
        # Replaced by the calibration script with the held-out examples' quantile.
        "limit": round(float(np.quantile(distance, UNLIKE_QUANTILE)), 4),
    }
    return replace(
        model,
        expanded_mean=expanded_mean,
        expanded_scale=expanded_scale,
        weights=theta[:, :-1],
        bias=theta[:, -1],
        ood=ood,
        detector=_fit_detector(x, y > 0, inputs) if detector else None,
    )


def _fit_detector(x: np.ndarray, rain: np.ndarray, inputs: tuple[str, ...]) -> dict:
    """Rain against clean on the standardised inputs DETECTOR_INPUTS, with P(rain) read
    as if a capture were as likely clean as rainy before it is looked at."""
    columns = [inputs.index(name) for name in DETECTOR_INPUTS]
    theta = softmax_regression(x[:, columns], np.eye(2)[rain.astype(int)], DETECTOR_L2)
    rainy = int(rain.sum())
    prior = np.log(max(rainy, 1) / max(len(rain) - rainy, 1))
    return {
        "inputs": list(DETECTOR_INPUTS),
        "weights": [float(f"{v:.9g}") for v in theta[1, :-1] - theta[0, :-1]],
        "bias": float(f"{theta[1, -1] - theta[0, -1] - prior:.9g}"),
        "l2": DETECTOR_L2,
    }


# The detector's inputs: the cues rain alone gives, whatever its renderer or type. Bright
# thin lines over dark ones (polarity, excess), one orientation (coherence, the blocks'
# votes), many short segments spread over the frame, on dark ground more than the
# picture is. Not the veil, brightness or colour: rain's veil differs most between
# rain models, and a hazy or grey clean picture has one too. Tagger 2's P(rain), from
# the softmax over every input, detected rain models no fit saw less well
# (docs/tagging.md: benchmarks/tagging_robustness.py --no-detector).
DETECTOR_INPUTS = (
    "streak_agreement",
    "streak_blocks",
    *(
        f"{prefix}_{name}"
        for prefix in ("thin", "ridge")
        for name in ("polarity", "excess", "coherence", "on_dark", "segments", "spread")
    ),
)
DETECTOR_L2 = 1.0

SPREAD_SHRINK = 0.05
# A capture is unlike calibration beyond the distance this share of held-out
# examples (backgrounds no fit saw) stay within.
UNLIKE_QUANTILE = 0.99
# Candidate flag thresholds, and the share of clean captures a flag may hit: a flag
# asks a person to look, so it should be rare on clean captures.
FLAG_THRESHOLDS = (*(round(t, 2) for t in np.arange(0.3, 0.96, 0.05)), 0.97, 0.99)
FLAG_BUDGET = 0.05


@dataclass
class HeldOut:
    """Every example judged by a fit that never saw its group (a background, or a rain
    model together with a third of the backgrounds)."""

    measured: list[Measured]
    logits: np.ndarray  # rows × CLASSES, temperature 1
    distance: np.ndarray  # squared Mahalanobis distance from the fit's examples
    group: list[str]  # what was held out for each row
    rain: np.ndarray | None = None  # the fit's detector's P(rain); None: fits had none

    def probabilities(
        self, chosen: np.ndarray, temperature: float, scale: tuple[float, float] = (1.0, 0.0)
    ) -> np.ndarray:
        """P(class) of the rows `chosen` as their fits give it (Tagger.probabilities), the
        detector's logit scaled and shifted by `scale`."""
        p = probabilities(self.logits[chosen], temperature)
        if self.rain is None:
            return p
        return with_rain(p, rescaled(self.rain[chosen], scale))

    def rain_probability(self) -> np.ndarray:
        """P(rain) of every row as its fit gives it, unscaled: what detection judges."""
        return 1 - self.probabilities(np.ones(len(self.measured), dtype=bool), 1.0)[:, 0]


def leave_one_background_out(
    measured: list[Measured],
    l2: float,
    products: bool,
    detector: bool = False,
    unfitted: frozenset[str] = frozenset(),
) -> HeldOut:
    """Each background's examples judged by fits on the others (never on `unfitted`
    backgrounds, which are judged only)."""
    groups = sorted({m.example.background for m in measured})
    folds = [([g], None) for g in groups]
    return _held_out(measured, l2, products, detector, folds, unfitted)


def leave_one_model_out(
    measured: list[Measured],
    l2: float,
    products: bool,
    detector: bool = False,
    unfitted: frozenset[str] = frozenset(),
) -> HeldOut:
    """Rain of each calibration model judged by fits on the other calibration models, and
    rain of each check model by fits on all of them, on backgrounds those fits never saw
    either (three background folds), so the clean captures judged are new too. No fit
    learns from `unfitted` backgrounds."""
    return _held_out(measured, l2, products, detector, model_folds(measured), unfitted)


def model_folds(measured: list[Measured]) -> list[tuple[list[str], str]]:
    """Leave-one-rain-model-out's folds: every rain model in `measured`, each with every
    third of the backgrounds."""
    backgrounds = sorted({m.example.background for m in measured})
    thirds = [backgrounds[start::3] for start in range(3)]
    present = {m.example.model for m in measured}
    models = [model for model in RAIN_MODELS + CHECK_MODELS if model in present]
    return [(third, model) for model in models for third in thirds]


def held_out_model(
    measured: list[Measured],
    model: str,
    fitted_on: tuple[str, ...],
    l2: float,
    products: bool,
    detector: bool = False,
) -> HeldOut:
    """Rain of `model` (any rain model, check models too) judged by fits on the rain of
    `fitted_on` alone and clean captures, on backgrounds those fits never saw (three
    background folds): how the choice of calibration models carries to rain no fit saw."""
    chosen = [m for m in measured if m.example.model in (*fitted_on, model, None)]
    backgrounds = sorted({m.example.background for m in chosen})
    folds = [(backgrounds[start::3], model) for start in range(3)]
    return _held_out(chosen, l2, products, detector, folds, checks=())


def _held_out(
    measured: list[Measured],
    l2: float,
    products: bool,
    detector: bool,
    folds: list[tuple[list[str], str | None]],
    unfitted: frozenset[str] = frozenset(),
    checks: tuple[str, ...] = CHECK_MODELS,
) -> HeldOut:
    rows, logits, distance, group, rain = [], [], [], [], []
    for backgrounds, model in folds:
        seen, mine = fold_split(measured, backgrounds, model, unfitted, checks)
        tagger = fit(seen, l2, products, {}, detector)
        features = feature_matrix(mine)
        rows += mine
        logits.append(tagger.design(features) @ tagger.weights.T + tagger.bias)
        distance.append(tagger.distance(features))
        group += [model or backgrounds[0]] * len(mine)
        if detector:
            rain.append(tagger.rain_probability(features))
    return HeldOut(
        rows,
        np.vstack(logits),
        np.concatenate(distance),
        group,
        np.concatenate(rain) if detector else None,
    )


def fold_split(
    measured: list[Measured],
    backgrounds: list[str],
    model: str | None,
    unfitted: frozenset[str] = frozenset(),
    checks: tuple[str, ...] = CHECK_MODELS,
) -> tuple[list[Measured], list[Measured]]:
    """The examples a fold's fit may learn from, and those it judges: `model`'s rain
    (every rain, for None) and clean captures on `backgrounds`; the fit sees neither
    those backgrounds, nor `model`, nor `checks`' rain, nor `unfitted` backgrounds."""
    seen, mine = [], []
    for m in measured:
        unseen = m.example.background in backgrounds
        if unseen and (model is None or m.example.model in (model, None)):
            mine.append(m)
        elif (
            not unseen
            and m.example.model not in checks
            and m.example.background not in unfitted
            and (model is None or m.example.model != model)
        ):
            seen.append(m)
    return seen, mine


def feature_matrix(measured: list[Measured]) -> np.ndarray:
    return np.array([[m.features[name] for name in FEATURE_NAMES] for m in measured])


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T minimising the cross-entropy of softmax(logits / T) over the
    rain types (the decision a confidence belongs to), by golden-section search in log T."""
    low, high = np.log(0.05), np.log(20.0)
    ratio = (np.sqrt(5) - 1) / 2
    for _ in range(60):
        a, b = high - ratio * (high - low), low + ratio * (high - low)
        if _cross_entropy(logits, labels, np.exp(a)) < _cross_entropy(logits, labels, np.exp(b)):
            high = b
        else:
            low = a
    return round(float(np.exp((low + high) / 2)), 4)


def _cross_entropy(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    scaled = logits / temperature
    scaled = scaled - scaled.max(axis=1, keepdims=True)
    log_p = scaled - np.log(np.exp(scaled).sum(axis=1, keepdims=True))
    return -float(log_p[np.arange(len(labels)), labels].mean())


def rain_logits(logits: np.ndarray) -> np.ndarray:
    """The four rain types' columns: the decision among types, given rain."""
    return logits[:, 1:]


@dataclass
class Evaluation:
    """Decisions on held-out examples: rain types of rainy ones, flags on clean ones."""

    labels: tuple[str, ...]  # RAIN_TYPES
    confusion: np.ndarray  # rows: truth, columns: tagged
    f1: dict[str, float]
    macro_f1: float
    flag_recall: float  # share of rainy examples whose P(rain) reaches the flag threshold
    clean_flagged: float  # share of clean examples flagged looks_rainy
    calibration_error: float  # ECE of the rain-type confidence, as tagged (caps included)
    unlike: float  # share of examples with the unlike-calibration caveat
    examples: int

    def to_markdown(self) -> str:
        """The confusion matrix and scores as the Markdown docs/tagging.md shows."""
        head = "| true \\ tagged | " + " | ".join(self.labels) + " | F1 |"
        lines = [head, "|---" * (len(self.labels) + 2) + "|"]
        for name, row in zip(self.labels, self.confusion.tolist(), strict=True):
            cells = " | ".join(str(n) for n in row)
            lines.append(f"| **{name}** | {cells} | {self.f1[name]:.3f} |")
        lines += [
            "",
            f"macro-F1 {self.macro_f1:.3f} over {self.confusion.sum()} rainy examples; "
            f"rain flagged {self.flag_recall:.1%}, clean flagged {self.clean_flagged:.1%}; "
            f"calibration error {self.calibration_error:.3f}; "
            f"unlike calibration {self.unlike:.1%} ({self.examples} examples in all)",
        ]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {**self.__dict__, "labels": list(self.labels), "confusion": self.confusion.tolist()}


def evaluate(
    measured: list[Measured],
    probabilities: np.ndarray,
    distance: np.ndarray,
    tagger: Tagger,
) -> Evaluation:
    """Score decisions made as ingest makes them, from held-out class probabilities and
    distances (a fit's that never saw these examples), with `tagger`'s threshold,
    distance limit and caps."""
    made = decide_all(
        tagger,
        probabilities,
        distance,
        [m.features for m in measured],
        [None if m.example.label == "clean" else m.example.label for m in measured],
        [m.height for m in measured],
    )
    f1, macro_f1 = f1_scores(made.confusion)
    return Evaluation(
        labels=RAIN_TYPES,
        confusion=made.confusion,
        f1=f1,
        macro_f1=macro_f1,
        flag_recall=_share(made.rain_flags),
        clean_flagged=_share(made.clean_flags),
        calibration_error=calibration_error(made.confidence, made.right)
        if made.confidence.size
        else 0.0,
        unlike=_share(made.unlike),
        examples=len(measured),
    )


def _share(values: np.ndarray) -> float:
    return round(float(np.mean(values)), 4) if values.size else 0.0


def probabilities(logits: np.ndarray, temperature: float) -> np.ndarray:
    scaled = logits / temperature
    scaled = scaled - scaled.max(axis=1, keepdims=True)
    odds = np.exp(scaled)
    return odds / odds.sum(axis=1, keepdims=True)


def _scene(name: str, height: int, rng: np.random.Generator, night: bool) -> np.ndarray:
    """A varied capture-like view of a background photograph: cropped to a drawn aspect,
    maybe mirrored, resized to `height` rows, with drawn exposure and white balance, by
    day (half of them in the flat light of an overcast sky) or at night."""
    image = np.asarray(Image.open(background_photo(name)).convert("RGB"))
    rows, cols = image.shape[:2]
    aspect = ASPECTS[int(rng.integers(len(ASPECTS)))]
    crop_rows = int(rows * rng.uniform(0.6, 1.0))
    crop_cols = min(cols, int(crop_rows * aspect))
    crop_rows = min(crop_rows, int(crop_cols / aspect))
    top = int(rng.integers(0, rows - crop_rows + 1))
    left = int(rng.integers(0, cols - crop_cols + 1))
    image = image[top : top + crop_rows, left : left + crop_cols]
    if rng.random() < 0.5:
        image = image[:, ::-1]
    width = max(1, round(height * crop_cols / crop_rows))
    view = Image.fromarray(np.ascontiguousarray(image)).resize(
        (width, height), Image.Resampling.BICUBIC
    )
    flat = rng.uniform(0.45, 1.0) if rng.random() < 0.5 else 1.0
    gain = rng.uniform(0.12, 0.35) if night else rng.uniform(0.6, 1.15)
    balance = rng.uniform(0.8, 1.2, 3)
    pixels = np.asarray(view, dtype=np.float32) / 255
    pixels = pixels ** rng.uniform(0.75, 1.4)
    pixels = pixels.mean() + flat * (pixels - pixels.mean())
    pixels = np.clip(pixels * gain * balance, 0, 1)
    return np.round(pixels * 255).astype(np.uint8)


def background_photo(name: str) -> Path:
    """The path of a background photograph (a key of BACKGROUNDS)."""
    source, file = BACKGROUNDS[name].split(":")
    return _package_photo(source, file)


def sample_photo(name: str) -> Path:
    """The path of one of scikit-image's bundled sample photographs."""
    return _package_photo("skimage", name)


# Where each package keeps its photographs, and the distribution that brings it.
PHOTO_FOLDERS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "skimage": ("skimage", ("data",), "scikit-image"),
    "matplotlib": ("matplotlib", ("mpl-data", "sample_data"), "matplotlib"),
    "sklearn": ("sklearn.datasets", ("images",), "scikit-learn"),
}


def _package_photo(source: str, name: str) -> Path:
    package, folder, distribution = PHOTO_FOLDERS[source]
    try:
        root = resources.files(package)
    except ModuleNotFoundError:
        raise CalibrationError(
            f"the tagger's calibration photographs come with {distribution}: "
            f'pip install "rainbench[demo]" (or {distribution})'
        ) from None
    return Path(str(root.joinpath(*folder, name)))


class CalibrationError(RainbenchError):
    """The calibration photographs are missing."""


def _derive(seed: int, *parts: object) -> int:
    return seed_from("rainbench-tagging", seed, *parts)


@dataclass(frozen=True)
class Settled:
    """What calibration settles from held-out decisions rather than from the fit."""

    temperature: float  # of the rain-type confidence
    flag_threshold: float  # the lowest whose clean flags stay within FLAG_BUDGET
    unlike_limit: float  # squared distance beyond which a capture is unlike calibration
    # The detector's logit is scaled and shifted by these (Platt scaling); None: no detector
    detector_scale: tuple[float, float] | None = None


def settle(held: HeldOut, rows: np.ndarray) -> Settled:
    """Temperature, flag threshold, unlike limit and the detector's scaling from the
    held-out rows `rows`."""
    labels = np.array([CLASSES.index(m.example.label) for m in held.measured])
    rainy = rows & (labels > 0)
    temperature = fit_temperature(rain_logits(held.logits[rainy]), labels[rainy] - 1)
    scale = None if held.rain is None else fit_scale(held.rain[rows], labels[rows] > 0)
    clean = rows & (labels == 0)
    rain_on_clean = 1 - held.probabilities(clean, 1.0, scale or (1.0, 0.0))[:, 0]
    limit = round(float(np.quantile(held.distance[rows], UNLIKE_QUANTILE)), 4)
    return Settled(temperature, flag_threshold(rain_on_clean), limit, scale)


def flag_threshold(rain_on_clean: np.ndarray) -> float:
    """The lowest of FLAG_THRESHOLDS whose flags on clean captures with these held-out
    P(rain) stay within FLAG_BUDGET (the highest when none does)."""
    return float(
        next(
            (t for t in FLAG_THRESHOLDS if np.mean(rain_on_clean >= t) <= FLAG_BUDGET),
            FLAG_THRESHOLDS[-1],
        )
    )


def fit_scale(rain: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(a, b) so that P(rain) = σ(a·logit(p) + b) matches held-out truth, with rain and
    clean weighed alike (a capture as likely clean as rainy before it is looked at)."""
    theta = softmax_regression(_logit(rain)[:, None], np.eye(2)[truth.astype(int)], 1e-6)
    prior = np.log(max(int(truth.sum()), 1) / max(int((~truth).sum()), 1))
    scale = theta[1, 0] - theta[0, 0]
    shift = theta[1, 1] - theta[0, 1] - prior
    return round(float(scale), 6), round(float(shift), 6)


def rescaled(rain: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
    """P(rain) with its logit scaled and shifted: σ(a·logit(p) + b)."""
    return 1 / (1 + np.exp(-(scale[0] * _logit(rain) + scale[1])))


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(np.clip(p, 1e-12, 1)) - np.log(np.clip(1 - p, 1e-12, 1))


def settled_tagger(tagger: Tagger, settled: Settled) -> Tagger:
    ood = dict(tagger.ood or {}, limit=settled.unlike_limit)
    detector = tagger.detector
    if detector is not None and settled.detector_scale is not None:
        scale, shift = settled.detector_scale
        detector = dict(detector, scale=scale, shift=shift)
    return replace(
        tagger,
        temperature=settled.temperature,
        flag_threshold=settled.flag_threshold,
        ood=ood,
        detector=detector,
    )


def judge(held: HeldOut, rows: np.ndarray, tagger: Tagger) -> Evaluation:
    """The held-out rows `rows` decided as `tagger` (its temperature, threshold, limit
    and caps) would decide them."""
    chosen = np.flatnonzero(rows)
    detector = tagger.detector or {}
    scale = (detector.get("scale", 1.0), detector.get("shift", 0.0))
    return evaluate(
        [held.measured[i] for i in chosen],
        held.probabilities(chosen, tagger.temperature, scale),
        held.distance[chosen],
        tagger,
    )


# Acquisition conditions the robustness table breaks results down by.
CONDITIONS: dict[str, tuple[tuple[str, object], ...]] = {
    "height": (
        ("≤ 320 px", lambda m: m.height <= 320),
        ("480–1080 px", lambda m: 320 < m.height <= 1080),
        ("≥ 1600 px", lambda m: m.height > 1080),
    ),
    "JPEG": (
        ("quality 40–55", lambda m: m.example.quality <= 55),
        ("quality 70–95", lambda m: m.example.quality > 55),
    ),
    "light": (
        ("day", lambda m: not m.example.night),
        ("night", lambda m: m.example.night),
    ),
    "noise": (
        ("σ < 0.01", lambda m: drawn_chain(m.example)[0].noise < 0.01),
        ("σ 0.01–0.03", lambda m: drawn_chain(m.example)[0].noise >= 0.01),
    ),
    "sharpening": (
        ("amount < 0.5", lambda m: drawn_chain(m.example)[0].sharpen < 0.5),
        ("amount 0.5–1.5", lambda m: drawn_chain(m.example)[0].sharpen >= 0.5),
    ),
    "tone": (
        ("darker (γ > 1)", lambda m: drawn_chain(m.example)[0].gamma > 1),
        ("brighter (γ ≤ 1)", lambda m: drawn_chain(m.example)[0].gamma <= 1),
    ),
}


def condition_masks(measured: list[Measured]) -> dict[str, np.ndarray]:
    """For each acquisition condition, named as the tables name it ("JPEG: quality
    40–55"), which of `measured` it holds for."""
    return {
        f"{condition}: {case}": np.array([bool(test(m)) for m in measured])
        for condition, cases in CONDITIONS.items()
        for case, test in cases
    }


@dataclass
class Robustness:
    """How the tagger holds on rain and scenes no fit saw: every figure is of held-out
    decisions, the worst case beside the pooled one."""

    settled: Settled  # from all leave-one-background-out decisions: the shipped settings
    by_background: dict[str, Evaluation]  # leave-one-background-out
    pooled: Evaluation  # every background's held-out decisions together
    by_model: dict[str, Evaluation]  # leave-one-rain-model-out (new backgrounds too)
    by_condition: dict[str, dict[str, Evaluation]]  # condition → held-out model → result
    # held-out model → {share of its clean captures flagged: share of its rain flagged}
    detection: dict[str, dict[float, float]]
    # What made the examples and judged them (per_cell, seed, the tagger whose fits
    # these are, rainbench's version and its libraries'); None where the caller supplied
    # the examples.
    examples: dict | None = None

    def worst(self, table: dict[str, Evaluation]) -> tuple[str, Evaluation]:
        return min(table.items(), key=lambda item: item[1].macro_f1)

    def summary(self) -> dict:
        """The figures a parameter file records."""
        background, lobo = self.worst(self.by_background)
        model, lomo = self.worst(self.by_model)
        return {
            "leave_one_background_out": {
                "macro_f1": self.pooled.macro_f1,
                "worst_macro_f1": lobo.macro_f1,
                "worst_background": background,
                "rain_flagged": self.pooled.flag_recall,
                "clean_flagged": self.pooled.clean_flagged,
                "calibration_error": self.pooled.calibration_error,
            },
            "leave_one_model_out": {
                name: {
                    "macro_f1": result.macro_f1,
                    "rain_flagged": result.flag_recall,
                    "clean_flagged": result.clean_flagged,
                    "calibration_error": result.calibration_error,
                }
                for name, result in self.by_model.items()
            },
            "worst_model": model,
            "worst_model_macro_f1": lomo.macro_f1,
        }

    def model_table(self) -> list[str]:
        """Markdown: the held-out figures of each rain model left out, and the worst."""
        lines = [
            "| rain model held out | macro-F1 | "
            + " | ".join(f"F1 {name}" for name in RAIN_TYPES)
            + " | rain flagged | clean flagged | calibration error (ECE) | unlike calibration |",
            "|---" * (6 + len(RAIN_TYPES)) + "|",
        ]
        for model, result in self.by_model.items():
            f1 = " | ".join(f"{result.f1[name]:.2f}" for name in RAIN_TYPES)
            lines.append(
                f"| {model} | {result.macro_f1:.3f} | {f1} | {result.flag_recall:.1%} | "
                f"{result.clean_flagged:.1%} | {result.calibration_error:.3f} | "
                f"{result.unlike:.1%} |"
            )
        model, worst = self.worst(self.by_model)
        lines += ["", f"worst: {model}, macro-F1 {worst.macro_f1:.3f}"]
        checks = [name for name in self.by_model if name in CHECK_MODELS]
        if checks:
            lines.append(
                f"{', '.join(checks)}: rain no fit learns from, judged by fits on all of "
                f"{', '.join(RAIN_MODELS)} (the others by fits on the other "
                f"{len(RAIN_MODELS) - 1})"
            )
        return lines

    def condition_table(self) -> list[str]:
        """Markdown: macro-F1 per acquisition condition for each rain model held out."""
        models = list(self.by_model)
        lines = [
            "| condition | " + " | ".join(models) + " | worst | rainy examples |",
            "|---" * (len(models) + 3) + "|",
        ]
        for case, results in self.by_condition.items():
            scores = [results[model].macro_f1 for model in models]
            count = sum(int(results[model].confusion.sum()) for model in models)
            cells = " | ".join(f"{score:.3f}" for score in scores)
            lines.append(f"| {case} | {cells} | {min(scores):.3f} | {count} |")
        return lines

    def background_table(self) -> list[str]:
        """Markdown: the pooled leave-one-background-out figures and each background's."""
        pooled, settled = self.pooled, self.settled
        lines = [
            f"pooled macro-F1 {pooled.macro_f1:.3f}, rain flagged {pooled.flag_recall:.1%}, "
            f"clean flagged {pooled.clean_flagged:.1%}, calibration error "
            f"{pooled.calibration_error:.3f} (temperature {settled.temperature}, flag "
            f"threshold {settled.flag_threshold})",
            "",
            "| background held out | macro-F1 | rain flagged | clean flagged |",
            "|---|---|---|---|",
        ]
        for name, result in sorted(self.by_background.items(), key=lambda i: i[1].macro_f1):
            lines.append(
                f"| {name} | {result.macro_f1:.3f} | {result.flag_recall:.1%} | "
                f"{result.clean_flagged:.1%} |"
            )
        return lines

    def detection_table(self) -> list[str]:
        """Markdown: rain flagged when the flag threshold lets through a given share of
        clean captures, for each rain model held out (and each rain type over them):
        detection without the threshold's own luck."""
        budgets = DETECTION_BUDGETS
        lines = [
            "| rain model held out | "
            + " | ".join(f"rain flagged at {b:.0%} clean flagged" for b in budgets)
            + " |",
            "|---" * (1 + len(budgets)) + "|",
        ]
        for model, recall in self.detection.items():
            lines.append(f"| {model} | " + " | ".join(f"{recall[b]:.1%}" for b in budgets) + " |")
        held_out = [recall for name, recall in self.detection.items() if name in self.by_model]
        worst = [min(recall[b] for recall in held_out) for b in budgets]
        return [*lines, "", "worst model held out: " + ", ".join(f"{w:.1%}" for w in worst)]

    def to_lines(self) -> list[str]:
        return [*self.model_table(), "", *self.detection_table(), "", *self.background_table()]

    def to_dict(self) -> dict:
        return {
            "settled": asdict(self.settled),
            "summary": self.summary(),
            "by_model": {name: result.to_dict() for name, result in self.by_model.items()},
            "by_background": {n: r.to_dict() for n, r in self.by_background.items()},
            "by_condition": {
                case: {model: result.macro_f1 for model, result in results.items()}
                for case, results in self.by_condition.items()
            },
            "detection": self.detection,
            "examples": self.examples,
        }


def evaluate_held_out(per_cell: int, seed: int, workers: int) -> Robustness:
    """Fresh examples judged by fits like the shipped tagger's (its penalty and inputs)
    that never saw their rain model or their background; the check models' rain too."""
    for name in BACKGROUNDS:  # fail early, with the fix, when a package is missing
        background_photo(name)
    settings = load_tagger().calibration
    l2, products, detector = settings["l2"], settings["products"], shipped_detector()
    measured, _ = measured_examples(per_cell, seed, workers, check=True)
    tagger = fit(calibration_examples(measured), l2, products, {}, detector)
    judged = robustness(measured, tagger, l2, products)
    judged.examples = {
        "per_cell": per_cell,
        "seed": seed,
        "tagger": load_tagger().version,
        "rainbench": __version__,
        "versions": installed_versions(EXAMPLE_LIBRARIES),
    }
    return judged


def shipped_detector() -> bool:
    """Whether the shipped tagger has a detector: fits like it have one too."""
    return load_tagger().detector is not None


def robustness(
    measured: list[Measured],
    tagger: Tagger,
    l2: float,
    products: bool,
    unfitted: frozenset[str] = frozenset(),
) -> Robustness:
    """Held-out judgement of fits like `tagger`: its threshold, temperature and unlike
    limit are settled again without the held-out rain model wherever one is held out.
    Check models' rain in `measured` is judged only, never fitted or settled on; so are
    the examples of `unfitted` backgrounds, except that settling reads their held-out
    decisions too. The fits have a detector where `tagger` has one."""
    detector = tagger.detector is not None
    calibration = calibration_examples(measured)
    lobo = leave_one_background_out(calibration, l2, products, detector, unfitted)
    everything = np.ones(len(lobo.measured), dtype=bool)
    settled = settle(lobo, everything)
    shipped = settled_tagger(tagger, settled)
    by_background = {
        name: judge(lobo, np.array([g == name for g in lobo.group]), shipped)
        for name in sorted(set(lobo.group))
    }
    lomo = leave_one_model_out(measured, l2, products, detector, unfitted)
    by_model, by_condition = {}, {}
    conditions = condition_masks(lomo.measured)
    for model in dict.fromkeys(lomo.group):
        others = np.array([m.example.model != model for m in lobo.measured])
        without = settled_tagger(tagger, settle(lobo, others))
        mine = np.array([g == model for g in lomo.group])
        by_model[model] = judge(lomo, mine, without)
        for name, rows in conditions.items():
            by_condition.setdefault(name, {})[model] = judge(lomo, mine & rows, without)
    return Robustness(
        settled,
        by_background,
        judge(lobo, everything, shipped),
        by_model,
        by_condition,
        detection(lomo, by_type=True) | detection(lobo, pooled=POOLED_BACKGROUNDS),
    )


# Shares of clean captures a flag may let through, at which detection is compared.
DETECTION_BUDGETS = (0.05, 0.10)
# The detection row of every background held out in turn, with every rain model known.
POOLED_BACKGROUNDS = "every model, backgrounds held out"


def detection(
    held: HeldOut, pooled: str | None = None, by_type: bool = False
) -> dict[str, dict[float, float]]:
    """For each held-out group (or, named `pooled`, all of them together): the share of
    its rain whose P(rain) exceeds the level that the given share of its own clean
    captures exceed; with `by_type`, those decisions' share for each rain type too,
    over every group."""
    every = np.ones(len(held.measured), dtype=bool)
    rain = held.rain_probability()
    labels = np.array([m.example.label for m in held.measured])
    clean = labels == "clean"
    groups = (
        {pooled: every}
        if pooled
        else {
            group: np.array([g == group for g in held.group]) for group in dict.fromkeys(held.group)
        }
    )
    flagged = {budget: np.zeros(len(rain), dtype=bool) for budget in DETECTION_BUDGETS}
    for mine in groups.values():
        for budget, flags in flagged.items():
            flags[mine] = rain[mine] > np.quantile(rain[mine & clean], 1 - budget)
    found = {
        group: {b: round(float(np.mean(f[mine & ~clean])), 4) for b, f in flagged.items()}
        for group, mine in groups.items()
    }
    if by_type:
        for name in RAIN_TYPES:
            found[f"{name}, every model held out"] = {
                b: round(float(np.mean(f[labels == name])), 4) for b, f in flagged.items()
            }
    return found


def calibration_examples(measured: list[Measured]) -> list[Measured]:
    """Those of `measured` a fit may learn from: every example but check models' rain."""
    return [m for m in measured if m.example.model not in CHECK_MODELS]


def measured_examples(
    per_cell: int, seed: int, workers: int, cache: Path | None = None, check: bool = False
) -> tuple[list[Measured], str]:
    """The examples of every background for (`per_cell`, `seed`), measured, and how they
    were had: the calibration models' rain and clean captures, and with `check` the
    check models' rain too. `cache` keeps every example measured into it as JSON lines;
    those it holds that were measured with these features' version are reused (an
    example is a pure function of its fields), and only the others are measured."""
    todo = examples(tuple(BACKGROUNDS), per_cell, seed)
    if check:
        todo += examples(tuple(BACKGROUNDS), per_cell, seed, CHECK_MODELS, clean=False)
    kept = {}
    if cache is not None and cache.exists():
        kept = {m.example: m for m in _load_measured(cache) or []}
    missing = [example for example in todo if example not in kept]
    if not missing:
        return [kept[example] for example in todo], f"{len(todo)} examples read from {cache}"
    started = time.perf_counter()
    kept |= {m.example: m for m in measure_all(missing, workers)}
    measured = [kept[example] for example in todo]
    how = f"{len(missing)} examples measured in {time.perf_counter() - started:.0f} s"
    if len(missing) < len(todo):
        how += f", {len(todo) - len(missing)} read from {cache}"
    if cache is not None:
        lines = [
            json.dumps(
                {
                    "features_version": FEATURES_VERSION,
                    "example": asdict(m.example),
                    "features": m.features,
                    "height": m.height,
                }
            )
            for m in kept.values()  # these and those kept from before
        ]
        cache.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return measured, how


def _load_measured(path: Path) -> list[Measured] | None:
    measured = []
    for line in path.read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        if item.get("features_version") != FEATURES_VERSION:
            return None
        measured.append(Measured(Example(**item["example"]), item["features"], item["height"]))
    return measured
