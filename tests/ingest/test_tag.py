"""Tagging a dataset: ingest tags as it goes, `tag_dataset` re-tags from stored
features without touching shards, and label sheets win over the tagger."""

import hashlib
import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from rainbench.cli import main
from rainbench.ingest import IngestOptions, ingest
from rainbench.ingest import tag as tag_module
from rainbench.ingest.tag import LabelsRejected, tag_dataset
from rainbench.shards import manifest
from rainbench.shards.dataset import Dataset, DatasetError
from rainbench.shards.stats import dataset_stats
from rainbench.tagging.features import FEATURE_NAMES, feature_column
from rainbench.tagging.tagger import RAIN_TYPES

ONE = IngestOptions(workers=1)


@pytest.fixture
def tagged(sample_dataset):
    return sample_dataset


def _samples(ds) -> pd.DataFrame:
    return pd.read_parquet(ds / "manifests" / "samples.parquet").set_index("key")


def _hashes(ds) -> dict[str, str]:
    return {
        p.relative_to(ds).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(ds.rglob("*"))
        if p.is_file()
    }


def _sheet(tmp_path, rows: list[str]):
    path = tmp_path / "labels.csv"
    path.write_text("\n".join(["source_path,sha256,key,rain_type,note", *rows]) + "\n")
    return path


def test_ingest_stores_features_and_tags_every_rainy_capture(tagged):
    samples = _samples(tagged)
    assert samples["features_version"].notna().all()
    for name in FEATURE_NAMES:
        assert samples[feature_column(name)].notna().all(), name
    assert samples["rain_type"].isin(RAIN_TYPES).all()
    assert (samples["rain_type_source"] == "auto").all()
    assert samples["rain_type_confidence"].between(0, 1).all()
    assert (samples["rain_type"] == samples["rain_type_auto"]).all()
    assert samples["looks_rainy"].isna().all()  # only clean captures are flagged


def test_retagging_is_idempotent_and_touches_only_nothing(tagged):
    before = _hashes(tagged)
    summary = tag_dataset(tagged)
    assert summary.changed == 0 and summary.measured == 0
    assert summary.samples == len(_samples(tagged))
    assert _hashes(tagged) == before  # not even samples.parquet is rewritten


def _forget_features(ds) -> pd.DataFrame:
    """Clear every row's stored features; the rows as they were."""
    path = Dataset(ds).samples_manifest
    table = manifest.read_manifest(path, manifest.SAMPLES)
    stored = table.to_pandas().set_index("key")
    for name in ["features_version", *(feature_column(n) for n in FEATURE_NAMES)]:
        index = table.schema.get_field_index(name)
        table = table.set_column(
            index, name, pa.nulls(table.num_rows, table.schema.field(name).type)
        )
    manifest.write_manifest(path, table)
    return stored


def test_missing_features_are_measured_again_from_the_shards(tagged):
    stored = _forget_features(tagged)
    shards = {k: v for k, v in _hashes(tagged).items() if k.startswith("shards/")}

    summary = tag_dataset(tagged)

    assert summary.measured == len(stored) and not summary.unmeasurable
    again = _samples(tagged)
    # The same decode as ingest's, so the same features and tags.
    columns = [feature_column(name) for name in FEATURE_NAMES] + ["rain_type"]
    pd.testing.assert_frame_equal(again[columns], stored.loc[again.index, columns])
    assert {k: v for k, v in _hashes(tagged).items() if k.startswith("shards/")} == shards


# Stored features no picture gives: not numbers, infinite, beyond FAR_BEYOND, null.
NO_MEASUREMENT = [float("nan"), float("-inf"), 1e308, None]


def _spoil_features(ds) -> dict[str, dict]:
    """Write NO_MEASUREMENT into a feature of the first rows (pyarrow, which keeps NaN
    a NaN); those rows as they were, by key."""
    path = Dataset(ds).samples_manifest
    rows = manifest.read_manifest(path, manifest.SAMPLES).to_pylist()
    before = {row["key"]: dict(row) for row in rows[: len(NO_MEASUREMENT)]}
    for row, value, name in zip(rows, NO_MEASUREMENT, FEATURE_NAMES, strict=False):
        row[feature_column(name)] = value
    pq.write_table(pa.Table.from_pylist(rows, schema=manifest.SAMPLES), path)
    return before


def test_stored_features_that_are_no_measurement_are_measured_again(tagged):
    before = _spoil_features(tagged)

    result = CliRunner().invoke(main, ["tag", str(tagged), "--workers", "1"])

    assert result.exit_code == 0, result.output
    assert f"{len(before)} captures had stored features that are no measurement" in result.output
    summary = tag_dataset(tagged)  # measured now: nothing left to measure
    assert summary.measured == 0 and summary.unusable == []
    again = _samples(tagged)
    columns = [feature_column(name) for name in FEATURE_NAMES] + ["rain_type", "tagger_version"]
    for key, row in before.items():
        assert {c: again.loc[key, c] for c in columns} == {c: row[c] for c in columns}


def test_a_capture_damaged_in_place_is_not_measured_as_if_it_were_the_capture(tagged):
    # Its shard still reads, its JPEG may still decode: only its digest tells.
    import tarfile

    before = _spoil_features(tagged)
    key = sorted(before)[0]
    row = _samples(tagged).loc[key]
    shard = tagged / row["shard"]
    with tarfile.open(shard) as tar:
        info = next(m for m in tar.getmembers() if m.name.startswith(key) and m.isfile())
    data = bytearray(shard.read_bytes())
    middle = info.offset_data + info.size // 2
    data[middle : middle + 64] = bytes(64)
    shard.write_bytes(bytes(data))

    summary = tag_dataset(tagged)

    assert summary.unmeasurable == [key]
    assert summary.measured == len(before) - 1
    assert pd.isna(_samples(tagged).loc[key, "rain_type"])


def test_stored_features_that_are_no_measurement_and_cannot_be_decoded_are_reported(tagged):
    before = _spoil_features(tagged)
    for shard in tagged.glob("shards/**/*.tar"):
        shard.write_bytes(b"")  # nothing can be measured again

    summary = tag_dataset(tagged)

    assert summary.unusable == sorted(before) == summary.unmeasurable
    assert summary.measured == 0
    # As a capture whose features are missing and cannot be decoded: left untagged.
    again = _samples(tagged)
    assert again.loc[list(before), "rain_type"].isna().all()
    assert again.drop(index=list(before))["rain_type"].notna().all()


def test_a_shards_captures_are_measured_in_parts(tagged, monkeypatch):
    """Parts of a shard, not whole shards, so that a dataset of few shards keeps every
    worker busy (one worker here: parts run inline, where they can be counted)."""
    stored = _forget_features(tagged)
    parts = []

    def measure_part(task):
        parts.append((task[1], [stale.key for stale in task[2]]))
        return measure_shard(task)

    measure_shard = tag_module._measure_shard
    monkeypatch.setattr(tag_module, "_measure_shard", measure_part)

    summary = tag_dataset(tagged, workers=1)

    assert summary.measured == len(stored)
    assert len(parts) > len({shard for shard, _ in parts})
    assert sorted(key for _, keys in parts for key in keys) == sorted(stored.index)


def test_manual_labels_win_and_stay(tmp_path, tagged):
    samples = _samples(tagged)
    first, second = samples.index[:2]
    other = next(t for t in RAIN_TYPES if t != samples.loc[first, "rain_type"])
    sheet = _sheet(
        tmp_path,
        [f",,{first},{other},checked by eye", f"{samples.loc[second, 'source_path']},,,clean,"],
    )
    summary = tag_dataset(tagged, labels=sheet)
    assert summary.labelled == 2 and summary.manual == 2
    for _ in range(2):  # and a later run without the sheet keeps them
        row = _samples(tagged).loc[first]
        assert (row.rain_type, row.rain_type_source, row.rain_type_confidence) == (
            other,
            "manual",
            1.0,
        )
        assert row.rain_type_note == "checked by eye"
        assert row.rain_type_auto == samples.loc[first, "rain_type"]
        cleared = _samples(tagged).loc[second]
        assert pd.isna(cleared.rain_type) and cleared.rain_type_source == "manual"
        tag_dataset(tagged)


def test_the_summary_counts_changed_tags_and_changed_rain_types_apart(tmp_path, tagged):
    # A label that confirms the tagger's type changes the tag (source, confidence) but
    # not the rain type; one that names another type changes both.
    from rainbench.cli.dataset import format_tagging

    samples = _samples(tagged)
    first, second = samples.index[:2]
    other = next(t for t in RAIN_TYPES if t != samples.loc[second, "rain_type"])
    sheet = _sheet(
        tmp_path, [f",,{first},{samples.loc[first, 'rain_type']},", f",,{second},{other},"]
    )
    summary = tag_dataset(tagged, labels=sheet)
    assert (summary.changed, summary.rain_types_changed) == (2, 1)
    assert summary.to_dict()["rain_types_changed"] == 1
    line = format_tagging(summary, tagged)[-1]
    assert "tags changed on 2 captures, the rain type itself on 1" in line


def test_bad_labels_are_reported_and_nothing_is_applied(tmp_path, tagged):
    key = _samples(tagged).index[0]
    sheet = _sheet(tmp_path, [f",,{key},storm,", "nowhere.jpg,,,streak,", f",,{key[::-1]},hail,"])
    before = _hashes(tagged)
    with pytest.raises(LabelsRejected) as raised:
        tag_dataset(tagged, labels=sheet)
    messages = [str(p) for p in raised.value.problems]
    assert messages[0].startswith(f"{sheet}:3: ") and "nowhere.jpg" in messages[0]
    assert messages[1].startswith(f"{sheet}:4: ") and "hail" in messages[1]
    assert _hashes(tagged) == before

    summary = tag_dataset(tagged, labels=sheet, skip_bad_labels=True)
    assert summary.labelled == 1 and len(summary.label_problems) == 2
    assert _samples(tagged).loc[key, "rain_type"] == "storm"
    # dataset.json says which sheet it was, the refused run not at all; no shard changes.
    (recorded,) = json.loads((tagged / "dataset.json").read_text())["label_sheets"]
    assert recorded["file"] == "labels.csv" and recorded["rows"] == 3
    assert recorded["sha256"] == hashlib.sha256(sheet.read_bytes()).hexdigest()
    assert (recorded["labelled"], recorded["skipped"]) == (1, 2)
    assert {"applied_at", "tool_version"} <= recorded.keys()
    changed = {path for path, digest in _hashes(tagged).items() if before.get(path) != digest}
    assert changed == {"dataset.json", "manifests/samples.parquet"}
    # The same sheet again, to the same effect, is not recorded again: nothing changes.
    again = _hashes(tagged)
    tag_dataset(tagged, labels=sheet, skip_bad_labels=True)
    assert _hashes(tagged) == again


def test_another_datasets_sheet_is_one_problem_that_counts_its_rows(tmp_path, tagged):
    sheet = _sheet(tmp_path, [f",,{n:024x},storm," for n in range(1, 9)])
    with pytest.raises(LabelsRejected) as raised:
        tag_dataset(tagged, labels=sheet)
    [problem] = raised.value.problems
    assert "is it another dataset's sheet?" in problem.message
    # and no "--skip-bad-labels applies the rest": there is no rest
    assert str(raised.value) == "8 label problem(s); nothing from the sheet was applied"


def test_ingest_applies_labels_and_refuses_a_bad_sheet_first(tmp_path, capture_folder):
    name = sorted(p.name for p in capture_folder.iterdir() if p.is_file())[0]
    good = _sheet(tmp_path, [f"{name},,,fog-like,"])
    ds = tmp_path / "ds"
    summary = ingest([capture_folder], ds, IngestOptions(workers=1, labels=good))
    assert summary.tagging["labelled"] == 1
    row = _samples(ds).set_index("source_path").loc[name]
    assert (row.rain_type, row.rain_type_source) == ("fog-like", "manual")
    run = json.loads((ds / "dataset.json").read_text())["runs"][-1]
    sheet_sha256 = hashlib.sha256(good.read_bytes()).hexdigest()
    assert run["labels"] == {"path": str(good), "sha256": sheet_sha256}

    bad = tmp_path / "bad.csv"
    bad.write_text("source_path,rain_type\nx.jpg,hail\n")
    with pytest.raises(LabelsRejected):
        ingest([capture_folder], tmp_path / "other", IngestOptions(workers=1, labels=bad))
    assert not (tmp_path / "other").exists()  # refused before any work


def test_clean_captures_get_no_rain_type_but_a_flag(tmp_path, capture_folder):
    ds = tmp_path / "ds"
    ingest([capture_folder], ds, IngestOptions(workers=1, layer="clean"))
    samples = _samples(ds)
    assert samples["rain_type"].isna().all() and samples["rain_type_source"].isna().all()
    assert samples["looks_rainy"].notna().all()


def test_stats_count_rain_types(tagged):
    stats = dataset_stats(Dataset(tagged))
    assert sum(stats["rain_types"].values()) == stats["samples"]
    assert set(stats["rain_types"]) <= set(RAIN_TYPES)
    assert stats["rain_type_sources"] == {"auto": stats["samples"]}


def test_tagging_a_folder_that_is_no_dataset_fails_clearly(tmp_path):
    with pytest.raises(DatasetError, match="not a rainbench dataset"):
        tag_dataset(tmp_path)


def test_rows_without_a_size_are_refused_in_one_line(tagged):
    path = tagged / "manifests" / "samples.parquet"
    table = manifest.read_manifest(path, manifest.SAMPLES)
    column = table.schema.get_field_index("height")
    table = table.set_column(column, "height", pa.nulls(table.num_rows, pa.int64()))
    manifest.write_manifest(path, table)
    with pytest.raises(DatasetError, match="have no width or height") as refused:
        tag_dataset(tagged)
    assert "\n" not in str(refused.value)


def test_a_sheet_with_only_a_header_is_warned_of(tmp_path, tagged):
    sheet = _sheet(tmp_path, ["# nothing labelled yet"])
    assert tag_dataset(tagged, sheet).empty_sheet == str(sheet)
    result = CliRunner().invoke(main, ["tag", str(tagged), "--labels", str(sheet)])
    assert result.exit_code == 0, result.output
    assert f"warning: {sheet} has no label rows, only a header" in result.output


def test_stats_says_what_it_counts_and_why_a_path_is_no_dataset(tmp_path, tagged):
    shown = CliRunner().invoke(main, ["stats", str(tagged)])
    assert shown.exit_code == 0, shown.output
    assert f"{len(_samples(tagged))} captures in " in shown.output.splitlines()[0]
    missing = CliRunner().invoke(main, ["stats", str(tmp_path / "nowhere")])
    assert missing.exit_code == 1
    assert missing.output == f"error: {tmp_path / 'nowhere'} does not exist\n"
    sheet = _sheet(tmp_path, [])
    file = CliRunner().invoke(main, ["stats", str(sheet)])
    assert file.exit_code == 1
    assert file.output == f"error: {sheet} is a file, not a dataset folder\n"


def test_a_raw_capture_is_measured_again_under_the_readers_pixel_cap(tmp_path, monkeypatch):
    """Its sensor, a little larger than the picture the manifest sizes, is bounded by the
    readers' cap (RAINBENCH_MAX_PIXELS) as every other capture is."""
    pytest.importorskip("rawpy", reason="rawpy is in the [raw] extra")
    from datetime import datetime

    from rainbench.demo.captures import CaptureSpec, write_capture

    spec = CaptureSpec("IMG_0001.dng", 256, 192, fmt="dng", captured_at=datetime(2026, 5, 4))
    write_capture(tmp_path / "raw", spec)
    ingest([tmp_path / "raw"], tmp_path / "ds", IngestOptions(workers=1))
    samples = manifest.read_manifest(Dataset(tmp_path / "ds").samples_manifest, manifest.SAMPLES)
    (row,) = samples.to_pylist()
    stale = [tag_module.Stale.of(row)]
    root = tmp_path / "ds"
    ((_, preview),) = tag_module.previews(root, row["shard"], stale)
    assert preview is not None
    monkeypatch.setenv("RAINBENCH_MAX_PIXELS", "1000")
    assert list(tag_module.previews(root, row["shard"], stale)) == [(row["key"], None)]


def test_a_dataset_whose_ingest_accepted_nothing_is_a_dataset_of_no_captures(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.jpg").write_bytes(b"not a picture")
    ds = tmp_path / "ds"
    ingest([raw], ds, ONE)
    assert not (ds / "manifests" / "samples.parquet").exists()  # as stats and verify read it

    summary = tag_dataset(ds)

    assert summary.samples == 0 and summary.rain_types == {}
    result = CliRunner().invoke(main, ["tag", str(ds)])
    assert result.exit_code == 0
    assert result.output.startswith("tagged 0 captures; 0 by manual label")


def test_a_sheet_named_in_bytes_that_are_not_utf8_is_said_as_ingest_stores_names(tmp_path, tagged):
    sheet = tmp_path / "labels\udcff.csv"  # the byte 0xff, as Python names it on disk
    sheet.write_text(f"key,rain_type\n{'0' * 24},storm\n")

    summary = tag_dataset(tagged, labels=sheet, skip_bad_labels=True)

    # No lone surrogate reaches --json or dataset.json: a strict JSON reader refuses one.
    assert summary.sheet["file"] == "labels\\xff.csv"
    assert summary.label_problems == [
        f"{tmp_path}/labels\\xff.csv:2: no capture has key '{'0' * 24}'"
    ]
    recorded = json.loads((tagged / "dataset.json").read_text())["label_sheets"][-1]
    assert recorded["file"] == "labels\\xff.csv"
    sheet.write_text("key,rain_type\n")
    assert tag_dataset(tagged, labels=sheet).empty_sheet == f"{tmp_path}/labels\\xff.csv"


def test_ingest_records_a_sheet_named_in_bytes_that_are_not_utf8_as_it_stores_names(
    tmp_path, capture_folder
):
    sheet = tmp_path / "labels\udcff.csv"
    sheet.write_text("source_path,rain_type\n")
    ingest([capture_folder], tmp_path / "ds", IngestOptions(workers=1, labels=sheet))
    text = (tmp_path / "ds" / "dataset.json").read_text(encoding="utf-8")
    assert json.loads(text)["runs"][-1]["labels"]["path"] == f"{tmp_path}/labels\\xff.csv"


def test_the_rows_skipped_are_counted_also_where_one_line_says_many(tmp_path, tagged):
    # More rows naming no capture than are listed one by one: said in one line.
    rows = [f",,{index:024x},storm," for index in range(8)]
    sheet = _sheet(tmp_path, [f",,{_samples(tagged).index[0]},storm,", *rows])
    summary = tag_dataset(tagged, labels=sheet, skip_bad_labels=True)
    assert len(summary.label_problems) == 6
    assert (summary.sheet["rows"], summary.sheet["labelled"], summary.sheet["skipped"]) == (9, 1, 8)
