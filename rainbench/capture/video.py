"""Video captures (MP4, QuickTime, Matroska/WebM): probed and read with PyAV, whose wheels
bundle FFmpeg; location taken out of the container without touching a byte of the
picture; frames addressed by index, found by demuxing packet timestamps, never by time.

Frame i is the i-th frame the decoder puts out from the start of the stream (presentation
order); the manifest's `frames` counts them. Location removal keeps the file's size and
every offset: a location box is renamed `free` and zeroed, a Matroska tag's value zeroed.
The edits are found by walking the file's headers and metadata, so ingest makes them as it
copies the video in pieces and never holds the file whole.
"""

import bisect
import io
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from typing import BinaryIO

import numpy as np
from PIL import Image

from rainbench.capture import bmff
from rainbench.capture.decode import (
    DEFAULT_MAX_PIXELS,
    check_pixel_cap,
    readers_max_pixels,
    reduce_for_preview,
)
from rainbench.capture.formats import Format
from rainbench.capture.location import location_hint, xmp_location_spans
from rainbench.capture.orientation import orientation_of, turn_array
from rainbench.capture.reject import CaptureRejected, Reason, missing_library
from rainbench.capture.source import CaptureFile, apply_edits

# More frames than a day at 100 fps is no camera's video: refused before it is indexed.
MAX_FRAMES = 10_000_000
_MAX_DEPTH = 16  # box and element nesting followed, at most
_MAX_TOP_BOXES = 10_000  # top-level boxes looked at to tell a cut file from a damaged one
_EBML = b"\x1a\x45\xdf\xa3"  # the magic of Matroska and WebM files

# A metadata name that says location: ©xyz, loci, com.apple.quicktime.location.ISO6709,
# Matroska's LOCATION, GPS_LATITUDE and their like.
_LOCATION_NAME = re.compile(rb"location|gps|latitude|longitude|iso6709|\xa9xyz|loci", re.I)
# In a subtitle or timed-metadata sample, "GPS" alone marks a position, and so do the
# words lat, lon, lng, latitude, longitude with a number after them: DJI's subtitles read
# "GPS(8.5451,47.3754,420)" or "[lat: 47.3754] [lon: 8.5451]".
_GPS_TEXT = re.compile(rb"gps|\b(?:lat|lon|lng)(?:itude|gitude)?[^0-9a-z]{0,4}[-+]?\d", re.I)
# In media data that is no track's sample, those words only with a decimal number after
# them: three letters alone turn up by chance in MBs of binary framing.
_GPS_POSITION = re.compile(
    rb"(?:gps|\b(?:lat|lon|lng)(?:itude|gitude)?)[^0-9a-z]{0,4}[-+]?\d{1,3}\.\d", re.I
)
# Bytes a Matroska block puts before its frame: track number, timecode, flags.
_BLOCK_HEADER = 64
_SIMPLE_BLOCK, _BLOCK_GROUP, _BLOCK = 0xA3, 0xA0, 0xA1
# Metadata is scanned a window at a time, never held whole (a hostile `free` box or a
# Matroska attachment may declare GBs); each window runs on past the next one's start by
# more than any trace a reader takes for a location, so a trace across the seam is found.
_SCAN_WINDOW = 8 << 20
_SCAN_OVERLAP = 64 << 10
# Metadata held whole: an XMP packet parsed, a record holding a location rewritten, a
# metadata key or tag name. No camera writes more; a hostile file could declare GBs.
_MAX_WHOLE = 64 << 20
_MAX_NAME = 64 << 10
# Boxes that hold other boxes and may hold metadata; sample tables and media are skipped.
_CONTAINER_BOXES = {b"moov", b"trak", b"mdia", b"minf", b"udta", b"meta", b"moof", b"traf"}
# Boxes whose payload means nothing; one holding old metadata is zeroed like user data.
_FREE_BOXES = {b"free", b"skip", b"wide"}
_XMP_UUID = bytes.fromhex("be7acfcb97a942e89c71999491e3afac")

# Matroska element IDs (their length marker included).
_EBML_HEADER, _SEGMENT, _CLUSTER = 0x1A45DFA3, 0x18538067, 0x1F43B675
_TAGS, _TAG, _SIMPLE_TAG = 0x1254C367, 0x7373, 0x67C8
_TAG_NAME, _TAG_STRING, _TAG_BINARY = 0x45A3, 0x4487, 0x4485
# The children of a Segment: where an element of unknown size (a live-written Cluster) ends.
_SEGMENT_CHILDREN = {0x114D9B74, 0x1549A966, 0x1654AE6B, 0x1C53BB6B, 0x1941A469, 0x1043A770}
_SEGMENT_CHILDREN |= {_CLUSTER, _TAGS}

# ISO 6709 point: latitude ±DD[MM[SS]][.f], longitude ±DDD[MM[SS]][.f].
_ISO6709 = re.compile(r"([+-])(\d{2}(?:\d{2}){0,2})(\.\d+)?([+-])(\d{3}(?:\d{2}){0,2})(\.\d+)?")


@dataclass(frozen=True)
class VideoInfo:
    codec: str  # FFmpeg's decoder name: h264, hevc, mpeg4, vp9, av1, …
    frame_rate: float  # frames per second (the stream's average)
    frames: int  # frames in the video stream, counted by demuxing
    duration_s: float
    width: int  # upright: the display matrix applied
    height: int
    rotation: int  # clockwise degrees the decoded frames are turned to show upright
    orientation: int = 1  # the display matrix as the EXIF orientation that turns them
    pixel_format: str | None = None  # FFmpeg's name for the stored pixels: yuv420p, …
    camera_make: str | None = None
    camera_model: str | None = None
    captured_at: datetime | None = None  # camera-local where the container says so, else UTC
    gps_lat: float | None = None  # only when asked to keep location
    gps_lon: float | None = None
    # The middle frame, upright, reduced for hashing and tagging.
    preview: Image.Image | None = field(default=None, repr=False, compare=False)


def probe_video(
    data: bytes | BinaryIO, max_pixels: int = DEFAULT_MAX_PIXELS, keep_gps: bool = False
) -> VideoInfo:
    """What the manifest says about the video in `data`, proven readable by demuxing every
    packet of its video stream and decoding its first, middle and last frames (a group of
    pictures each, not the whole video: a frame damaged elsewhere is refused by the
    `pairs` window that reads it); `CaptureRejected` when not."""
    with VideoFrames(data, max_pixels) as video:
        middle = video.read([len(video) // 2])[0]
        first, last = video.read([0])[0], video.read([len(video) - 1])[0]
        for before, after in ((first, middle), (middle, last)):
            if before.shape != after.shape:
                raise _resized(before.shape[1::-1], after.shape[1::-1], None)
        tags = video.tags
        stream = video.stream
        frames = len(video)
        rate = stream.average_rate or stream.guessed_rate or Fraction(0)
        duration = _duration(video)
        codec = stream.codec_context.name
        pixel_format = stream.codec_context.format.name if stream.codec_context.format else None
    lat, lon = _iso6709(tags) if keep_gps else (None, None)
    height, width = middle.shape[:2]
    return VideoInfo(
        codec=codec,
        frame_rate=float(rate) if rate else (frames / duration if duration else 0.0),
        frames=frames,
        duration_s=duration if duration else (frames / float(rate) if rate else 0.0),
        width=width,
        height=height,
        rotation=video.rotation,
        orientation=video.orientation,
        pixel_format=pixel_format,
        camera_make=_first(tags, "com.apple.quicktime.make", "make", "com.android.manufacturer"),
        camera_model=_first(tags, "com.apple.quicktime.model", "model", "com.android.model"),
        captured_at=_captured_at(tags),
        gps_lat=lat,
        gps_lon=lon,
        preview=reduce_for_preview(Image.fromarray(middle)),
    )


def middle_frame(source: bytes | BinaryIO, max_pixels: int | None = None) -> Image.Image:
    """The frame that stands for the video where a still's picture is used (hashing,
    tagging, the label page): its middle one, upright, at full size. `max_pixels`: as
    `VideoFrames`'."""
    with VideoFrames(source, max_pixels) as video:
        return Image.fromarray(video.read([len(video) // 2])[0])


class VideoFrames:
    """Frames of a video by index, as RGB arrays turned upright.

    Opening demuxes the video stream once, without decoding, to learn every frame's
    timestamp and where the keyframes are; `read` then seeks to the keyframe at or before
    the first wanted frame and decodes forward, so a window of frames anywhere in a long
    video costs one group of pictures, not the video up to it. `source`: the bytes, or a
    seekable binary file holding the video from its start (a tar member from
    `tarfile.extractfile`). Refusals (no video
    stream, damage, too many pixels or frames) are `CaptureRejected`. `max_pixels`: a
    frame's most, by default the readers' cap (`readers_max_pixels`).
    """

    def __init__(self, source: bytes | BinaryIO, max_pixels: int | None = None) -> None:
        if max_pixels is None:
            max_pixels = readers_max_pixels()
        av = _pyav()
        self._file = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
        self._size = self._file.seek(0, io.SEEK_END)
        self._file.seek(0)
        try:
            self.container = av.open(self._file, "r", metadata_errors="replace")
        except av.FFmpegError as error:
            raise self._damaged(error) from None
        try:
            self._index(av, max_pixels)
        except BaseException:
            self.container.close()
            raise
        self._orientation: int | None = None  # from the first decoded frame's display matrix

    def _index(self, av, max_pixels: int) -> None:
        if self._damage_reason() == Reason.TRUNCATED:
            raise CaptureRejected(Reason.TRUNCATED, "the file ends before its container does")
        if not self.container.streams.video:
            raise CaptureRejected(Reason.NOT_AN_IMAGE, "the file has no video stream")
        self.stream = self.container.streams.video[0]
        context = self.stream.codec_context  # None where FFmpeg knows no decoder for it
        if context is None:
            raise CaptureRejected(Reason.CORRUPT, "the video stream names no codec FFmpeg has")
        if not context.width or not context.height:
            raise CaptureRejected(Reason.CORRUPT, "the video stream declares no frame size")
        check_pixel_cap(context.width, context.height, max_pixels)
        self._max_pixels, self._declared = max_pixels, (context.width, context.height)
        declared = self.stream.frames
        if declared > MAX_FRAMES:
            raise CaptureRejected(
                Reason.TOO_MANY_PIXELS, f"{declared} frames exceed the cap of {MAX_FRAMES}"
            )
        pts: list[int | None] = []
        keyframes: list[int] = []  # positions in `pts` (decode order)
        try:
            for packet in self.container.demux(self.stream):
                if packet.size == 0:  # the demuxer's end-of-stream packet
                    continue
                if packet.is_corrupt:
                    raise CaptureRejected(
                        self._damage_reason(), f"video packet {len(pts)} is damaged"
                    )
                if packet.is_keyframe:
                    keyframes.append(len(pts))
                pts.append(packet.pts)
                if len(pts) > MAX_FRAMES:
                    raise CaptureRejected(
                        Reason.TOO_MANY_PIXELS, f"more than {MAX_FRAMES} frames (the cap)"
                    )
        except av.FFmpegError as error:
            raise self._damaged(error) from None
        if not pts:
            raise CaptureRejected(self._damage_reason(), "the video stream holds no frames")
        if declared and len(pts) < declared:
            raise CaptureRejected(
                self._damage_reason(), f"the video has {len(pts)} of the {declared} frames it lists"
            )
        self._count = len(pts)
        timed = None not in pts and len(set(pts)) == len(pts) and 0 in keyframes
        # Frame i ↔ the i-th smallest timestamp; each keyframe's timestamp for seeking.
        self._pts = sorted(pts) if timed else None
        self._key_pts = sorted(pts[k] for k in keyframes) if timed else []

    def __len__(self) -> int:
        return self._count

    @property
    def orientation(self) -> int:
        """The EXIF orientation (1–8) that turns the decoded frames upright, from the
        container's display matrix (FFmpeg hands it to every frame)."""
        if self._orientation is None:
            self.read([0])
        assert self._orientation is not None
        return self._orientation

    @property
    def rotation(self) -> int:
        """Clockwise degrees (0, 90, 180, 270) that turn the decoded frames upright, after
        the mirroring `orientation` names where it names one (2, 4, 5, 7)."""
        return _CLOCKWISE[self.orientation]

    def __enter__(self) -> "VideoFrames":
        return self

    def __exit__(self, *_) -> None:
        self.close()

    def close(self) -> None:
        self.container.close()

    @property
    def tags(self) -> dict[str, str]:
        """The container's and the video stream's metadata, names lower-cased."""
        found = {k.lower(): v for k, v in self.stream.metadata.items()}
        return found | {k.lower(): v for k, v in self.container.metadata.items()}

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """Frames `indices` (0-based, in any order, repeats allowed) as an array
        n × H × W × 3 of uint8 RGB, upright."""
        wanted = sorted({int(i) for i in indices})
        for index in wanted:
            if not 0 <= index < self._count:
                raise IndexError(f"frame {index} is out of range: the video has {self._count}")
        if not wanted:
            return np.zeros((0, 0, 0, 3), np.uint8)
        av = _pyav()
        try:
            found = self._decode_timed(wanted) if self._pts is not None else {}
            if len(found) < len(wanted):  # no timestamps, or a seek that landed late
                found = self._decode_from_start(wanted)
        except av.FFmpegError as error:
            raise self._damaged(error) from None
        missing = [i for i in wanted if i not in found]
        if missing:
            raise CaptureRejected(self._damage_reason(), f"frame {missing[0]} does not decode")
        first = found[wanted[0]].shape[:2]
        for index in wanted:
            if found[index].shape[:2] != first:
                raise _resized(first[::-1], found[index].shape[1::-1], index)
        return np.stack([found[int(i)] for i in indices])

    def _decode_timed(self, wanted: list[int]) -> dict[int, np.ndarray]:
        assert self._pts is not None
        by_pts = {self._pts[i]: i for i in wanted}
        first = self._pts[wanted[0]]
        key = next((p for p in reversed(self._key_pts) if p <= first), self._key_pts[0])
        self.container.seek(key, stream=self.stream, backward=True, any_frame=False)
        found: dict[int, np.ndarray] = {}
        for frame in self._frames():
            if frame.pts in by_pts:
                found[by_pts[frame.pts]] = self._upright(frame)
            if len(found) == len(wanted) or (frame.pts or 0) > self._pts[wanted[-1]]:
                break
        return found

    def _decode_from_start(self, wanted: list[int]) -> dict[int, np.ndarray]:
        self.container.seek(0, stream=self.stream, backward=True, any_frame=False)
        found: dict[int, np.ndarray] = {}
        targets = set(wanted)
        for position, frame in enumerate(self._frames()):
            if position in targets:
                found[position] = self._upright(frame)
            if position >= wanted[-1]:
                break
        return found

    def _frames(self) -> Iterator:
        av = _pyav()
        for packet in self.container.demux(self.stream):
            try:
                frames = packet.decode()
            except av.FFmpegError:
                self._refuse_if_resized(av, packet)
                raise
            yield from frames

    def _refuse_if_resized(self, av, packet) -> None:
        """Say why when the decoder refuses a packet whose picture has another size than
        the stream's (FFmpeg reports only invalid data): the packet is decoded alone,
        by a decoder that refuses more pixels than the cap, so no size is trusted."""
        context = self.stream.codec_context
        alone = av.CodecContext.create(context.name, "r")
        alone.options = {"max_pixels": str(self._max_pixels)}
        if context.extradata:
            alone.extradata = context.extradata
        try:
            frames = alone.decode(packet)
        except av.FFmpegError:
            return
        for frame in frames:
            if (frame.width, frame.height) != self._declared:
                raise _resized(
                    self._declared, (frame.width, frame.height), self._frame_at(packet.pts)
                )

    def _frame_at(self, pts: int | None) -> int | None:
        """The index of the frame with timestamp `pts`, where the video's are known."""
        at = bisect.bisect_left(self._pts or [], pts or 0)
        return at if self._pts and at < len(self._pts) and self._pts[at] == pts else None

    def _upright(self, frame) -> np.ndarray:
        if self._orientation is None:
            # Iterating a frame's side data gives the side data, or since PyAV 18.1.1
            # their types (it became a mapping of type → side data).
            side = frame.side_data
            found = (item if hasattr(item, "type") else side[item] for item in side)
            matrix = next((bytes(d) for d in found if d.type.name == "DISPLAYMATRIX"), b"")
            self._orientation = display_orientation(matrix)
        return np.ascontiguousarray(turn_array(frame.to_ndarray(format="rgb24"), self._orientation))

    def _damage_reason(self) -> Reason:
        at = self._file.tell()
        try:
            ends_early = _ends_early(self._file, self._size)
        finally:
            self._file.seek(at)
        return Reason.TRUNCATED if ends_early else Reason.CORRUPT

    def _damaged(self, error: Exception) -> CaptureRejected:
        text = getattr(error, "strerror", None) or str(error).strip() or type(error).__name__
        text = text.splitlines()[0]
        if self._damage_reason() == Reason.TRUNCATED:
            return CaptureRejected(Reason.TRUNCATED, f"the video ends early: {text}")
        return CaptureRejected(Reason.CORRUPT, f"the video does not decode: {text}")


def display_orientation(matrix: bytes) -> int:
    """The EXIF orientation that turns decoded frames upright, from FFmpeg's display
    matrix (nine native-endian int32, the picture's pixel (x, y) shown at (a·x + c·y,
    b·x + d·y) from its first two columns). A matrix that is no quarter turn, with or
    without a mirror (a skewed one, a degenerate one, none) leaves the frames as they
    are decoded (1), as ffmpeg's autorotate does."""
    if len(matrix) != 36:
        return 1
    a, b, _, c, d = np.frombuffer(matrix, dtype="=i4", count=5).astype(float)
    # Within a degree of a quarter turn: the other diagonal is that small beside this one.
    slack = math.sin(math.radians(1))
    if a and d and abs(b) <= slack * abs(a) and abs(c) <= slack * abs(d):
        return orientation_of(False, d < 0, a < 0)
    if b and c and abs(a) <= slack * abs(b) and abs(d) <= slack * abs(c):
        # Shown (x, y) comes from the picture's (y, x): rows and columns swap.
        return orientation_of(True, b < 0, c < 0)
    return 1


# Each orientation's clockwise turn, after its mirror (2, 4, 5, 7 mirror left ↔ right).
_CLOCKWISE = {1: 0, 2: 0, 3: 180, 4: 180, 5: 270, 6: 90, 7: 90, 8: 270}


def _resized(size: tuple[int, int], new: tuple[int, int], index: int | None) -> CaptureRejected:
    where = "" if index is None else f" at frame {index}"
    return CaptureRejected(
        Reason.CORRUPT,
        f"the frame size changes{where}: {size[0]}×{size[1]} → {new[0]}×{new[1]}",
    )


def _pyav():
    try:
        import av
    except ImportError:
        raise missing_library("video", "PyAV", "video") from None
    return av


def _ends_early(file: BinaryIO, size: int) -> bool:
    """Whether the file stops before its container's structure says it ends: inside its
    last top-level box, or before its Matroska Segment's declared end."""
    file.seek(0)
    head = file.read(64)
    if head.startswith(_EBML):
        try:
            for element, _, _, stop in _ebml_elements(head, 0, len(head), tolerate_end=True):
                if element == _SEGMENT:
                    return stop > size
        except CaptureRejected:
            return False
        return False
    position = 0
    for _ in range(_MAX_TOP_BOXES):
        if position >= size:
            return position > size
        file.seek(position)
        header = file.read(16)
        if len(header) < 8:
            return True
        box_size = int.from_bytes(header[:4], "big")
        if box_size == 1:  # a 64-bit size follows the box type
            if len(header) < 16:
                return True
            box_size = int.from_bytes(header[8:16], "big")
        if box_size == 0:  # the box runs to the end of the file
            return False
        if box_size < 8 or not header[4:8].isalnum():
            return False  # no box header here: corrupt, not truncated
        position += box_size
    return False


def _duration(video: VideoFrames) -> float:
    stream = video.stream
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if video.container.duration:
        return video.container.duration / 1_000_000  # AV_TIME_BASE
    return 0.0


def _first(tags: dict[str, str], *names: str) -> str | None:
    for name in names:
        value = (tags.get(name) or "").replace("\x00", "").strip()
        if value:
            return value
    return None


def _captured_at(tags: dict[str, str]) -> datetime | None:
    """Apple's creationdate keeps the camera's local time, as EXIF's DateTimeOriginal
    does; creation_time is UTC. Either way the stored time has no zone."""
    for name in ("com.apple.quicktime.creationdate", "creation_time"):
        text = (tags.get(name) or "").strip()
        if not text:
            continue
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            continue
        if name == "creation_time" and moment.tzinfo is not None:
            moment = moment.astimezone(UTC)
        return moment.replace(tzinfo=None)
    return None


def _iso6709(tags: dict[str, str]) -> tuple[float | None, float | None]:
    """Latitude and longitude of the first ISO 6709 point among the location tags."""
    for name, value in tags.items():
        if not _LOCATION_NAME.search(name.encode()):
            continue
        found = _ISO6709.match(value.strip())
        if found:
            lat_sign, lat, lat_fraction, lon_sign, lon, lon_fraction = found.groups()
            return (
                _degrees(lat_sign, lat, lat_fraction, 2),
                _degrees(lon_sign, lon, lon_fraction, 3),
            )
    return None, None


def _degrees(sign: str, digits: str, fraction: str | None, width: int) -> float:
    """±DD[MM[SS]][.f] (latitude; longitude has three degree digits) in degrees."""
    parts = [digits[:width], digits[width : width + 2], digits[width + 2 :]]
    numbers = [float(p) if p else 0.0 for p in parts]
    last = len([p for p in parts if p]) - 1
    numbers[last] += float(fraction) if fraction else 0.0
    value = numbers[0] + numbers[1] / 60 + numbers[2] / 3600
    return -value if sign == "-" else value


# -- location removal --------------------------------------------------------------------

# A video's bytes, or its file: a CaptureFile reads like bytes, so the walks below read
# only the headers and metadata they look at, never the media data.
Data = bytes | CaptureFile
Spans = list[tuple[int, int]]  # byte ranges: start, stop


def strip_location(data: bytes, fmt: Format) -> bytes:
    """`data` with every location record of its container neutralised in place (size and
    offsets unchanged, nothing re-encoded); `data` itself when there was none. Refused as
    `gps-uncertain` where a trace of a location is left that no record accounts for."""
    edits = location_edits(data, fmt)
    return apply_edits(data, 0, edits) if edits else data


def location_edits(data: Data, fmt: Format) -> list[tuple[int, bytes]]:
    """The same-length edits (offset, replacement) that `strip_location` makes, found by
    walking the container's headers and metadata: a `CaptureFile` is never read whole."""
    # `media`: the media data (mdat boxes, clusters); `cleaned`: names of records cleaned.
    if fmt.name == "mkv":
        edits, cleaned, media = _matroska_edits(data)
    else:
        edits, cleaned, media = _box_edits(data)
    sample_edits, samples = _timed_sample_edits(data, _camm_tracks(data, fmt))
    edits += sample_edits
    # A value already zeroed (a file stripped before) is no edit: stripping is idempotent.
    edits = [(at, new) for at, new in edits if data[at : at + len(new)] != new]
    _refuse_location_left(data, edits, cleaned + media, fmt)
    _refuse_location_in_media(data, edits, media, samples, fmt)
    return edits


def _timed_sample_edits(
    data: Data, camm: set[int]
) -> tuple[list[tuple[int, bytes]], dict[int, int]]:
    """Edits zeroing the samples of subtitle and timed-metadata tracks that name a
    location (a drone's or a dashcam's position frame by frame, in the media data where
    the container's metadata is not), found by demuxing those tracks: as text, or as the
    GPS packets of a camera motion track (streams `camm`); and where each
    video and audio sample starts, which the media data check skips. A sample whose bytes
    are not stored as demuxed (compressed, split) cannot be cleaned in place and the video
    is refused."""
    av = _pyav()
    edits: list[tuple[int, bytes]] = []
    pictures_and_sound: dict[int, int] = {}  # where each sample starts: its size
    file = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data.view()
    try:
        with av.open(file, "r", metadata_errors="replace") as container:
            for packet in container.demux():
                if packet.size == 0:  # the demuxer's end-of-stream packet
                    continue
                if packet.stream.type in ("video", "audio"):
                    if packet.pos is not None:  # None: FFmpeg does not know where it lies
                        pictures_and_sound[packet.pos] = packet.size
                    continue
                payload = bytes(packet)
                gps = packet.stream.index in camm and _camm_gps(payload)
                if not (gps or location_hint(payload) or _GPS_TEXT.search(payload)):
                    continue
                at = -1
                if packet.pos is not None:
                    at = data.find(payload, packet.pos, packet.pos + len(payload) + _BLOCK_HEADER)
                if at < 0:
                    raise CaptureRejected(
                        Reason.GPS_UNCERTAIN,
                        f"a {packet.stream.type} track names a location in a sample that "
                        "cannot be cleaned in place",
                    )
                edits.append((at, bytes(len(payload))))
    except av.FFmpegError as error:
        text = getattr(error, "strerror", None) or type(error).__name__
        raise CaptureRejected(Reason.CORRUPT, f"the video does not demux: {text}") from None
    return edits, pictures_and_sound


def _camm_tracks(data: Data, fmt: Format) -> set[int]:
    """The streams (as FFmpeg numbers them: a movie's tracks in order) whose samples are
    camera motion metadata (Google's `camm` sample entry), which hold positions as
    binary numbers that no text search finds."""
    if fmt.name == "mkv":
        return set()
    found = set()
    for kind, _, start, stop in bmff.boxes(data, 0, len(data), "video"):
        if kind != b"moov":
            continue
        traks = (box for box in bmff.boxes(data, start, stop, "video") if box[0] == b"trak")
        for index, (_, _, trak_start, trak_stop) in enumerate(traks):
            if _sample_entry(data, trak_start, trak_stop) == b"camm":
                found.add(index)
    return found


def _sample_entry(data: Data, start: int, stop: int) -> bytes | None:
    """The type of the first sample entry of the track whose trak box holds
    data[start:stop] (in trak/mdia/minf/stbl/stsd)."""
    for path in (b"mdia", b"minf", b"stbl", b"stsd"):
        inner = next((b for b in bmff.boxes(data, start, stop, "video") if b[0] == path), None)
        if inner is None:
            return None
        start, stop = inner[2], inner[3]
    # stsd: version and flags, the entry count, then the entries (size, type, …).
    return data[start + 12 : start + 16] if stop - start >= 16 else None


def _camm_gps(sample: bytes) -> bool:
    """Whether a camera motion sample is a GPS packet: after two reserved bytes its
    type (little-endian), 5 (latitude, longitude, altitude) or 6 (a full GPS fix)."""
    return len(sample) >= 4 and int.from_bytes(sample[2:4], "little") in (5, 6)


def _refuse_location_in_media(
    data: Data,
    edits: list[tuple[int, bytes]],
    media: Spans,
    pictures_and_sound: dict[int, int],
    fmt: Format,
) -> None:
    """Refuse when the media data, once edited, names a location outside the video and
    audio samples: a track FFmpeg does not read (a subtitle track typed as video, one whose
    sample table is damaged) keeps its samples there, and no demuxing finds them. An MP4
    sample is skipped from where FFmpeg read it for as long as FFmpeg says; a Matroska
    block, whose frames FFmpeg reads past a header, as the whole block it starts."""
    if fmt.name == "mkv":
        skipped = _blocks_at(data, media, pictures_and_sound)
    else:
        skipped = [(at, at + size) for at, size in pictures_and_sound.items()]
    for start, stop in _outside(media, skipped):
        if hint := _scan(data, start, stop, _trace_in_media, edits):
            raise CaptureRejected(
                Reason.GPS_UNCERTAIN,
                f"{fmt.name.upper()} media data names a location outside every video and "
                f"audio sample, in a track that is not read: {hint!r}",
            )


def _trace_in_media(text: bytes) -> str | None:
    """A location in media data that is no video or audio sample: any trace
    `location_hint` finds, or "GPS" with a number after it (a subtitle's)."""
    if hint := location_hint(text):
        return hint
    found = _GPS_POSITION.search(text)
    return None if found is None else found[0].decode("latin-1")


def _blocks_at(data: Data, clusters: Spans, starts: dict[int, int]) -> Spans:
    """The whole elements (header to end) of the Matroska blocks in `clusters` whose
    frame data starts at one of `starts`, as FFmpeg reports a block's position."""
    blocks = []
    walk = [(start, stop, 0) for start, stop in clusters]
    while walk:
        pos, end, depth = walk.pop()
        for element, head, start, stop in _ebml_elements(data, pos, end):
            if element == _BLOCK_GROUP and depth == 0:
                walk.append((start, stop, 1))
            elif element in (_SIMPLE_BLOCK, _BLOCK) and start in starts:
                blocks.append((head, stop))
    return blocks


def _outside(spans: Spans, holes: Spans) -> Iterator[tuple[int, int]]:
    """The parts of `spans` that none of `holes` (disjoint) covers."""
    holes = sorted(holes)
    for start, stop in sorted(spans):
        at = start
        first = max(bisect.bisect_left(holes, (start, start)) - 1, 0)  # may reach into it
        for low, high in (holes[index] for index in range(first, len(holes))):
            if low >= stop:
                break
            if low > at:
                yield at, low
            at = max(at, high)
        if at < stop:
            yield at, stop


def _scan(
    data: Data,
    start: int,
    stop: int,
    find: Callable[[bytes], str | None] = location_hint,
    edits: Sequence[tuple[int, bytes]] = (),
) -> str | None:
    """`find` over data[start:stop] with `edits` made, read a window at a time."""
    for low in range(start, stop, _SCAN_WINDOW):
        high = min(stop, low + _SCAN_WINDOW + _SCAN_OVERLAP)
        if found := find(apply_edits(data[low:high], low, edits)):
            return found
    return None


def _refuse_location_left(
    data: Data,
    edits: list[tuple[int, bytes]],
    unchecked: list[tuple[int, int]],
    fmt: Format,
) -> None:
    """Refuse when the container's metadata, once edited, still names a location: every
    byte is looked at but the media data and the names of the records cleaned
    (`unchecked`)."""
    at = 0
    for start, stop in [*sorted(unchecked), (len(data), len(data))]:
        if start > at and (hint := _scan(data, at, start, edits=edits)):
            raise CaptureRejected(
                Reason.GPS_UNCERTAIN,
                f"{fmt.name.upper()} metadata names a location outside the records location "
                f"removal cleans: {hint!r}",
            )
        at = max(at, stop)


def _box_edits(data: Data) -> tuple[list[tuple[int, bytes]], Spans, Spans]:
    """Edits neutralising the location boxes of an MP4/QuickTime file; the spans the final
    check skips (the key names of Apple metadata, boxes already looked at); the media data."""
    edits: list[tuple[int, bytes]] = []
    checked: Spans = []
    media: Spans = []
    walk = [(0, len(data), 0, b"")]
    while walk:
        pos, end, depth, parent = walk.pop()
        if depth > _MAX_DEPTH:
            raise CaptureRejected(Reason.CORRUPT, f"boxes nested deeper than {_MAX_DEPTH}")
        for kind, head, start, stop in bmff.boxes(data, pos, end, "video"):
            if kind == b"cmov":
                raise CaptureRejected(
                    Reason.UNSUPPORTED, "a compressed QuickTime movie header (cmov)"
                )
            if kind == b"mdat":
                media.append((start, stop))
            elif kind == b"meta":
                edits += _meta_edits(data, start, stop, checked)
                walk.append((_meta_children(data, start, stop), stop, depth + 1, kind))
            elif kind in _CONTAINER_BOXES:
                walk.append((start, stop, depth + 1, kind))
            elif kind == b"uuid" and data[start : start + 16] == _XMP_UUID:
                edits += _xmp_edits(data, start + 16, stop)
            elif kind == b"XMP_" and parent == b"udta":  # where QuickTime keeps XMP
                edits += _xmp_edits(data, start, stop)
            elif kind in (b"\xa9xyz", b"loci"):
                edits.append(_freed(head, start, stop))
            elif parent == b"udta" or kind in _FREE_BOXES:
                if _scan(data, start, stop):
                    edits.append(_freed(head, start, stop))
                checked.append((start, stop))  # zeroed, or found clean: not scanned again
    return edits, checked, media


def _xmp_edits(data: Data, start: int, stop: int) -> list[tuple[int, bytes]]:
    """The location properties and place names of the XMP packet in data[start:stop]
    blanked with spaces."""
    _refuse_whole(stop - start, "an XMP packet")
    spans = xmp_location_spans(data, start, stop)
    return [(low, b" " * (high - low)) for low, high in spans]


def _meta_children(data: Data, start: int, stop: int) -> int:
    """Where a meta box's children start: ISO's meta is a full box (version and flags
    first, zero), QuickTime's is a plain one whose first child's size comes first."""
    if stop - start >= 12 and data[start : start + 4] == b"\0\0\0\0":
        return start + 4
    return start


def _meta_edits(data: Data, start: int, stop: int, checked: Spans) -> list[tuple[int, bytes]]:
    """Items of a meta box's ilst that hold a location: by key name (Apple's mdta keys,
    com.apple.quicktime.location.*), by item type (©xyz) or by what they say. The key
    names (which may say location, of a value cleaned) join `checked`."""
    first = _meta_children(data, start, stop)
    children = {kind: (head, s, e) for kind, head, s, e in bmff.boxes(data, first, stop, "video")}
    names = _mdta_keys(data, *children[b"keys"][1:], checked) if b"keys" in children else {}
    if b"ilst" not in children:
        return []
    edits = []
    for kind, head, item_start, item_stop in bmff.boxes(data, *children[b"ilst"][1:], "video"):
        name = names.get(int.from_bytes(kind, "big"), kind) if names else kind
        if _LOCATION_NAME.search(name) or _scan(data, item_start, item_stop):
            edits.append(_freed(head, item_start, item_stop))
    return edits


def _mdta_keys(data: Data, start: int, stop: int, checked: Spans) -> dict[int, bytes]:
    """Apple's metadata keys by their 1-based index: the ilst items' box types. Only the
    names' own bytes join `checked`: whatever else the box holds is scanned."""
    if stop - start < 8:
        raise CaptureRejected(Reason.CORRUPT_EXIF, "the video's metadata keys box is cut short")
    count = int.from_bytes(data[start + 4 : start + 8], "big")
    names = {}
    pos = start + 8
    for index in range(1, count + 1):
        if pos + 8 > stop:
            raise CaptureRejected(Reason.CORRUPT_EXIF, "the video's metadata keys run past")
        size = int.from_bytes(data[pos : pos + 4], "big")
        if size < 8 or pos + size > stop:
            raise CaptureRejected(Reason.CORRUPT_EXIF, f"the video's metadata key {index} is bad")
        if size - 8 > _MAX_NAME:
            raise CaptureRejected(
                Reason.CORRUPT_EXIF,
                f"the video's metadata key {index} is {size - 8} bytes long, more than "
                f"{_MAX_NAME >> 10} KiB",
            )
        names[index] = data[pos + 8 : pos + size]
        checked.append((pos + 8, pos + size))
        pos += size
    return names


def _freed(head: int, start: int, stop: int) -> tuple[int, bytes]:
    """The box at `head` becomes a `free` box of zeros: the same size, nothing to read."""
    _refuse_whole(stop - head, "a box naming a location")
    return head + 4, b"free" + bytes(start - head - 8) + bytes(stop - start)


def _refuse_whole(size: int, what: str) -> None:
    """Refuse metadata too large to hold whole (to parse it, or to rewrite it clean)."""
    if size > _MAX_WHOLE:
        raise CaptureRejected(
            Reason.GPS_UNCERTAIN,
            f"{what} of {size} bytes, more than the {_MAX_WHOLE >> 20} MiB location removal holds",
        )


def _matroska_edits(data: Data) -> tuple[list[tuple[int, bytes]], Spans, Spans]:
    """Edits zeroing the values of location tags (SimpleTag elements whose TagName says
    location, or whose value names one); the spans the final check skips (the names of
    the tags cleaned); the media data (clusters)."""
    edits: list[tuple[int, bytes]] = []
    cleaned: Spans = []
    clusters: Spans = []
    walk = [(0, len(data), 0)]
    while walk:
        pos, end, depth = walk.pop()
        if depth > _MAX_DEPTH:
            raise CaptureRejected(Reason.CORRUPT, f"elements nested deeper than {_MAX_DEPTH}")
        for element, _, start, stop in _ebml_elements(data, pos, end):
            if element == _CLUSTER:
                clusters.append((start, stop))
            elif element in (_SEGMENT, _TAGS, _TAG):
                walk.append((start, stop, depth + 1))
            elif element == _SIMPLE_TAG:
                edits += _simple_tag_edits(data, start, stop, cleaned, depth)
    return edits, cleaned, clusters


def _simple_tag_edits(
    data: Data, start: int, stop: int, cleaned: Spans, depth: int
) -> list[tuple[int, bytes]]:
    if depth > _MAX_DEPTH:
        raise CaptureRejected(Reason.CORRUPT, f"tags nested deeper than {_MAX_DEPTH}")
    children = list(_ebml_elements(data, start, stop))
    names = [(s, e) for element, _, s, e in children if element == _TAG_NAME]
    if sum(e - s for s, e in names) > _MAX_NAME:
        raise CaptureRejected(
            Reason.CORRUPT_EXIF, f"a Matroska tag name longer than {_MAX_NAME >> 10} KiB"
        )
    name = b"".join(data[s:e] for s, e in names)
    values = [(s, e) for element, _, s, e in children if element in (_TAG_STRING, _TAG_BINARY)]
    edits = []
    if _LOCATION_NAME.search(name) or any(_scan(data, s, e) for s, e in values):
        _refuse_whole(sum(e - s for s, e in values), "a tag naming a location")
        edits = [(s, bytes(e - s)) for s, e in values]
        cleaned += names
    for element, _, s, e in children:
        if element == _SIMPLE_TAG:
            edits += _simple_tag_edits(data, s, e, cleaned, depth + 1)
    return edits


def _ebml_elements(
    data: Data, pos: int, end: int, tolerate_end: bool = False
) -> Iterator[tuple[int, int, int, int]]:
    """ID, header start, payload start and payload end of each EBML element in
    data[pos:end]. An element of unknown size (a Segment or a Cluster only) ends where its
    parent does, or (a Cluster) where the next element of its parent's kind starts. With
    `tolerate_end` (a file's first bytes only) the Segment's declared end is yielded even if
    it lies beyond."""
    while pos < end:
        element, id_length = _vint(data, pos, end, keep_marker=True)
        size, size_length = _vint(data, pos + id_length, end, keep_marker=False)
        start = pos + id_length + size_length
        if size is None and element not in (_SEGMENT, _CLUSTER):
            # Only these are written live, before their size is known; any other element
            # of unknown size would swallow its parent's rest (a tag's value in its name).
            raise CaptureRejected(
                Reason.CORRUPT, f"Matroska element 0x{element:X} at {pos} has an unknown size"
            )
        if size is None:
            stop = _unknown_end(data, start, end) if element == _CLUSTER else end
        else:
            stop = start + size
        if stop > end and not (tolerate_end and element == _SEGMENT):
            raise CaptureRejected(
                Reason.TRUNCATED, f"Matroska element 0x{element:X} at {pos} runs past its parent"
            )
        yield element, pos, start, stop
        pos = stop


def _unknown_end(data: Data, pos: int, end: int) -> int:
    while pos < end:
        element, id_length = _vint(data, pos, end, keep_marker=True)
        if element in _SEGMENT_CHILDREN:
            return pos
        size, size_length = _vint(data, pos + id_length, end, keep_marker=False)
        if size is None:
            raise CaptureRejected(Reason.CORRUPT, "a Matroska cluster element of unknown size")
        pos += id_length + size_length + size
    return end


def _vint(data: Data, pos: int, end: int, keep_marker: bool) -> tuple[int | None, int]:
    """An EBML variable-length integer at `pos`: its value (None: the all-ones "unknown"
    size) and its length in bytes."""
    if pos >= end:
        raise CaptureRejected(Reason.TRUNCATED, f"Matroska file ends inside an element at {pos}")
    first = data[pos]
    if first == 0:
        raise CaptureRejected(Reason.CORRUPT, f"no Matroska element at offset {pos}")
    length = 9 - first.bit_length()
    if pos + length > end:
        raise CaptureRejected(Reason.TRUNCATED, f"Matroska file ends inside an element at {pos}")
    value = int.from_bytes(data[pos : pos + length], "big")
    if keep_marker:
        return value, length
    value &= (1 << (7 * length)) - 1
    return (None if value == (1 << (7 * length)) - 1 else value), length
