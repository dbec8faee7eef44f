"""NLCL checkpoint files: their format name, writing one atomically (a reader sees the
old file or the complete new one, never a torn write), and reading a generator back."""

import os
import tempfile
from pathlib import Path

import torch

from rainbench.train.nlcl.networks import Generator

CHECKPOINT_FORMAT = "rainbench-nlcl"


def load_generator(state: dict, layer: str) -> Generator:
    """The `layer` generator ("background" or "rain") of a loaded checkpoint, at the size
    its config records (the paper's where it records none), in eval mode."""
    config = state.get("config", {})
    generator = Generator(config.get("channels", 32), config.get("blocks", 16))
    generator.load_state_dict(state[layer])
    return generator.eval()


def save_atomic(state: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    temporary = Path(name)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
