"""The clean background of a rain sequence from a fixed camera, estimated from time: each
window of frames is registered (small shake undone), moving objects are masked, and a
robust temporal statistic that knows rain only adds light gives the background of every
target frame, with a confidence map and a predicted quality. Pure numpy/scipy.
"""

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy import fft, ndimage

METHODS: tuple[str, ...] = ("percentile", "median", "lowrank")
RAIN_FREE = "rain-free"
_ABSENT = np.float32(1e6)  # the luma of a sample that is not there: ranked last

# MATLAB rgb2ycbcr's Y, on 8-bit RGB: outlier decisions, noise and the predicted quality
# are all in the units psnr_y is computed in.
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966], dtype=np.float32) / 255
_Y_OFFSET = np.float32(16)
_CHROMA_WEIGHTS = (
    np.array([[-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]], dtype=np.float32) / 255
)

# Registration works on a central luma crop of at most this many pixels a side: enough
# texture for a 0.02 px fit, and a 4K frame costs no more than a 640×360 one.
REGISTER_CROP = 512
# A frame whose registered crop correlates (high-passed) less than this share of the
# window's median with the reference is not registered: its shift is not to be trusted.
MATCH_SHARE = 0.5
# A frame the camera's steady drift puts further than this many times max_shift from
# the window's middle has moved (a pan), not shaken: it is not registered, however well
# a wrong shift within max_shift matches (on a street's repeating facades, about as
# well as a right one through a storm at night).
PATH_SLACK = 2.0
# A step from one frame to the next is none while the crops line up within STILL_REACH
# px of none at least STILL_SHARE as well as they do at their best: a person or a bus
# crossing a standing background, not a camera that moves.
STILL_REACH = 2.0
STILL_SHARE = 0.5
# Shifts this close to a whole pixel are taken as whole: no interpolation blur.
WHOLE_PIXEL = 0.02
# Frames are moved by a Fourier shift, the ideal band-limited translation (a cubic
# spline, twice over, costs 2–4 dB on fine texture), mirrored this far beyond each
# side so the spectrum sees no seam.
WARP_PAD = 16
# Moving objects are found on luma box-averaged to about this height: thin rain streaks
# shrink to a cell or less, which a 3×3 opening removes, while a person stays a blob.
DETECT_HEIGHT = 180
# A sample is a moving object where it differs from the window's median by more than
# max(this many robust σ of its frame's differences, MIN_CONTRAST levels of Y).
MOVING_SIGMA = 4.5
MIN_CONTRAST = 6.0
_SQUARE3 = np.ones((3, 3), bool)
_SQUARE5 = np.ones((5, 5), bool)
MIN_BLOB_CELLS = 4  # smaller blobs after the opening are noise, not objects
MOVING_GROW = 2  # cells the mask grows by on every side (shadows, soft edges)
# Inliers of the temporal statistic lie in [L − 3σ, L + 2.5σ]: rain sits above, never
# below; a tighter upper bound trims faint streaks at no cost on clean samples.
INLIER_LOW = 3.0
INLIER_HIGH = 2.5
ITERATIONS = 3
NOISE_SMOOTHING = 3.0  # σ in px of the spatial smoothing of the per-pixel noise
NOISE_FLOOR = 0.5  # levels of Y: no pixel is trusted to be quieter than this
# Confidence 255·min(1, n/FULL_COUNT)/(1 + (se/HALF_ERROR)²): half (128) where the
# background's predicted standard error reaches HALF_ERROR levels of Y (≈ 42 dB).
FULL_COUNT = 5
HALF_ERROR = 2.0
# A pair's pixel is scored from this confidence on (rainbench.leaderboard.eval reads it).
CONFIDENT = 128
MAX_PSNR = 60.0
# The share of the samples' variance taken as shared by all frames in gt_psnr_estimate:
# H.264 keeps a static background's coding error from frame to frame, so it is in the
# spread of single samples but does not shrink with their number. Fitted on the
# benchmark's tuning condition (benchmarks/pairs_quality.py).
CORRELATED = 0.5
BAND_PIXELS = 1 << 18  # pixels per row band: ~100 MB of float32 for a 31-frame window
# A frame's exposure (auto-exposure drifting, mains light flickering) is fitted as a gain
# of its registered crop's Y − 16 against the window's median, on pixels more than
# EXPOSURE_DARK levels above black (darker ones show a gain as no more than noise) and
# below EXPOSURE_BRIGHT (a brighter frame clips there), where at least EXPOSURE_PIXELS
# of them are. A window whose frames' gains are within EXPOSURE_CHANGE of its median
# frame's, but for a tenth of them, is lit steadily, and all its gains are 1: the rain
# (dense streaks lift the median pixel by 5 levels at 720p) and the codec move the fit
# of a steadily lit frame by up to 2 %, 0.5–1 % for most (pairs_quality.py's videos),
# and a 2 % error costs more than the drift it would correct.
EXPOSURE_DARK = 16.0
EXPOSURE_BRIGHT = 200.0
EXPOSURE_PIXELS = 256
EXPOSURE_CHANGE = 0.015
# A step of light from the rain-free frames to the rain closer to 1 than this is none:
# the fit on the two full backgrounds is far steadier than a frame's.
EXPOSURE_SNAP = 0.004
# levels of Y: a fit from the dry frames to the rainy ones that needs a larger offset is
# a veil's, not an exposure's
EXPOSURE_OFFSET = 3.0
# Rain-free frames are found on luma box-averaged to about this height.
RAIN_FREE_HEIGHT = 360
MIN_SIDE = 32  # px: a frame narrower or shorter shows too little scene to estimate from
RAIN_FREE_LIFT = 2.0  # levels of Y a dry frame's level may sit above the darkest frame's
RAIN_FREE_APART = 4  # the rainy frames' median score must be this many times the threshold
RAIN_FREE_GAP = 4.0  # robust σ of the rainy frames' scores a dry one sits below their median
RAIN_FREE_ALIKE = 3  # frames as bright (itself included) a frame's base is the median of
RAIN_FREE_FLAT = 70  # percentile of the base's gradient below which a pixel is flat ground
LOWRANK_ITERATIONS = 60
LOWRANK_TOLERANCE = 1e-5


@dataclass(frozen=True)
class EstimateOptions:
    method: str = "percentile"  # one of METHODS
    percentile: float = 25.0  # where "percentile" starts before its inlier iterations
    window: int = 31  # frames per window
    stride: int = 8  # pair every stride-th frame
    register: bool = True  # undo small camera shake (a translation)
    max_shift: float = 8.0  # px: a frame shaken further is not used nor paired
    max_moving: float = 0.25  # a frame with more of its area moving is not paired
    prefer_rain_free: bool = True  # rain-free frames of the sequence are the ground truth
    # Fewer usable frames in a window: nothing is paired. A frame's confidence counts the
    # other frames' clean samples, and reaches CONFIDENT from 3 of them (FULL_COUNT 5).
    min_frames: int = 4
    min_confident: float = 0.2  # a frame with less of its area confident is not paired
    rain_free_score: float = 0.002  # net share of thin bright outliers below which a frame is dry
    min_rain_free: int = 3  # fewer dry frames than this: not the ground truth (nor targets)


@dataclass(frozen=True)
class Window:
    start: int  # first frame the estimate uses
    end: int  # last frame it uses (inclusive)
    targets: tuple[int, ...]  # frames to pair


@dataclass
class FrameEstimate:
    index: int  # frame index within the sequence
    gt: np.ndarray | None  # uint8 H×W×3 RGB background in this frame's own coordinates
    confidence: np.ndarray | None  # uint8 H×W: 255 trusted … 0 skip
    method: str  # one of METHODS or "rain-free"
    window: tuple[int, int]  # first and last frame index the estimate used
    # (dy, dx) of this frame's content against the window's reference: the camera's
    # median position over the window
    shift: tuple[float, float]
    moving: float  # share of the frame masked as moving
    gt_psnr_estimate: float  # predicted psnr_y of gt against the truth, from the data alone
    skipped: str | None = None  # why the frame is not paired; gt and confidence None then
    # the gain that brought the background from its samples' exposure to this frame's
    exposure: float = 1.0


class FrameSource(Protocol):
    def __len__(self) -> int: ...

    def read(self, indices: Sequence[int]) -> np.ndarray: ...  # (n, H, W, 3) uint8 RGB


class ArrayFrames:
    """A FrameSource over frames held in memory: (n, H, W, 3) uint8, or a list of H×W×3."""

    def __init__(self, frames: np.ndarray | Sequence[np.ndarray]):
        self.frames = np.asarray(frames) if isinstance(frames, np.ndarray) else np.stack(frames)

    def __len__(self) -> int:
        return len(self.frames)

    def read(self, indices: Sequence[int]) -> np.ndarray:
        return self.frames[list(indices)]


def check_options(options: EstimateOptions) -> None:
    """ValueError saying which option is out of range."""
    if options.method not in METHODS:
        raise ValueError(f"unknown method {options.method!r}; known: {', '.join(METHODS)}")
    if not 0 <= options.percentile <= 100:
        raise ValueError(f"percentile must be in [0, 100], not {options.percentile}")
    if options.min_frames < 2:
        raise ValueError(f"min_frames must be ≥ 2, not {options.min_frames}")
    if options.window < options.min_frames:
        raise ValueError(f"window must be ≥ {options.min_frames} frames, not {options.window}")
    if options.stride < 1:
        raise ValueError(f"stride must be ≥ 1, not {options.stride}")
    if not options.max_shift >= 0:
        raise ValueError(f"max_shift must be ≥ 0, not {options.max_shift}")
    if not 0 < options.max_moving <= 1:
        raise ValueError(f"max_moving must be in (0, 1], not {options.max_moving}")
    if not 0 <= options.min_confident <= 1:
        raise ValueError(f"min_confident must be in [0, 1], not {options.min_confident}")


def plan_windows(frame_count: int, options: EstimateOptions) -> list[Window]:
    """Every stride-th frame, on a grid centred in the sequence, grouped into windows of
    `window` frames centred on their targets; none below `min_frames` frames."""
    check_options(options)
    if frame_count < options.min_frames:
        return []
    stride, length = options.stride, min(options.window, frame_count)
    first = (frame_count - 1 - stride * ((frame_count - 1) // stride)) // 2
    targets = list(range(first, frame_count, stride))
    # Targets per window: their span stays within the window, so each has frames around it.
    group = max(1, math.ceil(options.window / stride) - 1)
    windows: list[Window] = []
    for at in range(0, len(targets), group):
        chosen = tuple(targets[at : at + group])
        middle = (chosen[0] + chosen[-1]) // 2
        start = min(max(0, middle - (length - 1) // 2), frame_count - length)
        if windows and windows[-1].start == start:  # the same frames: one estimate
            chosen = windows.pop().targets + chosen
        windows.append(Window(start, start + length - 1, chosen))
    return windows


def find_rain_free(frames: FrameSource, options: EstimateOptions) -> tuple[int, ...]:
    """The frames without rain (before or after it), as the sequence itself shows them.

    Each chunk of `window` frames is box-averaged to about 360 rows and registered. A
    frame's level is the chunk's median background plus the frame's median difference
    from it (so a passing object does not move it), and its score is its net share of
    thin bright outliers on flat ground against the median of the chunk's frames as
    bright as it is (within RAIN_FREE_LIFT): rain adds thin bright outliers, while
    noise and the codec add as many dark ones as bright. A frame is dry when its score
    is below `rain_free_score` and its level within RAIN_FREE_LIFT of the sequence's
    darkest (rain and its veil add light), and when the other frames stand apart:
    clearly lifted, or clearly streaked with its score far below their spread; else
    none is. Every dry frame is returned, even fewer than `min_rain_free` (they are then
    not the ground truth, but never a target).
    """
    check_options(options)
    count = len(frames)
    if count < options.min_frames:
        return ()
    scores: list[float] = []
    levels: list[float] = []
    for chunk in np.array_split(np.arange(count), math.ceil(count / options.window)):
        lumas = np.stack([_box_luma(frame, RAIN_FREE_HEIGHT) for frame in frames.read(chunk)])
        chunk_scores, chunk_levels = _rain_scores(lumas, options)
        scores += chunk_scores
        levels += chunk_levels
    low = min(levels)
    dry = [
        index
        for index in range(count)
        if scores[index] < options.rain_free_score and levels[index] <= low + RAIN_FREE_LIFT
    ]
    wet = sorted(set(range(count)) - set(dry))
    if not dry or not wet:
        return ()
    # The dry frames must stand apart from the rest — those clearly lifted, or clearly
    # streaked — else time cannot tell them (dense rain or mist in every frame).
    lifted = np.median([levels[i] for i in wet]) > np.median([levels[i] for i in dry]) + (
        RAIN_FREE_LIFT
    )
    if lifted:
        return tuple(dry)
    rainy = np.array([scores[i] for i in wet])
    typical = float(np.median(rainy))
    if typical <= RAIN_FREE_APART * options.rain_free_score:
        return ()
    # Streaked, so each dry frame must score far below the rainy frames' own spread: in
    # a small or heavily coded video a rainy frame's score can fall near none by chance.
    spread = 1.4826 * float(np.median(np.abs(rainy - typical)))
    return tuple(i for i in dry if scores[i] < typical - RAIN_FREE_GAP * spread)


def _rain_scores(lumas: np.ndarray, options: EstimateOptions) -> tuple[list[float], list[float]]:
    """Per frame of a chunk of box-averaged lumas: its net share of thin bright outliers
    and its level (see find_rain_free)."""
    shifts = [(0.0, 0.0)] * len(lumas)
    if options.register:  # shake would pass for outliers on every edge
        opened = np.stack([ndimage.grey_opening(luma, size=(3, 3)) for luma in lumas])
        shifts, _ = _register(opened, None, options.max_shift)
    aligned = np.stack(
        [_translate(luma, (-dy, -dx)) for luma, (dy, dx) in zip(lumas, shifts, strict=True)]
    )
    # Each frame against a base moved to it: the frame itself is not resampled, which
    # would ring around every sharp streak. The border a shift uncovers holds copies,
    # not the scene: left out.
    edge = math.ceil(max(max(abs(dy), abs(dx)) for dy, dx in shifts)) + 1
    # A shift far beyond max_shift in a small frame would leave no inside: one pixel stays.
    edge = min(edge, (min(lumas.shape[1:]) - 1) // 2)
    inner = (slice(edge, lumas.shape[1] - edge), slice(edge, lumas.shape[2] - edge))
    median = np.median(aligned, axis=0).astype(np.float32)
    typical = float(np.median(median[inner]))
    levels = [
        typical + float(np.median((luma - _translate(median, shift))[inner]))
        for luma, shift in zip(lumas, shifts, strict=True)
    ]
    # The median is unbiased by noise, where a low percentile is biased dark and made
    # every clean frame look brighter than its base. Against frames as bright as it is,
    # a dry frame before a veiled rain meets the other dry frames, not the veil.
    bases: dict[tuple[int, ...], np.ndarray] = {}
    scores = []
    for luma, shift, level in zip(lumas, shifts, levels, strict=True):
        alike = tuple(i for i, other in enumerate(levels) if abs(other - level) <= RAIN_FREE_LIFT)
        if len(alike) < RAIN_FREE_ALIKE:
            base = median
        else:
            if alike not in bases:
                bases[alike] = np.median(aligned[list(alike)], axis=0).astype(np.float32)
            base = bases[alike]
        diff = (luma - _translate(base, shift))[inner]
        diff -= np.median(diff)
        # Rain only adds light: the noise is read off the darker side, of this frame's
        # own differences (the chunk's, pooled, depended on how many of them rain).
        sigma = max(-float(np.percentile(diff, 15.87)), 1.0)
        bright, dark = diff > 4 * sigma, diff < -4 * sigma
        # Blobs (moving objects) are left out, and so are the scene's edges, where the
        # codec and the registration leave outliers of either sign in clean frames.
        blobs = ndimage.binary_opening(bright | dark, _SQUARE5)
        edges = ndimage.gaussian_gradient_magnitude(base, 1.0)[inner]
        flat = ~ndimage.binary_dilation(blobs, iterations=2) & (
            edges <= np.percentile(edges, RAIN_FREE_FLAT)
        )
        net = np.count_nonzero(bright & flat) - np.count_nonzero(dark & flat)
        scores.append(net / diff.size)
    return scores, levels


def estimate_window(
    frames: FrameSource, window: Window, rain_free: tuple[int, ...], options: EstimateOptions
) -> list[FrameEstimate]:
    """One estimate per target of `window`, in order.

    With at least `min_rain_free` of `rain_free` frames (and `prefer_rain_free`), the
    background is their robust mean, from those nearest the window in time, and the
    method is "rain-free"; the window's own frames then place the targets, find what
    moves in them, bound the predicted quality and give the rain's exposure
    (`_rainy_estimate`). Rain-free frames are never targets, however few: they come back
    with skipped="rain-free", as a dry frame paired as rainy would score a derainer on
    nothing to derain. Every frame's exposure gain is fitted (`_exposures`), the samples
    are brought to one exposure, and each background is given its target's."""
    check_options(options)
    dry = set(rain_free)
    indices = list(range(window.start, window.end + 1))
    stack = frames.read(indices)
    height, width = stack.shape[1:3]
    use_dry = len(rain_free) >= options.min_rain_free and options.prefer_rain_free
    scene = _align(stack, None, options, warp=True)
    rainy = None
    if use_dry:  # before the dry frames are read: one extra copy of the window at a time
        rainy = _rainy_estimate(scene, [p for p, i in enumerate(indices) if i not in dry], options)
        centre = (window.start + window.end) / 2
        nearest = sorted(rain_free, key=lambda i: (abs(i - centre), i))[: options.window]
        chosen = sorted(nearest)
        samples = _align(frames.read(chosen), scene.reference, options, warp=True)
        method, sample_indices = RAIN_FREE, chosen
    else:  # the dry frames among them are clean samples like any other
        samples, method, sample_indices = scene, options.method, indices
    used = (min(sample_indices), max(sample_indices))

    results: dict[int, FrameEstimate] = {}
    wanted = []
    unaligned = _not_lined_up(scene, options) or _not_lined_up(samples, options)
    for target in window.targets:
        position = target - window.start
        shift = scene.shifts[position]
        moving = scene.moving_share(position)
        why = None
        if target in dry:
            why = RAIN_FREE
        elif unaligned:  # its moving share and its own registration mean nothing then
            why = unaligned
        elif moving > options.max_moving:  # (a frame this covered does not register well)
            why = f"{moving:.0%} of the frame moves, more than max_moving {options.max_moving:.0%}"
        elif not scene.registered[position]:
            why = f"not registered: a shake beyond max_shift {options.max_shift} px or no match"
        elif samples.usable < options.min_frames:
            why = (
                f"{samples.usable} of the {len(samples.registered)} frames registered, fewer "
                f"than min_frames {options.min_frames}"
            )
        if why is None:
            wanted.append(target)
        results[target] = FrameEstimate(target, None, None, method, used, shift, moving, 0.0, why)
    if not wanted:
        return [results[t] for t in window.targets]

    rows = [sample_indices.index(t) if method == "lowrank" else 0 for t in wanted]
    # Where a target is one of its own samples, its confidence counts the others only:
    # counting it would trust a pixel more where the target itself shows no rain there,
    # and with few frames a pair's scored pixels would be the ones it needs no deraining.
    own = [sample_indices.index(t) for t in wanted] if method != RAIN_FREE else []
    backgrounds, error, count, inlier, departures = _background(samples, method, rows, own, options)
    # The background is at its samples' exposure; a rain-free one, at the dry frames'.
    step = 1.0 if rainy is None else _step(_luma(backgrounds[0]), rainy[1])
    for k, (target, background) in enumerate(zip(wanted, backgrounds, strict=True)):
        position = target - window.start
        shift = scene.shifts[position]
        exposure = step * float(scene.gains[position])
        if exposure != 1:
            background = background * np.float32(exposure)
        gt = background if shift == (0.0, 0.0) else _translate(background, shift)
        others = count - inlier[k] if inlier else count
        mask = scene.moving_mask(position, height, width)
        confidence = _confidence(error, others, shift, mask)
        trusted = float(np.mean(confidence >= CONFIDENT))
        if trusted < options.min_confident:
            results[target].skipped = _unconfident(trusted, samples, options)
            continue
        results[target].gt = _round(gt)
        results[target].confidence = confidence
        results[target].exposure = round(exposure, 4)
        shared = _shared_error(error, count)
        if rainy is not None:
            shared = np.maximum(shared, rainy[0])
        # `lowrank` is not the robust mean the standard error is of: how far it departs
        # from that mean is added, as an error of its own.
        if departures[k] is not None:
            shared += departures[k]
        shared *= exposure**2  # levels at the window's exposure, now at the frame's
        results[target].gt_psnr_estimate = _predicted_psnr(_to_frame(shared, shift), confidence)
    return [results[t] for t in window.targets]


def _shared_error(error: np.ndarray, count: np.ndarray) -> np.ndarray:
    """The squared error of a robust mean (levels of Y²) from its standard error and its
    sample count: the frames' shared error (what a codec froze into every frame) does not
    average out, so a share CORRELATED of the sample variance σ² = se²·n is added to se²."""
    return error**2 * (1 + CORRELATED * count)


def _step(dry: np.ndarray, rainy: np.ndarray) -> float:
    """The exposure gain from the rain-free background to the time-based one of the
    window's rainy frames (Y, NaN where either has no clean sample): the light the dry
    frames were shot under, against the rain's. A veil is a gain too, with an offset
    (T·B + (1 − T)·A), and no fit tells it from an exposure, but an exposure has no
    offset: where the fit needs one beyond EXPOSURE_OFFSET levels, the gain is 1 (what a
    rain-free background is for is to be clear of that veil)."""
    dry, rainy = dry[::2, ::2], rainy[::2, ::2]  # as in _exposures
    both = np.isfinite(dry) & np.isfinite(rainy)
    _, offset = _fit_exposure(rainy[both], dry[both], offset=True)
    gain, _ = _fit_exposure(rainy[both], dry[both])
    if abs(offset) > EXPOSURE_OFFSET or abs(gain - 1) < EXPOSURE_SNAP:
        return 1.0
    return round(gain, 4)


def _rainy_estimate(
    aligned: "_Aligned", rainy: list[int], options: EstimateOptions
) -> tuple[np.ndarray, np.ndarray] | None:
    """The time-based estimate of the window's rainy frames (positions `rainy` of
    `aligned`, warped): the squared error it predicts (levels of Y², reference
    coordinates; 0 where they hold no clean sample) and its Y (NaN there); None with
    fewer than `min_frames` of them registered.

    The dry frames of a static scene are coded alike (skipped blocks): their spread is
    near none and says nothing of the codec error they all share, which time cannot
    average out. Rain makes the codec code the scene afresh, and the rainy frames'
    spread shows that error: a rain-free background is trusted no more than the
    time-based one of its window. Its Y is where the rain's exposure is read (`_step`)."""
    positions = [p for p in rainy if aligned.registered[p]]
    if len(positions) < options.min_frames:
        return None
    values, error, count, _, _ = _background(
        aligned.subset(positions), "percentile", [0], [], options
    )
    codec = np.where(count > 0, _shared_error(error, count), 0).astype(np.float32)
    return codec, np.where(count > 0, _luma(values[0]), np.nan)


def _not_lined_up(aligned: "_Aligned", options: EstimateOptions) -> str | None:
    """Why a window's frames did not line up — most of them not registered, so whatever
    else is wrong with a target follows from that — or None when they did."""
    frames = len(aligned.registered)
    if 2 * aligned.usable >= frames:
        return None
    return (
        f"only {aligned.usable} of the {frames} frames registered (a pan, or a shake beyond "
        f"max_shift {options.max_shift} px)"
    )


def _unconfident(trusted: float, samples: "_Aligned", options: EstimateOptions) -> str:
    """Why a frame too little of which is confident is not paired."""
    why = (
        f"{trusted:.0%} of the frame is confident, less than min_confident "
        f"{options.min_confident:.0%} (too few frames without rain there"
    )
    left_out = len(samples.registered) - samples.usable
    if left_out:
        return f"{why}; {left_out} of the {len(samples.registered)} frames not registered)"
    return f"{why})"


def estimate_pairs(frames: FrameSource, options: EstimateOptions) -> Iterator[FrameEstimate]:
    """Every target of the whole sequence, window after window."""
    rain_free = find_rain_free(frames, options)
    for window in plan_windows(len(frames), options):
        yield from estimate_window(frames, window, rain_free, options)


# Alignment: shifts, coverage and moving masks of a stack of frames


@dataclass
class _Aligned:
    stack: np.ndarray  # (n, H, W, 3) uint8, in reference coordinates when warped
    shifts: list[tuple[float, float]]  # (dy, dx): frame(y, x) = reference(y − dy, x − dx)
    registered: list[bool]  # shake within max_shift
    moving: np.ndarray  # (n, h, w) bool on the detection grid, in reference coordinates
    cell: int  # detection grid cell size, px
    reference: np.ndarray  # rain-robust registration reference: luma crop, float32
    # (n,) float32: each frame's exposure against its stack's median frame, a gain of
    # RGB; 1 where the frame did not register
    gains: np.ndarray

    @property
    def usable(self) -> int:
        return sum(self.registered)

    def subset(self, positions: list[int]) -> "_Aligned":
        return _Aligned(
            self.stack[positions],
            [self.shifts[p] for p in positions],
            [self.registered[p] for p in positions],
            self.moving[positions],
            self.cell,
            self.reference,
            self.gains[positions],
        )

    def moving_share(self, position: int) -> float:
        return float(self.moving[position].mean())

    def moving_mask(self, position: int, height: int, width: int) -> np.ndarray:
        """Frame `position`'s moving mask at full size, in reference coordinates."""
        return self.moving_rows(0, height, width, [position])[0]

    def moving_rows(
        self, top: int, bottom: int, width: int, positions: list[int] | None = None
    ) -> np.ndarray:
        """The moving masks of rows top..bottom−1 at full size (every frame's, or those at
        `positions`); pixels past the last whole cell take the last cell's value."""
        cells = self.moving if positions is None else self.moving[positions]
        rows = np.minimum(np.arange(top, bottom) // self.cell, cells.shape[1] - 1)
        columns = np.minimum(np.arange(width) // self.cell, cells.shape[2] - 1)
        return cells[:, rows][:, :, columns]


def _align(
    stack: np.ndarray, reference: np.ndarray | None, options: EstimateOptions, warp: bool
) -> _Aligned:
    """Register `stack` (to `reference`, a crop from `_align`, or to its own middle frame),
    mask what moves in it and, with `warp`, move its frames into the reference's
    coordinates (in place)."""
    count, height, width = stack.shape[:3]
    # A grey opening takes the rain out of what is registered: thin bright streaks,
    # new every frame, would otherwise be what the phase correlation lines up.
    size = max(3, 2 * round(height / 540) + 1)
    crops = np.stack(
        [
            ndimage.grey_opening(_luma(frame[_crop_slices(height, width)]), size=(size, size))
            for frame in stack
        ]
    )
    registered = [True] * count
    if options.register:
        shifts, reference = _register(crops, reference, options.max_shift)
        matches = [_match(c, reference, shift) for c, shift in zip(crops, shifts, strict=True)]
        typical = float(np.median(matches))
        travel = _travel(crops)
        registered = [
            math.hypot(*shift) <= options.max_shift
            and match >= MATCH_SHARE * typical
            and moved <= PATH_SLACK * options.max_shift
            for shift, match, moved in zip(shifts, matches, travel, strict=True)
        ]
    else:
        shifts = [(0.0, 0.0)] * count
        reference = np.median(crops, axis=0) if reference is None else reference
    gains = _exposures(crops, shifts, registered, options.max_shift)
    cell = max(1, round(height / DETECT_HEIGHT))
    small = np.stack(
        [
            ndimage.shift(
                np.concatenate([_box_luma(frame, DETECT_HEIGHT)[None], _box_chroma(frame, cell)]),
                (0, -dy / cell, -dx / cell),
                order=1,
                mode="nearest",
            )
            for frame, (dy, dx) in zip(stack, shifts, strict=True)
        ]
    )
    # What moves is found at one exposure: a frame 3 % brighter would lift a white wall
    # by 6 levels, as much as a person.
    small[:, 0] = _Y_OFFSET + (small[:, 0] - _Y_OFFSET) / gains[:, None, None]
    small[:, 1:] /= gains[:, None, None, None]
    if warp:
        # In place: a window's frames are held once, at 8 bits (the rounding's noise
        # averages out over the window, as the frames' shifts differ).
        for frame, shift, ok in zip(stack, shifts, registered, strict=True):
            if ok and shift != (0.0, 0.0):
                frame[...] = _round(_translate(frame, (-shift[0], -shift[1])))
    moving = _moving(small, registered)
    return _Aligned(stack, shifts, registered, moving, cell, reference, gains)


def _exposures(
    crops: np.ndarray, shifts: list[tuple[float, float]], registered: list[bool], limit: float
) -> np.ndarray:
    """Each registered crop's exposure gain against the median of the registered crops
    lined up (without the border a shake up to `limit` px uncovers), relative to the
    median frame's; 1 for the others, and for all in a steadily lit window
    (EXPOSURE_CHANGE). The median of frames at several exposures takes each pixel from
    one or another of them, so it is taken again over the crops brought to one exposure,
    and the gains fitted again."""
    margin = min(math.ceil(limit) + 1, (min(crops.shape[1:]) - 1) // 2)
    # Every other pixel each way: a quarter of the cost, and still thousands of pixels
    # to fit one number on.
    inner = (slice(margin, -margin, 2), slice(margin, -margin, 2))
    lined = np.stack(
        [
            ndimage.shift(crop, (-dy, -dx), order=1, mode="nearest")[inner]
            for crop, (dy, dx) in zip(crops, shifts, strict=True)
        ]
    )
    used = np.array(registered) if any(registered) else np.ones(len(crops), bool)
    gains = np.ones(len(crops), np.float32)
    for _ in range(2):
        levelled = _Y_OFFSET + (lined[used] - _Y_OFFSET) / gains[used, None, None]
        lit = np.median(levelled, axis=0).astype(np.float32)
        for position in np.flatnonzero(used):
            gains[position] = _fit_exposure(lined[position], lit)[0]
        # The median frame's exposure is the window's: rain lifts the median crop
        # a little, and each frame's fit, which leaves the rain out, a little below it.
        gains[used] /= np.median(gains[used])
    gains[~np.array(registered)] = 1
    if np.percentile(np.abs(gains[used] - 1), 90) < EXPOSURE_CHANGE:
        return np.ones(len(crops), np.float32)
    return np.round(gains, 4).astype(np.float32)


def _fit_exposure(luma: np.ndarray, base: np.ndarray, offset: bool = False) -> tuple[float, float]:
    """(gain, offset) of luma ≈ gain · base + offset in Y − 16 (offset 0 unless asked),
    on the pixels of `base` that show a gain (neither near black nor near clipping):
    from the median ratio, a few least squares fits over the residuals within
    [−3σ, +2.5σ] of their median, σ read off the darker side (rain, and what a grey
    opening leaves of it, only adds light)."""
    shown = (base > _Y_OFFSET + EXPOSURE_DARK) & (base < EXPOSURE_BRIGHT)
    if np.count_nonzero(shown) < EXPOSURE_PIXELS:
        return 1.0, 0.0
    x = (base[shown] - _Y_OFFSET).astype(np.float64)
    y = (luma[shown] - _Y_OFFSET).astype(np.float64)
    gain, intercept = float(np.median(y / x)), 0.0
    for _ in range(ITERATIONS):
        residual = y - gain * x - intercept
        centre = float(np.median(residual))
        sigma = max(centre - float(np.percentile(residual, 15.87)), NOISE_FLOOR)
        keep = (residual >= centre - INLIER_LOW * sigma) & (
            residual <= centre + INLIER_HIGH * sigma
        )
        if offset:
            gain, intercept = (float(v) for v in np.polyfit(x[keep], y[keep], 1))
        else:
            gain = float(np.dot(x[keep], y[keep]) / np.dot(x[keep], x[keep]))
    return gain, intercept


def _crop_slices(height: int, width: int) -> tuple[slice, slice]:
    crop_h, crop_w = min(height, REGISTER_CROP), min(width, REGISTER_CROP)
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    return slice(top, top + crop_h), slice(left, left + crop_w)


def _register(
    crops: np.ndarray, reference: np.ndarray | None, limit: float
) -> tuple[list[tuple[float, float]], np.ndarray]:
    """(dy, dx) of each crop against `reference` (None: the median of the crops aligned,
    which neither rain nor a moving object can bias, placed at the median shift): phase
    correlation to the whole pixel, then a robust Lucas–Kanade fit on high-passed luma
    with a gain (a veil lowers contrast)."""
    own = reference is None
    if own:
        # First against the crops' plain median (a shake of a pixel or two blurs it a
        # little; one jolted frame, rain or a passer-by cannot move it), then against
        # the median of the crops so aligned.
        anchor = np.median(crops, axis=0).astype(np.float32)
        shifts = [_phase_correlation(crop, anchor, limit) for crop in crops]
        aligned = [
            ndimage.shift(c, (-dy, -dx), order=1, mode="nearest")
            for c, (dy, dx) in zip(crops, shifts, strict=True)
        ]
        reference = np.median(np.stack(aligned), axis=0).astype(np.float32)
    shifts = [_phase_correlation(crop, reference, limit) for crop in crops]
    shifts = [_refine(crop, reference, shift) for crop, shift in zip(crops, shifts, strict=True)]
    if own:
        # The reference is the camera's typical position: the median shift is zero.
        typical = tuple(float(np.median([shift[a] for shift in shifts])) for a in (0, 1))
        shifts = [(dy - typical[0], dx - typical[1]) for dy, dx in shifts]
        reference = ndimage.shift(reference, typical, order=3, mode="nearest").astype(np.float32)
    snapped = [tuple(_snap(v) for v in shift) for shift in shifts]
    return snapped, reference


def _travel(crops: np.ndarray) -> np.ndarray:
    """How far (px) the camera's steady drift puts each crop from the middle one: its
    median step from frame to frame (whole pixels, searched a quarter of the crop far)
    times the frames between them. A camera that shakes has no drift, and a wrong step
    here and there does not move the median; one that pans does. A step is none while
    the crops line up about as well as they do anywhere at a shake's reach of none:
    the background stands, whatever moves in front of it."""
    steps = []
    for before, after in itertools.pairwise(crops):
        surface = _correlation_surface(after, before)
        far = _within(surface, min(crops.shape[1:]) / 4)
        near = _within(surface, STILL_REACH)
        still = surface[near].max() >= STILL_SHARE * surface[far].max()
        steps.append((0.0, 0.0) if still else _peak(surface, far))
    drift = math.hypot(*np.median(np.array(steps), axis=0)) if steps else 0.0
    return drift * np.abs(np.arange(len(crops)) - (len(crops) - 1) / 2)


def _match(crop: np.ndarray, reference: np.ndarray, shift: tuple[float, float]) -> float:
    """The correlation of a registered crop's high-passed luma with the reference's: low
    where the shift is wrong (a shake beyond the search, a scene that changed)."""
    warped = _high_pass(ndimage.shift(crop, (-shift[0], -shift[1]), order=1, mode="nearest"))
    ref = _high_pass(reference)
    margin = int(max(abs(shift[0]), abs(shift[1]))) + 4
    inner = (slice(margin, -margin), slice(margin, -margin))
    a, b = warped[inner].ravel(), ref[inner].ravel()
    return float(np.dot(a, b) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-9))


def _phase_correlation(
    crop: np.ndarray, reference: np.ndarray, limit: float
) -> tuple[float, float]:
    """The whole-pixel shift of `crop` against `reference`, from the normalised
    cross-power spectrum's highest peak within `limit` (+2) px of none; beyond it, a
    shake too large anyway."""
    surface = _correlation_surface(crop, reference)
    return _peak(surface, _within(surface, limit + 2))


def _correlation_surface(crop: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The normalised cross-power spectrum of two crops, back in space: a peak at each
    shift that lines part of them up, as high as that part is large."""
    taper = np.outer(np.hanning(crop.shape[0]), np.hanning(crop.shape[1]))
    spectrum = np.fft.rfft2((crop - crop.mean()) * taper) * np.conj(
        np.fft.rfft2((reference - reference.mean()) * taper)
    )
    spectrum /= np.maximum(np.abs(spectrum), 1e-9)
    return np.fft.irfft2(spectrum, crop.shape)


def _within(surface: np.ndarray, reach: float) -> np.ndarray:
    """Where on a correlation surface the shift is at most `reach` px."""
    offsets = [np.minimum(np.arange(n), n - np.arange(n)) for n in surface.shape]
    return np.hypot(offsets[0][:, None], offsets[1][None, :]) <= reach


def _peak(surface: np.ndarray, near: np.ndarray) -> tuple[float, float]:
    """The shift (dy, dx) of the surface's highest point where `near`."""
    peak = np.unravel_index(int(np.argmax(np.where(near, surface, -np.inf))), surface.shape)
    return tuple(
        float(p - n if p > n // 2 else p) for p, n in zip(peak, surface.shape, strict=True)
    )


def _refine(
    crop: np.ndarray, reference: np.ndarray, shift: tuple[float, float]
) -> tuple[float, float]:
    """Gauss–Newton on the translation (and a gain) of high-passed luma, with residuals
    beyond 3 robust σ (rain, moving objects) left out."""
    ref = _high_pass(reference)
    gy, gx = np.gradient(ref)
    margin = int(abs(shift[0]) + abs(shift[1])) + 4
    inner = (slice(margin, -margin), slice(margin, -margin))
    if min(ref[inner].shape) < 8:
        return shift
    high = ndimage.spline_filter(_high_pass(crop), order=3)  # once: every step reuses it
    dy, dx = shift
    for _ in range(8):
        warped = ndimage.shift(high, (-dy, -dx), order=3, mode="mirror", prefilter=False)[inner]
        r, jy, jx = ref[inner], gy[inner], gx[inner]
        gain = float((warped * r).sum() / max(float((r * r).sum()), 1e-9))
        residual = warped - gain * r
        sigma = 1.4826 * float(np.median(np.abs(residual))) + 1e-6
        keep = np.abs(residual) < 3 * sigma
        a = (
            np.array(
                [
                    [(jy * jy)[keep].sum(), (jy * jx)[keep].sum()],
                    [(jy * jx)[keep].sum(), (jx * jx)[keep].sum()],
                ]
            )
            * gain**2
        )
        b = np.array([(jy * residual)[keep].sum(), (jx * residual)[keep].sum()]) * gain
        if np.linalg.eigvalsh(a)[0] < 1e-6 * max(a.trace(), 1e-12):
            return shift  # no texture to fit a shift on: keep the whole-pixel one
        # warped(y) = ref(y − δ) ≈ ref − δ·∇ref, so the residual's fit to −∇ref is δ.
        step = np.clip(-np.linalg.solve(a, b), -0.5, 0.5)
        dy, dx = dy + float(step[0]), dx + float(step[1])
        if abs(step[0]) + abs(step[1]) < 1e-3:
            break
    if max(abs(dy - shift[0]), abs(dx - shift[1])) > 1.5:
        return shift  # the fit wandered off: keep the whole-pixel peak
    return dy, dx


def _high_pass(luma: np.ndarray) -> np.ndarray:
    return (luma - ndimage.gaussian_filter(luma, 3.0)).astype(np.float32)


def _snap(value: float) -> float:
    whole = round(value)
    return float(whole) if abs(value - whole) < WHOLE_PIXEL else round(value, 4)


def _moving(small: np.ndarray, registered: list[bool]) -> np.ndarray:
    """Per frame, the cells of blobs that differ from the temporal median (small: n
    frames of Y, Cb, Cr on the detection grid). Rain only adds light, so the noise of
    Y is read off its darker side, and a brighter blob must survive a wider opening:
    dense rain clumps into 3×3 cells, a person does not fit into 5×5; a grey opening
    first takes out what is bright and thin. Rain's white light leaves the chroma as it
    is, so a change of colour counts as moving on a 3×3 opening."""
    luma = np.stack([ndimage.grey_opening(frame[0], size=(3, 3)) for frame in small])
    chroma = small[:, 1:]
    use = registered if any(registered) else [True] * len(small)
    base_luma = np.median(luma[use], axis=0)
    base_chroma = np.median(chroma[use], axis=0)
    masks = np.zeros(luma.shape, bool)
    for position in range(len(small)):
        diff = luma[position] - base_luma
        diff -= np.median(diff)
        sigma = -float(np.percentile(diff, 15.87))  # one σ below the median
        threshold = max(MOVING_SIGMA * sigma, MIN_CONTRAST)
        colour = np.hypot(*(chroma[position] - base_chroma))
        # The median of a 2-D Gaussian's length is 1.177σ.
        colour_threshold = max(MOVING_SIGMA * float(np.median(colour)) / 1.177, MIN_CONTRAST / 2)
        found = (
            ndimage.binary_opening(diff < -threshold, _SQUARE3)
            | ndimage.binary_opening(diff > threshold, _SQUARE5)
            | ndimage.binary_opening(colour > colour_threshold, _SQUARE3)
        )
        labels, blobs = ndimage.label(found)
        if blobs:
            sizes = np.bincount(labels.ravel())
            found = (sizes >= MIN_BLOB_CELLS)[labels] & found
        masks[position] = ndimage.binary_dilation(found, _SQUARE3, iterations=MOVING_GROW)
    return masks


# The temporal statistic, band by band in reference coordinates


def _background(
    aligned: _Aligned, method: str, rows: list[int], own: list[int], options: EstimateOptions
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, list[np.ndarray], list[np.ndarray | None]]:
    """The background in reference coordinates, once per entry of `rows` (the target's
    row among the samples: only "lowrank" gives each frame its own), with the standard
    error of the robust mean (levels of Y), the clean-sample count per pixel, for each
    entry of `own` (a target's row among the samples) where that sample is one of the
    clean ones, and per entry of `rows` the squared departure in Y of "lowrank"'s
    background from the robust mean (None for the other methods)."""
    usable = [p for p, ok in enumerate(aligned.registered) if ok]
    if len(usable) < len(aligned.stack):  # a copy: only when a frame is left out
        aligned = aligned.subset(usable)
    stack, shifts = aligned.stack, aligned.shifts
    rows = [usable.index(r) if method == "lowrank" else 0 for r in rows]
    own = [usable.index(r) for r in own]
    height, width = stack.shape[1:3]
    outputs = [np.zeros((height, width, 3), np.float32) for _ in set(rows)]
    order = sorted(set(rows))
    error = np.zeros((height, width), np.float32)
    count = np.zeros((height, width), np.int32)
    inlier = [np.zeros((height, width), bool) for _ in own]
    departures = [np.zeros((height, width), np.float32) for _ in order if method == "lowrank"]
    band = max(8, BAND_PIXELS // width)
    for top in range(0, height, band):
        bottom = min(height, top + band)
        samples = stack[:, top:bottom].astype(np.float32)
        samples /= aligned.gains[:, None, None, None]  # all at the window's exposure
        valid = _coverage(shifts, top, bottom, height, width)
        clean = valid & ~aligned.moving_rows(top, bottom, width)
        values, se, n, inliers = _robust_band(samples, clean, method, options)
        for mine, row in zip(inlier, own, strict=True):
            mine[top:bottom] = inliers[row]
        if method == "lowrank":
            layers = _lowrank_band(samples, clean, values)
            for output, departure, row in zip(outputs, departures, order, strict=True):
                output[top:bottom] = layers[row]
                departure[top:bottom] = (_luma(layers[row]) - _luma(values)) ** 2
        else:
            for output in outputs:
                output[top:bottom] = values
        error[top:bottom], count[top:bottom] = se, n
    picked = [order.index(r) for r in rows]
    return (
        [outputs[i] for i in picked],
        error,
        count,
        inlier,
        [departures[i] if departures else None for i in picked],
    )


def _coverage(
    shifts: list[tuple[float, float]], top: int, bottom: int, height: int, width: int
) -> np.ndarray:
    """Where each frame, moved into reference coordinates, covers rows top..bottom−1
    (n, h, W): not on the border its shift uncovered, nor a pixel beyond (ringing)."""
    y = np.arange(top, bottom)[:, None]
    x = np.arange(width)[None, :]
    valid = np.empty((len(shifts), bottom - top, width), bool)
    for position, (dy, dx) in enumerate(shifts):
        edge = 0 if dy == round(dy) and dx == round(dx) else 1
        sy, sx = y + dy, x + dx
        valid[position] = (
            (sy >= edge) & (sy <= height - 1 - edge) & (sx >= edge) & (sx <= width - 1 - edge)
        )
    return valid


def _translate(image: np.ndarray, shift: tuple[float, float]) -> np.ndarray:
    """`image` (H×W×3 or H×W) moved by (dy, dx), out(y) = in(y − d), float32: a Fourier
    shift of the image mirrored WARP_PAD px beyond each side."""
    planar = image.ndim == 2
    pad = ((WARP_PAD, WARP_PAD), (WARP_PAD, WARP_PAD)) + ((0, 0),) * (image.ndim - 2)
    padded = np.pad(image.astype(np.float32), pad, "symmetric")
    rows, columns = padded.shape[:2]
    ramp_y = np.exp(-2j * np.pi * fft.fftfreq(rows)[:, None] * shift[0])
    ramp_x = np.exp(-2j * np.pi * fft.rfftfreq(columns)[None, :] * shift[1])
    ramp = (ramp_y * ramp_x).astype(np.complex64)
    spectrum = fft.rfft2(padded, axes=(0, 1))
    spectrum *= ramp if planar else ramp[:, :, None]
    moved = fft.irfft2(spectrum, (rows, columns), axes=(0, 1))
    return moved[WARP_PAD:-WARP_PAD, WARP_PAD:-WARP_PAD].astype(np.float32)


def _robust_band(
    samples: np.ndarray, clean: np.ndarray, method: str, options: EstimateOptions
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Background RGB (h, W, 3), its standard error in Y, the inlier count (h, W) and
    which samples are the inliers (n, h, W).

    "percentile" (and "rain-free", "lowrank" before their own step) starts at a low
    order statistic of Y, then averages the samples in [L − 3σ, L + 2.5σ] a few times:
    the mean of the clean samples, unbiased by noise, with rain above the band. "median"
    is the sample of median Y, the classical baseline.
    """
    luma = samples @ _Y_WEIGHTS + _Y_OFFSET  # (n, h, W)
    available = clean.sum(axis=0)
    ranked = np.sort(np.where(clean, luma, _ABSENT), axis=0)
    last = np.maximum(available - 1, 0)
    start_share = 0.5 if method == "median" else options.percentile / 100

    def order_statistic(share: float) -> np.ndarray:
        index = np.floor(share * last).astype(np.intp)[None]
        return np.take_along_axis(ranked, index, axis=0)[0]

    level = order_statistic(start_share)
    spread = (order_statistic(0.25) - order_statistic(0.05)) / np.float32(0.97)
    spread = np.where(available > 0, spread, 0).astype(np.float32)
    # Half the band's typical spread: smoothing cannot make a pixel quieter than that.
    typical = spread[available >= 8]
    floor = max(NOISE_FLOOR, 0.5 * float(np.median(typical)) if typical.size else 0.0)
    sigma = np.maximum(ndimage.gaussian_filter(spread, NOISE_SMOOTHING, mode="nearest"), floor)
    if method == "median":
        picked = (luma == level[None]) & clean
        first = np.argmax(picked, axis=0)[None, :, :, None]
        values = np.take_along_axis(samples, first, axis=0)[0]
        se = 1.2533 * sigma / np.sqrt(np.maximum(available, 1))
        return values, np.where(available > 0, se, 255).astype(np.float32), available, clean
    for _ in range(ITERATIONS):
        inliers = (
            clean & (luma >= level - INLIER_LOW * sigma) & (luma <= level + INLIER_HIGH * sigma)
        )
        n = inliers.sum(axis=0)
        total = np.where(inliers, luma, 0).sum(axis=0)
        level = np.where(n > 0, total / np.maximum(n, 1), level).astype(np.float32)
        deviation = np.where(inliers, (luma - level) ** 2, 0).sum(axis=0)
        local = np.sqrt(deviation / np.maximum(n - 1, 1)).astype(np.float32)
        local = np.where(n > 2, local, sigma)
        sigma = np.maximum(ndimage.gaussian_filter(local, NOISE_SMOOTHING, mode="nearest"), floor)
    weights = inliers.astype(np.float32)
    values = np.einsum("nhw,nhwc->hwc", weights, samples) / np.maximum(n, 1)[:, :, None]
    se = np.where(n > 0, sigma / np.sqrt(np.maximum(n, 1)), 255).astype(np.float32)
    return values.astype(np.float32), se, n, inliers


def _lowrank_band(samples: np.ndarray, clean: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """Robust PCA (inexact ALM, Lin et al. 2010) of the band's frames as rows: D = L + S
    with L low rank and S sparse and, since rain only adds light, S ≥ 0. Samples not
    clean (moving, uncovered) are filled with the robust background first. Frames ≪
    pixels, so the SVT goes through the n×n Gram matrix."""
    count, rows, width = samples.shape[:3]
    data = np.where(clean[..., None], samples, fill[None]).reshape(count, -1) / np.float32(255)
    lam = np.float32(1 / math.sqrt(data.shape[1]))
    norm_two = math.sqrt(max(float(np.linalg.eigvalsh(data @ data.T)[-1]), 1e-12))
    dual = data / max(norm_two, float(np.abs(data).max()) / lam)
    mu, mu_bar, rho = 1.25 / norm_two, 1.25e7 / norm_two, 1.5
    sparse = np.zeros_like(data)
    scale = float(np.linalg.norm(data))
    low = data
    for _ in range(LOWRANK_ITERATIONS):
        low = _singular_value_threshold(data - sparse + dual / mu, 1 / mu)
        sparse = np.maximum(data - low + dual / mu - lam / mu, 0)
        gap = data - low - sparse
        dual += mu * gap
        mu = min(mu * rho, mu_bar)
        if float(np.linalg.norm(gap)) < LOWRANK_TOLERANCE * scale:
            break
    return (np.clip(low, 0, 1) * 255).reshape(count, rows, width, 3)


def _singular_value_threshold(matrix: np.ndarray, tau: float) -> np.ndarray:
    """U·shrink(Σ)·Vᵀ of a wide matrix, from the eigenvectors of M·Mᵀ: V = Mᵀ·U·Σ⁻¹."""
    values, vectors = np.linalg.eigh((matrix @ matrix.T).astype(np.float64))
    singular = np.sqrt(np.maximum(values, 0))
    kept = singular > tau
    if not kept.any():
        return np.zeros_like(matrix)
    ratio = (singular[kept] - tau) / singular[kept]
    projector = (vectors[:, kept] * ratio) @ vectors[:, kept].T
    return (projector.astype(np.float32) @ matrix).astype(np.float32)


# Back to each target frame


def _to_frame(plane: np.ndarray, shift: tuple[float, float]) -> np.ndarray:
    """A map in reference coordinates moved into a frame's own (bilinear): out(y) = in(y − d)."""
    if shift == (0.0, 0.0):
        return plane
    return ndimage.shift(plane, shift, order=1, mode="nearest")


def _confidence(
    error: np.ndarray, count: np.ndarray, shift: tuple[float, float], moving: np.ndarray
) -> np.ndarray:
    """uint8 confidence in the frame's own coordinates: from the clean-sample count and the
    standard error, 0 on the frame's moving objects and where the reference does not
    reach (the border the shake uncovers)."""
    factor = (np.minimum(count / FULL_COUNT, 1) / (1 + (error / HALF_ERROR) ** 2)).astype(
        np.float32
    )
    factor[moving] = 0
    height, width = factor.shape
    moved = _to_frame(factor, shift)
    dy, dx = shift
    y = np.arange(height)[:, None] - dy
    x = np.arange(width)[None, :] - dx
    inside = (y >= 1) & (y <= height - 2) & (x >= 1) & (x <= width - 2)
    moved = np.where(inside, moved, 0)
    return np.rint(np.clip(moved, 0, 1) * 255).astype(np.uint8)


def _predicted_psnr(squared: np.ndarray, confidence: np.ndarray) -> float:
    """psnr_y a predicted squared error map gives over the confident pixels (all, if
    none), with the rounding to uint8 added."""
    trusted = confidence >= CONFIDENT
    if not trusted.any():
        trusted = confidence > 0
    if not trusted.any():
        return 0.0
    mse = float(np.mean(squared[trusted])) + 1 / 12
    return float(min(MAX_PSNR, 10 * math.log10(255.0**2 / mse)))


# Small helpers of the pixels


def _luma(rgb: np.ndarray) -> np.ndarray:
    return (rgb.astype(np.float32) @ _Y_WEIGHTS + _Y_OFFSET).astype(np.float32)


def _box_luma(frame: np.ndarray, target_height: int) -> np.ndarray:
    """Luma box-averaged by a whole factor to about `target_height` rows."""
    return _box(_luma(frame), max(1, round(frame.shape[0] / target_height)))


def _box_chroma(frame: np.ndarray, factor: int) -> np.ndarray:
    """MATLAB's Cb and Cr (2, h, w), box-averaged by `factor`: white light, rain's,
    leaves them as they are."""
    planes = frame.astype(np.float32) @ _CHROMA_WEIGHTS.T
    return np.stack([_box(planes[:, :, c], factor) for c in range(2)])


def _box(plane: np.ndarray, factor: int) -> np.ndarray:
    if factor == 1:
        return plane
    rows, columns = plane.shape[0] // factor, plane.shape[1] // factor
    cut = plane[: rows * factor, : columns * factor]
    return cut.reshape(rows, factor, columns, factor).mean(axis=(1, 3), dtype=np.float32)


def _round(image: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(image, 0, 255)).astype(np.uint8)
