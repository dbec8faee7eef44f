"""`rainbench import-paired` end to end: a folder laid out like Rain100L, or like each
public real-rain paired set, becomes a paired split; problems are reported, never
guessed; a real set's scene never straddles two splits; a protocol split is checked
against its pair count and checksum list."""

import io
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from PIL import Image

from rainbench.cli import main
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


def test_names_are_checked(tmp_path, rain100l):
    for bad in ("test", "syn-streak", "Rain.100", ""):
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
    import_paired(gt_rain / "GT-RAIN_test", "gt-rain", "gt-rain-test", tmp_path / "ds", 10**9, 1)

    pairs = stored(tmp_path / "ds")

    assert len(pairs) == 5 and pairs.source_gt.nunique() == 2
    assert pairs.groupby("group").source_gt.nunique().to_dict() == {"M1135_0-0": 1, "Oinari_0-0": 1}


def test_a_scene_never_straddles_two_splits(tmp_path, gt_rain):
    ds = tmp_path / "ds"
    import_paired(gt_rain / "GT-RAIN_test", "gt-rain", "gt-rain-test", ds, 10**9, 1)
    again = tmp_path / "more"
    shutil.copytree(gt_rain / "GT-RAIN_test" / "Oinari_0-0", again / "Oinari_0-0")
    shutil.copytree(gt_rain / "GT-RAIN_train" / "Table_Rock_0-1", again / "Table_Rock_0-1")

    with pytest.raises(DatasetError, match="Oinari_0-0 in gt-rain-test; a scene never straddles"):
        import_paired(again, "gt-rain", "gt-rain-more", ds, 10**9, 1)

    assert len(stored(ds)) == 5
    rerun, _ = import_paired(gt_rain / "GT-RAIN_test", "gt-rain", "gt-rain-test", ds, 10**9, 1)
    assert rerun.existing["gt-rain-test"] == 5  # the split itself is no other split
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
    assert len((tmp_path / "v9" / "gt-rain-test.sha256").read_text().splitlines()) == 7

    again = import_cli(test_set, tmp_path / "b", *args, "--write-checksums")
    assert again.exit_code == 1 and "written once" in again.output

    frame = test_set / "Oinari_0-0" / "Oinari_0-0-Webcam-R-001.png"
    frame.write_bytes(frame.read_bytes() + b"\0")
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
