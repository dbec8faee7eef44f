"""`Loader`: a torch DataLoader over a `RainDataset` that knows what it has handed out,
so a checkpoint can resume in the middle of an epoch with exactly the batches left, in
the order an uninterrupted run would have had them.
"""

from collections.abc import Iterable, Iterator

import numpy as np
from torch.utils.data import DataLoader

from rainbench.data.dataset import RainDataset, Slot, current_slot
from rainbench.errors import RainbenchError
from rainbench.shards.dataset import DatasetError

_PLACE = ("__slot__", "__position__")  # where each item comes from, as the dataset says


class Loader:
    """Iterate batches; `state_dict()` at any point, `load_state_dict()` to resume.

    Keyword arguments go to `torch.utils.data.DataLoader` (batch_size, num_workers,
    pin_memory, …). The layout of slots (world size × workers) must be the same when
    resuming; `load_state_dict` refuses another.
    """

    def __init__(self, dataset: RainDataset, **options):
        self.dataset = dataset
        self.options = options
        self._consumed: dict[int, int] = {}

    def __iter__(self) -> Iterator[dict]:
        loader = DataLoader(self.dataset, **self.options)
        for batch in _in_one_line(loader):
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
        return sum(self._batches(slot) for slot in self._slots())

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.dataset.epoch:
            self._consumed = {}
        self.dataset.set_epoch(epoch)

    def state_dict(self) -> dict:
        rank = current_slot(self.dataset.rank, self.dataset.world_size)  # outside a worker
        layout = {"world_size": rank.count, "workers": self.options.get("num_workers", 0)}
        return {**self.dataset.state_dict(self._consumed), "layout": layout}

    def load_state_dict(self, state: dict) -> None:
        self._check_layout(state.get("layout"))
        consumed = {int(slot): int(n) for slot, n in state["consumed"].items()}
        self.dataset.load_state_dict(state, first_worker=self._next_worker(consumed))
        self._consumed = consumed

    def _slots(self) -> list[Slot]:
        """This rank's slots, one per DataLoader worker (one without workers)."""
        workers = max(1, self.options.get("num_workers", 0))
        rank = current_slot(self.dataset.rank, self.dataset.world_size)  # outside a worker
        return [Slot(rank.index * workers + w, rank.count * workers) for w in range(workers)]

    def _batch_size(self) -> int:
        return self.options.get("batch_size", 1) or 1  # None: items one by one

    def _batches(self, slot: Slot) -> int:
        """The batches a slot's worker yields in an epoch."""
        items, size = self.dataset.slot_items(slot), self._batch_size()
        return items // size if self.options.get("drop_last") else -(-items // size)

    def _next_worker(self, consumed: dict[int, int]) -> int:
        """The worker whose batch an uninterrupted epoch would take next, from what each
        slot has handed out. DataLoader visits its workers 0, 1, … in turn and skips the
        ones that are done, so every worker not yet done has given a batch at each of its
        visits: those visited in the current round one more than the others. The next is
        the first one not done with fewer batches than the most, else the first not done."""
        slots = self._slots()
        taken = [-(-consumed.get(slot.index, 0) // self._batch_size()) for slot in slots]
        going = [w for w, slot in enumerate(slots) if taken[w] < self._batches(slot)]
        if not going:
            return 0
        most = max(taken[w] for w in going)
        return next((w for w in going if taken[w] < most), going[0])

    def _check_layout(self, saved: dict | None) -> None:
        """Refuse a state saved by another world size × workers: its slots stride the
        epoch's order differently, so its counts would repeat crops or skip them. (A state
        from before the layout was recorded is taken as it is.)"""
        if saved is None:
            return
        world_size = current_slot(self.dataset.rank, self.dataset.world_size).count
        workers = self.options.get("num_workers", 0)
        if (saved["world_size"], max(1, saved["workers"])) != (world_size, max(1, workers)):
            raise DatasetError(
                f"the loader state was saved by {saved['world_size']} rank(s) × "
                f"{saved['workers']} DataLoader workers and this loader has {world_size} × "
                f"{workers}: resume with the same world size and num_workers, or crops would "
                "repeat or go missing"
            )


def _in_one_line(batches: Iterable) -> Iterator:
    """The batches; an expected error raised in a DataLoader worker is raised again with
    its own one-line message, as it is without workers, not torch's "Caught … in
    DataLoader worker process n" and the worker's traceback."""
    iterator = iter(batches)
    try:
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                return
            except RainbenchError as error:
                message = _own_message(error)
                if message == str(error):  # raised here, not in a worker
                    raise
                raise type(error)(message) from None
            yield batch
    finally:
        # The workers end with the iteration, not when the iterator is collected: an
        # error's traceback holds it until the process exits, and the exit then waits
        # for its workers, forever for workers that ignore SIGTERM (`rainbench train`'s).
        shutdown = getattr(iterator, "_shutdown_workers", None)  # with num_workers > 0
        if shutdown is not None:
            shutdown()


def _own_message(error: RainbenchError) -> str:
    """What the error said in the worker: torch's message ends with the worker's
    traceback, whose last entry is `module.Type: message`."""
    text = str(error)
    if "in DataLoader worker process" not in text.partition("\n")[0]:
        return text
    kind = type(error)
    for prefix in (f"{kind.__module__}.{kind.__qualname__}: ", f"{kind.__qualname__}: "):
        if prefix in text:
            return text.rpartition(prefix)[2].strip()
    return text
