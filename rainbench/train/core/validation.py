"""Validation of a training run: a method's rainy→clean translation on whole images,
psnr_y on a paired split and NIQE on real rainy captures, each beside the rainy input's
own score (the identity's).
"""

import math
import warnings
from collections.abc import Callable
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rainbench.data import Filters, RainDataset
from rainbench.models.base import to_pixels
from rainbench.models.nlcl.generator import to_model_range
from rainbench.shards.dataset import DatasetError

Translate = Callable[[torch.Tensor], torch.Tensor]  # rainy N×3×H×W in [-1, 1] → clean


class ValidationWarning(UserWarning):
    """A validation that scored nothing this time, or scored a diverged network's output
    as nan; training goes on."""


def validate(
    translate: Translate, model: nn.Module, dataset: str | Path, config, device: str
) -> dict:
    """psnr_y on up to val_images pairs of the paired split (in val_dataset when given),
    beside the rainy input's own, and niqe on up to val_images real rainy captures of the
    val_real split of `dataset`, beside the input's own. `model` is put in eval mode
    meanwhile."""
    scores = {}
    model.eval()
    with torch.inference_mode():
        if config.val_split:
            paired = config.val_dataset or dataset  # a path or an object store's URL
            scores.update(_validate_pairs(translate, paired, config, device))
        if config.val_real:
            scores.update(_validate_real(translate, dataset, config, device))
    model.train()
    return scores


def check_validation(dataset: str | Path, config, device: str) -> None:
    """What validation will read, checked before a run's first step: the paired split
    and the real rainy captures it names, and NIQE's parameters. A DatasetError naming
    the option otherwise."""
    if config.val_split:
        try:
            _pairs(config.val_dataset or dataset, config)
        except DatasetError as error:
            raise DatasetError(f"validation (--val-split): {error}") from None
    if config.val_real:
        check_niqe(device)
        try:
            _real_captures(dataset, config)
        except DatasetError as error:
            raise DatasetError(f"validation (--val-real): {error}") from None


def _pairs(dataset: str | Path, config) -> RainDataset:
    return RainDataset(dataset, mode="paired", paired_split=config.val_split, crop=None,
                       shuffle=False)  # fmt: skip


def _real_captures(dataset: str | Path, config) -> RainDataset:
    rainy = Filters(split=config.val_real, layer="rainy", rain_type=config.rain_types)
    return RainDataset(dataset, mode="single", filters=rainy, crop=None, shuffle=False)


def check_niqe(device: str):
    """NIQE through rainbench.metrics; a DatasetError naming the fix when its
    parameters are missing."""
    from rainbench.metrics.registry import MetricError, create_metric

    try:
        return create_metric("niqe", device=device)
    except MetricError as error:
        raise DatasetError(f"validation (--val-real): {error}") from None


def _validate_pairs(translate, dataset, config, device) -> dict[str, float]:
    from rainbench.metrics.fullref import psnr_y

    ours, identity = [], []
    for sample in islice(_pairs(dataset, config), config.val_images):
        gt = to_pixels(sample["gt"])
        derained = _derain(translate, sample["rain"], device)
        ours.append(math.nan if derained is None else psnr_y(derained, gt))
        identity.append(psnr_y(to_pixels(sample["rain"]), gt))
    _warn_if_diverged(ours, "psnr_y")
    return {"psnr_y": float(np.mean(ours)), "psnr_y_identity": float(np.mean(identity))}


def _validate_real(translate, dataset, config, device) -> dict[str, float]:
    from rainbench.metrics.registry import MetricError

    niqe = check_niqe(device)
    ours, identity = [], []
    for sample in islice(_real_captures(dataset, config), config.val_images):
        try:
            derained = _derain(translate, sample["image"], device)
            score = math.nan if derained is None else niqe(derained)
            own = niqe(to_pixels(sample["image"]))
        except MetricError:  # NIQE is undefined on flat pictures: that one is left out
            continue
        ours.append(score)
        identity.append(own)
    if not ours:  # a mean of nothing: numpy's warnings, in many lines, and a nan logged
        warnings.warn(
            f"validation (--val-real): niqe is undefined on every capture tried of split "
            f"{config.val_real} (flat pictures); no niqe is logged this time",
            ValidationWarning,
            stacklevel=2,
        )
        return {}
    _warn_if_diverged(ours, "niqe")
    return {"niqe": float(np.mean(ours)), "niqe_identity": float(np.mean(identity))}


def _derain(translate: Translate, rain: torch.Tensor, device: str) -> np.ndarray | None:
    """The translation of `rain` as 8-bit pixels; None where it holds a value that is no
    number (a diverged network), which 8 bits would turn into some colour."""
    out = (translate(to_model_range(rain[None].to(device))) + 1) / 2
    if not bool(torch.isfinite(out).all()):
        return None
    return to_pixels(out[0].float())


def _warn_if_diverged(scores: list[float], metric: str) -> None:
    """One line when some translations held non-finite values: their score is NaN, and
    so is the mean logged, as a diverged run's losses are."""
    failed = sum(math.isnan(score) for score in scores)
    if failed:
        warnings.warn(
            f"validation: the network's output held values that are no number (NaN or "
            f"infinite) on {failed} of {len(scores)} pictures: training has diverged; "
            f"{metric} is logged as nan",
            ValidationWarning,
            stacklevel=3,
        )
