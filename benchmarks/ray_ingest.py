"""`rainbench ingest --ray` against the local worker processes on the same cores: the
same generated 12 MP captures (benchmarks/ingest.py makes them) ingested with `-j N`
here, and with `--ray` on a Ray cluster of N CPUs started on this machine for the run.

A measurement, not a test: it exits 0 whatever the figures, and prints PASS or MISS for
the goal (Ray ≥ 0.9× the local images/s).

Example:  python benchmarks/ray_ingest.py --captures 48 -j 2 --data /tmp/rain-captures
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from contextlib import contextmanager, suppress
from pathlib import Path

from bench import cpu_model, log  # benchmarks/ is on sys.path when run as a script
from ingest import REPEATS, Result, generate, measure

GOAL = 0.9  # Ray's images/s ≥ 0.9× the local path's


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--captures", type=int, default=48, help="N (default 48)")
    parser.add_argument(
        "--workers", "-j", type=int, default=os.cpu_count() or 1, help="N cores for both"
    )
    parser.add_argument(
        "--shard-size", default="100MB", help="ingest's --shard-size (default 100MB)"
    )
    parser.add_argument("--data", type=Path, help="keep generated captures here and reuse them")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    if args.data:
        benchmark(args.data, args.captures, args.workers, args.shard_size, args.json)
    else:
        with tempfile.TemporaryDirectory(prefix="rainbench-bench-") as data:
            benchmark(Path(data), args.captures, args.workers, args.shard_size, args.json)


def benchmark(data: Path, captures: int, workers: int, shard_size: str, as_json: bool) -> None:
    load = os.getloadavg()[0]
    inputs = generate(data, captures, workers)[:1]
    for path in inputs[0].rglob("*"):  # into the page cache, for both alike
        if path.is_file():
            path.read_bytes()
    megabytes = sum(p.stat().st_size for p in inputs[0].rglob("*") if p.is_file()) / 1e6
    with ray_cluster(workers) as address, tempfile.TemporaryDirectory(dir=data) as scratch:
        out = Path(scratch) / "ds"
        ingest = [sys.executable, "-m", "rainbench", "ingest", "--no-progress", "--json"]
        ingest += ["-j", str(workers), "--shard-size", shard_size, "--out", str(out)]
        methods = {
            "local": ("rainbench ingest -j N (local processes)", ingest),
            "ray": ("rainbench ingest --ray (cluster of N CPUs)", [*ingest, "--ray", address]),
        }
        results = {key: Result(label, captures, megabytes) for key, (label, _) in methods.items()}
        own = {key: [] for key in methods}
        # Interleaved repeats, so a slow spell of the machine hits both alike.
        for repeat in range(REPEATS):
            for key, (label, command) in methods.items():
                run = measure([*command, *map(str, inputs)])
                shutil.rmtree(out, ignore_errors=True)
                os.sync()
                summary = json.loads(run.output)
                if summary["accepted"] != captures:
                    raise RuntimeError(f"{label} accepted {summary['accepted']} of {captures}")
                results[key].runs.append(run)
                own[key].append(summary["seconds"])
                log(f"  run {repeat + 1}: {label}: {run.seconds:.2f} s")
    report(results, own, captures, workers, load, as_json)


@contextmanager
def ray_cluster(cpus: int):
    """A one-node Ray cluster of `cpus` CPUs for the run; stopped by killing exactly its
    processes (`ray stop` would stop every Ray on the machine)."""
    temp = Path(tempfile.mkdtemp(prefix="rbb", dir="/tmp"))  # short: unix socket paths
    port = _free_port()
    command = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--port", str(port)]
    command += ["--node-ip-address", "127.0.0.1", "--num-cpus", str(cpus)]
    command += ["--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", str(temp)]
    command += ["--ray-client-server-port", str(_free_port())]
    started = subprocess.Popen(
        command, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    output, _ = started.communicate()
    try:
        if started.returncode:
            raise RuntimeError(f"ray start failed:\n{output.decode()[-2000:]}")
        log(f"Ray cluster of {cpus} CPUs at 127.0.0.1:{port}")
        yield f"127.0.0.1:{port}"
    finally:
        _kill_session(started.pid)  # the session `ray start` made holds all its processes
        shutil.rmtree(temp, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _kill_session(session: int) -> None:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rpartition(")")[2].split()[3]) == session:
                os.kill(int(stat.parent.name), signal.SIGKILL)


def report(
    results: dict[str, Result],
    own: dict[str, list[float]],
    captures: int,
    workers: int,
    load: float,
    as_json: bool,
) -> None:
    local, ray = results["local"], results["ray"]
    ratio = ray.images_per_second / local.images_per_second
    own_ratio = min(own["local"]) / min(own["ray"])
    verdict = "PASS" if ratio >= GOAL else "MISS"
    if as_json:
        document = {
            "captures": captures,
            "workers": workers,
            "repeats": REPEATS,
            "cpu": cpu_model(),
            "load_1min_at_start": round(load, 2),
            "methods": {key: result.to_dict() for key, result in results.items()},
            "ingest_own_seconds": {key: min(seconds) for key, seconds in own.items()},
            "ray_over_local": round(ratio, 3),
            "ray_over_local_own_seconds": round(own_ratio, 3),
            "goal": verdict,
        }
        print(json.dumps(document, indent=2))
        return
    print()
    print(f"cpu: {cpu_model()}, {workers} workers, load at start {load:.2f}")
    print(f"best of {REPEATS} runs (wall time of the whole command, start-up included)")
    print()
    print(f"{'method':<44} {'images':>6} {'images/s':>9} {'MB/s':>7} {'own s':>7}")
    for key, result in results.items():
        print(
            f"{result.method:<44} {result.captures:>6} {result.images_per_second:>9.2f} "
            f"{result.mb_per_second:>7.1f} {min(own[key]):>7.2f}"
        )
    print()
    print(
        f"per core: local {local.images_per_second / workers:.2f} images/s, "
        f"Ray {ray.images_per_second / workers:.2f} images/s"
    )
    print(f"ingest's own seconds (start-up excluded): Ray / local = {own_ratio:.2f}×")
    print(f"Ray / local = {ratio:.2f}×  (goal ≥ {GOAL})  {verdict}")


if __name__ == "__main__":
    main()
