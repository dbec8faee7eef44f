"""The command line: exit codes, one-line errors, --json output, help with examples."""

import json

import pytest
from click.testing import CliRunner

from rainbench.cli import main
from rainbench.demo.run import DemoResult, Stage


@pytest.fixture
def runner():
    return CliRunner()


def test_ingest_verify_stats(runner, tmp_path, capture_folder):
    ds = str(tmp_path / "ds")
    result = runner.invoke(
        main, ["ingest", str(capture_folder), "--out", ds, "-j", "1", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert "33 accepted" in result.output and "images/s" in result.output
    again = runner.invoke(
        main, ["ingest", str(capture_folder), "--out", ds, "--json", "--no-progress"]
    )
    assert json.loads(again.output)["accepted"] == 0
    assert runner.invoke(main, ["verify", ds]).output.strip().endswith("ok")
    stats = json.loads(runner.invoke(main, ["stats", ds, "--json"]).output)
    assert stats["samples"] == 33 and sum(stats["splits"].values()) == 33
    assert "cameras:" in runner.invoke(main, ["stats", ds]).output


def test_verify_failure_exits_one_and_names_the_problem(runner, tmp_path, capture_folder):
    ds = tmp_path / "ds"
    runner.invoke(main, ["ingest", str(capture_folder), "--out", str(ds), "-j", "1"])
    shard = next((ds / "shards").rglob("*.tar"))
    shard.unlink()
    result = runner.invoke(main, ["verify", str(ds)])
    assert result.exit_code == 1
    assert f"shard-missing: {shard.relative_to(ds).as_posix()}" in result.output


def test_user_errors_exit_one_with_one_line(runner, tmp_path):
    result = runner.invoke(main, ["verify", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and result.output.startswith("error:")


def test_usage_errors_exit_two(runner, tmp_path):
    assert runner.invoke(main, ["ingest", str(tmp_path / "missing"), "--out", "x"]).exit_code == 2
    assert (
        runner.invoke(
            main, ["ingest", str(tmp_path), "--out", "x", "--shard-size", "lots"]
        ).exit_code
        == 2
    )
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

    monkeypatch.setattr("rainbench.cli.run_demo", fake_demo)
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
