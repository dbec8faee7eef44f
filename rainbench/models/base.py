"""The derainer interface every model implements, built-in or plug-in: a float batch
N×3×H×W in [0, 1] (RGB) in, one of the same shape out; and reading a trained method's
checkpoint, weights-only. Importing it does not import torch; the tensors come from the
caller.
"""

import pickle
import re
import warnings
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rainbench.errors import first_line
from rainbench.files import regular_file
from rainbench.models.registry import DerainerError

if TYPE_CHECKING:
    import torch
    from torch import nn


def to_pixels(image: "torch.Tensor") -> np.ndarray:
    """A 3×H×W tensor in [0, 1] as the uint8 H×W×3 picture the metrics take: clipped,
    scaled by 255 and rounded."""
    return (image.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()


class CheckpointError(DerainerError):
    """A checkpoint file that cannot be read, or is not what it should be."""


def read_checkpoint(checkpoint: Path, expected_format: str, refusal: str) -> dict:
    """A trained method's checkpoint, read as tensors only (`load_weights`), or a one-line
    `CheckpointError`: it cannot be read, or is not in `expected_format` (`refusal` says
    what it should have been and how to get one)."""
    state = load_weights(checkpoint)
    if not isinstance(state, dict) or state.get("format") != expected_format:
        raise CheckpointError(f"{checkpoint} is not {refusal}")
    return state


def load_weights(path: Path) -> object:
    """What a PyTorch checkpoint file holds, unpickled weights-only (tensors, numbers,
    strings and containers of them: nothing in it runs), on the CPU; or a one-line
    `CheckpointError` saying what the file is not. torch's own advice to load unsafely
    when that fails is never passed on. A FIFO or a device is refused unopened, and an
    archive with a compressed member unread: torch.save never compresses one, and torch
    would inflate it whole, however large it says it is."""
    import torch

    try:
        with open(regular_file(path), "rb") as handle:
            head = handle.read(len(_LEGACY))
    except OSError as error:
        raise CheckpointError(f"{path} cannot be read: {first_line(error)}") from None
    if head.startswith(_ZIP) and (packed := _compressed_member(path)):
        raise CheckpointError(
            f"{path} holds a compressed member ({packed}), which torch.save never writes: "
            "not loaded, as it may inflate beyond memory"
        )
    try:
        with warnings.catch_warnings():
            # torch warns of pickle protocols it did not write; the error below says
            # whatever stops the load.
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds for a file it cannot read
        raise CheckpointError(f"{path} {_not_loaded(path, head, error)}") from None


# How torch.save starts a file: a zip archive, or (before torch 1.6) a pickle of its
# magic number, protocol 2.
_ZIP = b"PK\x03\x04"
_LEGACY = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19"
# How every pickle of protocol 2 or later starts (its PROTO opcode): torch's older format
# among them, and a pickle that holds objects rather than weights.
_PICKLE = b"\x80"


def _compressed_member(path: Path) -> str | None:
    """The first member of a zip archive that is not stored as it is; None when every
    one is, or the archive cannot be listed (torch.load then says what it is)."""
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.infolist():
                if member.compress_type != zipfile.ZIP_STORED:
                    return member.filename
    except (zipfile.BadZipFile, OSError, ValueError):
        pass
    return None


def _not_loaded(path: Path, head: bytes, error: Exception) -> str:
    """Why torch.load refused the file, from what it starts with: what follows its path."""
    # The weights-only unpickler's refusal; on a file that is neither archive nor pickle
    # (a PNG) it only means the first byte is no opcode it takes.
    if isinstance(error, pickle.UnpicklingError) and head.startswith((_ZIP, _PICKLE)):
        # What it refused: a global (a function or class named in the pickle), else the
        # unpickler's own words, such as an opcode it does not take.
        named = re.search(r"GLOBAL ([\w.]+)", str(error)) or re.search(
            r"WeightsUnpickler error:\s*([^\n.]+)", str(error)
        )
        what = f" ({named.group(1).strip()})" if named else ""
        return f"holds objects a weights-only load refuses{what}: not loaded for safety"
    if head.startswith(_ZIP):
        if not zipfile.is_zipfile(path):
            return "is truncated: a zip archive without its end (copy the file again)"
        with zipfile.ZipFile(path) as archive:
            if not any(name.endswith("data.pkl") for name in archive.namelist()):
                return "is not a PyTorch checkpoint: a zip archive without torch's data.pkl"
        return f"is damaged: {_first_sentence(error)}"
    if head == _LEGACY:
        if isinstance(error, EOFError) or "EOF" in str(error):
            return "is truncated: it ends before its tensors"
        return f"is damaged: {_first_sentence(error)}"
    return "is not a PyTorch checkpoint (neither torch.save's zip archive nor its older format)"


def _first_sentence(error: Exception) -> str:
    """torch's messages go on with advice after their first sentence."""
    return first_line(error).split(". ")[0].rstrip(".")


def load_network(
    build: Callable[..., "nn.Module"], config: object, weights: object, where: str
) -> "nn.Module":
    """The network `build(channels=…, blocks=…)` makes at the size a checkpoint's `config`
    records (build's defaults for what it does not), holding the checkpoint's `weights`,
    in eval mode; else a one-line CheckpointError naming `where`. A config never costs
    more memory than the weights the file holds: no two weights may share values (an
    expanded tensor, a storage held twice), the network is laid out on torch's meta
    device first (nothing allocated) with no more blocks than there are weights, and it
    must match them key by key and shape by shape, with finite floating-point values."""
    import torch

    if not isinstance(weights, dict) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in weights.items()
    ):
        raise CheckpointError(f"{where} is not a state dict of tensors")
    # Before their storages are measured: a sparse tensor has none.
    if problem := _not_dense(weights):
        raise CheckpointError(f"{where}: {problem}")
    held = {w.untyped_storage().data_ptr(): w.untyped_storage().nbytes() for w in weights.values()}
    if sum(w.numel() * w.element_size() for w in weights.values()) > sum(held.values()):
        raise CheckpointError(
            f"{where}: its weights share their values (expanded tensors, or one storage "
            "held twice), as no trained network's do"
        )
    size = (
        {name: config[name] for name in ("channels", "blocks") if name in config}
        if isinstance(config, dict)
        else None
    )
    no_size = CheckpointError(f"{where}: its config's channels and blocks are no network's size")
    if (
        size is None
        or not all(type(value) is int for value in size.values())
        or size.get("channels", 1) < 1
        or not 0 <= size.get("blocks", 0) <= len(weights)
    ):
        raise no_size
    try:
        with torch.device("meta"):
            network = build(**size)
    except (RuntimeError, ValueError):  # sizes torch cannot lay out, even unallocated
        raise no_size from None
    unset = set(dict(network.named_buffers())) - set(network.state_dict())
    if unset:  # to_empty would leave them as whatever the memory held
        raise TypeError(f"{build.__name__} has buffers outside its state dict: {sorted(unset)}")
    layout = {key: tuple(value.shape) for key, value in network.state_dict().items()}
    problem = weights_misfit(layout, weights)
    if problem:
        raise CheckpointError(f"{where}: {problem}")
    network.to_empty(device="cpu")
    network.load_state_dict(weights)
    return network.eval()


def weights_misfit(layout: dict[str, tuple[int, ...]], weights: dict) -> str | None:
    """How `weights` (name → tensor) do not fit a network's `layout` (name → shape), the
    first thing found; None when they do: the same keys, shapes, dense float16, bfloat16,
    float32 or float64 values, finite."""
    import torch

    if problem := _not_dense(weights):
        return problem
    for key, shape in layout.items():
        value = weights.get(key)
        if value is None:
            return f"missing key {key!r}"
        if tuple(value.shape) != shape:
            return f"{key!r} has shape {tuple(value.shape)}, expected {shape}"
        # Not float8 either: torch cannot check its values for NaN.
        if value.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
            return f"{key!r} is {value.dtype}, expected float16, bfloat16, float32 or float64"
    unexpected = next((key for key in weights if key not in layout), None)
    if unexpected is not None:
        return f"unexpected key {unexpected!r}"
    bad = next((key for key, value in weights.items() if not torch.isfinite(value).all()), None)
    return f"{bad!r} holds NaN or infinite values" if bad is not None else None


def _not_dense(weights: dict) -> str | None:
    """The first tensor in `weights` that holds no plain values in memory (a sparse one, or
    one on torch's meta device, which a weights-only load keeps), said; None if none."""
    import torch

    for key, value in weights.items():
        if isinstance(value, torch.Tensor) and (value.layout != torch.strided or value.is_meta):
            where = "meta device" if value.is_meta else str(value.layout)
            return f"{key!r} is a {where} tensor, expected a dense one of values"
    return None


class Derainer(ABC):
    """Maps a float32 batch N×3×H×W in [0,1] (RGB) to one of the same shape.

    `device` is where the caller should put batches ("cpu", "cuda:0", …); the output
    comes back on the input's device.
    """

    name: str = "derainer"
    version: str = "0"  # bump whenever the outputs for the same input could change
    # The keys of the captures its weights were trained on, when its checkpoint says
    # (`rainbench.models.trained_on`): eval counts the images of a split among them.
    trained_on: frozenset[str] | None = None

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
