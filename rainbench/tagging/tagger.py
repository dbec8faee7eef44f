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

from rainbench.errors import RainbenchError
from rainbench.tagging.features import (
    COMPATIBLE_VERSIONS,
    FAR_BEYOND,
    FEATURE_NAMES,
    TINY_HEIGHT,
)

RAIN_TYPES = ("drizzle", "streak", "storm", "fog-like")
CLASSES = ("clean", *RAIN_TYPES)
# A capture's layer: a clean one gets no rain type, only the looks_rainy flag.
LAYERS = ("rainy", "clean")

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
CAVEATS = ("tiny", "grey", "night", UNLIKE)
TRANSFORMS = ("linear", "log")
# What every parameter file holds; what later versions added has a default for the
# earlier files.
REQUIRED = (
    "version",
    "features_version",
    "classes",
    "inputs",
    "transforms",
    "offsets",
    "mean",
    "scale",
    "expanded_mean",
    "expanded_scale",
    "weights",
    "bias",
    "flag_threshold",
    "calibration",
)


def looks_night(features: dict[str, float]) -> bool:
    """Whether a capture of these features is a night scene to the tagger (its `night`
    caveat)."""
    return bool(features["brightness"] < NIGHT_BRIGHTNESS)


class TaggerError(RainbenchError):
    """A tagger that cannot judge a capture: its parameters give probabilities that are
    not numbers (they overflow), or the capture's features are not numbers."""


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
    source: str = ""  # the file it was read from, for messages; not a parameter

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """P(class) for each row of `features` (columns in FEATURE_NAMES order); with a
        detector, P(clean) is 1 − its P(rain), shared among the types as the softmax
        shares the rain among them. Never anything but numbers: a TaggerError instead."""
        # Overflow is caught below, as probabilities that are not numbers.
        with np.errstate(all="ignore"):
            logits = (self.design(features) @ self.weights.T + self.bias) / self.temperature
            logits -= logits.max(axis=1, keepdims=True)
            odds = np.exp(logits)
            p = odds / odds.sum(axis=1, keepdims=True)
            if self.detector is not None:
                p = with_rain(p, self.rain_probability(features))
        if not np.isfinite(p).all():
            raise self._not_numbers(features)
        return p

    def _not_numbers(self, features: np.ndarray) -> TaggerError:
        inputs = self._inputs(features)
        if not np.isfinite(inputs).all():
            bad = sorted({self.inputs[i] for i in np.nonzero(~np.isfinite(inputs))[1]})
            return TaggerError(
                f"a capture's features {', '.join(bad)} are not numbers; the tagger cannot judge it"
            )
        far = np.abs(inputs) > FAR_BEYOND
        if far.any():  # what overflowed is a stored value no picture gives, not the parameters
            bad = sorted({self.inputs[i] for i in np.nonzero(far)[1]})
            return TaggerError(
                f"a capture's features {', '.join(bad)} are far beyond any picture's; the "
                "tagger cannot judge it"
            )
        return TaggerError(
            f"{self.source or f'tagger {self.version}'}: its parameters give probabilities "
            "that are not numbers (they overflow); refused"
        )

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
        with np.errstate(all="ignore"):  # far beyond any limit: unlike-calibration
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
        """The tag for one capture of `layer` (one of LAYERS) from its class
        probabilities `p` (CLASSES order); `unlike`: its features are unlike every
        calibration example's. Any other layer is a ValueError, not tagged as rainy."""
        if layer not in LAYERS:
            raise ValueError(f"a capture's layer is one of {', '.join(LAYERS)}, not {layer!r}")
        caveats = tuple(
            name
            for name, applies in (
                ("tiny", height < TINY_HEIGHT),
                ("grey", features["saturation"] < GREY_SATURATION),
                ("night", looks_night(features)),
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
    def from_json(cls, data: dict, source: str = "") -> "Tagger":
        """The tagger `data` (a parameter file's JSON) describes, read from `source`. Every
        parameter is checked here, whoever wrote the file: arrays of finite numbers in
        the shapes the inputs give, divisors and the temperature above 0, known
        transforms and caveats, a flag threshold in [0, 1], every part a file must have;
        else a ValueError."""
        if not isinstance(data, dict):
            raise ValueError("not a tagger's parameters (not a JSON object)")
        _require(data, REQUIRED, "file")
        if data["classes"] != list(CLASSES):
            raise ValueError(f"tagger classes {data['classes']} are not {list(CLASSES)}")
        inputs = _names(data["inputs"], "inputs")
        unknown = set(inputs) - set(FEATURE_NAMES)
        if unknown:
            raise ValueError(f"tagger inputs {sorted(unknown)} are not features")
        transforms = _names(data["transforms"], "transforms")
        if set(transforms) - set(TRANSFORMS):
            raise ValueError(f"the tagger's transforms are not all one of {list(TRANSFORMS)}")
        if data["features_version"] not in COMPATIBLE_VERSIONS:
            raise ValueError(
                f"tagger of features version {data['features_version']}; these features "
                f"keep the values of versions {', '.join(COMPATIBLE_VERSIONS)} only"
            )
        capped = _names(data.get("capped", ["tiny", "grey", "night"]), "capped")
        if set(capped) - set(CAVEATS):
            raise ValueError(f"the tagger's capped are not all one of {list(CAVEATS)}")
        if not isinstance(data["version"], str) or not isinstance(data["calibration"], dict):
            raise ValueError("the tagger's version is not text or its calibration not an object")
        if not data["version"].isprintable():  # printed in outputs that are read by line
            raise ValueError(f"the tagger's version {data['version']!r} holds a control character")
        products = data.get("products", True)
        if not isinstance(products, bool):
            raise ValueError("the tagger's products is not true or false")
        offsets = _numbers(data["offsets"], "offsets")
        if offsets.ndim != 1:
            raise ValueError("the tagger's offsets are not a list of numbers")
        tagger = cls(
            version=data["version"],
            features_version=data["features_version"],
            inputs=inputs,
            transforms=transforms,
            offsets=tuple(offsets.tolist()),
            mean=_numbers(data["mean"], "mean"),
            scale=_numbers(data["scale"], "scale"),
            expanded_mean=_numbers(data["expanded_mean"], "expanded_mean"),
            expanded_scale=_numbers(data["expanded_scale"], "expanded_scale"),
            weights=_numbers(data["weights"], "weights"),
            bias=_numbers(data["bias"], "bias"),
            flag_threshold=_number(data["flag_threshold"], "flag_threshold"),
            calibration=data["calibration"],
            # Version 1 files predate these: pairwise products, no temperature, no spread.
            products=products,
            temperature=_number(data.get("temperature", 1.0), "temperature"),
            ood=data.get("ood"),
            capped=capped,
            detector=data.get("detector"),
            source=source,
        )
        _check_parts(tagger)
        _check_fit(tagger.calibration.get("fit"))
        _check_shapes(tagger)
        _check_values(tagger)
        return tagger


def _require(data: dict, names: tuple[str, ...], part: str) -> None:
    missing = [name for name in names if name not in data]
    if missing:
        raise ValueError(f"the tagger's {part} has no {', '.join(missing)}")


def _names(value: object, name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"the tagger's {name} are not a list of names")
    return tuple(value)


def _numbers(value: object, name: str) -> np.ndarray:
    """`value` as an array of finite floats: text, nulls, objects or NaN in a parameter
    file are refused here, not in a ufunc (or as NaN probabilities) later."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):  # ragged lists
        raise ValueError(f"the tagger's {name} holds something other than numbers") from None
    # numpy reads a true among numbers as 1.0: a hand-edited file's slip, refused too.
    if array.dtype.kind not in "iuf" or _holds_bool(value):
        raise ValueError(f"the tagger's {name} holds something other than numbers")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"the tagger's {name} holds a number that is not finite")
    return array


def _holds_bool(value: object) -> bool:
    if isinstance(value, list):
        return any(_holds_bool(item) for item in value)
    return isinstance(value, bool)


def _number(value: object, name: str) -> float:
    array = _numbers(value, name)
    if array.ndim:
        raise ValueError(f"the tagger's {name} is not a number")
    return float(array)


def _check_parts(tagger: Tagger) -> None:
    """The spread and the detector, objects of their own, hold what they must."""
    if tagger.ood is not None:
        if not isinstance(tagger.ood, dict):
            raise ValueError("the tagger's ood is not an object")
        _require(tagger.ood, ("mean", "precision", "limit"), "ood")
        _numbers(tagger.ood["mean"], "ood mean")
        _numbers(tagger.ood["precision"], "ood precision")
        _number(tagger.ood["limit"], "ood limit")
    detector = tagger.detector
    if detector is not None:
        if not isinstance(detector, dict):
            raise ValueError("the tagger's detector is not an object")
        _require(detector, ("inputs", "weights", "bias"), "detector")
        if set(_names(detector["inputs"], "detector inputs")) - set(tagger.inputs):
            raise ValueError("the tagger's detector reads inputs the tagger does not have")
        _numbers(detector["weights"], "detector weights")
        _number(detector["bias"], "detector bias")
        for name in ("scale", "shift"):  # version 3 on: settled on held-out decisions
            _number(detector.get(name, 0.0), f"detector {name}")


def _check_fit(fit: object) -> None:
    """The report of `rainbench tag --fit`, when the file has one: its labels per rain
    type are counts, which `tag-eval` adds up, under the rain types' names, which `tag
    --fit` prints when it reuses the file."""
    if fit is None:
        return
    if not isinstance(fit, dict):
        raise ValueError("the tagger's calibration fit is not an object")
    labels = fit.get("labels", {})
    if (
        not isinstance(labels, dict)
        or not set(labels) <= set(RAIN_TYPES)
        or not all(type(count) is int and count >= 0 for count in labels.values())
    ):
        raise ValueError("the tagger's calibration fit labels are not counts per rain type")


def _check_values(tagger: Tagger) -> None:
    """Numbers the tagger divides by, takes the logarithm of or compares with, in range."""
    if not (tagger.scale > 0).all() or not (tagger.expanded_scale > 0).all():
        raise ValueError("the tagger's scale and expanded_scale are not all above 0")
    if tagger.temperature <= 0:
        raise ValueError(f"the tagger's temperature {tagger.temperature} is not above 0")
    logs = [o for t, o in zip(tagger.transforms, tagger.offsets, strict=True) if t == "log"]
    if any(offset <= 0 for offset in logs):
        raise ValueError("the tagger's offsets of log transforms are not all above 0")
    if not 0 <= tagger.flag_threshold <= 1:
        raise ValueError(f"the tagger's flag_threshold {tagger.flag_threshold} is not in [0, 1]")


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
    return Tagger.from_json(json.loads(text), source=f"rainbench/tagging/{params_file}")


def _floats(values: np.ndarray) -> list[float]:
    # Nine significant digits survive a JSON round trip unchanged in every reader.
    return [float(f"{v:.9g}") if math.isfinite(v) else 0.0 for v in np.asarray(values).tolist()]
