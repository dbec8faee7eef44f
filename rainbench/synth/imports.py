"""`rainbench import-paired`: store a public paired set laid out on disk (Rain100L/H,
Rain1400, input/target folders, DID-MDN; the real-paired SPA-Data, GT-RAIN,
RealRain-1k, LHP-Rain) as a paired split, pairing by the layout's naming rules; what
cannot be paired is reported, never guessed. A real-paired split can be checked
against a leaderboard protocol's split, and its scenes never straddle two splits.
"""

import re
from dataclasses import dataclass
from pathlib import Path

from rainbench.capture.decode import DEFAULT_MAX_PIXELS
from rainbench.capture.source import name_text
from rainbench.files import file_sha256
from rainbench.parallel import WorkerPool
from rainbench.shards import manifest
from rainbench.shards.dataset import Dataset, DatasetError, initial_info, new_run_id, writing
from rainbench.shards.layout import GROUND_TRUTH, RAIN
from rainbench.synth.importers import (
    LAB_PAIRS,
    LAYOUTS,
    REAL_PAIRED,
    LayoutProblem,
    PairSource,
    find_pairs,
    load_pair,
)
from rainbench.synth.png import encode_png
from rainbench.synth.protocol import (
    MISMATCHES,
    PROTOCOL_SPLIT_NAMES,
    ProtocolSplit,
    check_protocol,
)
from rainbench.synth.splits import MadePair, PairJob, PairsSummary, write_pairs

_RESERVED = {*manifest.RESERVED_PAIRED, manifest.EVERY_SPLIT, LAB_PAIRS}

# What an import reports besides find_pairs' and the protocol's problems. A pair whose
# files differ from those the split holds under their paths keeps the whole import out
# of the dataset, as a protocol mismatch does; byte-identical rainy and ground-truth
# files are only a warning (their PSNR is infinite).
CHANGED_SOURCE = "changed-source"
IDENTICAL_FILES = "identical-files"


@dataclass(frozen=True)
class ImportTask:
    pair: PairSource
    max_pixels: int
    rain_sha256: str  # of the source files, recorded in the pair's <key>.json
    gt_sha256: str


def import_paired(
    path: Path,
    layout: str,
    name: str,
    root: Path,
    shard_bytes: int,
    workers: int,
    progress: bool = False,
    protocol: ProtocolSplit | None = None,
    write_checksums: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[PairsSummary, list[LayoutProblem]]:
    """Store the pairs found under `path` as the split `name` of the dataset at `root`.

    Creates the dataset when it does not exist yet, so a public set can be
    benchmarked without any captures of one's own.

    A pair is identified by its files (paths relative to `path`) and their bytes'
    sha256, not by its name: importing again, with more folders or not, adds only
    the pairs not there yet. A pair whose files differ from the ones stored under the
    same paths is a CHANGED_SOURCE problem, and then nothing is stored. Images over
    `max_pixels` are left out before any pixel is decoded.

    With a `protocol` split (named and laid out as it says), the pairs are checked
    against its pair count and checksum list (`write_checksums` writes the list first,
    once, from a download where no problem was found); any mismatch is reported and
    nothing is stored. A real-paired set's scene already in another split imported
    with the same layout is refused (DatasetError), nothing stored: a scene never
    straddles two splits; so is a `name` holding pairs of another layout or recipe.
    """
    if layout not in LAYOUTS:
        raise DatasetError(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
    _check_name(name, protocol, _splits_there(root))
    if protocol is not None and (layout, name) != (protocol.layout, protocol.name):
        raise DatasetError(
            f"{protocol.title} is imported with --layout {protocol.layout} as --name "
            f"{protocol.name}, not --layout {layout} as --name {name}"
        )
    if write_checksums and protocol is None:
        raise DatasetError("--write-checksums needs the protocol split to write them for")
    if not Path(path).is_dir():
        raise DatasetError(f"{path} is not a folder")
    pairs, problems = find_pairs(Path(path), layout, max_pixels)
    if not pairs:
        return PairsSummary(), problems
    with WorkerPool(workers) as pool:
        files = sorted({file for pair in pairs for file in (pair.rain, pair.gt)})
        digests = dict(zip(files, pool.map_ordered(file_sha256, files), strict=True))
        problems = [*problems, *_identical(Path(path), pairs, digests)]
        if protocol is not None:
            found = [problem for problem in problems if problem.kind != IDENTICAL_FILES]
            checked = check_protocol(
                protocol, Path(path), pairs, write_checksums, found, digests.__getitem__
            )
            problems = [*problems, *checked]
            if any(problem.kind in MISMATCHES for problem in checked):
                return PairsSummary(), problems
        with writing(root, must_exist=False) as dataset:
            if LAYOUTS[layout].kind == REAL_PAIRED:
                _refuse_straddling_scenes(dataset, layout, name, pairs)
            jobs, changed = _jobs(dataset, Path(path), layout, name, pairs, digests, max_pixels)
            if changed:
                return PairsSummary(), [*problems, *changed]
            if not dataset.exists():
                dataset.write_info(initial_info(dataset.folder_name, {}))
            run_id = new_run_id()
            summary = write_pairs(dataset, jobs, import_pair, pool, shard_bytes, run_id, progress)
    return summary, problems


def _splits_there(root: str | Path) -> set[str]:
    """The paired splits a local dataset at `root` holds already (none elsewhere)."""
    found = Dataset(Path(root)).synthetic_manifest if "://" not in str(root) else None
    if found is None or not found.exists():
        return set()
    return set(manifest.read_manifest(found, manifest.SYNTHETIC)["split"].to_pylist())


def _check_name(name: str, protocol: ProtocolSplit | None, there: set[str]) -> None:
    """Refuse, before anything is read, a name no split may have, one another command
    makes, or a protocol's split name without that protocol's check, unless the dataset
    holds that split already (imported so before the name was kept for the protocol)."""
    if len(name) > manifest.SPLIT_MAX:  # checked first: the pattern below says no more
        raise DatasetError(
            f"--name: {len(name)} characters; a split's name has at most {manifest.SPLIT_MAX}"
        )
    if not re.fullmatch(manifest.SPLIT, name) or name in _RESERVED or name.startswith("syn-"):
        raise DatasetError(
            f"--name {name!r}: use lower-case letters, digits, - and _; not train, val, "
            f"test, synthetic, all, {LAB_PAIRS} (rainbench pairs) or a syn-* name (rainbench synth)"
        )
    if name in PROTOCOL_SPLIT_NAMES and protocol is None and name not in there:
        raise DatasetError(
            f"--name {name} is a leaderboard protocol's split: import it with --protocol "
            f"FILE --split {name}, which checks it, or choose another name"
        )


def _identical(
    root: Path, pairs: list[PairSource], digests: dict[Path, str]
) -> list[LayoutProblem]:
    # A side-by-side image's halves (DID-MDN) are one file; not so a list line naming a
    # file as its own ground truth.
    return [
        LayoutProblem(
            IDENTICAL_FILES,
            pair.rain.relative_to(root).as_posix(),
            (
                "its own ground truth"
                if pair.rain == pair.gt
                else f"byte for byte the same as {pair.gt.relative_to(root).as_posix()}"
            )
            + ": its PSNR is infinite (stored all the same)",
        )
        for pair in pairs
        if pair.crop_rain is None and digests[pair.rain] == digests[pair.gt]
    ]


def _refuse_straddling_scenes(
    dataset: Dataset, layout: str, name: str, pairs: list[PairSource]
) -> None:
    """A scene (the pairs' group) of this set already in another split of the dataset
    imported with the same layout is an error: scores on a split would otherwise
    reward having trained on its scenes."""
    stored = manifest.read_manifest(dataset.synthetic_manifest, manifest.SYNTHETIC)
    elsewhere: dict[str, str] = {
        group: split
        for split, recipe, group in zip(
            *(stored[column].to_pylist() for column in ("split", "recipe", "group")),
            strict=True,
        )
        if recipe == f"import:{layout}" and split != name and group is not None
    }
    straddling = sorted({pair.group for pair in pairs if pair.group in elsewhere})
    if straddling:
        shown = ", ".join(f"{group} in {elsewhere[group]}" for group in straddling[:5])
        more = f" and {len(straddling) - 5} more" if len(straddling) > 5 else ""
        raise DatasetError(
            f"--name {name}: scenes already in another split imported with --layout "
            f"{layout}: {shown}{more}; a scene never straddles two splits"
        )


def _jobs(
    dataset: Dataset,
    root: Path,
    layout: str,
    name: str,
    pairs: list[PairSource],
    digests: dict[Path, str],
    max_pixels: int,
) -> tuple[list[PairJob], list[LayoutProblem]]:
    """A job per pair, and a CHANGED_SOURCE problem per pair whose rainy file the split
    holds already from other bytes or with another ground truth, or whose files' bytes
    the split holds under other paths no longer found (PATH a folder above or below the
    one imported before: stored again, every pair would be in the split twice).

    A pair stored before its sources' digests were part of its job (`<layout>:<name>`)
    keeps that job, so its key stays valid and it counts as there already; what its
    files held then is not known, so a change to them cannot be seen.
    """
    stored = manifest.read_manifest(dataset.synthetic_manifest, manifest.SYNTHETIC)
    rows = [
        row
        for row in stored.select(["split", "recipe", "job", "source_rain", "source_gt"]).to_pylist()
        if row["split"] == name
    ]
    others = sorted({row["recipe"] for row in rows} - {f"import:{layout}"})
    if others:
        raise DatasetError(
            f"--name {name}: the split holds pairs made otherwise ({others[0]}), not by "
            f"--layout {layout}; a split keeps to one layout, so choose another name"
        )
    before = {row["source_rain"]: row for row in rows}
    made = [_job(root, layout, name, pair, digests, max_pixels) for pair in pairs]
    # The split's pairs whose files this import does not find where they were, by their
    # files' digests: found elsewhere, PATH is not the folder they were imported from.
    found = {job.row["source_rain"] for job in made}
    elsewhere = {
        _digests(row["job"]): row
        for row in rows
        if "//" in row["job"] and row["source_rain"] not in found
    }
    jobs, changed = [], []
    for job in made:
        row = before.get(job.row["source_rain"])
        if row is None and (moved := elsewhere.get(_digests(job.job))):
            changed.append(_moved(name, job, moved))
        elif row is None or row["job"] == job.job:
            jobs.append(job)
        elif "//" not in row["job"] and row["source_gt"] == job.row["source_gt"]:
            jobs.append(PairJob(job.split, row["job"], job.row, job.task))
        else:
            changed.append(_changed(name, job, row))
    return jobs, changed


def _job(
    root: Path,
    layout: str,
    name: str,
    pair: PairSource,
    digests: dict[Path, str],
    max_pixels: int,
) -> PairJob:
    rain, gt = (name_text(file.relative_to(root).as_posix()) for file in (pair.rain, pair.gt))
    rain_sha256, gt_sha256 = digests[pair.rain], digests[pair.gt]
    return PairJob(
        split=name,
        # "//" never occurs in a relative POSIX path, so the two paths stay apart.
        job=f"{layout}:{rain}//{gt}:{rain_sha256[:16]}:{gt_sha256[:16]}",
        row={
            "recipe": f"import:{layout}",
            "group": pair.group,
            "source_rain": rain,
            "source_gt": gt,
        },
        task=ImportTask(pair, max_pixels, rain_sha256, gt_sha256),
    )


def _digests(job: str) -> tuple[str, ...]:
    """The rainy and ground-truth files' digests (16 hex digits each) a job names."""
    return tuple(job.rsplit(":", 2)[1:])


def _moved(name: str, job: PairJob, row: dict) -> LayoutProblem:
    files = " and ".join(dict.fromkeys((row["source_rain"], row["source_gt"])))
    return LayoutProblem(
        CHANGED_SOURCE,
        job.row["source_rain"],
        f"split {name} holds the same bytes as {files}: a pair is known by its paths "
        "relative to PATH, so give the folder the split was imported from (or import "
        "under another --name)",
    )


def _changed(name: str, job: PairJob, row: dict) -> LayoutProblem:
    rain, gt = job.row["source_rain"], job.row["source_gt"]
    if row["source_gt"] != gt:
        what = f"was paired with {row['source_gt']}, now with {gt}"
    else:
        then, now = _digests(row["job"]), _digests(job.job)
        differ = [file for file, a, b in zip((rain, gt), then, now, strict=True) if a != b]
        verb = "hold" if len(differ) > 1 else "holds"
        what = f"{' and '.join(differ)} {verb} other bytes than when imported"
    return LayoutProblem(
        CHANGED_SOURCE,
        rain,
        f"{what}; split {name} keeps the pair it stored then: import the changed set "
        "under another --name",
    )


def import_pair(task: ImportTask) -> MadePair:
    try:
        rain, gt = load_pair(task.pair, task.max_pixels)
    except ValueError as error:  # an undecodable file: reported for this pair, the run goes on
        return MadePair({}, {}, error=str(error))
    height, width = rain.shape[:2]
    members = {RAIN: encode_png(rain), GROUND_TRUTH: encode_png(gt)}
    metadata = {
        "width": width,
        "height": height,
        "source_rain_sha256": task.rain_sha256,
        "source_gt_sha256": task.gt_sha256,
    }
    return MadePair(members, metadata)
