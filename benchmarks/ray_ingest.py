"""`rainbench ingest --ray` against the local worker processes on the same cores: the
same generated 12 MP captures (benchmarks/ingest.py makes them) ingested with `-j N`
here, and with `--ray` on a Ray cluster of N CPUs started on this machine for the run.
Each ingests N captures and then 2N: the difference between the two runs splits each
method's time into a start-up paid once per command (Ray's import, connection and
workers; the local pool's) and the rate after it, the one an ingest many times larger
sees.

A measurement, not a test: it exits 0 whatever the figures, and prints PASS or MISS for
the goal (Ray ≥ 0.9× the local images/s, whole commands of N captures).

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
from ingest import REPEATS, Result, generate, marginal_rate, measure

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
    folders = generate(data, captures, workers)  # N under each
    sizes = {captures: folders[:1], 2 * captures: folders}
    megabytes = {}
    for size, inputs in sizes.items():
        files = [path for folder in inputs for path in folder.rglob("*") if path.is_file()]
        for path in files:  # into the page cache, for both alike
            path.read_bytes()
        megabytes[size] = sum(path.stat().st_size for path in files) / 1e6
    with ray_cluster(workers) as address, tempfile.TemporaryDirectory(dir=data) as scratch:
        out = Path(scratch) / "ds"
        ingest = [sys.executable, "-m", "rainbench", "ingest", "--no-progress", "--json"]
        ingest += ["-j", str(workers), "--shard-size", shard_size, "--out", str(out)]
        methods = {
            "local": ("rainbench ingest -j N (local processes)", ingest),
            "ray": ("rainbench ingest --ray (cluster of N CPUs)", [*ingest, "--ray", address]),
        }
        results = {
            (key, size): Result(label, size, megabytes[size])
            for key, (label, _) in methods.items()
            for size in sizes
        }
        own = {key: [] for key in results}
        # Interleaved repeats, so a slow spell of the machine hits all alike.
        for repeat in range(REPEATS):
            for key, (label, command) in methods.items():
                for size, inputs in sizes.items():
                    run = measure([*command, *map(str, inputs)])
                    shutil.rmtree(out, ignore_errors=True)
                    os.sync()
                    summary = json.loads(run.output)
                    if summary["accepted"] != size:
                        raise RuntimeError(f"{label} accepted {summary['accepted']} of {size}")
                    results[key, size].runs.append(run)
                    own[key, size].append(summary["seconds"])
                    log(f"  run {repeat + 1}: {label}, {size} captures: {run.seconds:.2f} s")
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
    results: dict[tuple[str, int], Result],
    own: dict[tuple[str, int], list[float]],
    captures: int,
    workers: int,
    load: float,
    as_json: bool,
) -> None:
    local, ray = results["local", captures], results["ray", captures]
    ratio = ray.images_per_second / local.images_per_second
    own_ratio = min(own["local", captures]) / min(own["ray", captures])
    verdict = "PASS" if ratio >= GOAL else "MISS"
    # Each method's rate after its start-up, from the runs of N and 2N captures (None
    # where noise made the 2N run no slower), and so the start-up paid once per command.
    rates = {
        key: marginal_rate(results[key, captures], results[key, 2 * captures])
        for key in ("local", "ray")
    }
    startups = {
        key: None if rate is None else results[key, captures].best.seconds - captures / rate
        for key, rate in rates.items()
    }
    rate_ratio = rates["ray"] / rates["local"] if None not in rates.values() else None
    if as_json:
        document = {
            "captures": captures,
            "workers": workers,
            "repeats": REPEATS,
            "cpu": cpu_model(),
            "load_1min_at_start": round(load, 2),
            "methods": {
                f"{key}_{size}": result.to_dict() for (key, size), result in results.items()
            },
            "ingest_own_seconds": {
                f"{key}_{size}": min(seconds) for (key, size), seconds in own.items()
            },
            "ray_over_local": round(ratio, 3),
            "ray_over_local_own_seconds": round(own_ratio, 3),
            "startup_seconds": startups,
            "images_per_second_after_startup": rates,
            "ray_over_local_after_startup": None if rate_ratio is None else round(rate_ratio, 3),
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
    print(f"split by the runs of {captures} and {2 * captures} captures:")
    for key, name in (("local", "local"), ("ray", "Ray")):
        if rates[key] is None:
            print(f"  {name}: the longer run was no slower (noise); no split")
        else:
            print(f"  {name}: start-up {startups[key]:.2f} s, then {rates[key]:.2f} images/s")
    print()
    print(
        f"per core: local {local.images_per_second / workers:.2f} images/s, "
        f"Ray {ray.images_per_second / workers:.2f} images/s ({captures} captures)"
    )
    print(f"ingest's own seconds (start-up excluded): Ray / local = {own_ratio:.2f}×")
    if rate_ratio is not None:
        print(f"rate after start-up: Ray / local = {rate_ratio:.2f}×")
    print(f"Ray / local = {ratio:.2f}×  (goal ≥ {GOAL}, {captures} captures)  {verdict}")


if __name__ == "__main__":
    main()
