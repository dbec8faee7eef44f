"""Seconds per image of each no-reference metric on a CPU: pyiqa's calibration image
I03.bmp resized (bicubic) to each of --sizes, the median of --repeats calls after one
warm-up, every metric built once through rainbench.metrics.create_metric, with torch on
its default threads. The figures of docs/metrics.md's "Cost on a CPU".

A metric whose weight file is missing (or not the expected one) is left out, with the
reason; with --stand-ins it is timed with a stand-in file instead: the real file's name,
shapes and structure, derived from pyiqa's own architecture code, with random values
(the architecture's own seeded initialisation). brisque's stand-in goes through
create_metric as the real file would (no checksum is published for it). The MUSIQ and
TOPIQ files are checked against the sha256 prefix in their names, which no stand-in
holds: theirs are timed through pyiqa.create_metric directly, with the options and the
call that rainbench's metric uses. Stand-in rows are marked in the output.

A measurement, not a test: it exits 0 whatever the figures.

Example:  python benchmarks/metric_cost.py --stand-ins
          python benchmarks/metric_cost.py --sizes 640x480 --metrics niqe,piqe --json
"""

import argparse
import importlib.metadata
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import redirect_stdout
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from bench import cpu_model, log  # benchmarks/ is on sys.path when run as a script
from PIL import Image

from rainbench.errors import first_line
from rainbench.metrics import MetricError, create_metric, list_metrics, noref, weights

DEFAULT_SIZES = "1152x864,3000x2000"
# pyiqa's BRISQUE file holds (sv_coef, sv): one coefficient per support vector and the
# vectors themselves, of brisque()'s features (two scales of natural_scene_statistics).
# How many vectors pyiqa's SVR has is in no code; the `brisque` wheel's LIVE SVR has 770.
# The kernel over them is 770 × 36 products per image, nothing beside the features' cost.
BRISQUE_SUPPORT_VECTORS = 770
BRISQUE_SCALES = 2
# The key that holds the state dict in a network's file, where there is one: CFANet
# (topiq_arch) loads weight_keys="params"; MUSIQ (musiq_arch) the file itself.
STATE_KEY = {"topiq_nr": "params"}
# How each row's figures were made: the real file, or a stand-in through rainbench's own
# metric or through pyiqa directly. The mark follows the metric's name in the table.
REAL, STAND_IN, STAND_IN_PYIQA = "real", "stand-in", "stand-in, pyiqa directly"
MARKS = {REAL: "", STAND_IN: "*", STAND_IN_PYIQA: "†"}
STAND_INS = {"brisque": STAND_IN, "musiq": STAND_IN_PYIQA, "topiq_nr": STAND_IN_PYIQA}
NOTES = {
    STAND_IN: "timed with a stand-in weight file of the real one's shapes and structure, "
    "random values, through create_metric as the real file would be",
    STAND_IN_PYIQA: "timed with a stand-in weight file of the real one's shapes and "
    "structure, random values, through pyiqa.create_metric directly (rainbench checks the "
    "real file's sha256 prefix, which no stand-in holds), with rainbench's options and call",
}


@dataclass
class Row:
    metric: str
    weights: str  # REAL, STAND_IN or STAND_IN_PYIQA
    seconds: dict[str, list[float]] = field(default_factory=dict)  # size → timed calls

    def median(self, size: str) -> float:
        return statistics.median(self.seconds[size])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help=f"WxH,… (default {DEFAULT_SIZES})")
    parser.add_argument(
        "--metrics", help="comma-separated (default: every registered no-reference metric)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed calls (default 3)")
    parser.add_argument(
        "--weights-dir",
        type=Path,
        help="where the weight files are (default: $RAINBENCH_WEIGHTS, else "
        "~/.cache/rainbench/weights)",
    )
    parser.add_argument(
        "--stand-ins",
        action="store_true",
        help="time the metrics whose weight files are missing with stand-in files",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    try:
        sizes = [_size(text) for text in args.sizes.split(",")]
    except ValueError:
        parser.error(f"--sizes: {args.sizes!r} is not WxH,… with W, H ≥ 1")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    known = [spec.name for spec in list_metrics() if not spec.full_reference]
    names = args.metrics.split(",") if args.metrics else known
    unknown = [name for name in names if name not in known]
    if unknown:
        parser.error(f"--metrics: not no-reference metrics: {', '.join(unknown)}")
    load = os.getloadavg()[0]
    image = calibration_image()
    rows, left_out = [], {}
    with tempfile.TemporaryDirectory(prefix="rainbench-stand-ins-") as scratch:
        for name in names:
            try:
                scorer, kind = build(name, args.weights_dir, args.stand_ins, Path(scratch))
            except MetricError as error:
                left_out[name] = first_line(error)
                log(f"{name}: left out: {left_out[name]}")
                continue
            row = Row(name, kind)
            for width, height in sizes:
                pixels = resized(image, width, height)
                log(f"{name} {width}×{height} ({kind})")
                row.seconds[f"{width}x{height}"] = timed(scorer, pixels, args.repeats)
            rows.append(row)
    rows.sort(key=lambda row: row.weights != REAL)  # stand-ins after the real ones
    report(rows, left_out, sizes, args.repeats, image, load, args.json)


def _size(text: str) -> tuple[int, int]:
    width, height = (int(part) for part in text.lower().split("x"))
    if width < 1 or height < 1:
        raise ValueError(text)
    return width, height


def calibration_image() -> Path:
    """pyiqa's ResultsCalibra/dist_dir/I03.bmp, which its wheel ships."""
    files = importlib.metadata.files("pyiqa") or []
    found = [f.locate() for f in files if f.parts[-2:] == ("dist_dir", "I03.bmp")]
    if not found:
        raise SystemExit("error: this pyiqa wheel does not ship ResultsCalibra/dist_dir/I03.bmp")
    return Path(found[0])


def resized(image: Path, width: int, height: int) -> np.ndarray:
    with Image.open(image) as picture:
        rgb = picture.convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(rgb)


def timed(scorer: Callable[[np.ndarray], float], pixels: np.ndarray, repeats: int) -> list[float]:
    scorer(pixels)  # warm-up: whatever is built lazily is built now
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        scorer(pixels)
        times.append(time.perf_counter() - started)
    return times


# -- the metrics -----------------------------------------------------------------------


def build(
    name: str, weights_dir: Path | None, stand_ins: bool, scratch: Path
) -> tuple[Callable[[np.ndarray], float], str]:
    """(the scoring function, REAL or the kind of stand-in) for metric `name`: through
    create_metric with its real weights where they are present; else, with `stand_ins`,
    with a stand-in file; else a MetricError saying why it is left out."""
    try:
        weights.require(name, weights_dir)
    except MetricError as error:
        if not stand_ins:
            raise MetricError(f"{first_line(error)} (--stand-ins times a stand-in)") from None
        kind = STAND_INS.get(name)
        if kind is None:
            raise MetricError(f"{first_line(error)} (no stand-in is known for it)") from None
        path = stand_in(name, scratch)
        if kind == STAND_IN:
            return create_metric(name, weights_dir=scratch), kind
        return pyiqa_scorer(name, path), kind
    return create_metric(name, weights_dir=weights_dir), REAL


def weight_file(name: str) -> weights.WeightFile:
    return next(file for file in weights.KNOWN_FILES.values() if name in file.metrics)


def options(name: str) -> dict:
    """The options rainbench's metric passes to pyiqa.create_metric."""
    return dict(next(metric for metric in noref.METRICS if metric.name == name).options)


def stand_in(name: str, folder: Path) -> Path:
    """A file named as `name`'s real weight file, in `folder`, holding what it holds
    (shapes, structure, dtypes) with random values."""
    import torch

    torch.manual_seed(0)
    if name == "brisque":
        from pyiqa.archs.brisque_arch import natural_scene_statistics

        features = BRISQUE_SCALES * natural_scene_statistics(torch.rand(1, 1, 32, 32)).shape[-1]
        vectors = BRISQUE_SUPPORT_VECTORS
        content = (torch.randn(vectors), torch.rand(vectors, features) * 2 - 1)
    else:
        from pyiqa.archs import build_network
        from pyiqa.default_model_configs import DEFAULT_CONFIGS

        # The network pyiqa builds for the metric, before it loads the real file.
        settings = {**DEFAULT_CONFIGS[name]["metric_opts"], **options(name), "pretrained": False}
        with redirect_stdout(sys.stderr):
            state = build_network(settings).state_dict()
        content = {STATE_KEY[name]: state} if name in STATE_KEY else state
    path = folder / weight_file(name).name
    torch.save(content, path)
    return path


def pyiqa_scorer(name: str, path: Path) -> Callable[[np.ndarray], float]:
    """pyiqa's metric `name` built from the file `path` and called as rainbench's
    metric builds and calls it (rainbench.metrics.noref), without its checks."""
    import pyiqa
    import torch

    with redirect_stdout(sys.stderr):
        model = pyiqa.create_metric(
            name, device=torch.device("cpu"), pretrained_model_path=str(path), **options(name)
        )

    def score(pixels: np.ndarray) -> float:
        x = torch.tensor(pixels).permute(2, 0, 1).unsqueeze(0)
        with torch.inference_mode():
            return float(model(x.float() / 255))

    return score


# -- reporting -------------------------------------------------------------------------


def machine(load: float) -> dict:
    import torch

    return {
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "torch": importlib.metadata.version("torch"),
        "torch_threads": torch.get_num_threads(),
        "pyiqa": importlib.metadata.version("pyiqa"),
        "load_1min_at_start": round(load, 2),
        "load_1min_at_end": round(os.getloadavg()[0], 2),
    }


def report(
    rows: list[Row],
    left_out: dict[str, str],
    sizes: list[tuple[int, int]],
    repeats: int,
    image: Path,
    load: float,
    as_json: bool,
) -> None:
    info = machine(load)
    if as_json:
        document = {
            "machine": info,
            "image": f"{image.name}, resized bicubic",
            "repeats": repeats,
            "rows": [
                {**asdict(row), "median": {size: row.median(size) for size in row.seconds}}
                for row in rows
            ],
            "left_out": left_out,
        }
        print(json.dumps(document, indent=2))
        return
    print(", ".join(f"{key}: {value}" for key, value in info.items()))
    print(
        f"seconds per image, median of {repeats} calls after one warm-up, {image.name} "
        "resized with bicubic"
    )
    print()
    print("| metric | " + " | ".join(_heading(w, h) for w, h in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for row in rows:
        figures = " | ".join(_figure(row.median(f"{w}x{h}")) for w, h in sizes)
        print(f"| `{row.metric}`{MARKS[row.weights]} | {figures} |")
    for kind in dict.fromkeys(row.weights for row in rows if row.weights != REAL):
        print(f"{MARKS[kind]} {NOTES[kind]}")
    for name, reason in left_out.items():
        print(f"left out: {name}: {reason}")


def _heading(width: int, height: int) -> str:
    return f"{width}×{height} ({width * height / 1e6:.1f} MP)"


def _figure(seconds: float) -> str:
    """Two significant figures, as the docs print them."""
    if seconds < 1:
        return f"{seconds:.2f}"
    return f"{seconds:.1f}" if seconds < 10 else f"{seconds:.0f}"


if __name__ == "__main__":
    main()
