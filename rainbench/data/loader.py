"""`Loader`: a torch DataLoader over a `RainDataset` that knows what it has handed out,
so a checkpoint can resume in the middle of an epoch with exactly the samples left.
"""

from collections.abc import Iterator

import numpy as np
from torch.utils.data import DataLoader

from rainbench.data.dataset import RainDataset, Slot, current_slot

_PLACE = ("__slot__", "__position__")  # where each item comes from, as the dataset says


class Loader:
    """Iterate batches; `state_dict()` at any point, `load_state_dict()` to resume.

    Keyword arguments go to `torch.utils.data.DataLoader` (batch_size, num_workers,
    pin_memory, …). The layout of slots (world size × workers) must be the same when
    resuming.
    """

    def __init__(self, dataset: RainDataset, **options):
        self.dataset = dataset
        self.options = options
        self._consumed: dict[int, int] = {}

    def __iter__(self) -> Iterator[dict]:
        loader = DataLoader(self.dataset, **self.options)
        for batch in loader:
            # A batch's tensors of slots and positions; one item's ints with batch_size=None.
            slots, positions = (np.atleast_1d(batch[name]).tolist() for name in _PLACE)
            for slot, position in zip(slots, positions, strict=True):
                self._consumed[slot] = max(self._consumed.get(slot, 0), position + 1)
            yield batch
        # The epoch is over: the next one starts from nothing.
        self._consumed = {}
        self.dataset.load_state_dict(self.dataset.state_dict())

    def __len__(self) -> int:
        """Batches an epoch yields in this process: each loader process (num_workers of
        them, else this one) batches its own share of this rank's samples and ends with
        its own partial batch, left out with drop_last."""
        size = self.options.get("batch_size", 1) or 1  # None: items one by one
        workers = max(1, self.options.get("num_workers", 0))
        rank = current_slot(self.dataset.rank, self.dataset.world_size)  # outside a worker
        batches = 0
        for worker in range(workers):
            slot = Slot(rank.index * workers + worker, rank.count * workers)
            items = self.dataset.slot_items(slot)
            batches += items // size if self.options.get("drop_last") else -(-items // size)
        return batches

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.dataset.epoch:
            self._consumed = {}
        self.dataset.set_epoch(epoch)

    def state_dict(self) -> dict:
        return self.dataset.state_dict(self._consumed)

    def load_state_dict(self, state: dict) -> None:
        self.dataset.load_state_dict(state)
        self._consumed = dict(state["consumed"])
