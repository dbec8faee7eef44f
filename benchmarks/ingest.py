"""Throughput and peak memory of `rainbench ingest` on generated 12 MP JPEG captures,
against three baselines measured in the same run on the same files: the floor (read,
sha256 and reduced decode only), the floor that also stores each file unchanged in tar
shards, and a naive ingest that re-encodes every image. Each method's CPU time per
capture (the whole process tree) gives the per-core ratio, which other sessions' load
moves far less than the wall time; a re-run of the unchanged folder shows what a
re-run costs when no capture needs reading; and `ingest --no-tag`, alone and followed by
`rainbench tag`, shows what the rain-type tagging costs ingest and what tagging later
costs in all.

A measurement, not a test: it exits 0 whatever the figures, and prints PASS or MISS
per goal.

Example:  python benchmarks/ingest.py --captures 48 --data /tmp/rain-captures
          python benchmarks/ingest.py --ray -j 2   # Ray against local workers, same cores
"""

import argparse
import hashlib
import io
import json
import multiprocessing
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import PIL
from bench import cpu_model, log  # benchmarks/ is on sys.path when run as a script
from PIL import Image, features

from rainbench.capture.decode import _draft_request
from rainbench.demo.captures import CaptureSpec, sample_specs, write_capture

REPEATS = 2  # each timed method runs this often; the fastest run is reported
GOAL_OF_FLOOR = 0.8  # ours ≥ 0.8× the floor's images/s
GOAL_OF_NAIVE = 3.0  # ours ≥ 3× the naive ingest's images/s
GOAL_RSS_GROWTH = 1.1  # peak memory at 2N within 10 % of that at N counts as not growing
NAIVE_QUALITY = 95
_SAMPLE_SECONDS = 0.02  # /proc sampling period; the sampling costs about 3 % of one core
_KB = 1024  # /proc's "kB"; MB everywhere here are 10⁶ bytes, as in MB/s
_HALVES = ("first", "second")  # N captures each; the 2N run ingests both


@dataclass
class Run:
    """One method run in its own process tree."""

    seconds: float  # wall time of the whole command, interpreter start-up included
    peak_rss_mb: float  # the largest single process's own peak (VmHWM)
    tree_rss_mb: float  # the largest sum of VmRSS over the process tree at one sample
    output: str  # what the command printed (ingest: its --json summary)
    # CPU seconds of the whole tree (user + system): what the work costs per core,
    # which other sessions' load on the machine moves far less than the wall time.
    cpu_seconds: float = 0.0


@dataclass
class Result:
    method: str
    captures: int
    megabytes: float
    runs: list[Run] = field(default_factory=list)

    @property
    def best(self) -> Run:
        return min(self.runs, key=lambda run: run.seconds)

    @property
    def images_per_second(self) -> float:
        return self.captures / self.best.seconds

    @property
    def mb_per_second(self) -> float:
        return self.megabytes / self.best.seconds

    @property
    def cpu_per_image_ms(self) -> float:
        """The fewest CPU milliseconds per capture over the runs."""
        return min(run.cpu_seconds for run in self.runs) / self.captures * 1000

    @property
    def peak_rss_mb(self) -> float:
        return max(run.peak_rss_mb for run in self.runs)

    @property
    def tree_rss_mb(self) -> float:
        return max(run.tree_rss_mb for run in self.runs)

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "captures": self.captures,
            "megabytes": round(self.megabytes, 1),
            "seconds": [round(run.seconds, 3) for run in self.runs],
            "cpu_seconds": [round(run.cpu_seconds, 3) for run in self.runs],
            "images_per_second": round(self.images_per_second, 2),
            "mb_per_second": round(self.mb_per_second, 1),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "tree_rss_mb": round(self.tree_rss_mb, 1),
        }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--captures", type=int, default=48, help="N (default 48); 2N are made")
    parser.add_argument(
        "--workers",
        "-j",
        type=int,
        default=os.cpu_count() or 1,
        help="processes per method (default: all cores)",
    )
    parser.add_argument(
        "--shard-size",
        default="1GB",
        help="ingest's --shard-size (default 1GB, ingest's own default); a smaller size "
        "gives each worker shards of its own, as in an ingest many times larger",
    )
    parser.add_argument("--data", type=Path, help="keep generated captures here and reuse them")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--ray",
        action="store_true",
        help="instead: ingest with -j N local workers against --ray on a Ray cluster of N "
        "CPUs started here for the run (benchmarks/ray_ingest.py; needs the cluster extra)",
    )
    # The baselines run as this script in a fresh process, so each has its own memory peak.
    parser.add_argument(
        "--baseline", choices=("floor", "floor-store", "naive"), help=argparse.SUPPRESS
    )
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("inputs", nargs="*", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.captures < 1 or args.workers < 1:
        parser.error("--captures and --workers must be at least 1")
    if args.baseline == "floor":
        floor(args.inputs, args.workers)
    elif args.baseline == "floor-store":
        floor_store(args.inputs, args.out, args.workers)
    elif args.baseline == "naive":
        naive(args.inputs, args.out, args.workers)
    else:
        run = benchmark
        if args.ray:
            from ray_ingest import benchmark as run
        if args.data:
            run(args.data, args.captures, args.workers, args.shard_size, args.json)
        else:
            with tempfile.TemporaryDirectory(prefix="rainbench-bench-") as data:
                run(Path(data), args.captures, args.workers, args.shard_size, args.json)


def benchmark(data: Path, captures: int, workers: int, shard_size: str, as_json: bool) -> None:
    # Others' work on the machine skews every ratio; the load before we start shows it.
    load = os.getloadavg()[0]
    folders = generate(data, captures, workers)
    _warm(folders)
    log(f"{captures} captures × {REPEATS} runs per method, {workers} workers")
    script = [sys.executable, Path(__file__).resolve(), "-j", workers]
    with tempfile.TemporaryDirectory(prefix="rainbench-out-", dir=data) as scratch:
        out = Path(scratch) / "ds"
        ingest = [sys.executable, "-m", "rainbench", "ingest", "--no-progress", "--json"]
        ingest += ["-j", workers, "--shard-size", shard_size, "--out", out]
        # key: (label, input folders, command before the folders)
        methods = {
            "floor": (
                "floor (read + sha256 + reduced decode)",
                folders[:1],
                [*script, "--baseline", "floor"],
            ),
            "floor_store": (
                "floor + store (+ originals into tar)",
                folders[:1],
                [*script, "--baseline", "floor-store", "--out", out],
            ),
            "ours": ("rainbench ingest", folders[:1], ingest),
            "naive": (
                f"naive (full decode + JPEG q{NAIVE_QUALITY} + tar)",
                folders[:1],
                [*script, "--baseline", "naive", "--out", out],
            ),
            # At 2N the fixed start-up costs weigh half as much: the difference is per image.
            "floor_2n": ("floor, 2N", folders, [*script, "--baseline", "floor"]),
            "ours_2n": ("rainbench ingest, 2N", folders, ingest),
            # The same folder again into the dataset that holds it: nothing to read.
            "ours_rerun": ("rainbench ingest, unchanged re-run", folders[:1], ingest),
            # Tagging left to later: what the rain-type features cost ingest, and what
            # measuring them afterwards costs in all.
            "ours_untagged": ("rainbench ingest --no-tag", folders[:1], [*ingest, "--no-tag"]),
            "tagged_later": (
                "ingest --no-tag, then rainbench tag",
                folders[:1],
                _then_tag([*ingest, "--no-tag"], out, workers),
            ),
        }
        results = {
            key: Result(label, captures * len(inputs), _megabytes(inputs))
            for key, (label, inputs, _) in methods.items()
        }
        # Interleaved repeats, so a slow spell of the machine hits every method alike.
        for repeat in range(REPEATS):
            for key, (label, inputs, command) in methods.items():
                command = [str(part) for part in [*command, *inputs]]
                if key == "ours_rerun":
                    subprocess.run(command, check=True, capture_output=True)  # untimed
                run = measure(command)
                shutil.rmtree(out, ignore_errors=True)
                # Write the last method's dirty pages back now, not during the next one.
                os.sync()
                results[key].runs.append(run)
                log(f"  run {repeat + 1}: {label}: {run.seconds:.2f} s")
                if key.startswith("ours"):
                    _check_ingest(run, 0 if key == "ours_rerun" else results[key].captures)
    report(results, captures, workers, load, as_json)


def _then_tag(ingest: list, out: Path, workers: int) -> list:
    """A command that runs `ingest` on the folders after it, then `rainbench tag` on `out`."""
    tag = [sys.executable, "-m", "rainbench", "tag", out, "-j", workers]
    first, then = (shlex.join(str(part) for part in command) for command in (ingest, tag))
    return ["sh", "-c", f'{first} "$@" >/dev/null && {then} >/dev/null', "sh"]


# -- the captures ----------------------------------------------------------------------


def capture_specs(count: int) -> list[CaptureSpec]:
    """The demo's varied captures (cameras, orientations, EXIF with GPS on most), each
    stored as a 4000×3000 RGB JPEG; every spec has its own scene, so no two share bytes."""
    specs = []
    for spec in sample_specs(count):
        name = Path(spec.name)
        if name.suffix.lower() not in (".jpg", ".jpeg"):
            name = name.with_suffix(".jpg")
        specs.append(replace(spec, fmt="jpeg", mode="RGB", name=name.as_posix()))
    return specs


def generate(data: Path, captures: int, workers: int) -> list[Path]:
    """Write 2N captures, N under each of data/first and data/second; reused when a
    previous run with the same N left them there."""
    folders = [data / half for half in _HALVES]
    stamp = data / "captures.json"
    wanted = {"captures": captures, "size": [4000, 3000]}
    if stamp.exists() and json.loads(stamp.read_text()) == wanted:
        return folders
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    specs = capture_specs(2 * captures)
    roots = [folders[0]] * captures + [folders[1]] * captures
    started = time.perf_counter()
    with _pool(workers) as pool:
        list(pool.map(write_capture, roots, specs))
    log(f"generated {2 * captures} captures in {time.perf_counter() - started:.0f} s")
    stamp.write_text(json.dumps(wanted))
    return folders


def capture_files(inputs: list[Path]) -> list[Path]:
    return sorted(
        path
        for folder in inputs
        for path in folder.rglob("*")
        if path.suffix.lower() in (".jpg", ".jpeg") and path.is_file()
    )


def _megabytes(inputs: list[Path]) -> float:
    return sum(path.stat().st_size for path in capture_files(inputs)) / 1e6


def _warm(inputs: list[Path]) -> None:
    """Read every capture once, so every method starts with them in the page cache."""
    for path in capture_files(inputs):
        path.read_bytes()


def _pool(workers: int) -> ProcessPoolExecutor:
    # The start method rainbench.parallel uses, so pool start-up costs the baselines alike.
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"))


# -- the baselines ---------------------------------------------------------------------


def floor(inputs: list[Path], workers: int) -> None:
    """What any validating ingest must do: read, hash and reduced-decode every file."""
    files = capture_files(inputs)
    chunk = max(1, len(files) // (8 * workers))
    with _pool(workers) as pool:
        for _ in pool.map(_floor_one, files, chunksize=chunk):
            pass


def _floor_one(path: Path) -> str:
    return _validate(path.read_bytes())


def _validate(data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    image = Image.open(io.BytesIO(data))
    # Ingest's own draft request, so the floor decodes at exactly ingest's DCT scale.
    image.draft("RGB", _draft_request(image.size))
    image.load()
    return digest


def floor_store(inputs: list[Path], out: Path, workers: int) -> None:
    """The floor, plus each file's bytes stored unchanged in tar shards: the ceiling
    for any ingest that keeps its output."""
    _write_shards(_floor_store_shard, inputs, out, workers)


def _floor_store_shard(task: tuple[list[Path], Path]) -> None:
    files, shard = task
    with tarfile.open(shard, "w") as tar:
        for number, path in enumerate(files):
            data = path.read_bytes()
            _validate(data)
            _add(tar, f"{shard.stem}{number:05d}.jpg", data)


def naive(inputs: list[Path], out: Path, workers: int) -> None:
    """Decode every image fully and re-encode it into tar shards, as img2dataset does."""
    _write_shards(_naive_shard, inputs, out, workers)


def _write_shards(
    write_shard: Callable[[tuple[list[Path], Path]], None],
    inputs: list[Path],
    out: Path,
    workers: int,
) -> None:
    files = capture_files(inputs)
    out.mkdir(parents=True, exist_ok=True)
    # Several shards per worker, so the last one does not leave the others idle.
    count = min(len(files), 4 * workers)
    tasks = [(files[i::count], out / f"{i:05d}.tar") for i in range(count)]
    with _pool(workers) as pool:
        for _ in pool.map(write_shard, tasks):
            pass


def _naive_shard(task: tuple[list[Path], Path]) -> None:
    files, shard = task
    with tarfile.open(shard, "w") as tar:
        for number, path in enumerate(files):
            image = Image.open(io.BytesIO(path.read_bytes())).convert("RGB")
            encoded = io.BytesIO()
            image.save(encoded, format="JPEG", quality=NAIVE_QUALITY)
            meta = {"source": path.name, "width": image.width, "height": image.height}
            key = f"{shard.stem}{number:05d}"
            _add(tar, f"{key}.jpg", encoded.getvalue())
            _add(tar, f"{key}.json", json.dumps(meta).encode())


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


# -- measuring -------------------------------------------------------------------------


def measure(command: list[str]) -> Run:
    """Run `command`, sampling its process tree's memory from /proc until it exits.

    VmHWM is each process's own peak as the kernel keeps it, so sampling can miss only
    growth in a process's last sample period; the tree sum counts shared pages (the
    interpreter, libraries) once per process, so it is an upper bound. CPU time is each
    process's last sampled user + system time, so each misses at most one period.
    """
    peaks: dict[int, int] = {}
    cpu: dict[int, float] = {}
    tree_peak = 0
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    while True:
        total = 0
        for pid in _tree(process.pid):
            hwm, rss = _memory_kb(pid)
            peaks[pid] = max(peaks.get(pid, 0), hwm)
            cpu[pid] = max(cpu.get(pid, 0.0), _cpu_seconds(pid))
            total += rss
        tree_peak = max(tree_peak, total)
        # communicate() drains the pipes while it waits, so a chatty command cannot block.
        try:
            stdout, stderr = process.communicate(timeout=_SAMPLE_SECONDS)
            break
        except subprocess.TimeoutExpired:
            continue
    seconds = time.perf_counter() - started
    if process.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{stderr.decode()}")
    peak = max(peaks.values(), default=0)
    return Run(seconds, peak * _KB / 1e6, tree_peak * _KB / 1e6, stdout.decode(), sum(cpu.values()))


def _tree(pid: int) -> Iterator[int]:
    """`pid` and its living descendants (children of every thread, e.g. a forkserver's)."""
    yield pid
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return
    for thread in threads:
        try:
            children = Path(f"/proc/{pid}/task/{thread}/children").read_text().split()
        except OSError:
            continue
        for child in children:
            yield from _tree(int(child))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid` so far; 0 once it has exited."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _memory_kb(pid: int) -> tuple[int, int]:
    """VmHWM and VmRSS of `pid` in kB; zeros once it has exited."""
    fields = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmHWM", "VmRSS"):
                fields[name] = int(value.split()[0])
    except OSError:
        pass
    return fields.get("VmHWM", 0), fields.get("VmRSS", 0)


def _check_ingest(run: Run, captures: int) -> None:
    """The run read and accepted `captures` files (a re-run of an unchanged folder: 0)."""
    summary = json.loads(run.output)
    if (summary["scanned"], summary["accepted"]) != (captures, captures):
        raise RuntimeError(f"ingest should have read and accepted {captures}: {summary}")


# -- reporting -------------------------------------------------------------------------


def machine(load: float) -> dict:
    return {
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "pillow": PIL.__version__,
        "libjpeg_turbo": features.version("libjpeg_turbo"),
        "load_1min_at_start": round(load, 2),
    }


def report(
    results: dict[str, Result], captures: int, workers: int, load: float, as_json: bool
) -> None:
    floor_, ours, naive_ = results["floor"], results["ours"], results["naive"]
    ours_2n = results["ours_2n"]
    ratios = {
        "ours_over_floor": ours.images_per_second / floor_.images_per_second,
        "ours_over_floor_store": ours.images_per_second / results["floor_store"].images_per_second,
        # Per core: the floor's CPU time per capture over ours (1 = as cheap as the floor).
        "ours_over_floor_cpu": floor_.cpu_per_image_ms / ours.cpu_per_image_ms,
        "untagged_over_floor_cpu": floor_.cpu_per_image_ms
        / results["ours_untagged"].cpu_per_image_ms,
        "tagged_later_over_ours_cpu": results["tagged_later"].cpu_per_image_ms
        / ours.cpu_per_image_ms,
        "ours_over_naive": ours.images_per_second / naive_.images_per_second,
        "peak_rss_2n_over_n": ours_2n.peak_rss_mb / ours.peak_rss_mb,
        "tree_rss_2n_over_n": ours_2n.tree_rss_mb / ours.tree_rss_mb,
    }
    marginal = {
        "ours": marginal_rate(ours, ours_2n),
        "floor": marginal_rate(floor_, results["floor_2n"]),
    }
    goals = {
        "ours_over_floor": ratios["ours_over_floor"] >= GOAL_OF_FLOOR,
        "ours_over_naive": ratios["ours_over_naive"] >= GOAL_OF_NAIVE,
        "rss_does_not_grow": max(ratios["peak_rss_2n_over_n"], ratios["tree_rss_2n_over_n"])
        <= GOAL_RSS_GROWTH,
    }
    own_seconds = min(json.loads(run.output)["seconds"] for run in ours.runs)
    verdict = {True: "PASS", False: "MISS"}
    if as_json:
        document = {
            "captures": captures,
            "workers": workers,
            "repeats": REPEATS,
            "machine": machine(load),
            "methods": {key: result.to_dict() for key, result in results.items()},
            "ingest_own_seconds": round(own_seconds, 3),
            "marginal_images_per_second": marginal,
            "ratios": {name: round(value, 3) for name, value in ratios.items()},
            "goals": {name: verdict[ok] for name, ok in goals.items()},
        }
        print(json.dumps(document, indent=2))
        return
    print()
    print(", ".join(f"{key}: {value}" for key, value in machine(load).items()))
    print(f"best of {REPEATS} runs (wall time of the whole command); RSS: the max over runs")
    print()
    header = f"{'method':<44} {'images':>6} {'images/s':>9} {'MB/s':>7} {'peak RSS MB':>12}"
    print(header + f" {'tree RSS MB':>12} {'CPU ms/image':>13}")
    print("-" * (len(header) + 27))
    for result in results.values():
        print(
            f"{result.method:<44} {result.captures:>6} {result.images_per_second:>9.1f} "
            f"{result.mb_per_second:>7.1f} {result.peak_rss_mb:>12.0f} {result.tree_rss_mb:>12.0f} "
            f"{result.cpu_per_image_ms:>13.1f}"
        )
    print()
    print(
        f"ingest's own summary: {own_seconds:.2f} s of its {ours.best.seconds:.2f} s wall time "
        "(the rest is interpreter start-up and imports)"
    )
    if marginal["ours"] and marginal["floor"]:
        print(
            f"per image, start-up excluded (N → 2N): ours {marginal['ours']:.1f} images/s, "
            f"floor {marginal['floor']:.1f} images/s = {marginal['ours'] / marginal['floor']:.2f}×"
        )
    rerun = results["ours_rerun"].best.seconds
    print(
        f"unchanged re-run (no capture read): {rerun:.2f} s = "
        f"{rerun / ours.best.seconds:.2f} of the first ingest's {ours.best.seconds:.2f} s"
    )
    print(
        f"ours / floor  = {ratios['ours_over_floor']:.2f}×  "
        f"(goal ≥ {GOAL_OF_FLOOR})  {verdict[goals['ours_over_floor']]}"
    )
    print(
        f"ours / floor per core (CPU time per capture) = {ratios['ours_over_floor_cpu']:.2f}×  "
        f"({floor_.cpu_per_image_ms:.1f} / {ours.cpu_per_image_ms:.1f} ms; the goal's ratio, "
        "measured as the load of other sessions moves it least)"
    )
    untagged = results["ours_untagged"].cpu_per_image_ms
    print(
        f"ours --no-tag / floor per core = {ratios['untagged_over_floor_cpu']:.2f}×  "
        f"({floor_.cpu_per_image_ms:.1f} / {untagged:.1f} ms; context: tagging left to "
        f"`rainbench tag`): the features and tags cost {ours.cpu_per_image_ms - untagged:.1f} ms "
        "per capture"
    )
    later = results["tagged_later"].cpu_per_image_ms
    print(
        f"ingest --no-tag, then rainbench tag = {ratios['tagged_later_over_ours_cpu']:.2f}× "
        f"the CPU time per capture of a tagged ingest ({later:.1f} / "
        f"{ours.cpu_per_image_ms:.1f} ms; context: what tagging later costs in all)"
    )
    print(
        f"ours / floor+store = {ratios['ours_over_floor_store']:.2f}×  "
        "(context, no goal: the ceiling for an ingest that keeps its output)"
    )
    print(
        f"ours / naive  = {ratios['ours_over_naive']:.2f}×  "
        f"(goal ≥ {GOAL_OF_NAIVE})  {verdict[goals['ours_over_naive']]}"
    )
    print(
        f"RSS(2N) / RSS(N) = {ratios['peak_rss_2n_over_n']:.2f} largest process, "
        f"{ratios['tree_rss_2n_over_n']:.2f} process tree  "
        f"(goal ≈ 1, ≤ {GOAL_RSS_GROWTH})  {verdict[goals['rss_does_not_grow']]}"
    )


def marginal_rate(n: Result, two_n: Result) -> float | None:
    """Images/s of the second N alone; None when noise made the 2N run no slower."""
    extra = two_n.best.seconds - n.best.seconds
    return round((two_n.captures - n.captures) / extra, 2) if extra > 0 else None


if __name__ == "__main__":
    main()
