"""Where `rainbench eval` gets its outputs: a derainer run here (registered by name, or
an external command), or a folder of outputs computed elsewhere. Either way a failure
on one image becomes that image's error, never the run's end.
"""

import contextlib
import time
from pathlib import Path

import numpy as np

from rainbench.leaderboard.eval import Item, Output, Source, one_line
from rainbench.models.base import to_pixels
from rainbench.models.registry import DerainerError


class DerainerSource(Source):
    """Runs a `Derainer` on batches of same-size images, in tiles when asked."""

    def __init__(self, derainer, device: str, tile: int | None, overlap: int):
        self.derainer, self.device = derainer, device
        self.tile, self.overlap = tile, overlap
        self.name = derainer.name

    def info(self) -> dict:
        return self.derainer.info()

    def run(self, items: list[Item], split: str) -> list[Output]:
        try:
            return self._run_batch(items)
        except Exception as error:  # whatever a derainer raises is that image's failure
            if len(items) > 1:  # run the batch's images alone to blame the right one
                return [output for item in items for output in self.run([item], split)]
            return [Output(None, one_line(error), 0.0, None)]

    def _run_batch(self, items: list[Item]) -> list[Output]:
        import torch

        batch = torch.from_numpy(np.stack([item.rain for item in items])).to(self.device)
        batch = batch.permute(0, 3, 1, 2).float().div_(255)
        _reset_peak_memory(self.device)
        started = time.perf_counter()
        with torch.inference_mode():
            height, width = batch.shape[-2:]
            if self.tile and max(height, width) > self.tile:
                result = self.derainer.derain_in_tiles(batch, self.tile, self.overlap)
            else:
                result = self.derainer.derain(batch)
            if self.device.startswith("cuda"):
                torch.cuda.synchronize()
        seconds = (time.perf_counter() - started) / len(items)
        peak = _peak_memory_mb(self.device)
        if not isinstance(result, torch.Tensor) or tuple(result.shape) != tuple(batch.shape):
            shape = tuple(getattr(result, "shape", ()))
            error = f"returned shape {shape}, expected {tuple(batch.shape)}"
            return [Output(None, error, seconds, peak) for _ in items]
        outputs = []
        for image in result.detach().float().cpu():
            if not torch.isfinite(image).all():
                outputs.append(Output(None, "returned NaN or infinite values", seconds, peak))
                continue
            outputs.append(Output(to_pixels(image), None, seconds, peak))
        return outputs


class FolderSource(Source):
    """Outputs computed elsewhere, found by sample key (`--outputs DIR --name NAME`)."""

    def __init__(self, folder: Path, name: str):
        from rainbench.models.external import OutputsFolder

        self.outputs = OutputsFolder(folder, name)
        self.name = name

    def info(self) -> dict:
        return self.outputs.info()

    def run(self, items: list[Item], split: str) -> list[Output]:
        outputs = []
        for item in items:
            height, width = item.rain.shape[:2]
            try:
                image = self.outputs.load(item.key, (width, height), split=split)
            except DerainerError as error:
                outputs.append(Output(None, str(error), 0.0, None))
                continue
            outputs.append(Output(image, None, 0.0, None))
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
