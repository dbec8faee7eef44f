"""Where a GPU's answer may differ from the CPU's, measured: PIQE on pyiqa's calibration
image I04 on the CPU, on CUDA as rainbench scores it (float32) and on CUDA with torch's
default TF32 convolutions; and nvJPEG on each kind of JPEG (4:2:0, 4:4:4, progressive,
greyscale, CMYK), decoded or refused, against the CPU decoder of the library the loader
uses (`torch_jpeg_decoder`: TorchCodec, else torchvision).

    python benchmarks/gpu_agreement.py        # needs CUDA and rainbench[eval]

benchmarks/gpu.sh runs it too, as its part `agreement`.

The JPEGs are 160×120 random pixels, so chroma upsampling shows at its largest: a mean
difference on them says how the decoders differ, not how much a photograph would.
A measurement: exits 0 whatever the figures (1 without CUDA).
"""

import argparse
import importlib.metadata
import io
import sys
import warnings
from contextlib import nullcontext

import numpy as np
import torch
from PIL import Image

import rainbench.metrics.noref as noref
from rainbench.data.dataset import torch_jpeg_decoder
from rainbench.metrics import create_metric


def jpeg_kinds() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    kinds = {
        "rgb 4:2:0": (rgb, {}),
        "rgb 4:4:4": (rgb, {"subsampling": 0}),
        "rgb progressive": (rgb, {"progressive": True}),
        "greyscale": (rgb.convert("L"), {}),
        "cmyk": (rgb.convert("CMYK"), {}),
    }
    encoded = {}
    for name, (image, options) in kinds.items():
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90, **options)
        encoded[name] = buffer.getvalue()
    return encoded


def nvjpeg(data: bytes) -> dict:
    """nvJPEG's answer on one JPEG: decoded, with its mean difference from the CPU
    decoder's pixels, or refused with the error's first line."""
    decode = torch_jpeg_decoder()
    try:
        gpu = decode(data, "cuda")
    except RuntimeError as error:
        return {"decoded": False, "error": str(error).splitlines()[0]}
    cpu = decode(data, "cpu")
    difference = (gpu.cpu().float() - cpu.float()).abs().mean().item()
    return {"decoded": True, "mean_abs_difference": round(difference, 3)}


def calibration_image():
    """pyiqa's distorted I04 (its wheel ships I04 twice: the reference too)."""
    files = importlib.metadata.files("pyiqa")
    (path,) = [f.locate() for f in files if f.parts[-2:] == ("dist_dir", "I04.bmp")]
    return path


def piqe_three_ways() -> dict:
    """PIQE of I04 on the CPU, on CUDA as scored (float32), on CUDA with TF32."""
    image = np.asarray(Image.open(calibration_image()).convert("RGB"))
    cpu = create_metric("piqe")(image)
    on_gpu = create_metric("piqe", device="cuda")
    exact = on_gpu(image)
    as_scored, noref.full_float32 = noref.full_float32, lambda torch, device: nullcontext()
    try:
        tf32 = on_gpu(image)  # torch's defaults: cuDNN's convolutions in TF32
    finally:
        noref.full_float32 = as_scored
    return {"cpu": round(cpu, 6), "cuda_float32": round(exact, 6), "cuda_tf32": round(tf32, 6)}


def measure_all() -> dict:
    warnings.simplefilter("ignore")  # torchvision's notice that its decoders move on
    return {
        "nvjpeg": {name: nvjpeg(data) for name, data in jpeg_kinds().items()},
        "piqe_i04": piqe_three_ways(),
    }


def main() -> int:
    # Before the CUDA check, so that --help answers on any machine.
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    if not torch.cuda.is_available():
        print("error: needs a CUDA device", file=sys.stderr)
        return 1
    if torch_jpeg_decoder() is None:
        print("error: needs TorchCodec or torchvision: pip install torchcodec", file=sys.stderr)
        return 1
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}")
    print(f"JPEG decoder: {torch_jpeg_decoder().__name__}")
    figures = measure_all()
    for name, result in figures["nvjpeg"].items():
        if result["decoded"]:
            answer = f"decoded, mean |nvJPEG − CPU| {result['mean_abs_difference']:.3f}"
        else:
            answer = f"refused: {result['error']}"
        print(f"nvJPEG {name}: {answer}")
    piqe = figures["piqe_i04"]
    print(
        f"PIQE I04: CPU {piqe['cpu']:.6f}, CUDA float32 {piqe['cuda_float32']:.6f}, "
        f"CUDA with TF32 {piqe['cuda_tf32']:.6f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
