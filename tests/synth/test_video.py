"""Synthetic rain videos: the truth is the shaken still without object or rain, the
object moves, rain-free frames hold no rain, and the H.264 bytes decode back."""

import io

import numpy as np
import pytest
from scipy import ndimage

from rainbench.metrics.fullref import psnr_y
from rainbench.synth.video import decode_video, encode_h264, render_rain_video

HEIGHT, WIDTH = 64, 96


def still() -> np.ndarray:
    rng = np.random.default_rng(3)
    texture = ndimage.gaussian_filter(rng.normal(0, 1, (HEIGHT, WIDTH, 3)), (2, 2, 0))
    return np.clip(110 + 400 * texture, 0, 255).astype(np.uint8)


def test_frames_truths_objects_and_shifts():
    video = render_rain_video(still(), "streak", 8, seed=1, shake=1.5, rain_free_lead=2)
    assert len(video.frames) == len(video.backgrounds) == len(video.objects) == 8
    assert all(f.shape == (HEIGHT, WIDTH, 3) and f.dtype == np.uint8 for f in video.frames)
    assert video.rain_free == (0, 1)
    assert video.shifts[0] == (0.0, 0.0)
    assert all(max(abs(v) for v in shift) <= 1.5 for shift in video.shifts)
    # The truth is the still as shaken: the same whatever the object and the rain.
    bare = render_rain_video(still(), "drizzle", 8, seed=1, shake=1.5, moving_object=False)
    for truth, other in zip(video.backgrounds, bare.backgrounds, strict=True):
        assert np.array_equal(truth, other)
    assert np.array_equal(video.backgrounds[0], still())
    # The object crosses: present, and somewhere else each frame.
    assert all(mask.any() for mask in video.objects[1:-1])
    centres = [np.argwhere(mask)[:, 1].mean() for mask in video.objects[1:-1]]
    assert len(set(np.sign(np.diff(centres)))) == 1
    assert not any(mask.any() for mask in bare.objects)
    # Rain only where asked: a dry frame is its truth but for object and noise.
    outside = ~video.objects[1]
    assert psnr_y(video.frames[1], video.backgrounds[1], outside) > 45
    assert psnr_y(video.frames[5], video.backgrounds[5], ~video.objects[5]) < 30


def test_the_veiled_truth_is_the_frame_without_drops():
    # Without object and noise, a storm frame is its veiled truth plus the drops' light:
    # never darker, brighter somewhere, and the veil itself far from the clear truth.
    storm = render_rain_video(
        still(), "storm", 4, seed=5, moving_object=False, noise=0, rain_free_lead=1
    )
    assert len(storm.veiled) == 4
    assert np.array_equal(storm.veiled[0], storm.backgrounds[0])  # a dry frame has no veil
    rainy = zip(storm.frames[1:], storm.veiled[1:], storm.backgrounds[1:], strict=True)
    for frame, veiled, truth in rainy:
        assert (frame.astype(int) >= veiled).all() and (frame.astype(int) > veiled).any()
        assert psnr_y(veiled, truth) < 30
    # Rain with no veil or blur leaves the truth as it is.
    drizzle = render_rain_video(still(), "drizzle", 3, seed=5)
    assert all(
        np.array_equal(v, t) for v, t in zip(drizzle.veiled, drizzle.backgrounds, strict=True)
    )


def test_the_same_seed_gives_the_same_video():
    first = render_rain_video(still(), "storm", 3, seed=4, night=True)
    second = render_rain_video(still(), "storm", 3, seed=4, night=True)
    assert all(np.array_equal(a, b) for a, b in zip(first.frames, second.frames, strict=True))
    assert first.params == second.params
    # Night is darker than day.
    day = render_rain_video(still(), "storm", 1, seed=4)
    assert first.backgrounds[0].mean() < 0.5 * day.backgrounds[0].mean()


def test_h264_round_trip(tmp_path):
    video = render_rain_video(still(), "drizzle", 5, seed=2)
    path = tmp_path / "rain.mp4"
    data = encode_h264(video.frames, path, fps=25, crf=18)
    assert path.read_bytes() == data
    buffer = io.BytesIO()
    assert buffer.getvalue() == b""
    assert encode_h264(video.frames, buffer, crf=28) == buffer.getvalue()
    assert len(buffer.getvalue()) < len(data)  # a higher CRF, fewer bytes
    decoded = decode_video(data)
    assert len(decoded) == 5
    for frame, original in zip(decoded, video.frames, strict=True):
        assert frame.shape == (HEIGHT, WIDTH, 3) and frame.dtype == np.uint8
        assert psnr_y(frame, original) > 32


def test_the_same_frames_encode_to_the_same_bytes_whatever_came_before():
    # 800 px wide, as the demo's video: without x264's cpu-independent, each of four
    # encodes in one process gave other bytes, as allocations in between moved memory.
    rng = np.random.default_rng(3)
    texture = ndimage.gaussian_filter(rng.normal(0, 1, (128, 800, 3)), (2, 2, 0))
    wide = np.clip(110 + 400 * texture, 0, 255).astype(np.uint8)
    frames = render_rain_video(wide, "storm", 24, seed=1).frames
    encoded = set()
    for attempt in range(4):
        clutter = [np.ones(100_000 * (n + attempt + 1), np.uint8) for n in range(20)]
        encoded.add(encode_h264(frames))
        del clutter[::3]
    assert len(encoded) == 1


def test_refusals():
    with pytest.raises(ValueError, match="even"):
        encode_h264([np.zeros((63, 96, 3), np.uint8)])
    with pytest.raises(ValueError, match="version-1"):
        render_rain_video(still(), "streak-v2", 3, seed=0)
    with pytest.raises(ValueError, match="lead and tail"):
        render_rain_video(still(), "streak", 3, seed=0, rain_free_lead=2, rain_free_tail=2)
