"""What a command prints: with --json, stdout is the result and nothing else, while
progress and problems go to stderr."""

import json
import os
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


def test_a_json_out_replaces_only_a_report_and_never_a_users_file_or_the_datasets(tmp_path):
    from rainbench.cli.output import OutRefused, prepare_report, write_json

    earlier = tmp_path / "report.json"
    write_json({"a": 1}, earlier)
    write_json({"a": 2}, earlier)  # an earlier report is replaced
    assert json.loads(earlier.read_text()) == {"a": 2}
    notes, fifo = tmp_path / "notes.txt", tmp_path / "fifo"
    notes.write_text("my notes\n")
    os.mkfifo(fifo)
    for out in (notes, fifo, tmp_path):  # a FIFO is refused, not opened (it would block)
        with pytest.raises(OutRefused, match=r"exists and is not a JSON report: not replaced"):
            write_json({"a": 3}, out)
    assert notes.read_text() == "my notes\n"
    dataset = tmp_path / "ds"
    (dataset / "dataset.json").parent.mkdir()
    (dataset / "dataset.json").write_text('{"name": "ds"}')
    with pytest.raises(OutRefused, match=r"not a JSON report outside the dataset"):
        prepare_report(dataset / "dataset.json", dataset)
    prepare_report(tmp_path / "new" / "report.json", dataset)  # a new file, its folder made


def test_a_json_out_interrupted_mid_write_keeps_the_earlier_report(tmp_path, monkeypatch):
    from rainbench.cli.output import write_json

    out = tmp_path / "report.json"
    write_json({"a": 1}, out)

    def interrupted(handle):
        raise KeyboardInterrupt

    monkeypatch.setattr("rainbench.files.os.fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_json({"a": 2, "long": "x" * 100_000}, out)
    assert json.loads(out.read_text()) == {"a": 1}
    assert [path.name for path in tmp_path.iterdir()] == ["report.json"]


def test_two_json_outs_written_at_once_into_one_file_both_finish(tmp_path, held_at_rename):
    # The first waits with its report written, just before it puts it in place, while
    # the second is written whole; a temporary of the same name was taken from under it.
    from rainbench.cli.output import write_json

    out = tmp_path / "report.json"
    first, release = held_at_rename(
        "from rainbench.cli.output import write_json\n"
        f"write_json({{'run': 1}}, Path({str(out)!r}))\n"
    )
    write_json({"run": 2}, out)
    release()
    assert first.wait(timeout=60) == 0, first.stderr.read()
    assert json.loads(out.read_text()) == {"run": 1}  # the last to finish
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
