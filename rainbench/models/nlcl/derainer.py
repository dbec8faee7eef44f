"""The `nlcl` derainer: the background generator of an NLCL checkpoint (from
`rainbench train nlcl`, or imported from the public release with `rainbench nlcl
import-checkpoint`), at full resolution: no resizing. Asked for tiles (`--tile`), it
runs layer by layer with whole-image InstanceNorm statistics, so tiles give the
whole-image result and need no overlap.

Results of an imported checkpoint are named `nlcl-published`, so that the published
weights and one's own training sit side by side in one results folder, and the
leaderboard labels the row as imported weights.
"""

from pathlib import Path

from rainbench.models.base import Derainer, read_checkpoint
from rainbench.models.registry import DerainerError


class NLCLDerainer(Derainer):
    name = "nlcl"
    version = "1"

    def __init__(self, checkpoint: Path, device: str = "cpu"):
        from rainbench.models.nlcl.checkpoint import CHECKPOINT_FORMAT, load_generator
        from rainbench.models.trained_on import trained_on

        super().__init__(device)
        state = read_checkpoint(
            checkpoint,
            CHECKPOINT_FORMAT,
            "a rainbench NLCL checkpoint (train one with rainbench train nlcl, or convert the "
            "published one with rainbench nlcl import-checkpoint)",
        )
        self.generator = load_generator(state, "background", str(checkpoint)).to(device)
        self.step = state.get("step")
        self.imported_from = state.get("imported_from")
        self.trained_on = trained_on(state)
        if self.imported_from:
            self.name = f"{self.name}-published"

    def derain(self, batch):
        import torch

        if batch.shape[-2] * batch.shape[-1] < 2:  # torch's own refusal speaks of training
            raise DerainerError(
                "nlcl cannot derain a 1×1 picture: its InstanceNorm needs more than one pixel"
            )
        with torch.inference_mode():
            output = self.generator(batch.to(self.device).float() * 2 - 1)
        return ((output + 1) / 2).clamp(0, 1).to(batch.device, batch.dtype)

    def derain_in_tiles(self, batch, tile: int, overlap: int):
        """Only tile×tile pieces on the device; the activations stay in host memory."""
        import torch

        from rainbench.models.nlcl.generator import generate_in_tiles

        with torch.inference_mode():
            output = generate_in_tiles(self.generator, batch.float().cpu() * 2 - 1, tile)
        return ((output + 1) / 2).clamp(0, 1).to(batch.device, batch.dtype)

    def options(self) -> dict:
        if self.imported_from:
            return {"step": self.step, "imported_from": self.imported_from}
        return {"step": self.step}
