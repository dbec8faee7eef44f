"""The derainer registry: every derainer is a `DerainerSpec` registered by name, built-in
or from an installed package's entry point in the group `rainbench.derainers`, and
`create_derainer(name)` builds it. Listing never imports torch. The registered name is
the derainer's name everywhere (results, provenance); a class's `name` attribute is only
the default for a derainer built directly in Python.
"""

import contextlib
import dataclasses
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import EntryPoint, PackageNotFoundError, entry_points, version
from pathlib import Path
from typing import TYPE_CHECKING

from rainbench.errors import RainbenchError, one_line

if TYPE_CHECKING:
    from rainbench.models.base import Derainer

ENTRY_POINT_GROUP = "rainbench.derainers"

# Modules whose import registers the built-in derainers, imported on first use.
_PROVIDERS = ("rainbench.models.builtin",)

BUILT_IN = "built-in"


class DerainerError(RainbenchError):
    """A derainer cannot be built or run (unknown name, missing checkpoint, failed
    command, …); the message is one line saying what to do."""


class PluginWarning(UserWarning):
    """A derainer entry point left out (it fails to load, or its name is taken); the CLI
    prints it as one `warning:` line."""


@dataclass(frozen=True)
class DerainerSpec:
    name: str
    description: str  # one line, for `rainbench models`
    # factory(checkpoint: Path | None, device: str, **options) → Derainer
    factory: Callable[..., "Derainer"]
    needs_checkpoint: bool = False
    source: str = BUILT_IN  # or the distribution an entry point comes from
    entry_point: str | None = None  # "module:attribute", for a plug-in
    version: str | None = None  # the plug-in's distribution's version

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "needs_checkpoint": self.needs_checkpoint,
            "source": self.source,
        }

    def origin(self) -> dict:
        """Where the derainer's code comes from, for the provenance: the package and its
        version, and the entry point (a plug-in) or the factory's module (a built-in)."""
        if self.source == BUILT_IN:
            return {
                "package": "rainbench",
                "version": _installed_version("rainbench"),
                "module": getattr(self.factory, "__module__", None),
            }
        return {"package": self.source, "version": self.version, "entry_point": self.entry_point}


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
    try:
        return spec.factory(checkpoint, device, **options)
    except DerainerError:
        raise
    # A plug-in's own bug, or an option its factory refuses; a sys.exit() in its code
    # (an argparse of its own) too, which would end rainbench.
    except (Exception, SystemExit) as error:
        raise DerainerError(
            f"derainer {name} ({spec.source}) could not be built: {one_line(error)}"
        ) from error


def check_derainer(name: str) -> DerainerSpec:
    """The spec registered as `name`, without building it; DerainerError if unknown,
    saying so when a plug-in that failed to load may be the one meant."""
    skipped: dict[str, str] = {}
    specs = {spec.name: spec for spec in _listed(skipped)}
    if name in specs:
        return specs[name]
    if name in skipped:
        raise DerainerError(f"derainer {name!r} is not available: {skipped[name]}")
    broken = [reason for reason in skipped.values() if "failed to load" in reason]
    also = f"; {len(broken)} plug-in(s) failed to load: {'; '.join(broken)}" if broken else ""
    raise DerainerError(
        f"unknown derainer {name!r}; known: {', '.join(specs)} (see rainbench models){also}"
    )


def list_derainers() -> list[DerainerSpec]:
    """The built-ins, then the installed plug-ins, each by name. A broken plug-in is
    left out with a `PluginWarning` naming its entry point."""
    return _listed({})


def _listed(skipped: dict[str, str]) -> list[DerainerSpec]:
    """`list_derainers`, recording in `skipped` why each entry point left out was (by
    its name)."""
    for module in _PROVIDERS:
        import_module(module)
    specs = dict(_REGISTRY)
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        label = f"entry point {entry_point.name} = {entry_point.value}"
        try:
            spec = _load_entry_point(entry_point)
        except DerainerError as error:
            skipped[entry_point.name] = f"the plug-in {label} failed to load: {error}"
            warnings.warn(f"skipping derainer {label}: {error}", PluginWarning, stacklevel=3)
            continue
        if spec.name in specs:
            taken_by = specs[spec.name].source
            warnings.warn(
                f"skipping derainer {label}: the name {spec.name!r} is taken by {taken_by}",
                PluginWarning,
                stacklevel=3,
            )
            continue
        specs[spec.name] = spec
    return sorted(specs.values(), key=lambda spec: (spec.source != BUILT_IN, spec.name))


def _installed_version(distribution: str) -> str | None:
    try:
        return version(distribution)
    except PackageNotFoundError:  # run from a source tree that is not installed
        return None


def _load_entry_point(entry_point: EntryPoint) -> DerainerSpec:
    """The spec an entry point names, or that the zero-argument callable it names
    returns, with its distribution as source; DerainerError saying why not."""
    try:
        # What its import prints goes to stderr: stdout is the command's (`--json`).
        with contextlib.redirect_stdout(sys.stderr):
            loaded = entry_point.load()
            spec = loaded() if callable(loaded) else loaded
    # A plug-in's bug must not break listing, nor its module's sys.exit() (an argparse
    # run at import) end rainbench.
    except (Exception, SystemExit) as error:
        raise DerainerError(one_line(error)) from error
    if not isinstance(spec, DerainerSpec):
        raise DerainerError(f"it gives a {type(spec).__name__}, not a DerainerSpec")
    # Listed and sorted with the others' names: a DerainerSpec given its arguments out of
    # order broke `rainbench models` for every plug-in.
    if not (isinstance(spec.name, str) and spec.name.isprintable() and spec.name.strip()):
        raise DerainerError(f"its DerainerSpec's name is {spec.name!r}, not a one-line name")
    distribution = entry_point.dist.name if entry_point.dist else entry_point.value
    return dataclasses.replace(
        spec,
        source=distribution,
        entry_point=entry_point.value,
        version=entry_point.dist.version if entry_point.dist else None,
    )
