"""Synthetic tripod rain videos with a known background: a still photograph shaken a
little, crossed by a moving object, rained on frame by frame with a recipe, and encoded
to H.264. They measure how well `rainbench.pairs.estimate` recovers the background.
"""

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from scipy import ndimage

from rainbench.synth.recipes import RECIPES, REFERENCE_HEIGHT, Recipe
from rainbench.synth.render import _draw, _mean_luma, _rain_layer, _transmission

# Sensor noise σ in levels of 8-bit RGB, by day and at night (a short exposure, high ISO).
DAY_NOISE = 1.0
NIGHT_NOISE = 3.0
NIGHT_GAIN = 0.3  # a night still is the day one at this share of its brightness
SHAKE_STEP = 0.35  # σ of each frame's shake step, as a share of `shake`
SHAKE_PAD = 16  # px of mirrored border around the still while it is shifted


@dataclass
class RainVideo:
    frames: list[np.ndarray]  # uint8 H×W×3 rainy frames (rain-free ones where asked)
    backgrounds: list[np.ndarray]  # uint8 H×W×3 truth: the still as shaken, no object
    objects: list[np.ndarray]  # bool H×W: where the moving object is in each frame
    shifts: list[tuple[float, float]]  # (dy, dx) of each frame's content against the still
    rain_free: tuple[int, ...]  # frames rendered without rain
    params: dict  # the recipe's parameters, drawn once for the whole video
    # uint8 H×W×3: the truth as the rain's atmosphere shows it, its background blur and
    # veil without drops (the truth itself in rain-free frames and in recipes without)
    veiled: list[np.ndarray] = field(default_factory=list)


def render_rain_video(
    still: np.ndarray,
    recipe: str,
    frames: int,
    seed: int,
    shake: float = 1.5,
    moving_object: bool = True,
    rain_free_lead: int = 0,
    rain_free_tail: int = 0,
    night: bool = False,
    noise: float | None = None,
    object_height: float = 0.35,
) -> RainVideo:
    """`frames` frames of `still` (uint8 H×W×3) in the rain of a version-1 `recipe`.

    The rain's look (intensity, angle, length, veil, background blur) is drawn once from
    `seed`, as a shower's look holds for a few seconds; the drops are new every frame.
    The camera shakes by a random walk within ±`shake` px each way (subpixel, a Fourier
    shift, so no estimator's interpolator is favoured); an object `object_height` of
    the height tall crosses the frame in front of the scene and behind the rain. The
    first `rain_free_lead` and last `rain_free_tail` frames have no rain and no veil.
    The truth is the still as shaken (darkened at night), without object, blur, veil,
    rain or noise: what a derainer should give back. Sensor noise of σ `noise` levels
    (default 1, or 3 at night) is new every frame.
    """
    spec = RECIPES.get(recipe)
    if not isinstance(spec, Recipe):
        raise ValueError(f"{recipe!r} is not a version-1 recipe; videos render those only")
    if still.ndim != 3 or still.shape[2] != 3 or still.dtype != np.uint8:
        raise ValueError(f"still must be uint8 H×W×3, not {still.dtype} {still.shape}")
    if frames < 1 or rain_free_lead + rain_free_tail > frames:
        raise ValueError("frames must be ≥ 1 and hold the rain-free lead and tail")
    param_seed, shake_seed, object_seed, *frame_seeds = np.random.SeedSequence(seed).spawn(
        3 + frames
    )
    scene = still.astype(np.float32) * (NIGHT_GAIN if night else 1)
    params = _draw(spec, np.random.default_rng(param_seed), None, _mean_luma(_round(scene)))
    sigma = (NIGHT_NOISE if night else DAY_NOISE) if noise is None else noise
    height, width = still.shape[:2]
    shifts = _shake(frames, shake, np.random.default_rng(shake_seed))
    crossing = _Crossing(height, width, object_height, np.random.default_rng(object_seed))
    dry = set(range(rain_free_lead)) | set(range(frames - rain_free_tail, frames))
    video = RainVideo([], [], [], shifts, tuple(sorted(dry)), params)
    for index, (shift, frame_seed) in enumerate(zip(shifts, frame_seeds, strict=True)):
        background = _shifted(scene, shift)
        image = background.copy()
        mask = np.zeros((height, width), bool)
        if moving_object:
            progress = index / max(frames - 1, 1)
            alpha, colour = crossing.draw(progress, shift)
            image += alpha[:, :, None] * (colour - image)
            mask = alpha > 0
        rng = np.random.default_rng(frame_seed)
        veiled = background
        if index not in dry:
            image = _rain(image, spec, params, rng)
            veiled = _veiled(_blurred(background, params), spec, params)
        image += rng.normal(0, sigma, image.shape).astype(np.float32)
        video.frames.append(_round(image))
        video.backgrounds.append(_round(background))
        video.veiled.append(_round(veiled))
        video.objects.append(mask)
    return video


def encode_h264(
    frames: list[np.ndarray], out: str | Path | BinaryIO | None = None, fps: int = 25, crf: int = 23
) -> bytes:
    """H.264 (libx264, yuv420p, one thread) in MP4 of uint8 H×W×3 RGB frames of even
    size; written to `out` when given, and returned.

    The same frames give the same bytes, on any CPU x264 runs on: the RGB → YUV
    conversion is done here (swscale's gave one of several results from run to run),
    on one thread, and with x264's `cpu-independent` (without it, 800-px-wide frames
    gave another bitstream from one encode to the next in one process)."""
    import av  # PyAV: only here, so the renderer works without it

    height, width = frames[0].shape[:2]
    if height % 2 or width % 2:
        raise ValueError(f"H.264 in yuv420p needs an even size, not {width}×{height}")
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {
            "crf": str(crf),
            "preset": "medium",
            "threads": "1",
            "x264-params": "threads=1:lookahead-threads=1:sliced-threads=0:cpu-independent=1",
        }
        stream.codec_context.thread_count = 1  # PyAV's default, 0, lets FFmpeg choose
        for index, frame in enumerate(frames):
            # Converted here: swscale's RGB → YUV gave one of several results from run to run.
            picture = av.VideoFrame.from_ndarray(_yuv420(frame), format="yuv420p")
            picture.pts = index  # without, x264's rate control sees made-up times
            for packet in stream.encode(picture):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = buffer.getvalue()
    if isinstance(out, str | Path):
        Path(out).write_bytes(data)
    elif out is not None:
        out.write(data)
    return data


def decode_video(data: bytes) -> list[np.ndarray]:
    """Every frame of a video's bytes as uint8 H×W×3 RGB, in order."""
    import av

    with av.open(io.BytesIO(data)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def _yuv420(rgb: np.ndarray) -> np.ndarray:
    """uint8 H×W×3 RGB as PyAV's yuv420p array, (3H/2)×W: BT.601 limited range (what a
    decoder assumes of a stream that names no colour space) with each 2×2 block's
    chroma averaged. PyAV reads the array as the Y, Cb and Cr planes one after the
    other, so the (H/2)×(W/2) chroma planes are laid out flat, whatever H/2 is."""
    red, green, blue = (rgb[..., c].astype(np.float64) for c in range(3))
    luma = 16 + (65.481 * red + 128.553 * green + 24.966 * blue) / 255
    cb = 128 + (-37.797 * red - 74.203 * green + 112.0 * blue) / 255
    cr = 128 + (112.0 * red - 93.786 * green - 18.214 * blue) / 255
    height, width = luma.shape

    def plane(values: np.ndarray) -> np.ndarray:
        return np.clip(np.round(values), 0, 255).astype(np.uint8)

    def half(values: np.ndarray) -> np.ndarray:
        return plane(values.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3)))

    planes = [plane(luma), half(cb), half(cr)]
    return np.concatenate([p.ravel() for p in planes]).reshape(3 * height // 2, width)


def _shake(frames: int, shake: float, rng: np.random.Generator) -> list[tuple[float, float]]:
    """A random walk of (dy, dx) from (0, 0), each step N(0, SHAKE_STEP·shake), kept
    within ±shake."""
    position = np.zeros(2)
    shifts = []
    for _ in range(frames):
        shifts.append((round(float(position[0]), 4), round(float(position[1]), 4)))
        position = np.clip(position + rng.normal(0, SHAKE_STEP * shake, 2), -shake, shake)
    return shifts


def _shifted(scene: np.ndarray, shift: tuple[float, float]) -> np.ndarray:
    """`scene` (float32 H×W×3) moved by (dy, dx), out(y) = in(y − d): a Fourier shift of
    the still with a mirrored border, an ideal band-limited translation."""
    if shift == (0.0, 0.0):
        return scene.copy()
    padded = np.pad(scene, ((SHAKE_PAD, SHAKE_PAD), (SHAKE_PAD, SHAKE_PAD), (0, 0)), "symmetric")
    moved = np.empty_like(padded)
    for channel in range(3):
        spectrum = ndimage.fourier_shift(np.fft.fft2(padded[:, :, channel]), shift)
        moved[:, :, channel] = np.fft.ifft2(spectrum).real
    return moved[SHAKE_PAD:-SHAKE_PAD, SHAKE_PAD:-SHAKE_PAD]


class _Crossing:
    """A textured, soft-edged ellipse (a person, a cyclist) that walks across the frame
    from one side to the other over the video, a little up or down on the way."""

    def __init__(self, height: int, width: int, size: float, rng: np.random.Generator):
        self.height, self.width = height, width
        self.radius_y = size * height / 2
        self.radius_x = self.radius_y * rng.uniform(0.35, 0.6)
        self.row = height * rng.uniform(0.45, 0.7)
        self.drift = height * rng.uniform(-0.08, 0.08)
        self.rightwards = bool(rng.integers(2))
        self.colour = rng.uniform(20, 200, 3).astype(np.float32)
        self.stripes = rng.uniform(0.15, 0.4) * height / 10

    def draw(self, progress: float, shift: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
        """Coverage (float32 H×W in [0, 1]) and colour (H×W×3) at `progress` ∈ [0, 1]."""
        travel = self.width + 2 * self.radius_x
        column = -self.radius_x + travel * (progress if self.rightwards else 1 - progress)
        centre_y = self.row + self.drift * progress + shift[0]
        centre_x = column + shift[1]
        y = np.arange(self.height, dtype=np.float32)[:, None] - centre_y
        x = np.arange(self.width, dtype=np.float32)[None, :] - centre_x
        radius = np.sqrt((y / self.radius_y) ** 2 + (x / self.radius_x) ** 2)
        # One pixel of soft edge: the coverage of a pixel the outline crosses.
        alpha = np.clip((1 - radius) * self.radius_x + 0.5, 0, 1).astype(np.float32)
        texture = 0.75 + 0.25 * (np.sin(y / self.stripes) * np.cos(x / self.stripes))[:, :, None]
        return alpha, (self.colour * texture).astype(np.float32)


def _rain(image: np.ndarray, spec: Recipe, params: dict, rng: np.random.Generator) -> np.ndarray:
    """`image` (float32 H×W×3, 8-bit levels) under one frame of new drops, composited
    as `rainbench.synth.render.render` does with the video's drawn `params`."""
    height, width = image.shape[:2]
    drops = _rain_layer(params, height, width, rng)[:, :, None] * np.float32(255)
    return _veiled(_blurred(image, params) + drops, spec, params).astype(np.float32)


def _blurred(image: np.ndarray, params: dict) -> np.ndarray:
    """`image` behind the rain's water in the air: blurred where the recipe drew a blur."""
    if "background_blur" not in params:
        return image
    radius = params["background_blur"] * image.shape[0] / REFERENCE_HEIGHT
    return ndimage.gaussian_filter(image, (radius, radius, 0))


def _veiled(image: np.ndarray, spec: Recipe, params: dict) -> np.ndarray:
    """`image` seen through the recipe's veil, T·I + (1 − T)·A, where it has one."""
    if spec.compositing != "veil":
        return image
    transmission = _transmission(params, image.shape[0])[:, None, None]
    return image * transmission + (1 - transmission) * (255 * params["atmospheric_light"])


def _round(image: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(image, 0, 255)).astype(np.uint8)
