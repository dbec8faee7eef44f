"""`RainDataset`: the shards as a PyTorch IterableDataset, exactly once per epoch across
nodes × DataLoader workers, shuffled from (seed, epoch), resumable mid-epoch.

The stages, each a small function: select samples from the manifests
(`rainbench.data.select`), order them for the epoch and give every loader slot (rank ×
worker) its own stride of that order, read members from the shards by offset
(`rainbench.data.read`), decode upright, and cut K random crops per decoded image.

Modes: `single` (one picture per sample), `paired` (a paired split: the same crop of
rain and ground truth, and of a real pair's confidence map), `unpaired` (a rainy crop
with a clean crop, for NLCL).
`single` and `unpaired` read still captures only: video rows are skipped (a video is
no picture; `rainbench.capture.video.VideoFrames` reads its frames by index), and so
are the stills of a burst that real pairs were made of (`rainbench.data.select`).
"""

import hashlib
import math
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache
from numbers import Integral

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info

from rainbench.capture.decode import check_jpeg_scans, readers_max_pixels
from rainbench.capture.exif import without_app1
from rainbench.capture.formats import FORMATS, Format
from rainbench.capture.orientation import STEPS, turn_upright, upright_size
from rainbench.data.read import ShardReader
from rainbench.data.select import Filters, SettingError, as_values, captures, pairs
from rainbench.errors import first_line
from rainbench.seeds import seed_from
from rainbench.shards.dataset import DatasetError, open_dataset
from rainbench.shards.members import ShardError, check_jpeg, decode_picture, size_limit
from rainbench.store import local_path

MODES = ("single", "paired", "unpaired")
ON_ERROR = ("raise", "skip")


class SkippedSample(UserWarning):
    """A sample that could not be read, replaced in the epoch (`on_error="skip"`)."""


@dataclass(frozen=True)
class Slot:
    """One loader process's place among all of them: rank × DataLoader worker."""

    index: int
    count: int


def current_slot(
    rank: int | None = None, world_size: int | None = None, first_worker: int = 0
) -> Slot:
    """This process's slot: rank and world size from torch.distributed when it is
    initialised, else from $RANK / $WORLD_SIZE, else 0 of 1; times the DataLoader worker.
    Worker 0 plays the slot of worker `first_worker`, worker 1 the next one, cyclically."""
    rank, world_size = rank_and_world_size(rank, world_size)
    worker = get_worker_info()
    workers, worker_id = (worker.num_workers, worker.id) if worker else (1, 0)
    return Slot(rank * workers + (worker_id + first_worker) % workers, world_size * workers)


def rank_and_world_size(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """The ones given, else from torch.distributed when it is initialised, else from
    $RANK / $WORLD_SIZE, else 0 of 1."""
    if rank is not None and world_size is not None:
        return rank, world_size
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return _environment_rank()


def _environment_rank() -> tuple[int, int]:
    """$RANK of $WORLD_SIZE (0 of 1 where unset), refused unless a rank of that world: a
    $RANK without its $WORLD_SIZE, or past it, read a stride of the epoch that another
    rank reads too, and left samples unread, without a word."""
    rank, world_size = os.environ.get("RANK", "0"), os.environ.get("WORLD_SIZE", "1")
    try:
        if 0 <= int(rank) < int(world_size):
            return int(rank), int(world_size)
    except ValueError:
        pass
    raise SettingError(
        f"$RANK={rank} of $WORLD_SIZE={world_size} is no rank of the world: set both, as "
        "torchrun does, or give RainDataset rank= and world_size="
    )


@dataclass
class RainDataset(IterableDataset):
    """Crops (or whole pictures) from a rainbench dataset, as dicts of tensors and labels.

    Every crop is a float32 tensor 3×crop×crop in [0, 1] (RGB, upright). Each sample also
    carries its `key`, its manifest labels and `__slot__` / `__position__`, which
    `Loader` uses to know what has been consumed.
    """

    root: str | os.PathLike
    mode: str = "single"
    # single: which captures; unpaired: which rainy ones; paired: Filters.query only
    filters: Filters = field(default_factory=Filters)
    # unpaired: which clean captures (None: those of filters.split, all when it is None)
    clean_filters: Filters | None = None
    paired_split: str | None = None  # paired: the synthetic split, e.g. syn-streak
    crop: int | None = 256  # None: whole pictures (then use batch_size=1)
    crops_per_image: int = 1  # K crops from each decoded picture
    shuffle: bool = True
    seed: int = 0
    verify: bool = False  # check each shard's sha256 when first opened
    # None: Pillow on the CPU. "cuda" (or "cpu"): JPEGs decoded by TorchCodec (else
    # torchvision) on that device (nvJPEG on a GPU; use num_workers=0 then), other
    # formats by Pillow.
    decode_device: str | None = None
    rank: int | None = None  # None: from torch.distributed or the environment
    world_size: int | None = None
    # "raise": a member that cannot be read or decoded stops the epoch (a ShardError).
    # "skip": the sample is replaced by the next of this slot's order that reads, with a
    # SkippedSample warning; the epoch keeps its length and resumes exactly.
    on_error: str = "raise"

    def __post_init__(self) -> None:
        super().__init__()
        if self.mode not in MODES:
            raise SettingError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.on_error not in ON_ERROR:
            raise SettingError(
                f"on_error must be one of {', '.join(ON_ERROR)}, not {self.on_error!r}"
            )
        # Read in one mode only: given in another, a paired split was read as the whole
        # dataset's captures, every split's, with no word.
        if self.paired_split is not None and self.mode != "paired":
            raise SettingError(f"paired_split is read in mode='paired', not {self.mode!r}")
        if self.clean_filters is not None and self.mode != "unpaired":
            raise SettingError(f"clean_filters is read in mode='unpaired', not {self.mode!r}")
        for name in ("crops_per_image", "crop", "rank", "world_size"):
            _check_whole(name, getattr(self, name))
        if self.crops_per_image < 1:
            raise SettingError("crops_per_image must be at least 1")
        if self.crop is not None and self.crop < 1:
            raise SettingError(
                f"crop must be at least 1 px, or None for whole pictures; not {self.crop}"
            )
        _check_rank(self.rank, self.world_size)
        readers_max_pixels()  # a bad $RAINBENCH_MAX_PIXELS: said here, not by a worker
        if self.decode_device is not None:
            _check_decode_device(self.decode_device)
        # The epoch lives in memory shared with the DataLoader workers: a persistent one
        # (persistent_workers=True) iterates the epoch set since it started, not its first
        # again and again.
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        self._resume: dict = {}
        self._first_worker = 0  # the slot DataLoader worker 0 plays (see load_state_dict)
        self._resume_epoch = 0  # the epoch the two above are of: a persistent worker keeps them
        # A URL's manifests are fetched once, here; every worker reads shards by range.
        # dataset.json is read as every command reads it: refused in one line unless a
        # dataset's (docs/dataset-format.md).
        dataset = open_dataset(local_path(self.root))
        dataset.read_info()
        local = dataset.root
        self._reader = ShardReader(local, verify=self.verify)
        if self.mode == "paired":
            if not self.paired_split:
                raise DatasetError("paired mode needs paired_split (e.g. syn-streak)")
            self.samples = pairs(local, self.paired_split, self.filters)
            # Real pairs (`rainbench pairs`) carry a confidence map; a pair without one,
            # in a mix of splits, gets a map of ones so that batches collate.
            self._confidence = bool(self.samples["confidence_member"].notna().any())
        elif self.mode == "unpaired":
            rainy = self.filters if self.filters.layer else replace(self.filters, layer="rainy")
            self.samples = captures(local, rainy)
            # By default the clean partners come from the rainy captures' split: another
            # split's clean captures (test ones, which synth renders pairs on) must not
            # leak into training.
            clean = self.clean_filters or Filters(split=self.filters.split)
            self.clean = captures(local, clean if clean.layer else replace(clean, layer="clean"))
            if self.clean.empty:
                raise DatasetError(self._no_clean())
        else:
            self.samples = captures(local, self.filters)
        if self.samples.empty:
            raise DatasetError(f"no samples in {self.root} pass the filters")

    def __len__(self) -> int:
        """Crops per epoch over all ranks and workers."""
        return len(self.samples) * self.crops_per_image

    def slot_items(self, slot: Slot) -> int:
        """Crops per epoch of one slot: every `slot.count`-th sample from `slot.index`,
        as `__iter__` takes them."""
        return len(range(slot.index, len(self.samples), slot.count)) * self.crops_per_image

    @property
    def epoch(self) -> int:
        """The epoch iterated next."""
        return int(self._epoch[0])

    @epoch.setter
    def epoch(self, epoch: int) -> None:
        self._epoch[0] = epoch

    @property
    def resuming(self) -> bool:
        """Whether the next iteration resumes a state loaded (`load_state_dict`): one of
        the epoch set now, with crops consumed."""
        return self.epoch == self._resume_epoch and bool(self._resume)

    def set_epoch(self, epoch: int) -> None:
        """Iterate epoch `epoch` next; a resume point of another epoch is dropped."""
        if epoch != self.epoch:
            self._resume, self._first_worker = {}, 0
        self.epoch = epoch

    def state_dict(self, consumed: dict[int, int] | None = None) -> dict:
        """Where this epoch stands: crops consumed per slot (from `Loader`), and which
        samples the epoch orders (`selection`)."""
        return {
            "epoch": self.epoch,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "crops_per_image": self.crops_per_image,
            "consumed": dict(consumed or {}),
            "samples": self.selection,
        }

    @cached_property
    def selection(self) -> dict:
        """The samples an epoch orders, as a count and the sha256 of their shards and keys
        in order: the epoch's order and every slot's share follow from them and the seed."""
        rows = zip(self.samples["shard"], self.samples["key"], strict=True)
        text = "".join(f"{shard}\0{key}\n" for shard, key in rows)
        return {"count": len(self.samples), "sha256": hashlib.sha256(text.encode()).hexdigest()}

    def load_state_dict(self, state: dict, first_worker: int = 0) -> None:
        """Resume: the next iteration of `state['epoch']` skips what was consumed.
        DataLoader takes batches from its workers 0, 1, … in turn: for the batches to come
        in the uninterrupted order, worker 0 plays the slot of worker `first_worker`, the
        one whose batch was next (`Loader` works it out), and so on cyclically."""
        if state["seed"] != self.seed:
            raise SettingError(f"the state was saved with seed {state['seed']}, not {self.seed}")
        # Another order (shuffle) or another count of crops per sample: the counts, of
        # crops, would repeat samples and skip others. A state from before they were
        # recorded is taken as it is.
        for name in ("shuffle", "crops_per_image"):
            if name in state and state[name] != getattr(self, name):
                raise SettingError(
                    f"the state was saved with {name} {state[name]}, not {getattr(self, name)}"
                )
        # Other samples (captures ingested or re-tagged since, other filters) are ordered
        # otherwise: the counts would repeat some and skip others. A state from before the
        # samples were recorded is taken as it is.
        saved = state.get("samples")
        if saved is not None and saved != self.selection:
            raise DatasetError(
                f"the loader state was saved over other samples ({saved['count']} then, "
                f"{self.selection['count']} now, or others in their place): the dataset or "
                "the filters changed since, and resuming would repeat samples and skip "
                f"others; start epoch {state['epoch'] + 1} with set_epoch instead"
            )
        self.epoch = self._resume_epoch = state["epoch"]
        self._resume = {int(slot): int(n) for slot, n in state["consumed"].items()}
        self._first_worker = first_worker

    def __getstate__(self) -> dict:
        # A DataLoader worker started by spawn or forkserver (under mp.spawn's ranks, or
        # with multiprocessing_context) has no process group of its own: it would take
        # itself for rank 0 of 1 and read every rank's samples. It gets this process's.
        state = self.__dict__.copy()
        state["rank"], state["world_size"] = rank_and_world_size(self.rank, self.world_size)
        return state

    def __iter__(self) -> Iterator[dict]:
        self._reader.read_again()  # a shard unreadable in an earlier pass may read now
        epoch = self.epoch  # once: set_epoch may come while a worker still reads ahead
        resuming = epoch == self._resume_epoch
        slot = current_slot(self.rank, self.world_size, self._first_worker if resuming else 0)
        skip = self._resume.get(slot.index, 0) if resuming else 0
        order = epoch_order(self.samples["shard"].to_numpy(), self.seed, epoch, self.shuffle)
        mine = order[slot.index :: slot.count]
        first, partial = divmod(skip, self.crops_per_image)
        for place in range(first, len(mine)):
            if place + 1 < len(mine):
                self._read_ahead(int(mine[place + 1]))
            crops = self._crops_or_replacement(mine, place, epoch)
            for number, crop in enumerate(crops):
                if place == first and number < partial:
                    continue
                crop["__slot__"] = slot.index
                crop["__position__"] = place * self.crops_per_image + number
                yield crop

    def _crops_or_replacement(self, mine: np.ndarray, place: int, epoch: int) -> list[dict]:
        """The crops of sample `mine[place]`; with `on_error="skip"`, if it cannot be
        read, those of the next sample of `mine` (cyclically) that can, cut where this
        place's seed and the attempt say (an unpaired partner that does not read is
        replaced alone: `_partner`): the same data give the same epoch, of the same
        length, and a resumed one picks up at the same crop. When none of `mine` reads,
        the first error stands."""
        index = int(mine[place])
        rng = np.random.default_rng(_seed(self.seed, epoch, index))
        try:
            return self._crops(index, rng)
        except ShardError as error:
            if self.on_error == "raise":
                raise
            failed = error
        for step in range(1, len(mine)):
            other = int(mine[(place + step) % len(mine)])
            rng = np.random.default_rng(_seed(self.seed, epoch, index, step))
            try:
                crops = self._crops(other, rng)
            except ShardError:
                continue  # said when its own turn comes
            warnings.warn(
                f"{failed}; skipped: sample {self.samples.iloc[index]['key']} replaced by "
                f"{self.samples.iloc[other]['key']}",
                SkippedSample,
                stacklevel=2,
            )
            return crops
        raise failed

    def _no_clean(self) -> str:
        """Why unpaired mode has no clean partners, and where else they could come from."""
        if self.clean_filters is None and self.filters.split is not None:
            split = ", ".join(as_values(self.filters.split))
            return (
                f"unpaired mode needs clean captures; none in split {split} of {self.root} "
                "(clean_filters=Filters(layer='clean') takes them from every split)"
            )
        return f"unpaired mode needs clean captures; none in {self.root} pass the clean filters"

    def _read_ahead(self, index: int) -> None:
        """From a store, fetch sample `index`'s pictures while the current one decodes."""
        row = self.samples.iloc[index]
        paired = self.mode == "paired"
        members = [row["rain_member"], row["gt_member"]] if paired else [row["member"]]
        if paired and isinstance(row["confidence_member"], str):
            members.append(row["confidence_member"])
        self._reader.prefetch(row["shard"], members)

    def _crops(self, index: int, rng: np.random.Generator) -> list[dict]:
        row = self.samples.iloc[index]
        labels = _labels(row)
        if self.mode == "paired":
            rain = self._pair_picture(row, row["rain_member"])
            gt = self._pair_picture(row, row["gt_member"])
            boxes = self._boxes(rain.shape, rng)
            crops = [{**labels, "rain": _float(rain[box]), "gt": _float(gt[box])} for box in boxes]
            if self._confidence:
                # The same crop of a real pair's confidence map: 1×h×w in [0, 1].
                member = row["confidence_member"]
                stored = None
                if isinstance(member, str):
                    stored = self._pair_picture(row, member)
                for crop, box in zip(crops, boxes, strict=True):
                    ones = torch.ones_like(crop["rain"][:1])
                    crop["gt_confidence"] = ones if stored is None else _float(stored[box][:1])
            return crops
        picture = self._capture(row)
        if self.mode == "single":
            return [
                {**labels, "image": _float(picture[box])} for box in self._boxes(picture.shape, rng)
            ]
        partner, clean = self._partner(rng)
        return [
            {
                **labels,
                "clean_key": partner["key"],
                "rain": _float(picture[box]),
                "clean": _float(clean[other]),
            }
            for box, other in zip(
                self._boxes(picture.shape, rng), self._boxes(clean.shape, rng), strict=True
            )
        ]

    def _partner(self, rng: np.random.Generator) -> tuple[pd.Series, object]:
        """A clean partner drawn from `rng`, and its picture. With `on_error="skip"`, one
        that cannot be read is replaced by the next clean capture (cyclically) that can,
        with a SkippedSample warning: the rainy sample, which did read, keeps its place
        in the epoch. When no clean capture reads, the first error stands."""
        drawn = int(rng.integers(len(self.clean)))
        tries = len(self.clean) if self.on_error == "skip" else 1
        failed = None
        for step in range(tries):
            partner = self.clean.iloc[(drawn + step) % len(self.clean)]
            try:
                picture = self._capture(partner)
            except ShardError as error:
                failed = failed or error
                continue
            if failed is not None:
                warnings.warn(
                    f"{failed}; skipped: clean partner {self.clean.iloc[drawn]['key']} "
                    f"replaced by {partner['key']}",
                    SkippedSample,
                    stacklevel=2,
                )
            return partner, picture
        raise failed

    def _capture(self, row) -> torch.Tensor:
        """A capture (see `_picture`), which must be the row's width × height: a picture
        put in its place after ingest would otherwise pass for it. A RAW capture's
        stored preview is smaller than its sensor, which the row's size is."""
        fmt = FORMATS[row["format"]]
        if fmt.raw:  # camera RAW: the stored sRGB preview, already upright
            return self._picture(row, row["member"], FORMATS["jpeg"], None)
        orientation, stored_bytes = _int(row["orientation"]), _int(row["bytes"])
        return self._picture(row, row["member"], fmt, orientation, stored_bytes, exact_size=True)

    def _pair_picture(self, row, member: str):
        """A PNG of a pair (see `_picture`), which must be the row's width × height: the
        same box is cut from rain, ground truth and confidence map, so one of another size
        would give a crop of the wrong pixels, or of padding."""
        return self._picture(row, member, FORMATS["png"], None, exact_size=True)

    def _picture(
        self,
        row,
        member: str,
        fmt: Format,
        orientation: int | None,
        stored_bytes: int | None = None,
        exact_size: bool = False,
    ):
        """The picture, upright, at least crop×crop (edges repeated): a uint8 3×H×W
        tensor, or a `StoredPicture` that turns only the crops cut from it. Bounded by
        the manifest: `stored_bytes` (a capture's size) or the row's width × height, which
        it must be exactly with `exact_size`."""
        width, height = _int(row["width"]), _int(row["height"])
        data = self._reader.read(row["shard"], member, size_limit(stored_bytes, width, height))
        where = f"{row['shard']}:{member}"
        if self.decode_device is not None and fmt.name == "jpeg":
            check_jpeg(data, where, width, height)
            try:
                check_jpeg_scans(data)  # torch's decoders, too, decode every scan
                picture = decode_jpeg(data, self.decode_device, orientation)
            # OSError: too many scans; RuntimeError: the decoders' signal for a JPEG they
            # cannot read, whose message goes on with a C++ stack trace.
            except (OSError, RuntimeError) as error:
                raise ShardError(f"{where}: does not decode: {first_line(error)}") from None
            if exact_size:
                _check_size(where, picture.shape, width, height)
        else:
            stored = StoredPicture(*decode_picture(data, fmt, where, width, height))
            if exact_size:
                _check_size(where, stored.shape, width, height)
            _, height, width = stored.shape
            if self.crop is not None and min(height, width) >= self.crop:
                return stored
            picture = stored.whole()
        if self.crop is None:
            return picture
        height, width = picture.shape[1:]
        if height < self.crop or width < self.crop:
            pad = (0, max(0, self.crop - width), 0, max(0, self.crop - height))
            padded = torch.nn.functional.pad(picture[None].float(), pad, mode="replicate")
            picture = padded[0].to(torch.uint8)
        return picture

    def _boxes(self, shape: tuple, rng: np.random.Generator) -> list[tuple]:
        """K crop boxes for a 3×H×W picture, drawn from `rng`."""
        height, width = shape[1:]
        if self.crop is None:
            return [(slice(None), slice(0, height), slice(0, width))] * self.crops_per_image
        tops = rng.integers(0, height - self.crop + 1, self.crops_per_image)
        lefts = rng.integers(0, width - self.crop + 1, self.crops_per_image)
        return [
            (
                slice(None),
                slice(int(top), int(top) + self.crop),
                slice(int(left), int(left) + self.crop),
            )
            for top, left in zip(tops, lefts, strict=True)
        ]


class StoredPicture:
    """A decoded picture as stored, not yet turned upright. A crop is cut where it lies
    in the stored pixels and only the crop is turned: a 12 MP capture is never turned
    (a full-size copy) or converted to an array whole for K small crops."""

    def __init__(self, image: Image.Image, orientation: int):
        self.image, self.orientation = image, orientation
        width, height = upright_size(*image.size, orientation)
        self.shape = (3, height, width)  # upright, as a tensor's would be

    def __getitem__(self, box: tuple) -> torch.Tensor:
        _, rows, columns = box
        top, left = rows.start or 0, columns.start or 0
        side = rows.stop - top
        x, y = self._stored_corner(top, left, side)
        crop = turn_upright(self.image.crop((x, y, x + side, y + side)), self.orientation)
        return torch.from_numpy(np.array(crop)).permute(2, 0, 1)

    def whole(self) -> torch.Tensor:
        upright = turn_upright(self.image, self.orientation)
        return torch.from_numpy(np.array(upright)).permute(2, 0, 1)

    def _stored_corner(self, top: int, left: int, side: int) -> tuple[int, int]:
        """The stored top-left corner (x, y) of the upright square crop at (top, left):
        the orientation's flips undone in the swapped picture, then the swap."""
        swap, flip_rows, flip_columns = STEPS[self.orientation]
        width, height = self.image.size
        rows, columns = (width, height) if swap else (height, width)
        row = rows - top - side if flip_rows else top
        column = columns - left - side if flip_columns else left
        return (row, column) if swap else (column, row)


def _check_size(where: str, shape: tuple, width: int | None, height: int | None) -> None:
    """Refuse an upright 3×H×W picture that is not the manifest's width × height."""
    if None not in (width, height) and tuple(shape[1:]) != (height, width):
        raise ShardError(
            f"{where}: {shape[2]}×{shape[1]}, not the manifest's {width}×{height} "
            "(run rainbench verify)"
        )


def _check_whole(name: str, value: object) -> None:
    """Refuse a count or size that is no whole number: a crop of 2.5 px was cut 2 or 3 px
    wide, crops no batch collates, one of True 1 px; a fractional count or rank failed
    in every worker."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, Integral)):
        raise SettingError(f"{name} must be a whole number; not {value!r}")


def _check_rank(rank: int | None, world_size: int | None) -> None:
    """Refuse a rank without its world size (it was ignored: every sample read as rank 0
    of 1) and a rank outside the world (its stride of the epoch repeats another rank's)."""
    if (rank is None) != (world_size is None):
        raise SettingError(
            f"rank and world_size are given together, or neither (then they come from "
            f"torch.distributed or $RANK / $WORLD_SIZE); got rank={rank}, world_size={world_size}"
        )
    if rank is not None and not 0 <= rank < world_size:
        raise SettingError(
            f"rank must be from 0 to world_size - 1; got rank={rank}, world_size={world_size}"
        )


def _check_decode_device(device: str) -> None:
    """Refuse a `decode_device` torch cannot decode on here: otherwise every JPEG would
    fail to decode as if its shard were damaged (and `on_error="skip"` would replace
    them all by the other formats' captures)."""
    try:
        where = torch.device(device)
    except (RuntimeError, TypeError):
        where = None
    if where is None or where.type not in ("cpu", "cuda"):
        raise SettingError(
            f"decode_device must be 'cpu', 'cuda' or 'cuda:N' (None: Pillow), not {device!r}"
        )
    if where.type == "cuda" and (
        not torch.cuda.is_available() or (where.index or 0) >= torch.cuda.device_count()
    ):
        raise SettingError(
            f"decode_device={device!r}, but torch sees {torch.cuda.device_count()} CUDA "
            "device(s) here: decode on 'cpu', or leave decode_device=None for Pillow"
        )
    _require_torch_decoder()


def _require_torch_decoder() -> None:
    """`decode_device` needs a torch JPEG decoder (`torch_jpeg_decoder`): one line here
    where there is none, not a traceback from every loader worker."""
    if torch_jpeg_decoder() is None:
        raise SettingError(
            "decode_device needs TorchCodec's or torchvision's decode_jpeg, and neither "
            "can be imported: pip install torchcodec, or leave decode_device=None to "
            "decode with Pillow"
        )


@lru_cache(maxsize=1)
def torch_jpeg_decoder() -> Callable[[bytes, str], torch.Tensor] | None:
    """What `decode_device` decodes JPEGs with: TorchCodec's decoder (torchcodec 0.16
    on), else torchvision's, which torchvision 0.29 deprecated for it (the same
    libjpeg-turbo and nvJPEG; the same pixels on the CPU, tested). None when neither can
    be imported."""
    try:
        import torchcodec.decoders  # noqa: F401
    except (ImportError, OSError, RuntimeError):  # absent, or its libraries do not load
        pass
    else:
        return decode_with_torchcodec
    try:
        from torchvision.io import decode_jpeg  # noqa: F401
    except ImportError:
        return None
    return decode_with_torchvision


def decode_with_torchcodec(data: bytes, device: str) -> torch.Tensor:
    """A JPEG's picture as stored, RGB uint8 3×H×W, decoded by TorchCodec on `device`."""
    from torchcodec.decoders import decode_jpeg

    # TorchCodec turns the picture by its EXIF orientation, with no switch to stop it; it
    # gets no EXIF, so that the manifest's orientation is the one applied, as elsewhere.
    return decode_jpeg(_encoded(without_app1(data)), mode="RGB", device=device)


def decode_with_torchvision(data: bytes, device: str) -> torch.Tensor:
    """A JPEG's picture as stored, RGB uint8 3×H×W, decoded by torchvision on `device`."""
    from torchvision.io import ImageReadMode, decode_jpeg

    return decode_jpeg(_encoded(data), mode=ImageReadMode.RGB, device=device)


def _encoded(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def decode_jpeg(data: bytes, device: str, orientation: int | None) -> torch.Tensor:
    """A JPEG decoded by torch on `device` (nvJPEG on a GPU; `torch_jpeg_decoder`), made
    upright by the EXIF `orientation` the manifest recorded: uint8 3×H×W. A JPEG that
    nvJPEG refuses and libjpeg-turbo reads (CMYK, as print exports are) is decoded on
    the CPU and moved to `device`; RuntimeError when neither decodes it."""
    torch_decode = torch_jpeg_decoder()
    try:
        picture = torch_decode(data, device)
    except RuntimeError:
        if torch.device(device).type == "cpu":
            raise
        picture = torch_decode(data, "cpu").to(device)
    return upright(picture, orientation)


def upright(picture: torch.Tensor, orientation: int | None) -> torch.Tensor:
    """EXIF orientation 1–8 applied to a C×H×W tensor, as Pillow's exif_transpose does."""
    swap, flip_rows, flip_columns = STEPS.get(orientation, STEPS[1])
    if swap:
        picture = picture.transpose(1, 2)  # rows become columns
    flips = (1,) * flip_rows + (2,) * flip_columns
    return picture.flip(flips) if flips else picture


def epoch_order(shards: np.ndarray, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """Sample indices in this epoch's order, the same in every process.

    Shuffled, shards come in a random order and samples in a random order within each
    shard, so consecutive samples of one slot tend to share a shard (and its page cache).
    """
    count = len(shards)
    if not shuffle:
        return np.arange(count)
    rng = np.random.default_rng(_seed(seed, epoch, "order"))
    names, inverse = np.unique(shards, return_inverse=True)
    shard_rank = rng.permutation(len(names))[inverse]
    within = rng.random(count)
    return np.lexsort((within, shard_rank))


def _labels(row) -> dict:
    """The manifest's labels of a sample, collatable (no None)."""
    labels = {"key": row["key"], "split": row["split"]}
    if "rain_type" in row:
        # Null (a clean capture's) comes from pandas as NaN, which `or` would keep.
        labels["rain_type"] = row["rain_type"] if isinstance(row["rain_type"], str) else ""
        confidence = row["rain_type_confidence"]
        labels["confidence"] = math.nan if pd.isna(confidence) else float(confidence)
        labels["layer"] = row["layer"]
    if "recipe" in row:
        labels["recipe"] = row["recipe"]
    return labels


def _int(value) -> int | None:
    """A manifest integer as pandas gives it (NaN where null)."""
    return None if pd.isna(value) else int(value)


def _float(crop: torch.Tensor) -> torch.Tensor:
    return crop.float().div_(255)


def _seed(*parts: object) -> int:
    return seed_from("rainbench-data", *parts, bits=64)
