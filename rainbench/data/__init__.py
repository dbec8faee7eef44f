"""Loading the shards for training: `RainDataset` (an IterableDataset over a
rainbench dataset) and `Loader` (a DataLoader that can resume mid-epoch).
"""

from rainbench.data.dataset import (
    RainDataset,
    SettingError,
    SkippedSample,
    current_slot,
    epoch_order,
)
from rainbench.data.loader import Loader
from rainbench.data.select import Filters

__all__ = [
    "Filters",
    "Loader",
    "RainDataset",
    "SettingError",
    "SkippedSample",
    "current_slot",
    "epoch_order",
]
