"""A dataset's own tagger: `tag --fit` refits on its manual labels, keeps the fit
versioned in DS/taggers/, with dataset.json naming it when it beat the shipped tagger,
and later tag and ingest runs use it; manual labels still win; `tag --tagger shipped`
goes back to the shipped tagger."""

import json
import shutil

import pandas as pd
import pyarrow as pa
import pytest
from click.testing import CliRunner

from rainbench import __version__
from rainbench.cli import main
from rainbench.demo.captures import sample_specs, write_capture
from rainbench.ingest import IngestOptions, ingest
from rainbench.ingest.tag import _scenes, tag_dataset
from rainbench.ingest.taggers import FitReport, reusable
from rainbench.shards import manifest
from rainbench.shards.dataset import Dataset, DatasetError
from rainbench.shards.verify import verify
from rainbench.tagging.fit import TooFewLabels
from rainbench.tagging.tagger import load_tagger
from rainbench.versions import CAPTURE_LIBRARIES, installed_versions

ONE = IngestOptions(workers=1)


@pytest.fixture
def ds(sample_dataset):
    return sample_dataset


@pytest.fixture
def fits_win(monkeypatch):
    """Every fit beats the shipped tagger: labels dealt out by key carry no signal, so
    a real fit on them seldom does."""
    monkeypatch.setattr(FitReport, "beats_shipped", property(lambda report: True))


def _samples(ds) -> pd.DataFrame:
    return pd.read_parquet(ds / "manifests" / "samples.parquet").set_index("key")


def label_sheet(ds, path, types=("storm", "streak")):
    """A sheet labelling every rainy capture, the types dealt out in key order."""
    keys = sorted(_samples(ds).index)
    rows = [f"{key},{types[i % len(types)]}" for i, key in enumerate(keys)]
    path.write_text("\n".join(["key,rain_type", *rows]) + "\n")
    return path


def test_fit_stores_a_versioned_tagger_that_retags_and_later_ingests_use(tmp_path, ds, fits_win):
    sheet = label_sheet(ds, tmp_path / "labels.csv")

    summary = tag_dataset(ds, labels=sheet, fit=True)

    fit = summary.fit
    assert fit["labels"] == {"drizzle": 0, "streak": 16, "storm": 17, "fog-like": 0}
    assert fit["path"] == "taggers/tagger-fit-1.json" and not fit["reused"]
    assert fit["version"].startswith(f"{load_tagger().version}-fit-1-")
    assert set(fit["cv_fitted"]) == {"macro_f1", "accuracy", "f1"}
    assert 2 <= fit["scenes"] <= 33
    info = json.loads((ds / "dataset.json").read_text())
    assert info["tagger"] == {"version": fit["version"], "path": fit["path"]}
    stored = json.loads((ds / fit["path"]).read_text())
    assert stored["version"] == fit["version"]
    assert stored["calibration"]["fit"]["labels_sha256"] == fit["labels_sha256"]
    assert stored["calibration"]["fit"]["base_version"] == load_tagger().version
    made_by = {"rainbench": __version__, **installed_versions(CAPTURE_LIBRARIES)}
    assert stored["calibration"]["versions"] == made_by and "scipy" in made_by
    samples = _samples(ds)
    assert (samples["tagger_version"] == fit["version"]).all()
    assert (samples["rain_type_source"] == "manual").all()  # the labels still win
    assert summary.tagger == fit["version"]

    more = tmp_path / "more"
    for spec in sample_specs(3, seed=21, size=(480, 360)):
        write_capture(more, spec)
    ingest([more], ds, ONE)
    added = _samples(ds).drop(samples.index)
    assert len(added) == 3
    assert (added["tagger_version"] == fit["version"]).all()
    assert (added["rain_type_source"] == "auto").all()

    # The same labels again: the same tagger, not a second file.
    again = tag_dataset(ds, fit=True).fit
    assert again["reused"] and again["version"] == fit["version"]
    assert sorted(p.name for p in (ds / "taggers").iterdir()) == ["tagger-fit-1.json"]


def test_fit_alone_learns_from_the_labels_already_applied(tmp_path, ds, fits_win):
    tag_dataset(ds, labels=label_sheet(ds, tmp_path / "labels.csv"))
    fit = tag_dataset(ds, fit=True).fit
    assert fit["labels"]["storm"] == 17
    # New labels make a new version beside the first.
    relabelled = label_sheet(ds, tmp_path / "other.csv", types=("streak", "storm", "drizzle"))
    second = tag_dataset(ds, labels=relabelled, fit=True).fit
    assert second["path"] == "taggers/tagger-fit-2.json" and second["version"] != fit["version"]
    assert (ds / fit["path"]).exists()
    assert json.loads((ds / "dataset.json").read_text())["tagger"]["path"] == second["path"]


def test_a_fit_that_does_not_beat_the_shipped_tagger_is_used_with_a_warning(
    tmp_path, ds, monkeypatch
):
    monkeypatch.setattr(FitReport, "beats_shipped", property(lambda report: False))
    sheet = label_sheet(ds, tmp_path / "labels.csv")
    result = CliRunner().invoke(main, ["tag", str(ds), "--labels", str(sheet), "--fit"])
    assert result.exit_code == 0, result.output
    assert (
        "warning: the fit did not beat the shipped tagger on held-out labels; it is the "
        f"dataset's tagger as asked: rainbench tag {ds} --tagger shipped goes back"
    ) in result.output
    info = json.loads((ds / "dataset.json").read_text())
    assert info["tagger"]["path"] == "taggers/tagger-fit-1.json"
    # Fitting again on the same labels finds the stored fit instead of a second file.
    again = tag_dataset(ds, fit=True)
    assert again.fit["reused"] and not again.fit["beats_shipped"]
    assert sorted(p.name for p in (ds / "taggers").iterdir()) == ["tagger-fit-1.json"]


def test_tagger_shipped_makes_the_shipped_tagger_active_again(tmp_path, ds, fits_win):
    fit = tag_dataset(ds, labels=label_sheet(ds, tmp_path / "labels.csv"), fit=True).fit
    result = CliRunner().invoke(main, ["tag", str(ds), "--tagger", "shipped"])
    assert result.exit_code == 0, result.output
    assert (
        f"the shipped tagger is the dataset's tagger again, in place of {fit['version']} "
        "(this removes no file from taggers/)"
    ) in result.output
    assert "tagger" not in json.loads((ds / "dataset.json").read_text())
    assert (ds / fit["path"]).exists()
    samples = _samples(ds)
    assert (samples["tagger_version"] == load_tagger().version).all()
    assert (samples["rain_type_source"] == "manual").all()  # the labels still win
    assert tag_dataset(ds).tagger == load_tagger().version
    again = CliRunner().invoke(main, ["tag", str(ds), "--tagger", "shipped"])
    assert "the shipped tagger was already the dataset's tagger" in again.output
    both = CliRunner().invoke(main, ["tag", str(ds), "--tagger", "shipped", "--fit"])
    assert both.exit_code == 2 and "--fit and --tagger shipped" in both.output


def test_captures_joined_by_a_sequence_or_a_near_duplicate_are_one_scene():
    rows = [
        {"key": "a", "near_dup_of": None, "sequence": None},
        {"key": "c", "near_dup_of": "x", "sequence": None},  # x: a capture not labelled
        {"key": "b", "near_dup_of": "x", "sequence": "s"},
        {"key": "d", "near_dup_of": None, "sequence": "s"},
        {"key": "e", "near_dup_of": None, "sequence": "t"},
    ]
    # Each scene is named by its smallest key, whatever order the rows come in.
    assert _scenes(rows) == ["a", "b", "b", "b", "e"]
    assert _scenes(rows[::-1]) == ["e", "b", "b", "b", "a"]


def test_labels_joined_only_through_an_unlabelled_capture_are_one_scene(tmp_path, ds):
    path = ds / "manifests" / "samples.parquet"
    rows = manifest.read_manifest(path, manifest.SAMPLES).to_pylist()
    keys = sorted(row["key"] for row in rows)
    burst, still = keys[:2]  # a burst's first and second stills, neither labelled
    links = {
        still: {"sequence": burst},
        keys[2]: {"sequence": burst},  # labelled: in the burst
        keys[3]: {"near_dup_of": still},  # labelled: a near-duplicate of the burst's still
    }
    for row in rows:
        row.update({"near_dup_of": None, "sequence": None, **links.get(row["key"], {})})
    manifest.write_manifest(path, pa.Table.from_pylist(rows, schema=manifest.SAMPLES))
    labelled = keys[2:]
    sheet = tmp_path / "labels.csv"
    sheet.write_text(
        "key,rain_type\n"
        + "".join(f"{key},{('storm', 'streak')[i % 2]}\n" for i, key in enumerate(labelled))
    )
    fit = tag_dataset(ds, labels=sheet, fit=True).fit
    assert fit["scenes"] == len(labelled) - 1


def test_too_few_labels_change_nothing(tmp_path, ds):
    before = (ds / "manifests" / "samples.parquet").read_bytes()
    sheet = tmp_path / "labels.csv"
    keys = sorted(_samples(ds).index)[:6]
    sheet.write_text("key,rain_type\n" + "".join(f"{key},storm\n" for key in keys))
    with pytest.raises(TooFewLabels, match=r"storm 6.*nothing was changed \(to apply the sheet"):
        tag_dataset(ds, labels=sheet, fit=True)
    assert (ds / "manifests" / "samples.parquet").read_bytes() == before
    assert not (ds / "taggers").exists() and "tagger" not in json.loads(
        (ds / "dataset.json").read_text()
    )


def test_the_command_suggested_for_a_sheet_with_bad_rows_skips_them_as_asked(tmp_path, ds):
    sheet = tmp_path / "labels.csv"
    keys = sorted(_samples(ds).index)[:6]
    rows = "".join(f"{key},storm\n" for key in keys) + f"{'0' * 24},storm\n"
    sheet.write_text("key,rain_type\n" + rows)
    with pytest.raises(TooFewLabels) as refused:
        tag_dataset(ds, labels=sheet, skip_bad_labels=True, fit=True)
    # The sheet alone, without --skip-bad-labels, would be refused for its last row.
    assert str(refused.value).endswith(f"--labels {sheet} --skip-bad-labels)")


def test_the_commands_suggested_name_paths_with_spaces_quoted(tmp_path, ds, monkeypatch):
    spaced = shutil.copytree(ds, tmp_path / "my ds")
    sheet = tmp_path / "my labels.csv"
    keys = sorted(_samples(spaced).index)[:6]
    sheet.write_text("key,rain_type\n" + "".join(f"{key},storm\n" for key in keys))
    with pytest.raises(TooFewLabels) as refused:
        tag_dataset(spaced, labels=sheet, fit=True)
    assert f"rainbench tag '{spaced.resolve()}' --labels '{sheet}')" in str(refused.value)

    monkeypatch.setattr(FitReport, "beats_shipped", property(lambda report: False))
    label_sheet(spaced, sheet)
    result = CliRunner().invoke(main, ["tag", str(spaced), "--labels", str(sheet), "--fit"])
    assert f"rainbench tag '{spaced}' --tagger shipped goes back" in result.output


def test_an_unreadable_fitted_tagger_is_one_clear_error(tmp_path, ds, fits_win):
    tag_dataset(ds, labels=label_sheet(ds, tmp_path / "labels.csv"), fit=True)
    assert verify(Dataset(ds), workers=1) == []
    (ds / "taggers" / "tagger-fit-1.json").write_text("{")
    with pytest.raises(DatasetError, match="fit it again with rainbench tag --fit"):
        tag_dataset(ds)
    # verify reads it as ingest and tag do
    [problem] = verify(Dataset(ds), workers=1)
    assert (problem.kind, problem.where) == ("tagger", "dataset.json")
    assert problem.detail.startswith(f"{ds}/taggers/tagger-fit-1.json: cannot read the dataset's")


@pytest.mark.parametrize("damage", ["unreadable", "missing"])
def test_fit_again_mends_a_damaged_fitted_tagger_as_the_refusal_says(
    tmp_path, ds, fits_win, damage
):
    tag_dataset(ds, labels=label_sheet(ds, tmp_path / "labels.csv"), fit=True)
    fitted = ds / "taggers" / "tagger-fit-1.json"
    if damage == "missing":
        fitted.unlink()
    else:
        fitted.write_text("{")

    summary = tag_dataset(ds, fit=True)

    # Into a new file: a damaged one is never written over.
    expected = "tagger-fit-1.json" if damage == "missing" else "tagger-fit-2.json"
    assert summary.fit["path"] == f"taggers/{expected}"
    assert tag_dataset(ds).tagger == summary.fit["version"]


def test_a_tagger_path_leading_outside_the_dataset_is_refused(tmp_path, ds):
    (tmp_path / "outside.json").write_text(json.dumps(load_tagger().to_json()))
    info = json.loads((ds / "dataset.json").read_text())
    info["tagger"] = {"version": "1-fit-1-x", "path": "../outside.json"}
    (ds / "dataset.json").write_text(json.dumps(info))
    with pytest.raises(DatasetError, match="refused"):
        tag_dataset(ds)


def test_a_fitted_tagger_linked_from_outside_the_dataset_is_refused(tmp_path, ds):
    (tmp_path / "outside.json").write_text(json.dumps(load_tagger().to_json()))
    (ds / "taggers").mkdir()
    (ds / "taggers" / "tagger-fit-1.json").symlink_to(tmp_path / "outside.json")
    info = json.loads((ds / "dataset.json").read_text())
    info["tagger"] = {"version": "5-fit-1-x", "path": "taggers/tagger-fit-1.json"}
    (ds / "dataset.json").write_text(json.dumps(info))
    with pytest.raises(DatasetError, match="leads outside the dataset; refused"):
        tag_dataset(ds)


def _name_fit(ds, content: bytes) -> None:
    (ds / "taggers").mkdir(exist_ok=True)
    (ds / "taggers" / "tagger-fit-1.json").write_bytes(content)
    info = json.loads((ds / "dataset.json").read_text())
    info["tagger"] = {"version": "5-fit-1-x", "path": "taggers/tagger-fit-1.json"}
    (ds / "dataset.json").write_text(json.dumps(info))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"[" * 100_000 + b"]" * 100_000, r"\(not JSON \(nested too deep\)\)"),
        (b'{"pad": "' + b"x" * (1 << 20) + b'"}', r"\(larger than 1 MiB"),
        (
            json.dumps({**load_tagger().to_json(), "temperature": 0}).encode(),
            r"\(the tagger's temperature 0.0 is not above 0\)",
        ),
    ],
)
def test_a_fitted_tagger_too_deep_large_or_degenerate_is_one_clear_error(ds, content, message):
    _name_fit(ds, content)
    with pytest.raises(DatasetError, match=f"cannot read the dataset's fitted tagger {message}"):
        tag_dataset(ds)


def test_a_taggers_folder_linked_outside_the_dataset_is_neither_read_nor_written(
    tmp_path, ds, fits_win
):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "tagger-fit-1.json").write_text(json.dumps(load_tagger().to_json()))
    (ds / "taggers").symlink_to(outside)
    with pytest.raises(DatasetError, match="taggers leads outside the dataset; refused"):
        tag_dataset(ds, labels=label_sheet(ds, tmp_path / "labels.csv"), fit=True)
    assert [path.name for path in outside.iterdir()] == ["tagger-fit-1.json"]


def test_a_stored_fit_whose_report_is_no_report_is_fitted_again(tmp_path, ds, fits_win):
    fit = tag_dataset(ds, labels=label_sheet(ds, tmp_path / "labels.csv"), fit=True).fit
    stored = json.loads((ds / fit["path"]).read_text())
    stored["calibration"]["fit"]["planted"] = "a field no FitReport has"
    (ds / fit["path"]).write_text(json.dumps(stored))
    again = tag_dataset(ds, fit=True).fit
    assert not again["reused"] and again["path"] == "taggers/tagger-fit-2.json"


FORGED = [
    {"penalty": "x"},
    {"penalty": True},
    {"folds": "5"},
    {"clean_labels_unused": [1]},
    {"scenes": -3},
    {"cv_fitted": {"macro_f1": "b", "accuracy": 0.5, "f1": {}}},
    {"cv_shipped": {"macro_f1": 0.5, "accuracy": None, "f1": {}}},
    {"cv_fitted": {"macro_f1": 0.5, "accuracy": 0.5, "f1": {"storm": "high"}}},
    {"cv_shipped": []},
]


def test_a_stored_fit_whose_report_holds_values_of_other_types_is_fitted_again(
    tmp_path, ds, fits_win
):
    """Values the output prints and compares, forged: a new fit, never a traceback."""
    fit = tag_dataset(ds, labels=label_sheet(ds, tmp_path / "labels.csv"), fit=True).fit
    stored = json.loads((ds / fit["path"]).read_text())
    assert reusable(Dataset(ds), fit["labels_sha256"]) is not None
    for forged in FORGED:
        report = {**stored["calibration"]["fit"], **forged}
        (ds / fit["path"]).write_text(json.dumps({**stored, "calibration": {"fit": report}}))
        assert reusable(Dataset(ds), fit["labels_sha256"]) is None, forged

    stored["calibration"]["fit"].update(FORGED[0])
    (ds / fit["path"]).write_text(json.dumps(stored))
    result = CliRunner().invoke(main, ["tag", str(ds), "--fit"])
    assert result.exit_code == 0, result.output
    assert "fitted: tagger " in result.output and "(taggers/tagger-fit-2.json)" in result.output


@pytest.mark.parametrize("planted", [{"path": "../outside.json"}, {"version": "another"}])
def test_a_stored_fit_whose_report_names_another_file_or_version_is_fitted_again(
    tmp_path, ds, fits_win, planted
):
    # dataset.json names the file and version a reused fit's report gives: they must be
    # the file's own, never a path out of the dataset nor another fit's version.
    fit = tag_dataset(ds, labels=label_sheet(ds, tmp_path / "labels.csv"), fit=True).fit
    stored = json.loads((ds / fit["path"]).read_text())
    stored["calibration"]["fit"].update(planted)
    (ds / fit["path"]).write_text(json.dumps(stored))

    again = tag_dataset(ds, fit=True).fit

    assert not again["reused"] and again["path"] == "taggers/tagger-fit-2.json"
    info = json.loads((ds / "dataset.json").read_text())
    assert info["tagger"] == {"version": again["version"], "path": again["path"]}
    assert (_samples(ds)["tagger_version"] == again["version"]).all()
