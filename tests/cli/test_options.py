"""Shared options: one positional DATASET with the old flags as hidden aliases, and
progress bars only on a terminal unless asked."""

from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from PIL import Image

from rainbench.cli import main
from rainbench.cli.options import InputPath


class Called(Exception):
    """Stops the command once it has reached the library, with what it passed."""


def _record(*args, **kwargs):
    raise Called(args, kwargs)


def _called(argv: list[str], monkeypatch, target: str) -> tuple[tuple, dict]:
    monkeypatch.setattr(target, _record)
    result = CliRunner().invoke(main, argv)
    assert isinstance(result.exception, Called), result.output
    return result.exception.args


# (command line before the dataset, the old flag, after it, the function it calls,
# the position of the dataset among that function's arguments)
COMMANDS = [
    (["eval", "--model", "identity"], "--dataset", ["--results", "{tmp}/r"],
     "rainbench.cli.leaderboard.evaluate", 1),
    (["import-paired", "{tmp}"], "--into", ["--layout", "rain100", "--name", "x"],
     "rainbench.synth.imports.import_paired", 3),
    (["analyze", "intrinsic-dim"], "--dataset", ["--split", "syn"],
     "rainbench.cli.analyze.from_synthetic_split", 0),
]  # fmt: skip


@pytest.mark.parametrize(("before", "flag", "after", "target", "position"), COMMANDS)
def test_dataset_is_positional_and_the_old_flag_still_works(
    tmp_path, monkeypatch, before, flag, after, target, position
):
    ds = str(tmp_path / "ds")
    before, after = ([a.format(tmp=tmp_path) for a in args] for args in (before, after))
    positional = _called([*before, ds, *after], monkeypatch, target)
    old = _called([*before, *after, flag, ds], monkeypatch, target)
    assert positional[0][position] == old[0][position] == Path(ds)


@pytest.mark.parametrize(("before", "flag", "after", "target", "position"), COMMANDS)
def test_a_dataset_given_as_a_file_url_is_the_folder_it_names(
    tmp_path, monkeypatch, before, flag, after, target, position
):
    ds = tmp_path / "a ds"
    before, after = ([a.format(tmp=tmp_path) for a in args] for args in (before, after))
    called = _called([*before, ds.as_uri(), *after], monkeypatch, target)
    assert called[0][position] == ds
    host = CliRunner().invoke(main, [*before, "file://tmp/ds", *after])
    assert host.exit_code == 2 and "file:// URL names a local path" in host.output


def test_ingest_takes_file_urls_for_its_inputs_and_its_dataset(tmp_path, monkeypatch):
    raw, ds = tmp_path / "raw", tmp_path / "ds"
    raw.mkdir()
    argv = ["ingest", raw.as_uri(), "--out", ds.as_uri()]
    called = _called(argv, monkeypatch, "rainbench.cli.dataset.ingest")
    assert called[0][:2] == ([raw], ds)


def test_train_nlcl_takes_the_dataset_either_way(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    ds, run = str(tmp_path / "ds"), str(tmp_path / "run")
    target = "rainbench.train.nlcl.trainer.train"
    positional = _called(["train", "nlcl", ds, "--out", run], monkeypatch, target)
    old = _called(["train", "nlcl", "--dataset", ds, "--out", run], monkeypatch, target)
    assert positional[0][0] == old[0][0] == Path(ds)


@pytest.mark.parametrize(
    ("command", "flag"),
    [(["eval"], "--dataset"), (["import-paired"], "--into"), (["train", "nlcl"], "--dataset"),
     (["analyze", "intrinsic-dim"], "--dataset")],
)  # fmt: skip
def test_the_old_flags_are_hidden(command, flag):
    shown = CliRunner().invoke(main, [*command, "--help"]).output
    assert "DATASET" in shown.splitlines()[0] and f"{flag} " not in shown


def test_a_dataset_is_needed_once(tmp_path):
    base = ["eval", "--model", "identity", "--results", str(tmp_path / "r")]
    missing = CliRunner().invoke(main, base)
    assert missing.exit_code == 2 and "Missing argument 'DATASET'" in missing.output
    both = CliRunner().invoke(main, [*base, "a", "--dataset", "b"])
    assert both.exit_code == 2 and "not both" in both.output


def test_progress_is_off_when_stderr_is_not_a_terminal(tmp_path, monkeypatch):
    argv = ["eval", str(tmp_path), "--model", "identity", "--results", str(tmp_path / "r")]
    target = "rainbench.cli.leaderboard.evaluate"
    # CliRunner's stderr is not a terminal, as in a log file or CI.
    assert _called(argv, monkeypatch, target)[0][-1] is False
    assert _called([*argv, "--progress"], monkeypatch, target)[0][-1] is True


@pytest.mark.parametrize(
    "argv",
    [
        ["eval", "--model", "identity", "--results", "res", "--ray", "s3://bucket/ds"],
        ["ingest", "--ray", "raw/", "--out", "ds"],
    ],
)
def test_ray_does_not_swallow_the_word_after_it(argv):
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 2
    assert "is no Ray address" in result.output and "write --ray auto" in result.output


@pytest.mark.parametrize("address", ["auto", "local", "10.0.0.5:6379", "ray://head:10001"])
def test_ray_addresses_are_taken(address):
    from rainbench.cli.options import _RAY_ADDRESS

    assert _RAY_ADDRESS.fullmatch(address)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval", "ds", "--model", "identity", "--results", "r", "--device", "gpu"], "give cpu"),
        (["train", "nlcl", "ds", "--out", "run", "--device", "cuda:x"], "give cpu"),
    ],
)
def test_a_device_torch_would_not_take_is_one_line(argv, message):
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 2 and message in result.output


@pytest.mark.parametrize("method", ["nlcl", "cclgan"])
@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_a_training_seed_past_32_bits_is_a_usage_error(tmp_path, method, seed):
    # Past 2**64 torch's generator ended the run in an overflow traceback.
    args = ["train", method, str(tmp_path), "--out", str(tmp_path / "run"), "--seed", seed]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "--seed" in result.output
    assert f"{seed} is not in the range 0<=x<=4294967295" in result.output


def test_cuda_without_a_gpu_is_one_line():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    argv = ["score", "--pred", ".", "--out", "s.parquet", "--device", "cuda"]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 2 and "torch sees no CUDA device here" in result.output


def test_metrics_given_twice_are_taken_once_and_none_at_all_is_refused(tmp_path, monkeypatch):
    # A metric named twice would make two columns of one name, which no reader reads back.
    eval_argv = ["eval", str(tmp_path), "--model", "identity", "--results", str(tmp_path / "r")]
    args, _ = _called(
        [*eval_argv, "--metrics", "psnr_y, ssim_y,psnr_y,"],
        monkeypatch,
        "rainbench.cli.leaderboard.evaluate",
    )
    assert args[4].metrics == ("psnr_y", "ssim_y")
    (tmp_path / "pred").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "pred" / "a.png")
    score_argv = ["score", "--pred", str(tmp_path / "pred"), "--out", str(tmp_path / "s.parquet")]
    args, _ = _called(
        [*score_argv, "--metrics", "piqe,piqe"], monkeypatch, "rainbench.cli.metrics.plan_scoring"
    )
    assert args[1].metrics == ("piqe",)
    for argv in (eval_argv, score_argv):
        result = CliRunner().invoke(main, [*argv, "--metrics", " , "])
        assert result.exit_code == 2 and "name at least one metric" in result.output


# Every input path the commands read, missing: (command line, what the error names).
MISSING_INPUTS = [
    (["ingest", "{tmp}/nope", "--out", "{tmp}/ds"], "RAW"),
    (["score", "--pred", "{tmp}/nope", "--out", "{tmp}/s.parquet"], "--pred"),
    (["score", "--pred", "{tmp}", "--ref", "{tmp}/nope", "--out", "{tmp}/s.parquet"], "--ref"),
    (["import-paired", "{tmp}/nope", "{tmp}/ds"], "PATH"),
    (["import-paired", "{tmp}", "{tmp}/ds", "--protocol", "{tmp}/nope"], "--protocol"),
    (["synth", "--preview", "{tmp}/nope"], "--preview"),
    (["weights", "import", "{tmp}/nope"], "FILE"),
    (["weights", "extract-niqe", "{tmp}/nope"], "ARCHIVE"),
    (["nlcl", "import-checkpoint", "{tmp}/nope", "--out", "{tmp}/n.pt"], "FILE"),
    (["cclgan", "import-checkpoint", "{tmp}/nope", "--out", "{tmp}/c.pt"], "FILE"),
]


@pytest.mark.parametrize(
    ("argv", "which"),
    MISSING_INPUTS,
    ids=[f"{' '.join(argv[:2])} {which}" for argv, which in MISSING_INPUTS],
)
def test_a_missing_input_path_is_one_line_and_exit_1(tmp_path, argv, which):
    # A problem with the input, as a missing dataset is: not click's usage text, exit 2.
    result = CliRunner().invoke(main, [arg.format(tmp=tmp_path) for arg in argv])
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"error: {which}: ")
    assert f"'{tmp_path / 'nope'}' does not exist" in result.output
    assert result.output.count("\n") == 1


def test_a_folder_given_for_a_file_is_one_line_and_a_usage_error_stays_exit_2(tmp_path):
    result = CliRunner().invoke(main, ["weights", "import", str(tmp_path)])
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert result.output.startswith("error: FILE: ") and "is a directory" in result.output
    unknown = CliRunner().invoke(main, ["score", "--pred", str(tmp_path), "--bogus"])
    assert unknown.exit_code == 2 and "No such option" in unknown.output


def _parameters(ctx: click.Context):
    yield from ((ctx.command_path, param) for param in ctx.command.params)
    if isinstance(ctx.command, click.Group):
        for name in ctx.command.list_commands(ctx):
            child = ctx.command.get_command(ctx, name)
            yield from _parameters(click.Context(child, info_name=name, parent=ctx))


def test_every_path_that_must_exist_is_an_input_path():
    # One place decides how a missing input is said: options.InputPath, not a
    # click.Path(exists=True) of a command's own.
    own = [
        f"{path} {param.name}"
        # With main's settings, as a command line has them: click keeps the help option a
        # command first makes, and docs/cli.md's test renders it later (`-h, --help`).
        for path, param in _parameters(
            click.Context(main, info_name="rainbench", **main.context_settings)
        )
        if isinstance(param.type, click.Path)
        and param.type.exists
        and not isinstance(param.type, InputPath)
    ]
    assert own == []


# A URL that names no bucket, wherever a command takes a location: as `s3://$BUCKET/ds`
# gives it while BUCKET is unset, or a URL cut short.
NO_BUCKET = [
    ["ingest", "s3://", "--out", "{tmp}/ds"],
    ["ingest", "{tmp}", "--out", "s3:///ds"],
    ["verify", "s3:///ds"],
    ["eval", "--model", "identity", "--dataset", "gs://", "--results", "{tmp}/r"],
    ["train", "nlcl", "s3:///ds", "--out", "{tmp}/run"],
]


@pytest.mark.parametrize("argv", NO_BUCKET, ids=[" ".join(argv[:2]) for argv in NO_BUCKET])
def test_a_url_that_names_no_bucket_is_one_line_and_exit_1(tmp_path, argv):
    result = CliRunner().invoke(main, [arg.format(tmp=tmp_path) for arg in argv])
    assert result.exit_code == 1, result.output
    assert "no bucket named; give " in result.output and result.output.count("\n") == 1
    assert result.output.startswith("error: ")
