"""Which samples the loader reads, from the manifests alone: pairs chosen by query and
never by capture labels, the stills of sequences with real pairs left out of training,
and a split of videos named as such."""

import re
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rainbench.data import Filters, SettingError
from rainbench.data import dataset as dataset_module
from rainbench.data.select import OnlyVideos, captures, pairs
from rainbench.demo.captures import sample_specs, write_capture
from rainbench.ingest import IngestOptions, ingest
from rainbench.shards.dataset import DatasetError


def _manifest(ds, name: str) -> pd.DataFrame:
    return pd.read_parquet(ds / "manifests" / f"{name}.parquet")


def test_pairs_are_chosen_by_query_and_never_by_capture_labels(_dataset):
    every = _manifest(_dataset, "synthetic")
    streak = every[every.split == "syn-streak"]
    one = streak.source_key.iloc[0]
    chosen = pairs(_dataset, "syn-streak", Filters(query=f"source_key == '{one}'"))
    assert list(chosen.source_key) == [one]
    labels = Filters(split="val", rain_type="storm", camera_model="Nope")
    refused = r"paired mode cannot filter by split, rain_type, camera_model .*: its split is"
    with pytest.raises(DatasetError, match=refused):
        pairs(_dataset, "syn-streak", labels)
    with pytest.raises(
        DatasetError,
        match=f"the query \"recipe == 'nope'\" matches none of the {len(streak)} pairs in "
        "split 'syn-streak' of ",
    ):
        pairs(_dataset, "syn-streak", Filters(query="recipe == 'nope'"))
    known = ", ".join(sorted(set(every.split)))
    with pytest.raises(
        DatasetError, match=f"no pairs in split 'syn-rain' of .*; paired splits: {known}$"
    ):
        pairs(_dataset, "syn-rain", Filters())


def test_a_dataset_without_pairs_says_so_and_how_to_make_them(tmp_path):
    for spec in sample_specs(2, seed=4, size=(96, 64)):
        write_capture(tmp_path / "raw", spec)
    ingest([tmp_path / "raw"], tmp_path / "ds", IngestOptions(workers=1))
    with pytest.raises(DatasetError, match=r"paired splits: none \(run rainbench synth\)$"):
        pairs(tmp_path / "ds", "syn-streak", Filters())


def test_the_stills_of_a_sequence_with_real_pairs_are_left_out(two_splits):
    samples = _manifest(two_splits, "samples")
    (burst,) = set(_manifest(two_splits, "synthetic").source_key)
    frames = set(samples.key[samples.sequence == burst])
    train = Filters(split="train", layer="rainy")
    kept = set(captures(two_splits, train).key)
    assert frames and not kept & frames
    rainy = samples.key[(samples.split == "train") & (samples.layer == "rainy")]
    assert kept == set(rainy) - frames
    everything = set(captures(two_splits, Filters(split="train", paired_sequences=True)).key)
    assert frames <= everything
    with pytest.raises(DatasetError, match=r"the 8 captures that pass the filters are all "
                                           r"frames of sequences with real pairs \(in lab-pairs\)"
                                           r".*paired_sequences=True"):  # fmt: skip
        captures(two_splits, Filters(query="sequence.notna()"))


def test_a_burst_renumbered_since_its_pairs_were_made_is_still_left_out(tmp_path, two_splits):
    """A later ingest of an earlier still makes that one the burst's first, and so its
    key: the pairs still name the burst by the key its first still had."""
    ds = shutil.copytree(two_splits, tmp_path / "ds")
    samples = _manifest(ds, "samples")
    (burst,) = set(_manifest(ds, "synthetic").source_key)
    frames = samples.sequence == burst
    new_first = samples.key[frames & (samples.sequence_index == 1)].iloc[0]
    table = pq.read_table(ds / "manifests" / "samples.parquet")
    renumbered = [new_first if s == burst else s for s in table.column("sequence").to_pylist()]
    index = table.schema.get_field_index("sequence")
    table = table.set_column(index, "sequence", pa.array(renumbered, pa.string()))
    pq.write_table(table, ds / "manifests" / "samples.parquet")
    assert not set(captures(ds, Filters(split="train")).key) & set(samples.key[frames])


def test_a_split_of_videos_only_says_that_single_mode_skips_them(tmp_path):
    pytest.importorskip("av", reason="videos need rainbench[video]")
    import numpy as np

    from rainbench.synth.video import encode_h264

    frames = [np.full((48, 64, 3), 40 * n, np.uint8) for n in range(4)]
    (tmp_path / "raw").mkdir()
    encode_h264(frames, tmp_path / "raw" / "rain.mp4")
    ds = tmp_path / "ds"
    ingest([tmp_path / "raw"], ds, IngestOptions(workers=1, split={"train": 1.0}))
    videos = r"^the captures of split train in .* are all videos, which single and unpaired "
    with pytest.raises(DatasetError, match=videos):
        captures(ds, Filters(split="train"))
    with pytest.raises(DatasetError, match=r"no captures in split nope of .*; its splits: train$"):
        captures(ds, Filters(split="nope"))


def test_rainy_captures_all_videos_beside_clean_stills_are_said_to_be_videos(tmp_path):
    # The split holds stills (clean ones), so it is no split of videos only; but every
    # capture the filters select is a video: said so, not "no samples pass the filters".
    pytest.importorskip("av", reason="videos need rainbench[video]")
    from rainbench.synth.video import encode_h264

    frames = [np.full((48, 64, 3), 40 * n, np.uint8) for n in range(4)]
    (tmp_path / "raw").mkdir()
    encode_h264(frames, tmp_path / "raw" / "rain.mp4")
    for spec in sample_specs(2, seed=9, size=(64, 48)):
        write_capture(tmp_path / "clean", spec)
    ds = tmp_path / "ds"
    ingest([tmp_path / "raw"], ds, IngestOptions(workers=1, split={"train": 1.0}))
    ingest([tmp_path / "clean"], ds, IngestOptions(workers=1, layer="clean", split={"train": 1.0}))
    with pytest.raises(OnlyVideos, match=r"^the rainy captures of split train in .* are all vid"):
        captures(ds, Filters(split="train", layer="rainy"))
    with pytest.raises(OnlyVideos, match=r"^the rainy captures that pass the filters in .* are "):
        captures(ds, Filters(layer="rainy", rain_type=("storm", "streak", "drizzle", "fog-like")))
    assert len(captures(ds, Filters(split="train", layer="clean"))) == 2


def test_a_layer_or_rain_type_no_capture_can_have_is_named(_dataset):
    # A misspelt label would select nothing, or drop out of a tuple of them unsaid.
    with pytest.raises(
        DatasetError,
        match=r"^no samples pass Filters\(rain_type='streaks'\): a capture's rain_type is one "
        r"of drizzle, streak, storm, fog-like$",
    ):
        captures(_dataset, Filters(rain_type=("storm", "streaks")))
    with pytest.raises(DatasetError, match=r"Filters\(layer='clear'\): a capture's layer is one"):
        captures(_dataset, Filters(layer="clear"))
    every_type = ("drizzle", "streak", "storm", "fog-like")
    rainy = captures(_dataset, Filters(layer="rainy"))
    assert len(captures(_dataset, Filters(rain_type=every_type))) == len(rainy)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"split": 3}, r"^Filters\(split=…\) is a str, or a tuple of them, or None; not 3$"),
        ({"split": ("train", 3)}, r"Filters\(split=…\) .*; not \('train', 3\)$"),
        # Taken apart, these would select by their bytes or keys.
        ({"rain_type": b"storm"}, r"Filters\(rain_type=…\) .*; not b'storm'$"),
        ({"layer": {"rainy": 1}}, r"Filters\(layer=…\) .*; not \{'rainy': 1\}$"),
        ({"min_confidence": "0.5"}, r"^Filters\(min_confidence=…\) .*; not '0.5'$"),
        ({"min_confidence": True}, r"min_confidence=…\) is a number from 0 to 1.*not True$"),
        ({"min_confidence": float("nan")}, r"min_confidence=…\) .*; not nan$"),
        ({"min_confidence": 50}, r"min_confidence=…\) .*; not 50$"),
        ({"query": 5}, r"^Filters\(query=…\) is a str or None; not 5$"),
        ({"paired_sequences": "no"}, r"paired_sequences=…\) is True or False; not 'no'$"),
    ],
)
def test_a_filter_of_the_wrong_type_is_refused_when_made(given, message):
    with pytest.raises(SettingError, match=message):
        Filters(**given)


def test_filters_of_the_right_types_are_made_and_the_error_is_one_class():
    Filters(split=["train", "val"], rain_type="storm", min_confidence=1, paired_sequences=True)
    Filters(camera_model=("X100",), min_confidence=0.5, query="iso >= 800")
    assert dataset_module.SettingError is SettingError


@pytest.mark.parametrize(
    "query",
    [
        "0",  # pandas' query takes it as a row label, and gives that row as a Series
        "near_dup_distance.isnull() * 1",  # as row labels: row 1, once for each capture
        "looks_rainy",  # null for rainy captures
        "split.notna().iloc[:1]",  # for one row only
    ],
)
def test_a_query_that_is_no_condition_is_refused_not_taken_as_row_labels(_dataset, query):
    no_condition = rf"^bad query '{re.escape(query)}': not a condition \(true or false for "
    with pytest.raises(DatasetError, match=no_condition):
        captures(_dataset, Filters(query=query))
    with pytest.raises(DatasetError, match=r"^bad query 'seed \* 0': not a condition"):
        pairs(_dataset, "syn-streak", Filters(query="seed * 0"))
    assert len(captures(_dataset, Filters(query="looks_rainy.fillna(False) | width > 0"))) == len(
        captures(_dataset, Filters())
    )
