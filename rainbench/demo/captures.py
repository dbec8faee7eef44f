"""Realistic camera captures made in code: a rainy street scene, written as JPEG, PNG,
TIFF, WebP, HEIC or camera RAW (DNG) in the pixel modes and with the EXIF (orientation,
exposure, GPS) that cameras and phones produce; near-duplicates of one picture; and every
kind of bad file.
"""

import io
import random
import struct
import zlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path
from statistics import NormalDist

import numpy as np
from PIL import Image, ImageChops, ImageDraw
from PIL.ExifTags import GPS, IFD, Base
from PIL.TiffImagePlugin import IFDRational

from rainbench.capture.orientation import turn_stored, upright_size
from rainbench.capture.reject import Reason
from rainbench.demo.camera_raw import dng_bytes, ifd_entry

# The pixel modes each format is written in, the usual one first. "RGB;16" is 16-bit RGB
# PNG, which Pillow cannot write, so this module writes those PNGs itself; "CFA" is a
# sensor's colour filter array, which a DNG stores and a raw converter demosaics.
MODES = {
    "jpeg": ("RGB", "L", "CMYK"),
    "png": ("RGB", "L", "RGBA", "I;16", "RGB;16"),
    "tiff": ("RGB", "L", "RGBA", "CMYK", "I;16"),
    "webp": ("RGB", "RGBA"),
    "heic": ("RGB",),
    "dng": ("CFA",),
}

# zlib level for PNGs: 1 keeps a 12 MP PNG to about a second; the files stay valid.
PNG_LEVEL = 1
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Standard deviation of the fine sensor noise, in 8-bit steps: with the scene's texture
# it makes a 12 MP JPEG at quality 90 weigh what a camera's does (≈3 MB).
SENSOR_NOISE = 3.5


@dataclass(frozen=True)
class CaptureSpec:
    """One capture to write: where, how big, in which format, with what EXIF.

    The scene is rendered upright and stored so that applying `orientation` makes it
    upright again, as a camera held on its side does; `width`×`height` is the stored size.
    """

    name: str  # path relative to the output root: sub-folders, dots, spaces, any script
    width: int = 4000
    height: int = 3000
    fmt: str = "jpeg"  # a key of MODES
    mode: str = ""  # one of MODES[fmt]; empty picks the format's usual one, MODES[fmt][0]
    orientation: int | None = 1  # EXIF Orientation 1..8; None writes no EXIF at all
    make: str | None = "Canon"
    model: str | None = "EOS R6"
    captured_at: datetime | None = None  # DateTimeOriginal; GPS time stamps take it as UTC
    exposure_time: float | None = None  # seconds
    f_number: float | None = None
    iso: int | None = None
    focal_length: float | None = None  # mm
    gps: tuple[float, float, float] | None = None  # latitude, longitude (°), altitude (m)
    quality: int = 90  # JPEG, WebP, HEIC and a DNG's embedded preview
    # DNG: width and height of its embedded JPEG preview, stored turned as the raw is;
    # None embeds none. Other formats ignore it.
    dng_preview: tuple[int, int] | None = None
    seed: int = 0  # picks the scene

    def __post_init__(self) -> None:
        if self.fmt not in MODES:
            raise ValueError(f"cannot write format {self.fmt!r}, only {', '.join(MODES)}")
        if not self.mode:
            object.__setattr__(self, "mode", MODES[self.fmt][0])  # frozen: only here
        if self.mode not in MODES[self.fmt]:
            raise ValueError(f"cannot write mode {self.mode!r} as {self.fmt!r}")
        if self.orientation not in (None, *range(1, 9)):
            raise ValueError(f"EXIF orientation must be 1..8 or None, not {self.orientation}")
        if self.width < 1 or self.height < 1:
            raise ValueError(f"size must be positive, not {self.width}×{self.height}")

    def without_exif(self) -> "CaptureSpec":
        """The same capture written with no EXIF block at all."""
        return replace(
            self,
            orientation=None,
            make=None,
            model=None,
            captured_at=None,
            exposure_time=None,
            f_number=None,
            iso=None,
            focal_length=None,
            gps=None,
        )

    @property
    def upright_size(self) -> tuple[int, int]:
        """Width and height once EXIF orientation is applied: 5–8 swap the axes."""
        return upright_size(self.width, self.height, self.orientation)


def render_scene(width: int, height: int, seed: int) -> np.ndarray:
    """An upright rainy street scene as uint8 height×width×3; same arguments, same pixels."""
    return np.array(_render(width, height, seed))


def write_capture(root: Path, spec: CaptureSpec) -> Path:
    """Render `spec`'s scene and write it to root/spec.name (folders created).

    Raises RuntimeError, saying what to install, when `missing_writer(spec.fmt)` names
    something missing.
    """
    return _write(root, spec.name, capture_bytes(spec))


def write_picture(root: Path, spec: CaptureSpec, upright: Image.Image) -> Path:
    """Write the upright picture `upright` (RGB) as `spec` describes it — stored turned
    for its EXIF orientation, in its format, with its EXIF — to root/spec.name. The
    picture's own size stands in for spec's width and height."""
    return _write(root, spec.name, _encode(spec, turn_stored(upright, spec.orientation)))


def capture_bytes(spec: CaptureSpec) -> bytes:
    """The bytes `write_capture` writes for `spec`, for tests that take a file apart."""
    upright = _render(*spec.upright_size, spec.seed)
    return _encode(spec, turn_stored(upright, spec.orientation))


def missing_writer(fmt: str) -> str | None:
    """Why this machine cannot write `fmt`, and the fix; None when it can. HEIC alone
    needs more than Pillow: libheif with an HEVC encoder, which pillow-heif bundles."""
    if fmt != "heic":
        return None
    try:
        import pillow_heif
    except ImportError:
        return "writing HEIC needs pillow-heif: pip install 'rainbench[heic]'"
    if not pillow_heif.libheif_info().get("HEIF"):
        return "writing HEIC needs an HEVC encoder, which this pillow-heif build lacks"
    return None


def write_sample_captures(
    root: Path, count: int, seed: int = 0, size: tuple[int, int] = (4000, 3000)
) -> list[Path]:
    """Write `sample_specs(count, seed, size)` under `root`; returns the paths."""
    return [write_capture(root, spec) for spec in sample_specs(count, seed, size)]


def write_near_duplicates(root: Path, spec: CaptureSpec) -> dict[str, Path]:
    """Write `spec` and variants of its picture that a perceptual hash should match.

    "original" is `spec` itself; "reencoded" a JPEG at another quality; "resized" half
    the size; "rotated" the upright pixels turned 90° with no EXIF; "oriented" stored
    turned with an EXIF orientation that makes it upright again. Variants sit beside the
    original, named `<stem>_<variant><suffix>`.
    """
    upright = _render(*spec.upright_size, spec.seed)
    stored = turn_stored(upright, spec.orientation)
    turn = 8 if spec.orientation == 6 else 6
    jpeg_mode = spec.mode if spec.mode in MODES["jpeg"] else "RGB"
    variants = {
        "reencoded": (
            replace(spec, fmt="jpeg", mode=jpeg_mode, quality=70 if spec.quality >= 80 else 95),
            stored,
        ),
        "resized": (spec, stored.reduce(2)),
        "rotated": (spec.without_exif(), upright.transpose(Image.Transpose.ROTATE_90)),
        "oriented": (replace(spec, orientation=turn), turn_stored(upright, turn)),
    }
    name = Path(spec.name)
    paths = {"original": _write(root, spec.name, _encode(spec, stored))}
    for key, (variant, pixels) in variants.items():
        suffix = name.suffix if variant.fmt == spec.fmt else ".jpg"
        variant_name = str(name.with_name(f"{name.stem}_{key}{suffix}"))
        variant = replace(variant, name=variant_name, width=pixels.width, height=pixels.height)
        paths[key] = _write(root, variant.name, _encode(variant, pixels))
    return paths


def write_bad_corpus(root: Path) -> dict[str, Reason]:
    """Write one file for each way a capture can be bad; returns name → expected reason.

    Some are judged before decoding (the empty file, the dangling link) and one only
    when GPS is stripped (the EXIF whose GPS pointer leads outside the EXIF block).
    """
    root.mkdir(parents=True, exist_ok=True)
    good = CaptureSpec(
        "good.jpg", 320, 240, captured_at=datetime(2023, 6, 14, 15, 30), gps=_PLACES[4], seed=7
    )
    pixels = _render(good.width, good.height, good.seed)
    jpeg = _encode(good, pixels)
    png = _encode(replace(good, fmt="png"), pixels)
    bad = {
        "empty.jpg": (b"", Reason.EMPTY),
        "truncated.jpg": (jpeg[: len(jpeg) * 2 // 3], Reason.TRUNCATED),
        # Cut inside the quantisation tables, before any pixel data: an early abort.
        "truncated_header.jpg": (jpeg[: _jpeg_segment(jpeg, 0xDB) + 20], Reason.TRUNCATED),
        "truncated.png": (png[: len(png) * 2 // 3], Reason.TRUNCATED),
        "notes.jpg": (b"2023-06-14 15:30 rain gauge 2.4 mm, wind SW 4 Bft\n", Reason.NOT_AN_IMAGE),
        # A zero byte first: no image format's magic begins with one.
        "noise.png": (b"\0" + np.random.default_rng(7).bytes(4095), Reason.NOT_AN_IMAGE),
        "huge.png": (_png_claiming(20_000, 20_000), Reason.TOO_MANY_PIXELS),
        "bad_crc.png": (_with_broken_ihdr_crc(png), Reason.CORRUPT),
        "bad_zlib.png": (_with_broken_zlib(png), Reason.CORRUPT),
        "bad_huffman.jpg": (_with_bogus_huffman_table(jpeg), Reason.CORRUPT),
        "gps_outside.jpg": (_with_gps_pointer_outside(jpeg), Reason.CORRUPT_EXIF),
    }
    for name, (data, _) in bad.items():
        (root / name).write_bytes(data)
    dangling = root / "dangling.jpg"
    dangling.unlink(missing_ok=True)
    dangling.symlink_to("missing/IMG_0001.jpg")
    return {name: reason for name, (_, reason) in bad.items()} | {dangling.name: Reason.UNREADABLE}


def shows_upright(image: Image.Image, spec: CaptureSpec) -> bool:
    """Whether `image`, a decoded `spec` capture at any scale, tone curve or compression,
    shows its scene upright: its luminance matches the upright scene better than any
    turned or mirrored one, and closely (correlation above 0.9)."""
    scene = _render(*spec.upright_size, spec.seed).convert("L")
    seen = np.asarray(image.convert("L"), np.float32).ravel()

    def match(candidate: Image.Image) -> float:
        pixels = np.asarray(candidate.resize(image.size), np.float32).ravel()
        return float(np.corrcoef(seen, pixels)[0, 1])

    upright = match(scene)
    return upright > 0.9 and all(upright > match(scene.transpose(t)) for t in Image.Transpose)


@dataclass(frozen=True)
class _Camera:
    make: str
    model: str
    folder: str  # where its files land when copied off the card or phone
    prefix: str  # file names are prefix + running number + suffix
    suffix: str
    f_numbers: tuple[float, ...]
    focal_lengths: tuple[float, ...]  # mm


_CAMERAS = (
    _Camera(
        "Canon",
        "Canon EOS R6",
        "DCIM/100CANON",
        "IMG_",
        ".JPG",
        (2.8, 4.0, 5.6, 8.0),
        (24.0, 50.0, 105.0),
    ),
    _Camera(
        "NIKON CORPORATION",
        "NIKON Z 6_2",
        "DCIM/100NZ6_2",
        "DSC_",
        ".JPG",
        (1.8, 4.0, 11.0),
        (24.0, 50.0, 85.0),
    ),
    _Camera(
        "SONY", "ILCE-7M3", "DCIM/100MSDCF", "DSC", ".JPG", (2.8, 4.0, 8.0), (28.0, 55.0, 135.0)
    ),
    _Camera(
        "FUJIFILM", "X-T4", "DCIM/101_FUJI", "DSCF", ".JPG", (1.4, 2.8, 5.6), (16.0, 23.0, 56.0)
    ),
    _Camera("Apple", "iPhone 14 Pro", "iPhone 14 Pro", "IMG_", ".jpg", (1.78,), (6.86,)),
    _Camera("Google", "Pixel 7", "Pixel 7/Camera", "PXL_", ".jpg", (1.85,), (6.81,)),
    _Camera("samsung", "SM-S918B", "Galaxy S23/DCIM/Camera", "SAM_", ".jpg", (1.8,), (6.3,)),
)

# Rain is shot at 1/1000 s (frozen drops) up to 1/2 s (long streaks).
_EXPOSURE_TIMES = (1 / 1000, 1 / 500, 1 / 250, 1 / 125, 1 / 60, 1 / 30, 1 / 8, 1 / 2)
_ISOS = (100, 200, 400, 800, 1600, 3200, 6400)

# Rainy places (latitude, longitude, altitude in m): both hemispheres, both sides of
# Greenwich, and Schiphol below sea level (GPSAltitudeRef 1).
_PLACES = (
    (60.3913, 5.3221, 12.0),  # Bergen
    (47.6062, -122.3321, 56.0),  # Seattle
    (19.0760, 72.8777, 14.0),  # Mumbai
    (35.6762, 139.6503, 40.0),  # Tokyo
    (53.5511, 9.9937, 6.0),  # Hamburg
    (25.2702, 91.7323, 1484.0),  # Cherrapunji
    (-39.8142, -73.2459, 10.0),  # Valdivia
    (52.3105, 4.7683, -3.0),  # Schiphol
)


@dataclass(frozen=True)
class _Special:
    """A less common kind of capture, dealt out as every third one of a sample."""

    fmt: str
    mode: str
    label: str  # its file is exports/<label>_<number><suffix>
    suffix: str
    exif: bool = True


_SPECIALS = (
    _Special("jpeg", "L", "mono", ".jpg"),
    _Special("png", "RGB", "export", ".png", exif=False),
    _Special("png", "RGB;16", "developed16", ".png"),
    _Special("jpeg", "CMYK", "print", ".jpg"),
    _Special("png", "RGBA", "cutout", ".png"),
    _Special("webp", "RGB", "web", ".webp"),
    _Special("tiff", "RGB", "scan", ".tif"),
    _Special("png", "I;16", "mono16", ".png"),
    # The bytes, not the name, decide the format.
    _Special("png", "RGB", "mislabelled", ".jpg", exif=False),
    _Special("dng", "CFA", "raw", ".dng"),
    _Special("heic", "RGB", "phone", ".HEIC"),
)


def sample_specs(
    count: int, seed: int = 0, size: tuple[int, int] = (4000, 3000)
) -> list[CaptureSpec]:
    """A varied, realistic set of `count` captures of stored size `size`.

    Mostly JPEGs from several cameras and phones, orientations cycling 1..8, with
    exposure settings, capture times and (on four in five) GPS. Every third capture is
    one of the rarer kinds in turn (grey and CMYK JPEG; RGB, 16-bit RGB, RGBA, 16-bit
    grey and mislabelled PNG; WebP; TIFF; DNG with a full-size preview; HEIC), so any 33
    in a row hold them all. Names use camera folders, dots and spaces ("IMG.v2 0002.jpg")
    and non-ASCII ("Regen_Straße"). Writing the HEIC needs pillow-heif (`missing_writer`).
    """
    rng = random.Random(seed)
    clock = datetime(2023, 4, 1, 7, 30) + timedelta(days=rng.randrange(365))
    specs = []
    plain = 0
    for i in range(count):
        number = i + 1
        camera = rng.choice(_CAMERAS)
        clock += timedelta(minutes=rng.randrange(2, 1500), seconds=rng.randrange(60))
        latitude, longitude, altitude = rng.choice(_PLACES)
        gps = (
            round(latitude + rng.uniform(-0.02, 0.02), 6),
            round(longitude + rng.uniform(-0.02, 0.02), 6),
            round(altitude + rng.uniform(0, 5), 1),
        )
        spec = CaptureSpec(
            name=f"{camera.folder}/{camera.prefix}{number:04d}{camera.suffix}",
            width=size[0],
            height=size[1],
            make=camera.make,
            model=camera.model,
            captured_at=clock,
            exposure_time=rng.choice(_EXPOSURE_TIMES),
            f_number=rng.choice(camera.f_numbers),
            iso=rng.choice(_ISOS),
            focal_length=rng.choice(camera.focal_lengths),
            gps=None if i % 5 == 3 else gps,
            seed=rng.getrandbits(32),
        )
        if i % 3 == 1:
            special = _SPECIALS[i // 3 % len(_SPECIALS)]
            spec = replace(
                spec if special.exif else spec.without_exif(),
                name=f"exports/{special.label}_{number:04d}{special.suffix}",
                fmt=special.fmt,
                mode=special.mode,
                # As cameras that write DNG themselves embed it.
                dng_preview=(spec.width, spec.height) if special.fmt == "dng" else None,
            )
        else:
            name = _quirky_name(plain, number) or spec.name
            spec = replace(spec, name=name, orientation=1 + plain % 8)
            plain += 1
        specs.append(spec)
    return specs


def _quirky_name(plain: int, number: int) -> str | None:
    """Every other plain JPEG gets a name that trips naive path handling, else None."""
    return {
        1: f"IMG.v2 {number:04d}.jpg",
        3: f"Regen Hamburg/Regen_Straße_{number:02d}.jpg",
        5: f"雨の日/東京 {number:04d}.jpg",
    }.get(plain % 6)


# --- the scene -------------------------------------------------------------------------

# Quantiles of the standard normal at the 256 byte values: one random byte per sample
# then gives Gaussian noise several times faster than rng.normal.
_NORMAL_QUANTILES = np.array([NormalDist().inv_cdf((k + 0.5) / 256) for k in range(256)])


def _render(width: int, height: int, seed: int) -> Image.Image:
    # Everything is drawn by Pillow's C code or computed by numpy over whole arrays, so a
    # 12 MP scene takes a fraction of a second; a Python loop runs per shape, never per pixel.
    rng = np.random.default_rng(seed)
    horizon = rng.uniform(0.42, 0.62) * height
    image = _sky(width, height, horizon, rng)
    _draw_street(ImageDraw.Draw(image), width, height, horizon, rng)
    _draw_rain(ImageDraw.Draw(image, "RGBA"), width, height, rng)
    return _add_grain(image, rng)


def _sky(width: int, height: int, horizon: float, rng: np.random.Generator) -> Image.Image:
    """Overcast sky: a darker blue-grey at the top, brightening into haze at the horizon."""
    top = rng.uniform(75, 115) + np.array([0.0, 6.0, 16.0]) + rng.uniform(-5, 5, 3)
    haze = rng.uniform(160, 200) + rng.uniform(-6, 6, 3)
    ramp = np.clip(np.arange(height) / horizon, 0, 1)[:, None] ** 0.6
    column = np.clip(top + (haze - top) * ramp, 0, 255).astype(np.uint8)
    return Image.fromarray(column[:, None, :]).resize((width, height), Image.Resampling.NEAREST)


def _draw_street(
    draw: ImageDraw.ImageDraw, w: int, h: int, horizon: float, rng: np.random.Generator
) -> None:
    """Wet ground, buildings with lit windows, a road into the distance, puddles, trees."""
    edge = horizon + np.cumsum(rng.normal(0, 0.004 * h, 17))
    ground = [*zip(np.linspace(0, w, 17).tolist(), edge.tolist(), strict=True), (w, h), (0, h)]
    draw.polygon(ground, fill=_colour(rng, 45, 80))
    for _ in range(rng.integers(4, 10)):
        left, width = rng.uniform(-0.05, 0.95) * w, rng.uniform(0.04, 0.14) * w
        base, height = horizon + rng.uniform(0, 0.03) * h, rng.uniform(0.06, 0.3) * h
        draw.rectangle((left, base - height, left + width, base), fill=_colour(rng, 55, 115))
        columns, rows = int(rng.integers(2, 6)), int(rng.integers(3, 10))
        lit = _colour(rng, 150, 215, tint=20)
        for i in range(columns):
            for j in range(rows):
                x = left + width * (i + 0.3) / columns
                y = base - height + height * (j + 0.3) / rows
                draw.rectangle((x, y, x + 0.4 * width / columns, y + 0.4 * height / rows), fill=lit)
    far, vanish = horizon + 0.02 * h, rng.uniform(0.3, 0.7) * w
    road = [
        (vanish - 0.01 * w, far),
        (vanish + 0.01 * w, far),
        (vanish + 0.7 * w, h),
        (vanish - 0.7 * w, h),
    ]
    draw.polygon(road, fill=_colour(rng, 30, 55, tint=3))
    for k in range(10):  # centre-line dashes, spaced and widened by perspective
        top, bottom = (far + (h - far) * t**2 for t in (k / 10, (k + 0.7) / 10))
        a, b = (0.012 * w * (y - far) / (h - far) for y in (top, bottom))
        dash = [(vanish - a, top), (vanish + a, top), (vanish + b, bottom), (vanish - b, bottom)]
        draw.polygon(dash, fill=_colour(rng, 170, 200, tint=4))
    for _ in range(rng.integers(2, 8)):  # puddles mirror the bright sky
        x, y = vanish + rng.uniform(-0.6, 0.6) * w, rng.uniform(far, h)
        rx = (0.02 + 0.08 * rng.random()) * w * (y - horizon) / (h - horizon)
        draw.ellipse((x - rx, y - 0.12 * rx, x + rx, y + 0.12 * rx), fill=_colour(rng, 140, 185))
    for _ in range(rng.integers(3, 9)):
        x, y = rng.uniform(0, w), horizon + rng.uniform(0, 0.12) * h
        r = (0.02 + 0.04 * rng.random()) * w * (1 + (y - horizon) / h)
        draw.rectangle((x - 0.08 * r, y - r, x + 0.08 * r, y + 0.5 * r), fill=_colour(rng, 35, 55))
        draw.ellipse(
            (x - r, y - 2.6 * r, x + r, y - 0.4 * r), fill=_colour(rng, 35, 70, cast=(-12, 15, -10))
        )


def _draw_rain(draw: ImageDraw.ImageDraw, w: int, h: int, rng: np.random.Generator) -> None:
    """Semi-transparent bright streaks sharing the wind's slant; nearer drops are longer,
    wider and brighter."""
    count = 1 + int(w * h / 20_000 * rng.uniform(0.4, 1.6))
    depth = rng.random(count)
    x0, y0 = rng.uniform(-0.05, 1.05, count) * w, rng.uniform(-0.05, 1.0, count) * h
    length = (0.008 + 0.05 * depth**2) * h
    slant = rng.uniform(-0.3, 0.3) + rng.normal(0, 0.02, count)
    ends = np.stack([x0, y0, x0 + length * np.sin(slant), y0 + length * np.cos(slant)], axis=1)
    widths = np.maximum(1, np.rint((0.3 + 2 * depth) * w / 4000)).astype(int)
    alphas = (35 + 110 * depth).astype(int)
    for line, width, alpha in zip(ends.tolist(), widths.tolist(), alphas.tolist(), strict=True):
        draw.line(line, fill=(225, 230, 235, alpha), width=width)


def _add_grain(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Add what makes a photo compress like one: uneven light and vignetting, blotchy
    surface texture, and fine luminance sensor noise."""
    w, h = image.size
    # Texture is made at quarter size: one bilinear upscale is cheaper than full-size noise.
    qw, qh = max(2, w // 4), max(2, h // 4)
    light = np.clip(128 + _mottle(rng, (max(2, h // 300), max(2, w // 300)), 10, 3), 0, 255)
    light = Image.fromarray(light.astype(np.uint8)).resize((qw, qh), Image.Resampling.BICUBIC)
    y, x = np.ogrid[-1 : 1 : qh * 1j, -1 : 1 : qw * 1j]
    vignette = -16 * (x**2 + y**2)
    texture = np.asarray(light, np.float32) + _mottle(rng, (qh, qw), 5, 2) + vignette[..., None]
    texture = Image.fromarray(np.clip(texture, 0, 255).astype(np.uint8))
    grain = texture.resize((w, h), Image.Resampling.BILINEAR)
    noise = Image.fromarray(_gaussian_bytes(rng, (h, w), SENSOR_NOISE))
    grain = ImageChops.add(grain, Image.merge("RGB", (noise, noise, noise)), offset=-128)
    return ImageChops.add(image, grain, offset=-128)


def _mottle(
    rng: np.random.Generator, shape: tuple[int, int], brightness: float, colour: float
) -> np.ndarray:
    """Zero-mean float noise of shape×3: mostly shared by the channels, a little not."""
    shared = _gaussian_bytes(rng, shape, brightness)[..., None].astype(np.float32)
    return shared + _gaussian_bytes(rng, (*shape, 3), colour) - 256


def _gaussian_bytes(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """uint8 Gaussian noise around 128 with standard deviation ≈ sigma."""
    lut = np.clip(np.rint(128 + sigma * _NORMAL_QUANTILES), 0, 255).astype(np.uint8)
    return lut[np.frombuffer(rng.bytes(int(np.prod(shape))), np.uint8).reshape(shape)]


def _colour(
    rng: np.random.Generator,
    low: float,
    high: float,
    tint: float = 8,
    cast: tuple[float, float, float] = (0, 0, 0),
) -> tuple[int, ...]:
    """A grey between low and high, shifted by `cast` and tinted by up to ±tint per channel."""
    rgb = rng.uniform(low, high) + np.array(cast) + rng.uniform(-tint, tint, 3)
    return tuple(int(v) for v in np.clip(rgb, 0, 255))


# --- writing ---------------------------------------------------------------------------


def _write(root: Path, name: str, data: bytes) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _encode(spec: CaptureSpec, pixels: Image.Image) -> bytes:
    """The file's bytes: `pixels` (RGB, stored orientation) in spec's format and mode."""
    missing = missing_writer(spec.fmt)
    if missing:
        raise RuntimeError(missing)
    if spec.fmt == "dng":
        return dng_bytes(pixels, _exif_tags(spec), spec.dng_preview, spec.quality)
    exif = _exif_block(spec)
    if spec.fmt == "heic":
        return _heic(pixels, exif, spec.quality)
    if spec.mode == "RGB;16":
        return _png16(pixels, exif)
    options: dict[str, object] = {"exif": exif} if exif else {}
    if spec.fmt in ("jpeg", "webp"):
        options["quality"] = spec.quality
    if spec.fmt == "png":
        options["compress_level"] = PNG_LEVEL
    buffer = io.BytesIO()
    _convert(pixels, spec.mode).save(buffer, format=spec.fmt.upper(), **options)
    return buffer.getvalue()


def _convert(image: Image.Image, mode: str) -> Image.Image:
    if mode == "RGBA":  # an exported cut-out: transparent beyond rounded corners
        alpha = Image.new("L", image.size, 0)
        box = (0, 0, image.width - 1, image.height - 1)
        ImageDraw.Draw(alpha).rounded_rectangle(box, radius=min(image.size) // 8, fill=255)
        rgba = image.convert("RGBA")
        rgba.putalpha(alpha)
        return rgba
    if mode == "I;16":
        grey = np.asarray(image.convert("L"), np.uint16) * 257  # 0..255 onto 0..65535
        return Image.frombytes("I;16", image.size, grey.astype("<u2").tobytes())
    return image.convert(mode)


def _png16(image: Image.Image, exif: bytes | None) -> bytes:
    """A 16-bit RGB PNG (IHDR bit depth 16, colour type 2), which Pillow cannot write:
    each 8-bit value v becomes v×257, and every row uses filter type 0."""
    rows = np.zeros((image.height, 1 + 6 * image.width), np.uint8)
    samples = (np.asarray(image, np.uint16) * 257).astype(">u2")
    rows[:, 1:] = samples.view(np.uint8).reshape(image.height, -1)
    header = struct.pack(">IIBBBBB", image.width, image.height, 16, 2, 0, 0, 0)
    chunks = [_png_chunk(b"IHDR", header)]
    if exif:
        chunks.append(_png_chunk(b"eXIf", exif.removeprefix(b"Exif\0\0")))
    chunks.append(_png_chunk(b"IDAT", zlib.compress(rows.tobytes(), PNG_LEVEL)))
    chunks.append(_png_chunk(b"IEND", b""))
    return PNG_SIGNATURE + b"".join(chunks)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _heic(pixels: Image.Image, exif: bytes | None, quality: int) -> bytes:
    """A HEIC as a phone writes it. pillow-heif turns the EXIF Orientation into `irot` and
    `imir` boxes, which HEIF readers apply, so the stored pixels show upright."""
    import pillow_heif

    out = io.BytesIO()
    # x265's fastest preset: a 12 MP HEIC in about 1.5 s rather than 15 s.
    heif = pillow_heif.from_pillow(pixels)
    heif.save(out, quality=quality, exif=exif, enc_params={"preset": "ultrafast"})
    return out.getvalue()


def _exif_block(spec: CaptureSpec) -> bytes | None:
    """The EXIF block (with its "Exif\\0\\0" header) a camera would write for `spec`."""
    tags = _exif_tags(spec)
    if tags is None:
        return None
    exif = Image.Exif()
    exif.update(tags)
    return exif.tobytes()


def _exif_tags(spec: CaptureSpec) -> dict[int, object] | None:
    """IFD 0's EXIF tags for `spec`, the Exif and GPS sub-IFDs as nested dicts; None
    when it has no EXIF at all."""
    if spec.orientation is None:
        return None
    exif: dict[int, object] = {Base.Orientation: spec.orientation}
    if spec.make is not None:
        exif[Base.Make] = spec.make
    if spec.model is not None:
        exif[Base.Model] = spec.model
    photo: dict[int, object] = {}
    if spec.captured_at is not None:
        stamp = spec.captured_at.strftime("%Y:%m:%d %H:%M:%S")
        exif[Base.DateTime] = stamp
        photo[Base.DateTimeOriginal] = photo[Base.DateTimeDigitized] = stamp
    if spec.exposure_time is not None:
        photo[Base.ExposureTime] = _rational(spec.exposure_time)
    if spec.f_number is not None:
        photo[Base.FNumber] = _rational(spec.f_number)
    if spec.iso is not None:
        photo[Base.ISOSpeedRatings] = spec.iso
    if spec.focal_length is not None:
        photo[Base.FocalLength] = _rational(spec.focal_length)
    # Sub-IFDs only when they have entries: an empty one is not what cameras write.
    if photo:
        exif[IFD.Exif] = photo
    if spec.gps is not None:
        exif[IFD.GPSInfo] = _gps_ifd(*spec.gps, spec.captured_at)
    return exif


def _gps_ifd(
    latitude: float, longitude: float, altitude: float, when: datetime | None
) -> dict[int, object]:
    ifd: dict[int, object] = {
        GPS.GPSVersionID: b"\x02\x03\x00\x00",
        GPS.GPSLatitudeRef: "N" if latitude >= 0 else "S",
        GPS.GPSLatitude: _degrees(latitude),
        GPS.GPSLongitudeRef: "E" if longitude >= 0 else "W",
        GPS.GPSLongitude: _degrees(longitude),
        GPS.GPSAltitudeRef: 0 if altitude >= 0 else 1,  # 1: below sea level
        GPS.GPSAltitude: _rational(abs(altitude)),
    }
    if when is not None:
        ifd[GPS.GPSDateStamp] = when.strftime("%Y:%m:%d")
        ifd[GPS.GPSTimeStamp] = tuple(
            IFDRational(v, 1) for v in (when.hour, when.minute, when.second)
        )
    return ifd


def _degrees(value: float) -> tuple[IFDRational, IFDRational, IFDRational]:
    """|value| as degrees, minutes and seconds (to 1/10000 s), as GPS IFDs store it."""
    seconds = round(abs(value) * 3600 * 10_000)
    degrees, rest = divmod(seconds, 3600 * 10_000)
    minutes, seconds = divmod(rest, 60 * 10_000)
    return IFDRational(degrees, 1), IFDRational(minutes, 1), IFDRational(seconds, 10_000)


def _rational(value: float) -> IFDRational:
    fraction = Fraction(value).limit_denominator(10_000)
    return IFDRational(fraction.numerator, fraction.denominator)


# --- breaking files --------------------------------------------------------------------


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width×height RGB pixels but whose data holds two rows."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = zlib.compress(bytes(2 * (1 + 3 * width)))
    chunks = (_png_chunk(b"IHDR", header), _png_chunk(b"IDAT", data), _png_chunk(b"IEND", b""))
    return PNG_SIGNATURE + b"".join(chunks)


def _with_broken_ihdr_crc(png: bytes) -> bytes:
    # IHDR is always the first chunk and 13 bytes long, so its CRC sits at 29..33.
    crc = bytes(b ^ 0xFF for b in png[29:33])
    return png[:29] + crc + png[33:]


def _with_broken_zlib(png: bytes) -> bytes:
    """The first IDAT's zlib header names no known compression method; CRC still valid."""
    offset = len(PNG_SIGNATURE)
    while png[offset + 4 : offset + 8] != b"IDAT":
        offset += 12 + int.from_bytes(png[offset : offset + 4], "big")
    length = int.from_bytes(png[offset : offset + 4], "big")
    data = b"\x00\x00" + png[offset + 10 : offset + 8 + length]  # CM 0, FCHECK still passes
    return png[:offset] + _png_chunk(b"IDAT", data) + png[offset + 12 + length :]


def _with_bogus_huffman_table(jpeg: bytes) -> bytes:
    """The first DHT segment claims 16×255 codes where at most 256 exist; libjpeg refuses
    the table before reading any pixel (flipped bits in the entropy-coded data it would
    silently tolerate instead)."""
    counts = _jpeg_segment(jpeg, 0xC4) + 5  # after marker, length and table class/id
    return jpeg[:counts] + b"\xff" * 16 + jpeg[counts + 16 :]


def _with_gps_pointer_outside(jpeg: bytes) -> bytes:
    """`jpeg` with its EXIF's GPS pointer (in IFD0) aimed past the end of the EXIF block:
    the layout an editor leaves when it cuts the GPS IFD off but keeps the pointer."""
    app1 = _jpeg_segment(jpeg, 0xE1)
    length = int.from_bytes(jpeg[app1 + 2 : app1 + 4], "big")
    tiff = bytearray(jpeg[app1 + 10 : app1 + 2 + length])  # after marker, length, "Exif\0\0"
    order = "<" if tiff[:2] == b"II" else ">"
    entry = ifd_entry(tiff, order, struct.unpack_from(order + "I", tiff, 4)[0], IFD.GPSInfo)
    if entry is None:
        raise ValueError("EXIF block has no GPS pointer")
    struct.pack_into(order + "I", tiff, entry + 8, len(tiff) + 0x1000)
    return jpeg[: app1 + 10] + bytes(tiff) + jpeg[app1 + 2 + length :]


def _jpeg_segment(jpeg: bytes, marker: int) -> int:
    """Offset of the first header segment with `marker` (0xFF, marker, 2-byte length)."""
    offset = 2
    while jpeg[offset + 1] != marker:
        offset += 2 + int.from_bytes(jpeg[offset + 2 : offset + 4], "big")
    return offset
