"""The settings every training run has, whatever the method: length, optimiser, data,
machinery and validation. A method's config extends `RunConfig` with its networks and
losses. A run keeps its settings in RUN/config.json; resuming with different ones is
refused, except for `steps`, which may grow.
"""

from dataclasses import asdict, dataclass, fields
from typing import Self

# How the location contrast picks its negatives (rainbench.train.core.contrast).
NEGATIVE_SELECTIONS = ("cut", "domain", "hcsc")


@dataclass(frozen=True)
class RunConfig:
    steps: int = 100_000
    batch: int = 1
    crop: int = 256
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    decay_steps: int = 0  # linear decay to 0 over the last decay_steps (0: constant)
    # Data.
    rain_types: tuple[str, ...] | None = None
    split: str = "train"
    workers: int = 2
    seed: int = 0
    # The location contrast's negatives (rainbench.train.core.contrast): cut, domain or
    # hcsc; hcsc clusters the last prototype_memory keys of a layer into `prototypes`.
    nce_negatives: str = "cut"
    prototypes: int = 8
    prototype_memory: int = 1024
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
        if self.amp not in ("off", "bf16"):
            raise ValueError(f"amp must be off or bf16, not {self.amp!r}")
        if self.nce_negatives not in NEGATIVE_SELECTIONS:
            raise ValueError(
                f"nce_negatives must be one of {', '.join(NEGATIVE_SELECTIONS)}, "
                f"not {self.nce_negatives!r}"
            )

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Self:
        known = {f.name for f in fields(cls)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known}
        return cls(**values)

    def differences(self, other: "RunConfig") -> list[str]:
        """Settings that differ, `steps` aside."""
        mine, theirs = self.to_json(), other.to_json()
        return [name for name in mine if name != "steps" and mine[name] != theirs[name]]
