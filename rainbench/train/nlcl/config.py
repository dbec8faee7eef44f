"""Every setting of an NLCL training run, with the public code's defaults (see
docs/nlcl.md). A run keeps its settings in RUN/config.json; resuming with different
ones is refused, except for `steps`, which may grow.
"""

from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class NLCLConfig:
    steps: int = 100_000
    batch: int = 1
    crop: int = 256
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    decay_steps: int = 0  # linear decay to 0 over the last decay_steps (0: constant)
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
    # Data.
    rain_types: tuple[str, ...] | None = None
    split: str = "train"
    workers: int = 2
    seed: int = 0
    # Machinery.
    amp: str = "off"  # "off" or "bf16"
    compile: bool = False
    log_every: int = 10
    checkpoint_every: int = 500
    validate_every: int = 0  # 0: never
    val_split: str | None = None  # a paired split for psnr_y, e.g. syn-streak
    val_real: str | None = None  # a split whose real rainy captures get niqe, e.g. val
    val_dataset: str | None = None  # where val_split is (None: the training set)
    val_images: int = 8

    def __post_init__(self) -> None:
        # Generator layers 0 (first conv) … blocks + 1 (tail) have `channels` channels.
        if not self.nce_layers or max(self.nce_layers) > self.blocks + 1:
            raise ValueError(
                f"nce_layers {self.nce_layers} must lie within 0…{self.blocks + 1} "
                f"for a generator of {self.blocks} blocks"
            )
        if self.amp not in ("off", "bf16"):
            raise ValueError(f"amp must be off or bf16, not {self.amp!r}")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "NLCLConfig":
        known = {f.name for f in fields(cls)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known}
        return cls(**values)

    def differences(self, other: "NLCLConfig") -> list[str]:
        """Settings that differ, `steps` aside."""
        mine, theirs = self.to_json(), other.to_json()
        return [name for name in mine if name != "steps" and mine[name] != theirs[name]]
