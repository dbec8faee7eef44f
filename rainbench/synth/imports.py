"""`rainbench import-paired`: store a public paired set laid out on disk (Rain100L/H,
Rain1400, input/target folders, SPA-Data, DID-MDN) as a paired split, pairing by
the layout's naming rules; what cannot be paired is reported, never guessed.
"""

import re
from pathlib import Path

from rainbench.parallel import WorkerPool
from rainbench.shards import manifest
from rainbench.shards.dataset import Dataset, DatasetError, initial_info, new_run_id
from rainbench.shards.layout import GROUND_TRUTH, RAIN
from rainbench.synth.importers import LAYOUTS, LayoutProblem, PairSource, find_pairs, load_pair
from rainbench.synth.png import encode_png
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
) -> tuple[PairsSummary, list[LayoutProblem]]:
    """Store the pairs found under `path` as the split `name` of the dataset at `root`.

    Creates the dataset when it does not exist yet, so a public set can be
    benchmarked without any captures of one's own.
    """
    if layout not in LAYOUTS:
        raise DatasetError(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
    if not re.fullmatch(manifest.SPLIT, name) or name in _RESERVED or name.startswith("syn-"):
        raise DatasetError(
            f"--name {name!r}: use lower-case letters, digits, - and _; not train, val, "
            "test, synthetic or a syn-* name"
        )
    if not Path(path).is_dir():
        raise DatasetError(f"{path} is not a folder")
    pairs, problems = find_pairs(Path(path), layout)
    if not pairs:
        return PairsSummary(), problems
    dataset = Dataset(root)
    with dataset.lock(), WorkerPool(workers) as pool:
        if not dataset.exists():
            dataset.write_info(initial_info(dataset.root.name, {}))
        jobs = [_job(Path(path), layout, name, pair) for pair in pairs]
        run_id = new_run_id()
        summary = write_pairs(dataset, jobs, import_pair, pool, shard_bytes, run_id, progress)
    return summary, problems


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
