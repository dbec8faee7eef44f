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

from rainbench.capture import video as video_module
from rainbench.capture.formats import FORMATS, sniff
from rainbench.capture.gps import has_gps, strip_gps
from rainbench.capture.location import location_hint
from rainbench.capture.reject import CaptureRejected, Reason
from rainbench.capture.source import CaptureFile, open_regular
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


def _with_display_matrix(data: bytes, matrix: list[int]) -> bytes:
    """The mp4 `data` with its track header's display matrix (nine 32-bit fixed-point
    numbers) replaced by `matrix`."""
    at = data.find(b"tkhd")
    version = data[at + 4]
    # version and flags, two times, track id, reserved, duration, reserved, layer,
    # alternate group, volume, reserved: then the matrix
    at += 4 + 4 + (8 if version == 0 else 16) + 4 + 4 + (4 if version == 0 else 8) + 8 + 8
    patched = bytearray(data)
    struct.pack_into(">9i", patched, at, *matrix)
    return bytes(patched)


@pytest.mark.parametrize(
    "matrix",
    [
        [0] * 9,  # degenerate: PyAV reads its angle as −2³¹
        [32768, 56756, 0, -56756, 32768, 0, 0, 0, 1 << 30],  # 60°
    ],
)
def test_a_display_matrix_of_no_quarter_turn_leaves_the_frames_as_decoded(matrix):
    data = _with_display_matrix(encode(), matrix)
    info = probe_video(data)
    assert (info.width, info.height, info.rotation) == (WIDTH, HEIGHT, 0)
    with VideoFrames(data) as video:
        frame = video.read([2])[0]
    assert frame.shape == (HEIGHT, WIDTH, 3)
    assert frame[:8, :8].mean() > 240  # the white corner where it was encoded


ONE = 1 << 16  # 1.0 in the display matrix's 16.16 fixed point


@pytest.mark.parametrize(
    ("matrix", "orientation", "rotation", "corner"),
    [
        ([-ONE, 0, 0, 0, ONE, 0, 0, 0, 1 << 30], 2, 0, "top right"),  # mirrored left ↔ right
        ([ONE, 0, 0, 0, -ONE, 0, 0, 0, 1 << 30], 4, 180, "bottom left"),  # top ↔ bottom
        ([-ONE, 0, 0, 0, -ONE, 0, 0, 0, 1 << 30], 3, 180, "bottom right"),  # both: a half turn
        ([0, ONE, 0, ONE, 0, 0, 0, 0, 1 << 30], 5, 270, "top left"),  # shown (x, y) = (y, x)
        ([0, -ONE, 0, -ONE, 0, 0, 0, 0, 1 << 30], 7, 90, "bottom right"),  # (−y, −x)
    ],
)
def test_a_mirroring_display_matrix_mirrors_the_frames(matrix, orientation, rotation, corner):
    data = _with_display_matrix(encode(), matrix)
    info = probe_video(data)
    swapped = orientation >= 5
    assert (info.width, info.height) == ((HEIGHT, WIDTH) if swapped else (WIDTH, HEIGHT))
    assert (info.orientation, info.rotation) == (orientation, rotation)
    with VideoFrames(data) as video:
        frame = video.read([2])[0]
    rows = slice(None, 8) if corner.startswith("top") else slice(-8, None)
    columns = slice(None, 8) if corner.endswith("left") else slice(-8, None)
    assert frame[rows, columns].mean() > 240  # the white corner, encoded top left


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


@pytest.mark.parametrize("container", ["mp4", "mov"])
def test_place_names_in_quicktime_xmp_are_blanked(container):
    # QuickTime keeps XMP in moov/udta/XMP_: a city there names the place, with no GPS
    # word for the search of what is left to find.
    xmp = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
        b'xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/" photoshop:City="Delft" '
        b'photoshop:Credit="rainbench"/></rdf:RDF></x:xmpmeta>'
    )
    data = _append_to_moov(encode(container), _box(b"udta", _box(b"XMP_", xmp)))
    fmt = sniff(data, f"x.{container}")

    stripped = strip_location(data, fmt)

    assert b"Delft" not in stripped and b'photoshop:Credit="rainbench"' in stripped
    assert len(stripped) == len(data)


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


def test_a_reader_of_frames_keeps_the_readers_cap_rainbench_max_pixels(monkeypatch):
    # Readers of a dataset's videos (pairs, verify, label, tag) give no cap of their own.
    video = encode()
    monkeypatch.setenv("RAINBENCH_MAX_PIXELS", str(WIDTH * HEIGHT - 1))
    for read in (VideoFrames, video_module.middle_frame):
        with pytest.raises(CaptureRejected) as refused:
            read(video)
        assert refused.value.fact == (
            "64×48 = 3072 pixels exceeds the cap of 3071 pixels readers keep (RAINBENCH_MAX_PIXELS)"
        )
    monkeypatch.setenv("RAINBENCH_MAX_PIXELS", str(WIDTH * HEIGHT))
    assert video_module.middle_frame(video).size == (WIDTH, HEIGHT)
    monkeypatch.delenv("RAINBENCH_MAX_PIXELS")
    with VideoFrames(video) as frames:
        assert len(frames) == 12


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def _append_to_moov(data: bytes, box: bytes) -> bytes:
    """`data` with `box` as moov's last child; moov must be the file's last box (PyAV
    writes it after the media data), so no offset moves."""
    at = data.rindex(b"moov") - 4
    (size,) = struct.unpack_from(">I", data, at)
    assert at + size == len(data)
    return data[:at] + struct.pack(">I", size + len(box)) + data[at + 4 :] + box


POSITIONS = b"GPS(8.5451,47.3754,420)"


def _with_subtitles(container: str, codec: str, text: bytes = POSITIONS) -> bytes:
    """Three frames and a subtitle track whose one sample gives a drone's position."""
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
    return buffer.getvalue()


@pytest.mark.parametrize(("container", "codec"), [("mov", "mov_text"), ("matroska", "subrip")])
@pytest.mark.parametrize(
    "text", [POSITIONS, b"[rel_alt: 1.300 abs_alt: 420.3] [lat: 47.375400] [lon: 8.545100]"]
)
def test_a_subtitle_track_with_positions_is_zeroed(container, codec, text):
    """A drone writes its position frame by frame as subtitles, in the media data: DJI's
    as GPS(…) or as [lat: …] [lon: …]."""
    data = _with_subtitles(container, codec, text)
    stripped = strip_location(data, sniff(data, "x"))
    assert len(stripped) == len(data) and text in data and b"47.3754" not in stripped
    assert probe_video(stripped).frames == 3


def _typed_as_video(data: bytearray) -> None:
    """The subtitle track's TrackType (after its CodecID) made 1, video: FFmpeg then
    drops the track and demuxes none of its samples."""
    data[data.index(b"\x83\x81\x11", data.index(b"S_TEXT/UTF8")) + 2] = 1


def _timing_damaged(data: bytearray) -> None:
    """The text track's time-to-sample box given an impossible size: FFmpeg reads no
    sample of the track."""
    stts = data.index(b"stts", data.index(b"text"))
    data[stts - 4 : stts] = b"\xff\xff\xff\xff"


@pytest.mark.parametrize(
    ("container", "codec", "hide"),
    [("matroska", "subrip", _typed_as_video), ("mov", "mov_text", _timing_damaged)],
)
def test_positions_in_a_track_ffmpeg_does_not_read_are_refused(container, codec, hide):
    # Found by fuzzing: both were stored with the positions in them.
    data = bytearray(_with_subtitles(container, codec))
    hide(data)
    with pytest.raises(CaptureRejected) as refused:
        strip_location(bytes(data), sniff(bytes(data), "x"))
    assert refused.value.reason == Reason.GPS_UNCERTAIN
    assert "outside every video and audio sample" in refused.value.message


def test_a_video_with_sound_keeps_its_samples_unchecked():
    # Video and audio samples are media, never read for location: no refusal, no edit.
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="matroska") as output:
        video = output.add_stream("libx264", rate=24)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        sound = output.add_stream("pcm_s16le", rate=8000, layout="mono")
        hum = b"GPS 47.3754 latitude " * 40  # what no location removal may touch here
        for index in range(6):
            picture = np.full((HEIGHT, WIDTH, 3), level(index), np.uint8)
            output.mux(video.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
            samples = np.frombuffer(hum, np.int16).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
            frame.sample_rate, frame.pts = 8000, index * samples.shape[1]
            output.mux(sound.encode(frame))
        output.mux(video.encode())
        output.mux(sound.encode())
    data = buffer.getvalue()
    assert hum in data and strip_location(data, FORMATS["mkv"]) == data


def test_a_matroska_tag_name_of_unknown_size_is_refused():
    # Found by fuzzing: the name, run on to its parent's end, took in the value it names.
    data = bytearray(encode("matroska", "mpeg4", metadata={"location": ZURICH}))
    name = data.index(b"\x45\xa3\x88LOCATION")  # TagName, size 8
    data[name + 2] = 0xFF  # the all-ones size: unknown
    with pytest.raises(CaptureRejected) as refused:
        strip_location(bytes(data), FORMATS["mkv"])
    assert refused.value.reason == Reason.CORRUPT and "unknown size" in refused.value.message


def test_apple_keys_that_swallow_their_items_leave_the_items_checked():
    # Found by fuzzing: a keys box of size 0 ran on over ilst, and all of it was skipped.
    data = bytearray(
        encode(
            "mov",
            metadata={"com.apple.quicktime.location.ISO6709": ZURICH, "make": "Apple"},
            options={"movflags": "use_metadata_tags"},
        )
    )
    keys = data.index(b"keys") - 4
    data[keys : keys + 4] = bytes(4)  # size 0: to the end of meta
    with pytest.raises(CaptureRejected) as refused:
        strip_location(bytes(data), FORMATS["mov"])
    assert refused.value.reason == Reason.GPS_UNCERTAIN


def _with_top_level_box(tmp_path, kind: bytes, head: bytes, size: int, tail: bytes = b""):
    """A video file ending in a box of `size` payload bytes: `head`, zeros (sparse on
    disk) and `tail`."""
    path = tmp_path / "clip.mp4"
    with path.open("wb") as file:
        file.write(encode("mp4") + struct.pack(">I", 1) + kind + struct.pack(">Q", 16 + size))
        file.write(head)
        file.truncate(file.tell() + size - len(head) - len(tail))
        file.seek(0, io.SEEK_END)
        file.write(tail)
    return path


def test_metadata_is_scanned_in_windows_never_whole(tmp_path, monkeypatch):
    """A `free` box of 24 MiB is read a window at a time: a hostile file may declare GBs
    (benchmarks/video_memory.py --free-box)."""
    path = _with_top_level_box(tmp_path, b"free", b"", 24 << 20)
    reads = []
    pread = CaptureFile.pread
    monkeypatch.setattr(
        CaptureFile, "pread", lambda self, at, n: reads.append(n) or pread(self, at, n)
    )
    with open_regular(path) as capture:
        assert location_edits(capture, FORMATS["mp4"]) == []
    assert max(reads) <= video_module._SCAN_WINDOW + video_module._SCAN_OVERLAP


def test_a_location_across_two_windows_is_found(tmp_path):
    seam = video_module._SCAN_WINDOW - 8
    path = _with_top_level_box(tmp_path, b"free", bytes(seam) + f"at {ZURICH}".encode(), 24 << 20)
    with open_regular(path) as capture:
        edits = location_edits(capture, FORMATS["mp4"])
        assert ZURICH.encode() not in capture.edited(edits).read_all()


@pytest.mark.parametrize(
    ("kind", "head"),
    [
        (b"free", f"at {ZURICH}".encode()),  # too large to rewrite clean
        (b"uuid", bytes.fromhex("be7acfcb97a942e89c71999491e3afac")),  # XMP: to parse
    ],
)
def test_metadata_too_large_to_hold_is_refused_unread(tmp_path, kind, head):
    path = _with_top_level_box(tmp_path, kind, head, (64 << 20) + 17)
    with open_regular(path) as capture, pytest.raises(CaptureRejected) as refused:
        location_edits(capture, FORMATS["mp4"])
    assert refused.value.reason == Reason.GPS_UNCERTAIN and "64 MiB" in refused.value.message


def test_a_last_frame_that_does_not_decode_is_refused():
    """Found by fuzzing: one composition offset changed left every frame but the last
    readable, and the video, whose middle frame alone was decoded, was accepted."""
    data = bytearray(encode("mov", frames=6, gop=3))
    ctts = data.index(b"ctts")
    count = int.from_bytes(data[ctts + 8 : ctts + 12], "big")
    data[ctts + 12 + 8 * (count - 1) + 4] = 0x10  # the last entry's offset += 2**28
    with pytest.raises(CaptureRejected) as refused:
        probe_video(bytes(data))
    assert refused.value.reason == Reason.CORRUPT and "frame 5" in refused.value.message


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


def _with_camm(samples: list[bytes]) -> bytes:
    """An MP4 whose second track is camera motion metadata (Google's `camm`): written as a
    text track by FFmpeg's muxer, then its sample entry and handler retyped."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as output:
        video = output.add_stream("libx264", rate=24)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        motion = output.add_mux_stream("mov_text")
        motion.time_base = Fraction(1, 1000)
        for index, sample in enumerate(samples):
            picture = np.full((HEIGHT, WIDTH, 3), level(index), np.uint8)
            output.mux(video.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
            packet = av.Packet(sample)
            packet.stream, packet.pts, packet.dts, packet.duration = (
                motion,
                index * 42,
                index * 42,
                42,
            )
            packet.time_base = motion.time_base
            output.mux(packet)
        output.mux(video.encode())
    data = buffer.getvalue()
    data = data.replace(b"tx3g", b"camm", 1)
    return data.replace(b"\0\0\0\0sbtl", b"\0\0\0\0camm", 1)


def test_gps_packets_of_a_camera_motion_track_are_zeroed():
    """camm samples hold positions as binary doubles, which no text search finds; its
    GPS packets (types 5 and 6) are zeroed, the gyroscope's (type 2) kept."""
    lat, lon = 47.3754, 8.5451
    minimal = struct.pack("<HHddd", 0, 5, lat, lon, 420.0)
    fix = struct.pack("<HHdiddfffffff", 0, 6, 1.7e9, 3, lat, lon, 420.0, 5, 5, 0, 0, 0, 1)
    gyro = struct.pack("<HHfff", 0, 2, 0.25, 0.5, 0.75)
    data = _with_camm([minimal, gyro, fix, gyro])
    coordinates = [struct.pack("<d", lat), struct.pack("<d", lon)]
    assert all(number in data for number in coordinates)

    stripped = strip_location(data, sniff(data, "x"))

    assert len(stripped) == len(data)
    assert not any(number in stripped for number in coordinates) and gyro in stripped
    with VideoFrames(data) as before, VideoFrames(stripped) as after:
        assert np.array_equal(before.read(range(4)), after.read(range(4)))
