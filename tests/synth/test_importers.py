"""Layouts of public paired sets, built on disk in code: pairing by each layout's
naming rules, the variants each accepts, and every problem reported rather than guessed.
"""

import io
import os
import re
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rainbench.capture.source import max_still_bytes
from rainbench.synth import importers
from rainbench.synth.importers import (
    IMPORTED,
    LAYOUTS,
    REAL_PAIRED,
    find_pairs,
    load_pair,
    paired_kind,
)

SIZE = (48, 32)  # width, height


def write_image(path: Path, size: tuple[int, int] = SIZE, seed: int = 0) -> np.ndarray:
    """Random pixels (so any mix-up shows), saved in the format the suffix names."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return pixels


def write_files(root: Path, *names: str) -> None:
    for seed, name in enumerate(names):
        write_image(root / name, seed=seed)


def kinds(problems) -> list[tuple[str, str]]:
    return [(problem.kind, problem.path) for problem in problems]


def test_every_layout_is_registered_with_a_one_line_description():
    assert list(LAYOUTS) == [
        "rain100",
        "rain1400",
        "input-target",
        "spa",
        "did-mdn",
        "gt-rain",
        "realrain-1k",
        "lhp-rain",
    ]
    for name, layout in LAYOUTS.items():
        assert layout.name == name
        assert layout.description and "\n" not in layout.description


def test_real_paired_layouts_say_how_their_ground_truth_was_estimated():
    real = [name for name, layout in LAYOUTS.items() if layout.kind == REAL_PAIRED]
    assert real == ["spa", "gt-rain", "realrain-1k", "lhp-rain"]
    for layout in LAYOUTS.values():
        if layout.kind == REAL_PAIRED:
            assert layout.ground_truth and "\n" not in layout.ground_truth
        else:
            assert layout.kind == IMPORTED and layout.ground_truth is None
    assert paired_kind("import:gt-rain") == REAL_PAIRED
    assert paired_kind("import:rain100") == IMPORTED
    assert paired_kind("streak") == "synthetic"


def test_unknown_layout_and_missing_folder_are_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown layout"):
        find_pairs(tmp_path, "rain800")
    with pytest.raises(NotADirectoryError):
        find_pairs(tmp_path / "absent", "rain100")


# --- rain100 ---------------------------------------------------------------------------


def test_rain100_pairs_by_number_in_numeric_order(tmp_path):
    rainy = {n: write_image(tmp_path / f"rain-{n}.png", seed=n) for n in (1, 2, 10)}
    truth = {n: write_image(tmp_path / f"norain-{n}.png", seed=100 + n) for n in (1, 2, 10)}

    pairs, problems = find_pairs(tmp_path, "rain100")

    assert problems == []
    assert [pair.name for pair in pairs] == ["rain-1", "rain-2", "rain-10"]
    second = pairs[1]
    assert (second.rain, second.gt) == (tmp_path / "rain-2.png", tmp_path / "norain-2.png")
    assert (second.crop_rain, second.crop_gt, second.group) == (None, None, None)
    rain, gt = load_pair(second)
    assert rain.dtype == np.uint8 and rain.shape == (32, 48, 3)
    np.testing.assert_array_equal(rain, rainy[2])
    np.testing.assert_array_equal(gt, truth[2])


def test_a_link_out_of_the_set_and_a_fifo_are_refused_unread(tmp_path):
    root = tmp_path / "set"
    write_files(root, "rain-1.png", "norain-1.png", "norain-2.png", "rain-3.png")
    write_image(tmp_path / "private.png")
    (root / "rain-2.png").symlink_to(tmp_path / "private.png")
    os.mkfifo(root / "norain-3.png")  # read, it would wait for a writer forever

    pairs, problems = find_pairs(root, "rain100")

    assert [pair.name for pair in pairs] == ["rain-1"]
    details = {problem.path: problem.detail for problem in problems}
    assert details["rain-2.png"] == "leads outside the set; refused"
    assert details["norain-3.png"] == "not a regular file; refused"


def test_a_picture_read_by_a_plugin_that_decodes_to_open_is_refused_unread(tmp_path):
    # An ICO named .png: Pillow's plugin decodes its icon while it opens, whatever size
    # the icon's directory declares.
    root = tmp_path / "set"
    write_files(root, "rain-1.png", "norain-1.png", "norain-2.png")
    icon = io.BytesIO()
    Image.new("RGB", SIZE).save(icon, "ICO", sizes=[SIZE])  # its pair's size
    (root / "rain-2.png").write_bytes(icon.getvalue())

    pairs, problems = find_pairs(root, "rain100")

    assert [pair.name for pair in pairs] == ["rain-1"]
    assert kinds(problems) == [("unreadable", "rain-2.png")]


def test_a_link_loop_in_the_set_is_refused_unread(tmp_path):
    root = tmp_path / "set"
    write_files(root, "rain-1.png", "norain-1.png", "norain-2.png")
    (root / "rain-2.png").symlink_to("rain-2.png")

    pairs, problems = find_pairs(root, "rain100")

    assert [pair.name for pair in pairs] == ["rain-1"]
    assert "rain-2.png" in {problem.path for problem in problems}


def test_a_link_to_nothing_says_so(tmp_path):
    root = tmp_path / "set"
    write_files(root, "rain-1.png", "norain-1.png", "norain-2.png")
    (root / "rain-2.png").symlink_to("gone.png")

    pairs, problems = find_pairs(root, "rain100")

    assert [pair.name for pair in pairs] == ["rain-1"]
    assert {problem.path: problem.detail for problem in problems}["rain-2.png"] == (
        "a link to nothing; refused"
    )


def test_a_link_to_a_folder_is_reported_not_skipped_unsaid(tmp_path):
    # os.walk does not enter it: a set whose rain/ is a link lost its files unsaid.
    root = tmp_path / "set"
    write_files(root, "rain-1.png", "norain-1.png")
    write_files(tmp_path / "elsewhere", "rain-2.png", "norain-2.png")
    (root / "more").symlink_to(tmp_path / "elsewhere")

    pairs, problems = find_pairs(root, "rain100")

    assert [pair.name for pair in pairs] == ["rain-1"]
    assert kinds(problems) == [("unreadable", "more")]
    assert "a link to a folder, not followed" in problems[0].detail


def test_a_folder_that_cannot_be_listed_is_reported(tmp_path, monkeypatch):
    root = tmp_path / "set"
    write_files(root, "rain-1.png", "norain-1.png", "locked/rain-2.png", "locked/norain-2.png")
    scandir = os.scandir

    def refusing(path):  # as for a folder of another user (the tests may run as root)
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refusing)
    pairs, problems = find_pairs(root, "rain100")

    assert [pair.name for pair in pairs] == ["rain-1"]
    assert [(p.kind, p.path, p.detail) for p in problems] == [
        ("unreadable", "locked", "cannot list it: Permission denied")
    ]


@pytest.mark.parametrize(
    ("rain", "gt"),
    [
        ("rain-001.png", "norain-001.png"),  # Rain100L/H test sets pad to three digits
        ("rain-1.png", "norain-001.png"),
        ("rain-1.jpg", "norain-1.jpg"),
        ("rain/X2/norain-1x2.png", "norain/norain-1.png"),  # the Rain200 release
        ("rain/norain-1x2.png", "norain/norain-1.png"),
        ("Rain/1.png", "NoRain/1.png"),
        ("norain-1x2.png", "norain-1.png"),
    ],
)
def test_rain100_variants(tmp_path, rain, gt):
    write_files(tmp_path / "Rain100L", rain, gt)

    pairs, problems = find_pairs(tmp_path, "rain100")

    assert problems == []
    assert [(p.name, p.rain, p.gt) for p in pairs] == [
        ("rain-1", tmp_path / "Rain100L" / rain, tmp_path / "Rain100L" / gt)
    ]


def test_nested_train_and_test_take_their_folder_as_prefix_only_when_names_collide(tmp_path):
    write_files(tmp_path, "train/rain-1.png", "train/norain-1.png")
    write_files(tmp_path, "test/rain/X2/norain-2x2.png", "test/norain/norain-2.png")
    pairs, problems = find_pairs(tmp_path, "rain100")
    assert problems == []
    assert [pair.name for pair in pairs] == ["rain-1", "rain-2"]

    write_files(tmp_path, "test/rain/X2/norain-1x2.png", "test/norain/norain-1.png")
    pairs, problems = find_pairs(tmp_path, "rain100")
    assert problems == []
    assert [pair.name for pair in pairs] == ["test-rain-1", "test-rain-2", "train-rain-1"]


def test_rain100_missing_partners_are_reported_both_ways(tmp_path):
    write_files(tmp_path, "rain-1.png", "norain-2.png", "rain-3.png", "norain-3.png")

    pairs, problems = find_pairs(tmp_path, "rain100")

    assert [pair.name for pair in pairs] == ["rain-3"]
    assert kinds(problems) == [("missing-rain", "norain-2.png"), ("missing-gt", "rain-1.png")]


def test_size_mismatch_is_reported_and_left_out(tmp_path):
    write_files(tmp_path, "rain-1.png", "norain-1.png", "rain-2.png")
    write_image(tmp_path / "norain-2.png", size=(50, 32))

    pairs, problems = find_pairs(tmp_path, "rain100")

    assert [pair.name for pair in pairs] == ["rain-1"]
    assert kinds(problems) == [("size-mismatch", "rain-2.png")]
    assert "48×32" in problems[0].detail and "50×32" in problems[0].detail


def test_two_files_for_one_image_are_a_duplicate_not_a_guess(tmp_path):
    write_files(tmp_path, "rain-1.png", "rain-001.png", "norain-1.png", "rain-2.png")
    write_files(tmp_path, "norain-2.png")

    pairs, problems = find_pairs(tmp_path, "rain100")

    assert [pair.name for pair in pairs] == ["rain-2"]
    assert [problem.kind for problem in problems] == ["duplicate-name"]
    assert "rain-001.png" in problems[0].detail and "rain-1.png" in problems[0].detail


def test_unexpected_images_are_reported_and_other_files_ignored(tmp_path):
    write_files(tmp_path, "rain-1.png", "norain-1.png", "extra/photo.jpg", "cover.png")
    write_files(tmp_path, "__MACOSX/._rain-1.png", "._rain-5.png")
    for name in ("README.md", "notes.txt", ".DS_Store", "Thumbs.db"):
        (tmp_path / name).write_bytes(b"not an image")

    pairs, problems = find_pairs(tmp_path, "rain100")

    assert [pair.name for pair in pairs] == ["rain-1"]
    assert kinds(problems) == [
        ("unexpected-file", "cover.png"),
        ("unexpected-file", "extra/photo.jpg"),
    ]


def test_a_set_of_webp_images_pairs_as_any_other(tmp_path):
    rainy = write_image(tmp_path / "rain-1.webp", seed=1)  # lossy: its pixels as decoded
    write_image(tmp_path / "norain-1.webp", seed=2)
    pairs, problems = find_pairs(tmp_path, "rain100")
    assert [pair.name for pair in pairs] == ["rain-1"] and problems == []
    assert load_pair(pairs[0])[0].shape == rainy.shape


def test_nothing_laid_out_names_the_image_files_not_read(tmp_path):
    write_files(tmp_path, "rain-1.gif", "norain-1.gif", "rain-2.gif")
    (tmp_path / "README.md").write_bytes(b"not an image")
    pairs, problems = find_pairs(tmp_path, "rain100")
    assert pairs == []
    (problem,) = problems
    assert problem.kind == "no-pairs" and problem.detail.endswith(
        "; 3 files of a kind not imported (.gif) were not looked at"
    )


def test_unreadable_image_is_reported(tmp_path):
    write_files(tmp_path, "norain-1.png", "rain-2.png", "norain-2.png")
    (tmp_path / "rain-1.png").write_bytes(b"\x89PNG broken")

    pairs, problems = find_pairs(tmp_path, "rain100")

    assert [pair.name for pair in pairs] == ["rain-2"]
    assert kinds(problems) == [("unreadable", "rain-1.png")]


def test_files_that_fit_but_never_pair_end_with_no_pairs(tmp_path):
    write_files(tmp_path, "rain-1.png")

    pairs, problems = find_pairs(tmp_path, "rain100")

    assert pairs == []
    assert kinds(problems) == [("missing-gt", "rain-1.png"), ("no-pairs", ".")]


# --- rain1400 --------------------------------------------------------------------------


def write_rain1400(root: Path, scenes, variants=range(1, 15), suffix=".jpg", dirs=None):
    rain_dir, gt_dir = dirs or ("rainy_image", "ground_truth")
    for scene in scenes:
        write_image(root / gt_dir / f"{scene}{suffix}", seed=scene)
        for j in variants:
            write_image(root / rain_dir / f"{scene}_{j}{suffix}", seed=scene * 100 + j)


def test_rain1400_pairs_14_variants_with_one_ground_truth(tmp_path):
    write_rain1400(tmp_path, [901, 902])

    pairs, problems = find_pairs(tmp_path, "rain1400")

    assert problems == []
    assert len(pairs) == 28
    assert [pair.name for pair in pairs[:11]] == [f"901_{j}" for j in range(1, 12)]
    last = pairs[-1]
    assert last.name == "902_14" and last.group == "902"
    assert last.rain == tmp_path / "rainy_image" / "902_14.jpg"
    assert last.gt == tmp_path / "ground_truth" / "902.jpg"
    rain, gt = load_pair(last)
    assert rain.shape == gt.shape == (32, 48, 3)


def test_rain1400_variants_rain_norain_png_nested(tmp_path):
    write_rain1400(tmp_path / "train", [1], suffix=".png", dirs=("rain", "norain"))
    write_rain1400(tmp_path / "test", [901])

    pairs, problems = find_pairs(tmp_path, "rain1400")

    assert problems == []
    assert len(pairs) == 28
    assert {pair.group for pair in pairs} == {"1", "901"}


def test_rain1400_problems(tmp_path):
    write_rain1400(tmp_path, [901])
    write_rain1400(tmp_path, [902], variants=[])  # ground truth alone
    write_rain1400(tmp_path, [903], variants=range(1, 14))  # 14th variant lost
    write_files(tmp_path, "rainy_image/904_1.jpg", "rainy_image/901_15.jpg")

    pairs, problems = find_pairs(tmp_path, "rain1400")

    assert len(pairs) == 14 + 13
    assert kinds(problems) == [
        ("missing-rain", "ground_truth/902.jpg"),
        ("missing-rain", "ground_truth/903.jpg"),
        ("unexpected-file", "rainy_image/901_15.jpg"),
        ("missing-gt", "rainy_image/904_1.jpg"),
    ]
    assert "14" in problems[1].detail


# --- input-target ----------------------------------------------------------------------


def test_input_target_pairs_by_name_and_prefixes_colliding_sets(tmp_path):
    for name in ("Rain100H", "Rain100L"):
        write_files(tmp_path / "test" / name, "input/1.png", "target/1.png")
        write_files(tmp_path / "test" / name, "input/2.png", "target/2.png")

    pairs, problems = find_pairs(tmp_path, "input-target")

    assert problems == []
    assert [pair.name for pair in pairs] == [
        "test-Rain100H-1",
        "test-Rain100H-2",
        "test-Rain100L-1",
        "test-Rain100L-2",
    ]
    assert pairs[0].gt == tmp_path / "test" / "Rain100H" / "target" / "1.png"


def test_input_target_variants_and_missing_partners(tmp_path):
    write_files(tmp_path, "input/a b.jpg", "gt/a b.png", "input/only.png", "gt/lonely.png")

    pairs, problems = find_pairs(tmp_path, "input-target")

    assert [(p.name, p.rain.name, p.gt.name) for p in pairs] == [("a-b", "a b.jpg", "a b.png")]
    assert kinds(problems) == [("missing-rain", "gt/lonely.png"), ("missing-gt", "input/only.png")]


# --- spa -------------------------------------------------------------------------------


def test_spa_reads_the_rainy_gt_list(tmp_path):
    testing = tmp_path / "Testing"
    for n in range(3):
        write_files(testing, f"real_test_1000/rain/{n:03d}.png", f"real_test_1000/gt/{n:03d}gt.png")
    lines = [f"/real_test_1000/rain/{n:03d}.png /real_test_1000/gt/{n:03d}gt.png" for n in range(5)]
    lines[3] = "/real_test_1000/rain/003.png /real_test_1000/gt/000gt.png"  # gt shared is fine
    lines.append("a-single-column.png")
    write_files(testing, "real_test_1000/rain/003.png", "Real_Internet/rain_1.png")
    (testing / "real_test_1000.txt").write_bytes("\r\n".join(lines).encode() + b"\r\n")
    (testing / "License.txt").write_text("Licensed for research.\n")

    pairs, problems = find_pairs(tmp_path, "spa")

    assert [pair.name for pair in pairs] == ["000", "001", "002", "003"]
    assert pairs[1].rain == testing / "real_test_1000" / "rain" / "001.png"
    assert pairs[1].gt == testing / "real_test_1000" / "gt" / "001gt.png"
    assert kinds(problems) == [
        ("unexpected-file", "Testing/Real_Internet/rain_1.png"),
        ("unreadable", "Testing/real_test_1000.txt"),
        ("missing-gt", "Testing/real_test_1000/gt/004gt.png"),
        ("missing-rain", "Testing/real_test_1000/rain/004.png"),
    ]
    assert "line 6" in problems[1].detail


def test_spa_list_paths_relative_to_the_root_and_folder_fallback(tmp_path):
    write_files(tmp_path / "a", "data/rain/000.png", "data/gt/000gt.png")
    (tmp_path / "a" / "lists").mkdir()
    (tmp_path / "a" / "lists" / "test.txt").write_text("data/rain/000.png data/gt/000gt.png\n")
    pairs, problems = find_pairs(tmp_path / "a", "spa")
    assert problems == []
    assert [pair.name for pair in pairs] == ["000"]

    write_files(tmp_path / "b", "rain/000.png", "gt/000gt.png", "rain/001.png", "gt/001_gt.png")
    pairs, problems = find_pairs(tmp_path / "b", "spa")
    assert problems == []
    assert [(p.name, p.gt.name) for p in pairs] == [("000", "000gt.png"), ("001", "001_gt.png")]


def test_a_spa_list_that_is_a_fifo_a_link_out_or_too_large_is_refused_unread(tmp_path, monkeypatch):
    monkeypatch.setattr(importers, "_MAX_LIST_BYTES", 1 << 20)
    write_files(tmp_path / "set", "rain/000.png", "gt/000gt.png")
    os.mkfifo(tmp_path / "set" / "waits.txt")  # read, it would wait for a writer forever
    (tmp_path / "set" / "zeros.txt").symlink_to("/dev/zero")  # read, it would fill memory
    (tmp_path / "set" / "long.txt").write_text("rain/000.png gt/000gt.png\n" * 50_000)

    pairs, problems = find_pairs(tmp_path / "set", "spa")

    assert [pair.name for pair in pairs] == ["000"]  # by its folders: no list was read
    assert {problem.path: problem.detail for problem in problems} == {
        "long.txt": "larger than 1 MiB, which no list is",
        "waits.txt": "not a regular file; refused",
        "zeros.txt": "leads outside the set; refused",
    }


def test_a_spa_list_that_cannot_be_opened_is_a_problem_not_a_traceback(tmp_path, monkeypatch):
    write_files(tmp_path / "set", "rain/000.png", "gt/000gt.png")
    (tmp_path / "set" / "list.txt").write_text("rain/000.png gt/000gt.png\n")

    def denied(path, mode="r"):  # as for a list this user may not read (root may)
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(importers, "open", denied, raising=False)
    pairs, problems = find_pairs(tmp_path / "set", "spa")
    assert [pair.name for pair in pairs] == ["000"]  # by its folders
    assert kinds(problems) == [("unreadable", "list.txt")]


def test_a_spa_list_that_gives_no_pair_says_why(tmp_path):
    # A list read whose files are elsewhere, and a list not read, are more than "nothing
    # here is laid out as spa".
    (tmp_path / "testing").mkdir()
    (tmp_path / "testing" / "real_test_1000.txt").write_text("/rain/000.png /gt/000gt.png\n")
    (tmp_path / "elsewhere.txt").write_text("rain/001.png gt/001gt.png\n")
    (tmp_path / "testing" / "other.txt").symlink_to(tmp_path / "elsewhere.txt")

    pairs, problems = find_pairs(tmp_path / "testing", "spa")

    assert pairs == []
    assert kinds(problems) == [
        ("missing-gt", "gt/000gt.png"),
        ("unreadable", "other.txt"),
        ("missing-rain", "rain/000.png"),
        ("no-pairs", "."),
    ]
    assert problems[0].detail == "listed on line 1 of real_test_1000.txt but not found"


def test_spa_groups_training_crops_by_video_and_refuses_mixed_partitions(spa_data):
    pairs, problems = find_pairs(spa_data / "training", "spa")

    assert problems == []
    assert [(p.name, p.group) for p in pairs] == [
        ("000-1_1_1", "000"),
        ("000-2_1_1", "000"),
        ("001-1_1_1", "001"),
        ("001-2_1_1", "001"),
    ]
    test_pairs, _ = find_pairs(spa_data / "testing", "spa")
    assert {pair.group for pair in test_pairs} == {None}

    pairs, problems = find_pairs(spa_data, "spa")

    assert pairs == []
    assert kinds(problems) == [("mixed-partitions", ".")]
    assert "testing/real_test_1000/, training/" in problems[0].detail


# --- gt-rain ---------------------------------------------------------------------------


def test_gt_rain_pairs_every_rainy_frame_with_its_scenes_clean_frame(gt_rain):
    pairs, problems = find_pairs(gt_rain / "GT-RAIN_test", "gt-rain")

    assert problems == []
    assert [(p.name, p.group, p.gt.name) for p in pairs] == [
        ("M1135_0-0-Webcam-R-000", "M1135_0-0", "M1135_0-0-Webcam-C-000.png"),
        ("M1135_0-0-Webcam-R-001", "M1135_0-0", "M1135_0-0-Webcam-C-000.png"),
        ("Oinari_0-0-Webcam-R-000", "Oinari_0-0", "Oinari_0-0-Webcam-C-000.png"),
        ("Oinari_0-0-Webcam-R-001", "Oinari_0-0", "Oinari_0-0-Webcam-C-000.png"),
        ("Oinari_0-0-Webcam-R-002", "Oinari_0-0", "Oinari_0-0-Webcam-C-000.png"),
    ]
    assert all("." not in pair.name for pair in pairs)
    rain, gt = load_pair(pairs[3])
    np.testing.assert_array_equal(gt, load_pair(pairs[2])[1])
    assert not np.array_equal(rain, load_pair(pairs[2])[0])


def test_gt_rain_scene_with_a_clean_frame_per_rainy_frame_pairs_by_number(gt_rain):
    pairs, problems = find_pairs(gt_rain / "GT-RAIN_val", "gt-rain")

    assert problems == []
    assert [(p.rain.name, p.gt.name) for p in pairs] == [
        ("Gurutto_1-2-Webcam-R-000.png", "Gurutto_1-2-Webcam-C-000.png"),
        ("Gurutto_1-2-Webcam-R-001.png", "Gurutto_1-2-Webcam-C-001.png"),
    ]


def test_gt_rain_a_scene_folder_as_root_is_its_own_scene(gt_rain):
    pairs, problems = find_pairs(gt_rain / "GT-RAIN_test" / "Oinari_0-0", "gt-rain")

    assert problems == []
    assert {pair.group for pair in pairs} == {"Oinari_0-0"}


def test_gt_rain_problems(gt_rain):
    scene = gt_rain / "GT-RAIN_test" / "Oinari_0-0"
    write_image(scene / "Oinari_0-0-Webcam-R-003.png", size=(50, 32))
    write_image(scene / "Oinari_0-0-Webcam-R-3.jpg")
    write_image(scene / "preview.png")
    write_files(gt_rain / "GT-RAIN_test" / "Lonely_0-0", "Lonely_0-0-Webcam-R-000.png")
    gurutto = gt_rain / "GT-RAIN_val" / "Gurutto_1-2"
    write_files(gurutto, "Gurutto_1-2-Webcam-R-002.png", "Gurutto_1-2-Webcam-C-005.png")

    test_pairs, test_problems = find_pairs(gt_rain / "GT-RAIN_test", "gt-rain")
    val_pairs, val_problems = find_pairs(gt_rain / "GT-RAIN_val", "gt-rain")

    assert len(test_pairs) == 5 and len(val_pairs) == 2
    assert kinds(test_problems) == [
        ("missing-gt", "Lonely_0-0/Lonely_0-0-Webcam-R-000.png"),
        ("duplicate-name", "Oinari_0-0/Oinari_0-0-Webcam-R-003.png"),
        ("unexpected-file", "Oinari_0-0/preview.png"),
    ]
    assert kinds(val_problems) == [
        ("missing-rain", "Gurutto_1-2/Gurutto_1-2-Webcam-C-005.png"),
        ("missing-gt", "Gurutto_1-2/Gurutto_1-2-Webcam-R-002.png"),
    ]


def test_gt_rain_size_mismatch_with_the_shared_clean_frame(gt_rain):
    write_image(gt_rain / "GT-RAIN_test/M1135_0-0/M1135_0-0-Webcam-R-002.png", size=(50, 32))

    pairs, problems = find_pairs(gt_rain / "GT-RAIN_test", "gt-rain")

    assert len(pairs) == 5
    assert kinds(problems) == [("size-mismatch", "M1135_0-0/M1135_0-0-Webcam-R-002.png")]


def test_gt_rain_train_and_test_under_one_root_are_refused(gt_rain):
    pairs, problems = find_pairs(gt_rain, "gt-rain")

    assert pairs == []
    assert kinds(problems) == [("mixed-partitions", ".")]
    assert "GT-RAIN_test/, GT-RAIN_train/, GT-RAIN_val/" in problems[0].detail


# --- realrain-1k -----------------------------------------------------------------------


def test_realrain_1k_pairs_input_with_target_of_the_same_name(realrain_1k):
    root = realrain_1k / "RealRain-1k-L" / "test"

    pairs, problems = find_pairs(root, "realrain-1k")

    assert problems == []
    assert [(p.name, p.group) for p in pairs] == [("3", None), ("17", None)]
    assert pairs[1].rain == root / "input" / "17.png"
    assert pairs[1].gt == root / "target" / "17.png"


def test_realrain_1k_light_and_heavy_or_train_and_test_are_not_mixed(realrain_1k):
    for root, listed in [
        (realrain_1k, "RealRain-1k-H/test/, RealRain-1k-L/test/, RealRain-1k-L/train/"),
        (realrain_1k / "RealRain-1k-L", "test/, train/"),
    ]:
        pairs, problems = find_pairs(root, "realrain-1k")

        assert pairs == []
        assert kinds(problems) == [("mixed-partitions", ".")]
        assert f"({listed})" in problems[0].detail


def test_realrain_1k_problems(realrain_1k):
    root = realrain_1k / "RealRain-1k-H" / "test"
    (root / "target" / "5.png").unlink()
    write_files(root, "target/9.png", "input/notes.png")
    write_image(root / "target" / "4.png", size=(50, 32))

    pairs, problems = find_pairs(root, "realrain-1k")

    assert pairs == []
    assert kinds(problems) == [
        ("size-mismatch", "input/4.png"),
        ("missing-gt", "input/5.png"),
        ("missing-gt", "input/notes.png"),
        ("missing-rain", "target/9.png"),
        ("no-pairs", "."),
    ]


# --- lhp-rain --------------------------------------------------------------------------


def test_lhp_rain_flat_folders_group_by_sequence_number(lhp_rain):
    pairs, problems = find_pairs(lhp_rain / "test", "lhp-rain")

    assert problems == []
    assert [(p.name, p.group, p.gt.name) for p in pairs] == [
        ("2701", "2701", "2701.png"),
        ("2702", "2702", "2702.png"),
    ]


def test_lhp_rain_sequence_folders_are_groups(lhp_rain):
    pairs, problems = find_pairs(lhp_rain / "train", "lhp-rain")

    assert problems == []
    assert [(p.name, p.group, p.gt.relative_to(lhp_rain / "train").as_posix()) for p in pairs] == [
        ("0001-000", "0001", "gt/0001/000.png"),
        ("0001-001", "0001", "gt/0001/001.png"),
        ("0001-002", "0001", "gt/0001/002.png"),
        ("0002-000", "0002", "gt/0002/000.png"),
        ("0002-001", "0002", "gt/0002/001.png"),
    ]


def test_lhp_rain_problems_and_mixed_partitions(lhp_rain):
    train = lhp_rain / "train"
    (train / "gt" / "0002" / "001.png").unlink()
    write_files(train, "gt/0003/000.png", "input/0004/000.png", "target/ignored.png")
    write_files(lhp_rain / "test", "input/2703.png", "input/0001/extra/deep.png")

    train_pairs, train_problems = find_pairs(train, "lhp-rain")
    _, test_problems = find_pairs(lhp_rain / "test", "lhp-rain")
    pairs, problems = find_pairs(lhp_rain, "lhp-rain")

    assert len(train_pairs) == 4
    assert kinds(train_problems) == [
        ("missing-rain", "gt/0003/000.png"),
        ("missing-gt", "input/0002/001.png"),
        ("missing-gt", "input/0004/000.png"),
        ("unexpected-file", "target/ignored.png"),
    ]
    assert kinds(test_problems) == [
        ("unexpected-file", "input/0001/extra/deep.png"),
        ("missing-gt", "input/2703.png"),
    ]
    assert pairs == [] and kinds(problems)[-1] == ("mixed-partitions", ".")


# --- did-mdn ---------------------------------------------------------------------------


def write_side_by_side(path: Path, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    full = write_image(path, size=(2 * SIZE[0], SIZE[1]), seed=seed)
    return full[:, : SIZE[0]], full[:, SIZE[0] :]


def test_did_mdn_left_half_is_rain_right_half_is_ground_truth(tmp_path):
    training = tmp_path / "DID-MDN-training"
    halves = write_side_by_side(training / "Rain_Heavy" / "train2018new" / "1.png", seed=1)
    for density in ("Medium", "Light"):
        write_side_by_side(training / f"Rain_{density}" / "train2018new" / "1.png")
    write_side_by_side(tmp_path / "DID-MDN-test" / "1.png")

    pairs, problems = find_pairs(tmp_path, "did-mdn")

    assert problems == []
    assert [(p.name, p.group) for p in pairs] == [
        ("1", None),
        ("heavy-1", "heavy"),
        ("light-1", "light"),
        ("medium-1", "medium"),
    ]
    heavy = pairs[1]
    assert heavy.rain == heavy.gt == training / "Rain_Heavy" / "train2018new" / "1.png"
    assert heavy.crop_rain == (0, 0, 48, 32)
    assert heavy.crop_gt == (48, 0, 96, 32)
    rain, gt = load_pair(heavy)
    np.testing.assert_array_equal(rain, halves[0])
    np.testing.assert_array_equal(gt, halves[1])


def test_did_mdn_density_from_above_the_root_odd_width_and_strays(tmp_path):
    root = tmp_path / "Rain_Light" / "train2018new"
    write_side_by_side(root / "0.jpg")
    write_image(root / "1.jpg", size=(97, 32))
    write_image(root / "cover.jpg")

    pairs, problems = find_pairs(root, "did-mdn")

    assert [(p.name, p.group) for p in pairs] == [("light-0", "light")]
    assert kinds(problems) == [("size-mismatch", "1.jpg"), ("unexpected-file", "cover.jpg")]


# --- a folder laid out some other way ---------------------------------------------------


@pytest.mark.parametrize(
    ("layout", "files"),
    [
        ("rain100", ["rainy_image/901_1.jpg", "ground_truth/901.jpg"]),
        ("rain1400", ["rain-1.png", "norain-1.png"]),
        ("input-target", ["rain/1.png", "norain/1.png"]),
        ("spa", ["rainy_image/901_1.jpg", "ground_truth/901.jpg"]),
        ("did-mdn", ["rain-1.png", "norain-1.png"]),
        ("gt-rain", ["input/1.png", "target/1.png"]),
        ("realrain-1k", ["rain-1.png", "norain-1.png"]),
        ("lhp-rain", ["Oinari/Oinari-R-000.png", "Oinari/Oinari-C-000.png"]),
    ],
)
def test_wrong_layout_gives_one_no_pairs_problem(tmp_path, layout, files):
    write_files(tmp_path, *files)
    (tmp_path / "README.txt").write_text("Rain set.\n")

    pairs, problems = find_pairs(tmp_path, layout)

    assert pairs == []
    assert kinds(problems) == [("no-pairs", ".")]
    assert LAYOUTS[layout].description in problems[0].detail


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_empty_folder_gives_no_pairs(tmp_path, layout):
    pairs, problems = find_pairs(tmp_path, layout)

    assert pairs == []
    assert kinds(problems) == [("no-pairs", ".")]


def test_load_pair_converts_grey_and_palette_to_rgb(tmp_path):
    grey = np.arange(48 * 32, dtype=np.uint8).reshape(32, 48)
    Image.fromarray(grey).save(tmp_path / "rain-1.png")
    Image.fromarray(grey).convert("P").save(tmp_path / "norain-1.png")

    (pair,), _ = find_pairs(tmp_path, "rain100")
    rain, gt = load_pair(pair)

    assert rain.shape == gt.shape == (32, 48, 3)
    np.testing.assert_array_equal(rain[..., 1], grey)


# --- pixels as ingest decodes them, and what is refused before decoding ---------------


def declared_png(path: Path, width: int, height: int) -> None:
    """A PNG whose header declares `width`×`height` and that holds no pixels: what a
    decompression bomb looks like to a header check."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))


def test_16_bit_grey_is_scaled_to_8_bits_not_clipped(tmp_path):
    grey = np.linspace(0, 65535, 48 * 32).reshape(32, 48).astype(np.uint16)
    for name in ("rain-1.png", "norain-1.png"):
        Image.fromarray(grey).save(tmp_path / name)
    assert Image.open(tmp_path / "rain-1.png").mode.startswith("I")

    (pair,), problems = find_pairs(tmp_path, "rain100")
    rain, gt = load_pair(pair)

    assert problems == []
    np.testing.assert_array_equal(rain[..., 0], grey >> 8)  # not 255 wherever grey > 255
    np.testing.assert_array_equal(gt[..., 2], grey >> 8)


def test_exif_orientation_is_applied_so_a_pair_lines_up(tmp_path):
    def stored_turned(path: Path, upright: np.ndarray, orientation: int) -> None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        turned = Image.fromarray(upright).transpose(
            {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90}[orientation]
        )
        turned.save(path, exif=exif)  # lossless, so the pixels compare exactly

    square = write_image(tmp_path / "norain-1.png", (32, 32))  # sizes alike either way
    stored_turned(tmp_path / "rain-1.png", square, 3)
    wide = write_image(tmp_path / "norain-2.png", (48, 32), seed=1)
    stored_turned(tmp_path / "rain-2.png", wide, 6)  # stored 32×48: a mismatch unturned
    tiff = write_image(tmp_path / "norain-3.png", (48, 32), seed=2)
    stored_turned(tmp_path / "rain-3.tif", tiff, 6)  # Pillow 13 gives its size turned

    pairs, problems = find_pairs(tmp_path, "rain100")

    assert problems == []
    for pair, upright in zip(pairs, (square, wide, tiff), strict=True):
        rain, gt = load_pair(pair)
        np.testing.assert_array_equal(rain, upright)
        np.testing.assert_array_equal(gt, upright)


def test_a_png_whose_exif_follows_its_pixels_is_sized_upright_as_it_decodes(tmp_path):
    upright = write_image(tmp_path / "norain-1.png", (48, 32))
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = io.BytesIO()
    Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90).save(stored, "PNG", exif=exif)
    data = stored.getvalue()
    start = data.index(b"eXIf") - 4
    end = start + 12 + int.from_bytes(data[start : start + 4], "big")
    data = data[:start] + data[end:]  # the eXIf chunk moved to just before IEND
    iend = data.index(b"IEND") - 4
    (tmp_path / "rain-1.png").write_bytes(data[:iend] + stored.getvalue()[start:end] + data[iend:])

    (pair,), problems = find_pairs(tmp_path, "rain100")

    assert problems == []
    np.testing.assert_array_equal(load_pair(pair)[0], upright)


def test_float_images_are_refused_not_guessed(tmp_path):
    ramp = np.linspace(0, 1, 48 * 32, dtype=np.float32).reshape(32, 48)
    for name in ("rain-1.tif", "norain-1.tif"):
        Image.fromarray(ramp, "F").save(tmp_path / name)
    write_files(tmp_path, "rain-2.png", "norain-2.png")

    pairs, problems = find_pairs(tmp_path, "rain100")

    assert [pair.name for pair in pairs] == ["rain-2"]
    assert kinds(problems) == [("float-pixels", "norain-1.tif"), ("float-pixels", "rain-1.tif")]
    assert "refused rather than guessed" in problems[0].detail


def test_the_pixel_cap_is_read_from_the_header_and_pillows_guard_stays_quiet(tmp_path):
    declared_png(tmp_path / "rain-1.png", 20000, 10000)  # 200 MP: over Pillow's 179 MP
    declared_png(tmp_path / "norain-1.png", 20000, 10000)
    write_files(tmp_path, "rain-2.png", "norain-2.png")

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning would raise
        pairs, problems = find_pairs(tmp_path, "rain100")
        capped, capped_problems = find_pairs(tmp_path, "rain100", max_pixels=1000)
        with pytest.raises(ValueError, match=r"^rain-1\.png: 20000×10000 = 200 MP exceeds"):
            load_pair(pairs[0], max_pixels=100_000_000)

    assert [pair.name for pair in pairs] == ["rain-1", "rain-2"] and problems == []
    assert capped == []
    assert {kind for kind, _ in kinds(capped_problems)} == {"too-many-pixels", "no-pairs"}
    assert "exceeds the cap of 1000 pixels" in capped_problems[0].detail
    assert all("decompression bomb" not in problem.detail for problem in capped_problems)


def test_a_file_larger_than_any_picture_within_the_cap_is_refused_unread(tmp_path):
    # It is read whole to be decoded: a file of GBs with a small picture's header would
    # fill the worker's memory first. This pair fails; the import goes on.
    write_files(tmp_path, "rain-1.png", "norain-1.png")
    cap = SIZE[0] * SIZE[1]
    with (tmp_path / "rain-1.png").open("r+b") as file:
        file.truncate(max_still_bytes(cap) + 1)  # sparse: takes no disk
    (pair,), problems = find_pairs(tmp_path, "rain100", max_pixels=cap)

    with pytest.raises(ValueError) as refused:
        load_pair(pair, max_pixels=cap)

    assert problems == []
    assert str(refused.value) == (
        f"rain-1.png: a still of {max_still_bytes(cap) + 1} bytes, more than a picture of "
        f"{cap} pixels takes (16 bytes a pixel, 16 MiB besides); not read"
    )


def test_a_file_that_does_not_decode_is_named_itself(tmp_path):
    write_files(tmp_path, "rain-3.png", "norain-3.png")
    data = bytearray((tmp_path / "norain-3.png").read_bytes())
    idat = data.index(b"IDAT") + 4
    data[idat : idat + 40] = bytes(40)  # header intact, pixel data broken
    (tmp_path / "norain-3.png").write_bytes(bytes(data))

    (pair,), _ = find_pairs(tmp_path, "rain100")

    with pytest.raises(ValueError, match=r"^norain-3\.png: "):
        load_pair(pair)


# --- names --------------------------------------------------------------------------


def test_a_list_with_a_byte_order_mark_and_a_line_twice_keeps_every_pair(tmp_path):
    write_files(tmp_path, "rain/000.png", "gt/000gt.png", "rain/001.png", "gt/001gt.png")
    lines = ["rain/000.png gt/000gt.png", "rain/001.png gt/001gt.png", "rain/001.png gt/001gt.png"]
    (tmp_path / "test.txt").write_text("\ufeff" + "\n".join(lines) + "\n", encoding="utf-8")

    pairs, problems = find_pairs(tmp_path, "spa")

    assert problems == []
    assert [pair.name for pair in pairs] == ["000", "001"]


def test_names_are_folded_to_ascii_and_names_folding_made_equal_told_apart(tmp_path):
    for sequence in ("Straße 1", "Straße-1", "café"):
        write_files(tmp_path, f"input/{sequence}/000.png", f"gt/{sequence}/000.png")

    pairs, problems = find_pairs(tmp_path, "lhp-rain")

    assert problems == []
    names = {pair.group: pair.name for pair in pairs}
    assert names["café"] == "cafe-000"
    assert names["Straße 1"][:-9] == names["Straße-1"][:-9] == "Strasse-1-000"
    assert len(set(names.values())) == 3
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", name) for name in names.values())


def test_names_whose_bytes_are_not_utf8_are_paired_and_named(tmp_path):
    # A name of no letter is named by a hash of its bytes; two names that fold to one
    # are told apart by theirs.
    for name in (b"\xff\xfe", b"caf\xe9", b"caf\xe8"):
        for role in (b"input", b"target"):
            write_image(Path(os.fsdecode(bytes(tmp_path) + b"/" + role + b"/" + name + b".png")))

    pairs, problems = find_pairs(tmp_path, "input-target")

    assert problems == []
    assert len({pair.name for pair in pairs}) == 3
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", pair.name) for pair in pairs)


def test_a_spa_list_names_files_whose_bytes_are_not_utf8(tmp_path):
    write_files(tmp_path, os.fsdecode(b"rain/caf\xe9.png"), os.fsdecode(b"gt/caf\xe9gt.png"))
    (tmp_path / "list.txt").write_bytes(b"rain/caf\xe9.png gt/caf\xe9gt.png\n")

    pairs, problems = find_pairs(tmp_path, "spa")

    assert problems == []
    assert [pair.rain.name for pair in pairs] == [os.fsdecode(b"caf\xe9.png")]


def test_a_file_that_does_not_decode_is_named_as_the_split_names_it(tmp_path):
    name = os.fsdecode(b"caf\xe9.png")
    write_files(tmp_path, f"input/{name}", f"target/{name}")
    (tmp_path / "target" / name).write_bytes((tmp_path / "target" / name).read_bytes()[:80])

    (pair,), _ = find_pairs(tmp_path, "input-target")

    with pytest.raises(ValueError, match=r"^caf\\xe9\.png: "):
        load_pair(pair)


def test_a_damaged_tiff_is_one_problem_without_pillows_warnings(tmp_path):
    write_files(tmp_path, "rain-1.png", "norain-1.png")
    (tmp_path / "norain-1.png").unlink()
    (tmp_path / "norain-1.tif").write_bytes(b"II*\0\x08\0\0\0")  # a directory past the end

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, problems = find_pairs(tmp_path, "rain100")

    assert [str(warning.message) for warning in caught] == []
    assert kinds(problems)[0] == ("unreadable", "norain-1.tif")
