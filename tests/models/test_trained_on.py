"""The captures a checkpoint trained on: keys packed as sorted 12-byte rows, read back
whatever the order or repeats given; a checkpoint without them says nothing."""

import pytest
import torch

from rainbench.models.registry import DerainerError
from rainbench.models.trained_on import pack_keys, trained_on, unpack_keys

KEYS = ["0f" * 12, "a1" * 12, "00ff" * 6]


def test_keys_pack_to_sorted_12_byte_rows_and_back():
    packed = pack_keys([*KEYS, KEYS[0]])
    assert packed.dtype == torch.uint8 and tuple(packed.shape) == (3, 12)
    assert [bytes(row).hex() for row in packed.numpy()] == sorted(KEYS)
    assert unpack_keys(packed) == frozenset(KEYS)
    assert tuple(pack_keys([]).shape) == (0, 12)


def test_a_checkpoint_names_its_rainy_and_clean_captures_or_nothing():
    state = {"trained_on": {"rainy": pack_keys(KEYS[:2]), "clean": pack_keys(KEYS[2:])}}
    assert trained_on(state) == frozenset(KEYS)
    assert trained_on({"format": "rainbench-nlcl", "step": 3}) is None  # an older one


def test_keys_in_another_shape_are_refused_in_one_line():
    for damaged in ({"rainy": [KEYS[0]]}, {"rainy": torch.zeros(2, 8, dtype=torch.uint8)}, "x"):
        with pytest.raises(DerainerError, match="is not its captures' keys") as refused:
            trained_on({"trained_on": damaged})
        assert "\n" not in str(refused.value)
