"""Peak resident memory of `rainbench ingest` and `rainbench pairs` on one video, for
videos of the same frames and different lengths: a lab's camera file runs to several
GB, and a worker's memory must not grow with it.

    OMP_NUM_THREADS=1 python benchmarks/video_memory.py --frames 150 600
    OMP_NUM_THREADS=1 python benchmarks/video_memory.py --free-box 3


Each clip is MJPEG at quality 100 (640×360 noise, about 0.46 MB a frame, so 600 frames
are about 275 MB), in Matroska. Each command runs alone, with one worker (`-j 1`: the
work runs in the command's own process), in a fresh process whose peak is printed
beside the clip's size. `pairs` takes one target every 300 frames, so the clips cost about as much
to estimate and the peak shows what reading the video costs.

`--free-box GIB`: instead, the probe of a hostile file (as ingest probes each capture),
in a fresh process: a 4-frame MP4 followed by a `free` box of GIB GiB (sparse on disk),
whose metadata location removal searches; its peak memory and time.
"""

import argparse
import io
import struct
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
from bench import log  # benchmarks/ is on sys.path when run as a script
from PIL import Image

WIDTH, HEIGHT = 640, 360
# Run in a fresh interpreter: the peak of the command's process tree, in KB.
_PEAK = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
    "stdout=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[150, 600])
    parser.add_argument("--free-box", type=float, metavar="GIB")
    args = parser.parse_args()
    if args.free_box:
        _probe_free_box(args.free_box)
        return
    print("| frames | clip | ingest peak | pairs peak |")
    print("|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as folder:
        for frames in args.frames:
            raw, ds = Path(folder, f"raw-{frames}"), Path(folder, f"ds-{frames}")
            clip = raw / "clip.mkv"
            log(f"writing {frames} frames")
            _write_clip(clip, frames)
            ingest = _peak_mb(["ingest", str(raw), "--out", str(ds), "-j", "1"])
            pairs = _peak_mb(["pairs", str(ds), "-j", "1", "--stride", "300"])
            size = clip.stat().st_size / 1e6
            print(f"| {frames} | {size:.0f} MB | {ingest:.0f} MB | {pairs:.0f} MB |")


def _write_clip(path: Path, frames: int) -> None:
    import av

    path.parent.mkdir(parents=True)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    with av.open(str(path), "w", format="matroska") as output:
        stream = output.add_stream("mjpeg", rate=25)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuvj420p"
        for index in range(frames):
            picture = base ^ rng.integers(0, 8, base.shape, dtype=np.uint8)
            jpeg = io.BytesIO()
            Image.fromarray(picture).save(jpeg, "JPEG", quality=100)
            packet = av.Packet(jpeg.getvalue())
            packet.stream, packet.pts, packet.dts = stream, index, index
            packet.time_base = Fraction(1, 25)
            output.mux(packet)


def _probe_free_box(gib: float) -> None:
    from rainbench.synth.video import encode_h264

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(4)]
    size = int(gib * (1 << 30))
    with tempfile.TemporaryDirectory() as folder:
        clip = Path(folder, "clip.mp4")
        with clip.open("wb") as file:
            file.write(encode_h264(frames) + struct.pack(">I", 1) + b"free")
            file.write(struct.pack(">Q", 16 + size))
            file.truncate(file.tell() + size)
        probe = (
            "import sys, time; from pathlib import Path; "
            "from rainbench.capture.probe import probe; "
            "from rainbench.capture.source import SourceFile; "
            "path = Path(sys.argv[1]); stat = path.stat(); start = time.perf_counter(); "
            "found = probe(SourceFile(str(path.parent), path.name, stat.st_size, "
            "stat.st_mtime_ns)); "
            "print(found.reason, round(time.perf_counter() - start, 1), file=sys.stderr)"
        )
        log(f"probing a {gib:g} GiB free box")
        found = subprocess.run(
            [sys.executable, "-c", _PEAK, sys.executable, "-c", probe, str(clip)],
            check=True,
            capture_output=True,
            text=True,
        )
        reason, seconds = found.stderr.split()[-2:]
        verdict = "accepted" if reason == "None" else f"refused: {reason}"
        print(f"free box of {gib:g} GiB: {verdict} in {seconds} s, peak {_mb(found):.0f} MB")


def _mb(found: subprocess.CompletedProcess) -> float:
    return int(found.stdout.strip()) / 1024


def _peak_mb(command: list[str]) -> float:
    log(f"rainbench {' '.join(command)}")
    found = subprocess.run(
        [sys.executable, "-c", _PEAK, sys.executable, "-m", "rainbench", *command],
        check=True,
        capture_output=True,
        text=True,
    )
    return _mb(found)


if __name__ == "__main__":
    main()
