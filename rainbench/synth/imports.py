"""`rainbench import-paired`: store a public paired set laid out on disk (Rain100L/H,
Rain1400, input/target folders, DID-MDN; the real-paired SPA-Data, GT-RAIN,
RealRain-1k, LHP-Rain) as a paired split, pairing by the layout's naming rules; what
cannot be paired is reported, never guessed. A real-paired split can be checked
against a leaderboard protocol's split, and its scenes never straddle two splits.
"""

import re
from pathlib import Path

from rainbench.parallel import WorkerPool
from rainbench.shards import manifest
from rainbench.shards.dataset import Dataset, DatasetError, initial_info, new_run_id, writing
from rainbench.shards.layout import GROUND_TRUTH, RAIN
from rainbench.synth.importers import (
    LAYOUTS,
    REAL_PAIRED,
    LayoutProblem,
    PairSource,
    find_pairs,
    load_pair,
)
from rainbench.synth.png import encode_png
from rainbench.synth.protocol import MISMATCHES, ProtocolSplit, check_protocol
from rainbench.synth.splits import MadePair, PairJob, PairsSummary, write_pairs

_RESERVED = {"train", "val", "test", "synthetic"}


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
) -> tuple[PairsSummary, list[LayoutProblem]]:
    """Store the pairs found under `path` as the split `name` of the dataset at `root`.

    Creates the dataset when it does not exist yet, so a public set can be
    benchmarked without any captures of one's own.

    With a `protocol` split (named and laid out as it says), the pairs are checked
    against its pair count and checksum list (`write_checksums` writes the list first,
    once); any mismatch is reported and nothing is stored. A real-paired set's scene
    already in another split imported with the same layout is refused (DatasetError),
    nothing stored: a scene never straddles two splits.
    """
    if layout not in LAYOUTS:
        raise DatasetError(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
    if not re.fullmatch(manifest.SPLIT, name) or name in _RESERVED or name.startswith("syn-"):
        raise DatasetError(
            f"--name {name!r}: use lower-case letters, digits, - and _; not train, val, "
            "test, synthetic or a syn-* name"
        )
    if protocol is not None and (layout, name) != (protocol.layout, protocol.name):
        raise DatasetError(
            f"{protocol.title} is imported with --layout {protocol.layout} as --name "
            f"{protocol.name}, not --layout {layout} as --name {name}"
        )
    if write_checksums and protocol is None:
        raise DatasetError("--write-checksums needs the protocol split to write them for")
    if not Path(path).is_dir():
        raise DatasetError(f"{path} is not a folder")
    pairs, problems = find_pairs(Path(path), layout)
    if not pairs:
        return PairsSummary(), problems
    if protocol is not None:
        checked = check_protocol(protocol, Path(path), pairs, write_checksums)
        problems = [*problems, *checked]
        if any(problem.kind in MISMATCHES for problem in checked):
            return PairsSummary(), problems
    with writing(root, must_exist=False) as dataset, WorkerPool(workers) as pool:
        if LAYOUTS[layout].kind == REAL_PAIRED:
            _refuse_straddling_scenes(dataset, layout, name, pairs)
        if not dataset.exists():
            dataset.write_info(initial_info(Path(str(root)).name, {}))
        jobs = [_job(Path(path), layout, name, pair) for pair in pairs]
        run_id = new_run_id()
        summary = write_pairs(dataset, jobs, import_pair, pool, shard_bytes, run_id, progress)
    return summary, problems


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


def _job(root: Path, layout: str, name: str, pair: PairSource) -> PairJob:
    return PairJob(
        split=name,
        job=f"{layout}:{pair.name}",
        row={
            "recipe": f"import:{layout}",
            "group": pair.group,
            "source_rain": pair.rain.relative_to(root).as_posix(),
            "source_gt": pair.gt.relative_to(root).as_posix(),
        },
        task=pair,
    )


def import_pair(pair: PairSource) -> MadePair:
    try:
        rain, gt = load_pair(pair)
    except Exception as error:  # any undecodable file: reported for this pair, the run goes on
        return MadePair({}, {}, error=f"{pair.rain.name}: {error}")
    height, width = rain.shape[:2]
    members = {RAIN: encode_png(rain), GROUND_TRUTH: encode_png(gt)}
    return MadePair(members, {"width": width, "height": height})
