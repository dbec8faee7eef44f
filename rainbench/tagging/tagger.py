"""The rain-type tagger: a multinomial logistic regression on a capture's features (and,
in version 1, their pairwise products), to clean / drizzle / streak / storm / fog-like.
Its parameters are a small versioned JSON file in the package, written by
`benchmarks/calibrate_tagger.py`.

A rainy capture gets the most probable rain type, with that type's probability
among the four as its confidence; a clean capture gets none, and is flagged
`looks_rainy` when the tagger's probability of rain reaches the file's flag
threshold. From version 3 that probability is a detector's of its own: a logistic
regression on the cues only rain gives (bright, oriented, spread thin lines), so that
the veil and colour cues the rain types need cannot make a hazy clean picture rainy.
A capture whose features lie far from every calibration example gets the caveat
`unlike-calibration` and a capped confidence.
"""

import json
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

from rainbench.tagging.features import COMPATIBLE_VERSIONS, FEATURE_NAMES, TINY_HEIGHT

RAIN_TYPES = ("drizzle", "streak", "storm", "fog-like")
CLASSES = ("clean", *RAIN_TYPES)

PARAMS_FILE = "tagger-v5.json"

# What the tagger cannot judge well, with the most confidence it may then claim:
# a tiny capture shows too little, a grey one has no colour for the veil cues, at
# night the streaks' contrast and the dark channel mean something else, and a capture
# unlike every calibration example is outside what the fit knows. Which of these cap
# the confidence is the parameter file's choice (`capped`).
LOW_CONFIDENCE_CAP = 0.4
UNLIKE = "unlike-calibration"
GREY_SATURATION = 0.02  # mean (max − min) / max below this: a grey picture
NIGHT_BRIGHTNESS = 0.12  # mean luma below this: a night scene


@dataclass(frozen=True)
class Tag:
    rain_type: str | None  # None for a clean capture
    confidence: float | None  # of rain_type; None for a clean capture
    looks_rainy: bool | None  # clean captures only: the tagger sees rain
    best: str  # the tagger's own pick among CLASSES, whatever the layer
    caveats: tuple[str, ...]  # what it judges less well: tiny, grey, night, unlike-calibration


@dataclass(frozen=True)
class Tagger:
    """A fitted model. The features named in `inputs` are each transformed (`log`:
    log(x + offset), else as is) and standardised (`mean`, `scale`); they, and with
    `products` all their pairwise products (squares included), are standardised again
    (`expanded_mean`, `expanded_scale`) and fed to the softmax, whose logits are divided
    by `temperature`. `ood` holds the calibration examples' spread of the standardised
    inputs (`mean`, `precision` matrix, and the squared Mahalanobis distance `limit`
    beyond which a capture is unlike them)."""

    version: str
    features_version: str
    inputs: tuple[str, ...]
    transforms: tuple[str, ...]
    offsets: tuple[float, ...]
    mean: np.ndarray
    scale: np.ndarray
    expanded_mean: np.ndarray
    expanded_scale: np.ndarray
    weights: np.ndarray  # len(CLASSES) × expanded features
    bias: np.ndarray  # len(CLASSES)
    flag_threshold: float  # a clean capture looks rainy when P(rain) reaches this
    calibration: dict  # how the parameters were produced: script, data, settings, scores
    products: bool = True
    temperature: float = 1.0
    ood: dict | None = None
    capped: tuple[str, ...] = ("tiny", "grey", "night")  # caveats that cap the confidence
    # P(rain) of its own (version 3 on): `inputs`, a subset of the standardised inputs,
    # weighted by `weights` plus `bias`, that logit times `scale` plus `shift` (settled
    # on held-out decisions), through the logistic function. None: P(rain) is
    # 1 − P(clean) of the softmax.
    detector: dict | None = None

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """P(class) for each row of `features` (columns in FEATURE_NAMES order); with a
        detector, P(clean) is 1 − its P(rain), shared among the types as the softmax
        shares the rain among them."""
        logits = (self.design(features) @ self.weights.T + self.bias) / self.temperature
        logits -= logits.max(axis=1, keepdims=True)
        odds = np.exp(logits)
        p = odds / odds.sum(axis=1, keepdims=True)
        if self.detector is None:
            return p
        return with_rain(p, self.rain_probability(features))

    def rain_probability(self, features: np.ndarray) -> np.ndarray:
        """The detector's P(rain) for each row of `features`."""
        x = self.transform(self._inputs(features))
        columns = [self.inputs.index(name) for name in self.detector["inputs"]]
        z = x[:, columns] @ np.asarray(self.detector["weights"]) + self.detector["bias"]
        z = self.detector.get("scale", 1.0) * z + self.detector.get("shift", 0.0)
        return 1 / (1 + np.exp(-z))

    def design(self, features: np.ndarray) -> np.ndarray:
        """What the softmax sees: the inputs transformed, expanded and standardised."""
        x = self.transform(self._inputs(features))
        if self.products:
            x = expand(x)
        return (x - self.expanded_mean) / self.expanded_scale

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Each row's squared Mahalanobis distance from the calibration examples."""
        if self.ood is None:
            return np.zeros(len(features))
        x = self.transform(self._inputs(features)) - np.asarray(self.ood["mean"])
        return np.einsum("ij,jk,ik->i", x, np.asarray(self.ood["precision"]), x)

    def _inputs(self, features: np.ndarray) -> np.ndarray:
        columns = [FEATURE_NAMES.index(name) for name in self.inputs]
        return np.asarray(features, dtype=np.float64)[:, columns]

    def transform(self, x: np.ndarray) -> np.ndarray:
        x = x.copy()
        for column, (kind, offset) in enumerate(zip(self.transforms, self.offsets, strict=True)):
            if kind == "log":
                x[:, column] = np.log(np.maximum(x[:, column], 0) + offset)
        return (x - self.mean) / self.scale

    def tag(self, features: dict[str, float], layer: str, height: int) -> Tag:
        row = np.array([[features[name] for name in FEATURE_NAMES]])
        unlike = self.ood is not None and self.distance(row)[0] > self.ood["limit"]
        return self.decide(self.probabilities(row)[0], features, layer, height, unlike)

    def decide(
        self, p: np.ndarray, features: dict[str, float], layer: str, height: int, unlike: bool
    ) -> Tag:
        """The tag for one capture from its class probabilities `p` (CLASSES order);
        `unlike`: its features are unlike every calibration example's."""
        caveats = tuple(
            name
            for name, applies in (
                ("tiny", height < TINY_HEIGHT),
                ("grey", features["saturation"] < GREY_SATURATION),
                ("night", features["brightness"] < NIGHT_BRIGHTNESS),
                (UNLIKE, unlike),
            )
            if applies
        )
        best = CLASSES[int(np.argmax(p))]
        if layer == "clean":
            return Tag(None, None, bool(1 - p[0] >= self.flag_threshold), best, caveats)
        rain = p[1:] / max(float(p[1:].sum()), 1e-12)
        pick = int(np.argmax(rain))
        confidence = float(rain[pick])
        if set(caveats) & set(self.capped):
            confidence = min(confidence, LOW_CONFIDENCE_CAP)
        return Tag(RAIN_TYPES[pick], round(confidence, 4), None, best, caveats)

    def to_json(self) -> dict:
        return {
            "version": self.version,
            "features_version": self.features_version,
            "classes": list(CLASSES),
            "inputs": list(self.inputs),
            "transforms": list(self.transforms),
            "offsets": list(self.offsets),
            "mean": _floats(self.mean),
            "scale": _floats(self.scale),
            "expanded_mean": _floats(self.expanded_mean),
            "expanded_scale": _floats(self.expanded_scale),
            "weights": [_floats(row) for row in self.weights],
            "bias": _floats(self.bias),
            "flag_threshold": self.flag_threshold,
            "products": self.products,
            "temperature": self.temperature,
            "ood": self.ood,
            "capped": list(self.capped),
            **({"detector": self.detector} if self.detector is not None else {}),
            "calibration": self.calibration,
        }

    @classmethod
    def from_json(cls, data: dict) -> "Tagger":
        if tuple(data["classes"]) != CLASSES:
            raise ValueError(f"tagger classes {data['classes']} are not {list(CLASSES)}")
        unknown = set(data["inputs"]) - set(FEATURE_NAMES)
        if unknown:
            raise ValueError(f"tagger inputs {sorted(unknown)} are not features")
        detector = data.get("detector")
        if detector is not None and set(detector["inputs"]) - set(data["inputs"]):
            raise ValueError("the tagger's detector reads inputs the tagger does not have")
        if data["features_version"] not in COMPATIBLE_VERSIONS:
            raise ValueError(
                f"tagger of features version {data['features_version']}; these features "
                f"keep the values of versions {', '.join(COMPATIBLE_VERSIONS)} only"
            )
        tagger = cls(
            version=data["version"],
            features_version=data["features_version"],
            inputs=tuple(data["inputs"]),
            transforms=tuple(data["transforms"]),
            offsets=tuple(data["offsets"]),
            mean=np.array(data["mean"]),
            scale=np.array(data["scale"]),
            expanded_mean=np.array(data["expanded_mean"]),
            expanded_scale=np.array(data["expanded_scale"]),
            weights=np.array(data["weights"]),
            bias=np.array(data["bias"]),
            flag_threshold=float(data["flag_threshold"]),
            calibration=data["calibration"],
            # Version 1 files predate these: pairwise products, no temperature, no spread.
            products=bool(data.get("products", True)),
            temperature=float(data.get("temperature", 1.0)),
            ood=data.get("ood"),
            capped=tuple(data.get("capped", ("tiny", "grey", "night"))),
            detector=detector,
        )
        _check_shapes(tagger)
        return tagger


def _check_shapes(tagger: Tagger) -> None:
    """A file whose arrays do not fit its inputs is refused here, not in a matmul later."""
    n = len(tagger.inputs)
    expanded = n + n * (n + 1) // 2 if tagger.products else n
    shapes = {
        "transforms": (len(tagger.transforms),),
        "offsets": (len(tagger.offsets),),
        "mean": tagger.mean.shape,
        "scale": tagger.scale.shape,
        "expanded_mean": tagger.expanded_mean.shape,
        "expanded_scale": tagger.expanded_scale.shape,
        "weights": tagger.weights.shape,
        "bias": tagger.bias.shape,
    }
    wanted = {
        "transforms": (n,),
        "offsets": (n,),
        "mean": (n,),
        "scale": (n,),
        "expanded_mean": (expanded,),
        "expanded_scale": (expanded,),
        "weights": (len(CLASSES), expanded),
        "bias": (len(CLASSES),),
    }
    if tagger.ood is not None:
        shapes["ood mean"] = np.shape(tagger.ood["mean"])
        shapes["ood precision"] = np.shape(tagger.ood["precision"])
        wanted["ood mean"], wanted["ood precision"] = (n,), (n, n)
    if tagger.detector is not None:
        shapes["detector weights"] = np.shape(tagger.detector["weights"])
        wanted["detector weights"] = (len(tagger.detector["inputs"]),)
    for name, shape in shapes.items():
        if shape != wanted[name]:
            raise ValueError(f"the tagger's {name} have shape {shape}, not {wanted[name]}")


def with_rain(p: np.ndarray, rain: np.ndarray) -> np.ndarray:
    """Class probabilities `p` (CLASSES columns) with P(rain) replaced by `rain`, shared
    among the types as `p` shares it."""
    types = p[:, 1:] / np.maximum(p[:, 1:].sum(axis=1, keepdims=True), 1e-300)
    return np.hstack([(1 - rain)[:, None], rain[:, None] * types])


def expand(x: np.ndarray) -> np.ndarray:
    """Each row's values followed by every product x_i·x_j with i ≤ j."""
    rows, columns = np.triu_indices(x.shape[1])
    return np.hstack([x, x[:, rows] * x[:, columns]])


@cache
def load_tagger(params_file: str = PARAMS_FILE) -> Tagger:
    """The tagger shipped in the package (or an earlier one kept beside it)."""
    text = resources.files("rainbench.tagging").joinpath(params_file).read_text("utf-8")
    return Tagger.from_json(json.loads(text))


def _floats(values: np.ndarray) -> list[float]:
    # Nine significant digits survive a JSON round trip unchanged in every reader.
    return [float(f"{v:.9g}") if math.isfinite(v) else 0.0 for v in np.asarray(values).tolist()]
