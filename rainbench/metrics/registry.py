"""The metric registry: every metric is a `MetricSpec` registered by name, and
`create_metric(name)` builds a ready `Metric`. Names are the public contract (see
DESIGN: psnr_y, ssim_y, psnr, ssim, niqe, brisque, piqe).
"""

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module

import numpy as np

from rainbench.errors import RainbenchError
from rainbench.versions import installed_versions, torch_version

# Bumped whenever any metric's computed value could change: cached scores and
# published results carry it.
PROTOCOL_VERSION = "1"

# What computes the metrics' values: the score cache keys each value by these versions.
METRIC_LIBRARIES = ("numpy", "scipy", "pillow", "torch", "pyiqa")
# What decodes a HEIC input, score's or eval's: recorded beside them, kept out of the
# cache's key so that no cached value is computed again for it. (Score refuses camera
# RAW; eval derains a RAW capture's preview, which ingest rendered with rawpy.)
DECODING_LIBRARIES = ("pillow-heif",)

# Modules whose import registers metrics; imported on first use, so that asking for
# psnr_y never imports torch.
_PROVIDERS = ("rainbench.metrics.fullref", "rainbench.metrics.noref")


class MetricError(RainbenchError):
    """A metric cannot run on this input or here (missing weights, wrong size, …);
    the message is one line saying what to do."""


@dataclass(frozen=True)
class MetricSpec:
    name: str
    full_reference: bool
    lower_is_better: bool
    description: str  # one line, for `rainbench metrics`
    # Builds the scoring function: (pred, ref) → float for full-reference metrics,
    # (pred,) → float for no-reference ones; images are uint8 H×W×3 RGB arrays. It takes
    # the keyword options every metric accepts: weights_dir, device, threads.
    factory: Callable[..., Callable[..., float]]
    min_side: int = 1  # the smallest image side the metric accepts
    # The most memory one call takes, per pixel of the image, measured (peak RSS over a
    # fresh process's, on the engine's workers): the engine sizes its worker count by it.
    peak_bytes_per_pixel: float = 0.0

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "full_reference": self.full_reference,
            "lower_is_better": self.lower_is_better,
            "description": self.description,
        }


_REGISTRY: dict[str, MetricSpec] = {}


def register(spec: MetricSpec) -> MetricSpec:
    _REGISTRY[spec.name] = spec
    return spec


class Metric:
    """A ready metric: `metric(pred)` or `metric(pred, ref)` → float; a full-reference
    one also takes `mask` (bool H×W), the pixels to score."""

    def __init__(self, spec: MetricSpec, **options):
        self.spec = spec
        self._score = spec.factory(**options)

    @property
    def name(self) -> str:
        return self.spec.name

    def __call__(
        self, pred: np.ndarray, ref: np.ndarray | None = None, mask: np.ndarray | None = None
    ) -> float:
        check_image(pred, "prediction")
        if min(pred.shape[:2]) < self.spec.min_side:
            raise MetricError(
                f"{self.name} needs images of at least {self.spec.min_side} px per side, "
                f"got {pred.shape[1]}×{pred.shape[0]}"
            )
        if not self.spec.full_reference:
            return float(self._score(pred))
        if ref is None:
            raise MetricError(f"{self.name} is full-reference: give a reference image")
        check_image(ref, "reference")
        mismatch = size_mismatch(pred, ref)
        if mismatch:
            raise MetricError(f"{self.name}: {mismatch}")
        if mask is None:
            return float(self._score(pred, ref))
        return float(self._score(pred, ref, mask))


def size_mismatch(pred: np.ndarray, ref: np.ndarray) -> str | None:
    """Why a full-reference metric cannot compare `pred` with `ref`, or None when it can."""
    if ref.shape == pred.shape:
        return None
    return (
        f"prediction {pred.shape[1]}×{pred.shape[0]} and reference "
        f"{ref.shape[1]}×{ref.shape[0]} differ in size"
    )


def create_metric(name: str, **options) -> Metric:
    """The metric registered as `name`, built with `options` (e.g. weights_dir=…)."""
    return Metric(check_metric(name), **options)


def check_metric(name: str) -> MetricSpec:
    """The spec registered as `name`, without building the metric; MetricError if unknown."""
    _load_providers()
    if name not in _REGISTRY:
        raise MetricError(f"unknown metric {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def list_metrics() -> list[MetricSpec]:
    _load_providers()
    return sorted(_REGISTRY.values(), key=lambda spec: (not spec.full_reference, spec.name))


def _load_providers() -> None:
    for module in _PROVIDERS:
        import_module(module)


def check_image(image: np.ndarray, what: str, rgb: bool = True) -> None:
    """Refuse an image the convention does not define (metrics.md): not uint8, or not
    H×W×3 RGB (`rgb`; otherwise H×W or H×W×C)."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise MetricError(
            f"the {what} must be a uint8 array, got {getattr(image, 'dtype', type(image))}"
        )
    if rgb and (image.ndim != 3 or image.shape[2] != 3):
        raise MetricError(f"the {what} must be H×W×3 RGB, got shape {image.shape}")
    if image.ndim not in (2, 3):
        raise MetricError(f"the {what} must be H×W or H×W×C, got shape {image.shape}")


def cache_versions() -> dict[str, str]:
    """The versions the score cache keys a value by (those installed; no import needed)."""
    return installed_versions(METRIC_LIBRARIES)


def versions() -> dict[str, str]:
    """The versions an output records: the cache's, torch's with its build tag (which
    the cache's key leaves out), and those of what decodes the inputs."""
    found = {**cache_versions(), **installed_versions(DECODING_LIBRARIES)}
    if "torch" in found:
        found["torch"] = torch_version()
    return found
