"""`rainbench label`: one self-contained HTML page for labelling a dataset's rainy
captures by eye — a thumbnail and a full-resolution crop where the rain shows most,
lowest tagger confidence first — whose export is a label sheet `rainbench tag` reads.
"""

import base64
import io
import json
import re
from dataclasses import dataclass, field
from functools import cache
from html import escape
from importlib.resources import files
from pathlib import Path
from string import Template

import numpy as np
from PIL import Image
from tqdm import tqdm

from rainbench.capture.decode import PixelCapExceeded
from rainbench.capture.formats import FORMATS
from rainbench.capture.reject import CaptureRejected
from rainbench.capture.video import middle_frame
from rainbench.files import regular_file, write_atomic
from rainbench.parallel import WorkerPool
from rainbench.shards import manifest
from rainbench.shards.dataset import DatasetError, open_dataset
from rainbench.shards.layout import member, picture_ext
from rainbench.shards.members import (
    ShardError,
    open_member,
    open_shard,
    pixel_limit,
    read_upright,
    size_limit,
    too_many_pixels,
)

# What keys 1–5 set, in order: the page's legend, its keyboard and its export all read
# this one tuple.
KEY_LABELS = ("drizzle", "fog-like", "storm", "streak", "clean")

CROP = 256  # px per side of the crop, at the picture's full resolution
THUMBNAIL = 300  # px, the thumbnail's long side
# The crop is chosen on the picture reduced to at most this long side: a 12 MP capture
# by 2, a 50 MP one by 4, so that 1–3 px streaks still stand out from their neighbours.
ANALYSIS_SIDE = 2048
# Lines up to 2·LINE_REACH − 1 px wide (at the analysis scale) count as thin.
LINE_REACH = 2
CLIP = 3.0  # line contrast beyond this many times its mean counts as this much
DEFAULT_LIMIT = 300
# In a name, characters that show nothing or reorder what follows are shown as their
# escapes: a newline would show as a space, and a right-to-left override turns
# "photo\u202egpj.exe" into "photoexe.jpg".
_HIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# In the head of every page this module writes: how an --out that exists is
# known to be an earlier page, safe to replace, and not a file of the user's.
MARKER = '<meta name="generator" content="rainbench label">'


@dataclass(frozen=True)
class Card:
    """One capture as the page shows it."""

    key: str
    name: str  # source_path, from the dataset: untrusted
    split: str
    auto: str | None  # the tagger's pick
    confidence: float | None
    caveats: tuple[str, ...]
    manual: str | None  # a label already applied: a rain type or "clean"
    note: str | None
    thumbnail: str | None = None  # data: URIs, None when the picture could not be read
    crop: str | None = None
    crop_box: tuple[int, int, int] | None = None  # left, top, side in the upright picture
    problem: str | None = None


@dataclass
class LabelPage:
    out: Path
    dataset: str
    cards: int = 0
    rainy: int = 0  # rainy captures selected, before --limit
    unreadable: list[str] = field(default_factory=list)  # keys whose picture did not decode
    first_problem: str | None = None  # why the first of them did not (the page says each)

    @property
    def sheet(self) -> str:
        """The file name the page's Export CSV saves under (label_page.html makes it the
        same way): the dataset's name, as dataset.json gives it."""
        return "labels-" + re.sub(r"[^A-Za-z0-9._-]+", "_", self.dataset) + ".csv"

    def to_dict(self) -> dict:
        return {**self.__dict__, "out": str(self.out), "sheet": self.sheet}


def write_label_page(
    path: str | Path,  # a folder or an object store's URL
    out: Path,
    splits: tuple[str, ...] = (),
    limit: int = DEFAULT_LIMIT,
    workers: int = 1,
    progress: bool = False,
) -> LabelPage:
    """Write the labelling page of the dataset at `path` to `out`: its rainy captures
    (of `splits`, all when empty), the `limit` the tagger is least sure of first. An
    `out` that exists is replaced only when it is such a page."""
    _check_replaceable(out)
    dataset = open_dataset(path)
    if not dataset.samples_manifest.exists():
        raise DatasetError(dataset.not_a_dataset("manifests/samples.parquet"))
    name = str(dataset.read_info().get("name") or Path(str(path)).name)
    rows = [
        row
        for row in manifest.read_manifest(dataset.samples_manifest, manifest.SAMPLES).to_pylist()
        if row["layer"] == "rainy" and (not splits or row["split"] in splits)
    ]
    if not rows:
        where = f" in split {', '.join(splits)}" if splits else ""
        raise DatasetError(f"{path} has no rainy captures{where} to label")
    summary = LabelPage(out, name, rainy=len(rows))
    rows = sorted(rows, key=_least_sure_first)[:limit]
    pictures: dict[str, dict] = {}
    by_shard: dict[str, list[dict]] = {}
    for row in rows:
        by_shard.setdefault(row["shard"], []).append(row)
    tasks = [(dataset.root, shard, members) for shard, members in sorted(by_shard.items())]
    with (
        WorkerPool(workers) as pool,
        tqdm(total=len(rows), desc="label page", unit="capture", disable=not progress) as bar,
    ):
        for results in pool.map_unordered(_pictures_of_shard, tasks):
            pictures.update(results)
            bar.update(len(results))
    cards = [_card(row, pictures[row["key"]]) for row in rows]
    summary.cards = len(cards)
    unreadable = sorted((card.key, card.problem) for card in cards if card.problem)
    summary.unreadable = [key for key, _ in unreadable]
    summary.first_problem = unreadable[0][1] if unreadable else None
    write_atomic(out, render_page(name, cards).encode(), shared=True)  # no lock is held
    return summary


def _check_replaceable(out: Path) -> None:
    if not out.exists():
        return
    try:
        with open(regular_file(out), "rb") as file:  # a FIFO would block the check
            head = file.read(4096)
    except OSError as error:
        raise DatasetError(f"{out}: cannot read it to check it ({error.strerror})") from None
    if MARKER.encode() not in head:
        raise DatasetError(
            f"{out} exists and is not a page rainbench label wrote: not replaced "
            "(give another --out, or remove it)"
        )


def _least_sure_first(row: dict) -> tuple:
    # Labelled captures last; unmeasured ones (no confidence) before the least sure.
    confidence = row["rain_type_confidence"]
    manual = row["rain_type_source"] == "manual"
    return (manual, -1.0 if confidence is None else confidence, row["key"])


def _card(row: dict, picture: dict) -> Card:
    manual = (row["rain_type"] or "clean") if row["rain_type_source"] == "manual" else None
    return Card(
        key=row["key"],
        name=row["source_path"] or row["key"],
        split=row["split"],
        auto=row["rain_type_auto"],
        confidence=None if manual else row["rain_type_confidence"],
        caveats=tuple(row["tag_caveats"] or ()),
        manual=manual,
        note=row["rain_type_note"],
        **picture,
    )


def _pictures_of_shard(task: tuple[Path, str, list[dict]]) -> dict[str, dict]:
    """Key → the thumbnail, crop and crop box (or the problem) of each capture."""
    root, shard, rows = task
    try:
        tar = open_shard(root, shard)
    except ShardError as error:
        return {row["key"]: {"problem": str(error)} for row in rows}
    results = {}
    with tar:
        for row in rows:
            try:
                results[row["key"]] = _pictures(_upright(tar, root, shard, row))
            except ShardError as error:
                results[row["key"]] = {"problem": str(error)}
    return results


def _upright(tar, root: Path, shard: str, row: dict) -> Image.Image:
    fmt = FORMATS[row["format"]]
    if fmt.video:  # shown by its middle frame, the one it was tagged on
        name = member(row["key"], fmt.ext)
        limit = size_limit(row["bytes"], None, None)
        try:
            with open_member(tar, root, shard, name, limit, row["sha256"]) as video:
                return middle_frame(video, pixel_limit(row["width"], row["height"]))
        except PixelCapExceeded:  # said as for a still: label has no --max-pixels
            raise too_many_pixels(f"{shard}:{name}", row["width"], row["height"]) from None
        except CaptureRejected as rejected:
            raise ShardError(f"{shard}:{name}: {rejected.message}") from None
    ext = picture_ext(row["format"])
    # A RAW's preview is a JPEG whose size and digest the manifest does not give; any
    # other capture is shown only if its bytes are the manifest's.
    stored, sha256 = (None, None) if fmt.raw else (row["bytes"], row["sha256"])
    decoder = FORMATS["jpeg"] if fmt.raw else fmt
    name = member(row["key"], ext)
    return read_upright(tar, shard, name, decoder, row["width"], row["height"], stored, sha256)


def _pictures(upright: Image.Image) -> dict:
    left, top, side = rain_crop_box(upright)
    thumbnail = upright.copy()
    thumbnail.thumbnail((THUMBNAIL, THUMBNAIL), Image.Resampling.LANCZOS)
    return {
        "thumbnail": _data_uri(thumbnail, 85),
        "crop": _data_uri(upright.crop((left, top, left + side, top + side)), 92),
        "crop_box": (left, top, side),
    }


def rain_crop_box(picture: Image.Image, side: int = CROP) -> tuple[int, int, int]:
    """(left, top, side) of the side×side window of the upright `picture` where the rain
    is most visible: the one holding the most thin-line contrast across the rows. Rain
    falls within 45° of vertical in nearly every capture, so a row crosses each streak
    as a peak (or dip) at most LINE_WIDTH px wide, while a step edge, however strong,
    is brighter than only one of its two neighbours and scores nothing."""
    width, height = picture.size
    side = min(side, width, height)
    scale = min(1.0, ANALYSIS_SIDE / max(width, height))
    small = picture.convert("L")
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = small.resize(size, Image.Resampling.BOX)
    line = thin_lines(np.asarray(small, dtype=np.float32) / 255)
    # Clipped: a few high-contrast wires or window bars weigh no more than faint streaks.
    line = np.minimum(line, CLIP * float(line.mean()) + 1e-6)
    window = max(1, min(round(side * scale), *line.shape))
    y, x = _densest_window(line, window)
    left = min(round(x / scale), width - side)
    top = min(round(y / scale), height - side)
    return left, top, side


def thin_lines(luma: np.ndarray) -> np.ndarray:
    """How far each pixel stands out, brighter or darker, from both pixels LINE_REACH to
    its left and right: the contrast of a thin line through it, 0 off lines."""
    reach = LINE_REACH
    padded = np.pad(luma, ((0, 0), (reach, reach)), "edge")
    left = luma - padded[:, : -2 * reach]
    right = luma - padded[:, 2 * reach :]
    brighter = np.minimum(left, right)
    darker = -np.maximum(left, right)
    return np.maximum(np.maximum(brighter, darker), 0)


def _densest_window(values: np.ndarray, window: int) -> tuple[int, int]:
    """(row, column) of the top-left corner of the window×window square with the largest
    sum, over positions a sixteenth of a window apart; the first such on ties."""
    total = np.zeros((values.shape[0] + 1, values.shape[1] + 1))
    total[1:, 1:] = values.cumsum(axis=0, dtype=np.float64).cumsum(axis=1)
    step = max(1, window // 16)
    rows = np.arange(0, values.shape[0] - window + 1, step)
    columns = np.arange(0, values.shape[1] - window + 1, step)
    sums = (
        total[np.ix_(rows + window, columns + window)]
        - total[np.ix_(rows, columns + window)]
        - total[np.ix_(rows + window, columns)]
        + total[np.ix_(rows, columns)]
    )
    best = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(rows[best[0]]), int(columns[best[1]])


def _data_uri(image: Image.Image, quality: int) -> str:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def render_page(dataset: str, cards: list[Card]) -> str:
    """The page: every name from the dataset escaped, nothing fetched from outside."""
    legend = "".join(
        f"<li><kbd>{number}</kbd> {escape(label)}</li>"
        for number, label in enumerate(KEY_LABELS, 1)
    )
    return _frame().substitute(
        title=escape(dataset),
        marker=MARKER,
        dataset=escape(dataset, quote=True),
        keys=escape(json.dumps(KEY_LABELS), quote=True),
        legend=legend,
        count=len(cards),
        cards="\n".join(_card_html(number, card) for number, card in enumerate(cards, 1)),
    )


def _card_html(number: int, card: Card) -> str:
    if card.problem:
        pictures = f'<p class="problem">{escape(card.problem)}</p>'
    else:
        left, top, side = card.crop_box  # type: ignore[misc]
        pictures = (
            f'<img class="thumb" src="{card.thumbnail}" alt="{escape(card.name)}">'
            f'<img class="crop" src="{card.crop}" width="{side}" height="{side}" '
            f'alt="{side}×{side} crop at {left},{top}" title="1:1 crop at {left},{top}">'
        )
    confidence = "" if card.confidence is None else f" {card.confidence:.2f}"
    facts = [f"auto: <b>{escape(card.auto or 'none')}</b>{confidence}"]
    if card.caveats:
        facts.append(f"caveats: {escape(', '.join(card.caveats))}")
    if card.manual:
        facts.append(f"applied: <b>{escape(card.manual)}</b>")
    if card.note:
        facts.append(f"note: {escape(card.note)}")
    # The script seeds its labels from data-applied, so the page and its export start
    # from the labels the dataset already has.
    applied = ""
    if card.manual:
        # A CR as a reference: written as is, the HTML parser reads CR LF and CR as LF,
        # and the page would export the note changed.
        note = escape(card.note or "").replace("\r", "&#13;")
        applied = f' data-applied="{escape(card.manual)}" data-note="{note}"'
    label = f"label: {escape(card.manual)}" if card.manual else "not labelled"
    return (
        f'<article class="card{" labelled" if card.manual else ""}" tabindex="-1" '
        f'data-key="{escape(card.key)}"{applied}>'
        f'<div class="pictures">{pictures}</div>'
        f'<p class="name"><span class="number">{number}</span> {escape(_shown(card.name))}</p>'
        f'<p class="meta">{escape(card.split)} · <code>{escape(card.key)}</code></p>'
        f'<p class="meta">{" · ".join(facts)}</p>'
        f'<p class="label">{label}</p>'
        "</article>"
    )


def _shown(name: str) -> str:
    return _HIDDEN.sub(lambda hidden: repr(hidden.group())[1:-1], name)


@cache
def _frame() -> Template:
    return Template(files("rainbench.ingest").joinpath("label_page.html").read_text("utf-8"))
