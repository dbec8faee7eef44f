"""The loader: exactly once across ranks × workers, mid-epoch resume, filters, aligned
paired crops, unpaired partners, and shards that are never unpickled."""

import gc
import io
import itertools
import pickle
import re
import shutil
import tarfile
import threading
import warnings
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from rainbench.data import (
    Filters,
    Loader,
    RainDataset,
    SettingError,
    SkippedSample,
    epoch_order,
)
from rainbench.data import dataset as dataset_module
from rainbench.data import read as read_module
from rainbench.data.dataset import upright
from rainbench.data.read import ShardError, ShardReader
from rainbench.errors import RainbenchError
from rainbench.shards.dataset import DatasetError
from rainbench.shards.layout import member, picture_ext

from ..capture.test_decode import icon_holding, png_bytes, progressive_jpeg


def _samples(ds) -> pd.DataFrame:
    return pd.read_parquet(ds / "manifests" / "samples.parquet")


def _keys(loader) -> list[str]:
    return [key for batch in loader for key in batch["key"]]


@pytest.mark.parametrize("crops_per_image", [1, 3])
def test_every_sample_exactly_once_across_two_ranks_of_two_workers(_dataset, crops_per_image):
    everything = Counter()
    for rank in (0, 1):
        dataset = RainDataset(
            _dataset, crop=48, crops_per_image=crops_per_image, rank=rank, world_size=2
        )
        everything.update(_keys(DataLoader(dataset, batch_size=3, num_workers=2)))
    expected = _samples(_dataset).key
    assert sorted(everything) == sorted(expected)
    assert set(everything.values()) == {crops_per_image}


def test_a_spawned_worker_keeps_the_rank_of_its_process(_dataset, monkeypatch):
    # A worker started by spawn (under mp.spawn, or multiprocessing_context="spawn")
    # unpickles the dataset in a process where torch.distributed is not initialised.
    dataset = RainDataset(_dataset, crop=48)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 1)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    sent = pickle.dumps(dataset)
    monkeypatch.undo()
    in_worker = pickle.loads(sent)
    ranks = [RainDataset(_dataset, crop=48, rank=rank, world_size=2) for rank in (0, 1)]
    assert _keys(DataLoader(in_worker, batch_size=4)) == _keys(DataLoader(ranks[1], batch_size=4))
    assert _keys(DataLoader(in_worker, batch_size=4)) != _keys(DataLoader(ranks[0], batch_size=4))


def test_the_order_comes_from_seed_and_epoch():
    shards = np.array(["a", "a", "b", "b", "b", "c"])
    first = epoch_order(shards, seed=1, epoch=0, shuffle=True)
    assert np.array_equal(first, epoch_order(shards, seed=1, epoch=0, shuffle=True))
    assert sorted(first) == list(range(6))
    orders = {tuple(epoch_order(shards, 1, epoch, True)) for epoch in range(8)}
    assert len(orders) > 1
    assert list(epoch_order(shards, 1, 0, shuffle=False)) == list(range(6))
    # Samples of one shard stay together, shards in a random order.
    runs = [shards[i] for i in first]
    assert sum(a != b for a, b in itertools.pairwise(runs)) == 2


def test_persistent_workers_iterate_the_epoch_set_since_they_started(_dataset):
    # A DataLoader's persistent workers keep the copy of the dataset they started with:
    # set_epoch did not reach them, and every epoch was epoch 0 again, order and crops.
    dataset = RainDataset(_dataset, crop=32, seed=4)
    loader = DataLoader(dataset, batch_size=4, num_workers=2, persistent_workers=True)
    epochs = []
    for epoch in (0, 1, 2):
        dataset.set_epoch(epoch)
        epochs.append(_keys(loader))
        assert epochs[-1] == _keys(DataLoader(dataset, batch_size=4, num_workers=2))
    assert len({tuple(keys) for keys in epochs}) == 3


def test_a_persistent_worker_resumes_only_the_epoch_it_was_told_to(_dataset):
    # The next epoch is whole: the resume point the workers started with is of another.
    dataset = RainDataset(_dataset, crop=32, seed=4)
    dataset.load_state_dict({"epoch": 0, "seed": 4, "consumed": {0: 3, 1: 2}})
    loader = DataLoader(dataset, batch_size=4, num_workers=2, persistent_workers=True)
    assert len(_keys(loader)) == len(dataset) - 5
    dataset.set_epoch(1)
    assert _keys(loader) == _keys(DataLoader(dataset, batch_size=4, num_workers=2))


def test_resumed_crops_are_the_same_pixels(_dataset):
    dataset = RainDataset(_dataset, crop=32, crops_per_image=3, seed=2)
    everything = list(dataset)
    dataset.load_state_dict({"epoch": 0, "seed": 2, "consumed": {0: 4}})
    rest = list(dataset)
    assert len(rest) == len(everything) - 4
    for a, b in zip(everything[4:], rest, strict=True):
        assert a["key"] == b["key"] and torch.equal(a["image"], b["image"])


def test_filters_come_from_the_manifest(_dataset):
    samples = _samples(_dataset)
    rainy = samples[samples.layer == "rainy"]
    some_type = rainy.rain_type.mode()[0]
    chosen = RainDataset(_dataset, filters=Filters(layer="rainy", rain_type=some_type), crop=32)
    assert {s["rain_type"] for s in chosen} == {some_type}
    assert len(chosen) == (rainy.rain_type == some_type).sum()
    clean = RainDataset(_dataset, filters=Filters(layer="clean"), crop=32)
    assert len(clean) == 3 and {s["layer"] for s in clean} == {"clean"}
    camera = rainy.camera_model.dropna().iloc[0]
    queried = RainDataset(_dataset, filters=Filters(query=f"camera_model == '{camera}'"), crop=32)
    assert len(queried) == (samples.camera_model == camera).sum()
    confident = RainDataset(_dataset, filters=Filters(min_confidence=0.0), crop=32)
    assert len(confident) == samples.rain_type_confidence.notna().sum()
    with pytest.raises(DatasetError, match="no samples"):
        RainDataset(_dataset, filters=Filters(rain_type="hail"))
    with pytest.raises(DatasetError, match="bad query"):
        RainDataset(_dataset, filters=Filters(query="nonsense ==="))
    # A split no capture is in is named, with the splits there are, whatever the mode.
    splits = ", ".join(sorted(set(samples.split)))
    with pytest.raises(
        DatasetError, match=f"no captures in split nope of .*; its splits: {splits}$"
    ):
        RainDataset(_dataset, mode="unpaired", filters=Filters(split="nope"))
    some_split = samples.split.iloc[0]
    chosen = RainDataset(_dataset, filters=Filters(split=(some_split, "nope")), crop=32)
    assert len(chosen) == (samples.split == some_split).sum()


def _locate(window: np.ndarray, image: np.ndarray) -> list[tuple[int, int]]:
    side = window.shape[0]
    views = np.lib.stride_tricks.sliding_window_view(image, (side, side, 3))[:, :, 0]
    matches = np.all(views == window, axis=(2, 3, 4))
    return [tuple(int(v) for v in p) for p in np.argwhere(matches)]


def test_paired_crops_are_aligned_to_the_pixel(_dataset):
    dataset = RainDataset(_dataset, mode="paired", paired_split="syn-streak", crop=40,
                          crops_per_image=2)  # fmt: skip
    reader = ShardReader(_dataset)
    pairs = pd.read_parquet(_dataset / "manifests" / "synthetic.parquet").set_index("key")
    for sample in dataset:
        shard = pairs.loc[sample["key"], "shard"]
        rain = np.asarray(Image.open(io.BytesIO(reader.read(shard, f"{sample['key']}.rain.png"))))
        gt = np.asarray(Image.open(io.BytesIO(reader.read(shard, f"{sample['key']}.gt.png"))))
        rain_crop = (sample["rain"] * 255).round().byte().permute(1, 2, 0).numpy()
        gt_crop = (sample["gt"] * 255).round().byte().permute(1, 2, 0).numpy()
        at = _locate(gt_crop, gt)
        assert at and any(
            np.array_equal(rain[r : r + 40, c : c + 40], rain_crop) for r, c in at
        )  # the same place in both


def test_unpaired_gives_a_rainy_and_a_clean_crop(_dataset):
    dataset = RainDataset(_dataset, mode="unpaired", crop=32)
    samples = _samples(_dataset).set_index("key")
    got = list(dataset)
    assert len(got) == (samples.layer == "rainy").sum()
    for sample in got:
        assert samples.loc[sample["key"], "layer"] == "rainy"
        assert samples.loc[sample["clean_key"], "layer"] == "clean"
        assert sample["rain"].shape == sample["clean"].shape == (3, 32, 32)


def test_unpaired_partners_come_from_the_rainy_split_unless_asked_otherwise(two_splits):
    train = Filters(split="train")
    data = RainDataset(two_splits, mode="unpaired", filters=train, crop=32)
    assert set(data.clean.split) == {"train"} and set(data.clean.layer) == {"clean"}
    assert {sample["clean_key"] for sample in data} <= set(data.clean.key)
    # Nor does it train on the burst that lab-pairs scores.
    assert data.samples.sequence.isna().all()
    every = RainDataset(two_splits, mode="unpaired", filters=train,
                        clean_filters=Filters(layer="clean"), crop=32)  # fmt: skip
    assert set(every.clean.split) == {"train", "test"}
    other = RainDataset(two_splits, mode="unpaired", filters=train,
                        clean_filters=Filters(split="test"), crop=32)  # fmt: skip
    assert set(other.clean.split) == {"test"} and set(other.clean.layer) == {"clean"}


def test_a_batch_of_clean_and_rainy_captures_collates(_dataset):
    # Single mode over every capture of the split: a clean capture's rain type is null,
    # which must come out as "" beside a rainy one's, whatever the order.
    for seed in range(4):
        data = RainDataset(_dataset, filters=Filters(split="test"), crop=32, seed=seed)
        batches = list(Loader(data, batch_size=17))
        types = [t for batch in batches for t in batch["rain_type"]]
        layers = [layer for batch in batches for layer in batch["layer"]]
        assert {t for t, layer in zip(types, layers, strict=True) if layer == "clean"} == {""}


def test_a_reader_forked_after_reading_opens_its_own_files(_dataset, monkeypatch):
    row = _samples(_dataset).query("layer == 'rainy'").iloc[0]
    name = member(row["key"], picture_ext(row["format"]))
    reader = ShardReader(_dataset)
    first = reader.read(row["shard"], name)
    inherited = reader._files[row["shard"]]
    position = inherited.tell()
    # As in a DataLoader worker forked from this process: another process id.
    monkeypatch.setattr(read_module.os, "getpid", lambda: -1)
    assert reader.read(row["shard"], name) == first
    assert inherited.tell() == position and reader._files[row["shard"]] is not inherited


def test_a_dataset_left_mid_epoch_closes_its_shard_files_without_a_warning(_dataset):
    # As a trainer at its last step leaves it: before, each shard file kept open was
    # closed by the garbage collector with a ResourceWarning ("unclosed file").
    with warnings.catch_warnings(record=True) as heard:
        warnings.simplefilter("always")
        data = RainDataset(_dataset, filters=Filters(split="test"), crop=32)
        next(iter(data))
        assert data._reader._files  # open, until the dataset goes
        del data
        gc.collect()
    assert [str(w.message) for w in heard if issubclass(w.category, ResourceWarning)] == []


def test_threads_sharing_a_reader_read_every_member_whole(_dataset):
    # Threads iterating one RainDataset share its reader's open shard files: a seek and
    # read of one thread between another's read the wrong bytes, said as a shard "cut
    # short (run rainbench verify)" that is whole.
    samples = _samples(_dataset)
    members = [
        (shard, member(key, picture_ext(fmt)))
        for shard, key, fmt in zip(samples["shard"], samples["key"], samples["format"], strict=True)
    ]
    alone = ShardReader(_dataset)
    expected = [alone.read(shard, name) for shard, name in members]
    shared = ShardReader(_dataset)
    start = threading.Barrier(4)
    failures = []

    def read_all() -> None:
        start.wait()
        try:
            for _ in range(300):
                if [shared.read(shard, name) for shard, name in members] != expected:
                    failures.append("other bytes")
        except ShardError as error:
            failures.append(str(error))

    threads = [threading.Thread(target=read_all) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert pickle.loads(pickle.dumps(shared)).read(*members[0]) == expected[0]


def test_whole_pictures_and_small_ones(_dataset):
    whole = next(iter(RainDataset(_dataset, crop=None, shuffle=False)))
    assert whole["image"].shape[0] == 3 and whole["image"].shape[1:] in {(120, 160), (160, 120)}
    padded = next(iter(RainDataset(_dataset, crop=200, shuffle=False)))
    assert padded["image"].shape == (3, 200, 200)


def _add_member(shard, name: str, data: bytes, records: dict[str, str] | None = None) -> None:
    """Append member `name` holding `data`, its header carrying PAX `records` as given."""
    with tarfile.open(shard) as tar:
        members = [(info, tar.extractfile(info).read()) for info in tar]
    with tarfile.open(shard, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, content in members:
            tar.addfile(info, io.BytesIO(content))
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.pax_headers = records or {}
        tar.addfile(info, io.BytesIO(data))


class _Boom:
    def __reduce__(self):
        return (open, ("/tmp/rainbench-was-unpickled", "w"))


def test_a_shard_with_pickles_is_never_unpickled(tmp_path, ds):
    marker = tmp_path / "marker"
    samples = _samples(ds)
    shard, key = samples.shard.iloc[0], samples.key.iloc[0]
    payload = pickle.dumps(_Boom()).replace(b"/tmp/rainbench-was-unpickled", str(marker).encode())
    _add_member(ds / shard, f"{key}.pyd", payload)
    _add_member(ds / shard, f"{key}.pth", payload)
    assert len(list(RainDataset(ds, crop=32))) == len(samples)
    assert not marker.exists()
    with pytest.raises(ShardError, match="not a picture or JSON member"):
        ShardReader(ds).read(shard, f"{key}.pyd")


def test_a_damaged_shard_is_named_when_verified(ds):
    samples = _samples(ds)
    shard = ds / samples.shard.iloc[0]
    data = bytearray(shard.read_bytes())
    data[-2000] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ShardError, match=f"shard {samples.shard.iloc[0]} is damaged"):
        list(RainDataset(ds, crop=32, verify=True, shuffle=False))


@pytest.mark.parametrize(
    ("verify", "damage", "reading"),
    [(True, "flipped", "stream_sha256"), (False, "cut", "open_shard")],
    ids=["hashed", "headers"],
)
def test_a_damaged_shard_is_read_once_however_many_samples_skip_it(
    ds, monkeypatch, verify, damage, reading
):
    # on_error="skip" meets each sample of a damaged shard, and each replacement tried in
    # it: the shard is hashed (verify=True), or its headers read, once, not once for each
    # (from a store, a whole download or a request per member each time).
    samples = _samples(ds)
    shard = samples.shard.value_counts().index[0]
    data = bytearray((ds / shard).read_bytes())
    if damage == "flipped":
        data[-2000] ^= 0xFF
    (ds / shard).write_bytes(bytes(data if damage == "flipped" else data[:600]))  # in a member
    reads = Counter()
    original = getattr(read_module, reading)

    def counted(*arguments):
        reads[reading] += 1
        return original(*arguments)

    monkeypatch.setattr(read_module, reading, counted)
    dataset = RainDataset(ds, crop=32, verify=verify, on_error="skip")
    with pytest.warns(SkippedSample) as said:
        crops = list(dataset)
    assert len(crops) == len(dataset) and len(said) == (samples.shard == shard).sum()
    assert reads[reading] == samples.shard.nunique()


def test_a_shard_unreadable_in_one_pass_is_tried_again_in_the_next(ds):
    # A store's passing failure, or a shard mended meanwhile: the next epoch reads it.
    samples = _samples(ds)
    shard = samples.shard.value_counts().index[0]
    whole = (ds / shard).read_bytes()
    (ds / shard).write_bytes(whole[:600])
    dataset = RainDataset(ds, crop=32, on_error="skip", shuffle=False)
    with pytest.warns(SkippedSample):
        list(dataset)
    (ds / shard).write_bytes(whole)
    dataset.set_epoch(1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkippedSample)
        assert len(list(dataset)) == len(dataset)


def test_a_member_beyond_its_manifest_row_is_refused_unread(ds):
    samples = _samples(ds)
    row = samples[samples.format == "jpeg"].iloc[0]
    member = f"{row.key}.jpg"
    _add_member(ds / row.shard, member, bytes(row.bytes + 1))  # the later member wins
    with pytest.raises(ShardError, match=f"{member}: {row.bytes + 1} bytes, more than"):
        ShardReader(ds).read(row.shard, member, int(row.bytes))
    with pytest.raises(ShardError, match=member):
        list(RainDataset(ds, crop=32, shuffle=False))


def test_on_error_skip_replaces_a_sample_that_does_not_read_and_keeps_the_epoch(ds):
    # One capture's member broken: "raise" stops the epoch; "skip" says which sample was
    # replaced by which, and the epoch keeps its length, its other crops and its resume.
    samples = _samples(ds)
    row = samples[samples.format == "jpeg"].iloc[0]
    _add_member(ds / row.shard, f"{row.key}.jpg", b"\xff\xd8 broken")  # the later one wins
    with pytest.raises(ShardError, match=f"{row.key}.jpg"):
        list(RainDataset(ds, crop=32, seed=3))
    skipping = RainDataset(ds, crop=32, seed=3, crops_per_image=2, on_error="skip")
    with pytest.warns(SkippedSample) as said:
        crops = list(skipping)
    [warning] = said
    assert f"{row.key}.jpg" in str(warning.message)
    assert f"skipped: sample {row.key} replaced by " in str(warning.message)
    keys = Counter(crop["key"] for crop in crops)
    assert len(crops) == len(skipping) and row.key not in keys
    assert sorted(keys.values()) == [2] * (len(samples) - 2) + [4]
    assert [crop["__position__"] for crop in crops] == list(range(len(crops)))
    # The same epoch again, and resumed mid-way, gives the same crops.
    again = RainDataset(ds, crop=32, seed=3, crops_per_image=2, on_error="skip")
    again.load_state_dict({"epoch": 0, "seed": 3, "consumed": {0: 5}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedSample)
        rest = list(again)
    assert [c["key"] for c in rest] == [c["key"] for c in crops[5:]]
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(rest, crops[5:], strict=True))
    with pytest.raises(ValueError, match="on_error must be one of raise, skip, not 'ignore'"):
        RainDataset(ds, on_error="ignore")


def test_on_error_skip_draws_a_new_partner_when_a_clean_one_does_not_read(ds):
    samples = _samples(ds)
    bad = samples[(samples.layer == "clean") & (samples.format == "jpeg")].iloc[0]
    _add_member(ds / bad.shard, f"{bad.key}.jpg", b"\xff\xd8 broken")
    skipping = RainDataset(ds, mode="unpaired", crop=32, seed=1, on_error="skip")
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always", SkippedSample)
        crops = list(skipping)
    assert len(crops) == len(skipping) and bad.key not in {c["clean_key"] for c in crops}
    assert said and all(f"{bad.key}.jpg" in str(w.message) for w in said)
    # Only the partner is replaced: the rainy captures, which read, each keep their place
    # (each was replaced by another rainy one, seen twice, when its partner did not read).
    order = epoch_order(skipping.samples["shard"].to_numpy(), seed=1, epoch=0, shuffle=True)
    assert [c["key"] for c in crops] == skipping.samples["key"].iloc[order].tolist()
    assert all(f"skipped: clean partner {bad.key} replaced by " in str(w.message) for w in said)


# PAX records tarfile takes as given, and what the reader says of each: a negative size
# refuses the member; a GNU sparse 1.0 member whose data is no sparse map, or a size no
# seek can pass, leaves the shard's headers unreadable.
_FORGED = [
    ({"size": "-5"}, "{shard}:{member}: its header gives a negative size (-5)"),
    (
        {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.realsize": "999"},
        "cannot read shard {shard}: a damaged tar header",
    ),
    ({"size": str(2**64)}, "cannot read shard {shard}: a damaged tar header"),
]


@pytest.mark.parametrize(("records", "why"), _FORGED)
def test_a_forged_member_header_is_a_one_line_error(ds, records, why):
    samples = _samples(ds)
    row = samples[samples.format == "jpeg"].iloc[0]
    member = f"{row.key}.jpg"
    _add_member(ds / row.shard, member, bytes(512), records)  # the later member wins
    expected = why.format(shard=row.shard, member=member)
    with pytest.raises(ShardError) as caught:
        ShardReader(ds).read(row.shard, member, int(row.bytes))
    assert str(caught.value).startswith(expected) and len(str(caught.value)) < 150
    with pytest.raises(ShardError, match=re.escape(expected)):
        list(RainDataset(ds, crop=32, shuffle=False))


@pytest.mark.parametrize("crop", [32, None])
def test_a_pair_picture_not_of_its_rows_size_is_refused(ds, crop):
    # The same box is cut from rain and ground truth: a ground truth turned on its side
    # gave crops of black padding, or a batch torch could not stack.
    pair = pd.read_parquet(ds / "manifests" / "synthetic.parquet").iloc[0]
    name = f"{pair.key}.gt.png"
    _add_member(ds / pair.shard, name, png_bytes(Image.new("RGB", (pair.height, pair.width))))
    expected = f"{name}: {pair.height}×{pair.width}, not the manifest's {pair.width}×{pair.height}"
    with pytest.raises(ShardError, match=re.escape(expected)):
        list(RainDataset(ds, mode="paired", paired_split="syn-streak", crop=crop, shuffle=False))


@pytest.mark.parametrize("decode_device", [None, "cpu"])
def test_a_capture_not_of_its_rows_size_is_refused(ds, decode_device):
    # A picture put in a capture's place after ingest decodes, and was read as that
    # capture: crops of another picture, or padding, under the capture's key and labels.
    if decode_device is not None and dataset_module.torch_jpeg_decoder() is None:
        pytest.skip("no torch JPEG decoder")
    samples = _samples(ds)
    row = samples[(samples.format == "jpeg") & (samples.orientation == 1)].iloc[0]
    other = io.BytesIO()
    Image.new("RGB", (row.width // 2, row.height // 2)).save(other, "JPEG")
    _add_member(ds / row.shard, f"{row.key}.jpg", other.getvalue())  # the later one wins
    expected = (
        f"{row.key}.jpg: {row.width // 2}×{row.height // 2}, not the manifest's "
        f"{row.width}×{row.height}"
    )
    only = Filters(query=f"key == '{row.key}'")
    for crop in (32, None):
        loader = RainDataset(ds, filters=only, crop=crop, decode_device=decode_device)
        with pytest.raises(ShardError, match=re.escape(expected)):
            list(loader)


@pytest.mark.parametrize("decode_device", [None, "cpu"])
@pytest.mark.parametrize(
    ("stored", "said"),
    [
        (progressive_jpeg(100), "does not decode: more than 100 progressive scans"),
        (
            icon_holding(png_bytes(Image.new("RGB", (600, 400)))),
            "(does not decode: )?no readable (JPEG|jpeg) header",
        ),
    ],
    ids=["scans", "icon"],
)
def test_a_capture_whose_decoding_nothing_bounds_is_refused_undecoded(
    ds, decode_device, stored, said
):
    # A JPEG of thousands of scans decodes for as long as its maker likes; an ICO
    # decodes its icon, of any size, as Pillow opens it. Neither reaches a decoder.
    if decode_device is not None and dataset_module.torch_jpeg_decoder() is None:
        pytest.skip("no torch JPEG decoder")
    samples = _samples(ds)
    row = samples[samples.format == "jpeg"].iloc[0]
    assert len(stored) <= row.bytes
    _add_member(ds / row.shard, f"{row.key}.jpg", stored)  # the later member wins
    only = Filters(query=f"key == '{row.key}'")
    loader = RainDataset(ds, filters=only, crop=32, decode_device=decode_device)
    with pytest.raises(ShardError, match=f"{row.key}.jpg: {said}"):
        list(loader)


@pytest.mark.parametrize("decode_device", [None, "cpu"])
def test_the_loader_keeps_the_readers_cap_rainbench_max_pixels(ds, monkeypatch, decode_device):
    # A capture ingested under a --max-pixels above the readers' cap (its row gives its
    # true size) is refused, saying what raises the cap, and read once that is raised.
    if decode_device is not None and dataset_module.torch_jpeg_decoder() is None:
        pytest.skip("no torch JPEG decoder")
    samples = _samples(ds)
    row = samples[samples.format == "jpeg"].iloc[0]
    only = Filters(query=f"key == '{row.key}'")
    monkeypatch.setenv("RAINBENCH_MAX_PIXELS", str(row.width * row.height - 1))
    loader = RainDataset(ds, filters=only, crop=32, decode_device=decode_device)
    said = f"(or the {row.width * row.height - 1} pixels cap readers keep: RAINBENCH_MAX_PIXELS)"
    with pytest.raises(ShardError, match=re.escape(f"{row.key}.jpg: ") + ".*" + re.escape(said)):
        list(loader)
    monkeypatch.setenv("RAINBENCH_MAX_PIXELS", str(row.width * row.height))
    raised = RainDataset(ds, filters=only, crop=32, decode_device=decode_device)
    assert [sample["key"] for sample in raised] == [row.key]


def test_a_bad_readers_cap_is_refused_as_the_dataset_is_made(ds, monkeypatch):
    monkeypatch.setenv("RAINBENCH_MAX_PIXELS", "250 MP")
    with pytest.raises(RainbenchError) as refused:
        RainDataset(ds)
    assert str(refused.value).startswith("RAINBENCH_MAX_PIXELS='250 MP' is not a positive ")
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("orientation", [1, 2, 3, 4, 5, 6, 7, 8])
def test_upright_turns_tensors_as_pillow_turns_pictures(orientation):
    from rainbench.capture.orientation import _UPRIGHT as _TRANSPOSES

    pixels = np.random.default_rng(orientation).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    expected = Image.fromarray(pixels)
    if orientation in _TRANSPOSES:
        expected = expected.transpose(_TRANSPOSES[orientation])
    turned = upright(torch.from_numpy(pixels).permute(2, 0, 1), orientation)
    assert np.array_equal(turned.permute(1, 2, 0).numpy(), np.asarray(expected))


@pytest.fixture
def jpeg_decoder(monkeypatch):
    """A function: make the torch JPEG decoder the one named ("torchcodec" or
    "torchvision"; the other cannot be imported), or neither (None)."""
    import sys

    import torchvision.io

    from rainbench.data import dataset

    def choose(name: str | None) -> None:
        if name != "torchcodec":
            monkeypatch.setitem(sys.modules, "torchcodec.decoders", None)  # ImportError
        else:
            pytest.importorskip("torchcodec.decoders")
        if name != "torchvision":
            monkeypatch.delattr(torchvision.io, "decode_jpeg")
        dataset.torch_jpeg_decoder.cache_clear()

    yield choose
    dataset.torch_jpeg_decoder.cache_clear()


@pytest.mark.parametrize("decoder", ["torchcodec", "torchvision"])
def test_torch_decoding_gives_pillows_pictures(decoder, jpeg_decoder, _dataset):
    jpeg_decoder(decoder)
    plain = RainDataset(_dataset, filters=Filters(query="format == 'jpeg'"), crop=None,
                        shuffle=False)  # fmt: skip
    torch_decoded = RainDataset(_dataset, filters=Filters(query="format == 'jpeg'"), crop=None,
                                shuffle=False, decode_device="cpu")  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pictures = list(zip(plain, torch_decoded, strict=True))
    assert pictures
    for a, b in pictures:
        assert a["key"] == b["key"] and a["image"].shape == b["image"].shape
        # Both are libjpeg-turbo; their IDCT and upsampling may round differently.
        assert (a["image"] - b["image"]).abs().mean() < 2 / 255
    # TorchCodec's is taken where it is installed: torchvision 0.29's warns on every call.
    deprecated = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert bool(deprecated) == (decoder == "torchvision" and torchvision_deprecates_decoding())


def torchvision_deprecates_decoding() -> bool:
    import torchvision

    major, minor = (int(part) for part in torchvision.__version__.split(".")[:2])
    return (major, minor) >= (0, 29)


def test_a_jpeg_nvjpeg_refuses_is_decoded_on_the_cpu_and_moved(monkeypatch):
    """nvJPEG refuses CMYK JPEGs (as an H200 showed) that libjpeg-turbo reads; "meta"
    stands in for the GPU, with a decoder that refuses everything off the CPU."""
    from rainbench.data import dataset

    real = dataset.torch_jpeg_decoder()

    def nvjpeg(data, device):
        if torch.device(device).type != "cpu":
            raise RuntimeError("nvjpegDecode failed\nException raised from decode_jpegs_cuda")
        return real(data, device)

    monkeypatch.setattr(dataset, "torch_jpeg_decoder", lambda: nvjpeg)
    buffer = io.BytesIO()
    Image.new("CMYK", (20, 10), (0, 80, 160, 30)).save(buffer, "JPEG", quality=95)
    picture = dataset.decode_jpeg(buffer.getvalue(), "meta", 6)
    assert picture.device.type == "meta" and picture.shape == (3, 20, 10)
    with pytest.raises(RuntimeError):
        dataset.decode_jpeg(b"\xff\xd8" + bytes(100), "meta", 1)


def test_a_jpeg_no_decoder_reads_is_a_one_line_error(monkeypatch, _dataset):
    """torch's errors go on with a C++ stack trace; the ShardError keeps the first line."""
    from rainbench.data import dataset

    def refuse(data, device):
        raise RuntimeError("Quantization table 0x00 was not defined\nframe #0: decode_jpeg")

    monkeypatch.setattr(dataset, "torch_jpeg_decoder", lambda: refuse)
    data = RainDataset(_dataset, filters=Filters(query="format == 'jpeg'"), crop=None,
                       decode_device="cpu")  # fmt: skip
    with pytest.raises(ShardError, match="does not decode: Quantization table") as raised:
        next(iter(data))
    assert "\n" not in str(raised.value)


def test_decode_device_without_a_torch_decoder_is_one_line(jpeg_decoder, _dataset):
    """torchvision 0.29 deprecated its image decoding for TorchCodec's; where neither
    can be imported, that is said when the dataset is made, with the ways out."""
    jpeg_decoder(None)
    with pytest.raises(ValueError) as raised:
        RainDataset(_dataset, decode_device="cpu")
    message = str(raised.value)
    assert message.startswith("decode_device needs TorchCodec's or torchvision's decode_jpeg")
    assert "pip install torchcodec" in message and "\n" not in message
    assert message.endswith("decode_device=None to decode with Pillow")
    RainDataset(_dataset)  # Pillow needs neither


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_jpegs_decode_on_the_gpu(_dataset):
    on_gpu = RainDataset(_dataset, filters=Filters(query="format == 'jpeg'"), crop=64,
                         shuffle=False, decode_device="cuda")  # fmt: skip
    on_cpu = RainDataset(_dataset, filters=Filters(query="format == 'jpeg'"), crop=64,
                         shuffle=False)  # fmt: skip
    for a, b in zip(on_gpu, on_cpu, strict=True):
        assert a["image"].is_cuda and a["key"] == b["key"]
        assert (a["image"].cpu() - b["image"]).abs().mean() < 4 / 255


@pytest.mark.parametrize("orientation", [1, 2, 3, 4, 5, 6, 7, 8])
def test_crops_cut_before_turning_equal_crops_of_the_upright_picture(orientation):
    from rainbench.capture.decode import load_stored, load_upright
    from rainbench.capture.formats import FORMATS
    from rainbench.data.dataset import StoredPicture

    pixels = np.random.default_rng(orientation).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90, exif=exif.tobytes())
    data = buffer.getvalue()
    upright = np.asarray(load_upright(data, FORMATS["jpeg"]))
    stored = StoredPicture(*load_stored(data, FORMATS["jpeg"]))
    assert stored.shape == (3, *upright.shape[:2])
    for top, left, side in [(0, 0, 20), (3, 11, 17), (upright.shape[0] - 9, 2, 9)]:
        box = (slice(None), slice(top, top + side), slice(left, left + side))
        crop = stored[box].permute(1, 2, 0).numpy()
        assert np.array_equal(crop, upright[top : top + side, left : left + side])


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"mode": "pairs"}, "mode must be one of"),
        ({"crops_per_image": 0}, "crops_per_image must be at least 1"),
        ({"crop": -5}, "crop must be at least 1 px, or None for whole pictures; not -5"),
        # A crop of 2.5 px was cut 2 or 3 px wide (no batch collated them), 200.0 px
        # failed in torch's pad on smaller pictures, True was 1 px.
        ({"crop": 2.5}, r"crop must be a whole number; not 2\.5$"),
        ({"crop": 200.0}, "crop must be a whole number"),
        ({"crop": True}, "crop must be a whole number; not True"),
        ({"crops_per_image": 1.5}, "crops_per_image must be a whole number"),
        ({"rank": 0.5, "world_size": 2}, "rank must be a whole number; not 0.5"),
        # Ignored, they gave every split's captures in single mode.
        ({"paired_split": "syn-streak"}, "paired_split is read in mode='paired', not 'single'"),
        (
            {"mode": "unpaired", "paired_split": "syn-streak"},
            "paired_split is read in mode='paired', not 'unpaired'",
        ),
        ({"clean_filters": Filters(split="test")}, "clean_filters is read in mode='unpaired'"),
    ],
)
def test_impossible_settings_are_refused_when_made_not_while_iterating(_dataset, settings, message):
    # A RainbenchError, which a caller catches with every other expected failure, and a
    # ValueError, as Python's own refusals of an argument are.
    with pytest.raises(SettingError, match=message) as raised:
        RainDataset(_dataset, **settings)
    assert isinstance(raised.value, RainbenchError) and isinstance(raised.value, ValueError)


@pytest.mark.parametrize(
    ("rank", "world_size", "message"),
    [
        (1, None, "rank and world_size are given together, or neither"),
        (None, 2, "rank and world_size are given together, or neither"),
        (2, 2, "rank must be from 0 to world_size - 1; got rank=2, world_size=2"),
        (-1, 2, "rank must be from 0 to world_size - 1"),
    ],
)
def test_a_rank_without_its_world_size_or_outside_it_is_refused(
    _dataset, rank, world_size, message
):
    # A rank alone was ignored (every sample read as rank 0 of 1), and rank 2 of 2 read
    # rank 0's stride again: silently wrong epochs.
    with pytest.raises(SettingError, match=message):
        RainDataset(_dataset, rank=rank, world_size=world_size)


@pytest.mark.parametrize(
    ("environment", "said"),
    [
        ({"RANK": "1"}, "$RANK=1 of $WORLD_SIZE=1 is no rank of the world"),
        ({"RANK": "3", "WORLD_SIZE": "2"}, "$RANK=3 of $WORLD_SIZE=2 is no rank of the world"),
        ({"RANK": "one", "WORLD_SIZE": "2"}, "$RANK=one of $WORLD_SIZE=2 is no rank"),
    ],
)
@pytest.mark.parametrize("workers", [0, 1])
def test_a_rank_from_the_environment_outside_its_world_is_refused(
    _dataset, monkeypatch, environment, said, workers
):
    # $RANK=1 alone read every sample but the first, as rank 1 of 1; $RANK=3 of 2 read
    # rank 1's stride less its first sample: samples dropped and repeated, without a word.
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    data = RainDataset(_dataset, crop=48)
    with pytest.raises(SettingError) as refused:
        list(Loader(data, batch_size=4, num_workers=workers))
    assert said in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize("device", ["tpu", "meta", "cuda", "cuda:1"])
def test_a_decode_device_torch_cannot_decode_on_is_refused_when_made(_dataset, monkeypatch, device):
    # Made, it failed every JPEG as a damaged shard ("does not decode"), and with
    # on_error="skip" replaced every JPEG capture of the epoch by a PNG or TIFF one.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(SettingError, match=f"^decode_device.*{device!r}") as raised:
        RainDataset(_dataset, decode_device=device, on_error="skip")
    assert "\n" not in str(raised.value)


def test_a_cuda_device_torch_sees_is_taken(_dataset, monkeypatch):
    if dataset_module.torch_jpeg_decoder() is None:
        pytest.skip("needs TorchCodec or torchvision")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for device in ("cuda", "cuda:0", torch.device("cuda", 0)):
        RainDataset(_dataset, decode_device=device)  # nothing is decoded until iterated
    with pytest.raises(SettingError, match="torch sees 1 CUDA device"):
        RainDataset(_dataset, decode_device="cuda:1")


@pytest.mark.parametrize(
    ("content", "said"),
    [(None, "dataset.json"), (b"[1]", "not an object"), (b"{", "cannot read it")],
)
def test_a_dataset_without_a_readable_dataset_json_is_refused_in_one_line(ds, content, said):
    # As every command refuses it (docs/dataset-format.md, "On a violation").
    info = ds / "dataset.json"
    if content is None:
        info.unlink()
    else:
        info.write_bytes(content)
    with pytest.raises(DatasetError, match=said) as refused:
        RainDataset(ds, crop=32)
    assert "\n" not in str(refused.value)


def test_a_file_url_reads_the_dataset_it_names(_dataset, tmp_path):
    # fsspec's and pyarrow's way to name a local dataset; taken as a path it was
    # file:/…, which "does not exist".
    local = shutil.copytree(_dataset, tmp_path / "my ds")
    by_url = RainDataset(local.as_uri(), crop=32, seed=3)
    assert local.as_uri().startswith("file:///") and "%20" in local.as_uri()
    expected = list(RainDataset(local, crop=32, seed=3))
    got = list(by_url)
    assert [item["key"] for item in got] == [item["key"] for item in expected]
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(got, expected, strict=True))
