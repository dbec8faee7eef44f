"""`rainbench synth`: render each recipe's rain on clean captures of the dataset and
store the pairs as the splits `syn-<recipe>`; and the contact sheet that shows
what each recipe means on one picture.
"""

import hashlib
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from rainbench import __version__
from rainbench.capture.decode import DEFAULT_MAX_PIXELS, load_upright, open_image
from rainbench.capture.formats import FORMATS, sniff
from rainbench.capture.source import read_regular
from rainbench.files import write_atomic
from rainbench.parallel import WorkerPool
from rainbench.shards import manifest
from rainbench.shards.dataset import Dataset, DatasetError, new_run_id, writing
from rainbench.shards.layout import GROUND_TRUTH, PREVIEW, RAIN, member
from rainbench.shards.members import (
    ShardError,
    open_shard,
    read_upright,
)
from rainbench.synth.png import encode_png
from rainbench.synth.recipes import DEFAULT_RECIPES, RECIPES
from rainbench.synth.render import contact_sheet, derive_seed, render
from rainbench.synth.splits import MadePair, PairJob, PairsSummary, write_pairs
from rainbench.versions import installed_versions

DEFAULT_SHARD_BYTES = 1_000_000_000
_RECIPE_SPLITS = frozenset(f"syn-{recipe}" for recipe in RECIPES)


@dataclass(frozen=True)
class SynthOptions:
    recipes: tuple[str, ...] = DEFAULT_RECIPES
    seed: int = 0
    source_split: str = "test"
    source_layer: str = "clean"
    renders: int = 1  # renders per source capture and recipe
    max_side: int | None = None  # shrink larger sources to this longest side first
    shard_bytes: int = DEFAULT_SHARD_BYTES
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    # Splits are syn-<recipe>, or syn-<recipe>-<suffix>: renders made otherwise than a
    # split's own (other sources, seed or size) go to a split of their own.
    suffix: str | None = None

    def split(self, recipe: str) -> str:
        return f"syn-{recipe}" + (f"-{self.suffix}" if self.suffix else "")


@dataclass(frozen=True)
class RenderTask:
    root: Path  # the dataset
    shard: str  # the source capture's shard, relative to root
    member: str  # the member holding its pixels
    format: str
    recipe: str
    seed: int  # derived from (source key, recipe, seed, render index)
    max_side: int | None
    bytes: int | None  # the manifest's bounds on reading the member
    width: int
    height: int
    # The manifest's digest of the member, where it is the capture as stored: a damaged
    # capture fails its renders rather than baking the damage into their ground truth.
    sha256: str | None


def synthesize(root: str | Path, options: SynthOptions, progress: bool = False) -> PairsSummary:
    """Add the pairs of every recipe × source × render that the dataset lacks."""
    unknown = [r for r in options.recipes if r not in RECIPES]
    if unknown:
        raise DatasetError(f"unknown recipe {unknown[0]!r}; known: {', '.join(RECIPES)}")
    recipes = tuple(dict.fromkeys(options.recipes))  # each once, in the order given
    bad = [r for r in recipes if not re.fullmatch(manifest.SPLIT, options.split(r))]
    if bad:
        raise DatasetError(
            f"--suffix {options.suffix!r} does not make a split name of {bad[0]}: at most "
            f"{manifest.SPLIT_MAX} lowercase letters, digits, '-' and '_' in all"
        )
    taken = [r for r in recipes if options.suffix and options.split(r) in _RECIPE_SPLITS]
    if taken:  # syn-streak + v2 is streak-v2's split
        raise DatasetError(
            f"--suffix {options.suffix} makes {options.split(taken[0])}, the split of another "
            "recipe: choose another suffix"
        )
    with writing(root) as dataset, WorkerPool(options.workers) as pool:
        # No source first: a mistyped --source-split is said as such, not as a split
        # made otherwise that --suffix would get round.
        sources = _sources(dataset, options)
        _check_made_alike(dataset, options, recipes)
        jobs = [
            _job(dataset, source, recipe, options, index)
            for recipe in recipes
            for source in sources
            for index in range(options.renders)
        ]
        run_id = new_run_id()
        summary = write_pairs(
            dataset, jobs, render_pair, pool, options.shard_bytes, run_id, progress
        )
    return summary


def _check_made_alike(dataset: Dataset, options: SynthOptions, recipes: tuple[str, ...]) -> None:
    """Refuse to add renders to a split that holds renders made otherwise: from another
    split or layer, with another base seed or size. A benchmark's syn-* splits are one
    set of renders (the clean test captures at seed 0, full size), and training renders
    mixed into them would be scored as test images."""
    if not dataset.synthetic_manifest.exists():
        return
    splits = {options.split(recipe): recipe for recipe in recipes}
    pairs = manifest.read_manifest(dataset.synthetic_manifest, manifest.SYNTHETIC)
    columns = ["split", "recipe", "recipe_version", "job"]
    rows = [r for r in pairs.select(columns).to_pylist() if r["split"] in splits]
    for row in rows:  # a split of one recipe only, whatever a suffix made of its name
        if row["recipe"] != splits[row["split"]]:
            raise DatasetError(
                f"{row['split']} holds renders of the recipe {row['recipe']}; "
                f"{splits[row['split']]}'s cannot go there too"
            )
        # Renders before and after a version's bump are other data: never one split.
        version = RECIPES[row["recipe"]].version
        if row["recipe_version"] not in (None, version):
            raise DatasetError(
                f"{row['split']} holds renders of {row['recipe']} version "
                f"{row['recipe_version']}; this rainbench renders version {version}: render "
                "them into a split of their own with --suffix NAME (syn-<recipe>-NAME)"
            )
    if not rows:
        return
    samples = manifest.read_manifest(dataset.samples_manifest, manifest.SAMPLES)
    placed = {
        row["key"]: (row["split"], row["layer"])
        for row in samples.select(["key", "split", "layer"]).to_pylist()
    }
    mine = _made(options.source_split, options.source_layer, options.seed, options.max_side or 0)
    for row in rows:
        # The job: <recipe>@<version>:<source key>:<seed>:<render index>:<max side or 0>
        parts = row["job"].rsplit(":", 4)
        if len(parts) != 5 or parts[1] not in placed:  # a source since removed says nothing
            continue
        _, source, seed, _, max_side = parts
        if not (re.fullmatch(r"-?[0-9]+", seed) and re.fullmatch(r"[0-9]+", max_side)):
            raise DatasetError(
                f"{row['split']} holds a pair whose job {row['job']!r} names no base seed and "
                "size of a render: synthetic.parquet is damaged (rainbench verify names it)"
            )
        theirs = _made(*placed[source], int(seed), int(max_side))
        if theirs != mine:
            raise DatasetError(
                f"{row['split']} holds renders of {theirs}; these would be of {mine}. Render "
                "them into a split of their own with --suffix NAME (syn-<recipe>-NAME), or "
                "with the split's own options"
            )


def _made(split: str, layer: str, seed: int, max_side: int) -> str:
    size = f"shrunk to {max_side} px" if max_side else "full size"
    return f"the {layer} captures of {split} at seed {seed}, {size}"


def _sources(dataset: Dataset, options: SynthOptions) -> list[dict]:
    samples = manifest.read_manifest(dataset.samples_manifest, manifest.SAMPLES)
    columns = ["key", "shard", "split", "layer", "kind", "members", "format", "bytes", "sha256"]
    # A video is no picture to render on; its frames are paired by `rainbench pairs`.
    rows = [
        row
        for row in samples.select([*columns, "width", "height"]).to_pylist()
        if row["split"] == options.source_split
        and row["layer"] == options.source_layer
        and row["kind"] != "video"
    ]
    if not rows:
        raise DatasetError(
            f"no {options.source_layer} captures in the {options.source_split} split to render "
            f"rain on; ingest some with `rainbench ingest DIR --out {dataset.location} --layer "
            f"{options.source_layer}` or choose others with --source-split/--source-layer"
        )
    return sorted(rows, key=lambda row: row["key"])


def _job(dataset: Dataset, source: dict, recipe: str, options: SynthOptions, index: int) -> PairJob:
    version = RECIPES[recipe].version
    seed = derive_seed(source["key"], recipe, options.seed, index)
    members = source["members"]
    # A RAW capture's pixels are its rendered preview; anything else is decoded as stored,
    # its size known from the manifest.
    ext, fmt, stored_bytes, sha256 = (
        (PREVIEW, "jpeg", None, None)
        if PREVIEW in members
        else (members[0], source["format"], source["bytes"], source["sha256"])
    )
    return PairJob(
        split=options.split(recipe),
        job=f"{recipe}@{version}:{source['key']}:{options.seed}:{index}:{options.max_side or 0}",
        row={
            "recipe": recipe,
            "recipe_version": version,
            "source_key": source["key"],
            "seed": seed,
        },
        task=RenderTask(
            dataset.root,
            source["shard"],
            member(source["key"], ext),
            fmt,
            recipe,
            seed,
            options.max_side,
            stored_bytes,
            source["width"],
            source["height"],
            sha256,
        ),
    )


def render_pair(task: RenderTask) -> MadePair:
    try:
        source = _read_source(task)
    except ShardError as error:  # this pair is not made; verify names the damage
        return MadePair({}, {}, error=str(error))
    clean = np.asarray(_fit(source, task.max_side))
    rendered = render(clean, task.recipe, task.seed)
    # A version-2 recipe passes the clean image through the rain's camera chain too.
    truth = clean if rendered.ground_truth is None else rendered.ground_truth
    members = {RAIN: encode_png(rendered.rain), GROUND_TRUTH: encode_png(truth)}
    if rendered.streaks is not None:
        members["streaks.png"] = encode_png(rendered.streaks)
    if rendered.transmission is not None:
        members["transmission.png"] = encode_png(rendered.transmission)
    height, width = rendered.rain.shape[:2]  # the pair's size, smaller if the chain shrank it
    metadata = {
        "width": width,
        "height": height,
        "params": rendered.params,
        "intensity": rendered.params.get("intensity"),
        "compositing": rendered.params.get("compositing"),
    }
    return MadePair(members, metadata)


def _read_source(task: RenderTask) -> Image.Image:
    """The source capture, upright, read and decoded within the manifest's sizes."""
    with open_shard(task.root, task.shard) as archive:
        fmt = FORMATS[task.format]
        return read_upright(
            archive, task.shard, task.member, fmt, task.width, task.height, task.bytes, task.sha256
        )


def _fit(image: Image.Image, max_side: int | None) -> Image.Image:
    if not max_side or max(image.size) <= max_side:
        return image
    scale = max_side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def preview_sheet(
    image_path: Path,
    out: Path,
    seed: int = 0,
    max_side: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Path:
    """Write the contact sheet of every recipe rendered on the picture at `image_path`,
    shrunk first to `max_side` when given; a picture of more than `max_pixels` is refused
    (a `CaptureRejected`) from its header or its size, undecoded."""
    data = read_regular(Path(image_path), max_pixels=max_pixels)
    fmt = sniff(data, Path(image_path).name)
    if fmt is None or fmt.raw:
        raise DatasetError(f"{image_path}: not an image rainbench can render on (JPEG, PNG, …)")
    try:
        picture = load_upright(data, fmt, max_pixels)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        # Pillow names an in-memory file by its object; the path says more.
        raise DatasetError(f"{image_path}: not a readable image ({type(error).__name__})") from None
    sheet = contact_sheet(np.asarray(_fit(picture, max_side)), seed=seed)
    encoded = io.BytesIO()  # in the format its suffix names, replaced whole
    exif = Image.Exif()
    exif[_DESCRIPTION] = SHEET_DESCRIPTION  # so that a later preview knows it may replace it
    # What made it: the picture, the settings and the versions, as JSON.
    made = {
        "source_sha256": hashlib.sha256(data).hexdigest(),
        "seed": seed,
        "max_side": max_side,
        "versions": {"rainbench": __version__, **installed_versions(SHEET_LIBRARIES)},
    }
    exif.get_ifd(_EXIF_IFD)[_USER_COMMENT] = _ASCII + json.dumps(made).encode()
    sheet.save(encoded, format=SHEET_SUFFIXES[out.suffix.lower()], exif=exif)
    write_atomic(out, encoded.getvalue(), shared=True)  # no lock is held
    return out


SHEET_DESCRIPTION = "rainbench synth --preview contact sheet"
# The sheet's formats, by suffix: those Pillow writes with EXIF and reads it back from,
# so that a later preview knows the sheet it may replace (a GIF's or BMP's it could not).
SHEET_SUFFIXES = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}
# What decodes the picture and renders the rain on it: the sheet names their versions.
SHEET_LIBRARIES = ("numpy", "scipy", "pillow", "pillow-heif")
_DESCRIPTION = 0x010E  # the EXIF ImageDescription tag
_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286  # in the Exif IFD: a character code, then the text
_ASCII = b"ASCII\0\0\0"


def is_sheet(path: Path) -> bool:
    """True when `path` is a contact sheet preview_sheet wrote, in the format its suffix
    names."""
    fmt = SHEET_SUFFIXES.get(path.suffix.lower())
    try:
        # Opened as every reader opens a file: a damaged TIFF's Pillow log stays off stderr.
        with open_image(path) as image:
            return image.format == fmt and image.getexif().get(_DESCRIPTION) == SHEET_DESCRIPTION
    except Exception:  # Pillow raises many kinds for a file it cannot read: not a sheet
        return False
