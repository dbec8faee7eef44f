"""Import the published NLCL background generator into our own checkpoint format. The
file is read with weights-only unpickling, so a checkpoint from elsewhere cannot run
code, and its tensors must match the published layout exactly.
"""

from pathlib import Path

import torch

from rainbench.models.base import CheckpointError, load_weights, weights_misfit
from rainbench.models.nlcl.checkpoint import CHECKPOINT_FORMAT, save_atomic
from rainbench.models.nlcl.generator import Generator

# The released generator's shape.
CHANNELS, BLOCKS = 32, 16
VERSION = 1
# Keys under which released checkpoints commonly nest the state dict, in order of
# preference: a file holding both generators yields the background one (netG_B).
NESTING_KEYS = ("state_dict", "model", "netG_B", "netG", "generator", "params")

StateDict = dict[str, torch.Tensor]


def published_layout() -> dict[str, tuple[int, ...]]:
    """Key → shape of the released background generator (32 channels, 16 blocks)."""
    with torch.device("meta"):
        generator = Generator(CHANNELS, BLOCKS)
    return {key: tuple(value.shape) for key, value in generator.state_dict().items()}


def import_published(path: Path) -> StateDict:
    """The published background generator's state dict, checked and ready for
    `Generator().load_state_dict`: float32 tensors in the layout's key order. Accepts a
    bare state dict, one nested under a common key or as a dictionary's only tensor
    dictionary, and DataParallel's "module." prefixes."""
    loaded = load_weights(path)
    if isinstance(loaded, dict) and loaded.get("format") == CHECKPOINT_FORMAT:
        # What rainbench train nlcl writes (nlcl.pt, a run's checkpoints) or an earlier
        # import: nothing to convert, and it holds several state dicts none of which is
        # the release's nesting.
        raise CheckpointError(
            f"{path} is already a rainbench NLCL checkpoint: nothing to import, use it as "
            f"it is: rainbench eval --model nlcl --checkpoint {path}"
        )
    state = {key.removeprefix("module."): value for key, value in _find_state(loaded, path).items()}
    check_layout(state, str(path))
    return {key: state[key].detach().to(torch.float32).contiguous() for key in published_layout()}


def check_layout(state: StateDict, where: str) -> None:
    """Raise CheckpointError naming the first missing or unexpected key, or wrong shape."""
    problem = weights_misfit(published_layout(), state)
    if problem:
        raise CheckpointError(f"{where}: {problem} (not the published NLCL generator layout)")


def save_generator_checkpoint(state: StateDict, out: Path, source_sha256: str) -> None:
    """Write `state` (the background generator) as an `nlcl` derainer checkpoint,
    atomically: a reader sees the old file or the complete new one."""
    check_layout(state, "background state")
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "version": VERSION,
        "background": state,
        "rain": None,  # the release has no rain generator
        "config": {"channels": CHANNELS, "blocks": BLOCKS},
        "imported_from": {"sha256": source_sha256, "layout": "published NLCL release"},
    }
    save_atomic(checkpoint, out)


def _find_state(loaded: object, path: Path) -> StateDict:
    if _is_state(loaded):
        return loaded
    if isinstance(loaded, dict):
        for key in NESTING_KEYS:
            if _is_state(loaded.get(key)):
                return loaded[key]
        nested = [value for value in loaded.values() if _is_state(value)]
        if len(nested) == 1:
            return nested[0]
        if nested:
            keys = [str(key) for key, value in loaded.items() if _is_state(value)]
            raise CheckpointError(f"{path}: several state dicts ({', '.join(keys)}), none known")
    raise CheckpointError(f"{path}: no state dict of tensors found")


def _is_state(value: object) -> bool:
    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())
    )
