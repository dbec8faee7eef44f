"""Videos and bursts of stills in `rainbench ingest`: a video goes in byte for byte (less
its location) with one row and a sequence of its own; three stills of one camera a
second apart become a burst; a lone still stays alone. The video is encoded here with
PyAV, the stills written with EXIF by rainbench.demo."""

import hashlib
import io
import os
import sys
import tarfile
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from rainbench.capture.location import location_hint
from rainbench.capture.probe import probe
from rainbench.capture.reject import Reason
from rainbench.capture.source import SourceFile
from rainbench.capture.video import VideoFrames
from rainbench.data.select import Filters, captures
from rainbench.demo.captures import CaptureSpec, write_capture
from rainbench.ingest import IngestOptions, ingest
from rainbench.ingest import write as write_module
from rainbench.ingest.bursts import group_bursts
from rainbench.ingest.label_page import write_label_page
from rainbench.ingest.tag import tag_dataset
from rainbench.pairs.build import Sequence, open_frames
from rainbench.shards import manifest
from rainbench.shards.dataset import Dataset
from rainbench.shards.members import ShardError
from rainbench.shards.verify import check_videos, verify

av = pytest.importorskip("av", reason="videos need rainbench[video]")

OPTIONS = IngestOptions(workers=1)
START = datetime(2024, 5, 1, 10, 0, 0)


def encode_mov(frames: int = 12, rotation: int | None = None) -> bytes:
    """A QuickTime video from a phone that recorded where it was (©xyz); `rotation`: its
    display matrix turns the 64×48 frames that many degrees counterclockwise."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mov") as output:
        output.metadata.update(
            {"location": "+47.3754+008.5451/", "make": "Apple", "model": "iPhone 15"}
        )
        stream = output.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        if rotation is not None:
            stream.set_display_rotation(rotation)
        rng = np.random.default_rng(5)
        for _ in range(frames):
            picture = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
            output.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        output.mux(stream.encode())
    return buffer.getvalue()


def still(name: str, seconds: float, seed: int) -> CaptureSpec:
    return CaptureSpec(name, 160, 120, captured_at=START + timedelta(seconds=seconds), seed=seed)


@pytest.fixture
def raw(tmp_path):
    root = tmp_path / "raw"
    (root / "cam").mkdir(parents=True)
    (root / "cam" / "rain.mov").write_bytes(encode_mov())
    for number, seconds in enumerate((0, 1, 2)):
        write_capture(root, still(f"cam/burst-{number}.jpg", seconds, seed=number + 1))
    write_capture(root, still("cam/lone.jpg", 600, seed=9))
    return root


def rows_by_name(ds) -> dict[str, dict]:
    table = manifest.read_manifest(Dataset(ds).samples_manifest, manifest.SAMPLES)
    return {row["source_path"].split("/")[-1]: row for row in table.to_pylist()}


def test_a_video_and_a_burst_are_ingested(raw, tmp_path):
    ds = tmp_path / "ds"
    summary = ingest([raw], ds, OPTIONS)
    assert summary.accepted == 5 and not summary.rejected
    rows = rows_by_name(ds)
    video = rows["rain.mov"]
    assert video["kind"] == "video" and video["format"] == "mov"
    assert (video["codec"], video["frames"], video["frame_rate"]) == ("h264", 12, 24.0)
    assert video["duration_s"] == pytest.approx(0.5)
    upright = (video["width"], video["height"], video["rotation"], video["orientation"])
    assert upright == (64, 48, 0, 1)
    assert (video["camera_make"], video["camera_model"]) == ("Apple", "iPhone 15")
    assert video["members"] == ["mov", "json"]
    assert (video["sequence"], video["sequence_index"]) == (video["key"], None)
    assert video["gps_lat"] is None and video["phash"] and video["rain_type"]
    first = rows["burst-0.jpg"]["key"]
    for number in range(3):
        row = rows[f"burst-{number}.jpg"]
        assert (row["kind"], row["sequence"], row["sequence_index"]) == ("still", first, number)
    lone = rows["lone.jpg"]
    assert (lone["kind"], lone["sequence"], lone["sequence_index"]) == ("still", None, None)

    # Stored as found, less its location: the same size, the same frames.
    with tarfile.open(Dataset(ds).root / video["shard"]) as tar:
        stored = tar.extractfile(f"{video['key']}.mov").read()
        with VideoFrames(tar.extractfile(f"{video['key']}.mov")) as frames:
            assert len(frames) == 12 and frames.read([4]).shape == (1, 48, 64, 3)
    original = (raw / "cam" / "rain.mov").read_bytes()
    assert len(stored) == len(original) and stored != original
    assert location_hint(stored) is None
    assert verify(Dataset(ds), workers=1) == []


def test_a_rerun_changes_nothing(raw, tmp_path):
    ds = tmp_path / "ds"
    ingest([raw], ds, OPTIONS)
    before = Dataset(ds).samples_manifest.read_bytes()
    again = ingest([raw], ds, OPTIONS)
    assert (again.scanned, again.accepted) == (0, 0)
    assert Dataset(ds).samples_manifest.read_bytes() == before


def test_a_later_ingest_extends_a_burst(raw, tmp_path):
    ds = tmp_path / "ds"
    ingest([raw], ds, OPTIONS)
    write_capture(raw, still("cam/burst-3.jpg", 3.5, seed=4))
    ingest([raw], ds, OPTIONS)
    rows = rows_by_name(ds)
    assert rows["burst-3.jpg"]["sequence"] == rows["burst-0.jpg"]["key"]
    assert rows["burst-3.jpg"]["sequence_index"] == 3


def test_burst_gap_zero_groups_nothing(raw, tmp_path):
    ds = tmp_path / "ds"
    ingest([raw], ds, IngestOptions(workers=1, burst_gap=0))
    rows = rows_by_name(ds)
    assert all(rows[f"burst-{n}.jpg"]["sequence"] is None for n in range(3))
    assert rows["rain.mov"]["sequence"] == rows["rain.mov"]["key"]


def test_the_picture_loader_skips_videos(raw, tmp_path):
    ds = tmp_path / "ds"
    ingest([raw], ds, OPTIONS)
    chosen = captures(ds, Filters())
    assert len(chosen) == 4 and set(chosen["kind"]) == {"still"}


def test_eval_says_it_leaves_a_video_to_its_real_pairs(raw, tmp_path):
    from rainbench.leaderboard.eval import EvalSettings, evaluate
    from rainbench.leaderboard.sources import DerainerSource
    from rainbench.models import create_derainer

    ds = tmp_path / "ds"
    ingest([raw], ds, OPTIONS)
    split = rows_by_name(ds)["rain.mov"]["split"]
    settings = EvalSettings(metrics=("piqe",))  # one that applies to a real split
    source = DerainerSource(create_derainer("identity"), "cpu", None, 32)
    [report] = evaluate(source, ds, split, tmp_path / "res", settings)
    stills = [
        row
        for row in rows_by_name(ds).values()
        if row["split"] == split and row["kind"] == "still" and row["layer"] == "rainy"
    ]
    assert report.videos == 1 and report.scored == len(stills) > 0


def test_rain_dataset_single_mode_skips_videos(raw, tmp_path):
    pytest.importorskip("torch", reason="the loader needs rainbench[train]")
    from rainbench.data import RainDataset

    ds = tmp_path / "ds"
    ingest([raw], ds, OPTIONS)
    dataset = RainDataset(ds, crop=32, shuffle=False)
    keys = {sample["key"] for sample in dataset}
    assert rows_by_name(ds)["rain.mov"]["key"] not in keys and len(keys) == 4


def test_without_pyav_a_video_is_refused_with_the_fix(raw, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # import av now raises ImportError
    path = raw / "cam" / "rain.mov"
    source = SourceFile(raw.as_posix(), "cam/rain.mov", path.stat().st_size, 0)
    result = probe(source)
    assert result.reason == Reason.UNSUPPORTED
    assert "pip install 'rainbench[video]'" in result.message


def test_without_pyav_ingest_says_what_to_install_and_a_rerun_takes_the_video_in(
    raw, tmp_path, monkeypatch
):
    # Not the file's fault: the summary names the extra (the console's line), and the
    # next ingest, with PyAV there, reads the video it refused.
    from rainbench.cli.dataset import format_summary

    ds = tmp_path / "ds"
    with monkeypatch.context() as patched:
        patched.setitem(sys.modules, "av", None)
        summary = ingest([raw], ds, OPTIONS)
    missing = "video needs PyAV: pip install 'rainbench[video]'"
    assert summary.rejected == {"unsupported-format": 1}
    assert summary.missing_libraries == {missing: 1}
    assert summary.to_dict()["missing_libraries"] == {missing: 1}
    assert f"1 file rejected: {missing}, then run the same ingest again to take it in" in (
        format_summary(summary, ds).splitlines()
    )
    again = ingest([raw], ds, OPTIONS)
    assert again.accepted == 1 and not again.rejected and not again.missing_libraries


def test_stills_without_a_time_are_never_grouped():
    rows = [
        {"key": f"{n:024x}", "kind": None, "captured_at": None, "source_path": f"a/{n}.jpg"}
        for n in range(4)
    ]
    table = pa.Table.from_pylist(rows, schema=manifest.SAMPLES)
    grouped = group_bursts(table)
    assert grouped["sequence"].to_pylist() == [None] * 4
    assert grouped["kind"].to_pylist() == ["still"] * 4


def test_tag_measures_a_video_again_on_its_middle_frame(raw, tmp_path):
    ds = tmp_path / "ds"
    ingest([raw], ds, OPTIONS)
    path = Dataset(ds).samples_manifest
    table = manifest.read_manifest(path, manifest.SAMPLES)
    before = {row["key"]: row for row in table.to_pylist()}
    index = table.schema.get_field_index("features_version")
    table = table.set_column(index, "features_version", pa.nulls(table.num_rows, pa.string()))
    manifest.write_manifest(path, table)
    summary = tag_dataset(ds)
    assert summary.measured == 5 and not summary.unmeasurable
    after = manifest.read_manifest(path, manifest.SAMPLES).to_pylist()
    for row in after:
        assert row["rain_type"] == before[row["key"]]["rain_type"]
        assert row["feat_contrast"] == pytest.approx(before[row["key"]]["feat_contrast"])


def test_the_label_page_shows_a_video_by_its_middle_frame(raw, tmp_path):
    ds = tmp_path / "ds"
    ingest([raw], ds, OPTIONS)
    page = write_label_page(ds, tmp_path / "label.html")
    assert page.cards == 5 and not page.unreadable


def _damaged_in_place(ds: Path) -> dict:
    """The video's row, its member's last bytes overwritten in the shard: the shard still
    reads and the video still decodes, only its digest tells."""
    video = rows_by_name(ds)["rain.mov"]
    shard = ds / video["shard"]
    with tarfile.open(shard) as tar:
        info = tar.getmember(f"{video['key']}.mov")
    data = bytearray(shard.read_bytes())
    data[info.offset_data + info.size - 8 : info.offset_data + info.size] = b"damaged!"
    shard.write_bytes(bytes(data))
    return video


def test_tag_does_not_measure_a_video_damaged_in_place(raw, tmp_path):
    ds = tmp_path / "ds"
    ingest([raw], ds, OPTIONS)
    video = _damaged_in_place(ds)
    path = Dataset(ds).samples_manifest
    table = manifest.read_manifest(path, manifest.SAMPLES)
    index = table.schema.get_field_index("features_version")
    table = table.set_column(index, "features_version", pa.nulls(table.num_rows, pa.string()))
    manifest.write_manifest(path, table)
    summary = tag_dataset(ds)
    assert summary.measured == 4
    assert summary.unmeasurable == [video["key"]]


def test_the_label_page_does_not_show_a_video_damaged_in_place(raw, tmp_path):
    ds = tmp_path / "ds"
    ingest([raw], ds, OPTIONS)
    video = _damaged_in_place(ds)
    page = write_label_page(ds, tmp_path / "label.html")
    assert page.cards == 5 and page.unreadable == [video["key"]]
    assert "not the manifest&#x27;s" in page.out.read_text(encoding="utf-8")


def test_verify_counts_a_videos_frames(raw, tmp_path):
    ds = tmp_path / "ds"
    ingest([raw], ds, OPTIONS)
    path = Dataset(ds).samples_manifest
    rows = manifest.read_manifest(path, manifest.SAMPLES).to_pylist()
    for row in rows:
        if row["kind"] == "video":
            row["frames"] += 1
    manifest.write_manifest(path, manifest.rows_to_table(rows, manifest.SAMPLES))
    problems = verify(Dataset(ds), workers=1)
    assert [p.kind for p in problems] == ["video-frames"]
    assert "12 frames, the manifest says 13" in problems[0].detail


def _with_video_row(ds, **changes) -> dict:
    """Change the video's row of samples.parquet: the row as it was."""
    path = Dataset(ds).samples_manifest
    rows = manifest.read_manifest(path, manifest.SAMPLES).to_pylist()
    video = next(row for row in rows if row["format"] == "mov")
    before = dict(video)
    video.update(changes)
    manifest.write_manifest(path, manifest.rows_to_table(rows, manifest.SAMPLES))
    return before


@pytest.mark.parametrize(
    ("width", "height"), [(8, 6), (640, 480), (48, 64)], ids=["smaller", "larger", "swapped"]
)
def test_verify_says_a_video_whose_frames_are_not_its_manifests_size(raw, tmp_path, width, height):
    """As a still's header: the size its stream declares, which readers bound decoding by
    (label refuses a video larger than its row), is its row's width × height."""
    ds = tmp_path / "ds"
    ingest([raw], ds, OPTIONS)
    video = _with_video_row(ds, width=width, height=height)
    [problem] = verify(Dataset(ds), workers=1)
    assert (problem.kind, problem.where) == (
        "member-header",
        f"{video['shard']}:{video['key']}.mov",
    )
    assert problem.detail == f"its header declares 64×48, the manifest's {width}×{height}"


@pytest.mark.parametrize(("rotation", "orientation"), [(90, 8), (-90, 6)])
def test_verify_sizes_a_turned_video_upright(tmp_path, rotation, orientation):
    """A video shown on its side: its row gives the frames upright (48×64), its stream
    declares them as decoded (64×48); a row from before `orientation` was kept turns
    them by `rotation`, and a row that gives the decoded size is caught."""
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "rain.mov").write_bytes(encode_mov(rotation=rotation))
    ds = tmp_path / "ds"
    ingest([tmp_path / "raw"], ds, OPTIONS)
    row = rows_by_name(ds)["rain.mov"]
    assert (row["width"], row["height"], row["orientation"]) == (48, 64, orientation)
    assert verify(Dataset(ds), workers=1) == []
    _with_video_row(ds, orientation=None)  # as an earlier rainbench wrote it
    assert verify(Dataset(ds), workers=1) == []
    _with_video_row(ds, width=64, height=48)
    [problem] = verify(Dataset(ds), workers=1)
    turn = f"rotation {row['rotation']}"
    assert (problem.kind, problem.detail) == (
        "member-header",
        f"its header declares 64×48, the manifest's 64×48 upright ({turn})",
    )


@pytest.mark.parametrize(
    ("kind", "said"),
    [
        (None, "format 'mov' is a video's, kind null"),
        ("still", "format 'mov' is a video's, kind 'still'"),
        ("clip", "kind 'clip' is none of still, video"),
    ],
)
def test_verify_says_a_video_row_not_kept_as_a_video(raw, tmp_path, kind, said):
    """Readers and verify's own video checks tell a video by its row's kind."""
    ds = tmp_path / "ds"
    ingest([raw], ds, OPTIONS)
    video = _with_video_row(ds, kind=kind)
    [problem] = verify(Dataset(ds), workers=1)
    assert (problem.kind, problem.where, problem.detail) == ("row-value", video["key"], said)


def test_the_label_page_says_a_video_larger_than_its_manifest_as_it_says_a_still(raw, tmp_path):
    ds = tmp_path / "ds"
    ingest([raw], ds, OPTIONS)
    path = Dataset(ds).samples_manifest
    rows = manifest.read_manifest(path, manifest.SAMPLES).to_pylist()
    video = next(row for row in rows if row["kind"] == "video")
    video["width"], video["height"] = 8, 6  # its frames are 64×48
    manifest.write_manifest(path, manifest.rows_to_table(rows, manifest.SAMPLES))
    page = write_label_page(ds, tmp_path / "label.html")
    assert page.unreadable == [video["key"]]
    text = page.out.read_text(encoding="utf-8")
    assert "its header declares more pixels than the manifest&#x27;s 8×6" in text
    assert "--max-pixels" not in text  # ingest's option: label has none


def test_a_video_past_the_readers_pixel_cap_is_said_with_what_raises_it(raw, tmp_path, monkeypatch):
    """A video whose frames have more pixels than readers take (ingested under a higher
    --max-pixels): verify and pairs, which have no such option, name the variable that
    raises the readers' cap, and read the video once it is raised."""
    ds = tmp_path / "ds"
    ingest([raw], ds, OPTIONS)
    row = rows_by_name(ds)["rain.mov"]
    videos = (str(ds), row["shard"], [(f"{row['key']}.mov", row["frames"], None)])
    sequence = Sequence(row["key"], row["frames"], (row,))
    # The readers' cap, lowered: a video of frames past 250 MP is too large to make here.
    monkeypatch.setenv("RAINBENCH_MAX_PIXELS", "1000")
    said = "64×48 = 3072 pixels exceeds the cap of 1000 pixels readers keep (RAINBENCH_MAX_PIXELS)"
    (problem,) = check_videos(videos)
    assert (problem.kind, problem.detail) == ("video-unreadable", said)
    with pytest.raises(ShardError) as refused:
        open_frames(ds, sequence)
    assert str(refused.value) == f"{row['shard']}:{row['key']}.mov: {said}"
    page = write_label_page(ds, tmp_path / "label.html")
    assert row["key"] in page.unreadable
    assert "cap readers keep: RAINBENCH_MAX_PIXELS" in page.out.read_text(encoding="utf-8")
    monkeypatch.setenv("RAINBENCH_MAX_PIXELS", str(64 * 48))
    assert check_videos(videos) == []
    with open_frames(ds, sequence) as frames:
        assert len(frames) == row["frames"]


def test_a_burst_needs_one_camera_size_folder_and_short_gaps():
    def row(name: str, seconds: float, **changes) -> dict:
        return {
            "key": hashlib.sha256(name.encode()).hexdigest()[:24],
            "captured_at": START + timedelta(seconds=seconds),
            "source_path": name,
            "camera_make": "Canon",
            "camera_model": "EOS R6",
            "width": 160,
            "height": 120,
            **changes,
        }

    rows = [
        row("a/1.jpg", 0.0),
        row("a/2.jpg", 1.5),
        row("a/3.jpg", 3.5),  # 2.0 s after the one before: still in
        row("a/4.jpg", 5.6),  # 2.1 s: a new run, too short to be a burst
        row("a/5.jpg", 6.0),
        row("b/1.jpg", 0.5),  # another folder
        row("a/x.jpg", 0.7, camera_model="EOS R5"),  # another camera
        row("a/y.jpg", 0.8, width=120, height=160),  # another size
    ]
    table = pa.Table.from_pylist(rows, schema=manifest.SAMPLES)
    grouped = {
        r["source_path"]: (r["sequence"], r["sequence_index"])
        for r in group_bursts(table.take([7, 3, 0, 5, 2, 6, 1, 4])).to_pylist()
    }
    first = rows[0]["key"]
    assert [grouped[f"a/{n}.jpg"] for n in (1, 2, 3)] == [(first, 0), (first, 1), (first, 2)]
    for name in ("a/4.jpg", "a/5.jpg", "b/1.jpg", "a/x.jpg", "a/y.jpg"):
        assert grouped[name] == (None, None)


def test_a_camera_shooting_raw_and_jpeg_makes_a_burst_of_each():
    # The same shots in two formats: one burst of both would hold each shot twice, its
    # RAW previews and JPEGs decoded at other sizes and looks.
    rows = [
        {
            "key": hashlib.sha256(name.encode()).hexdigest()[:24],
            "captured_at": START + timedelta(seconds=shot),
            "source_path": name,
            "format": fmt,
            "camera_make": "Canon",
            "camera_model": "EOS R6",
            "width": 160,
            "height": 120,
        }
        for shot in range(3)
        for name, fmt in ((f"DCIM/IMG_{shot}.CR2", "cr2"), (f"DCIM/IMG_{shot}.JPG", "jpeg"))
    ]
    grouped = group_bursts(pa.Table.from_pylist(rows, schema=manifest.SAMPLES)).to_pylist()
    for first in rows[:2]:
        burst = [r for r in grouped if r["sequence"] == first["key"]]
        assert [(r["format"], r["sequence_index"]) for r in burst] == [
            (first["format"], i) for i in range(3)
        ]


def encode_mjpeg(frames: int = 40) -> bytes:
    """A video of a few MB (noise, barely compressible): more than ingest reads at once."""
    buffer = io.BytesIO()
    rng = np.random.default_rng(3)
    with av.open(buffer, "w", format="matroska") as output:
        stream = output.add_stream("mjpeg", rate=24)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuvj420p"
        stream.options = {"qmin": "1", "qmax": "2"}
        for _ in range(frames):
            picture = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
            output.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        output.mux(stream.encode())
    return buffer.getvalue()


def test_a_video_is_ingested_and_paired_without_being_read_whole(raw, tmp_path, monkeypatch):
    """A lab's video runs to several GB: ingest (probe and shard writer) reads it in
    pieces, and `pairs` decodes it where it lies in the shard."""
    video = raw / "cam" / "big.mkv"
    video.write_bytes(encode_mjpeg())
    size = video.stat().st_size
    asked: list[int] = []
    real_read, real_pread = os.read, os.pread

    def read(fd, n, *at):
        if os.fstat(fd).st_size in (size, video.stat().st_size) and n > 1:
            asked.append(n)
        return real_pread(fd, n, *at) if at else real_read(fd, n)

    monkeypatch.setattr(os, "read", lambda fd, n: read(fd, n))
    monkeypatch.setattr(os, "pread", read)
    ingest([raw], tmp_path / "ds", OPTIONS)
    row = rows_by_name(tmp_path / "ds")["big.mkv"]
    assert row["sha256"] == hashlib.sha256(video.read_bytes()).hexdigest()
    assert asked and max(asked) <= size // 2

    asked.clear()
    real_extract = tarfile.TarFile.extractfile
    monkeypatch.setattr(
        tarfile.TarFile, "extractfile", lambda *args: _Recording(real_extract(*args), asked)
    )
    with open_frames(tmp_path / "ds", Sequence(row["key"], 40, (row,))) as frames:
        assert len(frames) == 40 and frames.read([39]).shape == (1, 240, 320, 3)
    assert asked and max(asked) <= size // 2


class _Recording:
    """A file that records how much each read asks for."""

    def __init__(self, file, asked: list[int]):
        self._file, self._asked = file, asked

    def read(self, size: int = -1) -> bytes:
        self._asked.append(size)
        return self._file.read(size)

    def __getattr__(self, name: str):
        return getattr(self._file, name)


def test_a_video_changed_before_it_is_written_is_dropped_whole(raw, tmp_path, monkeypatch):
    """The same size, other bytes: the member copied in pieces is taken out again and
    the shard holds the other captures, intact."""
    video = raw / "cam" / "rain.mov"
    real_open = write_module.open_capture

    def changed_first(source):
        if source.path.endswith("rain.mov"):
            data = bytearray(video.read_bytes())
            data[len(data) // 2] ^= 0xFF
            video.write_bytes(bytes(data))
        return real_open(source)

    monkeypatch.setattr(write_module, "open_capture", changed_first)
    result = ingest([raw], tmp_path / "ds", OPTIONS)
    assert result.accepted == 4 and result.rejected == {"changed-during-ingest": 1}
    assert "rain.mov" not in rows_by_name(tmp_path / "ds")
    assert verify(Dataset(tmp_path / "ds")) == []
