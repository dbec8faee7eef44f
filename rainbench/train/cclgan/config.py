"""Every setting of a CCLGAN training run: the run's own (`RunConfig`) and CCLGAN's
networks and losses, with the defaults of docs/cclgan.md (the research note's, and
the public code's where the note names none).
"""

from dataclasses import dataclass

from rainbench.train.core.config import RunConfig, SettingsError

SEMANTIC_ENCODERS = ("vgg16", "clip")


@dataclass(frozen=True)
class CCLGANConfig(RunConfig):
    # Generators: CycleGAN's resnet_9blocks, 64 channels.
    channels: int = 64
    blocks: int = 9
    # Loss weights.
    adversarial: float = 1.0  # on the mean of the two hinge terms
    location_contrast: float = 2.0  # on the mean of the four PatchNCE terms (public λ_NCE)
    identity: float = 0.5  # on L1(G(clean), clean) + L1(F(rainy), rainy)
    semantic_contrast: float = 0.5  # cycle contrast in the encoder's space, both cycles
    discriminator_contrast: float = 0.005  # cycle contrast in the discriminators' space
    weak_negative: float = 0.1  # the translated image's share of a ratio's denominator
    # Location contrast (PatchNCE with cross encoders).
    nce_layers: tuple[int, ...] = (4, 7, 10)  # CUT's layers 4, 8, 12 in CycleGAN's layout
    nce_locations: int = 256
    temperature: float = 0.07
    # Cycle contrast.
    semantic_encoder: str = "vgg16"  # or "clip"
    random_encoder: bool = False  # random weights of the same architecture: tests only
    discriminator_levels: int = 2
    discriminator_locations: int = 64
    # Data augmentation: horizontal flips of both crops, drawn independently.
    flip: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.crop % 4:
            # Two stride-2 convolutions down, two transposed ones up: other sides come
            # back a few pixels larger than they went in.
            below = self.crop - self.crop % 4  # the base class has checked it is ≥ MIN_CROP
            raise SettingsError(
                f"--crop {self.crop}: CCLGAN's generators halve the crop twice, so it must be "
                f"a multiple of 4 ({below} or {below + 4})"
            )
        last = 9 + self.blocks  # the last residual block's index
        if not self.nce_layers or max(self.nce_layers) > last:
            raise SettingsError(
                f"nce_layers {self.nce_layers} must lie within 0…{last} for {self.blocks} blocks"
            )
        if self.semantic_encoder not in SEMANTIC_ENCODERS:
            raise SettingsError(
                f"semantic_encoder must be one of {', '.join(SEMANTIC_ENCODERS)}, "
                f"not {self.semantic_encoder!r}"
            )
        if not 1 <= self.discriminator_levels <= 4:
            raise SettingsError("discriminator_levels must lie within 1…4")
