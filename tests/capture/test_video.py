"""Video captures: sniffed, probed, read frame by frame and stripped of location. The
videos are encoded here with PyAV (64×48, a dozen frames), each frame a flat grey whose
level says its index, so a frame read back tells which one it is."""

import io
import struct
from datetime import datetime
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from rainbench.capture.formats import FORMATS, sniff
from rainbench.capture.gps import has_gps, strip_gps
from rainbench.capture.location import location_hint
from rainbench.capture.reject import CaptureRejected, Reason
from rainbench.capture.source import open_regular
from rainbench.capture.video import VideoFrames, location_edits, probe_video, strip_location

av = pytest.importorskip("av", reason="videos need rainbench[video]")

WIDTH, HEIGHT = 64, 48
ZURICH = "+47.3754+008.5451/"


def level(index: int) -> int:
    return 10 + index * 20 % 240


def encode(
    container: str = "mp4",
    codec: str = "libx264",
    frames: int = 12,
    metadata: dict[str, str] | None = None,
    options: dict[str, str] | None = None,
    rotation: int | None = None,
    gop: int = 4,
) -> bytes:
    """A video whose frame i is grey at `level(i)`, with a white corner top left."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container, options=options or {}) as output:
        output.metadata.update(metadata or {})
        stream = output.add_stream(codec, rate=24)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"g": str(gop)}
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for index in range(frames):
            picture = np.full((HEIGHT, WIDTH, 3), level(index), np.uint8)
            picture[:8, :8] = 255
            output.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        output.mux(stream.encode())
    return buffer.getvalue()


def levels(frames: np.ndarray) -> list[int]:
    return [round(float(frame[24:, 24:].mean())) for frame in frames]


def test_sniff_tells_videos_from_heic():
    assert sniff(encode("mp4"), "clip.mp4") is FORMATS["mp4"]
    assert sniff(encode("mov"), "clip.bin") is FORMATS["mov"]
    assert sniff(encode("matroska", "mpeg4"), "clip.mkv") is FORMATS["mkv"]
    assert sniff(b"\0\0\0\x18ftypheic\0\0\0\0mif1heic", "x.mp4") is FORMATS["heic"]
    assert sniff(b"\0\0\0\x18ftypavif\0\0\0\0avifmif1", "x.mp4") is None
    assert FORMATS["mp4"].video and not FORMATS["heic"].video


def test_probe_reads_the_stream_and_the_camera():
    data = encode(
        "mov",
        metadata={
            "make": "Apple",
            "model": "iPhone 15",
            "creation_time": "2024-05-01T10:00:07Z",
        },
    )
    info = probe_video(data)
    assert (info.codec, info.frames, info.frame_rate) == ("h264", 12, 24.0)
    assert info.duration_s == pytest.approx(0.5)
    assert (info.width, info.height, info.rotation) == (WIDTH, HEIGHT, 0)
    assert (info.camera_make, info.camera_model) == ("Apple", "iPhone 15")
    assert info.captured_at == datetime(2024, 5, 1, 10, 0, 7)
    assert (info.gps_lat, info.gps_lon) == (None, None)
    assert info.preview.size == (WIDTH, HEIGHT)


@pytest.mark.parametrize(("container", "codec"), [("mp4", "libx264"), ("matroska", "mpeg4")])
def test_frames_are_addressed_exactly_by_index(container, codec):
    with VideoFrames(encode(container, codec)) as video:
        assert len(video) == 12
        window = video.read([5, 6, 7])
        assert window.shape == (3, HEIGHT, WIDTH, 3) and window.dtype == np.uint8
        assert levels(window) == pytest.approx([level(i) for i in (5, 6, 7)], abs=6)
        # Any order, repeats, and going back after reading ahead.
        assert levels(video.read([11, 0, 3, 0])) == pytest.approx(
            [level(i) for i in (11, 0, 3, 0)], abs=6
        )


def test_a_window_deep_in_a_long_video_decodes_one_group_of_pictures():
    video = VideoFrames(encode(frames=240, gop=24))
    decoded = 0
    frames = video._frames

    def counting():
        nonlocal decoded
        for frame in frames():
            decoded += 1
            yield frame

    video._frames = counting
    window = video.read(range(200, 230))
    video.close()
    assert levels(window) == pytest.approx([level(i) for i in range(200, 230)], abs=3)
    assert decoded < 30 + 2 * 24  # from the keyframe before 200, not from frame 0


def test_frames_read_from_a_file_object(tmp_path):
    path = tmp_path / "clip.mkv"
    path.write_bytes(encode("matroska", "mpeg4"))
    with open(path, "rb") as handle, VideoFrames(handle) as video:
        assert levels(video.read([9])) == pytest.approx([level(9)], abs=3)


def test_out_of_range_frames_are_refused():
    with VideoFrames(encode()) as video, pytest.raises(IndexError, match="frame 12 is out"):
        video.read([3, 12])


def test_rotation_turns_frames_upright():
    data = encode(rotation=90)  # the display matrix turns it a quarter counterclockwise
    info = probe_video(data)
    assert (info.width, info.height, info.rotation) == (HEIGHT, WIDTH, 270)
    with VideoFrames(data) as video:
        frame = video.read([2])[0]
    assert frame.shape == (WIDTH, HEIGHT, 3)
    assert frame[-8:, :8].mean() > 240  # the white corner: top left → bottom left


@pytest.mark.parametrize(
    ("container", "codec", "options", "where"),
    [
        ("mov", "libx264", {}, b"\xa9xyz"),
        ("mp4", "libx264", {}, b"loci"),
        ("mp4", "libx264", {"movflags": "use_metadata_tags"}, b"keys"),
        ("mov", "libx264", {"movflags": "use_metadata_tags"}, b"keys"),
        ("matroska", "mpeg4", {}, b"LOCATION"),
    ],
)
def test_location_is_removed_in_place(container, codec, options, where):
    metadata = {
        "location": ZURICH,
        "com.apple.quicktime.location.ISO6709": ZURICH,
        "com.apple.quicktime.make": "Apple",
        "make": "Apple",
    }
    data = encode(container, codec, metadata=metadata, options=options)
    assert where in data and has_gps(data, sniff(data, "x"))
    fmt = sniff(data, "x")
    stripped = strip_gps(data, fmt)
    assert len(stripped) == len(data)
    assert location_hint(stripped) is None
    assert not has_gps(stripped, fmt)
    assert probe_video(stripped, keep_gps=True).gps_lat is None
    with VideoFrames(data) as before, VideoFrames(stripped) as after:
        assert np.array_equal(before.read(range(12)), after.read(range(12)))
        assert not any("location" in name for name, value in after.tags.items() if value)
        if options:  # Apple's other keys stay readable
            assert after.tags.get("com.apple.quicktime.make") == "Apple"


def test_a_video_without_location_is_kept_as_it_is():
    data = encode("mov", metadata={"make": "Apple"})
    assert strip_location(data, FORMATS["mov"]) is data


def test_keep_gps_reads_the_iso6709_point():
    data = encode("mov", metadata={"location": "+4722.5-00832.7+420/"})
    info = probe_video(data, keep_gps=True)
    assert info.gps_lat == pytest.approx(47.375)
    assert info.gps_lon == pytest.approx(-8.545)


def test_a_location_left_where_removal_does_not_look_is_refused():
    data = encode("mp4")
    with_box = _append_to_moov(data, _box(b"Xtra", f"where: {ZURICH}".encode()))
    with pytest.raises(CaptureRejected) as refused:
        strip_location(with_box, FORMATS["mp4"])
    assert refused.value.reason == Reason.GPS_UNCERTAIN
    assert "+47.3754+008.5451" in refused.value.message


def test_user_data_naming_a_location_is_neutralised():
    data = encode("mp4")
    udta = _box(b"udta", _box(b"\xa9cmt", b"latitude 47.3754"))
    stripped = strip_location(_append_to_moov(data, udta), FORMATS["mp4"])
    assert location_hint(stripped) is None and b"\xa9cmt" not in stripped


@pytest.mark.parametrize("cut", [0.5, 0.97])
def test_a_cut_video_is_refused_as_truncated(cut):
    data = encode()
    with pytest.raises(CaptureRejected) as refused:
        probe_video(data[: int(len(data) * cut)])
    assert refused.value.reason == Reason.TRUNCATED
    assert "\n" not in refused.value.message


def test_a_damaged_video_is_refused_as_corrupt():
    data = encode()
    damaged = data[:32] + bytes(len(data) - 32)
    with pytest.raises(CaptureRejected) as refused:
        probe_video(damaged)
    assert refused.value.reason == Reason.CORRUPT
    assert "\n" not in refused.value.message


def test_a_stream_whose_codec_was_overwritten_is_refused_as_corrupt():
    # As a damaged shard member reads: the container opens, its stream names no codec.
    unknown = encode().replace(b"avc1", b"zzzz")
    with pytest.raises(CaptureRejected) as refused:
        VideoFrames(unknown)
    assert refused.value.reason == Reason.CORRUPT


def test_a_file_without_a_video_stream_is_refused():
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="matroska") as output:
        stream = output.add_stream("pcm_s16le", rate=8000)
        samples = np.zeros((1, 800), np.int16)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = 8000
        output.mux(stream.encode(frame))
        output.mux(stream.encode())
    with pytest.raises(CaptureRejected) as refused:
        probe_video(buffer.getvalue())
    assert refused.value.reason == Reason.NOT_AN_IMAGE


def test_too_many_pixels_are_refused_before_decoding():
    with pytest.raises(CaptureRejected) as refused:
        probe_video(encode(), max_pixels=WIDTH * HEIGHT - 1)
    assert refused.value.reason == Reason.TOO_MANY_PIXELS


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def _append_to_moov(data: bytes, box: bytes) -> bytes:
    """`data` with `box` as moov's last child; moov must be the file's last box (PyAV
    writes it after the media data), so no offset moves."""
    at = data.rindex(b"moov") - 4
    (size,) = struct.unpack_from(">I", data, at)
    assert at + size == len(data)
    return data[:at] + struct.pack(">I", size + len(box)) + data[at + 4 :] + box


@pytest.mark.parametrize(("container", "codec"), [("mov", "mov_text"), ("matroska", "subrip")])
def test_a_subtitle_track_with_positions_is_zeroed(container, codec):
    """A drone writes its position frame by frame as subtitles, in the media data."""
    text = b"GPS(8.5451,47.3754,420)"
    sample = len(text).to_bytes(2, "big") + text if codec == "mov_text" else text
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as output:
        video = output.add_stream("libx264", rate=24)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        subtitles = output.add_mux_stream(codec)
        subtitles.time_base = Fraction(1, 1000)
        for _ in range(3):
            picture = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
            output.mux(video.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        packet = av.Packet(sample)
        packet.stream, packet.pts, packet.dts, packet.duration = subtitles, 0, 0, 100
        packet.time_base = subtitles.time_base
        output.mux(packet)
        output.mux(video.encode())
    data = buffer.getvalue()
    stripped = strip_location(data, sniff(data, "x"))
    assert len(stripped) == len(data) and text in data and b"47.3754" not in stripped
    assert probe_video(stripped).frames == 3


@pytest.mark.parametrize(
    ("container", "codec", "options"),
    [
        ("mov", "libx264", {}),
        ("mp4", "libx264", {"movflags": "use_metadata_tags"}),
        ("mp4", "libx264", {"movflags": "frag_keyframe+empty_moov"}),
        ("matroska", "mpeg4", {}),
    ],
)
def test_location_is_removed_from_an_open_file_as_from_its_bytes(
    tmp_path, container, codec, options
):
    """Ingest walks a video's file by its headers and never reads it whole: the edits it
    finds there make exactly the bytes `strip_location` makes of the whole file."""
    data = encode(container, codec, metadata={"location": ZURICH}, options=options)
    fmt = sniff(data, "x")
    (tmp_path / "clip").write_bytes(data)
    with open_regular(tmp_path / "clip") as capture:
        edits = location_edits(capture, fmt)
        assert edits and capture.edited(edits).read_all() == strip_location(data, fmt)


@pytest.mark.parametrize("damage", ["location left", "cut"])
def test_an_open_file_is_refused_as_its_bytes_are(tmp_path, damage):
    data = encode("mp4")
    if damage == "cut":
        data = data[: len(data) // 2]
    else:
        data = _append_to_moov(data, _box(b"Xtra", f"where: {ZURICH}".encode()))
    (tmp_path / "clip").write_bytes(data)
    with pytest.raises(CaptureRejected) as from_bytes:
        strip_location(data, FORMATS["mp4"])
    with open_regular(tmp_path / "clip") as capture, pytest.raises(CaptureRejected) as from_file:
        location_edits(capture, FORMATS["mp4"])
    assert (from_file.value.reason, from_file.value.message) == (
        from_bytes.value.reason,
        from_bytes.value.message,
    )


def test_a_frame_size_that_changes_mid_stream_is_named():
    """The decoder refuses the first frame of the new size with "invalid data"; the
    refusal says what is wrong instead."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="matroska") as output:
        stream = output.add_stream("mjpeg", rate=24)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuvj420p"
        for index in range(12):
            size = (WIDTH, HEIGHT) if index < 6 else (WIDTH // 2, HEIGHT // 2)
            jpeg = io.BytesIO()
            Image.new("RGB", size, (level(index),) * 3).save(jpeg, "JPEG")
            packet = av.Packet(jpeg.getvalue())
            packet.stream, packet.pts, packet.dts = stream, index, index
            packet.time_base = Fraction(1, 24)
            output.mux(packet)
    with pytest.raises(CaptureRejected) as refused:
        probe_video(buffer.getvalue())
    assert refused.value.reason == Reason.CORRUPT
    assert refused.value.message == "the frame size changes at frame 6: 64×48 → 32×24"
