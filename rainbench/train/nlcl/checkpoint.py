"""NLCL checkpoint files: their format name, and writing one atomically (a reader sees
the old file or the complete new one, never a torn write)."""

import os
import tempfile
from pathlib import Path

import torch

CHECKPOINT_FORMAT = "rainbench-nlcl"


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
