"""`Loader`: a torch DataLoader over a `RainDataset` that knows what it has handed out,
so a checkpoint can resume in the middle of an epoch with exactly the batches left, in
the order an uninterrupted run would have had them.
"""

import itertools
import warnings
from collections.abc import Callable, Iterable, Iterator

from torch.utils.data import DataLoader, default_collate, default_convert

from rainbench.data.dataset import RainDataset, Slot, current_slot
from rainbench.errors import RainbenchError
from rainbench.shards.dataset import DatasetError


class Loader:
    """Iterate batches; `state_dict()` at any point, `load_state_dict()` to resume.

    Keyword arguments go to `torch.utils.data.DataLoader` (batch_size, num_workers,
    pin_memory, collate_fn, …). The layout of slots (world size × workers) must be the
    same when resuming; `load_state_dict` refuses another. With `equal_ranks`, every
    rank's epoch ends after the same number of batches, the shortest rank's, as DDP
    needs; the longer ranks' last crops are left out of that epoch.
    """

    def __init__(self, dataset: RainDataset, *, equal_ranks: bool = False, **options):
        self.dataset = dataset
        self.equal_ranks = equal_ranks
        self.options = options
        self._consumed: dict[int, int] = {}
        self._resuming = False  # a state was loaded: the next iteration resumes it

    def __iter__(self) -> Iterator:
        # Each iteration is a pass over the epoch from its start, as DataLoader's, unless
        # a state was loaded since the last one began: one left by a `break` would else
        # leave its counts to the next, which the state and equal_ranks' length read. The
        # dataset's own set_epoch, to another epoch, drops the state loaded: its counts too.
        if not (self._resuming and self.dataset.resuming):
            self._consumed = {}
            self.dataset.load_state_dict(self.dataset.state_dict())
        self._resuming = False
        batched = self.options.get("batch_size", 1) is not None
        collate = _Placed(self.options.get("collate_fn"), batched)
        loader = DataLoader(self.dataset, **{**self.options, "collate_fn": collate})
        batches = _in_one_line(loader)
        left = len(self) - self._taken() if self.equal_ranks else None
        if self.equal_ranks and len(self) == 0 and sum(map(self._batches, self._slots())):
            warnings.warn(self._empty_epoch(), stacklevel=2)
        try:
            for places, batch in itertools.islice(batches, left):
                for slot, position in places:
                    self._consumed[slot] = max(self._consumed.get(slot, 0), position + 1)
                yield batch
        finally:
            batches.close()  # ends the workers now, also when equal_ranks stops early
        # The epoch is over: the next one starts from nothing.
        self._consumed = {}
        self.dataset.load_state_dict(self.dataset.state_dict())

    def __len__(self) -> int:
        """Batches an epoch yields in this process: each loader process (num_workers of
        them, else this one) batches its own share of this rank's samples and ends with
        its own partial batch, left out with drop_last. With `equal_ranks`, the fewest
        any rank's process yields."""
        rank = current_slot(self.dataset.rank, self.dataset.world_size)  # outside a worker
        ranks = range(rank.count) if self.equal_ranks else [rank.index]
        return min(sum(self._batches(slot) for slot in self._slots(r)) for r in ranks)

    def _empty_epoch(self) -> str:
        """Why, with equal_ranks, this rank yields nothing though it holds samples."""
        rank = current_slot(self.dataset.rank, self.dataset.world_size)  # outside a worker
        empty = next(r for r in range(rank.count) if not sum(map(self._batches, self._slots(r))))
        return (
            f"equal_ranks: every rank's epoch is empty, as rank {empty} of {rank.count} gets "
            f"no batch of the {len(self.dataset.samples)} samples; use fewer ranks, workers "
            "or a smaller batch_size (or drop_last=False)"
        )

    def set_epoch(self, epoch: int) -> None:
        """Iterate epoch `epoch` next (its own order, from the seed); call it before each
        epoch. Another epoch than the one under way starts from its beginning."""
        if epoch != self.dataset.epoch:
            self._consumed, self._resuming = {}, False
        self.dataset.set_epoch(epoch)

    def state_dict(self) -> dict:
        """Where this epoch stands — its epoch, seed, the crops each slot has handed out
        and the layout (world size × workers) — to save with a checkpoint."""
        rank = current_slot(self.dataset.rank, self.dataset.world_size)  # outside a worker
        layout = {"world_size": rank.count, "workers": self.options.get("num_workers", 0)}
        return {**self.dataset.state_dict(self._consumed), "layout": layout}

    def load_state_dict(self, state: dict) -> None:
        """Resume from `state_dict()`'s state: the next iteration yields the batches of its
        epoch not yet handed out, in the order of an uninterrupted run. A state of another
        layout or seed is refused in one line."""
        self._check_layout(state.get("layout"))
        consumed = {int(slot): int(n) for slot, n in state["consumed"].items()}
        self.dataset.load_state_dict(state, first_worker=self._next_worker(consumed))
        # Only this rank's slots: the other ranks' counts in a gathered state stay as they
        # were, and in the next state gathered they would overwrite those ranks' own.
        mine = {slot.index for slot in self._slots()}
        self._consumed = {slot: n for slot, n in consumed.items() if slot in mine}
        self._resuming = True

    def _slots(self, rank: int | None = None) -> list[Slot]:
        """A rank's slots (this one's by default), one per DataLoader worker (one without
        workers)."""
        workers = max(1, self.options.get("num_workers", 0))
        this = current_slot(self.dataset.rank, self.dataset.world_size)  # outside a worker
        index = this.index if rank is None else rank
        return [Slot(index * workers + w, this.count * workers) for w in range(workers)]

    def _batch_size(self) -> int:
        return self.options.get("batch_size", 1) or 1  # None: items one by one

    def _batches(self, slot: Slot) -> int:
        """The batches a slot's worker yields in an epoch."""
        items, size = self.dataset.slot_items(slot), self._batch_size()
        return items // size if self.options.get("drop_last") else -(-items // size)

    def _taken(self) -> int:
        """The batches this rank has yielded so far this epoch: every worker's batches
        are full but its last."""
        size = self._batch_size()
        return sum(-(-self._consumed.get(slot.index, 0) // size) for slot in self._slots())

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


class _Placed:
    """The collate_fn DataLoader is given: the one asked for (else DataLoader's own),
    with where each item comes from taken out first, as a collate_fn of one's own may
    keep no `__slot__` / `__position__` or make no dict."""

    def __init__(self, collate: Callable | None, batched: bool):
        self.collate = collate or (default_collate if batched else default_convert)
        self.batched = batched  # else DataLoader calls it on each item alone

    def __call__(self, items) -> tuple[list[tuple[int, int]], object]:
        group = items if self.batched else [items]
        places = [(int(item["__slot__"]), int(item["__position__"])) for item in group]
        return places, self.collate(items)


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
