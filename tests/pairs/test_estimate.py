"""The background estimate from time, on small synthetic sequences built here: a smooth
textured scene, shaken by whole and fractional pixels, under bright streaks that fall
anew every frame, with a dark square crossing it."""

import itertools

import numpy as np
import pytest
from scipy import ndimage

from rainbench.demo.captures import render_scene
from rainbench.demo.photos import write_tripod_video
from rainbench.metrics.fullref import psnr_y
from rainbench.pairs.estimate import (
    METHODS,
    ArrayFrames,
    EstimateOptions,
    Window,
    check_options,
    estimate_pairs,
    estimate_window,
    find_rain_free,
    plan_windows,
)
from rainbench.synth.video import decode_video, encode_h264, render_rain_video

HEIGHT, WIDTH = 64, 96


def scene(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    texture = ndimage.gaussian_filter(rng.normal(0, 1, (HEIGHT + 16, WIDTH + 16, 3)), (2, 2, 0))
    ramp = np.linspace(60, 160, WIDTH + 16)[None, :, None]
    return np.clip(ramp + 400 * texture, 0, 255).astype(np.float32)


def shifted(image: np.ndarray, shift: tuple[float, float]) -> np.ndarray:
    """The central HEIGHT×WIDTH of `image` moved by shift (Fourier: no interpolator bias)."""
    planes = [
        np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(image[:, :, c]), shift)).real
        for c in range(3)
    ]
    return np.stack(planes, axis=2)[8 : 8 + HEIGHT, 8 : 8 + WIDTH]


def sequence(
    count: int = 21,
    seed: int = 0,
    shake: bool = True,
    square: int = 0,
    dry: range = range(0),
    veil: bool = False,
) -> tuple[ArrayFrames, list[np.ndarray], list[np.ndarray], list[tuple[float, float]]]:
    """Frames, true backgrounds, square masks and shifts."""
    rng = np.random.default_rng(seed)
    still = scene(seed)
    frames, truths, squares, shifts = [], [], [], []
    for index in range(count):
        shift = (0.0, 0.0)
        if shake and index % 2:
            shift = tuple(float(v) for v in np.round(rng.uniform(-1.5, 1.5, 2), 2))
        elif shake:
            shift = (float(rng.integers(-1, 2)), float(rng.integers(-1, 2)))
        truth = shifted(still, shift)
        frame = truth.copy()
        mask = np.zeros((HEIGHT, WIDTH), bool)
        if square:
            left = int(index * (WIDTH - square) / max(count - 1, 1))
            mask[20 : 20 + square, left : left + square] = True
            frame[mask] = 15
        if index not in dry and veil:  # mist: no streak, a lighter, flatter frame
            frame = 0.6 * frame + 0.4 * 220
        elif index not in dry:
            for column in rng.integers(0, WIDTH, 12):
                top = int(rng.integers(0, HEIGHT - 20))
                frame[top : top + 20, column] += rng.uniform(60, 120)
        frame += rng.normal(0, 1, frame.shape)
        frames.append(np.clip(np.rint(frame), 0, 255).astype(np.uint8))
        truths.append(np.clip(np.rint(truth), 0, 255).astype(np.uint8))
        squares.append(mask)
        shifts.append(shift)
    return ArrayFrames(frames), truths, squares, shifts


def test_the_background_comes_back_under_rain_and_shake():
    frames, truths, _, shifts = sequence()
    options = EstimateOptions(window=21, stride=5)
    estimates = list(estimate_pairs(frames, options))
    assert [e.index for e in estimates] == [0, 5, 10, 15, 20]
    middle = estimates[2]
    for estimate in estimates:
        assert estimate.skipped is None and estimate.method == "percentile"
        trusted = estimate.confidence >= 128
        assert trusted.mean() > 0.6
        assert psnr_y(estimate.gt, truths[estimate.index], trusted) > 40
        expected = np.subtract(shifts[estimate.index], shifts[10])
        assert np.allclose(np.subtract(estimate.shift, middle.shift), expected, atol=0.1)
        assert 35 < estimate.gt_psnr_estimate <= 60
        rainy = psnr_y(frames.read([estimate.index])[0], truths[estimate.index], trusted)
        assert rainy < 30


def test_a_moving_square_is_left_out_and_a_huge_one_skips_the_frame():
    frames, truths, squares, _ = sequence(square=12)
    options = EstimateOptions(window=21, stride=5)
    for estimate in estimate_pairs(frames, options):
        assert estimate.skipped is None
        assert not estimate.confidence[squares[estimate.index]].any()
        assert estimate.moving > 0
        trusted = estimate.confidence >= 128
        assert psnr_y(estimate.gt, truths[estimate.index], trusted) > 38
    frames.frames[10, 8:56, 10:70] = 20  # a bus stops in front of the camera
    estimates = estimate_window(frames, Window(0, 20, (10,)), (), options)
    assert "moves" in estimates[0].skipped
    assert estimates[0].gt is None and estimates[0].confidence is None


def test_a_frame_shaken_too_far_is_not_paired():
    frames, truths, _, _ = sequence(count=11, shake=False)
    frames.frames[5] = np.roll(frames.frames[5], (0, 14), axis=(0, 1))  # a 14 px jolt
    estimates = estimate_window(frames, Window(0, 10, (3, 5)), (), EstimateOptions(window=11))
    assert estimates[0].skipped is None
    assert "not registered" in estimates[1].skipped
    assert psnr_y(estimates[0].gt, truths[3], estimates[0].confidence >= 128) > 38


def test_rain_free_frames_are_found_and_preferred():
    frames, truths, _, _ = sequence(count=24, dry=range(6))
    options = EstimateOptions(window=12, stride=4)
    dry = find_rain_free(frames, options)
    assert dry == (0, 1, 2, 3, 4, 5)
    estimates = estimate_window(frames, Window(0, 11, (2, 9)), dry, options)
    assert estimates[0].skipped == "rain-free"
    assert estimates[1].method == "rain-free" and estimates[1].window == (0, 5)
    trusted = estimates[1].confidence >= 128
    assert psnr_y(estimates[1].gt, truths[9], trusted) > 40
    without = estimate_window(
        frames, Window(0, 11, (9,)), dry, EstimateOptions(window=12, prefer_rain_free=False)
    )
    assert without[0].method == "percentile"


def test_rain_free_frames_coded_alike_are_trusted_no_more_than_time():
    # A codec that skips a static scene's blocks freezes one coding error into every dry
    # frame: their spread is none, and the rain-free background keeps that error. Rain
    # makes the codec code afresh, and the rainy frames' spread shows its error.
    frames, truths, _, _ = sequence(count=24, shake=False, dry=range(6))
    rng = np.random.default_rng(7)
    coding = rng.normal(0, 2, (HEIGHT, WIDTH, 1))
    frames.frames[:6] = np.clip(np.rint(truths[0] + coding), 0, 255).astype(np.uint8)
    fresh = rng.normal(0, 2, (18, HEIGHT, WIDTH, 1))
    frames.frames[6:] = np.clip(np.rint(frames.frames[6:] + fresh), 0, 255).astype(np.uint8)
    options = EstimateOptions(window=12, stride=4)
    (estimate,) = estimate_window(frames, Window(6, 17, (9,)), tuple(range(6)), options)
    assert estimate.method == "rain-free"
    measured = psnr_y(estimate.gt, truths[9], estimate.confidence >= 128)
    # The dry frames' spread alone predicted 54.2 dB here, 11 dB above the 43.3 measured.
    assert measured - 2 < estimate.gt_psnr_estimate < measured + 4


def test_a_sequence_all_in_the_rain_has_no_rain_free_frames():
    frames, _, _, _ = sequence(count=12)
    assert find_rain_free(frames, EstimateOptions(window=12)) == ()


def test_mist_without_streaks_is_not_taken_for_dry():
    frames, _, _, _ = sequence(count=16, dry=range(5), veil=True)
    assert find_rain_free(frames, EstimateOptions(window=16)) == (0, 1, 2, 3, 4)
    frames, _, _, _ = sequence(count=16, veil=True)
    assert find_rain_free(frames, EstimateOptions(window=16)) == ()


@pytest.mark.parametrize("method", METHODS)
def test_every_method_gives_a_background(method):
    frames, truths, _, _ = sequence(count=15, shake=False)
    options = EstimateOptions(method=method, window=15, stride=7)
    for estimate in estimate_pairs(frames, options):
        assert estimate.method == method
        trusted = estimate.confidence >= 128
        floor = 30 if method == "median" else 38
        assert psnr_y(estimate.gt, truths[estimate.index], trusted) > floor


def test_four_frames_are_enough_with_less_confidence():
    frames, _, _, _ = sequence(count=4, shake=False)
    few = list(estimate_pairs(frames, EstimateOptions()))
    assert [e.index for e in few] == [1] and few[0].skipped is None
    many = next(iter(estimate_pairs(sequence(count=21, shake=False)[0], EstimateOptions())))
    assert few[0].confidence.mean() < many.confidence.mean()
    assert list(estimate_pairs(ArrayFrames(frames.frames[:3]), EstimateOptions())) == []


def test_a_frame_is_trusted_by_the_other_frames_not_by_its_own_lack_of_rain():
    # Streaks on every frame: where the target itself is rain-free, counting it would
    # make those pixels the confident ones, and a do-nothing derainer would score as if
    # it had derained. Counting the others only, the scored pixels do not depend on
    # where the target has rain, so the target scores as it does against the truth.
    frames, truths, _, _ = sequence(count=6, shake=False, seed=3)
    (estimate,) = list(estimate_pairs(frames, EstimateOptions()))
    trusted = estimate.confidence >= 128
    rainy = frames.frames[estimate.index]
    against_gt = psnr_y(rainy, estimate.gt, trusted)
    against_truth = psnr_y(rainy, truths[estimate.index], trusted)
    assert abs(against_gt - against_truth) < 0.5
    # And where the target has rain it is scored as much as elsewhere.
    streaked = rainy.astype(int).sum(axis=2) > truths[estimate.index].astype(int).sum(axis=2) + 30
    assert trusted[streaked].mean() > 0.5 * trusted.mean()


def test_a_frame_too_little_of_which_is_confident_is_not_paired():
    frames, _, _, _ = sequence(count=4, shake=False)
    (estimate,) = list(estimate_pairs(frames, EstimateOptions(min_confident=1.0)))
    assert estimate.gt is None and "confident, less than min_confident 100%" in estimate.skipped


def test_the_same_frames_give_the_same_bytes():
    frames, _, _, _ = sequence(count=11, square=10)
    options = EstimateOptions(window=11, stride=5)
    first, second = (list(estimate_pairs(frames, options)) for _ in range(2))
    for a, b in zip(first, second, strict=True):
        assert a.gt.tobytes() == b.gt.tobytes()
        assert a.confidence.tobytes() == b.confidence.tobytes()
        assert (a.shift, a.gt_psnr_estimate) == (b.shift, b.gt_psnr_estimate)


@pytest.mark.parametrize("count", [4, 5, 30, 31, 32, 100, 1000])
@pytest.mark.parametrize("stride", [1, 8, 40])
def test_windows_pair_every_stride_th_frame_once(count, stride):
    options = EstimateOptions(stride=stride)
    windows = plan_windows(count, options)
    targets = [t for w in windows for t in w.targets]
    assert targets == sorted(set(targets))
    assert all(b - a == stride for a, b in itertools.pairwise(targets))
    assert targets[0] <= stride and count - 1 - targets[-1] <= stride
    for window in windows:
        assert 0 <= window.start <= min(window.targets)
        assert max(window.targets) <= window.end < count
        assert window.end - window.start + 1 == min(options.window, count)


def test_windows_of_too_short_sequences_and_bad_options():
    assert plan_windows(3, EstimateOptions()) == []
    assert plan_windows(5, EstimateOptions()) == [Window(0, 4, (2,))]
    for bad in (
        EstimateOptions(method="mean"),
        EstimateOptions(window=2),
        EstimateOptions(stride=0),
        EstimateOptions(percentile=120),
        EstimateOptions(max_moving=0),
    ):
        with pytest.raises(ValueError):
            plan_windows(40, bad)


def test_an_option_out_of_range_is_named_alone_with_its_value():
    # --max-moving 0 was refused as "max_shift must be ≥ 0 and max_moving in (0, 1]",
    # naming an option not given; a max_shift of NaN passed.
    for bad, said in (
        (EstimateOptions(max_moving=0), r"^max_moving must be in \(0, 1\], not 0$"),
        (EstimateOptions(max_shift=float("nan")), r"^max_shift must be ≥ 0, not nan$"),
        (EstimateOptions(max_shift=-1), r"^max_shift must be ≥ 0, not -1$"),
    ):
        with pytest.raises(ValueError, match=said):
            check_options(bad)


@pytest.mark.parametrize("recipe", ["drizzle", "streak", "storm", "fog-like"])
def test_dry_frames_before_the_rain_are_found_through_the_codec(recipe):
    # Rendered rain over a generated street, through H.264: the dry frames were missed
    # when a low percentile of the frames (biased dark by the noise) was their base and
    # a σ pooled over a chunk half dry set the threshold. B-frames just before the rain
    # are predicted partly from the first rainy frame, and may carry some of its rain.
    pytest.importorskip("av")
    still = render_scene(192, 128, 1)
    for lead in (6, 0):
        video = render_rain_video(still, recipe, 20, seed=1, rain_free_lead=lead)
        frames = ArrayFrames(decode_video(encode_h264(video.frames, crf=23)))
        found = set(find_rain_free(frames, EstimateOptions()))
        assert found <= set(range(lead)), "a rainy frame taken for dry"
        assert found >= set(range(lead - 2)), f"dry frames missed: {sorted(found)}"


def test_a_small_rainy_video_has_no_dry_frames(tmp_path):
    # The demo's tripod video at 128 px: its streaks score low and unevenly, and two
    # rainy frames fell under the threshold by chance, far inside the rainy frames' own
    # spread, not below it.
    pytest.importorskip("av")
    video = write_tripod_video(tmp_path / "tripod.mp4", 128)
    frames = ArrayFrames(decode_video(video.read_bytes()))
    assert find_rain_free(frames, EstimateOptions()) == ()


def test_frames_smaller_than_a_shift_leave_a_pixel_to_judge():
    # Noise, not a scene: phase correlation finds shifts as wide as the frames, which
    # once left no pixel inside the border the shifts uncover (an IndexError). Which
    # frames noise passes for dry is of no matter here.
    rng = np.random.default_rng(0)
    for height, width in ((2, 2), (8, 8), (4, 64)):
        frames = ArrayFrames(rng.integers(0, 256, (12, height, width, 3), dtype=np.uint8))
        assert set(find_rain_free(frames, EstimateOptions())) <= set(range(12))


def test_dry_frames_too_few_for_a_ground_truth_are_still_no_targets():
    frames, _, _, _ = sequence(count=16, dry=range(2))
    options = EstimateOptions(window=16, stride=7)
    assert find_rain_free(frames, options) == (0, 1)
    for prefer in (True, False):
        chosen = EstimateOptions(window=16, stride=7, prefer_rain_free=prefer)
        first, *others = estimate_pairs(frames, chosen)
        assert (first.index, first.skipped) == (0, "rain-free")
        assert others and all(e.skipped is None and e.method == "percentile" for e in others)


def test_lowrank_predicts_its_own_quality_not_the_percentiles():
    frames, truths, _, _ = sequence(count=15, shake=False)
    found = {}
    for method in ("percentile", "lowrank"):
        options = EstimateOptions(method=method, window=15, stride=7)
        estimate = list(estimate_pairs(frames, options))[1]
        true = psnr_y(estimate.gt, truths[estimate.index], estimate.confidence >= 128)
        found[method] = (estimate.gt_psnr_estimate, true)
    (percentile, _), (lowrank, true) = found["percentile"], found["lowrank"]
    assert lowrank < percentile and abs(lowrank - true) < 1.5


def test_a_panning_camera_is_reported_as_not_registered():
    # The scene slides 6 px a frame: beyond max_shift from the window's middle, and a
    # street's repeating facades match well enough at a wrong shift to pass a share of
    # the window's typical match, which is itself low.
    wide = render_scene(192 + 6 * 20, 128, 3)
    pan = ArrayFrames([wide[:, 6 * i : 6 * i + 192] for i in range(20)])
    for estimate in estimate_pairs(pan, EstimateOptions(window=20, stride=6)):
        assert "frames registered (a pan, or a shake beyond max_shift" in estimate.skipped


def exposed(frames: ArrayFrames, gains: np.ndarray) -> ArrayFrames:
    """The frames, rain and noise included, each under its own exposure gain."""
    lit = frames.frames.astype(np.float32) * gains[:, None, None, None].astype(np.float32)
    return ArrayFrames(np.clip(np.rint(lit), 0, 255).astype(np.uint8))


def test_a_flickering_exposure_is_taken_out_and_given_back_to_each_frame():
    # Mains light at 25 fps, or auto-exposure: each frame ±4 % brighter or darker. A low
    # statistic over the raw samples picks the darker frames, and one background cannot
    # be at every frame's exposure.
    frames, truths, _, _ = sequence()
    gains = 1 + np.random.default_rng(5).uniform(-0.04, 0.04, len(truths))
    estimates = list(estimate_pairs(exposed(frames, gains), EstimateOptions(window=21, stride=5)))
    middle = np.median(gains)
    for estimate in estimates:
        truth = np.clip(np.rint(truths[estimate.index] * gains[estimate.index]), 0, 255)
        assert psnr_y(estimate.gt, truth.astype(np.uint8), estimate.confidence >= 128) > 40
        assert abs(estimate.exposure - gains[estimate.index] / middle) < 0.005


def test_a_steadily_lit_window_keeps_its_frames_as_they_are():
    # Streaks new every frame move each frame's fitted gain a little; scaled by that,
    # the background of a steady video would be worse, not better.
    frames, _, _, _ = sequence()
    estimates = list(estimate_pairs(frames, EstimateOptions(window=21, stride=5)))
    assert [e.exposure for e in estimates] == [1.0] * 5


def test_dry_frames_under_other_light_are_brought_to_the_rains():
    frames, truths, _, _ = sequence(count=24, dry=range(6))
    gains = np.where(np.arange(24) < 6, 1.0, 1.06)  # the rain darkened the sky: AE opened up
    options = EstimateOptions(window=12, stride=4)
    (estimate,) = estimate_window(
        exposed(frames, gains), Window(0, 11, (9,)), tuple(range(6)), options
    )
    assert estimate.method == "rain-free"
    truth = np.clip(np.rint(truths[9] * 1.06), 0, 255).astype(np.uint8)
    assert psnr_y(estimate.gt, truth, estimate.confidence >= 128) > 40
    # A veil is a gain with an offset: the dry frames' clear scene is kept as it is.
    frames, truths, _, _ = sequence(count=16, dry=range(5), veil=True)
    (estimate,) = estimate_window(frames, Window(0, 15, (9,)), (0, 1, 2, 3, 4), options)
    assert estimate.exposure == 1
    assert psnr_y(estimate.gt, truths[9], estimate.confidence >= 128) > 40
