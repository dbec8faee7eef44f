"""No-reference metrics for real rain (niqe, brisque, piqe, musiq, topiq_nr), computed
by pyiqa. pyiqa is imported here and in `banded` (NIQE and PIQE band by band, to pyiqa's
values) and nowhere else: its licence is non-commercial, so these two modules are the
ones to replace. Weight files come from `weights`, never a download.
"""

import pickle
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, redirect_stdout
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from rainbench.errors import first_line
from rainbench.metrics import weights
from rainbench.metrics.registry import MetricError, MetricSpec, register
from rainbench.threads import torch_threads

INSTALL_HINT = "pip install 'rainbench[eval]'"


@dataclass(frozen=True)
class PyiqaMetric:
    name: str  # ours and pyiqa's
    lower_is_better: bool
    description: str
    min_side: int = 1
    options: dict = field(default_factory=dict)  # passed to pyiqa.create_metric
    peak_bytes_per_pixel: float = 0.0  # MetricSpec's; 0 where not measured


METRICS = (
    PyiqaMetric(
        "niqe",
        True,
        "NIQE, LIVE parameters (pyiqa); compare methods only at equal resolution",
        min_side=96,  # one 96×96 block
        # In bands (`banded`), benchmarks/metric_memory.py: 137 B/px at 2 MP, 43 at 12 MP
        # (pyiqa's whole-image call: 420–430).
        peak_bytes_per_pixel=140,
    ),
    PyiqaMetric(
        "brisque",
        True,
        "BRISQUE, LIVE SVR (pyiqa)",
        # pyiqa halves the image twice (MATLAB's bicubic imresize); on a half below 4 px
        # its reflected border indexes past the edge: an IndexError, not a score.
        min_side=7,
    ),
    PyiqaMetric(
        "piqe",
        True,
        "PIQE (pyiqa); needs no weights",
        min_side=16,  # one 16×16 block
        # In bands: 66 B/px at 2 MP, 39 at 12 MP (pyiqa's whole-image call: 96–111).
        peak_bytes_per_pixel=70,
    ),
    PyiqaMetric("musiq", False, "MUSIQ trained on KonIQ-10k (pyiqa), ~0..100"),
    # Its ResNet-50 comes with the checkpoint: without backbone_pretrain=False timm would
    # first download ImageNet weights.
    PyiqaMetric(
        "topiq_nr",
        False,
        "TOPIQ no-reference, KonIQ-10k, ResNet-50 (pyiqa), 0..1",
        options={"backbone_pretrain": False},
    ),
)


def _build(
    metric: PyiqaMetric,
    weights_dir: str | Path | None = None,
    device: str | None = None,
    threads: int | None = None,
):
    """The scoring function `(uint8 H×W×3 RGB) → float`, with the pyiqa model built once
    here (on CPU unless `device` is given) and reused for every image.

    `threads` caps torch's CPU threads while it builds and while each call runs, and the
    caller's count is put back after each (None: left as it is): the engine asks for one
    per worker process when it runs several, so they do not fight over the cores.
    """
    torch, pyiqa = _import_pyiqa()
    held = partial(torch_threads, requested=threads) if threads else nullcontext
    device = _device(torch, device)
    options = dict(metric.options)
    weight_file = weights.require(metric.name, weights_dir)
    if weight_file is not None:
        # An explicit path: pyiqa then never looks for its download URL.
        options["pretrained_model_path"] = str(weight_file)
    # pyiqa prints "Loading pretrained model" to stdout, which may be the CLI's --json.
    with held(), redirect_stdout(sys.stderr):
        try:
            model = pyiqa.create_metric(metric.name, device=device, **options)
        # A weight file that is no PyTorch file (damaged, another file renamed): one line.
        except (pickle.UnpicklingError, EOFError, RuntimeError) as error:
            # Out of the device's memory (a RuntimeError too) is no fault of the file.
            if weight_file is None or isinstance(error, torch.cuda.OutOfMemoryError):
                raise
            provide = weights.KNOWN_FILES[weight_file.name].provide(weights_dir)
            raise MetricError(
                f"{metric.name}: {weight_file} does not load ({first_line(error)}); "
                f"replace it: {provide}"
            ) from None
    call = _banded(metric.name, model)

    def score(pred: np.ndarray) -> float:
        # torch takes no negative strides (`bgr[..., ::-1]`); a contiguous array is not copied.
        x = torch.tensor(np.ascontiguousarray(pred), device=device).permute(2, 0, 1).unsqueeze(0)
        try:
            with (
                held(),
                torch.inference_mode(),
                full_float32(torch, device),
                warnings.catch_warnings(),
            ):
                # On a flat image torch warns (NIQE's cov() of no blocks) before the value
                # fails below: that one line is what is said, not the warning beside it.
                warnings.simplefilter("ignore", UserWarning)
                value = float(call(x.float() / 255))
        # Flat images leave NIQE without statistics: one image fails, not the run.
        except (RuntimeError, ValueError) as error:
            raise MetricError(f"{metric.name} fails on this image: {first_line(error)}") from error
        if not np.isfinite(value):
            raise MetricError(f"{metric.name} is undefined on this image (flat regions?)")
        return value

    return score


@contextmanager
def full_float32(torch, device) -> Iterator[None]:
    """On CUDA, convolutions and matrix products in float32 rather than TF32, which
    cuDNN uses for convolutions by default: TF32 keeps 10 bits of mantissa, which moved
    PIQE by 0.56 on an H200 (its block thresholds tip) and would move every learned
    metric off the CPU's value."""
    if device.type != "cuda":
        yield
        return
    convolutions, products = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = convolutions
        torch.backends.cuda.matmul.allow_tf32 = products


def _banded(name: str, model):
    """pyiqa's call for this metric, or its band-by-band equivalent where there is one."""
    from rainbench.metrics import banded  # imports pyiqa: only once it is known to import

    if name == "niqe":
        pristine = model.net
        return partial(
            banded.niqe, mu_pristine=pristine.mu_pris_param, cov_pristine=pristine.cov_pris_param
        )
    if name == "piqe":
        return banded.piqe
    return model


def _import_pyiqa():
    try:
        import pyiqa
        import torch
    # A torchvision that does not match torch fails at import with a RuntimeError.
    except (ImportError, RuntimeError) as error:
        raise MetricError(
            f"no-reference metrics need torch and pyiqa ({first_line(error)}): {INSTALL_HINT}"
        ) from error
    return torch, pyiqa


def _device(torch, device: str | None):
    if device is None:
        return torch.device("cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError as error:
        raise MetricError(f"unknown device {device!r}: {error}") from error
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise MetricError(f"device {device!r} asked for, but CUDA is not available here")
    return chosen


for _metric in METRICS:
    register(
        MetricSpec(
            name=_metric.name,
            full_reference=False,
            lower_is_better=_metric.lower_is_better,
            description=_metric.description,
            factory=partial(_build, _metric),
            min_side=_metric.min_side,
            peak_bytes_per_pixel=_metric.peak_bytes_per_pixel,
        )
    )
