"""Finding the (rainy, ground-truth) pairs of a public paired deraining set on disk.

Each layout knows the naming rules of one family of releases. `find_pairs` applies
them, checks sizes from the image headers and reports every file it could not pair:
a missing partner or a size mismatch is reported, never guessed.
"""

import hashlib
import os
import posixpath
import re
import unicodedata
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError

from rainbench.capture.decode import (
    DEFAULT_MAX_PIXELS,
    check_pixel_cap,
    header_size,
    load_upright,
    open_image,
)
from rainbench.capture.formats import Format, sniff
from rainbench.capture.orientation import ORIENTATION_TAG
from rainbench.capture.reject import CaptureRejected
from rainbench.capture.source import name_text, read_regular
from rainbench.errors import first_line
from rainbench.files import leads_inside, regular_file
from rainbench.wording import counted

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})

# macOS archives carry AppleDouble twins (`__MACOSX/`, `._rain-1.png`) that look like images.
_SKIPPED_DIRS = frozenset({"__MACOSX"})

# DDN synthesised 14 rain variants of every clean image.
RAIN1400_VARIANTS = range(1, 15)

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class PairSource:
    name: str  # stable id within the set, dot-free, safe as part of a file name
    rain: Path
    gt: Path  # the same file as `rain` for side-by-side layouts
    crop_rain: Box | None  # PIL box within `rain` (side-by-side layouts), else None
    crop_gt: Box | None
    # DID-MDN density, Rain1400 scene id; for a real-paired layout the scene or sequence
    # id, which never straddles two splits; None when the layout has none. A folder name's
    # bytes that are not UTF-8 are `\xHH`, as ingest stores names (`name_text`).
    group: str | None


@dataclass(frozen=True)
class LayoutProblem:
    # missing-gt, missing-rain, size-mismatch, unreadable, too-many-pixels, float-pixels,
    # unexpected-file, duplicate-name, mixed-partitions, no-pairs (and, from an import,
    # rainbench.synth.imports's; from a protocol check, rainbench.synth.protocol's)
    kind: str
    path: str  # relative to the root, POSIX separators; "." for the root itself
    detail: str

    def to_dict(self) -> dict[str, str]:
        """As it is shown: a name's bytes that are not UTF-8 as `\\xHH` (`name_text`), as
        the split stores the name."""
        return {"kind": self.kind, "path": name_text(self.path), "detail": name_text(self.detail)}


# Kinds of paired split (DESIGN.md): rain rendered by someone else, or real rain whose
# ground truth was estimated from time.
IMPORTED, REAL_PAIRED = "imported", "real-paired"


@dataclass(frozen=True)
class Layout:
    name: str
    description: str  # one line for --help; also what a "no-pairs" problem says is expected
    find: Callable[[Path, int], tuple[list[PairSource], list[LayoutProblem]]]
    kind: str = IMPORTED
    ground_truth: str | None = None  # how a real-paired set estimated its ground truth


# The recipe of a pair `rainbench pairs` estimated from a lab's own sequence:
# `pairs:<method>` (percentile, median, lowrank or rain-free).
ESTIMATED = "pairs:"
# The split `rainbench pairs` stores its pairs in unless told otherwise.
LAB_PAIRS = "lab-pairs"


def paired_kind(recipe: str) -> str:
    """The kind of paired split whose pairs carry `recipe`: `import:<layout>` for an
    imported set (by its layout's kind), `pairs:<method>` for real pairs estimated
    from a lab's own sequences, a rain recipe for rainbench's own renders."""
    if recipe.startswith(ESTIMATED):
        return REAL_PAIRED
    if not recipe.startswith("import:"):
        return "synthetic"
    layout = LAYOUTS.get(recipe.removeprefix("import:"))
    return layout.kind if layout else IMPORTED


def find_pairs(
    root: Path, layout: str, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[list[PairSource], list[LayoutProblem]]:
    """The pairs under `root` by `layout`'s rules, sorted by name (numbers in
    numeric order: rain-2 before rain-10), and every problem met on the way.

    Pairs whose partner is missing, whose sizes differ or whose files cannot be read
    are left out and reported, as is a folder not read (a link to a folder, not
    followed; one that cannot be listed). When nothing under `root` fits the layout, the
    last problem is one "no-pairs" saying what the layout expects; when files fit but no
    pair survives, a "no-pairs" problem comes last. When a real set's pairs lie in
    more than one of its own partitions (`GT-RAIN_train/` and `GT-RAIN_test/`), none is
    returned and a "mixed-partitions" problem comes last: a split never mixes them.

    An image whose header declares more than `max_pixels` ("too-many-pixels") or
    floating-point pixels ("float-pixels", whose range no rule says) is left out too.
    Two rules (or list lines) giving the same rainy and ground-truth files give one pair.
    """
    try:
        chosen = LAYOUTS[layout]
    except KeyError:
        raise ValueError(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}") from None
    return chosen.find(Path(root), max_pixels)


def load_pair(
    pair: PairSource, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[np.ndarray, np.ndarray]:
    """Rainy and ground-truth pixels, uint8 H×W×3 RGB, crops applied, decoded as ingest
    decodes a capture: turned upright by its EXIF orientation (so the two files of a pair
    line up however each stores its picture), 16-bit grey scaled to 8 bits (not
    clipped), the header checked against `max_pixels` before any pixel is decoded. A
    file that cannot be read raises ValueError naming it.
    """
    rain = _read_rgb(pair.rain, pair.crop_rain, max_pixels)
    gt = _read_rgb(pair.gt, pair.crop_gt, max_pixels)
    if rain.shape != gt.shape:
        raise ValueError(f"{pair.name}: rainy {rain.shape} and ground truth {gt.shape} differ")
    return rain, gt


# What `load_upright` is told a file is when ingest's sniffing knows no such capture
# (a BMP): it reads every format but RAW and HEIF with Pillow alike.
_PILLOW_FORMAT = Format("pillow", "png")


def _read_rgb(path: Path, box: Box | None, max_pixels: int) -> np.ndarray:
    try:
        data = read_regular(path, max_pixels=max_pixels)  # refused unread past a picture's size
        image = load_upright(data, sniff(data, path.name) or _PILLOW_FORMAT, max_pixels)
    except CaptureRejected as error:
        raise ValueError(f"{name_text(path.name)}: {error.message}") from None
    except UnidentifiedImageError:
        raise ValueError(f"{name_text(path.name)}: not an image Pillow can read") from None
    except Exception as error:  # Pillow's plugins fail in many ways on damaged files
        raise ValueError(f"{name_text(path.name)}: {first_line(error)}") from None
    region = image.crop(box) if box else image
    return np.array(region, dtype=np.uint8)


# --- What is on disk -----------------------------------------------------------------


@dataclass(frozen=True)
class _Tree:
    """The files under a root, relative to it; hidden files and folders left out, and
    a problem for each folder not read (`unread`: a link to a folder, which is not
    followed, or a folder that cannot be listed)."""

    root: Path
    dirs: tuple[PurePosixPath, ...]
    images: tuple[PurePosixPath, ...]
    texts: tuple[PurePosixPath, ...]
    unread: tuple[LayoutProblem, ...]
    # Files of a picture kind Pillow knows that are not imported (.gif, .heic), by suffix.
    not_imported: dict[str, int]
    _children: dict[PurePosixPath, dict[str, PurePosixPath]]
    _images_by_folder: dict[PurePosixPath, list[PurePosixPath]]

    def child(self, parent: PurePosixPath, *names: str) -> PurePosixPath | None:
        """The first of `names` (case-insensitive) that is a sub-folder of `parent`."""
        children = self._children.get(parent, {})
        return next((children[n] for n in names if n in children), None)

    def images_in(self, folder: PurePosixPath) -> list[PurePosixPath]:
        return self._images_by_folder.get(folder, [])

    def subdirs(self, parent: PurePosixPath) -> list[PurePosixPath]:
        return sorted(self._children.get(parent, {}).values())


def _hidden(name: str) -> bool:
    return name.startswith(".") or name in _SKIPPED_DIRS


def _scan(root: Path) -> _Tree:
    dirs, images, texts, unread = [], [], [], []
    pictures, not_imported = Image.registered_extensions(), Counter()
    children: dict[PurePosixPath, dict[str, PurePosixPath]] = defaultdict(dict)
    by_folder: dict[PurePosixPath, list[PurePosixPath]] = defaultdict(list)

    def unlisted(error: OSError) -> None:
        folder = Path(error.filename).relative_to(root).as_posix()
        unread.append(LayoutProblem("unreadable", folder, f"cannot list it: {error.strerror}"))

    for here, subdirs, files in os.walk(root, onerror=unlisted):
        subdirs[:] = sorted(d for d in subdirs if not _hidden(d))
        folder = PurePosixPath(Path(here).relative_to(root).as_posix())
        dirs.append(folder)
        children[folder] = {d.lower(): folder / d for d in subdirs}
        unread += [
            _problem("unreadable", folder / d, "a link to a folder, not followed: not read")
            for d in subdirs
            if os.path.islink(os.path.join(here, d))
        ]
        for name in sorted(files):
            if _hidden(name):
                continue
            suffix = PurePosixPath(name).suffix.lower()
            if suffix in IMAGE_SUFFIXES:
                images.append(folder / name)
                by_folder[folder].append(folder / name)
            elif suffix == ".txt":
                texts.append(folder / name)
            elif suffix in pictures:
                not_imported[suffix] += 1
    return _Tree(
        root,
        tuple(dirs),
        tuple(images),
        tuple(texts),
        tuple(unread),
        dict(sorted(not_imported.items())),
        children,
        by_folder,
    )


# --- What a layout's rules make of it ------------------------------------------------


@dataclass(frozen=True)
class _Candidate:
    unit: PurePosixPath  # the folder (or list file) the rule matched in
    name: str  # unique within its unit (a slug of `original`)
    original: str  # the text the name was made from: two of them never share a name
    rain: PurePosixPath
    gt: PurePosixPath
    group: str | None = None
    scene_group: bool = False  # the group is a scene id within the unit, named like pairs
    side_by_side: bool = False
    partition: PurePosixPath | None = None  # the set's own train/val/test folder holding it


@dataclass
class _Match:
    candidates: list[_Candidate] = field(default_factory=list)
    problems: list[LayoutProblem] = field(default_factory=list)
    claimed: set[PurePosixPath] = field(default_factory=set)  # files some rule recognised


def _problem(kind: str, path: PurePosixPath, detail: str) -> LayoutProblem:
    return LayoutProblem(kind, str(path), detail)


# Letters NFKD does not take apart, spelt in ASCII.
_ASCII_SPELLING = str.maketrans(
    {"ß": "ss", "ẞ": "SS", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ø": "o", "Ø": "O"}
    | {"ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "þ": "th", "Þ": "Th", "ð": "d", "Ð": "D"}
)


def _slug(text: str) -> str:
    """`text` as a name: accents folded to ASCII (café → cafe, Straße → Strasse), every
    other run of characters but letters, digits, _ and - one hyphen; a text of none
    of them is named by its hash."""
    folded = unicodedata.normalize("NFKD", text.translate(_ASCII_SPELLING))
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", folded.encode("ascii", "ignore").decode()).strip("-")
    return slug or _short_hash(text)


def _short_hash(text: str) -> str:
    # A name's bytes that are not UTF-8 are hashed as they are on disk.
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:8]


def _where(folder: PurePosixPath) -> str:
    return "the root folder" if folder == PurePosixPath(".") else f"{folder}/"


def _keyed(
    files: Iterable[PurePosixPath], key: Callable[[str], Hashable | None]
) -> dict[Hashable, list[PurePosixPath]]:
    """Files by the key their stem gives; files whose stem gives none are left out."""
    keyed: dict[Hashable, list[PurePosixPath]] = defaultdict(list)
    for path in files:
        found = key(path.stem)
        if found is not None:
            keyed[found].append(path)
    return keyed


def _pair_by_key(
    match: _Match,
    unit: PurePosixPath,
    rainy: dict[Hashable, list[PurePosixPath]],
    gts: dict[Hashable, list[PurePosixPath]],
    *,
    name: Callable[[Hashable], str],
    gt_key: Callable[[Hashable], Hashable] = lambda key: key,
    group: Callable[[Hashable], str | None] = lambda key: None,
    scene_group: bool = False,
    rain_dir: PurePosixPath,
    gt_dir: PurePosixPath,
    partition: PurePosixPath | None = None,
) -> None:
    """Pair rainy files with the ground truth their key points to, each named by a slug
    of what `name` gives; a key given by two files is a duplicate, and neither file is
    guessed between."""
    for files in [*rainy.values(), *gts.values()]:
        match.claimed.update(files)
        if len(files) > 1:
            listed = ", ".join(path.name for path in files)
            match.problems.append(
                _problem("duplicate-name", files[0], f"files stand for the same image: {listed}")
            )
    for key, files in rainy.items():
        partner = gts.get(gt_key(key))
        if partner is None:
            detail = f"no ground truth for {name(key)} in {_where(gt_dir)}"
            match.problems.append(_problem("missing-gt", files[0], detail))
        elif len(files) == 1 and len(partner) == 1:
            match.candidates.append(
                _Candidate(
                    unit,
                    _slug(name(key)),
                    name(key),
                    files[0],
                    partner[0],
                    group(key),
                    scene_group,
                    partition=partition,
                )
            )
    partnered = {gt_key(key) for key in rainy}
    for key, files in gts.items():
        if key not in partnered:
            detail = f"no rainy image for it in {_where(rain_dir)}"
            match.problems.append(_problem("missing-rain", files[0], detail))


def _number(stem: str, patterns: tuple[re.Pattern[str], ...]) -> int | None:
    for pattern in patterns:
        if found := pattern.fullmatch(stem):
            return int(found[1])
    return None


_FLAGS = re.IGNORECASE | re.ASCII
_BARE_NUMBER = re.compile(r"(\d+)", _FLAGS)
# Words of a folder name: Rain_Heavy, rain-heavy and RainHeavy all hold "heavy";
# "lightning" holds no "light", "GT-RAIN_test" holds "test".
_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+")
# How the real sets name their own partitions: GT-RAIN_test, real_test_1000, Training.
_PARTITION_WORDS = frozenset({"train", "training", "val", "valid", "validation", "test", "testing"})


def _words(name: str) -> set[str]:
    return {word.lower() for word in _WORD.findall(name)}


def _partition(folder: PurePosixPath) -> PurePosixPath | None:
    """The innermost of `folder` and the folders above it (below the root) whose name
    holds a partition word: `GT-RAIN_test`, `RealRain-1k-L/test`, `Testing/real_test_1000`."""
    for candidate in (folder, *folder.parents):
        if candidate.name and _PARTITION_WORDS & _words(candidate.name):
            return candidate
    return None


def _beside(
    tree: _Tree, rain_names: tuple[str, ...], gt_names: tuple[str, ...]
) -> Iterable[tuple[PurePosixPath, PurePosixPath, PurePosixPath]]:
    """(parent, rainy folder, ground-truth folder) for every folder holding one of
    `rain_names` beside one of `gt_names`."""
    for parent in tree.dirs:
        rain, gt = tree.child(parent, *rain_names), tree.child(parent, *gt_names)
        if rain is not None and gt is not None:
            yield parent, rain, gt


# --- rain100 ---------------------------------------------------------------------------

_RAIN100_RAINY = (re.compile(r"rain-(\d+)", _FLAGS), re.compile(r"norain-(\d+)x2", _FLAGS))
_RAIN100_GT = (re.compile(r"norain-(\d+)", _FLAGS),)
_rain100_rainy = partial(_number, patterns=_RAIN100_RAINY)
_rain100_gt = partial(_number, patterns=_RAIN100_GT)
# Inside rain/ and norain/ the role is the folder's, so a bare number names a file too.
_rain100_split_rainy = partial(_number, patterns=(*_RAIN100_RAINY, _BARE_NUMBER))
_rain100_split_gt = partial(_number, patterns=(*_RAIN100_GT, _BARE_NUMBER))


def _rain100_name(number: Hashable) -> str:
    return f"rain-{number}"


def _match_rain100(tree: _Tree) -> _Match:
    """Rain100L/H (JORDER) and their newer Rain200L/H release.

    Accepts, in any folder at any depth:
    - one folder holding `rain-N.png` and `norain-N.png` (the original Rain100L/H
      test sets write N as 001…100, RainTrainL/H as 1…1800: both are read);
    - `rain/` beside `norain/`: rainy `rain-N`, `norain-Nx2` (the 2019 Rain200
      release, also inside `rain/X2/`) or bare `N`; ground truth `norain-N` or bare `N`.
    Pairs are matched on the number N and named `rain-N` with N unpadded. Both
    releases are read alike; `norain-Nx2` names mark the Rain200 release, whose
    counts differ (1800 train / 200 test pairs against Rain100's 1800 or 200 / 100).
    """
    match = _Match()
    split_dirs: set[PurePosixPath] = set()
    for parent in tree.dirs:
        rain, norain = tree.child(parent, "rain"), tree.child(parent, "norain")
        if rain is None or norain is None:
            continue
        rain_dirs = [rain, *filter(None, [tree.child(rain, "x2")])]
        split_dirs.update([*rain_dirs, norain])
        _pair_by_key(
            match,
            parent,
            _keyed([image for d in rain_dirs for image in tree.images_in(d)], _rain100_split_rainy),
            _keyed(tree.images_in(norain), _rain100_split_gt),
            name=_rain100_name,
            rain_dir=rain,
            gt_dir=norain,
        )
    for folder in tree.dirs:
        if folder in split_dirs:
            continue
        files = tree.images_in(folder)
        _pair_by_key(
            match,
            folder,
            _keyed(files, _rain100_rainy),
            _keyed(files, _rain100_gt),
            name=_rain100_name,
            rain_dir=folder,
            gt_dir=folder,
        )
    return match


# --- rain1400 --------------------------------------------------------------------------

_RAIN1400_RAINY = re.compile(r"(\d+)_(\d+)", _FLAGS)


def _rain1400_rainy(stem: str) -> tuple[int, int] | None:
    found = _RAIN1400_RAINY.fullmatch(stem)
    if found is None or int(found[2]) not in RAIN1400_VARIANTS:
        return None
    return int(found[1]), int(found[2])


def _match_rain1400(tree: _Tree) -> _Match:
    """Rain1400 / Rain12600 (DDN, Fu et al. 2017).

    Accepts `rainy_image/I_J.jpg` (J = 1…14) beside `ground_truth/I.jpg`, or the same
    names in `rain/` beside `norain/`, in any folder at any depth; `.png` as well.
    Pairs are named `I_J` and grouped by scene I. A scene whose ground truth has some
    but not all 14 rainy variants is reported; its present variants are still paired.
    """
    match = _Match()
    for parent in tree.dirs:
        rain = tree.child(parent, "rainy_image")
        gt_dir = tree.child(parent, "ground_truth")
        if rain is None or gt_dir is None:
            rain, gt_dir = tree.child(parent, "rain"), tree.child(parent, "norain")
        if rain is None or gt_dir is None:
            continue
        rainy = _keyed(tree.images_in(rain), _rain1400_rainy)
        gts = _keyed(tree.images_in(gt_dir), partial(_number, patterns=(_BARE_NUMBER,)))
        _pair_by_key(
            match,
            parent,
            rainy,
            gts,
            name=lambda key: f"{key[0]}_{key[1]}",
            gt_key=lambda key: key[0],
            group=lambda key: str(key[0]),
            scene_group=True,
            rain_dir=rain,
            gt_dir=gt_dir,
        )
        variants: dict[Hashable, set[int]] = defaultdict(set)
        for scene, variant in rainy:
            variants[scene].add(variant)
        for scene, files in gts.items():
            absent = [str(j) for j in RAIN1400_VARIANTS if j not in variants[scene]]
            if variants[scene] and absent:
                detail = f"scene {scene} lacks rainy variants {', '.join(absent)} of 1–14"
                match.problems.append(_problem("missing-rain", files[0], detail))
    return match


# --- input-target ----------------------------------------------------------------------


def _match_input_target(tree: _Tree) -> _Match:
    """Restormer / MPRNet / BasicSR-style sets (Rain13K, Test100, Test1200, Test2800,
    Rain100L/H as re-released there).

    Accepts `input/` beside `target/` (or `gt/`, `groundtruth/`), in any folder at any
    depth, pairing files of the same stem (the extension may differ). Pairs are named
    by that stem.
    """
    match = _Match()
    for parent, inputs, targets in _beside(tree, ("input",), ("target", "gt", "groundtruth")):
        _pair_same_names(match, tree, parent, inputs, targets)
    return match


def _pair_same_names(
    match: _Match,
    tree: _Tree,
    parent: PurePosixPath,
    rain_dir: PurePosixPath,
    gt_dir: PurePosixPath,
    *,
    name: Callable[[Hashable], str] = str,
    group: Callable[[Hashable], str | None] = lambda stem: None,
    partition: PurePosixPath | None = None,
) -> None:
    """Pair the images of `rain_dir` with those of `gt_dir` that have the same stem (the
    extension may differ), each pair named by that stem unless `name` says otherwise."""
    _pair_by_key(
        match,
        parent,
        _keyed(tree.images_in(rain_dir), lambda stem: stem),
        _keyed(tree.images_in(gt_dir), lambda stem: stem),
        name=name,
        group=group,
        rain_dir=rain_dir,
        gt_dir=gt_dir,
        partition=partition,
    )


# --- spa ---------------------------------------------------------------------------------


# SPA-Data's longest list, real_world.txt, is some 60 MB; a text far larger is no list.
_MAX_LIST_BYTES = 256 << 20


def _listed_pairs(root: Path, text: PurePosixPath) -> list[tuple[int, str]] | None:
    """The numbered non-blank lines of a "rainy gt" list, or None when the file is
    some other text (a README, a licence, a single-column list). Refused unread
    (`_Refused`) as an image of the set is, or past _MAX_LIST_BYTES: a link to
    /dev/zero would fill memory, a FIFO block."""
    if why := _refused_file(root, text):
        raise _Refused("unreadable", why)
    try:
        with open(root / text, "rb") as handle:
            data = handle.read(_MAX_LIST_BYTES + 1)
    except OSError as error:  # no permission, a folder swapped in since the listing
        raise _Refused("unreadable", first_line(error)) from None
    if len(data) > _MAX_LIST_BYTES:
        raise _Refused("unreadable", f"larger than {_MAX_LIST_BYTES >> 20} MiB, which no list is")
    # A name's bytes that are not UTF-8 decode as the listing names that file (surrogateescape).
    lines = [
        (number, line.strip())
        for number, line in enumerate(data.decode("utf-8-sig", "surrogateescape").splitlines(), 1)
        if line.strip()
    ]
    return lines if lines and _is_pair_line(lines[0][1]) else None


def _read_lists(tree: _Tree, problems: list[LayoutProblem]) -> list[tuple[PurePosixPath, list]]:
    """Every "rainy gt" list under the tree with its lines; a text refused is a problem."""
    lists = []
    for text in tree.texts:
        try:
            lines = _listed_pairs(tree.root, text)
        except _Refused as refused:
            problems.append(_problem(refused.kind, text, refused.detail))
            continue
        if lines is not None:
            lists.append((text, lines))
    return lists


def _is_pair_line(line: str) -> bool:
    tokens = line.split()
    return len(tokens) == 2 and all(
        PurePosixPath(token).suffix.lower() in IMAGE_SUFFIXES for token in tokens
    )


def _listed_path(
    token: str, list_dir: PurePosixPath, images: set[PurePosixPath]
) -> tuple[PurePosixPath, bool]:
    """Where a listed path lies and whether it is there. SPA-Data writes
    `/real_test_1000/rain/000.png`: relative despite the slash, but copies differ on
    relative to what, so the list's folder and each one above it up to the root are
    tried in turn."""
    clean = token.replace("\\", "/").lstrip("/")
    tried = [
        PurePosixPath(posixpath.normpath(f"{base}/{clean}"))
        for base in (list_dir, *list_dir.parents)
    ]
    found = next((path for path in tried if path in images), None)
    return (found, True) if found else (tried[0], False)


def _match_spa(tree: _Tree) -> _Match:
    """SPA-Data (Wang et al. 2019, real rain with pseudo ground truth).

    Checked against the authors' loader, stevewongv/SPANet `dataset.py` (each line of
    the list is "rainy gt"; the test loader reads `testing/real_test_1000.txt` and puts
    a `.` before its `/real_test_1000/…` paths, `main.py`), and the release notes
    `Test_Datset_README.md` / `Train_Dataset_README.md` (`real_world/<video>/<video>-<frame>/`).

    Accepts any `.txt` list whose lines are "rainy gt" paths (`real_test_1000.txt`,
    `real_world.txt`), relative to the list's folder or one above it up to the root,
    a leading `/` or `./` allowed; listed files must lie under the root. Other `.txt`
    files (a licence, a README, a single-column list) are ignored. Pairs are named by
    the rainy file's stem. Without any list, accepts `rain/` beside `gt/` with `NNN.png`
    and `NNNgt.png` (SPA-Data's test names), `NNN_gt` or the same stem. A training
    crop's group is its video (`real_world/<video>/…`); the test set names no scene.
    Lists of both `training/` and `testing/` under one root are mixed partitions.
    """
    match = _Match()
    images = set(tree.images)
    lists = _read_lists(tree, match.problems)
    for text, lines in lists:
        for number, line in lines:
            if not _is_pair_line(line):
                detail = f"line {number}: expected 'rainy gt' image paths, got {line[:80]!r}"
                match.problems.append(_problem("unreadable", text, detail))
                continue
            rain_token, gt_token = line.split()
            rain, has_rain = _listed_path(rain_token, text.parent, images)
            gt, has_gt = _listed_path(gt_token, text.parent, images)
            match.claimed.update(path for path, there in [(rain, has_rain), (gt, has_gt)] if there)
            where = f"listed on line {number} of {text.name} but not found"
            if not has_rain:
                match.problems.append(_problem("missing-rain", rain, where))
            if not has_gt:
                match.problems.append(_problem("missing-gt", gt, where))
            if has_rain and has_gt:
                match.candidates.append(
                    _Candidate(
                        text.with_suffix(""),
                        _slug(rain.stem),
                        rain.stem,
                        rain,
                        gt,
                        _spa_scene(rain),
                        partition=_partition(rain.parent),
                    )
                )
    if lists:
        return match
    for parent in tree.dirs:
        rain, gt_dir = tree.child(parent, "rain"), tree.child(parent, "gt")
        if rain is None or gt_dir is None:
            continue
        _pair_by_key(
            match,
            parent,
            _keyed(tree.images_in(rain), lambda stem: stem),
            _keyed(tree.images_in(gt_dir), lambda stem: re.sub(r"[_-]?gt$", "", stem, flags=re.I)),
            name=str,
            rain_dir=rain,
            gt_dir=gt_dir,
            partition=_partition(parent),
        )
    return match


def _spa_scene(rain: PurePosixPath) -> str | None:
    """The video a training crop comes from: `real_world/<video>/<video-frame>/…`. The
    test set's names (`real_test_1000/rain/NNN.png`) carry none."""
    folders = [part.lower() for part in rain.parts[:-1]]
    if "real_world" in folders[:-1]:
        return rain.parts[folders.index("real_world") + 1]
    return None


# --- did-mdn -----------------------------------------------------------------------------

_DENSITIES = ("heavy", "medium", "light")


def _density(parts: Iterable[str]) -> str | None:
    """The density the nearest of `parts` (innermost first) names, if any."""
    for part in parts:
        words = _words(part)
        if found := next((d for d in _DENSITIES if d in words), None):
            return found
    return None


def _match_didmdn(tree: _Tree) -> _Match:
    """DID-MDN Rain1200 (Zhang & Patel 2018): each `N.jpg` holds the rainy image in
    its left half and the clean one in its right half (DID-MDN's loaders crop
    `(0, 0, w/2, h)` as input, `(w/2, 0, w, h)` as target).

    Accepts bare-number images in any folder at any depth, e.g.
    `DID-MDN-training/Rain_{Heavy,Medium,Light}/train2018new/` and `DID-MDN-test/`.
    Pairs are grouped by the density a folder names (heavy, medium, light) and named
    `heavy-N`; images in no density folder (the mixed test set) are named `N`.
    An odd width cannot be split into equal halves and is a size mismatch.
    """
    match = _Match()
    # Looking up to the root's parent lets a root of `Rain_Heavy/train2018new` read heavy.
    absolute = tree.root.resolve()
    outside = [absolute.name, absolute.parent.name]
    for image in tree.images:
        if _BARE_NUMBER.fullmatch(image.stem) is None:
            continue
        density = _density([*reversed(image.parent.parts), *outside])
        number = int(image.stem)
        name = f"{density}-{number}" if density else str(number)
        match.claimed.add(image)
        match.candidates.append(
            _Candidate(image.parent, name, name, image, image, density, side_by_side=True)
        )
    return match


# --- gt-rain ---------------------------------------------------------------------------

_GT_RAIN_FRAME = re.compile(r"(.+)-([RC])-(\d+)", _FLAGS)


def _gt_rain_frame(stem: str, role: str) -> tuple[str, int] | None:
    """(prefix, frame number) of a `<prefix>-R-NNN` (rainy) or `<prefix>-C-NNN` (clean)
    stem of the `role` asked for."""
    found = _GT_RAIN_FRAME.fullmatch(stem)
    if found is None or found[2].upper() != role:
        return None
    return found[1], int(found[3])


def _match_gt_rain(tree: _Tree) -> _Match:
    """GT-RAIN (Ba et al., ECCV 2022): real rain and clean frames of the same scenes.

    Checked against the authors' loaders, UCLA-VMG/GT-RAIN `training_deraining_code.ipynb`
    (`GTRainDataset`: each scene folder under the train/val roots; rainy `*R-*.png`;
    the clean frame is the rainy name with `R-NNN.png` swapped for `C-000.png`, except
    scene `Gurutto_1-2`, whose every rainy frame has its own `C-NNN`) and
    `testing_deraining_code.ipynb` (scene folders of the test set; `*C-000.png` with
    `*R-*.png`). The release unzips to `GT-RAIN_train/`, `GT-RAIN_val/`, `GT-RAIN_test/`.

    Accepts, in any folder at any depth, `<prefix>-R-NNN.png` rainy frames beside
    `<prefix>-C-NNN.png` clean ones (any image suffix). Where a prefix has one clean
    frame, every rainy frame of it pairs with that one, whatever its number (several
    rainy frames per clean frame); where it has several, each rainy frame pairs with
    the clean frame of its own number (the `Gurutto_1-2` case) and one without is
    reported. Pairs are named `<prefix>-R-NNN` and grouped by scene: the folder's name
    (the root's own name when the frames lie in the root). Scenes from two of the
    set's partitions (`GT-RAIN_train/` and `GT-RAIN_test/`) under one root are mixed.
    """
    match = _Match()
    for folder in tree.dirs:
        files = tree.images_in(folder)
        rainy = _keyed(files, partial(_gt_rain_frame, role="R"))
        clean = _keyed(files, partial(_gt_rain_frame, role="C"))
        scene = folder.name or tree.root.resolve().name
        for prefix in sorted({prefix for prefix, _ in [*rainy, *clean]}):
            cleans = [key for key in clean if key[0] == prefix]
            only = cleans[0] if len(cleans) == 1 else None  # shared by every rainy frame
            _pair_by_key(
                match,
                folder,
                {key: found for key, found in rainy.items() if key[0] == prefix},
                {key: clean[key] for key in cleans},
                name=lambda key: f"{key[0]}-R-{key[1]:03d}",
                gt_key=(lambda key, only=only: only) if only is not None else (lambda key: key),
                group=lambda key, scene=scene: scene,
                rain_dir=folder,
                gt_dir=folder,
                partition=_partition(folder.parent),
            )
    return match


# --- realrain-1k -----------------------------------------------------------------------


def _match_realrain_1k(tree: _Tree) -> _Match:
    """RealRain-1k (Li et al. 2022): real rain with ground truth estimated from a
    static-camera video, in a light (`RealRain-1k-L`) and a heavy (`RealRain-1k-H`) set.

    The official repository, hiker-lw/RealRain-1k, holds only a README: no loader. The
    layout follows third-party loaders found by code search (not the authors'):
    `RealRain-1k/RealRain-1k-{L,H}/{train,val or validation,test}/{input,target}/`,
    numbered images, the ground truth under the rainy image's name.

    Accepts `input/` beside `target/` in any folder at any depth, pairing images of the
    same stem (the extension may differ), named by it. The names carry no scene id, so
    the pairs have no group. Two of the set's partitions under one root (`train/` and
    `test/`, or `RealRain-1k-L/test/` and `RealRain-1k-H/test/`) are mixed.
    """
    match = _Match()
    for parent, inputs, targets in _beside(tree, ("input",), ("target",)):
        _pair_same_names(match, tree, parent, inputs, targets, partition=_partition(parent))
    return match


# --- lhp-rain --------------------------------------------------------------------------


def _sequence_number(stem: Hashable) -> str | None:
    found = _BARE_NUMBER.match(str(stem))
    return found[1] if found else None


def _match_lhp_rain(tree: _Tree) -> _Match:
    """LHP-Rain (Guo et al., ICCV 2023): frames of 3,000 static-camera rain videos,
    ground truth by low-rank tensor recovery.

    Checked against the authors' loader, yunguo224/LHP-Rain
    `SCD-Former/dataset/dataset_derain.py` (`DataLoaderTrain`, `DataLoaderVal`: PNGs of
    `<dir>/input/` and `<dir>/gt/`, paired by their place in the sorted listings).
    Third-party scripts name the ground truth folder `target/` and a test image
    `test/…/2701.png`.

    Accepts `input/` beside `gt/` (or `target/`) in any folder at any depth, pairing
    images of the same stem (not by sorted place: a file missing on one side is
    reported, never paired with its neighbour), one ground truth per rainy frame as
    the loader has it:
    - images directly inside, named by stem and grouped by the sequence number the
      name starts with (`2701.png`, `2701_005.png` → `2701`; none, no group);
    - per-sequence folders, `input/<seq>/` beside `gt/<seq>/`, named `<seq>-<stem>`
      and grouped by `<seq>`.
    Two of the set's partitions (`train/` and `test/`) under one root are mixed.
    """
    match = _Match()
    for parent, inputs, gts in _beside(tree, ("input",), ("gt", "target")):
        partition = _partition(parent)
        _pair_same_names(
            match, tree, parent, inputs, gts, group=_sequence_number, partition=partition
        )
        rain_sequences = {folder.name: folder for folder in tree.subdirs(inputs)}
        gt_sequences = {folder.name: folder for folder in tree.subdirs(gts)}
        for sequence in sorted(rain_sequences.keys() | gt_sequences.keys()):
            _pair_same_names(
                match,
                tree,
                parent,
                rain_sequences.get(sequence, inputs / sequence),
                gt_sequences.get(sequence, gts / sequence),
                name=lambda stem, sequence=sequence: f"{sequence}-{stem}",
                group=lambda stem, sequence=sequence: sequence,
                partition=partition,
            )
    return match


# --- Checks common to every layout ----------------------------------------------------


def _natural(text: str) -> tuple[tuple[int, int, str], ...]:
    return tuple(
        (0, int(run), "") if run.isdigit() else (1, 0, run)
        for run in re.findall(r"[0-9]+|[^0-9]+", text)
    )


def _prefixed(unit: PurePosixPath, text: str) -> str:
    prefix = "-".join(_slug(part) for part in unit.parts)
    return f"{prefix}-{text}" if prefix else text


def _distinct(candidates: list[_Candidate]) -> list[_Candidate]:
    """One candidate per (rainy, ground-truth) files: a list line written twice, or two
    lists naming the same pair, is one pair."""
    first: dict[tuple[PurePosixPath, PurePosixPath], _Candidate] = {}
    for candidate in candidates:
        first.setdefault((candidate.rain, candidate.gt), candidate)
    return list(first.values())


def _disambiguated(candidates: list[_Candidate]) -> list[_Candidate]:
    """Names stay as the rules give them unless two folders (train/ and test/, say)
    give the same one; then every name takes its folder's path as a prefix. (Names
    are for people: a pair's identity in the dataset is its files, `imports._job`.)"""
    units: dict[str, set[PurePosixPath]] = defaultdict(set)
    for candidate in candidates:
        units[candidate.name].add(candidate.unit)
    if all(len(found) == 1 for found in units.values()):
        return candidates
    return [
        replace(
            c,
            name=_prefixed(c.unit, c.name),
            original=f"{c.unit}/{c.original}",
            group=_prefixed(c.unit, c.group) if c.scene_group and c.group else c.group,
        )
        for c in candidates
    ]


def _told_apart(candidates: list[_Candidate]) -> list[_Candidate]:
    """Names that only folding to ASCII made equal (`Straße 1`, `Straße-1`) each take
    a short hash of their own text; the same text twice is left for the duplicate check."""
    originals: dict[str, list[str]] = defaultdict(list)
    for candidate in candidates:
        originals[candidate.name].append(candidate.original)
    return [
        replace(c, name=f"{c.name}-{_short_hash(c.original)}")
        if len(same := originals[c.name]) > 1 and len(set(same)) == len(same)
        else c
        for c in candidates
    ]


class _Sizes:
    """Image sizes from headers, each file read once; a file that cannot be read, or
    whose pixels are not taken, is reported once."""

    def __init__(self, root: Path, problems: list[LayoutProblem], max_pixels: int):
        self._root = root
        self._problems = problems
        self._max_pixels = max_pixels
        self._known: dict[PurePosixPath, tuple[int, int] | None] = {}

    def __call__(self, path: PurePosixPath) -> tuple[int, int] | None:
        if path not in self._known:
            try:
                self._known[path] = self._read(path)
            except _Refused as refused:
                self._known[path] = None
                self._problems.append(_problem(refused.kind, path, refused.detail))
        return self._known[path]

    def _read(self, path: PurePosixPath) -> tuple[int, int]:
        if why := _refused_file(self._root, path):
            raise _Refused("unreadable", why)
        try:
            size, mode, turned = _header(self._root / path)
        except (OSError, SyntaxError, ValueError) as error:
            # PIL names the absolute path; the problem already carries the relative one.
            reason = str(error).replace(f" '{self._root / path}'", "")
            raise _Refused("unreadable", f"not an image: {reason}") from None
        try:
            check_pixel_cap(*size, self._max_pixels)
        except CaptureRejected as error:
            raise _Refused("too-many-pixels", error.message) from None
        if mode == "F":
            raise _Refused(
                "float-pixels",
                "32-bit floating-point pixels, whose range the set does not state: refused "
                "rather than guessed; convert the set to 8- or 16-bit images first",
            )
        return self._upright(path, size) if turned else size

    def _upright(self, path: PurePosixPath, size: tuple[int, int]) -> tuple[int, int]:
        """`size` once the file's EXIF orientation is applied, as decoding will apply it
        (`load_pair`): two files may store one picture turned differently. Read whole, as
        the size a header gives may be turned already (a TIFF's, by Pillow 13); a file not
        read (larger than any picture within the cap) fails as its pair is decoded."""
        try:
            data = read_regular(self._root / path, within=self._root, max_pixels=self._max_pixels)
        except CaptureRejected:
            return size
        return header_size(data) or size


class _Refused(Exception):
    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind, self.detail = kind, detail


def _header(path: Path) -> tuple[tuple[int, int], str, bool]:
    """Size and mode from the header, no pixel decoded, as ingest opens a capture
    (`open_image`): the --max-pixels cap decides, and no plugin that decodes to open, or
    runs a program, is used. And whether an EXIF orientation may turn the picture (read
    whole only then): one in the header, or for a PNG with none there one its eXIf chunk
    may give after the pixels, where decoding finds it."""
    # Pillow warns of a damaged TIFF directory or EXIF on opening too: its warnings, not ours.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with open_image(path) as image:
            try:
                # Image's getexif(), not PngImageFile's, which decodes every pixel.
                orientation = Image.Image.getexif(image).get(ORIENTATION_TAG)
            except Exception:  # decoding says what it makes of such an EXIF
                orientation = None
            after = image.format == "PNG" and "exif" not in image.info
            return image.size, image.mode, after or orientation not in (None, 1)


def _refused_file(root: Path, path: PurePosixPath) -> str | None:
    """Why a file of the set is not read, as ingest refuses such captures: a link out of
    the set, or a FIFO or device, which would block the reader."""
    file = root / path
    if not leads_inside(file, root):
        return "leads outside the set; refused"
    try:
        regular_file(file)
    except OSError:
        return "not a regular file; refused"
    if file.is_symlink() and not file.exists():
        return "a link to nothing; refused"
    return None


def _checked(
    candidate: _Candidate, sizes: _Sizes, root: Path, problems: list[LayoutProblem]
) -> PairSource | None:
    rain_size, gt_size = sizes(candidate.rain), sizes(candidate.gt)
    if rain_size is None or gt_size is None:
        return None
    width, height = rain_size
    crop_rain = crop_gt = None
    if candidate.side_by_side:
        if width % 2:
            detail = f"width {width} is odd: the halves cannot be equal"
            problems.append(_problem("size-mismatch", candidate.rain, detail))
            return None
        crop_rain, crop_gt = (0, 0, width // 2, height), (width // 2, 0, width, height)
    elif rain_size != gt_size:
        detail = f"rainy is {width}×{height}, {candidate.gt} is {gt_size[0]}×{gt_size[1]}"
        problems.append(_problem("size-mismatch", candidate.rain, detail))
        return None
    return PairSource(
        candidate.name,
        root / candidate.rain,
        root / candidate.gt,
        crop_rain,
        crop_gt,
        None if candidate.group is None else name_text(candidate.group),
    )


def _find(
    root: Path,
    max_pixels: int,
    *,
    name: str,
    description: str,
    match: Callable[[_Tree], _Match],
) -> tuple[list[PairSource], list[LayoutProblem]]:
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder")
    tree = _scan(root)
    found = match(tree)
    if not found.claimed:
        detail = f"nothing here is laid out as {name}: expected {description}"
        if tree.not_imported:
            files = counted(sum(tree.not_imported.values()), "file")
            detail += (
                f"; {files} of a kind not imported ({', '.join(tree.not_imported)}) were "
                "not looked at"
            )
        # A list not read, or whose files are not found, says why (spa's).
        met = [*found.problems, *tree.unread]
        met.sort(key=lambda problem: (_natural(problem.path), problem.kind))
        return [], [*met, LayoutProblem("no-pairs", ".", detail)]
    problems = [*found.problems, *tree.unread]
    problems += [
        _problem("unexpected-file", image, f"fits no {name} naming rule")
        for image in tree.images
        if image not in found.claimed
    ]
    partitions = sorted({c.partition for c in found.candidates if c.partition is not None})
    if len(partitions) > 1:
        problems.sort(key=lambda problem: (_natural(problem.path), problem.kind))
        listed = ", ".join(f"{partition}/" for partition in partitions)
        detail = (
            f"pairs from {len(partitions)} of the set's own partitions ({listed}): a split "
            "keeps to one, so import each folder as its own split"
        )
        return [], [*problems, LayoutProblem("mixed-partitions", ".", detail)]
    by_name: dict[str, list[_Candidate]] = defaultdict(list)
    for candidate in _told_apart(_disambiguated(_distinct(found.candidates))):
        by_name[candidate.name].append(candidate)
    sizes = _Sizes(root, problems, max_pixels)
    pairs = []
    for pair_name, candidates in by_name.items():
        if len(candidates) > 1:
            listed = ", ".join(str(c.rain) for c in candidates)
            detail = f"{len(candidates)} pairs would be named {pair_name}: {listed}"
            problems.append(_problem("duplicate-name", candidates[0].rain, detail))
        elif pair := _checked(candidates[0], sizes, root, problems):
            pairs.append(pair)
    pairs.sort(key=lambda pair: _natural(pair.name))
    problems.sort(key=lambda problem: (_natural(problem.path), problem.kind))
    if not pairs:
        detail = f"no complete {name} pair (see the problems above); expected {description}"
        problems.append(LayoutProblem("no-pairs", ".", detail))
    return pairs, problems


def _layout(
    name: str,
    description: str,
    match: Callable[[_Tree], _Match],
    kind: str = IMPORTED,
    ground_truth: str | None = None,
) -> Layout:
    find = partial(_find, name=name, description=description, match=match)
    return Layout(name, description, find, kind, ground_truth)


LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        _layout(
            "rain100",
            "Rain100L/H, Rain200L/H: rain-N.png with norain-N.png, or rain/ beside norain/",
            _match_rain100,
        ),
        _layout(
            "rain1400",
            "Rain1400/DDN: rainy_image/I_J.jpg (J = 1–14) with ground_truth/I.jpg",
            _match_rain1400,
        ),
        _layout(
            "input-target",
            "Restormer-style: input/ beside target/ (or gt/) with images of the same name",
            _match_input_target,
        ),
        _layout(
            "spa",
            "SPA-Data: a .txt list of 'rainy gt' image paths, or rain/ beside gt/ (NNNgt.png)",
            _match_spa,
            REAL_PAIRED,
            "per-pixel selection of rain-free frames of a static-camera video (SPA-Data)",
        ),
        _layout(
            "did-mdn",
            "DID-MDN Rain1200: N.jpg holding the rainy left half and the clean right half",
            _match_didmdn,
        ),
        _layout(
            "gt-rain",
            "GT-RAIN: scene folders of <scene>-R-NNN.png rainy and <scene>-C-NNN.png clean frames",
            _match_gt_rain,
            REAL_PAIRED,
            "clean frames of the same static camera when the rain had stopped (GT-RAIN)",
        ),
        _layout(
            "realrain-1k",
            "RealRain-1k-L/H: input/ beside target/ with images of the same name",
            _match_realrain_1k,
            REAL_PAIRED,
            "background estimated from the frames of a static-camera rain video (RealRain-1k)",
        ),
        _layout(
            "lhp-rain",
            "LHP-Rain: input/ beside gt/ (or target/), images or per-sequence folders",
            _match_lhp_rain,
            REAL_PAIRED,
            "low-rank tensor recovery of a static-camera video's background (LHP-Rain)",
        ),
    )
}
