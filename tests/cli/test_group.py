"""The top group: importing the CLI, or listing its commands, loads none of the heavy
libraries; each command is found where the table says, with the summary it lists."""

import json
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from rainbench.cli import COMMANDS, main
from rainbench.errors import RainbenchError

HEAVY = ("scipy", "torch", "pyiqa", "pandas")

# Run in a fresh interpreter: this one has loaded everything by now.
PROBE = """
import json, sys
import rainbench.cli
loaded = {"import": [m for m in HEAVY if m in sys.modules]}
try:
    rainbench.cli.main(["--help"])
except SystemExit:
    pass
loaded["help"] = [m for m in HEAVY if m in sys.modules]
print(json.dumps(loaded))
"""


def test_importing_the_cli_and_its_help_load_no_heavy_library():
    code = f"HEAVY = {HEAVY!r}\n{PROBE}"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    loaded = json.loads(result.stdout.splitlines()[-1])
    assert loaded == {"import": [], "help": []}
    assert "Commands:" in result.stdout


def test_python_dash_m_rainbench_runs_the_cli():
    result = subprocess.run(
        [sys.executable, "-m", "rainbench", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout == "rainbench, version 0.1.0\n"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_is_where_the_table_says_with_the_summary_it_lists(name):
    command = main.get_command(click.Context(main), name)
    assert isinstance(command, click.Command) and command.name == name
    listed = click.Command(name, help=COMMANDS[name][1])
    for limit in (30, 45, 80, 200):
        assert listed.get_short_help_str(limit) == command.get_short_help_str(limit)


def test_an_unknown_command_is_a_usage_error():
    result = CliRunner().invoke(main, ["nope"])
    assert result.exit_code == 2 and "No such command 'nope'" in result.output


def test_ctrl_c_is_one_line_and_exit_130(tmp_path, monkeypatch):
    def interrupted(dataset):
        raise KeyboardInterrupt

    monkeypatch.setattr("rainbench.cli.dataset.dataset_stats", interrupted)
    result = CliRunner().invoke(main, ["stats", str(tmp_path)])
    assert result.exit_code == 130
    assert result.stderr == (
        "error: interrupted; run the same command again to finish (ingest, synth, pairs and "
        "eval go on from where they stopped)\n"
    )


def test_an_error_quoting_a_control_character_cannot_restyle_the_terminal(tmp_path, monkeypatch):
    def refused(dataset):
        raise RainbenchError("ds/\x1b]0;pwned\x07\x1b[2J: a name from data")

    monkeypatch.setattr("rainbench.cli.dataset.dataset_stats", refused)
    result = CliRunner().invoke(main, ["stats", str(tmp_path)], color=True)  # as on a terminal
    assert result.exit_code == 1
    assert result.stderr == "error: ds/\\x1b]0;pwned\\x07\\x1b[2J: a name from data\n"
