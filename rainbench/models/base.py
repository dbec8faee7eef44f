"""The derainer interface every model implements, built-in or plug-in: a float batch
N×3×H×W in [0, 1] (RGB) in, one of the same shape out. Importing it does not import
torch; the tensors come from the caller.
"""

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rainbench.models.registry import DerainerError

if TYPE_CHECKING:
    import torch


def to_pixels(image: "torch.Tensor") -> np.ndarray:
    """A 3×H×W tensor in [0, 1] as the uint8 H×W×3 picture the metrics take: clipped,
    scaled by 255 and rounded."""
    return (image.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()


def read_checkpoint(checkpoint: Path, expected_format: str, refusal: str) -> dict:
    """A trained method's checkpoint, read as tensors only (`weights_only`), or a one-line
    `DerainerError`: it cannot be read, or is not in `expected_format` (`refusal` says
    what it should have been and how to get one)."""
    import torch

    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds for a file it cannot read
        raise DerainerError(f"cannot read the checkpoint {checkpoint}: {error}") from None
    if not isinstance(state, dict) or state.get("format") != expected_format:
        raise DerainerError(f"{checkpoint} is not {refusal}")
    return state


class Derainer(ABC):
    """Maps a float32 batch N×3×H×W in [0,1] (RGB) to one of the same shape.

    `device` is where the caller should put batches ("cpu", "cuda:0", …); the output
    comes back on the input's device.
    """

    name: str = "derainer"
    version: str = "0"  # bump whenever the outputs for the same input could change

    def __init__(self, device: str = "cpu"):
        self.device = device

    @abstractmethod
    def derain(self, batch: "torch.Tensor") -> "torch.Tensor": ...

    def derain_in_tiles(self, batch: "torch.Tensor", tile: int, overlap: int) -> "torch.Tensor":
        """`derain` for images too large to go through at once (`--tile`): overlapping
        tiles blended across their overlaps (`rainbench.models.tiling`). A derainer that
        can do better, exactly or with less memory, overrides this."""
        from rainbench.models.tiling import derain_tiled

        return derain_tiled(self, batch, tile, overlap)

    def options(self) -> dict:
        """The settings the outputs depend on, JSON-serialisable."""
        return {}

    def info(self) -> dict:
        """Name, version and options, JSON-serialisable: the provenance of results."""
        return {"name": self.name, "version": self.version, "options": self.options()}


class NumpyDerainer(Derainer):
    """A derainer written in numpy: it runs on the CPU whatever the device, on float32
    N×H×W×3 arrays, and its output goes back to the batch's device and dtype."""

    def derain(self, batch: "torch.Tensor") -> "torch.Tensor":
        import torch

        images = batch.detach().float().cpu().permute(0, 2, 3, 1).numpy()
        result = self.derain_images(np.ascontiguousarray(images))
        return torch.from_numpy(result).permute(0, 3, 1, 2).to(batch.device, batch.dtype)

    @abstractmethod
    def derain_images(self, images: np.ndarray) -> np.ndarray:
        """float32 N×H×W×3 in [0, 1] → the same shape."""
