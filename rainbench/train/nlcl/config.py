"""Every setting of an NLCL training run, with the public code's defaults (see
docs/nlcl.md): the run's own (`RunConfig`) and NLCL's networks and losses.
"""

from dataclasses import dataclass

from rainbench.train.core.config import RunConfig, SettingsError


@dataclass(frozen=True)
class NLCLConfig(RunConfig):
    # Generator shape: the paper's is 32 channels and 16 residual blocks.
    channels: int = 32
    blocks: int = 16
    # Loss weights.
    adversarial: float = 1.0
    consistency: float = 1.0
    sparsity: float = 0.1
    layer_contrast: float = 1.0
    location_contrast: float = 1.0
    identity: bool = True  # CUT mode: the location contrast also maps clean → clean
    # Layer contrast: non-local sampling and the (optionally asymmetric) loss.
    positives: int = 8  # self-similar image patches from B̂
    negatives: int = 128  # self-similar rain patches from R̂
    window: int = 40
    patch: int = 16
    temperature: float = 0.07
    rain_temperature: float | None = None  # None: symmetric (CVPR); lower: asymmetric
    rain_weight: float = 1.0
    # Location contrast (PatchNCE).
    nce_layers: tuple[int, ...] = (0, 2, 4, 8, 12)
    nce_locations: int = 256
    # The public code's defects, reproduced when True: the differential tests
    # (tests/train/test_nlcl_reference.py) switch them on to prove everything else
    # equal. Not CLI options: docs/nlcl.md, "Proven equal to the public code".
    public_heads: bool = False  # nce and image heads never stepped, rain heads twice
    public_levels: bool = False  # the deepest discriminator level left out

    def __post_init__(self) -> None:
        # Generator layers 0 (first conv) … blocks + 1 (tail) have `channels` channels.
        if not self.nce_layers or max(self.nce_layers) > self.blocks + 1:
            raise SettingsError(
                f"nce_layers {self.nce_layers} must lie within 0…{self.blocks + 1} "
                f"for a generator of {self.blocks} blocks"
            )
        super().__post_init__()
        if self.patch > self.crop:
            raise SettingsError(
                f"--patch {self.patch} is larger than --crop {self.crop}: the non-local "
                f"sampler's patches lie inside the crop (at most {self.crop})"
            )
