"""Options and parameter types several commands share, and the dataset argument: one
positional DATASET everywhere, with the flags older releases named it by kept as
hidden aliases so that old command lines still work."""

import functools
import os
import re
import sys
from pathlib import Path

import click

from rainbench.errors import RainbenchError
from rainbench.ingest.split import parse_fractions
from rainbench.store import StoreError, check_url, is_url, local_path

_UNITS = {"": 1, "B": 1, "K": 10**3, "KB": 10**3, "M": 10**6, "MB": 10**6, "G": 10**9, "GB": 10**9}


class ByteSize(click.ParamType):
    name = "size"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        match = re.fullmatch(r"\s*(\d+\.?\d*|\.\d+)\s*([KMG]?B?)\s*", str(value).upper())
        size = int(float(match.group(1)) * _UNITS[match.group(2)]) if match else 0
        # A size under one byte would put nothing in a shard: no size at all.
        if size < 1:
            self.fail(f"{value!r} is not a size like 1GB, 500MB or 1000000", param, ctx)
        return size


class Fractions(click.ParamType):
    name = "fractions"

    def convert(self, value, param, ctx):
        try:
            return parse_fractions(value) if isinstance(value, str) else value
        except ValueError as error:
            self.fail(str(error), param, ctx)


def _size_text(size: int) -> str:
    """1000000000 as 1GB: the largest unit that divides it."""
    for unit, factor in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def _all_cores() -> int:
    return os.cpu_count() or 1


def _stderr_is_terminal() -> bool:
    # Bars drawn into a log file or a CI console are noise; a terminal shows them.
    return sys.stderr.isatty()


workers = click.option(
    "--workers",
    "-j",
    type=click.IntRange(min=1),
    default=_all_cores,
    # Shown as words, not this machine's count, so the help (and docs/cli.md) is the same
    # everywhere.
    show_default="all cores",
    help="Worker processes.",
)
threads = click.option(
    "--threads",
    type=click.IntRange(min=1),
    help="torch's CPU threads.  [default: the CPUs that are free, less the data-loader workers]",
)
# What Ray takes as a cluster's address: auto, local, HOST:PORT or ray://HOST:PORT.
_RAY_ADDRESS = re.compile(r"auto|local|(ray://)?[A-Za-z0-9_.\-]+:[0-9]+")


def _ray_address(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """--ray's address, refused when it is no address: `--ray DATASET` takes the word
    after the flag as its address, so the dataset would be lost."""
    if value is None or _RAY_ADDRESS.fullmatch(value):
        return value
    raise click.BadParameter(
        f"{value!r} is no Ray address (auto, local, HOST:PORT or ray://HOST:PORT): --ray takes the "
        "word after it as the address; write --ray auto, or put --ray last"
    )


_DEVICE = re.compile(r"cpu|cuda(:[0-9]+)?")


def torch_device(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A --device callback: cpu, cuda or cuda:N (torch's own error is a traceback)."""
    if value is None or value == "cpu" or _DEVICE.fullmatch(value):
        return value
    raise click.BadParameter(f"{value!r}: give cpu, cuda or cuda:N")


def require_device(device: str | None) -> None:
    """A CUDA device only where there is one, said in one line; for work that runs in
    this process (on a Ray cluster, the GPUs are the cluster's)."""
    if device is None or not device.startswith("cuda"):
        return
    import torch  # only when a GPU is asked for

    if not torch.cuda.is_available():
        raise click.BadParameter(
            f"{device}: torch sees no CUDA device here; use --device cpu", param_hint="--device"
        )
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise click.BadParameter(
            f"{device}: this machine has {torch.cuda.device_count()} GPUs", param_hint="--device"
        )


ray = click.option(
    "--ray",
    "ray",
    is_flag=False,
    flag_value="auto",
    default=None,
    callback=_ray_address,
    metavar="[ADDRESS]",
    help="Run the work as Ray tasks on the cluster at ADDRESS (alone: auto, the one "
    "`ray start` runs here). Needs the cluster extra: pip install 'rainbench[cluster]'.",
)
progress = click.option(
    "--progress/--no-progress",
    default=_stderr_is_terminal,
    help="Show progress bars on stderr.  [default: on when it is a terminal]",
)
labels = click.option(
    "--labels",
    type=click.Path(path_type=Path),
    help="A label sheet (CSV: key, sha256 or source_path; rain_type; note) to apply.",
)
skip_bad_labels = click.option(
    "--skip-bad-labels",
    is_flag=True,
    help="Apply a sheet's good labels even when others have problems (still reported).",
)
weights_dir = click.option(
    "--weights-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where metric weights are.  [default: $RAINBENCH_WEIGHTS or ~/.cache/rainbench/weights]",
)


def shard_size(default: int):
    """--shard-size, defaulting to the settings' shard_bytes."""
    return click.option(
        "--shard-size",
        type=ByteSize(),
        default=default,
        help=f"Roll to a new shard after this many bytes.  [default: {_size_text(default)}]",
    )


def metric_list(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[str, ...] | None:
    """--metrics: the comma-separated names, each once, in the order given (a name given
    twice would make two columns of that name, which no Parquet reader reads back);
    None when it is not given."""
    if value is None:
        return None
    names = tuple(dict.fromkeys(name.strip() for name in value.split(",") if name.strip()))
    if not names:
        raise click.BadParameter("name at least one metric (rainbench metrics lists them)")
    return names


def as_json(text: str = "Print the summary as JSON."):
    """--json: print the result as JSON (its to_dict()) instead of text."""
    return click.option("--json", "as_json", is_flag=True, help=text)


class LocalPath(click.Path):
    """A local path (a click.Path with these settings), also given as a `file:///…` URL,
    as fsspec and pyarrow take it (`store.local_path`)."""

    def convert(self, value, param, ctx):
        if isinstance(value, str):
            try:
                value = local_path(value)
            except StoreError as error:
                self.fail(str(error), param, ctx)
        return super().convert(value, param, ctx)


class Location(LocalPath):
    """A local path (a LocalPath with these settings) or an object store's URL
    (`s3://bucket/ds`, `gs://…`), which is passed on as text; one that names no bucket
    is refused in one line (`check_url`)."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and is_url(value):
            return check_url(value)
        return super().convert(value, param, ctx)


class InputPath(click.Path):
    """A path the command reads, which must be there: a click.Path with exists=True and
    these settings (file_okay, dir_okay). One that is missing, unreadable, or a file
    where a folder goes (or the reverse) is a problem with the input, not with the
    command line: `error: <which>: <what>` in one line and exit 1, as a missing dataset
    is, not click's usage text and exit 2."""

    def __init__(self, **settings: bool):
        super().__init__(exists=True, path_type=Path, **settings)

    def fail(self, message: str, param=None, ctx=None):
        if param is None:
            raise MissingInput(message)
        which = param.opts[0] if isinstance(param, click.Option) else param.human_readable_name
        raise MissingInput(f"{which}: {message}")


class MissingInput(RainbenchError):
    """An input path the command line names that is not there (or not of its kind)."""


class InputLocation(Location, InputPath):
    """An input path that must be there, or an object store's URL (passed on as text)."""


def dataset(*aliases: str, required: bool = True, url: bool = False, **path: bool):
    """The positional DATASET (a click.Path with the `path` settings; `url`: or an
    object store's URL), passed to the command as `dataset`; each flag in `aliases`
    (`--dataset`, `--into`) is a hidden option that names it the old way."""
    kind = (Location if url else LocalPath)(path_type=Path, **path)

    def decorate(command):
        @functools.wraps(command)
        def merged(*args, dataset=None, dataset_alias=None, **kwargs):
            if dataset is not None and dataset_alias is not None:
                raise click.UsageError(f"give DATASET or {'/'.join(aliases)}, not both")
            chosen = dataset if dataset is not None else dataset_alias
            if chosen is None and required:
                raise click.UsageError("Missing argument 'DATASET'.")
            return command(*args, dataset=chosen, **kwargs)

        if aliases:
            merged = click.option(*aliases, "dataset_alias", type=kind, hidden=True)(merged)
        # Required or not, it shows as DATASET: the hidden aliases are why click may not
        # insist on it itself.
        metavar = "DATASET" if required else "[DATASET]"
        return click.argument("dataset", required=False, type=kind, metavar=metavar)(merged)

    return decorate
