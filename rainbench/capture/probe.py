"""Probe one capture file: read it once, decide its format, remove GPS, hash the
bytes that will be stored, validate by decoding, read EXIF and hash perceptually. A
video is validated by demuxing it, and hashed and measured on its middle frame.

`probe` never raises for a bad file: it returns a `Probe` whose `reason` says why
the file was refused. `stored_capture` recomputes what is stored for the shard
writer, which reads the file again rather than holding every capture in memory. A
video is never read whole: it is walked, decoded and hashed in pieces from its file.
"""

import hashlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from PIL import Image

from rainbench.capture.decode import DEFAULT_MAX_PIXELS, decode_capture
from rainbench.capture.exif import CaptureExif, read_exif
from rainbench.capture.formats import FORMATS, Format, sniff
from rainbench.capture.gps import strip_gps
from rainbench.capture.phash import phash_variants
from rainbench.capture.reject import CaptureRejected, Reason
from rainbench.capture.source import (
    CaptureFile,
    SourceFile,
    check_still_size,
    max_still_bytes,
    open_capture,
)
from rainbench.capture.video import VideoInfo, location_edits, probe_video
from rainbench.errors import first_line
from rainbench.store import StoreUnusable

KEY_HEX = 24  # 96 bits of the stored bytes' sha256: dot-free and collision-safe
_HASH_CHUNK = 1 << 20


@dataclass
class Probe:
    source: SourceFile
    reason: Reason | None = None  # None: accepted
    message: str | None = None
    format: str | None = None
    sha256: str | None = None  # of the stored bytes (GPS removed unless kept)
    source_sha256: str | None = None  # of the file as found
    bytes: int | None = None  # stored size
    width: int | None = None  # upright
    height: int | None = None
    mode: str | None = None
    exif: CaptureExif = field(default_factory=CaptureExif)
    phash: list[int] = field(default_factory=list)  # [upright, 7 other dihedral variants]
    # Extra tar members produced by decoding (a RAW's rendered preview).
    extra_members: dict[str, bytes] = field(default_factory=dict)
    # What `measure` found in the upright preview (ingest: the rain-type features).
    features: dict[str, float] | None = None
    # Videos only: what probe_video found (None for stills).
    codec: str | None = None
    frame_rate: float | None = None
    duration_s: float | None = None
    frames: int | None = None
    rotation: int | None = None

    @property
    def key(self) -> str:
        assert self.sha256 is not None
        return self.sha256[:KEY_HEX]

    @property
    def ext(self) -> str:
        return FORMATS[self.format].ext

    @property
    def kind(self) -> str:
        """`video` or `still`: the manifest's `kind`."""
        return "video" if self.format and FORMATS[self.format].video else "still"


@dataclass(frozen=True)
class Stored:
    """What ingest stores for a capture: a still's bytes, read whole (the pixel cap
    bounds them), or a video as a view of its open file with the location edits made,
    which is read in pieces and never held whole."""

    format: Format
    found: bytes | CaptureFile  # the file as found
    stored: bytes | CaptureFile  # what is stored: `found` itself when nothing was removed

    @property
    def size(self) -> int:
        return len(self.stored)


def stored_capture(
    capture: CaptureFile, source: SourceFile, keep_gps: bool, max_pixels: int | None = None
) -> Stored:
    """The capture's format and exactly what ingest stores for it; with `max_pixels`, a
    still larger than a picture of that many pixels takes is refused before it is read."""
    if not capture.size:
        raise CaptureRejected(Reason.EMPTY, "the file is empty (0 bytes)")
    fmt = sniff(capture[:16], source.path)
    if fmt is None:
        raise CaptureRejected(Reason.NOT_AN_IMAGE, "not an image: unknown file signature")
    if fmt.video:
        return Stored(fmt, capture, capture if keep_gps else _without_location(capture, fmt))
    if max_pixels is not None:
        check_still_size(capture.size, max_pixels)
    data = capture.read_all()
    return Stored(fmt, data, data if keep_gps else strip_gps(data, fmt))


def _without_location(capture: CaptureFile, fmt: Format) -> CaptureFile:
    return capture.edited(location_edits(capture, fmt))


def probe(
    source: SourceFile,
    keep_gps: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    measure: Callable[[Image.Image], dict[str, float]] | None = None,
    read: Callable[[SourceFile], CaptureFile] | None = None,
) -> Probe:
    """Probe `source`; `measure`, when given, is applied to the upright preview so later
    stages get what they need from this one decode. `read`: how to open it (default
    `open_capture`)."""
    result = Probe(source)
    try:
        with (read or open_capture)(source) as capture:
            stored = stored_capture(capture, source, keep_gps, max_pixels)
            if stored.format.video:
                video = probe_video(stored.stored, max_pixels, keep_gps)
            else:
                decoded = decode_capture(stored.stored, stored.format, max_pixels)
            result.source_sha256, result.sha256 = _digests(stored)
            if stored.format.video:  # read in several passes: they must have seen one file
                capture.check_unchanged()
    except CaptureRejected as rejected:
        result.reason, result.message = rejected.reason, rejected.message
        return result
    except StoreUnusable:
        raise  # no capture is to blame (`open_capture`): the ingest ends, to run again
    except Exception as error:
        # A decoder's own failure on a hostile file: recorded, and retried on the next run
        # (a later rainbench may read it), never the end of the whole ingest.
        result.reason = Reason.UNREADABLE
        result.message = f"unexpected {type(error).__name__} while reading it: {first_line(error)}"
        return result
    result.format = stored.format.name
    result.bytes = stored.size
    if stored.format.video:
        preview = _take_video(result, video)
    else:
        result.width, result.height, result.mode = decoded.width, decoded.height, decoded.mode
        result.exif = read_exif(decoded.exif, keep_gps)
        result.phash = phash_variants(decoded.reduced, decoded.orientation)
        result.extra_members = decoded.extra_members
        preview = decoded.preview
    if measure is not None:
        result.features = measure(preview)
    return result


def _digests(stored: Stored) -> tuple[str, str]:
    """The sha256 of the file as found and of what is stored; a video's in one pass, in
    pieces."""
    same = stored.stored is stored.found
    if isinstance(stored.found, bytes):
        found = hashlib.sha256(stored.found).hexdigest()
        return found, found if same else hashlib.sha256(stored.stored).hexdigest()
    digests = hashlib.sha256(), hashlib.sha256()
    for offset in range(0, stored.size, _HASH_CHUNK):
        chunk = stored.found.pread(offset, _HASH_CHUNK)
        digests[0].update(chunk)
        if not same:  # the same piece, with the location edits made: read once
            digests[1].update(stored.stored.edit(chunk, offset))
    found = digests[0].hexdigest()
    return found, found if same else digests[1].hexdigest()


def _take_video(result: Probe, video: VideoInfo) -> Image.Image:
    """Fill `result` from what `probe_video` found; the middle frame, upright, stands for
    the video wherever a still's picture is used (perceptual hash, rain-type features)."""
    result.width, result.height, result.mode = video.width, video.height, video.pixel_format
    result.codec, result.frame_rate, result.frames = video.codec, video.frame_rate, video.frames
    result.duration_s, result.rotation = video.duration_s, video.rotation
    result.exif = CaptureExif(
        camera_make=video.camera_make,
        camera_model=video.camera_model,
        captured_at=video.captured_at,
        orientation=video.orientation,
        gps_lat=video.gps_lat,
        gps_lon=video.gps_lon,
    )
    result.phash = phash_variants(video.preview)
    return video.preview


def probe_many(sources: list[SourceFile], **options) -> Iterator[Probe]:
    """`probe` each of `sources` in turn (`options` as for `probe`), the next file read
    on a thread while this one decodes and is measured: reading and decoding both
    release the GIL, so a slow disk or a network mount waits behind the decode, not
    before it. At most two stills are held at once; a video is only opened ahead, its
    bytes read in pieces as it is probed, as is a still too large to be accepted."""
    limit = max_still_bytes(options.get("max_pixels", DEFAULT_MAX_PIXELS))
    with ThreadPoolExecutor(1, thread_name_prefix="read-ahead") as reader:
        ahead = reader.submit(_read_ahead, sources[0], limit) if sources else None
        try:
            for number, source in enumerate(sources):
                pending = ahead
                following = sources[number + 1 : number + 2]
                ahead = reader.submit(_read_ahead, following[0], limit) if following else None
                yield probe(source, **options, read=lambda _, pending=pending: pending.result())
        finally:  # a consumer that stopped early leaves no file open
            if ahead is not None and ahead.exception() is None:
                ahead.result().close()


def _read_ahead(source: SourceFile, limit: int) -> CaptureFile:
    """`source` opened, and unless it is a video or larger than a still may be, read whole
    (kept by the CaptureFile)."""
    capture = open_capture(source)
    try:
        fmt = sniff(capture[:16], source.path)
        if not (fmt and fmt.video) and capture.size <= limit:
            capture.read_all()
    except BaseException:
        capture.close()
        raise
    return capture
