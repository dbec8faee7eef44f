"""The command line: exit codes, one-line errors, --json output, help with examples."""

import errno
import io
import json
import os
import re
import subprocess
import sys
import tarfile
from collections import Counter
from fnmatch import fnmatch
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from rainbench.cli import main
from rainbench.demo.captures import sample_specs, write_capture
from rainbench.demo.run import DemoResult, Stage
from rainbench.models.registry import list_derainers
from rainbench.synth.splits import PairsSummary
from rainbench.tagging.tagger import load_tagger
from rainbench.train.core.config import RunConfig


@pytest.fixture
def runner():
    return CliRunner()


def test_ingest_verify_stats(runner, tmp_path, capture_folder):
    ds = str(tmp_path / "ds")
    result = runner.invoke(
        main, ["ingest", str(capture_folder), "--out", ds, "-j", "1", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert "33 accepted" in result.output and "files/s" in result.output
    again = runner.invoke(
        main, ["ingest", str(capture_folder), "--out", ds, "--json", "--no-progress"]
    )
    assert json.loads(again.output)["accepted"] == 0
    unchanged = runner.invoke(main, ["ingest", str(capture_folder), "--out", ds, "--no-progress"])
    assert unchanged.output.splitlines()[1] == "nothing new"
    assert runner.invoke(main, ["verify", ds]).output.strip().endswith("ok")
    stats = json.loads(runner.invoke(main, ["stats", ds, "--json"]).output)
    assert stats["samples"] == 33 and sum(stats["splits"].values()) == 33
    assert "cameras:" in runner.invoke(main, ["stats", ds]).output


def test_summaries_say_one_of_a_thing_in_the_singular(tmp_path):
    from rainbench.cli.dataset import _stats_lines, format_summary
    from rainbench.cli.pairs import _lines as real_pairs_lines
    from rainbench.ingest import IngestSummary
    from rainbench.pairs.build import RealPairsSummary

    one = dict.fromkeys(
        ("accepted", "duplicates", "near_duplicates", "scanned", "shards", "ignored", "untagged"),
        1,
    )
    text = format_summary(IngestSummary(**one, scanned_bytes=10**6, seconds=1.0), tmp_path)
    assert f"{tmp_path}: 1 accepted, 1 duplicate, 1 near-duplicate (kept, marked), " in text
    assert "probed 1 file (1.0 MB) in 1.0 s: 1.0 files/s, 1.0 MB/s; 1 shard written" in text
    assert "ignored 1 file without" in text and "1 capture not yet measured" in text
    split = {"s": 1}
    lines = real_pairs_lines(
        RealPairsSummary(stored=Counter(split), replaced=Counter(split), changed=Counter(split))
    )
    assert lines == [
        "s: 1 pair stored, 0 already there",
        "s: its 1 pair of an earlier version of rainbench pairs was made again",
        "s: 1 pair of sequences whose frames changed since was replaced",
    ]
    titles = ("splits", "layers", "rain_types", "rain_type_sources", "formats", "cameras")
    stats = dict.fromkeys((*titles, "rejects", "captured_from"), None)
    stats.update(name="ds", samples=1, shards=1, shard_bytes=10**6, near_duplicates=0)
    stats.update(paired_splits={"syn-streak": 1}, looks_rainy=0)
    assert _stats_lines(stats)[0] == "ds: 1 capture, 1 pair in 1 shard, 1.0 MB"


def test_verify_failure_exits_one_and_names_the_problem(runner, tmp_path, capture_folder):
    ds = tmp_path / "ds"
    runner.invoke(main, ["ingest", str(capture_folder), "--out", str(ds), "-j", "1"])
    shard = next((ds / "shards").rglob("*.tar"))
    shard.unlink()
    result = runner.invoke(main, ["verify", str(ds)])
    assert result.exit_code == 1
    assert f"shard-missing: {shard.relative_to(ds).as_posix()}" in result.output


def test_verify_shows_a_tar_members_name_escaped(runner, tmp_path, capture_folder):
    ds = tmp_path / "ds"
    runner.invoke(main, ["ingest", str(capture_folder), "--out", str(ds), "-j", "1"])
    shard = next((ds / "shards").rglob("*.tar"))
    with tarfile.open(shard, "a") as tar:  # a stray member whose name clears the screen
        info = tarfile.TarInfo("x\x1b[2J\nshard-missing: y.png")
        tar.addfile(info, io.BytesIO())
    result = runner.invoke(main, ["verify", str(ds)], color=True)
    assert result.exit_code == 1
    assert "\x1b" not in result.output and "\nshard-missing" not in result.output
    assert "x\\x1b[2J\\nshard-missing: y.png" in result.output


def test_user_errors_exit_one_with_one_line(runner, tmp_path):
    result = runner.invoke(main, ["verify", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and result.output.startswith("error:")
    # A missing input is a problem with the input too, not a usage error.
    missing = runner.invoke(main, ["ingest", str(tmp_path / "missing"), "--out", "x"])
    assert missing.exit_code == 1 and missing.output.count("\n") == 1


@pytest.mark.parametrize("size", ["lots", "1.2.3GB", ".", "0", "0.0001KB"])
def test_a_size_that_is_none_is_a_usage_error(runner, tmp_path, size):
    result = runner.invoke(main, ["ingest", str(tmp_path), "--out", "x", "--shard-size", size])
    assert result.exit_code == 2 and "is not a size like 1GB" in result.output


def test_usage_errors_exit_two(runner, tmp_path):
    assert (
        runner.invoke(main, ["ingest", str(tmp_path), "--out", "x", "--split", "train=2"]).exit_code
        == 2
    )


@pytest.mark.parametrize(
    "command",
    ["demo", "ingest", "verify", "stats", "tag", "tag-eval", "models", "eval", "leaderboard"],
)
def test_help_has_an_example(runner, command):
    result = runner.invoke(main, [command, "--help"])
    assert result.exit_code == 0 and "Example:" in result.output


def _eval_examples(text: str) -> list[str]:
    """Each command line in `text` (not prose) that runs `rainbench eval`, its continued
    lines (a trailing backslash) joined on."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return re.findall(r"^\s*rainbench eval .*", joined, re.MULTILINE)


def test_every_eval_example_gives_a_checkpoint_where_the_derainer_needs_one(runner):
    # Tried as written, one without it fails (on a Ray cluster, once the actors start).
    texts = [runner.invoke(main, ["eval", "--help"]).output, Path("README.md").read_text()]
    texts += [doc.read_text() for doc in sorted(Path("docs").glob("*.md"))]
    needing = {spec.name for spec in list_derainers() if spec.needs_checkpoint}
    assert {"nlcl", "cclgan"} <= needing
    examples = [line for text in texts for line in _eval_examples(text)]
    lacking = [
        line
        for line in examples
        if (model := re.search(r"--model (\S+)", line))
        and model.group(1) in needing
        and "--checkpoint" not in line
    ]
    assert lacking == []
    assert any("--model nlcl" in line and "--ray" in line for line in examples)


@pytest.mark.parametrize("method", ["nlcl", "cclgan"])
def test_train_help_says_what_a_run_may_resume_with(runner, method):
    """What the trainer's resume check lets change: its RESUMABLE settings, and the
    schedule while no trained step would have had another rate."""
    shown = " ".join(runner.invoke(main, ["train", method, "--help"]).output.split())
    listed = re.search(r"resumes? (?:as it does, )?only with other (.+?) \(how", shown)
    assert listed, shown
    # Joined back where click broke a line after a hyphen (--on- error).
    flags = re.split(r", | or ", listed.group(1).replace("- ", "-"))
    for name in RunConfig.RESUMABLE:
        flag = "-j" if name == "workers" else "--" + name.replace("_", "-")
        assert any(fnmatch(flag, pattern) for pattern in flags), flag
    assert (
        "and other --steps and --decay-steps while no step it trained would have had another "
        "learning rate; any other change is refused" in shown
    )


def test_tag_applies_a_sheet_and_stats_count_rain_types(runner, tmp_path, capture_folder):
    ds = str(tmp_path / "ds")
    runner.invoke(main, ["ingest", str(capture_folder), "--out", ds, "-j", "1", "--no-progress"])
    stats = json.loads(runner.invoke(main, ["stats", ds, "--json"]).output)
    assert sum(stats["rain_types"].values()) == 33 and "untagged" not in stats["rain_types"]
    name = sorted(p.name for p in capture_folder.iterdir() if p.is_file())[0]
    sheet = tmp_path / "labels.csv"
    sheet.write_text(f"source_path,rain_type,note\n{name},storm,by eye\n")
    result = runner.invoke(main, ["tag", ds, "--labels", str(sheet), "-j", "1"])
    assert result.exit_code == 0, result.output
    assert "tagged 33 captures" in result.output and "1 by manual label" in result.output
    shown = runner.invoke(main, ["stats", ds]).output
    assert "rain types:" in shown and "rain type sources: auto 32, manual 1" in shown


def test_bad_labels_are_listed_then_one_error(runner, tmp_path, capture_folder):
    ds = str(tmp_path / "ds")
    runner.invoke(main, ["ingest", str(capture_folder), "--out", ds, "-j", "1", "--no-progress"])
    sheet = tmp_path / "labels.csv"
    sheet.write_text("source_path,rain_type\nnope.jpg,storm\nalso-nope.jpg,hail\n")
    result = runner.invoke(main, ["tag", ds, "--labels", str(sheet)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[0].startswith(f"{sheet}:2: ") and lines[1].startswith(f"{sheet}:3: ")
    assert lines[2].startswith("error: 2 label problem(s); nothing from the sheet was applied")


def test_an_ingest_whose_sheet_names_a_missing_capture_keeps_its_captures_and_says_so(
    runner, tmp_path, capture_folder
):
    ds = tmp_path / "ds"
    name = sorted(p.name for p in capture_folder.iterdir() if p.is_file())[0]
    sheet = tmp_path / "labels.csv"
    sheet.write_text(f"source_path,rain_type\n{name},storm\nnope.jpg,storm\n")
    args = ["ingest", str(capture_folder), "--out", str(ds), "-j", "1", "--labels", str(sheet)]
    result = runner.invoke(main, args)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert "33 accepted" in lines[0], "the captures are in, and the summary says so"
    assert lines[-2].startswith(f"{sheet}:3: ") and "nope.jpg" in lines[-2]
    assert lines[-1].startswith("error: 1 label problem(s); nothing from the sheet was applied")
    run = json.loads((ds / "dataset.json").read_text())["runs"][-1]
    assert run["accepted"] == 33 and run["labels"]["applied"] is False
    sources = pd.read_parquet(ds / "manifests" / "samples.parquet")["rain_type_source"]
    assert set(sources) == {"auto"}


def test_tag_fit_prints_held_out_agreement_and_ingest_uses_the_fit(
    runner, tmp_path, capture_folder, monkeypatch
):
    from rainbench.ingest.taggers import FitReport

    # Used, as a fit that beat the shipped tagger is (labels dealt out carry no signal).
    monkeypatch.setattr(FitReport, "beats_shipped", property(lambda report: True))
    ds = tmp_path / "ds"
    runner.invoke(main, ["ingest", str(capture_folder), "--out", str(ds), "-j", "1"])
    keys = sorted(pd.read_parquet(ds / "manifests" / "samples.parquet")["key"])
    sheet = tmp_path / "labels.csv"
    few = "".join(f"{key},storm\n" for key in keys[:6])
    sheet.write_text("key,rain_type\n" + few)
    refused = runner.invoke(main, ["tag", str(ds), "--labels", str(sheet), "--fit"])
    assert refused.exit_code == 1 and refused.output.count("\n") == 1
    assert "at least 5 manual labels" in refused.output and "about 20 per type" in refused.output

    rows = "".join(f"{key},{('storm', 'streak')[i % 2]}\n" for i, key in enumerate(keys))
    sheet.write_text("key,rain_type\n" + rows)
    result = runner.invoke(main, ["tag", str(ds), "--labels", str(sheet), "--fit"])
    assert result.exit_code == 0, result.output
    assert f"fitted: tagger {load_tagger().version}-fit-1-" in result.output
    assert "(taggers/tagger-fit-1.json)" in result.output
    assert "held out in 5 folds (each judged by a fit that never saw it" in result.output
    assert "): macro-F1 " in result.output and "shipped" in result.output
    shown = json.loads(runner.invoke(main, ["tag", str(ds), "--fit", "--json"]).output)
    assert shown["fit"]["reused"] and shown["tagger"] == shown["fit"]["version"]

    more = tmp_path / "more"
    for spec in sample_specs(2, seed=21, size=(480, 360)):
        write_capture(more, spec)
    added = runner.invoke(main, ["ingest", str(more), "--out", str(ds), "-j", "1"])
    assert added.exit_code == 0, added.output
    samples = pd.read_parquet(ds / "manifests" / "samples.parquet").set_index("key")
    new = samples.drop(keys)
    assert len(new) == 2 and (new["tagger_version"] == shown["fit"]["version"]).all()


@pytest.mark.parametrize(
    ("fitted", "shipped", "shown", "verdict"),
    [
        (0.8412, 0.6, "macro-F1 0.84 fitted, 0.60 shipped", "beat"),
        (0.1837, 0.1778, "macro-F1 0.184 fitted, 0.178 shipped", "beat"),
        (0.18371, 0.18369, "macro-F1 0.1837 fitted, 0.1837 shipped", "matched"),
    ],
)
def test_a_fit_is_said_to_beat_the_shipped_tagger_only_where_the_figures_show_it(
    fitted, shipped, shown, verdict
):
    from rainbench.cli.dataset import format_fit

    fit = {
        "reused": False, "version": "5-fit-1-abcd", "path": "taggers/tagger-fit-1.json",
        "base_version": "5", "labels": {"storm": 12, "streak": 12}, "penalty": 10.0,
        "folds": 5, "scenes": None, "clean_labels_unused": 0, "beats_shipped": True,
        "cv_fitted": {"macro_f1": fitted, "accuracy": 0.5},
        "cv_shipped": {"macro_f1": shipped, "accuracy": 0.5},
    }  # fmt: skip
    lines = format_fit(fit, "ds")
    assert shown in lines[1]
    assert lines[2].startswith(f"the fit {verdict} the shipped tagger's macro-F1")


def test_a_fit_that_ties_the_shipped_tagger_is_shown_to_two_places():
    from rainbench.cli.dataset import format_fit

    fit = {
        "reused": False, "version": "5-fit-1-abcd", "path": "taggers/tagger-fit-1.json",
        "base_version": "5", "labels": {"storm": 12, "streak": 12}, "penalty": None,
        "folds": 5, "scenes": None, "clean_labels_unused": 0, "beats_shipped": False,
        "cv_fitted": {"macro_f1": 1.0, "accuracy": 1.0},
        "cv_shipped": {"macro_f1": 1.0, "accuracy": 1.0},
    }  # fmt: skip
    line = format_fit(fit, "ds")[1]
    assert "macro-F1 1.00 fitted, 1.00 shipped; accuracy 1.00 fitted, 1.00 shipped" in line


def test_models_lists_the_built_in_derainers(runner):
    result = runner.invoke(main, ["models"])
    assert result.exit_code == 0
    names = [line.split()[0] for line in result.output.splitlines()]
    assert {"identity", "guided", "dcp"} <= set(names)
    listed = json.loads(runner.invoke(main, ["models", "--json"]).output)
    assert all(entry["description"] for entry in listed)


def test_eval_needs_exactly_one_source(runner, tmp_path):
    base = ["eval", "--dataset", str(tmp_path), "--results", str(tmp_path / "r")]
    assert runner.invoke(main, base).exit_code == 2
    both = [*base, "--model", "identity", "--outputs", str(tmp_path)]
    assert runner.invoke(main, both).exit_code == 2
    unnamed = [*base, "--outputs", str(tmp_path)]
    assert runner.invoke(main, unnamed).exit_code == 2
    bad = [*base, "--model", "identity", "--option", "radius"]
    assert runner.invoke(main, bad).exit_code == 2
    unknown = [*base, "--model", "nope"]
    result = runner.invoke(main, unknown)
    assert result.exit_code == 1 and result.output.startswith("error:")


def _demo_result(out) -> DemoResult:
    return DemoResult.under(
        out,
        methods=["identity", "nlcl"],
        splits=["test", "syn-streak"],
        unavailable_metrics={"niqe": "niqe needs a file; provide it: rainbench weights x"},
        stages=[Stage("captures", 1.5, "24 captures"), Stage("train", 150.0, "NLCL to step 9")],
        seconds=151.5,
    )


def test_demo_prints_each_stage_what_was_left_out_and_where_to_look(runner, tmp_path, monkeypatch):
    out = tmp_path / "demo"
    calls = []

    def fake_demo(where, options, progress):
        calls.append((where, options))
        return _demo_result(where)

    monkeypatch.setattr("rainbench.cli.demo.run_demo", fake_demo)
    result = runner.invoke(main, ["demo", "--out", str(out), "--width", "200", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert calls[0][0] == out and calls[0][1].width == 200
    lines = result.output.splitlines()
    assert lines[0] == "rainbench demo: done in 2 min 32 s on cpu"
    assert lines[1].split() == ["captures", "1.5", "s", "24", "captures"]
    assert "not computed: niqe needs a file; provide it: rainbench weights x" in lines
    assert any(line.split()[0] == str(out / "leaderboard.html") for line in lines if line)
    shown = json.loads(runner.invoke(main, ["demo", "--out", str(out), "--json"]).output)
    assert shown["leaderboard"]["html"] == str(out / "leaderboard.html")
    assert shown["stages"][1] == {"name": "train", "seconds": 150.0, "detail": "NLCL to step 9"}
    for width in ("95", "6001"):
        refused = runner.invoke(main, ["demo", "--out", str(out), "--width", width])
        assert refused.exit_code == 2 and "96<=x<=6000" in refused.output
    assert len(calls) == 2


@pytest.mark.parametrize(
    ("option", "shown"),
    [
        ("radius=abc", '"abc"'),
        ("radius=1e999", "Infinity"),
        ("radius=[1,2]", "[1, 2]"),
        ("radius=true", "true"),
        ("radius=2.7", "2.7"),
        ("eps=NaN", "NaN"),
        ("eps=-Infinity", "-Infinity"),
    ],
)
def test_a_bad_derainer_option_is_one_line_before_any_work(runner, tmp_path, option, shown):
    results = tmp_path / "res"
    args = ["eval", "--model", "guided", "--option", option, "--dataset", str(tmp_path)]
    result = runner.invoke(main, [*args, "--results", str(results)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.output.count("\n") == 1
    assert result.output.startswith(f"error: guided: {option.split('=')[0]} must be ")
    assert result.output.endswith(f", not {shown}\n")
    assert not results.exists()


def test_derainer_options_are_for_a_registered_derainer_and_given_once(runner, tmp_path):
    base = ["eval", "--dataset", str(tmp_path), "--results", str(tmp_path / "r")]
    folder = [*base, "--outputs", str(tmp_path), "--name", "x", "--option", "radius=2"]
    assert runner.invoke(main, folder).exit_code == 2
    twice = [*base, "--model", "guided", "--option", "radius=2", "--option", "radius=3"]
    result = runner.invoke(main, twice)
    assert result.exit_code == 2 and "radius is given twice" in result.output


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "out/part-000001.tar")


def _not_allowed(*args, **kwargs):
    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/srv/theirs/labels.csv")


def _raises(error_type, text="what went wrong\nand a second line"):
    def fail(*args, **kwargs):
        raise _error(error_type)(text)

    return fail


def _error(name):
    """An expected error class by name; some live in modules that import torch."""
    from importlib import import_module

    modules = {
        "DatasetError": "rainbench.shards.dataset",
        "MetricError": "rainbench.metrics.registry",
        "DerainerError": "rainbench.models.registry",
        "CalibrationError": "rainbench.train.tagger",
        "CheckpointError": "rainbench.models.nlcl.published",
        "LeaderboardError": "rainbench.leaderboard.publish",
    }
    return getattr(import_module(modules[name]), name)


# (command line, the function it calls, how that fails): a family per command.
FAILURES = [
    (["demo", "--out", "{tmp}/demo"], "rainbench.cli.demo.run_demo", _disk_full),
    (["ingest", "{tmp}", "--out", "{tmp}/ds"], "rainbench.cli.dataset.ingest", _disk_full),
    (["ingest", "{tmp}", "--out", "{tmp}/ds"], "rainbench.cli.dataset.ingest", _not_allowed),
    (["verify", "{tmp}"], "rainbench.cli.dataset.verify", _raises("DatasetError")),
    (["stats", "{tmp}"], "rainbench.cli.dataset.dataset_stats", _not_allowed),
    (["tag", "{tmp}"], "rainbench.cli.dataset.tag_dataset", _raises("DatasetError")),
    (
        ["tag-eval"],
        "rainbench.train.tagger.evaluate_held_out",
        _raises("CalibrationError"),
    ),
    (
        ["tag-eval", "{tmp}"],
        "rainbench.ingest.agreement.label_agreement",
        _raises("DatasetError"),
    ),
    (["synth", "{tmp}"], "rainbench.cli.synth.synthesize", _disk_full),
    (
        ["synth", "--preview", "{file}", "--out", "{tmp}/sheet.png"],
        "rainbench.cli.synth.preview_sheet",
        _disk_full,
    ),
    (
        ["import-paired", "{tmp}", "--layout", "rain100", "--name", "x", "--into", "{tmp}/ds"],
        "rainbench.synth.imports.import_paired",
        _raises("DatasetError"),
    ),
    (["models"], "rainbench.cli.models.list_derainers", _not_allowed),
    (["metrics"], "rainbench.cli.metrics.list_metrics", _raises("MetricError")),
    (
        ["eval", "--model", "identity", "--dataset", "{tmp}", "--results", "{tmp}/r"],
        "rainbench.cli.leaderboard.evaluate",
        _disk_full,
    ),
    (
        ["eval", "--model", "identity", "--dataset", "{tmp}", "--results", "{tmp}/r"],
        "rainbench.leaderboard.sources.create_derainer",
        _raises("DerainerError"),
    ),
    (
        ["leaderboard", "--results", "{tmp}", "--out", "{tmp}/lb.md"],
        "rainbench.cli.leaderboard.write_leaderboard",
        _disk_full,
    ),
    (
        ["leaderboard", "--results", "{tmp}"],
        "rainbench.cli.leaderboard.render_leaderboard",
        _raises("LeaderboardError"),
    ),
    (
        ["train", "nlcl", "--dataset", "{tmp}", "--out", "{tmp}/run"],
        "rainbench.train.nlcl.trainer.train",
        _disk_full,
    ),
    (
        ["nlcl", "import-checkpoint", "{file}", "--out", "{tmp}/n.pt"],
        "rainbench.models.nlcl.published.import_published",
        _raises("CheckpointError"),
    ),
    (
        ["nlcl", "import-checkpoint", "{file}", "--out", "{tmp}/n.pt"],
        "rainbench.models.nlcl.published.import_published",
        _disk_full,
    ),
    (
        ["analyze", "intrinsic-dim", "--dataset", "{tmp}", "--split", "syn"],
        "rainbench.cli.analyze.from_synthetic_split",
        _raises("DatasetError"),
    ),
    (["weights", "status"], "rainbench.cli.metrics.status", _not_allowed),
    (["weights", "import", "{file}"], "rainbench.cli.metrics.import_file", _disk_full),
    (
        ["weights", "extract-niqe", "{file}"],
        "rainbench.cli.metrics.extract_niqe",
        _raises("MetricError"),
    ),
    (
        ["score", "--pred", "{tmp}", "--out", "{tmp}/s.parquet"],
        "rainbench.cli.metrics.pair_folders",
        _not_allowed,
    ),
]


@pytest.mark.parametrize(
    ("args", "target", "failure"),
    FAILURES,
    ids=[f"{' '.join(a[:2])}-{f.__name__}" for a, _, f in FAILURES],
)
def test_every_command_turns_expected_failures_into_one_line(
    runner, tmp_path, monkeypatch, args, target, failure
):
    given = tmp_path / "given.bin"
    given.write_bytes(b"x")
    monkeypatch.setattr(target, failure)
    argv = [arg.format(tmp=tmp_path, file=given) for arg in args]
    result = runner.invoke(main, argv)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.output.count("\n") == 1 and result.output.startswith("error: ")
    shown = result.output.removeprefix("error: ").strip()
    assert shown in {
        "out/part-000001.tar: No space left on device",
        "/srv/theirs/labels.csv: Permission denied",
        "what went wrong and a second line",
    }


def test_a_real_os_error_names_the_file(runner, tmp_path):
    from PIL import Image

    photo, blocker = tmp_path / "photo.png", tmp_path / "a-file"
    Image.new("RGB", (64, 48), (120, 130, 140)).save(photo)
    blocker.write_text("")
    args = ["synth", "--preview", str(photo), "--out", str(blocker / "sheet.png")]
    result = runner.invoke(main, args)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.output.count("\n") == 1 and result.output.startswith(f"error: {blocker}")


def test_a_preview_sheet_never_replaces_its_own_photo(runner, tmp_path):
    from PIL import Image

    photo = tmp_path / "photo.png"
    Image.new("RGB", (64, 48), (120, 130, 140)).save(photo)
    kept = photo.read_bytes()
    (tmp_path / "link.png").symlink_to(photo)
    for out in (photo, tmp_path / "link.png"):
        result = runner.invoke(main, ["synth", "--preview", str(photo), "--out", str(out)])
        assert result.exit_code == 2 and "is the --preview image itself" in result.output
    assert photo.read_bytes() == kept


def test_a_preview_sheet_replaces_only_an_earlier_sheet(runner, tmp_path):
    from PIL import Image

    photo = tmp_path / "photo.png"
    Image.new("RGB", (64, 48), (120, 130, 140)).save(photo)
    for suffix in ("png", "jpg", "webp"):
        sheet, theirs = tmp_path / f"sheet.{suffix}", tmp_path / f"theirs.{suffix}"
        Image.new("RGB", (8, 8), (1, 2, 3)).save(theirs)
        kept = theirs.read_bytes()
        refused = runner.invoke(main, ["synth", "--preview", str(photo), "-o", str(theirs)])
        assert refused.exit_code == 1 and theirs.read_bytes() == kept
        assert refused.output == (
            f"error: {theirs} exists and is not a contact sheet of synth --preview: not "
            "replaced (give another --out, or remove it)\n"
        )
        for seed in ("0", "1"):  # written, then replaced by the next preview
            args = ["synth", "--preview", str(photo), "-o", str(sheet), "--seed", seed]
            assert runner.invoke(main, args).exit_code == 0
        assert sheet.read_bytes() != kept


def test_the_store_clients_own_errors_are_one_line(runner, tmp_path, monkeypatch):
    # As botocore raises them (not OSError), from the driver or a Ray worker alike.
    missing = type("NoCredentialsError", (Exception,), {"__module__": "botocore.exceptions"})

    def no_credentials(*args, **kwargs):
        raise missing("Unable to locate credentials")

    monkeypatch.setattr("rainbench.cli.dataset.verify", no_credentials)
    result = runner.invoke(main, ["verify", str(tmp_path)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.output.count("\n") == 1
    assert result.output.startswith("error: object store: Unable to locate credentials (set ")
    assert "docs/cluster.md" in result.output


def test_control_characters_from_a_dataset_cannot_forge_or_restyle_output(
    runner, tmp_path, monkeypatch
):
    titles = ("splits", "layers", "rain_types", "rain_type_sources", "formats", "rejects")
    stats = {
        "name": "ds",
        "samples": 1,
        "shards": 1,
        "shard_bytes": 0,
        **{title: {} for title in (*titles, "paired_splits")},
        "cameras": {"Evil\x1b[31mRED\nrejects: none": 1},  # an EXIF Make, as read
        "near_duplicates": 0,
        "looks_rainy": 0,
        "captured_from": None,
        "captured_to": None,
    }
    monkeypatch.setattr("rainbench.cli.dataset.open_dataset", lambda path: path)
    monkeypatch.setattr("rainbench.cli.dataset.dataset_stats", lambda dataset: stats)
    result = runner.invoke(main, ["stats", str(tmp_path)])
    assert result.exit_code == 0
    assert "  cameras: Evil\\x1b[31mRED\\nrejects: none 1\n" in result.output
    assert "\x1b" not in result.output and "\nrejects" not in result.output


def test_an_unexpected_error_is_not_hidden(runner, monkeypatch):
    def bug():
        raise KeyError("a bug")

    monkeypatch.setattr("rainbench.cli.models.list_derainers", bug)
    result = runner.invoke(main, ["models"])
    assert isinstance(result.exception, KeyError)


@pytest.mark.parametrize(
    ("args", "module", "extra"),
    [
        (["train", "nlcl", "{tmp}"], "rainbench.train.nlcl.trainer", "train"),
        (["train", "cclgan", "{tmp}"], "rainbench.train.cclgan.trainer", "train"),
        (["nlcl", "import-checkpoint", "{file}"], "rainbench.models.nlcl.checkpoint", "eval"),
        (["cclgan", "import-checkpoint", "{file}"], "rainbench.models.cclgan", "eval"),
    ],
    ids=lambda value: " ".join(value[:2]) if isinstance(value, list) else None,
)
def test_without_torch_train_and_imports_say_what_to_install(
    runner, tmp_path, monkeypatch, args, module, extra
):
    # torch is imported when the command runs: simulated missing, and the command's
    # module imported afresh, which then fails on `import torch`.
    given = tmp_path / "net.pth"
    given.write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.delitem(sys.modules, module, raising=False)
    argv = [arg.format(tmp=tmp_path, file=given) for arg in args]
    result = runner.invoke(main, [*argv, "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert result.output.count("\n") == 1, result.output
    assert result.output.startswith(f"error: rainbench {' '.join(args[:2])} needs torch (")
    assert result.output.rstrip().endswith(f"pip install 'rainbench[{extra}]'")
    assert not (tmp_path / "out").exists()


def test_a_closed_pipe_is_left_to_click(runner, monkeypatch):
    def closed(*args, **kwargs):
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))

    monkeypatch.setattr("rainbench.cli.models.list_derainers", closed)
    result = runner.invoke(main, ["models"])
    assert result.exit_code == 1 and "error:" not in result.output


def test_tag_eval_refuses_options_its_measurement_does_not_read(runner, tmp_path):
    ds = str(tmp_path)
    result = runner.invoke(main, ["tag-eval", ds, "--per-cell", "3", "--seed", "2"])
    assert result.exit_code == 2 and "--per-cell and --seed are for tag-eval without a" in (
        result.output
    )
    result = runner.invoke(main, ["tag-eval", "--tagger", "shipped"])
    assert result.exit_code == 2 and "--tagger is for tag-eval with a DATASET" in result.output


@pytest.mark.parametrize(
    "command",
    [["verify"], ["stats"], ["tag"], ["label"], ["pairs"], ["synth"], ["tag-eval"],
     ["eval", "--model", "identity", "--split", "all", "--results", "{tmp}/res", "--dataset"]],
    ids=lambda command: command[0],
)  # fmt: skip
def test_every_command_says_alike_why_a_path_is_no_dataset(runner, tmp_path, command):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("hi")
    args = [arg.format(tmp=tmp_path) for arg in command]
    for target, why in (
        ("nowhere", "does not exist"),
        ("file.txt", "is a file, not a dataset folder"),
        ("empty", "is not a rainbench dataset (no "),
    ):
        result = runner.invoke(main, [*args, str(tmp_path / target)])
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith(f"error: {tmp_path / target} {why}"), result.stderr
    assert not (tmp_path / "nowhere").exists()


def test_synth_recipes_are_each_run_once_and_none_is_a_usage_error(runner, tmp_path, monkeypatch):
    asked = []

    def synthesize(dataset, options, progress):
        asked.append(options)
        return PairsSummary()

    monkeypatch.setattr("rainbench.cli.synth.synthesize", synthesize)
    monkeypatch.setattr("rainbench.cli.synth.emit", lambda *args: None)
    result = runner.invoke(main, ["synth", str(tmp_path), "--recipes", " streak, drizzle,streak"])
    assert result.exit_code == 0, result.output
    assert asked[0].recipes == ("streak", "drizzle")
    for empty in ("", " , "):
        result = runner.invoke(main, ["synth", str(tmp_path), "--recipes", empty])
        assert result.exit_code == 2 and "name at least one recipe" in result.output


def _declared_png(path, width, height):
    """A PNG whose header declares width×height and that holds no pixels."""
    import struct
    import zlib

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


def test_synth_preview_failures_are_one_line(runner, tmp_path, monkeypatch):
    from PIL import Image

    bomb, photo = tmp_path / "bomb.png", tmp_path / "photo.png"
    _declared_png(bomb, 60000, 60000)
    Image.new("RGB", (64, 48), (120, 130, 140)).save(photo)
    sheet = str(tmp_path / "sheet.png")

    refused = runner.invoke(main, ["synth", "--preview", str(bomb), "--out", sheet])
    assert refused.exit_code == 1 and isinstance(refused.exception, SystemExit)
    assert refused.output.count("\n") == 1
    assert refused.output.startswith(f"error: {bomb}: 60000×60000 = 3600 MP exceeds the cap")

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    unread = runner.invoke(main, ["synth", "--preview", str(broken), "--out", sheet])
    assert unread.exit_code == 1 and "object at 0x" not in unread.output
    assert unread.output.startswith(f"error: {broken}: not a readable image (")

    for out, message in [(tmp_path, "is a directory"), (tmp_path / "sheet.xyz", "sheet.xyz")]:
        result = runner.invoke(main, ["synth", "--preview", str(photo), "--out", str(out)])
        assert result.exit_code == 2 and message in result.output
    whole = runner.invoke(main, ["synth", "--preview", str(photo), "-o", sheet])
    rendered = Path(sheet).read_bytes()
    shrunk = runner.invoke(
        main, ["synth", "--preview", str(photo), "-o", sheet, "--max-side", "32"]
    )
    assert whole.exit_code == shrunk.exit_code == 0, shrunk.output
    assert Path(sheet).read_bytes() != rendered  # rendered on the picture at 32×24

    def out_of_memory(*args):
        raise MemoryError

    monkeypatch.setattr("rainbench.cli.synth.preview_sheet", out_of_memory)
    result = runner.invoke(main, ["synth", "--preview", str(photo), "--out", sheet])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert (
        result.output
        == f"error: {photo}: too large to render every recipe on in the memory there is\n"
    )


def test_synth_preview_takes_the_pixel_cap_its_refusal_names(runner, tmp_path):
    from PIL import Image

    photo, sheet = tmp_path / "photo.png", str(tmp_path / "sheet.png")
    Image.new("RGB", (64, 48), (120, 130, 140)).save(photo)
    preview = ["synth", "--preview", str(photo), "--out", sheet]
    refused = runner.invoke(main, [*preview, "--max-pixels", "3000"])
    assert refused.exit_code == 1 and refused.output.endswith("(--max-pixels)\n")
    assert runner.invoke(main, [*preview, "--max-pixels", "3072"]).exit_code == 0
    without = runner.invoke(main, ["synth", str(tmp_path / "ds"), "--max-pixels", "3072"])
    assert without.exit_code == 2 and "--max-pixels goes with --preview" in without.output


def test_a_closed_stdout_ends_any_command_quietly_with_141():
    import subprocess
    import sys

    from rainbench.cli import CLOSED_STDOUT

    for args in (["metrics"], ["--help"]):  # a command's output, and the top help
        # A pipe whose reader has already gone, as after `| head -1`: the first line fails.
        read, write = os.pipe()
        os.close(read)
        try:
            done = subprocess.run(
                [sys.executable, "-m", "rainbench", *args],
                stdout=write,
                stderr=subprocess.PIPE,
                timeout=120,
            )
        finally:
            os.close(write)
        assert (done.returncode, done.stderr) == (CLOSED_STDOUT, b""), args


def test_the_reference_names_exactly_the_commands_that_take_the_old_dataset_flags():
    import re

    import click

    from rainbench.cli_reference import _walk, render_reference

    page = render_reference()
    named = set(re.findall(r"`(rainbench [a-z -]+?) (--dataset|--into)`", " ".join(page.split())))
    root = click.Context(main, info_name="rainbench")
    taking = {
        (ctx.command_path, flag)
        for ctx in _walk(root)
        for param in ctx.command.params
        for flag in param.opts
        if flag in ("--dataset", "--into")
    }
    assert named == taking and ("rainbench eval", "--dataset") in named
    assert "still work" not in page
    # Every example in every help uses a flag its command takes.
    contexts = list(_walk(root))
    for ctx in contexts:
        for line in ctx.get_help().splitlines():
            example = line.strip()
            for flag in ("--dataset", "--into"):
                if example.startswith("rainbench ") and f" {flag} " in example:
                    command = max(
                        (c.command_path for c in contexts if example.startswith(c.command_path)),
                        key=len,
                    )
                    assert (command, flag) in taking, example


def test_json_out_makes_its_folder(tmp_path):
    from rainbench.cli.output import write_json

    out = tmp_path / "new" / "folder" / "result.json"
    write_json({"a": 1}, out)  # tag-eval's and analyze's --out
    assert json.loads(out.read_text()) == {"a": 1}


def test_a_label_sheet_cannot_forge_or_restyle_the_lines_tag_prints(runner, tmp_path, monkeypatch):
    from rainbench.ingest.tag import LabelsRejected, TagSummary
    from rainbench.tagging.labels import LabelProblem

    # A cell of the sheet, as a problem quotes it: a quoted cell may hold a line break.
    cell = "hail\x1b]0;pwned\x07\nerror: forged"
    problem = LabelProblem("labels.csv", 2, f"unknown rain type '{cell}'")
    shown = "labels.csv:2: unknown rain type 'hail\\x1b]0;pwned\\x07\\nerror: forged'"

    def rejected(*args):
        raise LabelsRejected([problem])

    monkeypatch.setattr("rainbench.cli.dataset.tag_dataset", rejected)
    result = runner.invoke(main, ["tag", str(tmp_path), "--labels", __file__], color=True)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == shown
    assert result.stderr.count("\n") == 2 and "\x1b" not in result.stderr

    # A rain type as the manifest holds it, with --skip-bad-labels.
    summary = TagSummary(samples=1, rain_types={cell: 1}, label_problems=[str(problem)])
    monkeypatch.setattr("rainbench.cli.dataset.tag_dataset", lambda *args: summary)
    result = runner.invoke(main, ["tag", str(tmp_path), "--skip-bad-labels"], color=True)
    assert result.exit_code == 0, result.output
    assert f"skipped: {shown}\n" in result.output
    assert "tagged 1 capture (hail\\x1b]0;pwned\\x07\\nerror: forged 1)" in result.output
    assert result.output.count("\n") == 2 and "\x1b" not in result.output


@pytest.mark.parametrize("method", ["nlcl", "cclgan"])
def test_import_checkpoint_refuses_a_fifo_in_one_line(tmp_path, method):
    fifo = tmp_path / "net.pth"
    os.mkfifo(fifo)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "rainbench",
            method,
            "import-checkpoint",
            str(fifo),
            "--out",
            str(tmp_path / "out.pt"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    assert run.stderr.strip().endswith("not a regular file; refused")
    assert run.stderr.count("\n") == 1 and not (tmp_path / "out.pt").exists()


def test_pairs_refuses_a_max_moving_of_zero_as_its_help_says(runner, tmp_path):
    result = runner.invoke(main, ["pairs", str(tmp_path), "--max-moving", "0"])
    assert result.exit_code == 2 and "0<x<=1" in result.output
