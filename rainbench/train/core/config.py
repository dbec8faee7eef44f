"""The settings every training run has, whatever the method: length, optimiser, data,
machinery and validation. A method's config extends `RunConfig` with its networks and
losses. A run keeps its settings in RUN/config.json; resuming with different ones is
refused, except for those that do not change what a step computes (`RESUMABLE`), and
`steps` and `decay_steps` while no trained step has felt the decay (rainbench.train.core.loop).
"""

from dataclasses import asdict, dataclass, fields
from typing import ClassVar, Self

from rainbench.errors import RainbenchError
from rainbench.tagging.tagger import RAIN_TYPES

# How the location contrast picks its negatives (rainbench.train.core.contrast).
NEGATIVE_SELECTIONS = ("cut", "domain", "hcsc")
# The PatchGAN discriminator's deepest level is InstanceNorm-ed; below this crop it is 1×1.
MIN_CROP = 24


class SettingsError(RainbenchError, ValueError):
    """Settings that cannot be honoured: a value out of its range, or at odds with
    another (a patch larger than the crop). The message is one line naming the option
    and the values that would do."""


@dataclass(frozen=True)
class RunConfig:
    steps: int = 100_000
    batch: int = 1
    crop: int = 256
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    # The last decay_steps steps run at lr·N/(N+1) … lr·1/(N+1) (0: constant); see set_lr.
    decay_steps: int = 0
    # Data.
    rain_types: tuple[str, ...] | None = None
    split: str = "train"
    workers: int = 2
    seed: int = 0
    # A capture that does not read: "raise" stops the run; "skip" replaces it in the
    # epoch with the next that reads (RainDataset's on_error), with a warning.
    on_error: str = "raise"
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
    # Step checkpoints kept, the newest (0: all). Three cover the last 1,500 steps at the
    # default checkpoint_every, room to step back from a GAN that went wrong, in bounded
    # space (NLCL's are 59 MB each, CCLGAN's 348 MB).
    keep_checkpoints: int = 3
    validate_every: int = 0  # 0: never
    val_split: str | None = None  # a paired split for psnr_y, e.g. syn-streak
    val_real: str | None = None  # a split whose real rainy captures get niqe, e.g. val
    val_dataset: str | None = None  # where val_split is (None: the training set)
    val_images: int = 8

    # Settings a run may resume with changed: how it is run, logged and watched, not
    # what a step computes. (Thread counts are no setting: they change rounding only.)
    RESUMABLE: ClassVar[frozenset[str]] = frozenset({
        "workers", "compile", "log_every", "checkpoint_every", "keep_checkpoints",
        "validate_every", "val_split", "val_real", "val_dataset", "val_images", "on_error",
    })  # fmt: skip

    def __post_init__(self) -> None:
        if self.amp not in ("off", "bf16"):
            raise SettingsError(f"amp must be off or bf16, not {self.amp!r}")
        if self.on_error not in ("raise", "skip"):
            raise SettingsError(f"on_error must be raise or skip, not {self.on_error!r}")
        if self.nce_negatives not in NEGATIVE_SELECTIONS:
            raise SettingsError(
                f"nce_negatives must be one of {', '.join(NEGATIVE_SELECTIONS)}, "
                f"not {self.nce_negatives!r}"
            )
        if self.crop < MIN_CROP:
            raise SettingsError(
                f"--crop {self.crop} is too small for the discriminator: at least {MIN_CROP}"
            )
        unknown = [name for name in self.rain_types or () if name not in RAIN_TYPES]
        if unknown:
            raise SettingsError(
                f"--rain-types: {', '.join(unknown)} is not a rain type; the rain types are "
                f"{', '.join(RAIN_TYPES)}"
            )
        if self.rain_types is not None:  # a set of types: in any order, or repeated, the same
            chosen = tuple(name for name in RAIN_TYPES if name in self.rain_types)
            object.__setattr__(self, "rain_types", chosen)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Self:
        known = {f.name for f in fields(cls)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known}
        return cls(**values)

    def differences(self, other: "RunConfig") -> dict[str, tuple]:
        """Every setting that differs: its name → (ours, other's)."""
        mine, theirs = self.to_json(), other.to_json()
        return {name: (mine[name], theirs[name]) for name in mine if mine[name] != theirs[name]}
