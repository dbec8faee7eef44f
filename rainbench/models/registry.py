"""The derainer registry: every derainer is a `DerainerSpec` registered by name, built-in
or from an installed package's entry point in the group `rainbench.derainers`, and
`create_derainer(name)` builds it. Listing never imports torch.
"""

import dataclasses
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import TYPE_CHECKING

from rainbench.errors import RainbenchError

if TYPE_CHECKING:
    from rainbench.models.base import Derainer

ENTRY_POINT_GROUP = "rainbench.derainers"

# Modules whose import registers the built-in derainers, imported on first use.
_PROVIDERS = ("rainbench.models.builtin",)

BUILT_IN = "built-in"


class DerainerError(RainbenchError):
    """A derainer cannot be built or run (unknown name, missing checkpoint, failed
    command, …); the message is one line saying what to do."""


@dataclass(frozen=True)
class DerainerSpec:
    name: str
    description: str  # one line, for `rainbench models`
    # factory(checkpoint: Path | None, device: str, **options) → Derainer
    factory: Callable[..., "Derainer"]
    needs_checkpoint: bool = False
    source: str = BUILT_IN  # or the distribution an entry point comes from

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "needs_checkpoint": self.needs_checkpoint,
            "source": self.source,
        }


_REGISTRY: dict[str, DerainerSpec] = {}


def register(spec: DerainerSpec) -> DerainerSpec:
    _REGISTRY[spec.name] = spec
    return spec


def create_derainer(
    name: str, checkpoint: Path | None = None, device: str = "cpu", **options
) -> "Derainer":
    """The derainer registered as `name`, built for `device` from `checkpoint` with
    `options` (each derainer documents its own)."""
    spec = check_derainer(name)
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        if not checkpoint.exists():
            raise DerainerError(f"checkpoint {checkpoint} not found: give an existing file")
    elif spec.needs_checkpoint:
        raise DerainerError(f"{name} needs a checkpoint: give one (--checkpoint PATH)")
    return spec.factory(checkpoint, device, **options)


def check_derainer(name: str) -> DerainerSpec:
    """The spec registered as `name`, without building it; DerainerError if unknown."""
    specs = {spec.name: spec for spec in list_derainers()}
    if name not in specs:
        raise DerainerError(
            f"unknown derainer {name!r}; known: {', '.join(specs)} (see rainbench models)"
        )
    return specs[name]


def list_derainers() -> list[DerainerSpec]:
    """The built-ins, then the installed plug-ins, each by name. A broken plug-in is
    left out with a warning naming its entry point."""
    for module in _PROVIDERS:
        import_module(module)
    specs = dict(_REGISTRY)
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            spec = _load_entry_point(entry_point)
            if spec.name in specs:
                taken_by = specs[spec.name].source
                raise DerainerError(f"the name {spec.name!r} is taken by {taken_by}")
        except DerainerError as error:
            warnings.warn(
                f"skipping derainer entry point {entry_point.name} = {entry_point.value}: {error}",
                stacklevel=2,
            )
            continue
        specs[spec.name] = spec
    return sorted(specs.values(), key=lambda spec: (spec.source != BUILT_IN, spec.name))


def _load_entry_point(entry_point: EntryPoint) -> DerainerSpec:
    """The spec an entry point names, or that the zero-argument callable it names
    returns, with its distribution as source; DerainerError saying why not."""
    try:
        loaded = entry_point.load()
        spec = loaded() if callable(loaded) else loaded
    except Exception as error:  # a plug-in's bug must not break listing
        lines = str(error).strip().splitlines() or [""]
        raise DerainerError(f"{type(error).__name__}: {lines[0]}") from error
    if not isinstance(spec, DerainerSpec):
        raise DerainerError(f"it gives a {type(spec).__name__}, not a DerainerSpec")
    distribution = entry_point.dist.name if entry_point.dist else entry_point.value
    return dataclasses.replace(spec, source=distribution)
