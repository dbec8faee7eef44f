"""Peak memory and time of one no-reference metric call, as a worker of the metric engine
makes it (one torch thread, the metric built once), against pyiqa's own whole-image
call on the same image: each call in a fresh process, its memory the growth of the
process's high-water mark (VmHWM) over what it held with the metric built and the image
decoded. The figures behind `MetricSpec.peak_bytes_per_pixel`.

    python benchmarks/metric_memory.py --weights-dir /tmp/weights --megapixels 2,6,12

A measurement, not a test: it exits 0 whatever the figures.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench import log  # benchmarks/ is on sys.path when run as a script
from metrics import _size  # benchmarks/metrics.py: megapixels to a 4:3 size
from PIL import Image

from rainbench.demo.captures import render_scene

METRICS = ("niqe", "piqe")
WAYS = ("rainbench", "pyiqa")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights-dir", type=Path, required=True, help="holds niqe's file")
    parser.add_argument("--megapixels", default="2,6,12", help="comma-separated sizes")
    parser.add_argument("--metrics", default=",".join(METRICS))
    parser.add_argument("--json", action="store_true", help="the rows as JSON on stdout")
    parser.add_argument("--child", nargs=3, metavar=("WAY", "METRIC", "IMAGE"), help="internal")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_call(*args.child, weights_dir=args.weights_dir)))
        return
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for megapixels in [float(text) for text in args.megapixels.split(",")]:
            width, height = _size(megapixels)
            image = Path(folder) / f"{width}x{height}.png"
            Image.fromarray(render_scene(width, height, seed=0)).save(image)
            for metric in args.metrics.split(","):
                for way in WAYS:
                    log(f"{way} {metric} {width}×{height}")
                    rows.append(run_child(way, metric, image, args.weights_dir))
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"{'metric':6} {'size':>9} {'way':9} {'s':>6} {'peak MB':>8} {'B/px':>6}")
    for row in rows:
        print(
            f"{row['metric']:6} {row['size']:>9} {row['way']:9} {row['seconds']:6.2f} "
            f"{row['peak_bytes'] / 1e6:8.0f} {row['bytes_per_pixel']:6.0f}"
        )


def run_child(way: str, metric: str, image: Path, weights_dir: Path) -> dict:
    command = [sys.executable, __file__, "--weights-dir", str(weights_dir)]
    done = subprocess.run(
        [*command, "--child", way, metric, str(image)], capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(f"{way} {metric} failed: {done.stderr.strip().splitlines()[-1]}")
    return json.loads(done.stdout)


def one_call(way: str, metric: str, image: Path, weights_dir: Path) -> dict:
    import torch

    torch.set_num_threads(1)
    pixels = np.asarray(Image.open(image).convert("RGB"))
    score = _scorer(way, metric, weights_dir)
    score(pixels[:192, :192])  # anything built lazily is built now
    before = _high_water_mark()
    started = time.perf_counter()
    value = score(pixels)
    seconds = time.perf_counter() - started
    grown = _high_water_mark() - before
    return {
        "metric": metric,
        "way": way,
        "size": f"{pixels.shape[1]}×{pixels.shape[0]}",
        "value": value,
        "seconds": seconds,
        "peak_bytes": grown,
        "bytes_per_pixel": grown / (pixels.shape[0] * pixels.shape[1]),
    }


def _scorer(way: str, metric: str, weights_dir: Path):
    if way == "rainbench":
        from rainbench.metrics import create_metric

        return create_metric(metric, weights_dir=weights_dir, threads=1)
    import pyiqa
    import torch

    from rainbench.metrics import weights

    found = weights.require(metric, weights_dir)
    options = {"pretrained_model_path": str(found)} if found else {}
    model = pyiqa.create_metric(metric, device="cpu", **options)

    def score(pixels: np.ndarray) -> float:
        with torch.inference_mode():
            return float(model(torch.tensor(pixels).permute(2, 0, 1).unsqueeze(0).float() / 255))

    return score


def _high_water_mark() -> int:
    """This process's VmHWM, in bytes: reset only by a new process."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise SystemExit("reads /proc/self/status (Linux)")


if __name__ == "__main__":
    main()
