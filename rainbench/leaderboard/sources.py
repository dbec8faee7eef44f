"""Where `rainbench eval` gets its outputs: a derainer run here (registered by name, or
an external command), or a folder of outputs computed elsewhere. Either way a failure
on one image becomes that image's error, never the run's end.
"""

import contextlib
import json
import os
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from rainbench.errors import one_line
from rainbench.leaderboard.eval import EvalWarning, Item, Output, Source
from rainbench.models.base import to_pixels
from rainbench.models.registry import (
    DerainerError,
    PluginWarning,
    check_derainer,
    create_derainer,
)

# How far beyond [0, 1] an output may stray and still be clipped, as a network without
# a final clamp overshoots a little; further is taken for a mistake (values in 0..255,
# another normalisation) and fails the image instead of being scored clipped.
OUTPUT_TOLERANCE = 0.5


class DerainerSource(Source):
    """Runs a `Derainer` on batches of same-size images, in tiles when asked. `name` is
    what its results are filed and shown under (default: the derainer's `name`)."""

    def __init__(
        self,
        derainer,
        device: str,
        tile: int | None,
        overlap: int,
        name: str | None = None,
        registered: dict | None = None,
    ):
        self.derainer, self.device = derainer, device
        self.tile, self.overlap = tile, overlap
        self.name = name or derainer.name
        self.registered = registered  # the registry's name and the code's origin
        self.warned: set[str] = set()  # what `_contained` has put back, said once each

    @classmethod
    def from_registry(
        cls,
        model: str,
        name: str | None,
        checkpoint: Path | None,
        device: str,
        tile: int | None,
        overlap: int,
        options: dict,
    ) -> "DerainerSource":
        """The derainer registered as `model`, filed under `name`. By default that is
        `model`, whatever its class's own `name` says, or a variant of it the derainer
        names itself (`nlcl-published`: NLCL with a published release's weights). The
        registered name and where its code comes from go in the provenance."""
        with _contained(model, set()):
            derainer = create_derainer(model, checkpoint=checkpoint, device=device, **options)
            with warnings.catch_warnings():  # create_derainer has said what was skipped
                warnings.simplefilter("ignore", PluginWarning)
                spec = check_derainer(model)
            _check_built(derainer, f"derainer {model} ({spec.source})")
        own = getattr(derainer, "name", None)
        variant = own if isinstance(own, str) and own.startswith(f"{model}-") else None
        origin = {"registered": model, "source": spec.origin()}
        return cls(
            derainer, device, tile, overlap, name=name or variant or model, registered=origin
        )

    def info(self) -> dict:
        record = {**self.derainer.info(), "name": self.name, **(self.registered or {})}
        # As the provenance holds it (a tuple a list, a key a string): a resume compares
        # the record on disk with this one, and would find a tuple option changed.
        return json.loads(json.dumps(record, allow_nan=False))

    def trained_on(self) -> frozenset[str] | None:
        return getattr(self.derainer, "trained_on", None)

    def run(self, items: list[Item], split: str) -> list[Output]:
        try:
            return self._run_batch(items)
        # Whatever a derainer raises is that image's failure, a sys.exit() in its code
        # too; an interrupt still ends the run.
        except (Exception, SystemExit) as error:
            if len(items) > 1:  # run the batch's images alone to blame the right one
                return [output for item in items for output in self.run([item], split)]
            return [Output(None, one_line(error), None, None)]  # not timed: it did not finish

    def _run_batch(self, items: list[Item]) -> list[Output]:
        import torch

        batch = torch.from_numpy(np.stack([item.rain for item in items])).to(self.device)
        batch = batch.permute(0, 3, 1, 2).float().div_(255)
        _reset_peak_memory(self.device)
        started = time.perf_counter()
        with torch.inference_mode(), _contained(self.name, self.warned):
            height, width = batch.shape[-2:]
            if self.tile and max(height, width) > self.tile:
                result = self.derainer.derain_in_tiles(batch, self.tile, self.overlap)
            else:
                result = self.derainer.derain(batch)
            if self.device.startswith("cuda"):
                torch.cuda.synchronize()
        seconds = (time.perf_counter() - started) / len(items)
        peak = _peak_memory_mb(self.device)
        error = _wrong_batch(result, tuple(batch.shape))
        if error and len(items) > 1:
            raise _WrongBatch(error)  # `run` blames the right images, as for an exception
        if error:
            return [Output(None, error, seconds, peak)]
        return [
            Output(None, error, seconds, peak)
            if (error := _wrong_values(image))
            else Output(to_pixels(image), None, seconds, peak)
            for image in result.detach().float().cpu()
        ]


def _check_built(derainer: object, what: str) -> None:
    """What eval asks of a plug-in's derainer before any image, so that a factory's
    mistake is one line, not a traceback: something to derain with, whose `info()` is a
    JSON record (the provenance holds it, and a resume compares it)."""
    if not callable(getattr(derainer, "derain", None)):
        raise DerainerError(
            f"{what} could not be built: its factory returned {type(derainer).__name__}, "
            "not a Derainer"
        )
    try:
        json.dumps(derainer.info(), allow_nan=False)
    except Exception as error:  # whatever a plug-in's info() raises, or holds
        raise DerainerError(f"{what}: its info() is no JSON record: {one_line(error)}") from None


@contextlib.contextmanager
def _contained(name: str, warned: set[str]) -> Iterator[None]:
    """Run a derainer's own code so that it leaves the run as it was: what it prints goes
    to stderr (stdout is the command's, `--json` among it), and the working directory and
    torch's thread count it changes are put back, with a warning the first time each
    (`warned` holds those given): eval's relative paths, results among them, are read from
    the one, and the provenance records the other (`threads`). Random seeds it sets change
    nothing: eval draws no random number."""
    # torch is not imported here: a derainer is built before eval checks that torch is
    # there (one line if not), and eval sets torch's threads after building it.
    torch = sys.modules.get("torch")
    folder, threads = os.getcwd(), torch and torch.get_num_threads()
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        moved = os.getcwd()
        if moved != folder:
            if "folder" not in warned:
                warnings.warn(
                    f"{name} changed the working directory to {moved}: put back to {folder}",
                    EvalWarning,
                    stacklevel=3,
                )
                warned.add("folder")
            os.chdir(folder)
        if torch and (now := torch.get_num_threads()) != threads:
            if "threads" not in warned:
                warnings.warn(
                    f"{name} set torch's CPU threads to {now}: put back to {threads}, as the "
                    "provenance records",
                    EvalWarning,
                    stacklevel=3,
                )
                warned.add("threads")
            torch.set_num_threads(threads)


class _WrongBatch(Exception):
    """A derainer's answer to a batch of several images is wrong as a whole."""


def _wrong_batch(result: object, expected: tuple[int, ...]) -> str | None:
    """What is wrong with a derainer's answer as a whole: not a float tensor of the
    batch's shape."""
    import torch

    if not isinstance(result, torch.Tensor):
        return f"returned {type(result).__name__}, expected a torch.Tensor of shape {expected}"
    if tuple(result.shape) != expected:
        return f"returned shape {tuple(result.shape)}, expected {expected}"
    if not result.is_floating_point():
        return (
            f"returned {str(result.dtype).removeprefix('torch.')} values, expected floats in [0, 1]"
        )
    return None


def _wrong_values(image) -> str | None:
    """What is wrong with one output's values: NaN or infinity, or values further than
    OUTPUT_TOLERANCE outside [0, 1] (closer ones are clipped)."""
    import torch

    if not torch.isfinite(image).all():
        return "returned NaN or infinite values"
    low, high = image.min().item(), image.max().item()
    if high > 1 + OUTPUT_TOLERANCE:
        return f"returned values up to {high:.4g}: expected [0, 1] (0..255 divided by 255)"
    if low < -OUTPUT_TOLERANCE:
        return f"returned values down to {low:.4g}: expected [0, 1]"
    return None


class FolderSource(Source):
    """Outputs computed elsewhere, found by sample key (`--outputs DIR --name NAME`)."""

    def __init__(self, folder: Path, name: str):
        from rainbench.models.external import OutputsFolder

        self.outputs = OutputsFolder(folder, name)
        self.name = name

    def info(self) -> dict:
        return self.outputs.info()

    def output_sha256(self, keys: list[str], split: str) -> dict[str, str]:
        """Each key's output file by its sha256 (or "missing", "ambiguous")."""
        return {key: self.outputs.sha256(key, split) for key in keys}

    def run(self, items: list[Item], split: str) -> list[Output]:
        # No timing: the outputs were made elsewhere, so the row's speed is left empty.
        outputs = []
        for item in items:
            height, width = item.rain.shape[:2]
            try:
                image = self.outputs.load(item.key, (width, height), split=split)
            except DerainerError as error:
                outputs.append(Output(None, str(error), None, None))
                continue
            outputs.append(Output(image, None, None, None))
        return outputs


def _reset_peak_memory(device: str) -> None:
    """Start a fresh high-water mark: CUDA's allocator, or the process's peak RSS."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats(device)
        return
    with contextlib.suppress(OSError):  # Linux only: writing "5" resets VmHWM
        Path("/proc/self/clear_refs").write_text("5")


def _peak_memory_mb(device: str) -> float | None:
    if device.startswith("cuda"):
        import torch

        return round(torch.cuda.max_memory_allocated(device) / 1e6, 1)
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) * 1024 / 1e6, 1)
    except OSError:
        pass
    return None
