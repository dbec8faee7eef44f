"""`rainbench import-paired` end to end: a folder laid out like Rain100L, or like each
public real-rain paired set, becomes a paired split; problems are reported, never
guessed; a real set's scene never straddles two splits; a protocol split is checked
against its pair count and checksum list."""

import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from PIL import Image

from rainbench.cli import main
from rainbench.files import file_sha256
from rainbench.ingest import IngestOptions, ingest
from rainbench.shards.dataset import Dataset, DatasetError
from rainbench.shards.verify import verify
from rainbench.synth.importers import REAL_PAIRED, paired_kind
from rainbench.synth.imports import import_paired

V2 = Path(__file__).resolve().parents[2] / "benchmarks" / "leaderboard" / "v2.toml"


def _png(path, seed, size=(48, 32)):
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return pixels


@pytest.fixture
def rain100l(tmp_path):
    root = tmp_path / "Rain100L"
    truth = {}
    for n in range(1, 6):
        truth[n] = (_png(root / f"rain-{n}.png", n), _png(root / f"norain-{n}.png", 100 + n))
    (root / "norain-5.png").unlink()  # a missing partner
    _png(root / "norain-4.png", 104, size=(40, 32))  # a size mismatch
    return root, truth


def test_rain100l_folder_becomes_a_split(tmp_path, rain100l):
    root, truth = rain100l
    ds = tmp_path / "ds"
    summary, problems = import_paired(root, "rain100", "rain100l", ds, 10**9, workers=1)
    assert summary.stored["rain100l"] == 3
    assert {p.kind for p in problems} == {"missing-gt", "size-mismatch"}
    assert verify(Dataset(ds)) == []
    pairs = pd.read_parquet(ds / "manifests/synthetic.parquet")
    assert sorted(pairs.source_rain) == ["rain-1.png", "rain-2.png", "rain-3.png"]
    assert set(pairs.recipe) == {"import:rain100"}
    for pair in pairs.itertuples():
        with tarfile.open(ds / pair.shard) as archive:
            rain = archive.extractfile(f"{pair.key}.rain.png").read()
            gt = archive.extractfile(f"{pair.key}.gt.png").read()
        n = int(pair.source_rain.split("-")[1].split(".")[0])
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(rain))), truth[n][0])
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(gt))), truth[n][1])
    again, _ = import_paired(root, "rain100", "rain100l", ds, 10**9, workers=1)
    assert sum(again.stored.values()) == 0 and again.existing["rain100l"] == 3


def test_a_dataset_made_from_inside_its_folder_is_named_after_it(tmp_path, rain100l, monkeypatch):
    root, _ = rain100l
    (tmp_path / "ds").mkdir()
    monkeypatch.chdir(tmp_path / "ds")
    import_paired(root, "rain100", "rain100l", Path("."), 10**9, workers=1)
    assert Dataset(tmp_path / "ds").read_info()["name"] == "ds"


def test_names_are_checked(tmp_path, rain100l):
    for bad in ("test", "syn-streak", "Rain.100", "", "all"):  # all: eval --split all
        with pytest.raises(DatasetError, match="--name"):
            import_paired(rain100l[0], "rain100", bad, tmp_path / "ds", 10**9, workers=1)


def test_cli_reports_problems_and_fails_on_the_wrong_layout(tmp_path, rain100l):
    runner = CliRunner()
    ds = str(tmp_path / "ds")
    ok = runner.invoke(
        main,
        [
            "import-paired",
            str(rain100l[0]),
            "--layout",
            "rain100",
            "--name",
            "rain100l",
            "--into",
            ds,
            "--no-progress",
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert "missing-gt" in ok.output and "rain100l: 3 pairs stored" in ok.output
    wrong = runner.invoke(
        main,
        [
            "import-paired",
            str(rain100l[0]),
            "--layout",
            "rain1400",
            "--name",
            "other",
            "--into",
            ds,
            "--no-progress",
        ],
    )
    assert wrong.exit_code == 1
    assert "no-pairs" in wrong.output


def import_cli(*args):
    return CliRunner().invoke(main, ["import-paired", *map(str, args), "-j", "1", "--no-progress"])


def stored(ds) -> pd.DataFrame:
    return pq.read_table(ds / "manifests/synthetic.parquet").to_pandas()


@pytest.mark.parametrize(
    ("fixture", "folder", "layout", "groups", "count"),
    [
        ("gt_rain", "GT-RAIN_test", "gt-rain", ["M1135_0-0", "Oinari_0-0"], 5),
        ("realrain_1k", "RealRain-1k-L/test", "realrain-1k", [None], 2),
        ("lhp_rain", "train", "lhp-rain", ["0001", "0002"], 5),
        ("lhp_rain", "test", "lhp-rain", ["2701", "2702"], 2),
        ("spa_data", "training", "spa", ["000", "001"], 4),
        ("spa_data", "testing", "spa", [None], 3),
    ],
)
def test_each_real_set_becomes_a_real_paired_split_and_is_scored(
    request, tmp_path, fixture, folder, layout, groups, count
):
    root = request.getfixturevalue(fixture) / folder
    ds = tmp_path / "ds"

    result = import_cli(root, ds, "--layout", layout, "--name", "real")

    assert result.exit_code == 0, result.output
    assert f"real: {count} pairs stored" in result.output
    pairs = stored(ds)
    assert set(pairs.recipe) == {f"import:{layout}"}
    assert paired_kind(pairs.recipe[0]) == REAL_PAIRED
    found = pq.read_table(ds / "manifests/synthetic.parquet").column("group").to_pylist()
    assert sorted(set(found), key=str) == groups
    assert verify(Dataset(ds)) == []
    scored = CliRunner().invoke(
        main,
        ["eval", str(ds), "--model", "identity", "--split", "real", "--results",
         str(tmp_path / "res"), "--metrics", "psnr_y,ssim_y", "--no-progress"],
    )  # fmt: skip
    assert scored.exit_code == 0, scored.output
    assert f"ds/real (real-paired): {count} scored, 0 failed" in scored.output
    rows = pd.read_parquet(tmp_path / "res" / "identity" / "ds" / "real.parquet")
    assert set(rows.kind) == {"real-paired"} and rows.psnr_y.notna().all()


def test_several_rainy_frames_keep_one_ground_truth_file(tmp_path, gt_rain):
    import_paired(gt_rain / "GT-RAIN_test", "gt-rain", "gt-test", tmp_path / "ds", 10**9, 1)

    pairs = stored(tmp_path / "ds")

    assert len(pairs) == 5 and pairs.source_gt.nunique() == 2
    assert pairs.groupby("group").source_gt.nunique().to_dict() == {"M1135_0-0": 1, "Oinari_0-0": 1}


def test_a_scene_never_straddles_two_splits(tmp_path, gt_rain):
    ds = tmp_path / "ds"
    import_paired(gt_rain / "GT-RAIN_test", "gt-rain", "gt-test", ds, 10**9, 1)
    again = tmp_path / "more"
    shutil.copytree(gt_rain / "GT-RAIN_test" / "Oinari_0-0", again / "Oinari_0-0")
    shutil.copytree(gt_rain / "GT-RAIN_train" / "Table_Rock_0-1", again / "Table_Rock_0-1")

    with pytest.raises(DatasetError, match="Oinari_0-0 in gt-test; a scene never straddles"):
        import_paired(again, "gt-rain", "gt-rain-more", ds, 10**9, 1)

    assert len(stored(ds)) == 5
    rerun, _ = import_paired(gt_rain / "GT-RAIN_test", "gt-rain", "gt-test", ds, 10**9, 1)
    assert rerun.existing["gt-test"] == 5  # the split itself is no other split
    result = import_cli(gt_rain / "GT-RAIN_train", ds, "--layout", "gt-rain", "--name", "gt-train")
    assert result.exit_code == 0, result.output


def test_a_sequence_number_straddling_is_refused_through_the_cli(tmp_path, lhp_rain):
    ds = tmp_path / "ds"
    assert import_cli(lhp_rain / "test", ds, "--layout", "lhp-rain", "--name", "lhp").exit_code == 0
    for role in ("input", "gt"):
        (tmp_path / "x" / role).mkdir(parents=True, exist_ok=True)
        shutil.copy(lhp_rain / "test" / role / "2701.png", tmp_path / "x" / role / "2701_004.png")
    result = import_cli(tmp_path / "x", ds, "--layout", "lhp-rain", "--name", "lhp-more")

    assert result.exit_code == 1
    assert "error: --name lhp-more: scenes already in another split" in result.output
    assert "2701 in lhp" in result.output


def test_imported_sets_keep_groups_that_are_no_scene(tmp_path):
    for name in ("a", "b"):
        _png(tmp_path / name / "Rain_Heavy" / "1.png", 1, size=(64, 32))
        summary, _ = import_paired(tmp_path / name, "did-mdn", name, tmp_path / "ds", 10**9, 1)
        assert summary.stored[name] == 1  # DID-MDN's "heavy" is a density, not a scene


def test_the_v2_protocol_reports_a_download_of_the_wrong_size(tmp_path, gt_rain):
    ds = tmp_path / "ds"

    result = import_cli(gt_rain / "GT-RAIN_test", ds, "--protocol", V2, "--split", "gt-rain-test")

    assert result.exit_code == 1
    assert "protocol-count: .: 5 pairs found; protocol v2 split gt-rain-test holds 2100" in (
        result.output
    )
    assert "no-checksums: .: protocol v2 split gt-rain-test has no checksum list" in result.output
    assert "does not match protocol v2 split gt-rain-test: nothing stored" in result.output
    assert not (ds / "manifests" / "synthetic.parquet").exists()
    assert not (V2.parent / "v2" / "gt-rain-test.sha256").exists()


def test_protocol_checksums_written_then_checked_through_the_cli(tmp_path, gt_rain, protocol_file):
    protocol = protocol_file()
    test_set = gt_rain / "GT-RAIN_test"
    args = ("--protocol", protocol, "--split", "gt-rain-test")

    first = import_cli(test_set, tmp_path / "a", *args)
    assert first.exit_code == 0, first.output
    assert first.output.count("no-checksums") == 1
    assert "gt-rain-test: 5 pairs stored" in first.output

    written = import_cli(test_set, tmp_path / "b", *args, "--write-checksums")
    assert written.exit_code == 0, written.output
    assert "no-checksums" not in written.output
    listed = tmp_path / "v9" / "gt-rain-test.sha256"
    assert len(listed.read_text().splitlines()) == 7
    # It says where the list it wrote is, to be proposed to the project.
    assert (
        f"checksum list of protocol v9 split gt-rain-test written from this download: {listed}; "
        "propose it to the project" in written.stdout
    )

    again = import_cli(test_set, tmp_path / "b", *args, "--write-checksums")
    assert again.exit_code == 0, again.output  # the same list: a killed import resumes
    assert "checksum list" not in again.output  # written by the run before

    frame = test_set / "Oinari_0-0" / "Oinari_0-0-Webcam-R-001.png"
    frame.write_bytes(frame.read_bytes() + b"\0")
    other = import_cli(test_set, tmp_path / "d", *args, "--write-checksums")
    assert other.exit_code == 1 and "a checksum list is written once" in other.output
    changed = import_cli(test_set, tmp_path / "c", *args)
    assert changed.exit_code == 1
    assert "checksum-mismatch: Oinari_0-0/Oinari_0-0-Webcam-R-001.png: sha256" in changed.output
    assert not (tmp_path / "c" / "manifests" / "synthetic.parquet").exists()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--split", "gt-rain-test"], 2, "--protocol FILE and --split NAME go together"),
        (["--layout", "gt-rain", "--name", "x", "--write-checksums"], 2, "needs --protocol"),
        (["--layout", "gt-rain"], 2, "give --layout and --name"),
        (["--protocol", V2, "--split", "nope"], 1, "names no real-paired split 'nope'"),
        (["--protocol", V2, "--split", "gt-rain-test", "--name", "x"], 1, "as --name gt-rain-test"),
    ],
)
def test_protocol_options_are_checked(tmp_path, gt_rain, args, code, message):
    result = import_cli(gt_rain / "GT-RAIN_test", tmp_path / "ds", *args)

    assert result.exit_code == code
    assert message in result.output


# --- a pair is its files -------------------------------------------------------------


def two_sets(root, *names):
    """input/ beside target/ in each of `names`, the same two image names in each."""
    for offset, name in enumerate(names):
        for n in (1, 2):
            _png(root / name / "input" / f"{n}.png", 10 * offset + n)
            _png(root / name / "target" / f"{n}.png", 10 * offset + n + 100)


def test_a_new_folder_adds_only_its_pairs(tmp_path):
    ds, root = tmp_path / "ds", tmp_path / "test"
    two_sets(root, "Rain100H")
    first, _ = import_paired(root, "input-target", "sets", ds, 10**9, 1)
    two_sets(root, "Rain100L")  # its names collide: every name now takes its folder's

    again, _ = import_paired(root, "input-target", "sets", ds, 10**9, 1)

    assert first.stored["sets"] == 2
    assert (again.stored["sets"], again.existing["sets"]) == (2, 2)
    assert sorted(stored(ds).source_rain) == [
        f"{name}/input/{n}.png" for name in ("Rain100H", "Rain100L") for n in (1, 2)
    ]


def test_the_first_ingest_into_a_dataset_it_made_fixes_the_split(tmp_path, capture_folder):
    ds = tmp_path / "ds"
    two_sets(tmp_path / "test", "Rain100H")
    import_paired(tmp_path / "test", "input-target", "sets", ds, 10**9, 1)
    everything_test = {"train": 0.0, "val": 0.0, "test": 1.0}
    ingest([capture_folder], ds, IngestOptions(workers=1, split=everything_test))
    # Taken, these captures would join splits drawn by other fractions than the first's.
    everything_train = {"train": 1.0, "val": 0.0, "test": 0.0}
    with pytest.raises(DatasetError, match=r"created with --split train=0,val=0,test=1;"):
        ingest([capture_folder], ds, IngestOptions(workers=1, split=everything_train))
    assert not verify(Dataset(ds))


def test_the_set_imported_from_another_folder_is_refused_not_stored_twice(tmp_path):
    download, ds = tmp_path / "download", tmp_path / "ds"
    two_sets(download, "Rain100H")
    import_paired(download / "Rain100H", "input-target", "sets", ds, 10**9, 1)

    result = import_cli(download, ds, "--layout", "input-target", "--name", "sets")

    assert result.exit_code == 1
    assert (
        "changed-source: Rain100H/input/1.png: split sets holds the same bytes as input/1.png "
        "and target/1.png: a pair is known by its paths relative to PATH" in result.output
    )
    assert "nothing stored" in result.output
    assert len(stored(ds)) == 2  # each pair once, not again under its new paths


def test_a_split_imported_before_pairs_were_their_files_keeps_its_keys(tmp_path, rain100l):
    ds = tmp_path / "ds"
    import_paired(rain100l[0], "rain100", "rain100l", ds, 10**9, 1)
    table = pq.read_table(ds / "manifests/synthetic.parquet")
    # As rainbench stored them before: the job was the layout and the pair's name.
    legacy = [f"rain100:{path.split('.')[0]}" for path in table["source_rain"].to_pylist()]
    index = table.schema.get_field_index("job")
    pq.write_table(
        table.set_column(index, "job", pa.array(legacy)), ds / "manifests/synthetic.parquet"
    )

    again, problems = import_paired(rain100l[0], "rain100", "rain100l", ds, 10**9, 1)

    assert (again.stored["rain100l"], again.existing["rain100l"]) == (0, 3)
    assert "changed-source" not in {problem.kind for problem in problems}


def test_other_bytes_under_a_stored_pairs_paths_are_a_changed_source(tmp_path, rain100l):
    root, ds = rain100l[0], tmp_path / "ds"
    import_paired(root, "rain100", "rain100l", ds, 10**9, 1)
    _png(root / "rain-2.png", 999)
    _png(root / "rain-6.png", 6)
    _png(root / "norain-6.png", 106)

    result = import_cli(root, ds, "--layout", "rain100", "--name", "rain100l")

    assert result.exit_code == 1
    assert "changed-source: rain-2.png: rain-2.png holds other bytes than when imported" in (
        result.output
    )
    assert "holds other files than split rain100l was imported from: nothing stored" in (
        result.output
    )
    assert "already there" not in result.output
    assert len(stored(ds)) == 3  # not rain-6 either: the split stays one download


def test_the_source_files_digests_are_kept_with_each_pair(tmp_path, rain100l):
    ds = tmp_path / "ds"
    import_paired(rain100l[0], "rain100", "rain100l", ds, 10**9, 1)
    pair = stored(ds).iloc[0]

    with tarfile.open(ds / pair.shard) as archive:
        metadata = json.load(archive.extractfile(f"{pair.key}.json"))

    assert metadata["source_rain_sha256"] == file_sha256(rain100l[0] / pair.source_rain)
    assert metadata["source_gt_sha256"] == file_sha256(rain100l[0] / pair.source_gt)


def test_a_name_that_is_not_utf8_is_stored_and_listed_as_ingest_stores_it(
    tmp_path, gt_rain, protocol_file
):
    # An archive unzipped without its names' encoding: bytes that are not UTF-8.
    test_set = gt_rain / "GT-RAIN_test"
    scene = test_set / os.fsdecode(b"caf\xe9")
    _png(scene / "cafe-R-000.png", 1)
    _png(scene / "cafe-C-000.png", 2)
    args = ("--protocol", protocol_file(pairs=6), "--split", "gt-rain-test")

    result = import_cli(test_set, tmp_path / "ds", *args, "--write-checksums")

    assert result.exit_code == 0, result.output
    assert "caf\\xe9/cafe-R-000.png" in set(stored(tmp_path / "ds").source_rain)
    listed = (tmp_path / "v9" / "gt-rain-test.sha256").read_text("utf-8")
    assert "  caf\\xe9/cafe-C-000.png\n" in listed
    again = import_cli(test_set, tmp_path / "ds", *args)
    assert again.exit_code == 0, again.output
    assert "gt-rain-test: 0 pairs stored, 6 already there" in again.output


def test_a_problem_names_a_file_that_is_not_utf8_as_the_split_would(tmp_path):
    root = tmp_path / "set"
    _png(root / "input" / os.fsdecode(b"caf\xe9.png"), 1)  # no target
    _png(root / "input" / "1.png", 2)
    _png(root / "target" / "1.png", 3)

    result = import_cli(root, tmp_path / "ds", "--layout", "input-target", "--name", "x", "--json")

    assert result.exit_code == 0, result.output
    assert "missing-gt: input/caf\\xe9.png: no ground truth for caf\\xe9 in target/" in (
        result.stderr
    )
    problem = json.loads(result.stdout)["problems"][0]
    assert problem["path"] == "input/caf\\xe9.png"


# --- names a split may have ------------------------------------------------------------


def test_a_name_keeps_to_one_layout(tmp_path, spa_data):
    ds = tmp_path / "ds"
    import_paired(spa_data / "testing", "spa", "mine", ds, 10**9, 1)
    for n in (1, 2):
        _png(tmp_path / "r100" / f"rain-{n}.png", n)
        _png(tmp_path / "r100" / f"norain-{n}.png", n + 10)

    with pytest.raises(DatasetError, match=r"--name mine: the split holds pairs made otherwise"):
        import_paired(tmp_path / "r100", "rain100", "mine", ds, 10**9, 1)

    assert set(stored(ds).recipe) == {"import:spa"}


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("lab-pairs", "lab-pairs \\(rainbench pairs\\)"),
        ("gt-rain-test", "a leaderboard protocol's split: import it with --protocol"),
        ("x" * 250, "250 characters; a split's name has at most 100"),
    ],
)
def test_names_of_other_commands_protocols_and_long_names_are_refused_first(
    tmp_path, rain100l, name, message
):
    with pytest.raises(DatasetError, match=message):
        import_paired(rain100l[0], "rain100", name, tmp_path / "ds", 10**9, 1)
    assert not (tmp_path / "ds").exists()


def test_checksums_are_not_written_from_a_download_with_problems(tmp_path, gt_rain, protocol_file):
    protocol = protocol_file()
    test_set = gt_rain / "GT-RAIN_test"
    _png(test_set / "Lonely_0-0" / "Lonely_0-0-Webcam-R-000.png", 7)  # no clean frame

    result = import_cli(
        test_set, tmp_path / "ds", "--protocol", protocol, "--split", "gt-rain-test",
        "--write-checksums",
    )  # fmt: skip

    assert result.exit_code == 1
    assert "missing-gt: Lonely_0-0/Lonely_0-0-Webcam-R-000.png" in result.output
    assert "checksums-not-written: .: gt-rain-test.sha256 not written: finding the pairs met 1" in (
        result.output
    )
    assert not (tmp_path / "v9" / "gt-rain-test.sha256").exists()
    assert not (tmp_path / "ds" / "manifests" / "synthetic.parquet").exists()


def test_a_protocol_split_already_there_is_imported_again_by_its_name(
    tmp_path, gt_rain, protocol_file
):
    # As a dataset made before the name was kept for --protocol holds it.
    test_set, ds = gt_rain / "GT-RAIN_test", tmp_path / "ds"
    first = import_cli(test_set, ds, "--protocol", protocol_file(), "--split", "gt-rain-test")
    assert first.exit_code == 0, first.output
    again = import_cli(test_set, ds, "--layout", "gt-rain", "--name", "gt-rain-test")
    assert again.exit_code == 0, again.output
    assert "gt-rain-test: 0 pairs stored, 5 already there" in again.output


def test_an_identical_pair_is_a_warning_that_lets_the_list_be_written(
    tmp_path, gt_rain, protocol_file
):
    protocol = protocol_file()
    scene = gt_rain / "GT-RAIN_test" / "Oinari_0-0"
    shutil.copy(scene / "Oinari_0-0-Webcam-C-000.png", scene / "Oinari_0-0-Webcam-R-000.png")

    result = import_cli(
        gt_rain / "GT-RAIN_test", tmp_path / "ds", "--protocol", protocol,
        "--split", "gt-rain-test", "--write-checksums",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert "identical-files: Oinari_0-0/Oinari_0-0-Webcam-R-000.png" in result.output
    assert (tmp_path / "v9" / "gt-rain-test.sha256").exists()


def test_a_list_line_naming_one_file_as_both_is_an_identical_pair(tmp_path):
    root = tmp_path / "spa"
    _png(root / "rain" / "1.png", 1)
    _png(root / "gt" / "1gt.png", 2)
    _png(root / "rain" / "2.png", 3)
    (root / "list.txt").write_text("rain/1.png gt/1gt.png\nrain/2.png rain/2.png\n")

    summary, problems = import_paired(root, "spa", "s", tmp_path / "ds", 10**9, 1)

    assert summary.stored["s"] == 2
    assert [(p.kind, p.path, p.detail) for p in problems] == [
        (
            "identical-files",
            "rain/2.png",
            "its own ground truth: its PSNR is infinite (stored all the same)",
        )
    ]


# --- what the command says -------------------------------------------------------------


def test_a_failed_pair_names_its_file_and_fails_the_command(tmp_path, rain100l):
    root = rain100l[0]
    (root / "norain-3.png").write_bytes((root / "norain-3.png").read_bytes()[:200])

    result = import_cli(root, tmp_path / "ds", "--layout", "rain100", "--name", "r")

    assert result.exit_code == 1
    assert "failed: rain100:rain-3.png//norain-3.png:" in result.output
    assert ": norain-3.png: " in result.output and ": rain-3.png: " not in result.output
    assert "r: 2 pairs stored" in result.output
    assert "error: 1 pair of" in result.output and "could not be read" in result.output


def test_every_pair_failing_is_an_error(tmp_path):
    for n in (1, 2):
        _png(tmp_path / "set" / f"rain-{n}.png", n)
        _png(tmp_path / "set" / f"norain-{n}.png", n + 10)
        path = tmp_path / "set" / f"rain-{n}.png"
        path.write_bytes(path.read_bytes()[:200])

    result = import_cli(tmp_path / "set", tmp_path / "ds", "--layout", "rain100", "--name", "r")

    assert result.exit_code == 1
    assert "none of its 2 pairs could be read" in result.output


def test_json_carries_the_problems(tmp_path, rain100l):
    root = rain100l[0]
    shutil.copy(root / "norain-1.png", root / "rain-1.png")  # byte-identical pair

    result = CliRunner().invoke(
        main,
        ["import-paired", str(root), "--into", str(tmp_path / "ds"), "--layout", "rain100",
         "--name", "r", "--json", "-j", "1", "--no-progress"],
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["stored"] == {"r": 3}
    assert {(p["kind"], p["path"]) for p in report["problems"]} == {
        ("missing-gt", "rain-5.png"),
        ("size-mismatch", "rain-4.png"),
        ("identical-files", "rain-1.png"),
    }
    assert "its PSNR is infinite" in result.stderr


def test_mixed_partitions_end_with_what_was_refused(gt_rain, tmp_path):
    result = import_cli(gt_rain, tmp_path / "ds", "--layout", "gt-rain", "--name", "g")

    assert result.exit_code == 1
    assert "mixed-partitions" in result.output
    assert result.output.splitlines()[-1] == (
        f"error: {gt_rain} holds several of the set's partitions: nothing stored"
    )
