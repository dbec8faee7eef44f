"""NLCL checkpoint files: their format name, writing one atomically (a reader sees the
old file or the complete new one, never a torn write), and reading a generator back."""

import io
from pathlib import Path

import torch

from rainbench.files import write_atomic
from rainbench.models.base import load_network
from rainbench.models.nlcl.generator import Generator

CHECKPOINT_FORMAT = "rainbench-nlcl"


def load_generator(state: dict, layer: str, where: str) -> Generator:
    """The `layer` generator ("background" or "rain") of a loaded checkpoint (`where`),
    at the size its config records (the paper's where it records none), in eval mode;
    a CheckpointError when its weights do not fit that size."""
    weights = state.get(layer)
    return load_network(Generator, state.get("config", {}), weights, f"{where} ({layer} generator)")


def save_atomic(state: dict, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomic(path, buffer.getvalue())
