"""`rainbench tag-eval DS`: a tagger against the dataset's manual labels."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from rainbench import __version__
from rainbench.cli import main
from rainbench.files import file_sha256
from rainbench.ingest import IngestOptions, ingest
from rainbench.ingest.agreement import label_agreement
from rainbench.ingest.tag import tag_dataset
from rainbench.ingest.taggers import FitReport
from rainbench.shards import manifest
from rainbench.shards.dataset import DatasetError
from rainbench.tagging.features import FEATURE_NAMES, feature_column
from rainbench.tagging.tagger import RAIN_TYPES, load_tagger
from rainbench.train import tagger


def _samples(ds) -> pd.DataFrame:
    return pd.read_parquet(ds / "manifests" / "samples.parquet").set_index("key")


def test_agreement_is_the_taggers_own_decisions_against_the_labels(tmp_path, sample_dataset):
    samples = _samples(sample_dataset)
    rainy = samples[samples["layer"] == "rainy"].sort_index()
    # Half labelled with the tagger's own pick, half with another type, one clean.
    picks = list(rainy["rain_type_auto"])
    labels = [
        pick if i % 2 == 0 else RAIN_TYPES[(RAIN_TYPES.index(pick) + 1) % 4]
        for i, pick in enumerate(picks)
    ]
    labels[-1] = "clean"
    rows = [f"{key},{label}" for key, label in zip(rainy.index, labels, strict=True)]
    sheet = tmp_path / "labels.csv"
    sheet.write_text("\n".join(["key,rain_type", *rows]) + "\n")
    tag_dataset(sample_dataset, labels=sheet)

    result = label_agreement(sample_dataset)

    typed = len(labels) - 1
    assert sum(sum(row) for row in result.confusion) == typed
    assert result.labels["clean"] == 1
    assert result.accuracy == pytest.approx(sum(i % 2 == 0 for i in range(typed)) / typed, abs=1e-4)
    assert result.tagger == load_tagger().version and not result.fitted_to_these
    assert result.rain_flagged is not None and result.clean_flagged in (0.0, 1.0)
    assert 0 <= result.calibration_error <= 1
    text = "\n".join(result.to_lines())
    assert "macro-F1" in text and "| **streak** |" in text


def test_a_dataset_without_labels_or_a_dataset_at_all_is_one_clear_error(tmp_path, sample_dataset):
    with pytest.raises(DatasetError, match="no manual labels"):
        label_agreement(sample_dataset)
    with pytest.raises(DatasetError, match="not a rainbench dataset"):
        label_agreement(tmp_path)


def test_a_dataset_whose_ingest_accepted_nothing_has_no_manual_labels(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.jpg").write_bytes(b"not a picture")
    ingest([raw], tmp_path / "ds", IngestOptions(workers=1))
    with pytest.raises(DatasetError, match="ds has no manual labels"):
        label_agreement(tmp_path / "ds")


def test_the_fitted_tagger_is_flagged_as_not_held_out(tmp_path, sample_dataset, monkeypatch):
    # Used as the dataset's tagger, as a fit that beat the shipped tagger is.
    monkeypatch.setattr(FitReport, "beats_shipped", property(lambda report: True))
    samples = _samples(sample_dataset)
    keys = sorted(samples.index)
    # Labels the fit can learn: by one of the features the tagger reads.
    level = samples[feature_column("hf_share")]
    rows = [f"{key},{'storm' if level[key] > level.median() else 'streak'}" for key in keys]
    sheet = tmp_path / "labels.csv"
    sheet.write_text("\n".join(["key,rain_type", *rows]) + "\n")
    assert tag_dataset(sample_dataset, labels=sheet, fit=True).fit["penalty"] is not None

    active = label_agreement(sample_dataset)
    shipped = label_agreement(sample_dataset, "shipped")

    assert active.fitted_to_these and "not held-out" in "\n".join(active.to_lines())
    # What printed the held-out agreement is tag's --fit, an option tag-eval does not have.
    assert "`rainbench tag --fit` printed that" in "\n".join(active.to_lines())
    made_from = f"fitted to {len(keys)} of this dataset's rain-type labels ({len(keys)} judged"
    assert made_from in "\n".join(active.to_lines())
    assert not shipped.fitted_to_these and shipped.tagger == load_tagger().version


def test_stored_features_are_what_is_judged(sample_dataset, tmp_path):
    samples = _samples(sample_dataset)
    key = samples.index[0]
    sheet = tmp_path / "labels.csv"
    sheet.write_text(f"key,rain_type\n{key},fog-like\n")
    tag_dataset(sample_dataset, labels=sheet)
    row = samples.loc[key]
    features = np.array([[row[feature_column(name)] for name in FEATURE_NAMES]])
    expected = RAIN_TYPES[int(np.argmax(load_tagger().probabilities(features)[0, 1:]))]

    result = label_agreement(sample_dataset)

    tagged = RAIN_TYPES[int(np.argmax(result.confusion[RAIN_TYPES.index("fog-like")]))]
    assert tagged == expected


def test_the_report_names_the_manifest_it_judged_and_the_tool(sample_dataset, tmp_path):
    key = _samples(sample_dataset).index[0]
    sheet = tmp_path / "labels.csv"
    sheet.write_text(f"key,rain_type\n{key},fog-like\n")
    tag_dataset(sample_dataset, labels=sheet)
    out = tmp_path / "tag-eval.json"

    result = CliRunner().invoke(main, ["tag-eval", str(sample_dataset), "--out", str(out)])

    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    samples = sample_dataset / "manifests" / "samples.parquet"
    assert report["manifest_sha256"] == hashlib.sha256(samples.read_bytes()).hexdigest()
    assert report["rainbench_version"] == __version__
    assert report["versions"] == {"numpy": np.__version__}


def test_the_manifest_hash_is_that_of_the_file_the_labels_were_read_from(
    sample_dataset, tmp_path, monkeypatch
):
    # A tag replacing samples.parquet as it is read: the labels judged and the
    # manifest_sha256 the report records come from one and the same file.
    first, second = _samples(sample_dataset).query("layer == 'rainy'").index[:2]
    sheet = tmp_path / "labels.csv"
    sheet.write_text(f"key,rain_type\n{first},fog-like\n")
    tag_dataset(sample_dataset, labels=sheet)
    path = sample_dataset / "manifests" / "samples.parquet"
    rows = manifest.read_manifest(path, manifest.SAMPLES).to_pylist()
    for row in rows:
        if row["key"] == second:
            row["rain_type"], row["rain_type_source"] = "fog-like", "manual"
    relabelled = manifest.rows_to_table(rows, manifest.SAMPLES)
    read, replaced = manifest.read_manifest, []

    def read_then_replace(where, schema, *args, **kwargs):
        table = read(where, schema, *args, **kwargs)
        if Path(where) == path and not replaced:
            replaced.append(True)
            manifest.write_manifest(path, relabelled)
        return table

    monkeypatch.setattr(manifest, "read_manifest", read_then_replace)
    result = label_agreement(sample_dataset)
    assert sum(result.labels.values()) == 2 and result.manifest_sha256 == file_sha256(path)


def test_a_fit_that_kept_the_shipped_weights_is_judged_without_the_warning(
    tmp_path, sample_dataset, monkeypatch
):
    keys = sorted(_samples(sample_dataset).index)
    rows = [f"{key},{('storm', 'streak')[i % 2]}" for i, key in enumerate(keys)]
    sheet = tmp_path / "labels.csv"
    sheet.write_text("\n".join(["key,rain_type", *rows]) + "\n")
    monkeypatch.setattr("rainbench.tagging.fit.choose_penalty", lambda *args: None)
    fit = tag_dataset(sample_dataset, labels=sheet, fit=True).fit
    assert fit["penalty"] is None

    active = label_agreement(sample_dataset)

    assert not active.fitted_to_these and "not held-out" not in "\n".join(active.to_lines())
    assert active.macro_f1 == label_agreement(sample_dataset, "shipped").macro_f1


def test_tag_eval_without_a_dataset_says_it_takes_minutes(monkeypatch):
    class Result:
        def to_lines(self):
            return ["judged"]

    monkeypatch.setattr(tagger, "evaluate_held_out", lambda per_cell, seed, workers: Result())
    assert "it takes minutes" in CliRunner().invoke(main, ["tag-eval", "--help"]).output
    shown = CliRunner().invoke(main, ["tag-eval", "-j", "2", "--progress"])
    assert shown.exit_code == 0, shown.output
    assert "measuring synthetic rain on 2 workers: this takes minutes" in shown.stderr
    quiet = CliRunner().invoke(main, ["tag-eval", "--no-progress"])
    assert quiet.stderr == "" and quiet.stdout == "judged\n"


def test_clean_labels_alone_judge_no_rain_type(tmp_path, sample_dataset):
    samples = _samples(sample_dataset)
    keys = samples[samples["layer"] == "rainy"].index[:2]
    sheet = tmp_path / "labels.csv"
    sheet.write_text("key,rain_type\n" + "".join(f"{key},clean\n" for key in keys))
    tag_dataset(sample_dataset, labels=sheet)

    result = label_agreement(sample_dataset)

    assert result.macro_f1 is None and result.accuracy is None
    assert result.labels["clean"] == 2 and result.clean_flagged is not None
    text = "\n".join(result.to_lines())
    assert "no rain-type label to judge the rain type by; clean flagged" in text
    assert "macro-F1" not in text and "| **streak** |" not in text


def test_labelled_captures_whose_features_tag_would_measure_again_are_not_judged(
    sample_dataset, tmp_path
):
    # A stored feature that is no measurement, and a row of features version 1 (which
    # has no thin_* or ridge_* features): `rainbench tag` measures both again; tag-eval counts them
    # as unmeasured and judges the others, rather than ending on them.
    keys = sorted(_samples(sample_dataset).query("layer == 'rainy'").index)[:3]
    sheet = tmp_path / "labels.csv"
    sheet.write_text("key,rain_type\n" + "".join(f"{key},streak\n" for key in keys))
    tag_dataset(sample_dataset, labels=sheet)
    path = sample_dataset / "manifests" / "samples.parquet"
    rows = manifest.read_manifest(path, manifest.SAMPLES).to_pylist()
    for row in rows:
        if row["key"] == keys[0]:
            row[feature_column(FEATURE_NAMES[0])] = float("nan")
        elif row["key"] == keys[1]:
            row["features_version"] = "1"
            for name in FEATURE_NAMES:
                if name.startswith(("thin_", "ridge_")):
                    row[feature_column(name)] = None
    manifest.write_manifest(path, manifest.rows_to_table(rows, manifest.SAMPLES))

    result = label_agreement(sample_dataset)

    assert result.unmeasured == 2 and sum(map(sum, result.confusion)) == 1
    assert "2 labelled captures have no usable features" in "\n".join(result.to_lines())
