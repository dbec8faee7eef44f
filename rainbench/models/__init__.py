"""Derainers by name: `create_derainer("guided")`. Built-ins (identity, and the classical
guided and dcp) and plug-ins from the entry-point group `rainbench.derainers`;
`list_derainers()` names them all. A derainer maps a float batch N×3×H×W in [0, 1] to
one of the same shape; `derain_tiled` runs one over large images in tiles.
"""

from rainbench.models.base import Derainer
from rainbench.models.external import CommandDerainer, OutputsFolder
from rainbench.models.registry import (
    ENTRY_POINT_GROUP,
    DerainerError,
    DerainerSpec,
    check_derainer,
    create_derainer,
    list_derainers,
    register,
)
from rainbench.models.tiling import derain_tiled

__all__ = [
    "ENTRY_POINT_GROUP",
    "CommandDerainer",
    "Derainer",
    "DerainerError",
    "DerainerSpec",
    "OutputsFolder",
    "check_derainer",
    "create_derainer",
    "derain_tiled",
    "list_derainers",
    "register",
]
