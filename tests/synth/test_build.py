"""`rainbench synth` on an ingested dataset: the syn-* splits, exact ground truth,
no-op re-runs, byte-identical shards, and resume after a crash."""

import errno
import hashlib
import io
import json
import shutil
import tarfile
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from rainbench import __version__
from rainbench.capture.decode import load_upright
from rainbench.capture.formats import FORMATS
from rainbench.demo.captures import sample_specs, write_capture
from rainbench.ingest import IngestOptions, ingest
from rainbench.shards.dataset import Dataset, DatasetError
from rainbench.shards.verify import verify
from rainbench.synth import splits as splits_module
from rainbench.synth.build import (
    SHEET_LIBRARIES,
    SynthOptions,
    is_sheet,
    preview_sheet,
    synthesize,
)
from rainbench.synth.recipes import RECIPES, V2_RECIPES
from rainbench.versions import installed_versions

ALL_TEST = {"train": 0.0, "val": 0.0, "test": 1.0}
OPTIONS = SynthOptions(workers=1, shard_bytes=200_000)


@pytest.fixture(scope="module")
def _clean_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    for spec in sample_specs(5, seed=8, size=(160, 120)):
        write_capture(root / "clean", spec)
    ingest([root / "clean"], root / "ds", IngestOptions(workers=1, layer="clean", split=ALL_TEST))
    return root / "ds"


@pytest.fixture
def ds(tmp_path, _clean_dataset):
    return shutil.copytree(_clean_dataset, tmp_path / "ds")


def _shard_hashes(ds) -> dict[str, str]:
    return {
        p.relative_to(ds).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((ds / "shards" / "synthetic").rglob("*.tar"))
    }


def _members(shard) -> dict[str, bytes]:
    with tarfile.open(shard) as archive:
        return {m.name: archive.extractfile(m).read() for m in archive}


def test_four_splits_with_the_exact_clean_source_as_ground_truth(ds):
    summary = synthesize(ds, OPTIONS)
    assert dict(summary.stored) == {f"syn-{r}": 5 for r in OPTIONS.recipes}
    assert verify(Dataset(ds)) == []
    pairs = pd.read_parquet(ds / "manifests/synthetic.parquet")
    samples = pd.read_parquet(ds / "manifests/samples.parquet").set_index("key")
    assert set(pairs.split) == {"syn-drizzle", "syn-streak", "syn-storm", "syn-fog-like"}
    assert pairs.recipe_version.notna().all() and pairs.seed.notna().all()
    for pair in pairs.itertuples():
        members = _members(ds / pair.shard)
        source = samples.loc[pair.source_key]
        stored = _members(ds / source.shard)[f"{pair.source_key}.{source.members[0]}"]
        clean = (
            np.asarray(load_upright(stored, FORMATS[source.format]))
            if source.format != "dng"
            else None
        )
        gt = np.asarray(Image.open(io.BytesIO(members[f"{pair.key}.gt.png"])))
        rain = np.asarray(Image.open(io.BytesIO(members[f"{pair.key}.rain.png"])))
        assert gt.shape == rain.shape == (pair.height, pair.width, 3)
        if clean is not None:
            assert np.array_equal(gt, clean)
        assert not np.array_equal(gt, rain)
        assert f"{pair.key}.json" in members


def test_version_2_recipes_store_the_camera_chains_ground_truth(ds):
    options = SynthOptions(workers=1, shard_bytes=200_000, recipes=V2_RECIPES)
    summary = synthesize(ds, options)
    assert dict(summary.stored) == {f"syn-{r}": 5 for r in V2_RECIPES}
    assert verify(Dataset(ds)) == []
    pairs = pd.read_parquet(ds / "manifests/synthetic.parquet")
    assert set(pairs.recipe_version) == {"2"}
    for pair in pairs.itertuples():
        members = _members(ds / pair.shard)
        gt = np.asarray(Image.open(io.BytesIO(members[f"{pair.key}.gt.png"])))
        rain = np.asarray(Image.open(io.BytesIO(members[f"{pair.key}.rain.png"])))
        # The pair went through one camera chain: the same size, possibly smaller
        # than the source, and the ground truth is the chain's, not the source.
        assert gt.shape == rain.shape == (pair.height, pair.width, 3)
        assert pair.height <= 120 and not np.array_equal(gt, rain)


def test_rerun_is_a_no_op_and_output_is_reproducible(ds, tmp_path, _clean_dataset):
    synthesize(ds, OPTIONS)
    first = _shard_hashes(ds)
    again = synthesize(ds, OPTIONS)
    assert sum(again.stored.values()) == 0 and sum(again.existing.values()) == 20
    assert _shard_hashes(ds) == first
    other = shutil.copytree(_clean_dataset, tmp_path / "other")
    synthesize(other, SynthOptions(workers=2, shard_bytes=200_000))
    assert _shard_hashes(other) == first


def test_a_split_rebuilt_from_what_the_dataset_records_is_the_same_bytes(
    ds, tmp_path, _clean_dataset
):
    synthesize(ds, replace(OPTIONS, recipes=("drizzle",), seed=3, max_side=64, shard_bytes=20_000))
    assert len(_shard_hashes(ds)) > 1
    (run,) = Dataset(ds).read_info()["pair_runs"]
    assert run["splits"] == ["syn-drizzle"] and run["tool_version"] == __version__
    rendered_by = installed_versions(("numpy", "scipy", "pillow"))
    assert run["versions"].items() >= {"rainbench": __version__, **rendered_by}.items()
    pairs = pd.read_parquet(ds / "manifests/synthetic.parquet")
    assert set(pairs["run"]) == {run["run_id"]}
    # <recipe>@<version>:<source key>:<seed>:<render index>:<max side>
    recipe, _, seed, _, max_side = pairs["job"][0].split(":")
    recorded = SynthOptions(
        recipes=(recipe.split("@")[0],),
        seed=int(seed),
        max_side=int(max_side),
        shard_bytes=run["shard_bytes"],
        workers=1,
    )
    again = shutil.copytree(_clean_dataset, tmp_path / "again")
    synthesize(again, recorded)
    assert _shard_hashes(again) == _shard_hashes(ds)
    synthesize(again, replace(recorded, recipes=("streak",)))
    runs = Dataset(again).read_info()["pair_runs"]
    assert [r["splits"] for r in runs] == [["syn-drizzle"], ["syn-streak"]]


def test_renders_made_otherwise_go_to_a_split_of_their_own(ds):
    streak = SynthOptions(workers=1, shard_bytes=200_000, recipes=("streak", "streak"))
    assert dict(synthesize(ds, streak).stored) == {"syn-streak": 5}  # each recipe once
    for other in ({"seed": 1}, {"max_side": 64}):
        with pytest.raises(DatasetError, match=r"syn-streak holds renders of the clean captures"):
            synthesize(ds, replace(streak, **other))
    # Sources that are not there (a mistyped split) are said as such, not as renders
    # made otherwise that a suffix would get round.
    # The ingest it suggests adds captures of the layer asked for.
    for other, none, layer in (
        ({"source_layer": "rainy"}, "rainy captures in the test", "rainy"),
        ({"source_split": "tset"}, "clean captures in the tset", "clean"),
    ):
        said = f"no {none} split to render rain on; .* --layer {layer}` "
        with pytest.raises(DatasetError, match=said):
            synthesize(ds, replace(streak, **other))
    more = synthesize(ds, replace(streak, renders=2))  # the same renders, one more each
    assert dict(more.stored) == {"syn-streak": 5}
    small = synthesize(ds, replace(streak, max_side=64, suffix="small"))
    assert dict(small.stored) == {"syn-streak-small": 5}
    pairs = pd.read_parquet(ds / "manifests/synthetic.parquet")
    assert pairs.groupby("split").size().to_dict() == {"syn-streak": 10, "syn-streak-small": 5}
    assert pairs[pairs.split == "syn-streak-small"].width.max() <= 64
    assert verify(Dataset(ds)) == []
    with pytest.raises(DatasetError, match="does not make a split name"):
        synthesize(ds, replace(streak, suffix="No Good"))
    # A suffix that names another recipe's split: syn-streak + v2 is streak-v2's.
    with pytest.raises(DatasetError, match="makes syn-streak-v2, the split of another recipe"):
        synthesize(ds, replace(streak, suffix="v2"))


def test_a_damaged_job_in_the_manifest_is_one_line(ds):
    synthesize(ds, replace(OPTIONS, recipes=("drizzle",)))
    path = ds / "manifests" / "synthetic.parquet"
    pairs = pd.read_parquet(path)
    recipe, source, _, index, size = pairs.loc[0, "job"].split(":")
    pairs.loc[0, "job"] = f"{recipe}:{source}:1e3:{index}:{size}"  # a seed of another form
    pairs.to_parquet(path, index=False)

    with pytest.raises(DatasetError, match=r"job '.*:1e3:0:0' names no base seed .* damaged"):
        synthesize(ds, replace(OPTIONS, recipes=("drizzle",)))


def test_renders_of_another_recipe_version_are_never_added_to_a_split(ds, monkeypatch):
    drizzle = replace(OPTIONS, recipes=("drizzle",), max_side=32)
    synthesize(ds, drizzle)
    bumped = replace(RECIPES["drizzle"], version="2")  # as a later rainbench renders it
    monkeypatch.setitem(RECIPES, "drizzle", bumped)

    with pytest.raises(DatasetError, match=r"^syn-drizzle holds renders of drizzle version 1;"):
        synthesize(ds, drizzle)
    assert dict(synthesize(ds, replace(drizzle, suffix="bumped")).stored) == {
        "syn-drizzle-bumped": 5
    }
    pairs = pd.read_parquet(ds / "manifests/synthetic.parquet")
    assert pairs.groupby("split").recipe_version.unique().map(list).to_dict() == {
        "syn-drizzle": ["1"],
        "syn-drizzle-bumped": ["2"],
    }


def test_killed_run_resumes_into_the_same_shards(ds, tmp_path, _clean_dataset, monkeypatch):
    reference = shutil.copytree(_clean_dataset, tmp_path / "reference")
    synthesize(reference, OPTIONS)

    class Killed(BaseException):
        pass

    original, calls = splits_module.manifest.write_manifest, {"n": 0}

    def crash_on_third(path, table):
        calls["n"] += 1
        if calls["n"] == 3:  # the second shard's shards.parquet is written, its rows are not
            raise Killed
        original(path, table)

    with monkeypatch.context() as patch:
        patch.setattr(splits_module.manifest, "write_manifest", crash_on_third)
        with pytest.raises(Killed):
            synthesize(ds, OPTIONS)
    synthesize(ds, OPTIONS)
    assert _shard_hashes(ds) == _shard_hashes(reference)
    assert verify(Dataset(ds)) == []
    a = pd.read_parquet(ds / "manifests/synthetic.parquet").drop(columns="run")
    b = pd.read_parquet(reference / "manifests/synthetic.parquet").drop(columns="run")
    pd.testing.assert_frame_equal(a.astype(str), b.astype(str))


@pytest.mark.parametrize("manifest_name", ["shards.parquet", "synthetic.parquet"])
def test_verify_names_a_shard_a_killed_run_never_committed(ds, monkeypatch, manifest_name):
    class Killed(BaseException):
        pass

    original = splits_module.manifest.write_manifest

    def killed_writing(path, table):
        if path.name == manifest_name:  # the first shard is in place; listed or not yet
            raise Killed
        original(path, table)

    with monkeypatch.context() as patch:
        patch.setattr(splits_module.manifest, "write_manifest", killed_writing)
        with pytest.raises(Killed):
            synthesize(ds, replace(OPTIONS, recipes=("streak",)))
    problems = verify(Dataset(ds))
    assert [(p.kind, p.where) for p in problems] == [
        (
            "stray-shard" if manifest_name == "shards.parquet" else "pairs-uncommitted",
            "shards/synthetic/syn-streak/syn-streak-000000.tar",
        )
    ]
    assert "run it again to finish" in problems[0].detail
    synthesize(ds, replace(OPTIONS, recipes=("streak",)))
    assert verify(Dataset(ds)) == []


def test_dataset_json_counts_every_listed_shard_as_ingest_does(ds):
    # Ingest counts every shards.parquet row; were synth to count none of its own, the
    # counts would depend on which ran last (a demo killed in synth, run again, ingests
    # again before synth resumes).
    synthesize(ds, OPTIONS)
    counts = Dataset(ds).read_info()["counts"]
    shards = pd.read_parquet(ds / "manifests/shards.parquet")
    assert (counts["shards"], counts["bytes"]) == (len(shards), shards["bytes"].sum())


def test_a_kill_before_the_counts_are_written_is_repaired_by_the_next_run(ds, monkeypatch):
    class Killed(BaseException):
        pass

    original, calls = Dataset.write_info, {"n": 0}

    def killed_at_the_last(self, info):
        calls["n"] += 1
        # The run recorded, then the first shard's counts: the second shard's pairs are
        # in; their counts are not.
        if calls["n"] == 3:
            raise Killed
        original(self, info)

    with monkeypatch.context() as patch:
        patch.setattr(Dataset, "write_info", killed_at_the_last)
        with pytest.raises(Killed):
            synthesize(ds, replace(OPTIONS, recipes=("streak",)))
    assert any(p.kind == "dataset-json" for p in verify(Dataset(ds)))
    again = synthesize(ds, replace(OPTIONS, recipes=("streak",)))
    assert dict(again.existing) == {"syn-streak": 5} and sum(again.stored.values()) == 0
    assert verify(Dataset(ds)) == []
    # The second shard is counted too, as a run never killed counts it.
    counts = Dataset(ds).read_info()["counts"]
    shards = pd.read_parquet(ds / "manifests/shards.parquet")
    assert (counts["shards"], counts["bytes"]) == (len(shards), shards["bytes"].sum())


def test_a_run_killed_before_its_counts_are_written_is_in_pair_runs(ds, monkeypatch):
    # Its first shard's pairs are in the manifest and name the run: rebuilding them needs
    # the run's shard size and versions.
    class Killed(BaseException):
        pass

    original = Dataset.write_info

    def killed_with_the_counts(self, info):
        if info["counts"].get("synthetic"):
            raise Killed
        original(self, info)

    with monkeypatch.context() as patch:
        patch.setattr(Dataset, "write_info", killed_with_the_counts)
        with pytest.raises(Killed):
            synthesize(ds, replace(OPTIONS, recipes=("streak",)))
    (killed,) = set(pd.read_parquet(ds / "manifests/synthetic.parquet")["run"])
    synthesize(ds, replace(OPTIONS, recipes=("streak",)))

    runs = {run["run_id"]: run for run in Dataset(ds).read_info()["pair_runs"]}
    assert set(pd.read_parquet(ds / "manifests/synthetic.parquet")["run"]) <= runs.keys()
    assert runs[killed]["splits"] == ["syn-streak"]
    assert runs[killed]["shard_bytes"] == OPTIONS.shard_bytes


def test_full_disk_ends_in_one_line_and_leaves_no_temporary(
    ds, tmp_path, _clean_dataset, monkeypatch
):
    from click.testing import CliRunner

    from rainbench.cli import main
    from rainbench.shards.tar import ShardWriter

    reference = shutil.copytree(_clean_dataset, tmp_path / "reference")
    synthesize(reference, OPTIONS)
    original, written = ShardWriter._write, {"bytes": 0}

    def fill_up(self, data):
        written["bytes"] += len(data)
        if written["bytes"] > 300_000:  # inside the second shard
            raise OSError(errno.ENOSPC, "No space left on device", str(self.tmp_path))
        original(self, data)

    with monkeypatch.context() as patch:
        patch.setattr(ShardWriter, "_write", fill_up)
        result = CliRunner().invoke(
            main, ["synth", str(ds), "-j", "1", "--shard-size", "200000", "--no-progress"]
        )
    assert result.exit_code == 1
    assert result.output.strip().startswith("error: ") and "No space left" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not list(ds.rglob("*.tmp"))
    synthesize(ds, OPTIONS)
    assert _shard_hashes(ds) == _shard_hashes(reference)
    assert verify(Dataset(ds)) == []


def test_without_clean_sources_it_says_what_to_do(tmp_path, capture_folder):
    ingest([capture_folder], tmp_path / "ds", IngestOptions(workers=1))
    with pytest.raises(DatasetError, match="--layer clean"):
        synthesize(tmp_path / "ds", OPTIONS)
    with pytest.raises(DatasetError, match="unknown recipe"):
        synthesize(tmp_path / "ds", SynthOptions(recipes=("hail",)))


def test_preview_sheet(tmp_path):
    spec = sample_specs(1, seed=2, size=(320, 240))[0]
    path = write_capture(tmp_path, spec)
    out = preview_sheet(path, tmp_path / "sheet.png")
    with Image.open(out) as sheet:
        assert sheet.width > 320 and sheet.format == "PNG"
    with Image.open(preview_sheet(path, tmp_path / "sheet.JPG", max_side=100)) as sheet:
        assert sheet.format == "JPEG"  # as its suffix names


def test_two_preview_sheets_written_at_once_into_one_out_both_finish(tmp_path, held_at_rename):
    path = write_capture(tmp_path, sample_specs(1, seed=2, size=(160, 120))[0])
    out = tmp_path / "sheet.png"
    first, release = held_at_rename(
        "from rainbench.synth.build import preview_sheet\n"
        f"preview_sheet(Path({str(path)!r}), Path({str(out)!r}), seed=1)\n"
    )
    preview_sheet(path, out)
    release()
    assert first.wait(timeout=60) == 0, first.stderr.read()
    with Image.open(out) as sheet:  # the last to finish
        assert json.loads(sheet.getexif().get_ifd(0x8769)[0x9286][8:])["seed"] == 1


@pytest.mark.parametrize("name", ["sheet.png", "sheet.jpg"])
def test_a_preview_sheet_names_what_made_it(tmp_path, name):
    path = write_capture(tmp_path, sample_specs(1, seed=2, size=(160, 120))[0])
    out = preview_sheet(path, tmp_path / name, seed=5, max_side=100)
    with Image.open(out) as sheet:
        comment = sheet.getexif().get_ifd(0x8769)[0x9286]  # the Exif IFD's UserComment
    assert comment.startswith(b"ASCII\0\0\0")
    assert json.loads(comment[8:]) == {
        "source_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "seed": 5,
        "max_side": 100,
        "versions": {"rainbench": __version__, **installed_versions(SHEET_LIBRARIES)},
    }
    assert is_sheet(out)  # still known as a sheet that a later preview may replace


def test_a_damaged_tiff_where_a_sheet_goes_is_no_sheet_and_pillow_logs_nothing(tmp_path, caplog):
    # An absurd SamplesPerPixel: Pillow logs it at ERROR as it opens, which Python printed
    # on stderr above synth's own line (`synth --preview … --out sheet.tif`).
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "TIFF")
    data = bytearray(buffer.getvalue())
    directory = int.from_bytes(data[4:8], "little")
    for entry in range(directory + 2, directory + 2 + 12 * data[directory], 12):
        if data[entry : entry + 2] == (277).to_bytes(2, "little"):  # SamplesPerPixel
            data[entry + 8 : entry + 10] = (100).to_bytes(2, "little")
    (tmp_path / "sheet.tif").write_bytes(data)
    assert not is_sheet(tmp_path / "sheet.tif")
    assert not caplog.records


def test_an_interrupted_preview_sheet_leaves_the_earlier_one_whole(tmp_path, monkeypatch):
    path = write_capture(tmp_path, sample_specs(1, seed=2, size=(160, 120))[0])
    before = preview_sheet(path, tmp_path / "sheet.png").read_bytes()

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr("rainbench.files.os.fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        preview_sheet(path, tmp_path / "sheet.png", seed=1)
    assert (tmp_path / "sheet.png").read_bytes() == before


def test_cli(ds, tmp_path):
    from click.testing import CliRunner

    from rainbench.cli import main

    runner = CliRunner()
    result = runner.invoke(
        main, ["synth", str(ds), "--recipes", "drizzle,storm", "-j", "1", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert "syn-drizzle: 5 pairs stored" in result.output
    assert "syn-storm" in runner.invoke(main, ["stats", str(ds)]).output
    image = write_capture(tmp_path, sample_specs(1, seed=4, size=(200, 150))[0])
    sheet = tmp_path / "sheet.png"
    preview = runner.invoke(main, ["synth", "--preview", str(image), "--out", str(sheet)])
    assert preview.exit_code == 0 and sheet.exists()
    assert runner.invoke(main, ["synth", "--preview", str(image)]).exit_code == 2
    assert runner.invoke(main, ["synth"]).exit_code == 2


def test_a_capture_whose_bytes_are_not_the_manifests_fails_its_renders(ds):
    # Bytes changed in place: the tar reads and the JPEG still decodes, to other pixels,
    # which would be stored as the pairs' ground truth.
    samples = pd.read_parquet(ds / "manifests/samples.parquet").sort_values("key")
    source = samples.iloc[0]
    name = f"{source.key}.{source.members[0]}"
    with tarfile.open(ds / source.shard) as archive:
        offset = archive.getmember(name).offset_data
    with open(ds / source.shard, "r+b") as shard:
        shard.seek(offset + source.bytes // 2)
        shard.write(bytes(64))

    summary = synthesize(ds, replace(OPTIONS, recipes=("drizzle",)))

    assert dict(summary.stored) == {"syn-drizzle": 4}
    ((job, why),) = summary.failed
    assert source.key in job and why.endswith(
        "its bytes are not the manifest's (run rainbench verify)"
    )


def test_a_run_whose_every_render_fails_fails_the_command(ds, monkeypatch):
    from click.testing import CliRunner

    from rainbench.cli import main
    from rainbench.shards.members import ShardError
    from rainbench.synth import build as build_module

    def damaged(task):
        raise ShardError(f"{task.shard}: damaged")

    monkeypatch.setattr(build_module, "_read_source", damaged)
    args = ["synth", str(ds), "--recipes", "drizzle", "-j", "1", "--no-progress"]
    result = CliRunner().invoke(main, args)

    assert result.exit_code == 1
    assert result.stderr.count(": damaged") == 5
    assert result.stderr.endswith("error: no pair stored: every render failed (failed: above)\n")
    # With --json stderr holds the error alone: it points at the JSON, not above.
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 1 and len(json.loads(result.stdout)["failed"]) == 5
    assert result.stderr == "error: no pair stored: every render failed (failed: in the JSON)\n"
