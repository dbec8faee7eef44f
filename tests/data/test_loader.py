"""`Loader`: its length, and resuming mid-epoch — the rest of the epoch in the order an
uninterrupted run has it, with any workers, and only from a state of the same layout;
an error in a worker says what it says without one."""

import itertools
import multiprocessing
import signal
import tarfile
import warnings
from collections import Counter

import pandas as pd
import pytest

from rainbench.data import Filters, Loader, RainDataset, SettingError
from rainbench.data.read import ShardError
from rainbench.shards.dataset import DatasetError


@pytest.mark.parametrize(
    "options",
    [
        {"batch_size": 3},
        {"batch_size": 3, "num_workers": 2},
        {"batch_size": 2, "num_workers": 2, "drop_last": True},
        {"batch_size": None, "num_workers": 2},  # items one by one
    ],
)
def test_a_loaders_length_is_the_batches_it_yields(_dataset, options):
    # Each loader process ends with its own partial batch: more batches than the
    # samples over the batch size.
    for rank in (0, 1):
        dataset = RainDataset(_dataset, crop=32, crops_per_image=2, rank=rank, world_size=2)
        loader = Loader(dataset, **options)
        assert len(loader) == sum(1 for _ in loader)


def test_resuming_mid_epoch_gives_the_rest_and_nothing_else(_dataset):
    options = {"batch_size": 2, "num_workers": 2}
    dataset = RainDataset(_dataset, crop=32, crops_per_image=2, seed=5)
    dataset.set_epoch(3)
    loader = Loader(dataset, **options)
    seen = []
    for number, batch in enumerate(loader):
        seen.extend(zip(batch["key"], batch["__position__"].tolist(), strict=True))
        if number == 4:
            state = loader.state_dict()
            break
    fresh = RainDataset(_dataset, crop=32, crops_per_image=2, seed=5)
    resumed = Loader(fresh, **options)
    resumed.load_state_dict(state)
    rest = [
        (key, position)
        for batch in resumed
        for key, position in zip(batch["key"], batch["__position__"].tolist(), strict=True)
    ]
    whole = RainDataset(_dataset, crop=32, crops_per_image=2, seed=5)
    whole.set_epoch(3)
    everything = [
        (key, position)
        for batch in Loader(whole, **options)
        for key, position in zip(batch["key"], batch["__position__"].tolist(), strict=True)
    ]
    assert not set(seen) & set(rest)
    assert sorted(seen + rest) == sorted(everything)
    assert len(everything) == len(whole)


def test_a_collate_fn_of_ones_own_batches_and_resumes(_dataset):
    # A collate_fn that keeps no `__slot__` / `__position__` and makes no dict.
    def keys(items: list[dict]) -> list[str]:
        return [item["key"] for item in items]

    def loader() -> Loader:
        data = RainDataset(_dataset, crop=24, seed=5)
        return Loader(data, batch_size=3, num_workers=2, collate_fn=keys)

    whole = list(loader())
    assert len(whole) == len(loader())
    first = loader()
    seen = list(itertools.islice(first, 3))
    resumed = loader()
    resumed.load_state_dict(first.state_dict())
    assert seen + list(resumed) == whole


@pytest.mark.parametrize("options", [{"num_workers": 2}, {"num_workers": 2, "drop_last": True}])
def test_equal_ranks_end_every_ranks_epoch_after_as_many_batches(_dataset, options):
    def loader(rank: int, equal_ranks: bool) -> Loader:
        data = RainDataset(_dataset, crop=24, crops_per_image=2, rank=rank, world_size=2)
        return Loader(data, batch_size=2, equal_ranks=equal_ranks, **options)

    # 17 captures over 2 ranks × 2 workers: slots of 5, 4, 4 and 4 captures.
    assert [len(loader(rank, equal_ranks=False)) for rank in (0, 1)] == [9, 8]
    keys = []
    for rank in (0, 1):
        equal = loader(rank, equal_ranks=True)
        batches = [batch["key"] for batch in equal]
        assert len(batches) == len(equal) == 8
        assert equal.state_dict()["consumed"] == {}  # the epoch is over
        keys.append(Counter(key for batch in batches for key in batch))
    assert not set(keys[0]) & set(keys[1])
    # Resumed mid-epoch, the rank still stops at the same batch.
    first = loader(0, equal_ranks=True)
    seen = list(itertools.islice(first, 3))
    resumed = loader(0, equal_ranks=True)
    resumed.load_state_dict(first.state_dict())
    assert len(seen) + len(list(resumed)) == 8


def test_equal_ranks_that_leave_every_epoch_empty_say_so(_dataset):
    # 17 captures over 20 ranks: ranks 17–19 get none, so every rank stops at 0 batches.
    def loader(rank: int) -> Loader:
        data = RainDataset(_dataset, crop=24, rank=rank, world_size=20)
        return Loader(data, batch_size=1, equal_ranks=True)

    with pytest.warns(UserWarning, match=r"rank 17 of 20 gets no batch of the 17 samples"):
        assert list(loader(0)) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert list(loader(19)) == []  # a rank with nothing to give has nothing to say


def _contents(batch: dict) -> tuple:
    """A batch, byte for byte: its keys, slots, positions and pixels."""
    return (
        tuple(batch["key"]),
        batch["__slot__"].tolist(),
        batch["__position__"].tolist(),
        batch["image"].numpy().tobytes(),
    )


# Three workers on a smaller machine: torch's warning of slowness is no failure.
@pytest.mark.filterwarnings("ignore:This DataLoader will create")
@pytest.mark.parametrize(
    ("options", "placement"),
    [
        ({"batch_size": 4, "num_workers": 0}, {}),
        ({"batch_size": 4, "num_workers": 1}, {}),
        # Workers of 3 and 2 batches: the rotation, then one worker done before the other.
        ({"batch_size": 4, "num_workers": 2}, {}),
        ({"batch_size": 4, "num_workers": 2, "drop_last": True}, {}),
        ({"batch_size": 2, "num_workers": 3, "drop_last": True}, {}),
        ({"batch_size": 3, "num_workers": 2}, {"rank": 1, "world_size": 2}),
    ],
)
def test_a_resumed_epoch_gives_the_uninterrupted_batches_in_their_order(
    _dataset, options, placement
):
    def loader() -> Loader:
        data = RainDataset(_dataset, crop=24, seed=5, **placement)
        made = Loader(data, **options)
        made.set_epoch(2)
        return made

    whole, states = [], []
    uninterrupted = loader()
    for batch in uninterrupted:
        whole.append(_contents(batch))
        states.append(uninterrupted.state_dict())
    assert len(whole) == len(uninterrupted)
    for step, state in enumerate(states, start=1):  # a checkpoint after every batch
        resumed = loader()
        resumed.load_state_dict(state)
        resumed.set_epoch(2)  # as a training loop does before each epoch
        assert [_contents(batch) for batch in resumed] == whole[step:], f"after {step}"


def test_ranks_resumed_twice_from_gathered_states_give_the_uninterrupted_batches(_dataset):
    # Under DDP each rank's state counts its own slots; a checkpoint gathers every
    # rank's (as rainbench train does). A rank resumed from such a state once counted the
    # others' slots as they were, and the next gathered state took those stale counts
    # over their ranks' own: rank 0 repeated its batches, and ran longer than rank 1.
    def loader(rank: int) -> Loader:
        data = RainDataset(_dataset, crop=24, seed=5, rank=rank, world_size=2)
        return Loader(data, batch_size=2, equal_ranks=True)

    def gathered(states: list[dict]) -> dict:
        return {**states[0], "consumed": {k: n for s in states for k, n in s["consumed"].items()}}

    whole = [[_contents(batch) for batch in loader(rank)] for rank in (0, 1)]
    seen: list[list] = [[], []]
    state = None
    for _ in range(2):  # two runs, each resumed from the last one's checkpoint
        loaders = [loader(rank) for rank in (0, 1)]
        states = []
        for rank, resumed in enumerate(loaders):
            if state is not None:
                resumed.load_state_dict(state)
            seen[rank] += [_contents(batch) for batch in itertools.islice(resumed, 2)]
            states.append(resumed.state_dict())
        state = gathered(states)
    for rank in (0, 1):
        last = loader(rank)
        last.load_state_dict(state)
        assert seen[rank] + [_contents(batch) for batch in last] == whole[rank], f"rank {rank}"


@pytest.mark.parametrize("options", [{"num_workers": 0}, {"num_workers": 2, "equal_ranks": True}])
def test_an_epoch_left_by_a_break_is_passed_over_afresh_by_the_next_iteration(_dataset, options):
    # As DataLoader's: a loop that leaves the epoch (a break, an exception it handles)
    # and iterates the loader again gets the whole epoch, whose state counts only that
    # pass (equal_ranks' length and a resume read the counts).
    def loader() -> Loader:
        made = Loader(RainDataset(_dataset, crop=24, seed=5), batch_size=2, **options)
        made.set_epoch(2)
        return made

    whole = [_contents(batch) for batch in loader()]
    left = loader()
    _ = [_contents(batch) for batch in itertools.islice(left, 3)]
    left.set_epoch(2)  # as a training loop does before each epoch
    again = iter(left)
    first = [_contents(next(again))]
    state = left.state_dict()
    again.close()
    resumed = loader()
    resumed.load_state_dict(state)
    assert first + [_contents(batch) for batch in resumed] == whole
    assert [_contents(batch) for batch in left] == whole


def test_a_dataset_set_to_another_epoch_after_a_resume_starts_it_afresh(_dataset):
    # A loop that sets the epoch on the dataset (as on a sampler) goes on with the next
    # epoch: the Loader kept the resumed epoch's counts, and cut the next one short by
    # them (equal_ranks) or saved them in its state.
    def loader() -> Loader:
        return Loader(RainDataset(_dataset, crop=24, seed=5), batch_size=2, equal_ranks=True)

    first = loader()
    first.dataset.set_epoch(3)
    _ = list(itertools.islice(first, 3))
    resumed = loader()
    resumed.load_state_dict(first.state_dict())
    resumed.dataset.set_epoch(4)
    fresh = loader()
    fresh.dataset.set_epoch(4)
    batches = iter(resumed)
    assert _contents(next(batches)) == _contents(next(iter(fresh)))
    assert resumed.state_dict()["consumed"] == {0: 2}
    assert 1 + len(list(batches)) == len(fresh) == 9


def test_a_state_of_another_layout_is_refused(_dataset):
    def loader(workers: int, world_size: int = 1) -> Loader:
        data = RainDataset(_dataset, crop=24, rank=0, world_size=world_size)
        return Loader(data, batch_size=2, num_workers=workers)

    state = loader(2).state_dict()
    assert state["layout"] == {"world_size": 1, "workers": 2}
    with pytest.raises(DatasetError, match=r"saved by 1 rank\(s\) × 2 DataLoader workers "
                                           r"and this loader has 1 × 0"):  # fmt: skip
        loader(0).load_state_dict(state)
    with pytest.raises(DatasetError, match="this loader has 2 × 2"):
        loader(2, world_size=2).load_state_dict(state)
    # No workers and one worker give a rank one slot alike; a state from before the
    # layout was recorded is taken as it is.
    loader(1).load_state_dict(loader(0).state_dict())
    loader(0).load_state_dict({key: state[key] for key in ("epoch", "seed", "consumed")})


def test_a_state_of_another_seed_is_refused_as_a_setting(_dataset):
    # Its epoch's order is another one: the counts would repeat crops and skip others.
    state = Loader(RainDataset(_dataset, crop=24, seed=1), batch_size=2).state_dict()
    with pytest.raises(SettingError, match=r"^the state was saved with seed 1, not 0$"):
        Loader(RainDataset(_dataset, crop=24), batch_size=2).load_state_dict(state)


@pytest.mark.parametrize(
    ("saved", "now", "said"),
    [
        ({"shuffle": True}, {"shuffle": False}, "shuffle True, not False"),
        # The counts are of crops: 8 crops of one sample taken for 2 samples' 4 each.
        ({"crops_per_image": 8}, {"crops_per_image": 4}, "crops_per_image 8, not 4"),
    ],
)
def test_a_state_of_another_order_or_crop_count_is_refused_as_a_setting(_dataset, saved, now, said):
    def loader(settings: dict) -> Loader:
        return Loader(RainDataset(_dataset, crop=24, seed=1, **settings), batch_size=2)

    first = loader(saved)
    next(iter(first))
    with pytest.raises(SettingError, match=f"^the state was saved with {said}$"):
        loader(now).load_state_dict(first.state_dict())
    loader(saved).load_state_dict(first.state_dict())


def test_a_state_saved_over_other_samples_is_refused(_dataset):
    # Captures ingested or re-tagged since, or other filters: the epoch's order is
    # another one, and the counts repeated some samples and skipped others, silently.
    def loader(filters: Filters) -> Loader:
        return Loader(RainDataset(_dataset, filters=filters, crop=24), batch_size=2)

    rainy = loader(Filters(layer="rainy"))
    next(iter(rainy))
    state = rainy.state_dict()
    said = r"^the loader state was saved over other samples \(14 then, 17 now, or others in"
    with pytest.raises(DatasetError, match=said):
        loader(Filters()).load_state_dict(state)
    loader(Filters(layer="rainy")).load_state_dict(state)
    # As many samples, one of them another.
    first, second = sorted(rainy.dataset.samples["key"])[:2]
    state = loader(Filters(query=f"key != '{first}'")).state_dict()
    with pytest.raises(DatasetError, match=r"\(16 then, 16 now, or others in their place\)"):
        loader(Filters(query=f"key != '{second}'")).load_state_dict(state)


def _undecodable(ds) -> pd.Series:
    """The row of a JPEG capture whose member's bytes are zeroed in place."""
    samples = pd.read_parquet(ds / "manifests" / "samples.parquet")
    row = samples[samples.format == "jpeg"].iloc[0]
    with tarfile.open(ds / row.shard) as tar:
        info = tar.getmember(f"{row.key}.jpg")
    with open(ds / row.shard, "r+b") as shard:
        shard.seek(info.offset_data)
        shard.write(bytes(info.size))
    return row


def test_an_undecodable_capture_is_the_same_one_line_error_with_workers(ds):
    row = _undecodable(ds)
    messages = []
    for workers in (0, 2):
        data = RainDataset(ds, filters=Filters(query=f"key == '{row.key}'"), crop=32)
        with pytest.raises(ShardError) as raised:
            list(Loader(data, batch_size=1, num_workers=workers))
        messages.append(str(raised.value))
    assert messages[0] == messages[1]
    assert messages[0].startswith(f"{row.shard}:{row.key}.jpg: does not decode")
    assert "\n" not in messages[1]


def _ignore_sigterm(worker: int) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # as `rainbench train`'s workers do


def test_the_workers_end_with_an_error_not_at_exit(ds):
    # The error's traceback holds the DataLoader's iterator; at exit, multiprocessing
    # waits for its workers, which `rainbench train` has ignore SIGTERM: it waited forever.
    row = _undecodable(ds)
    before = set(multiprocessing.active_children())
    data = RainDataset(ds, filters=Filters(query=f"key == '{row.key}'"), crop=32)
    loader = Loader(data, batch_size=1, num_workers=2, worker_init_fn=_ignore_sigterm)
    with pytest.raises(ShardError) as raised:
        list(loader)
    assert raised.value.__traceback__ is not None
    assert set(multiprocessing.active_children()) <= before
