"""The command line: exit codes, one-line errors, --json output, help with examples."""

import json

import pytest
from click.testing import CliRunner

from rainbench.cli import main


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


@pytest.mark.parametrize("command", ["ingest", "verify", "stats"])
def test_help_has_an_example(runner, command):
    result = runner.invoke(main, [command, "--help"])
    assert result.exit_code == 0 and "Example:" in result.output
