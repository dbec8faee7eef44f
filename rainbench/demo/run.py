"""`rainbench demo`: the whole journey on built-in data. A capture folder is made from
natural photographs (rainy and clean captures with EXIF, an exact copy, a reduced copy
and bad files); it is ingested, tagged (a label sheet corrects the tagger), verified,
given synthetic paired splits; NLCL is trained briefly; the no-reference metrics'
weight files are downloaded where there is network; every derainer is evaluated on the
real and synthetic test splits; and the leaderboard is published. Each stage skips
what an earlier run of the same folder finished, so running it again resumes.
"""

import csv
import errno
import json
import os
import shutil
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path

from rainbench.demo.captures import write_bad_corpus
from rainbench.demo.photos import (
    photo_captures,
    write_photo_captures,
    write_reduced_copy,
    write_tripod_video,
)
from rainbench.files import say_where, write_atomic
from rainbench.ingest import IngestOptions, IngestSummary, ingest
from rainbench.ingest.tag import TagSummary, tag_dataset
from rainbench.shards import manifest
from rainbench.shards.dataset import Dataset, DatasetError
from rainbench.shards.stats import CLEAN_LAYER
from rainbench.shards.verify import left_by_a_stopped_run, verify
from rainbench.train.nlcl.config import NLCLConfig

# A write that fails for want of room (a full disk, a quota, a file-size limit).
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)

# NLCL as the demo trains it: a 4-block generator on 64 px crops, sized to take about
# 2–3 minutes on two CPU cores. Far too short to derain well; it shows the machinery.
# Crops are read in the training process: an epoch is a few steps long, and a loader
# worker would be started again (torch imported again) every epoch.
DEMO_NLCL = NLCLConfig(
    steps=750,
    crop=64,
    channels=32,
    blocks=4,
    nce_layers=(0, 2, 4),
    workers=0,
    checkpoint_every=250,
    log_every=50,
)

# Half the captures train NLCL, half are the test split: its rainy captures are the real
# rain the leaderboard scores, its clean ones carry the synthetic splits' rain.
SPLIT = {"train": 0.5, "val": 0.0, "test": 0.5}
NEEDED = (("train", "rainy"), ("train", "clean"), ("test", "rainy"), ("test", "clean"))
# The demo trains this checkpoint-needing derainer itself; others that need one are skipped.
TRAINED = "nlcl"
# Module → the distribution that provides it, for the message when one is missing.
REQUIREMENTS = {"skimage": "scikit-image", "torch": "torch", "pyiqa": "pyiqa"}
STAGES = (
    "captures",
    "ingest",
    "tag",
    "verify",
    "synth",
    "pairs",
    "train",
    "weights",
    "eval",
    "leaderboard",
)
# Seconds to wait for each weight file's server: without network the demo goes on soon.
FETCH_TIMEOUT = 10.0


class DemoError(DatasetError):
    """The demo cannot run or go on; the message is one line saying what to do."""


@dataclass(frozen=True)
class DemoOptions:
    width: int = 800  # px, of every capture (3:2, stored turned where EXIF says so)
    seed: int = 0  # picks the captures' cameras, names and EXIF, so their keys and splits
    nlcl: NLCLConfig = DEMO_NLCL
    device: str | None = None  # None: cuda when there is a GPU, else cpu
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    threads: int | None = None  # torch's CPU threads; None: chosen from the free CPUs
    fetch_weights: bool = True  # try downloading the metrics' missing weight files
    weights_url: str | None = None  # where from (None: $RAINBENCH_WEIGHTS_URL, else pyiqa's)


@dataclass
class Stage:
    name: str
    seconds: float
    detail: str  # one line: what it did, or found already done


@dataclass
class DemoResult:
    out: Path
    raw: Path  # the capture folder: rainy/, clean/
    dataset: Path
    labels: Path  # the label sheet the tag stage wrote and applied
    run: Path  # the NLCL run folder
    results: Path  # rainbench eval's results
    leaderboard_md: Path
    leaderboard_html: Path
    device: str = "cpu"
    ingest: dict[str, IngestSummary] = field(default_factory=dict)  # per layer
    tagging: TagSummary | None = None
    methods: list[str] = field(default_factory=list)  # evaluated
    skipped_methods: dict[str, str] = field(default_factory=dict)  # name → why
    splits: list[str] = field(default_factory=list)  # evaluated
    unavailable_metrics: dict[str, str] = field(default_factory=dict)  # name → why, and the fix
    weights: dict[str, str] = field(default_factory=dict)  # weight file → fetched, or why not
    stages: list[Stage] = field(default_factory=list)
    seconds: float = 0.0

    @classmethod
    def under(cls, out: Path, **found) -> "DemoResult":
        """Where the demo puts everything in `out`, with `found` so far."""
        return cls(
            out=out,
            raw=out / "raw",
            dataset=out / "ds",
            labels=out / "labels.csv",
            run=out / "runs" / "nlcl",
            results=out / "results",
            leaderboard_md=out / "leaderboard.md",
            leaderboard_html=out / "leaderboard.html",
            **found,
        )

    def to_dict(self) -> dict:
        paths = ("out", "raw", "dataset", "labels", "run", "results")
        return {
            **{name: str(getattr(self, name)) for name in paths},
            "leaderboard": {"md": str(self.leaderboard_md), "html": str(self.leaderboard_html)},
            "device": self.device,
            "ingest": {layer: s.to_dict() for layer, s in self.ingest.items()},
            "tagging": self.tagging.to_dict() if self.tagging else None,
            "methods": self.methods,
            "skipped_methods": self.skipped_methods,
            "splits": self.splits,
            "unavailable_metrics": self.unavailable_metrics,
            "weights": self.weights,
            "stages": [stage.__dict__ for stage in self.stages],
            "seconds": self.seconds,
        }


def run_demo(out: Path, options: DemoOptions | None = None, progress: bool = False) -> DemoResult:
    """Run every stage into `out` (default options: `DemoOptions()`); with `progress`, a
    line per stage and the stages' own progress go to stderr."""
    missing = [dist for module, dist in REQUIREMENTS.items() if find_spec(module) is None]
    if missing:
        raise DemoError(
            f'the demo needs {", ".join(missing)}: pip install "rainbench[demo]" '
            '(from a checkout: pip install ".[demo]")'
        )
    options = options or DemoOptions()
    out = Path(out)
    _check_out(out, options)
    _mark(out, options)
    return _Demo(out, options, progress).run()


def _check_out(out: Path, options: DemoOptions) -> None:
    """Refuse an --out that is neither new, empty, nor an earlier demo's of the same
    captures: the demo writes labels.csv and the leaderboard pages over what is there,
    and resumes on the captures it finds, so a folder of the user's is never written
    into, even one laid out as a demo's (raw/, ds/, labels.csv). A demo's folder holds
    its mark (MARK: the --width and --seed its captures were made with) and only what the
    demo writes; its capture folder may be gone, as the captures stage says to remove it
    to write it again."""
    if not out.exists():
        return
    if not out.is_dir():
        raise DemoError(f"{out} is not a folder; give a new or empty folder as --out")
    held = sorted(entry.name for entry in out.iterdir() if not entry.name.startswith("."))
    result = DemoResult.under(out)
    captures = {result.raw.name, _partial(result.raw).name}
    ours = captures | {
        path.relative_to(out).parts[0]
        for path in (result.dataset, result.labels, result.run, result.results)
    }
    ours |= {result.leaderboard_md.name, result.leaderboard_html.name}
    foreign = [name for name in held if name not in ours]
    mark = _read_mark(out)
    if foreign or (held and mark is None and not captures & set(held)):
        raise DemoError(
            f"{out} is not empty and not a demo's folder (it holds "
            f"{', '.join((foreign or held)[:3])}); give a new or empty folder as --out"
        )
    if held and mark is None:
        raise DemoError(
            f"{out} holds what a demo writes ({', '.join(held[:3])}) but not a demo's mark "
            f"({MARK}; a demo of an older rainbench wrote none): give a new or empty folder "
            "as --out"
        )
    if mark is not None and mark != _made(options):
        raise DemoError(
            f"{out} holds a demo made with --width {mark['width']} --seed {mark['seed']}: "
            "run it again with those, or give another --out"
        )


# The demo's mark in its folder: the options its captures were made with.
MARK = ".rainbench-demo.json"


def _read_mark(out: Path) -> dict | None:
    try:
        mark = json.loads((out / MARK).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(mark, dict) or set(mark) != {"width", "seed"}:
        return None
    return mark


def _mark(out: Path, options: DemoOptions) -> None:
    """Mark `out` as a demo's folder, before anything else is written into it."""
    if (out / MARK).exists():
        return
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / MARK, json.dumps(_made(options)).encode())


def _made(options: DemoOptions) -> dict:
    """What a demo's mark records: the options its captures are made with."""
    return {"width": options.width, "seed": options.seed}


def _partial(raw: Path) -> Path:
    """Where the capture folder is written before it is renamed, whole, to `raw`."""
    return raw.with_name(f"{raw.name}.partial")


class _Demo:
    def __init__(self, out: Path, options: DemoOptions, progress: bool):
        self.options, self.progress = options, progress
        self.captures = photo_captures(options.seed)
        # The reduced copy shows the second rainy capture; the exact copy, the first.
        self.shared = f"Shared/{Path(self.captures[1].spec.name).stem} (small).jpg"
        self.result = DemoResult.under(out)

    def run(self) -> DemoResult:
        import torch

        self.result.device = self.options.device or ("cuda" if torch.cuda.is_available() else "cpu")
        started = time.perf_counter()
        for name in STAGES:
            self._stage(name, getattr(self, f"_{name}"))  # each stage is the method _<name>
        self.result.seconds = time.perf_counter() - started
        return self.result

    def _stage(self, name: str, work: Callable[[], str]) -> None:
        number = f"[{len(self.result.stages) + 1}/{len(STAGES)}]"
        self._say(f"{number} {name} …")
        started = time.perf_counter()
        try:
            detail = work()
        except OSError as error:
            if error.errno in _FULL:  # a write the demo makes itself names no file
                say_where(error, self.result.out)
            raise
        stage = Stage(name, time.perf_counter() - started, detail)
        self.result.stages.append(stage)
        self._say(f"{number} {name}: {detail} ({stage.seconds:.1f} s)")

    def _say(self, line: str) -> None:
        if self.progress:
            print(line, file=sys.stderr, flush=True)

    def _captures(self) -> str:
        raw = self.result.raw
        if raw.exists():
            return f"{raw} is already written (remove it to write it again)"
        # Written beside and renamed when complete, so a killed run never leaves half.
        partial = _partial(raw)
        shutil.rmtree(partial, ignore_errors=True)
        paths = write_photo_captures(partial, self.captures, self.options.width)
        first = paths[0]
        shutil.copy(first, first.with_name(f"copy of {first.name}"))
        write_reduced_copy(partial, self.captures[1], self.options.width, self.shared)
        bad = write_bad_corpus(partial / "rainy" / "bad")
        write_tripod_video(partial / "videos" / "tripod.mp4", self.options.width, self.options.seed)
        partial.rename(raw)
        layers = Counter(capture.layer for capture in self.captures)
        return (
            f"{layers['rainy']} rainy captures (rain of each type rendered on scikit-image's "
            f"photographs) and {layers['clean']} clean ones with camera EXIF, an exact copy, "
            f"a reduced copy, {len(bad)} bad files and a rain video from a tripod -> {raw}"
        )

    def _ingest(self) -> str:
        ds, raw, workers = self.result.dataset, self.result.raw, self.options.workers
        # The dataset's name labels its tables on the leaderboard.
        clean = IngestOptions(layer="clean", split=SPLIT, workers=workers, name="demo")
        rainy = IngestOptions(layer="rainy", split=SPLIT, workers=workers)
        inputs = {"clean": [raw / "clean"], "rainy": [raw / "rainy", raw / "videos"]}
        for layer, options in (("clean", clean), ("rainy", rainy)):
            self.result.ingest[layer] = ingest(inputs[layer], ds, options, progress=self.progress)
        summaries = self.result.ingest.values()
        rejected = Counter()
        for summary in summaries:
            rejected.update(summary.rejected)
        reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(rejected.items()))
        duplicates = sum(s.duplicates for s in summaries)
        near = sum(s.near_duplicates for s in summaries)
        return (
            f"{sum(s.accepted for s in summaries)} accepted, duplicates refused: {duplicates}, "
            f"near-duplicates kept and marked: {near}, rejected: {sum(rejected.values())} "
            f"({reasons or 'none'}) -> {ds}"
        )

    def _tag(self) -> str:
        """Ingest tagged every capture. Here a person's check is played by the rain each
        capture was rendered with: where the tagger disagrees, a label sheet corrects it."""
        truth = {c.spec.name: c.recipe for c in self.captures if c.layer == "rainy"}
        truth[self.shared] = self.captures[1].recipe
        dataset = Dataset(self.result.dataset)
        samples = manifest.read_manifest(dataset.samples_manifest, manifest.SAMPLES)
        rainy = [
            row
            for row in samples.to_pylist()
            if row["layer"] == "rainy" and row["source_path"] in truth
        ]
        wrong = [
            (row["source_path"], truth[row["source_path"]], row["rain_type_auto"])
            for row in sorted(rainy, key=lambda row: row["source_path"])
            if row["rain_type_auto"] != truth[row["source_path"]]
        ]
        with open(self.result.labels, "w", newline="", encoding="utf-8") as handle:
            sheet = csv.writer(handle)
            sheet.writerow(["source_path", "rain_type", "note"])
            for path, rendered, tagged in wrong:
                sheet.writerow(
                    [path, rendered, f"rendered as {rendered}; the tagger said {tagged}"]
                )
        self.result.tagging = tag_dataset(
            dataset.root, self.result.labels, workers=self.options.workers
        )
        counts = self.result.tagging.rain_types
        types = ", ".join(f"{t} {n}" for t, n in counts.items() if t != CLEAN_LAYER)
        return (
            f"the tagger agreed with the rain rendered on {len(rainy) - len(wrong)} of "
            f"{len(rainy)} rainy captures; the label sheet {self.result.labels} corrects "
            f"the other {len(wrong)} (now {types})"
        )

    def _verify(self) -> str:
        dataset = Dataset(self.result.dataset)
        # A demo killed in synth or pairs left their unfinished work, which those stages,
        # after this one, finish: not damage to stop at.
        problems = [
            p for p in verify(dataset, self.options.workers) if not left_by_a_stopped_run(p)
        ]
        if problems:
            raise DemoError(
                f"{dataset.root}: {len(problems)} problems, the first: {problems[0]}; "
                f"see rainbench verify {dataset.root}"
            )
        samples = manifest.read_manifest(dataset.samples_manifest, manifest.SAMPLES)
        found = Counter(
            zip(samples["split"].to_pylist(), samples["layer"].to_pylist(), strict=True)
        )
        empty = [
            f"{layer} captures in {split}" for split, layer in NEEDED if not found[split, layer]
        ]
        if empty:
            # A capture's split follows from its bytes; another seed gives other bytes.
            raise DemoError(
                f"the splits drawn for these captures left no {' and no '.join(empty)}; "
                f"run the demo with another --seed into a new --out"
            )
        counts = ", ".join(f"{layer} {split} {found[split, layer]}" for split, layer in NEEDED)
        return f"every shard and manifest row checks out; {counts}"

    def _synth(self) -> str:
        from rainbench.synth.build import SynthOptions, synthesize

        options = SynthOptions(workers=self.options.workers)
        summary = synthesize(self.result.dataset, options, progress=self.progress)
        pairs = summary.stored + summary.existing
        self.result.splits = ["test", *sorted(pairs)]
        counts = ", ".join(f"{split} {n}" for split, n in sorted(pairs.items()))
        existing = sum(summary.existing.values())
        done = f", {existing} already there" if existing else ""
        return f"{pairs.total()} pairs on the clean test captures ({counts}){done}"

    def _pairs(self) -> str:
        from rainbench.pairs.build import PairsOptions, build_pairs

        options = PairsOptions(workers=self.options.workers)
        summary = build_pairs(self.result.dataset, options, progress=self.progress)
        stored, existing = summary.stored[options.name], summary.existing[options.name]
        if stored or existing:
            self.result.splits.append(options.name)
        done = f", {existing} already there" if existing else ""
        left_out = f", {len(summary.failed)} frames left out" if summary.failed else ""
        return (
            f"{stored} real pairs from the tripod video as {options.name}, their ground truth "
            f"estimated from time{done}{left_out}"
        )

    def _train(self) -> str:
        from rainbench.train.nlcl.trainer import train

        config, device = self.options.nlcl, self.result.device
        report = train(
            self.result.dataset,
            self.result.run,
            config,
            device,
            self.progress,
            self.options.threads,
        )
        if report.stopped_by is not None:
            # The trainer caught Ctrl-C or SIGTERM to save a checkpoint first; the demo then
            # stops as that signal stops it in any other stage (a run again resumes).
            signal.raise_signal(signal.Signals[report.stopped_by])
            raise DemoError(  # the signal is ignored in this process: stop all the same
                f"NLCL training stopped by {report.stopped_by} after step {report.step}, "
                "with a checkpoint there; run the demo again to go on"
            )
        shape = f"{config.blocks} blocks of {config.channels} channels, {config.crop} px crops"
        if report.resumed_from == report.step:
            return f"NLCL already trained to step {report.step} ({shape}) -> {self.result.run}"
        resumed = f", resumed at step {report.resumed_from}" if report.resumed_from else ""
        return (
            f"NLCL trained to step {report.step} on {device}, {report.threads} CPU "
            f"thread{'s' * (report.threads != 1)} "
            f"({shape}{resumed}) "
            f"-> {self.result.run / 'nlcl.pt'}"
        )

    def _weights(self) -> str:
        """Download the weight files the default metrics lack; where that fails (no
        network) the metric is left out by eval, which names the offline fix."""
        from rainbench.leaderboard.eval import PAIRED_METRICS
        from rainbench.metrics.registry import MetricError
        from rainbench.metrics.weights import fetch, status

        missing = [
            found.file
            for found in status()
            if not found.present and set(found.file.metrics) & set(PAIRED_METRICS)
        ]
        if not missing:
            return "every metric's weight file is present"
        if not self.options.fetch_weights:
            return f"not downloading {', '.join(f.name for f in missing)} (--no-fetch)"
        for file in missing:
            try:
                (fetched,) = fetch(
                    [file.name], base_url=self.options.weights_url, timeout=FETCH_TIMEOUT
                )
                self.result.weights[file.name] = f"fetched -> {fetched.path}"
            except MetricError as error:
                self.result.weights[file.name] = str(error)
        return "; ".join(
            f"{name}: {'fetched' if outcome.startswith('fetched') else 'not fetched, left out'}"
            for name, outcome in self.result.weights.items()
        )

    def _eval(self) -> str:
        from rainbench.leaderboard.eval import EvalSettings, evaluate
        from rainbench.leaderboard.sources import DerainerSource
        from rainbench.models.registry import DerainerError, list_derainers

        device, result, progress = self.result.device, self.result, self.progress
        # Results of an earlier run made otherwise (metric weights added since, NLCL
        # trained further) are scored again.
        settings = EvalSettings(device=device, rescore_stale=True, threads=self.options.threads)
        scored = done = failed = 0
        for spec in list_derainers():
            checkpoint = result.run / "nlcl.pt" if spec.name == TRAINED else None
            if spec.needs_checkpoint and checkpoint is None:
                result.skipped_methods[spec.name] = "needs a checkpoint the demo does not train"
                continue
            try:
                source = DerainerSource.from_registry(
                    spec.name, None, checkpoint, device, None, settings.overlap, {}
                )
            except DerainerError as error:
                result.skipped_methods[spec.name] = str(error)
                continue
            for split in result.splits:
                reports = evaluate(
                    source, result.dataset, split, result.results, settings, checkpoint, progress
                )
                for report in reports:
                    scored += report.scored
                    done += report.skipped
                    failed += report.failed
                    result.unavailable_metrics.update(report.unavailable_metrics)
            result.methods.append(spec.name)
        missing = ", ".join(result.unavailable_metrics)
        left_out = f"; left out: {missing}" if missing else ""
        return (
            f"{', '.join(result.methods)} on {', '.join(result.splits)}: {scored} images scored, "
            f"{done} already done, {failed} failed{left_out} -> {result.results}"
        )

    def _leaderboard(self) -> str:
        from rainbench.leaderboard.publish import write_leaderboard

        result = self.result
        write_leaderboard(result.results, "md", result.leaderboard_md)
        write_leaderboard(result.results, "html", result.leaderboard_html)
        return f"{result.leaderboard_md}, {result.leaderboard_html}"
