"""What a command prints: with --json, stdout is the result and nothing else, while
progress and problems go to stderr."""

import json
from collections import Counter

import pytest
from click.testing import CliRunner

from rainbench.cli import main
from rainbench.cli.output import on_one_line, to_json
from rainbench.demo.captures import sample_specs, write_capture
from rainbench.ingest import IngestOptions, ingest
from rainbench.synth.splits import PairsSummary


def test_a_result_is_its_to_dict_a_list_each_one_and_plain_data_itself():
    pairs = PairsSummary(stored=Counter(a=2), failed=[("job", "why")], shards=1)
    expected = {
        "stored": {"a": 2},
        "existing": {},
        "replaced": {},
        "failed": [["job", "why"]],
        "shards": 1,
    }
    assert json.loads(to_json(pairs)) == expected
    assert json.loads(to_json([pairs, {"plain": 1}])) == [expected, {"plain": 1}]


def test_ingest_json_with_progress_keeps_stdout_pure(tmp_path, capture_folder):
    argv = ["ingest", str(capture_folder), "--out", str(tmp_path / "ds"), "-j", "1"]
    result = CliRunner().invoke(main, [*argv, "--json", "--progress"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["accepted"] == 33
    assert "it/s" in result.stderr or "/s]" in result.stderr  # the bars went to stderr


def test_train_json_with_progress_keeps_the_step_lines_on_stderr(tmp_path):
    pytest.importorskip("torch")
    for layer, count, seed in (("rainy", 2, 6), ("clean", 2, 12)):
        for spec in sample_specs(count, seed=seed, size=(96, 64)):
            write_capture(tmp_path / layer, spec)
        options = IngestOptions(layer=layer, workers=1, split={"train": 1.0})
        ingest([tmp_path / layer], tmp_path / "ds", options)
    argv = ["train", "nlcl", str(tmp_path / "ds"), "--out", str(tmp_path / "run")]
    argv += ["--steps", "1", "--crop", "48", "--channels", "8", "--blocks", "2", "-j", "0"]
    result = CliRunner().invoke(main, [*argv, "--json", "--progress"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["step"] == 1
    assert result.stderr.startswith("step 1/1: ")


def test_a_name_from_data_is_printed_on_one_line_with_its_controls_escaped():
    assert on_one_line("rain\nfall\x1b[31m.png") == "rain\\nfall\\x1b[31m.png"
    assert on_one_line("plain name.png") == "plain name.png"
