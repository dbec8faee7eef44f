"""Derainers that run outside rainbench: `CommandDerainer` hands a batch to any program
as PNG files in a folder (`--model-cmd`), and `OutputsFolder` reads outputs computed
elsewhere by sample key (`--outputs`).
"""

import contextlib
import hashlib
import os
import shlex
import signal
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from rainbench.capture.decode import (
    FLOAT_TIFF,
    PixelCapExceeded,
    float_tiff,
    header_size,
    load_upright,
)
from rainbench.capture.formats import Format, sniff
from rainbench.capture.reject import CaptureRejected
from rainbench.capture.source import read_regular
from rainbench.errors import first_line
from rainbench.files import file_sha256, leads_inside
from rainbench.models.base import NumpyDerainer
from rainbench.models.options import number_option
from rainbench.models.registry import DerainerError

# What an output may be saved as; the stem is the input's name or the sample key.
OUTPUT_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
_PILLOW = Format("image", "img")  # an output no magic names: opened by Pillow as it is

PLACEHOLDERS = ("{input_dir}", "{output_dir}")


class CommandDerainer(NumpyDerainer):
    """Runs `command` once per batch, e.g. `python test.py --in {input_dir} --out
    {output_dir}`: the batch goes in as 8-bit PNGs 000000.png, 000001.png, … and the
    outputs are read back by the same stems (any of OUTPUT_EXTENSIONS). The command is
    split like a shell would, after the placeholders are replaced by quoted paths, and
    run without a shell; `timeout` is in seconds per batch.
    """

    version = "external"

    def __init__(self, command: str, name: str = "command", timeout: float | None = None):
        super().__init__()
        missing = [placeholder for placeholder in PLACEHOLDERS if placeholder not in command]
        if missing:
            raise DerainerError(f"the command needs a {missing[0]} placeholder: {command}")
        try:  # here, before any image, not as every image's failure
            shlex.split(command)
        except ValueError as error:  # the paths put in for the placeholders come quoted
            raise DerainerError(
                f"the command cannot be split as a shell would: {error}: {command}"
            ) from None
        self.command, self.name = command, name
        self.timeout = number_option(
            name, "timeout", timeout, float, low=0, low_open=True, optional=True
        )

    def info(self) -> dict:
        # The timeout is on record but not an option: it decides which images fail, not
        # what an output is, so changing it keeps earlier results.
        # A path in it that is not UTF-8 reaches Python as surrogates (surrogateescape):
        # hashed as its bytes, and recorded with those bytes as \xHH, as JSON holds no
        # lone surrogate. A UTF-8 command is hashed and recorded as before.
        command = self.command.encode("utf-8", "surrogateescape")
        return {
            **super().info(),
            "command": command.decode("utf-8", "backslashreplace"),
            "command_sha256": hashlib.sha256(command).hexdigest(),
            "timeout": self.timeout,
        }

    def derain_images(self, images: np.ndarray) -> np.ndarray:
        with tempfile.TemporaryDirectory(prefix="rainbench-derain-") as work:
            input_dir, output_dir = Path(work, "input"), Path(work, "output")
            input_dir.mkdir()
            output_dir.mkdir()
            stems = [f"{index:06d}" for index in range(len(images))]
            pixels = np.rint(np.clip(images, 0, 1) * 255).astype(np.uint8)
            for stem, image in zip(stems, pixels, strict=True):
                # Level 1: the program reads these once; speed matters more than size.
                Image.fromarray(image).save(input_dir / f"{stem}.png", compress_level=1)
            self._run(input_dir, output_dir)
            outputs = OutputsFolder(output_dir, self.name)
            size = (images.shape[2], images.shape[1])
            try:
                derained = np.stack([outputs.load(stem, size) for stem in stems])
            except DerainerError as error:
                # The folder is a fresh temporary one, gone once the batch is done: said
                # as the command's placeholder, so a failure reads the same every run.
                said = str(error).replace(str(output_dir), PLACEHOLDERS[1])
                raise DerainerError(f"{self.name}: {said}") from None
        return derained.astype(np.float32) / 255

    def _run(self, input_dir: Path, output_dir: Path) -> None:
        line = self.command
        for placeholder, path in zip(PLACEHOLDERS, (input_dir, output_dir), strict=True):
            line = line.replace(placeholder, shlex.quote(str(path)))
        argv = shlex.split(line)
        try:
            process = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace"
            )
        except OSError as error:
            raise DerainerError(f"{self.name}: cannot run {argv[0]}: {error.strerror}") from error
        with process:
            try:
                _, stderr = process.communicate(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                _kill_tree(process)
                raise DerainerError(
                    f"{self.name}: the command ran past its {self.timeout} s timeout"
                ) from None
            except BaseException:  # an interrupt: nothing of the batch's is left running
                _kill_tree(process)
                raise
        if process.returncode != 0:
            lines = [text for text in stderr.splitlines() if text.strip()]
            last = lines[-1].strip() if lines else "nothing on stderr"
            raise DerainerError(
                f"{self.name}: the command exited with {process.returncode}: {last}"
            )


def _kill_tree(process: subprocess.Popen) -> None:
    """Kill the command and every process it started, and reap it. The command alone
    would leave what a wrapper (`sh run.sh`) started running beside the next batch's.
    It stays in rainbench's process group, so that what signals the group (Ctrl-C, a
    closed terminal, `timeout`) reaches all of them as before; its pipes are not read
    to their end, as a process that left its tree may hold them."""
    for pid in (process.pid, *_descendants(process.pid)):  # all found before any dies
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait()


def _descendants(pid: int) -> list[int]:
    """The processes `pid` started and theirs, from /proc; none without it (not Linux)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:  # "pid (name) state ppid …": the name may hold spaces and parentheses
            parent = int(stat.read_text().rpartition(")")[2].split()[1])
        except (OSError, IndexError, ValueError):  # ended meanwhile
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class OutputsFolder:
    """Derained images computed elsewhere, by sample key: FOLDER/<split>/<key>.<ext>
    or FOLDER/<key>.<ext>, with ext any of OUTPUT_EXTENSIONS (any case)."""

    version = "precomputed"

    def __init__(self, folder: Path, name: str):
        self.folder, self.name = Path(folder), name
        if not self.folder.is_dir():
            raise DerainerError(f"outputs folder {self.folder} not found")
        self._listings: dict[Path, dict[str, list[Path]]] = {}

    def load(self, key: str, size: tuple[int, int], split: str | None = None) -> np.ndarray:
        """The output for `key` as uint8 H×W×3 RGB, read as `rainbench score` reads a
        prediction: upright by its EXIF orientation, 16-bit scaled to 8, alpha dropped, a
        link leading out of the folder refused.
        `size` is the input's (width, height), as PIL gives it; the output must match it."""
        path = self.find(key, split)
        if not leads_inside(path, self.folder):  # as score leaves out such a prediction
            raise DerainerError(f"{path} leads outside the outputs folder {self.folder}; refused")
        try:
            # Read whole to be decoded: a file larger than a picture of the input's size
            # takes is refused unread.
            data = read_regular(path, max_pixels=size[0] * size[1])
            # BMP and the other formats ingest does not take: whatever Pillow reads.
            fmt = sniff(data, path.name) or _PILLOW
            if fmt.raw or fmt.video:
                raise DerainerError(f"cannot read {path}: a {fmt.name} file is no output image")
            if fmt.name == "tiff" and float_tiff(data):  # as score refuses a prediction
                raise DerainerError(f"{path} is {FLOAT_TIFF}")
            # An output of more pixels than the input is refused from its header, before
            # decoding, as any other size is after. Only more: where the header's upright
            # size and the decoder's could differ, the decoded one is the output's.
            declared = header_size(data, None if fmt is _PILLOW else fmt)
            if declared is not None and declared[0] * declared[1] > size[0] * size[1]:
                raise _wrong_size(path, declared, size)
            image = load_upright(data, fmt, max_pixels=size[0] * size[1])
        except PixelCapExceeded as larger:  # its size known only as it was decoded (HEIC)
            raise _wrong_size(path, larger.size, size) from None
        except CaptureRejected as rejected:
            raise DerainerError(f"cannot read {path}: {rejected.message}") from None
        except UnidentifiedImageError:  # its message names a memory address: not reproducible
            what = "an image" if fmt is _PILLOW else f"a {fmt.name} image"
            raise DerainerError(f"cannot read {path}: no readable header of {what}") from None
        # What Pillow raises for a damaged file: this output's row fails, the run goes on.
        except (OSError, SyntaxError, ValueError, EOFError) as error:
            raise DerainerError(f"cannot read {path}: {first_line(error)}") from error
        if image.size != tuple(size):
            raise _wrong_size(path, image.size, size)
        return np.asarray(image)

    def find(self, key: str, split: str | None = None) -> Path:
        """The file holding `key`'s output: in the split's sub-folder first."""
        paths = self._candidates(key, split)
        if len(paths) > 1:
            names = ", ".join(sorted(path.name for path in paths))
            raise DerainerError(f"more than one output for {key} in {paths[0].parent}: {names}")
        if not paths:
            raise DerainerError(self._missing(key, split))
        return paths[0]

    def _missing(self, key: str, split: str | None) -> str:
        """No output for `key`: the folders looked in, and a file named for the key and
        more (`KEY.rain.png`, as the shards name a capture) where there is one."""
        folders = self._folders(split)
        said = f"no output for {key} in {' or '.join(str(folder) for folder in folders)}"
        near = sorted(
            path
            for folder in folders
            for stem, paths in self._listing(folder).items()
            if stem.startswith(f"{key}.")
            for path in paths
        )
        if near:
            said += f"; there is {near[0]}: an output is named by its key alone, {key}.png"
        return said

    def _candidates(self, key: str, split: str | None) -> list[Path]:
        """The files named for `key` in the first folder that has any."""
        for folder in self._folders(split):
            paths = self._listing(folder).get(key, [])
            if paths:
                return paths
        return []

    def keys(self, split: str | None = None) -> list[str]:
        """Every key `load(key, split=split)` finds, sorted."""
        return sorted({key for folder in self._folders(split) for key in self._listing(folder)})

    def sha256(self, key: str, split: str | None = None) -> str:
        """What `key`'s output is: its file's sha256, or "missing" or "ambiguous" (more
        than one file) when `load` would fail to find one. Results of a folder are of
        these files, not of the folder: a copy elsewhere, or outputs added for other
        keys, leave them as they are."""
        paths = self._candidates(key, split)
        if len(paths) > 1:
            return "ambiguous"
        return file_sha256(paths[0]) if paths else "missing"

    def info(self) -> dict:
        """Name, version and the folder (for the record: each output is known by its
        own sha256, `sha256`)."""
        return {"name": self.name, "version": self.version, "folder": str(self.folder.resolve())}

    def _folders(self, split: str | None) -> list[Path]:
        return [self.folder] if split is None else [self.folder / split, self.folder]

    def _listing(self, folder: Path) -> dict[str, list[Path]]:
        """The output files directly in `folder` by stem, listed once."""
        if folder not in self._listings:
            listing: dict[str, list[Path]] = {}
            if folder.is_dir():
                for path in folder.iterdir():
                    if path.suffix.lower() in OUTPUT_EXTENSIONS and path.is_file():
                        listing.setdefault(path.stem, []).append(path)
            self._listings[folder] = listing
        return self._listings[folder]


def _wrong_size(path: Path, got: tuple[int, int], size: tuple[int, int]) -> DerainerError:
    # Most often a capture derained as stored, sideways: not turned by its EXIF.
    turned = (
        " (the input is the capture upright, turned by its EXIF orientation: "
        "PIL.ImageOps.exif_transpose)"
        if tuple(got) == tuple(size)[::-1]
        else ""
    )
    return DerainerError(f"{path} is {got[0]}×{got[1]}, the input is {size[0]}×{size[1]}{turned}")
