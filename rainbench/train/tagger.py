"""Labelled examples for fitting and judging the tagger: synthetic rain of each type
rendered on natural photographs (scikit-image's bundled samples), cropped, exposed and
sized differently, JPEG-encoded, then decoded and measured exactly as ingest does.

Calibration and evaluation draw from disjoint photographs, so the reported accuracy
is on scenes the tagger never saw.
"""

import io
from collections.abc import Iterator
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from rainbench.capture.decode import decode_capture
from rainbench.capture.formats import FORMATS
from rainbench.errors import RainbenchError
from rainbench.parallel import WorkerPool
from rainbench.seeds import seed_from
from rainbench.synth.render import render
from rainbench.tagging.features import FEATURE_NAMES, FEATURES_VERSION
from rainbench.tagging.fit import softmax_regression
from rainbench.tagging.measure import compute_features
from rainbench.tagging.tagger import CLASSES, RAIN_TYPES, Tagger, expand, load_tagger

# Sample photographs shipped inside scikit-image's wheel; the two sets share no scene.
CALIBRATION_IMAGES = (
    "astronaut.png", "coffee.png", "rocket.jpg", "camera.png", "brick.png", "grass.png",
    "coins.png",
)  # fmt: skip
EVALUATION_IMAGES = (
    "chelsea.png",
    "motorcycle_left.png",
    "moon.png",
    "gravel.png",
    "clock_motion.png",
)

HEIGHTS = (480, 900, 1600, 2400)  # capture heights rendered at, px
QUALITIES = (60, 75, 90, 95)  # JPEG qualities
ASPECTS = (4 / 3, 3 / 2, 16 / 9, 3 / 4)

# Inputs of the model and how each is transformed; streak_angle is recorded but not
# used, so the tagger does not learn the synthetic rain's near-vertical fall.
INPUTS: tuple[tuple[str, str, float], ...] = (
    ("hf_share", "log", 1e-4),
    ("hf_level", "log", 1e-4),
    ("streak_energy", "linear", 0.0),
    ("streak_coherence", "linear", 0.0),
    ("streak_density", "log", 1e-4),
    ("streak_length", "linear", 0.0),
    ("streak_anisotropy", "linear", 0.0),
    ("streak_reach", "linear", 0.0),
    ("streak_run", "linear", 0.0),
    ("streak_agreement", "linear", 0.0),
    ("streak_blocks", "linear", 0.0),
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

    image: str  # a file of scikit-image's sample photographs
    label: str  # one of CLASSES
    seed: int
    height: int
    quality: int


@dataclass(frozen=True)
class Measured:
    example: Example
    features: dict[str, float]


def examples(images: tuple[str, ...], per_image: int, seed: int) -> list[Example]:
    """`per_image` examples of every class on every image, sizes and qualities cycled
    so that each (class, size, quality) combination is covered evenly."""
    made = []
    for image in images:
        for label in CLASSES:
            for index in range(per_image):
                made.append(
                    Example(
                        image=image,
                        label=label,
                        seed=_derive(seed, image, label, index),
                        height=HEIGHTS[index % len(HEIGHTS)],
                        quality=QUALITIES[(index // len(HEIGHTS)) % len(QUALITIES)],
                    )
                )
    return made


def measure_all(todo: list[Example], workers: int) -> Iterator[Measured]:
    """Render and measure examples in parallel, in the order given."""
    with WorkerPool(workers) as pool:
        yield from pool.map_ordered(measure, todo)


def measure(example: Example) -> Measured:
    """Render `example`, JPEG-encode it, and measure it through ingest's own decode."""
    rng = np.random.default_rng(example.seed)
    clean = _scene(example.image, example.height, rng)
    pixels = clean if example.label == "clean" else render(clean, example.label, example.seed).rain
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=example.quality)
    decoded = decode_capture(buffer.getvalue(), FORMATS["jpeg"])
    return Measured(example, compute_features(decoded.preview))


def fit(measured: list[Measured], l2: float, calibration: dict) -> Tagger:
    """A multinomial logistic regression with an L2 penalty, fitted by L-BFGS."""
    inputs = tuple(name for name, _, _ in INPUTS)
    transforms = tuple(kind for _, kind, _ in INPUTS)
    offsets = tuple(offset for _, _, offset in INPUTS)
    raw = feature_matrix(measured)[:, [FEATURE_NAMES.index(name) for name in inputs]]
    shape = (len(CLASSES), len(inputs))
    model = Tagger(
        "1", FEATURES_VERSION, inputs, transforms, offsets,
        mean=np.zeros(len(inputs)), scale=np.ones(len(inputs)),
        expanded_mean=np.array([]), expanded_scale=np.array([]),
        weights=np.zeros(shape), bias=np.zeros(len(CLASSES)), flag_threshold=0.5,
        calibration=calibration,
    )  # fmt: skip
    x = model.transform(raw)
    model = replace(model, mean=x.mean(axis=0), scale=x.std(axis=0) + 1e-9)
    x = expand(model.transform(raw))
    expanded_mean, expanded_scale = x.mean(axis=0), x.std(axis=0) + 1e-9
    x = (x - expanded_mean) / expanded_scale
    y = np.array([CLASSES.index(m.example.label) for m in measured])
    theta = softmax_regression(x, np.eye(len(CLASSES))[y], l2)
    return replace(
        model,
        expanded_mean=expanded_mean,
        expanded_scale=expanded_scale,
        weights=theta[:, :-1],
        bias=theta[:, -1],
    )


# Candidate flag thresholds, and the share of clean captures a flag may hit: a flag
# asks a person to look, so it should be rare on clean captures.
FLAG_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
FLAG_BUDGET = 0.05


@dataclass
class CrossValidation:
    """Leave-one-photograph-out results on the calibration set."""

    macro_f1: float
    flag_threshold: float
    clean_flagged: float


def cross_validate(measured: list[Measured], l2: float) -> CrossValidation:
    """Fit without each photograph in turn and judge the fit on that photograph; the flag
    threshold is the lowest whose clean flags stay within FLAG_BUDGET."""
    confusion = np.zeros((len(RAIN_TYPES), len(RAIN_TYPES)), dtype=np.int64)
    rain_on_clean: list[float] = []
    for photo in sorted({m.example.image for m in measured}):
        tagger = fit([m for m in measured if m.example.image != photo], l2, {})
        mine = [m for m in measured if m.example.image == photo]
        confusion += evaluate(tagger, mine).confusion
        clean = [m for m in mine if m.example.label == "clean"]
        rain_on_clean.extend(1 - tagger.probabilities(feature_matrix(clean))[:, 0])
    rain = np.array(rain_on_clean)
    threshold = next(
        (t for t in FLAG_THRESHOLDS if np.mean(rain >= t) <= FLAG_BUDGET), FLAG_THRESHOLDS[-1]
    )
    _, macro_f1 = _f1_scores(confusion)
    return CrossValidation(macro_f1, threshold, round(float(np.mean(rain >= threshold)), 4))


def feature_matrix(measured: list[Measured]) -> np.ndarray:
    return np.array([[m.features[name] for name in FEATURE_NAMES] for m in measured])


@dataclass
class Evaluation:
    """The tagger's rain-type decisions on rainy examples, and its clean flags."""

    labels: tuple[str, ...]  # RAIN_TYPES
    confusion: np.ndarray  # rows: truth, columns: tagged
    f1: dict[str, float]
    macro_f1: float
    clean_flagged: float  # share of clean examples flagged looks_rainy
    flagged_by_photo: dict[str, str]  # photograph → "flagged/clean examples"
    rain_missed: float  # share of rainy examples the tagger calls clean
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
            f"rain missed (tagger's best guess clean) {self.rain_missed:.1%}; "
            f"clean examples flagged looks_rainy {self.clean_flagged:.1%} "
            f"({self.examples} examples in all)",
            "",
            "clean examples flagged, by photograph: "
            + ", ".join(f"{photo} {share}" for photo, share in self.flagged_by_photo.items()),
        ]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "labels": list(self.labels),
            "confusion": self.confusion.tolist(),
            "f1": self.f1,
            "macro_f1": self.macro_f1,
            "clean_flagged": self.clean_flagged,
            "flagged_by_photo": self.flagged_by_photo,
            "rain_missed": self.rain_missed,
            "examples": self.examples,
        }


def evaluate(tagger: Tagger, measured: list[Measured]) -> Evaluation:
    """Score the tagger as ingest uses it: rainy examples are tagged with one of the
    four types (confusion matrix, per-type F1, macro-F1); clean ones are flagged or not."""
    probabilities = tagger.probabilities(feature_matrix(measured))
    confusion = np.zeros((len(RAIN_TYPES), len(RAIN_TYPES)), dtype=np.int64)
    by_photo: dict[str, list[int]] = {}
    missed = rainy = 0
    for m, p in zip(measured, probabilities, strict=True):
        layer = "clean" if m.example.label == "clean" else "rainy"
        tag = tagger.decide(p, m.features, layer, m.example.height)
        if layer == "clean":
            counts = by_photo.setdefault(m.example.image, [0, 0])
            counts[0] += bool(tag.looks_rainy)
            counts[1] += 1
            continue
        rainy += 1
        missed += tag.best == "clean"
        confusion[RAIN_TYPES.index(m.example.label), RAIN_TYPES.index(tag.rain_type)] += 1
    f1, macro_f1 = _f1_scores(confusion)
    flagged, cleans = (sum(counts[i] for counts in by_photo.values()) for i in (0, 1))
    return Evaluation(
        labels=RAIN_TYPES,
        confusion=confusion,
        f1=f1,
        macro_f1=macro_f1,
        clean_flagged=round(flagged / max(cleans, 1), 4),
        flagged_by_photo={photo: f"{n}/{total}" for photo, (n, total) in sorted(by_photo.items())},
        rain_missed=round(missed / max(rainy, 1), 4),
        examples=len(measured),
    )


def _f1_scores(confusion: np.ndarray) -> tuple[dict[str, float], float]:
    """Per-type F1 and their mean (macro-F1) from a confusion matrix (rows: truth)."""
    f1 = {}
    for index, name in enumerate(RAIN_TYPES):
        hit = confusion[index, index]
        tagged, true = confusion[:, index].sum(), confusion[index].sum()
        f1[name] = round(float(2 * hit / (tagged + true)) if tagged + true else 0.0, 4)
    return f1, round(float(np.mean(list(f1.values()))), 4)


def evaluate_held_out(per_image: int, seed: int, workers: int) -> Evaluation:
    """The shipped tagger on examples rendered on EVALUATION_IMAGES (never calibrated on)."""
    sample_photo(EVALUATION_IMAGES[0])  # fail early, with the fix, when they are missing
    measured = list(measure_all(examples(EVALUATION_IMAGES, per_image, seed), workers))
    return evaluate(load_tagger(), measured)


def _scene(name: str, height: int, rng: np.random.Generator) -> np.ndarray:
    """A varied capture-like view of a sample photograph: cropped to a drawn aspect,
    maybe mirrored, resized to `height` rows, with drawn exposure and white balance."""
    image = np.asarray(Image.open(sample_photo(name)).convert("RGB"))
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
    # Exposure: a gamma and a gain (a fifth of the scenes at night), white balance, and
    # for half the scenes the flat light of an overcast day (contrast compressed), so
    # low contrast alone never reads as a veil.
    flat = rng.uniform(0.45, 1.0) if rng.random() < 0.5 else 1.0
    night = rng.random() < 0.2
    gain = rng.uniform(0.2, 0.4) if night else rng.uniform(0.6, 1.15)
    balance = rng.uniform(0.85, 1.15, 3)
    pixels = np.asarray(view, dtype=np.float32) / 255
    pixels = pixels ** rng.uniform(0.75, 1.4)
    pixels = pixels.mean() + flat * (pixels - pixels.mean())
    pixels = np.clip(pixels * gain * balance, 0, 1)
    return np.round(pixels * 255).astype(np.uint8)


def sample_photo(name: str) -> Path:
    """The path of one of scikit-image's bundled sample photographs."""
    try:
        folder = Path(str(resources.files("skimage") / "data"))
    except ModuleNotFoundError:
        raise CalibrationError(
            "the tagger's calibration photographs come with scikit-image: "
            'pip install "rainbench[demo]" (or scikit-image)'
        ) from None
    return folder / name


class CalibrationError(RainbenchError):
    """The calibration photographs are missing."""


def _derive(seed: int, *parts: object) -> int:
    return seed_from("rainbench-tagging", seed, *parts)
