"""How an NLCL checkpoint's background generator keeps the tone of its input, on
held-out synthetic pairs: psnr_y of B̂ on the whole image against B̂ in independent
crop-sized tiles (each normalised on its own, as the crops were in training), and how
much of a brightness change of the input reaches the output. Beside the identity, the
input moved to B̂'s mean per channel: what B̂ gains over that is not its tone alone.
With a trained (not an imported) checkpoint, also O − R̂, the input less the rain
generator's layer, against the input less that layer's mean alone: O − R̂ keeps the
input's tone by construction, and the second figure tells how much of its score is
R̂'s streaks and how much a uniform darkening.

    python benchmarks/nlcl_tone.py /tmp/nl3/regions/run-cpu-64-4-5000/nlcl.pt \
        /tmp/nl3/regions/held-out --split syn-streak --sheet tone.jpg

Why: the generator has no skip around its tail (conv → InstanceNorm → ReLU → conv), and
InstanceNorm takes away every channel's mean and scale, so the output's absolute tone
is not a linear function of the input's. The network has to recover it from cues such
as the zero padding at the borders, whose weight depends on the image's size. A
generator trained on small crops may then set the tone of a whole image wrongly even
where it sets a crop's right. Every figure is over the same pixels: each image cut to a
whole number of tiles.
"""

import argparse
import json
import sys
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from nlcl_learns import write_sheet  # benchmarks/ is on sys.path when run as a script

from rainbench.data import RainDataset
from rainbench.metrics.fullref import psnr_y
from rainbench.models.base import to_pixels
from rainbench.models.nlcl.checkpoint import load_generator
from rainbench.models.nlcl.generator import Generator, to_model_range
from rainbench.models.registry import create_derainer
from rainbench.models.tiling import derain_tiled

SHIFT = 0.1  # the brightness change of the input, in [0, 1] pixel units
SHEET_ROWS = 4  # pairs on the contact sheet


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="RUN/nlcl.pt")
    parser.add_argument("held_out", type=Path, help="a dataset with a paired split")
    parser.add_argument("--split", default="syn-streak")
    parser.add_argument("--tile", type=int, help="px (default: the checkpoint's training crop)")
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument(
        "--sheet",
        type=Path,
        help="a JPEG of the first 4 pairs: rainy | whole | tiles | O − R̂ (trained ones) | clean",
    )
    args = parser.parse_args()

    state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    tile = args.tile or state.get("config", {}).get("crop")
    if not tile:
        parser.error(f"{args.checkpoint} records no training crop: give --tile")
    derainer = create_derainer("nlcl", checkpoint=args.checkpoint, device="cpu")
    # An imported checkpoint has no rain generator.
    rain = (
        load_generator(state, "rain", str(args.checkpoint))
        if state.get("rain") is not None
        else None
    )
    pairs = RainDataset(
        args.held_out, mode="paired", paired_split=args.split, crop=None, shuffle=False
    )
    rows, pictures = [], []
    for pair in islice(pairs, args.pairs):
        rainy, clean = (_whole_tiles(pair[key], tile) for key in ("rain", "gt"))
        whole = derainer.derain(rainy[None])[0]
        tiled = _in_tiles(derainer, rainy, tile)
        reference = to_pixels(clean)
        # The input moved to B̂'s mean per channel: what B̂'s tone alone is worth.
        retoned = (rainy - rainy.mean(dim=(1, 2), keepdim=True)
                   + whole.mean(dim=(1, 2), keepdim=True)).clamp(0, 1)  # fmt: skip
        rows.append({
            "identity": psnr_y(to_pixels(rainy), reference),
            "identity_at_b_mean": psnr_y(to_pixels(retoned), reference),
            "whole": psnr_y(to_pixels(whole), reference),
            "tiles": psnr_y(to_pixels(tiled), reference),
            "follow_whole": _follow(lambda x: derainer.derain(x[None])[0], clean),
            "follow_tiles": _follow(lambda x: _in_tiles(derainer, x, tile), clean),
        })  # fmt: skip
        shown = (rainy, whole, tiled)
        if rain is not None:
            layer = _rain_layer(rain, rainy)
            less_rain = (rainy - layer).clamp(0, 1)
            less_mean = (rainy - layer.mean(dim=(1, 2), keepdim=True)).clamp(0, 1)
            rows[-1]["less_rain"] = psnr_y(to_pixels(less_rain), reference)
            rows[-1]["less_rain_mean"] = psnr_y(to_pixels(less_mean), reference)
            shown += (less_rain,)
        if len(pictures) < SHEET_ROWS:
            pictures.append((*shown, clean))
    means = {key: round(float(np.mean([row[key] for row in rows])), 3) for key in rows[0]}
    result = {
        "command": " ".join(["python", "benchmarks/nlcl_tone.py", *sys.argv[1:]]),
        "tile": tile,
        "pairs": len(rows),
        "psnr_y": {key: means[key] for key in ("identity", "identity_at_b_mean", "whole", "tiles")},
        # 1.0: a brightness change of the input reaches the output whole (as it would
        # through a derainer that keeps the tone); 0.0: the output ignores it.
        "brightness_followed": {"whole": means["follow_whole"], "tiles": means["follow_tiles"]},
    }
    if rain is not None:
        # O − R̂, and O less R̂'s mean (per channel) alone: what a uniform darkening scores.
        result["psnr_y"].update({key: means[key] for key in ("less_rain", "less_rain_mean")})
    print(json.dumps(result, indent=2))
    if args.sheet:
        write_sheet(pictures, args.sheet)
    return 0


def _rain_layer(generator: Generator, rainy: torch.Tensor) -> torch.Tensor:
    """R̂ in pixel units: the model's R̂ + B̂ = O holds in [-1, 1], so R̂ / 2 here."""
    with torch.inference_mode():
        return generator(to_model_range(rainy[None]))[0] / 2


def _whole_tiles(image: torch.Tensor, tile: int) -> torch.Tensor:
    """The image cut to a whole number of tile×tile tiles."""
    rows, cols = image.shape[1] // tile * tile, image.shape[2] // tile * tile
    if not rows or not cols:
        raise SystemExit(f"an image of {image.shape[2]}×{image.shape[1]} has no {tile} px tile")
    return image[:, :rows, :cols]


def _in_tiles(derainer, image: torch.Tensor, tile: int) -> torch.Tensor:
    """B̂ of each tile×tile tile on its own (the image is a whole number of them)."""
    return derain_tiled(derainer, image[None], tile, overlap=0)[0]


def _follow(generate, clean: torch.Tensor) -> float:
    """The change of the output's mean over that of the input's, for the clean image
    made SHIFT darker and SHIFT brighter (within [0, 1] as far as it stays there)."""
    darker, brighter = (clean - SHIFT).clamp(0, 1), (clean + SHIFT).clamp(0, 1)
    change_in = float(brighter.mean() - darker.mean())
    return float(generate(brighter).mean() - generate(darker).mean()) / change_in


if __name__ == "__main__":
    sys.exit(main())
