"""What a trained derainer learnt from: the keys of the rainy and clean captures its run
selected, kept in its checkpoints under `trained_on` so that eval can tell which images
of a split it has seen. Each key (KEY_HEX hex digits of a capture's sha256) is stored as
its 12 bytes, one row of a sorted uint8 tensor per layer: 1.2 MB per 100k captures, and
read by a weights-only load as any tensor.
"""

from collections.abc import Iterable

import numpy as np
import torch

from rainbench.capture.probe import KEY_HEX
from rainbench.models.registry import DerainerError

TRAINED_ON = "trained_on"  # the checkpoint's entry: layer ("rainy", "clean") → keys
_KEY_BYTES = KEY_HEX // 2


def pack_keys(keys: Iterable[str]) -> torch.Tensor:
    """Keys as a sorted N×12 uint8 tensor."""
    raw = b"".join(bytes.fromhex(key) for key in sorted(set(keys)))
    return torch.from_numpy(np.frombuffer(raw, dtype=np.uint8).reshape(-1, _KEY_BYTES).copy())


def unpack_keys(packed: torch.Tensor) -> frozenset[str]:
    return frozenset(bytes(row).hex() for row in packed.cpu().numpy())


def trained_on(state: dict) -> frozenset[str] | None:
    """The keys of every capture a checkpoint's run trained on, rainy or clean; None when
    the checkpoint does not say (an older one, published weights imported). Keys in any
    other shape are refused in one line: eval would not know what the model has seen."""
    layers = state.get(TRAINED_ON)
    if layers is None:
        return None
    if not isinstance(layers, dict) or not all(
        isinstance(keys, torch.Tensor)
        and keys.dtype == torch.uint8
        and keys.dim() == 2
        and keys.shape[1] == _KEY_BYTES
        for keys in layers.values()
    ):
        raise DerainerError(
            f"the checkpoint's {TRAINED_ON!r} is not its captures' keys (a tensor of "
            f"{_KEY_BYTES}-byte rows per layer); it is damaged or not rainbench's"
        )
    return frozenset().union(*(unpack_keys(keys) for keys in layers.values()))
