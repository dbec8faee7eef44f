"""Protocol splits: reading a split from a leaderboard definition, checking a download
against its pair count and checksum list, and writing that list once."""

import hashlib
import tomllib
from pathlib import Path

import pytest

from rainbench.shards.dataset import DatasetError
from rainbench.synth.importers import REAL_PAIRED, LayoutProblem, find_pairs
from rainbench.synth.protocol import (
    MISMATCHES,
    NO_CHECKSUMS,
    PROTOCOL_SPLIT_NAMES,
    check_protocol,
    protocol_split,
)

V2 = Path(__file__).resolve().parents[2] / "benchmarks" / "leaderboard" / "v2.toml"


@pytest.fixture
def test_set(gt_rain):
    root = gt_rain / "GT-RAIN_test"
    return root, find_pairs(root, "gt-rain")[0]


def kinds(problems) -> list[tuple[str, str]]:
    return [(problem.kind, problem.path) for problem in problems]


def test_the_v2_definition_names_the_public_real_test_splits():
    split = protocol_split(V2, "gt-rain-test")
    assert (split.version, split.layout, split.pairs) == ("2", "gt-rain", 2100)
    assert split.checksums == V2.parent / "v2" / "gt-rain-test.sha256"
    assert split.title == "protocol v2 split gt-rain-test"
    assert protocol_split(V2, "lhp-rain-test").pairs is None
    with pytest.raises(DatasetError, match=r"no real-paired split 'syn-streak'.*gt-rain-test"):
        protocol_split(V2, "syn-streak")


_SPLIT_X = 'protocol_version = "9"\n[[splits]]\nname = "x"\nkind = "real-paired"\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("protocol_version = ", "not a protocol definition"),
        ('protocol_version = "9"\n[[splits]]\nname = "x"\nkind = "real-paired"\n', "has no"),
        # Values of the wrong kind, as a hand edit makes them: [splits] for [[splits]], …
        ('protocol_version = "9"\n[splits]\nname = "x"\n', "no \\[\\[splits\\]\\] tables"),
        ('protocol_version = "9"\nsplits = [1]\n', "no \\[\\[splits\\]\\] tables"),
        (f"{_SPLIT_X}layout = 'gt-rain'\nchecksums = 5\n", "must be text"),
        (f"{_SPLIT_X}layout = ['gt-rain']\nchecksums = 'x.sha256'\n", "must be text"),
        (f"{_SPLIT_X}layout = 'gt-rain'\nchecksums = 'x.sha256'\npairs = '5'\n", "whole number"),
    ],
)
def test_a_broken_definition_is_one_line_error(tmp_path, text, message):
    (tmp_path / "v9.toml").write_text(text)
    with pytest.raises(DatasetError, match=message):
        protocol_split(tmp_path / "v9.toml", "x")


def test_a_checksum_list_outside_the_definitions_folder_is_refused(protocol_file):
    path = protocol_file(checksums="../elsewhere.sha256")
    with pytest.raises(DatasetError, match="beside the definition"):
        protocol_split(path, "gt-rain-test")


def test_without_a_list_only_the_count_is_checked_and_one_line_says_so(protocol_file, test_set):
    root, pairs = test_set
    split = protocol_split(protocol_file(), "gt-rain-test")

    problems = check_protocol(split, root, pairs)

    assert kinds(problems) == [(NO_CHECKSUMS, ".")]
    assert "only the pair count was checked" in problems[0].detail
    assert "--write-checksums" in problems[0].detail
    wrong = protocol_split(protocol_file(pairs=6), "gt-rain-test")
    assert kinds(check_protocol(wrong, root, pairs)) == [
        ("protocol-count", "."),
        (NO_CHECKSUMS, "."),
    ]
    no_count = protocol_split(protocol_file(pairs=None), "gt-rain-test")
    (note,) = check_protocol(no_count, root, pairs)
    assert "has no checksum list yet (gt-rain-test.sha256), so nothing could be checked;" in (
        note.detail
    )


def test_checksums_written_once_then_verified(protocol_file, test_set):
    root, pairs = test_set
    split = protocol_split(protocol_file(), "gt-rain-test")

    assert check_protocol(split, root, pairs, write=True) == []

    lines = split.checksums.read_text().splitlines()
    paths = [line.split("  ", 1)[1] for line in lines]
    assert len(lines) == 5 + 2  # every rainy frame, each scene's clean frame once
    assert paths == sorted(paths)
    assert "Oinari_0-0/Oinari_0-0-Webcam-C-000.png" in paths
    digest, path = lines[0].split("  ")
    assert digest == hashlib.sha256((root / path).read_bytes()).hexdigest()
    assert check_protocol(split, root, pairs) == []
    # The same download again (the command run again after a kill): the same list, kept.
    assert check_protocol(split, root, pairs, write=True) == []
    assert split.checksums.read_text().splitlines() == lines
    # Another download: never written over the list.
    frame = root / paths[0]
    frame.write_bytes(frame.read_bytes() + b"\0")
    with pytest.raises(
        DatasetError, match="lists other files or bytes: a checksum list is written once"
    ):
        check_protocol(split, root, pairs, write=True)
    assert split.checksums.read_text().splitlines() == lines


def test_no_list_is_written_from_a_download_of_the_wrong_size(protocol_file, test_set):
    root, pairs = test_set
    split = protocol_split(protocol_file(pairs=2100), "gt-rain-test")

    problems = check_protocol(split, root, pairs, write=True)

    assert kinds(problems) == [("protocol-count", "."), (NO_CHECKSUMS, ".")]
    assert "5 pairs found; protocol v9 split gt-rain-test holds 2100" in problems[0].detail
    assert problems[1].detail.endswith("it was not written, for the problems above")
    assert not split.checksums.exists()


def test_every_difference_from_the_list_is_one_problem(protocol_file, test_set):
    root, pairs = test_set
    split = protocol_split(protocol_file(), "gt-rain-test")
    check_protocol(split, root, pairs, write=True)
    (root / "M1135_0-0" / "M1135_0-0-Webcam-R-001.png").unlink()
    changed = root / "Oinari_0-0" / "Oinari_0-0-Webcam-R-002.png"
    changed.write_bytes(changed.read_bytes() + b"\0")
    new = root / "Oinari_0-0" / "Oinari_0-0-Webcam-R-003.png"
    new.write_bytes((root / "Oinari_0-0" / "Oinari_0-0-Webcam-R-000.png").read_bytes())

    problems = check_protocol(split, root, find_pairs(root, "gt-rain")[0])

    assert kinds(problems) == [
        ("checksum-missing", "M1135_0-0/M1135_0-0-Webcam-R-001.png"),
        ("checksum-extra", "Oinari_0-0/Oinari_0-0-Webcam-R-003.png"),
        ("checksum-mismatch", "Oinari_0-0/Oinari_0-0-Webcam-R-002.png"),
    ]
    assert {problem.kind for problem in problems} <= MISMATCHES
    assert all("\n" not in problem.detail for problem in problems)


def test_a_damaged_list_is_reported_line_by_line(protocol_file, test_set):
    root, pairs = test_set
    split = protocol_split(protocol_file(), "gt-rain-test")
    check_protocol(split, root, pairs, write=True)
    lines = split.checksums.read_text().splitlines()
    split.checksums.write_text("\n".join([lines[0], "not a checksum", *lines]) + "\n")

    problems = check_protocol(split, root, pairs)

    assert kinds(problems) == [("checksum-list", "."), ("checksum-list", ".")]
    assert "line 2 of gt-rain-test.sha256: expected" in problems[0].detail
    assert "line 3 of gt-rain-test.sha256: a second line" in problems[1].detail


def test_a_line_that_is_not_utf_8_is_one_problem(protocol_file, test_set):
    root, pairs = test_set
    split = protocol_split(protocol_file(), "gt-rain-test")
    check_protocol(split, root, pairs, write=True)
    lines = split.checksums.read_bytes().splitlines()
    split.checksums.write_bytes(b"\n".join([*lines[:-1], lines[-1] + b"\xff"]) + b"\n")

    problems = check_protocol(split, root, pairs)

    # The line is not read: its file is found and not listed.
    assert kinds(problems) == [("checksum-list", "."), ("checksum-extra", lines[-1][66:].decode())]
    assert "line 7 of gt-rain-test.sha256: not UTF-8 text" in problems[0].detail


def test_a_name_holding_a_unicode_line_separator_is_listed_on_one_line(protocol_file, gt_rain):
    # Only \n and \r end a line of a list (sha256sum's own reading), as it is written.
    scene = "Oinari\u20280-0"
    root = gt_rain / "GT-RAIN_test"
    (root / "Oinari_0-0").rename(root / scene)
    for frame in (root / scene).iterdir():
        frame.rename(frame.with_name(frame.name.replace("Oinari_0-0", scene)))
    pairs, problems = find_pairs(root, "gt-rain")
    split = protocol_split(protocol_file(), "gt-rain-test")

    assert problems == [] and check_protocol(split, root, pairs, write=True) == []
    assert check_protocol(split, root, pairs) == []


def test_a_name_that_starts_with_a_space_is_listed_and_read_back(protocol_file, gt_rain):
    root = gt_rain / "GT-RAIN_test"
    (root / "Oinari_0-0").rename(root / " Oinari_0-0")  # the scene folder's name
    pairs, problems = find_pairs(root, "gt-rain")
    split = protocol_split(protocol_file(), "gt-rain-test")

    assert problems == [] and check_protocol(split, root, pairs, write=True) == []
    assert check_protocol(split, root, pairs) == []


def test_a_list_that_starts_with_a_byte_order_mark_reads_whole(protocol_file, test_set):
    root, pairs = test_set
    split = protocol_split(protocol_file(), "gt-rain-test")
    check_protocol(split, root, pairs, write=True)
    split.checksums.write_bytes(b"\xef\xbb\xbf" + split.checksums.read_bytes())

    assert check_protocol(split, root, pairs) == []


def test_a_list_larger_than_any_set_s_is_refused_in_one_line(protocol_file, test_set):
    root, pairs = test_set
    split = protocol_split(protocol_file(), "gt-rain-test")
    split.checksums.parent.mkdir(parents=True, exist_ok=True)
    with open(split.checksums, "wb") as handle:  # sparse: 64 MiB and a byte, on no disk
        handle.truncate((64 << 20) + 1)
    with pytest.raises(DatasetError, match=r"gt-rain-test\.sha256: larger than 64 MiB, more"):
        check_protocol(split, root, pairs)


def test_no_list_is_written_when_finding_the_pairs_met_problems(protocol_file, test_set):
    root, pairs = test_set
    split = protocol_split(protocol_file(), "gt-rain-test")
    found = [LayoutProblem("missing-rain", "a/x-C-001.png", "no rainy image for it")]

    problems = check_protocol(split, root, pairs, write=True, found=found)

    assert kinds(problems) == [("checksums-not-written", "."), (NO_CHECKSUMS, ".")]
    assert "met 1 problem (missing-rain)" in problems[0].detail
    assert "checksums-not-written" in MISMATCHES
    assert not split.checksums.exists()


def test_the_reserved_names_are_the_published_protocols_real_paired_splits():
    named = {
        split["name"]
        for definition in V2.parent.glob("v*.toml")
        for split in tomllib.loads(definition.read_text("utf-8"))["splits"]
        if split["kind"] == REAL_PAIRED
    }
    assert named == PROTOCOL_SPLIT_NAMES
