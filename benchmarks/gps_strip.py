"""What GPS removal costs: `strip_gps` on a 12 MP JPEG (baseline and progressive) against
decoding the same file with Pillow, and the XMP scan on hostile packets (each about 1 MB,
the kinds that stalled a backtracking expression for minutes) against a benign packet of
the same size, all in the same run; and how fast `location_hint` searches the metadata
a video's location removal reads (50 MB of zeros, as a camera's padding, and of random
bytes).

A measurement, not a test: it exits 0 whatever the figures, and prints PASS or MISS per
goal (strip under 5 % of a decode; a hostile megabyte under 10× a benign one).

Example:  python benchmarks/gps_strip.py
"""

import argparse
import io
import time
from collections.abc import Callable
from contextlib import suppress

import numpy as np
from PIL import Image

from rainbench.capture.formats import FORMATS
from rainbench.capture.gps import strip_gps
from rainbench.capture.location import location_hint, xmp_location_spans
from rainbench.capture.reject import CaptureRejected


def best_of(repeats: int, run: Callable[[], object]) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def photo_like(width: int, height: int) -> Image.Image:
    """Smooth structure with grain, so the JPEG is as large as a camera's."""
    rng = np.random.default_rng(0)
    coarse = Image.fromarray(rng.integers(0, 255, (height // 10, width // 10, 3), np.uint8))
    smooth = np.asarray(coarse.resize((width, height), Image.BICUBIC), np.int16)
    grain = rng.integers(-20, 20, smooth.shape, dtype=np.int16)
    return Image.fromarray(np.clip(smooth + grain, 0, 255).astype(np.uint8))


def scan(packet: bytes) -> None:
    with suppress(CaptureRejected):  # refusing it is a fine outcome; the time is measured
        xmp_location_spans(packet, 0, len(packet))


def packet(body: bytes) -> bytes:
    return b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF>' + body + b"</rdf:RDF></x:xmpmeta>"


def main() -> None:
    # No options; parsed so that --help (or a stray argument) is answered, not run.
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    picture = photo_like(4000, 3000)
    print("12 MP JPEG          size    strip_gps   Pillow decode   ratio")
    for progressive in (False, True):
        out = io.BytesIO()
        picture.save(out, "JPEG", quality=92, progressive=progressive)
        data = out.getvalue()
        strip = best_of(5, lambda data=data: strip_gps(data, FORMATS["jpeg"]))
        decode = best_of(3, lambda data=data: Image.open(io.BytesIO(data)).load())
        ratio = strip / decode
        print(
            f"{'progressive' if progressive else 'baseline':12} {len(data) / 1e6:8.1f} MB "
            f"{strip * 1e3:9.1f} ms {decode * 1e3:12.0f} ms {ratio:8.3f}  "
            f"{'PASS' if ratio < 0.05 else 'MISS'} (< 0.05)"
        )
    description = b'<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">'
    benign = packet((description + b"<dc:title>rain</dc:title></rdf:Description>") * 12_000)
    base = best_of(3, lambda: scan(benign))
    hostile = {
        "GPS element opened, never closed": packet(description + b"<a:gps>" * 150_000),
        "GPS attribute names, no tag end": packet(b"<a:gpsx " * 120_000),
        "quoted '<' in attributes": packet(b'<a x="<" ' * 100_000),
        "unterminated comments": packet(b"<!--" * 250_000),
        "one 1 MB name": packet(b"<a " + b"x" * 1_000_000 + b">"),
    }
    print(f"\nXMP scan: benign {len(benign) / 1e6:.2f} MB in {base * 1e3:.0f} ms")
    for name, data in hostile.items():
        took = best_of(3, lambda data=data: scan(data))
        ratio = took / base * len(benign) / len(data)
        print(
            f"  {name:34} {len(data) / 1e6:5.2f} MB {took * 1e3:7.0f} ms  "
            f"{ratio:5.1f}× benign per byte  {'PASS' if ratio < 10 else 'MISS'} (< 10)"
        )
    print("\nlocation_hint over 50 MB:")
    for name, data in (("zeros", bytes(50 << 20)), ("random", np.random.bytes(50 << 20))):
        took = best_of(3, lambda data=data: location_hint(data))
        print(f"  {name:8} {len(data) / took / 1e6:6.0f} MB/s")


if __name__ == "__main__":
    main()
