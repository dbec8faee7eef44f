"""`rainbench pairs` end to end: a tripod rain video and a burst of stills, ingested,
paired into a verified real-paired split whose ground truth is close to the truth,
scored by eval; re-runs, determinism and bad requests."""

import io
import json
import shutil
import tarfile
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from click.testing import CliRunner
from PIL import Image

from rainbench.capture.video import MAX_FRAMES
from rainbench.cli import main
from rainbench.cli import pairs as pairs_cli
from rainbench.cli.synth import pairs_lines
from rainbench.data import RainDataset
from rainbench.demo.captures import CaptureSpec, render_scene, write_picture
from rainbench.ingest import IngestOptions, ingest
from rainbench.leaderboard.eval import CONFIDENT, EvalError, EvalSettings, evaluate
from rainbench.leaderboard.sources import DerainerSource
from rainbench.metrics.fullref import psnr_y
from rainbench.models.registry import create_derainer
from rainbench.pairs import build as build_module
from rainbench.pairs.build import PairsOptions, build_pairs
from rainbench.pairs.estimate import EstimateOptions
from rainbench.shards import manifest
from rainbench.shards.dataset import Dataset, DatasetError
from rainbench.shards.layout import CONFIDENCE, GROUND_TRUTH, RAIN, member
from rainbench.shards.members import open_shard, read_member
from rainbench.shards.verify import verify
from rainbench.synth.video import decode_video, encode_h264, render_rain_video

pytest.importorskip("av")

WIDTH, HEIGHT, FRAMES = 192, 128, 40
EVERYTHING_TEST = {"train": 0.0, "val": 0.0, "test": 1.0}


def _still(seed: int) -> np.ndarray:
    return render_scene(WIDTH, HEIGHT, seed)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """A rendered tripod video in streaks, with shake and a crossing object, as H.264."""
    root = tmp_path_factory.mktemp("video")
    rendered = render_rain_video(_still(3), "streak", FRAMES, seed=1)
    (root / "raw").mkdir()
    encode_h264(rendered.frames, root / "raw" / "tripod.mp4", crf=18)
    return root / "raw", rendered


@pytest.fixture(scope="module")
def _paired(tmp_path_factory, video):
    raw, _ = video
    ds = tmp_path_factory.mktemp("paired") / "ds"
    ingest([raw], ds, IngestOptions(workers=1, split=EVERYTHING_TEST))
    summary = build_pairs(ds, PairsOptions(workers=1))
    return ds, summary


@pytest.fixture
def paired(tmp_path, _paired):
    ds, summary = _paired
    return shutil.copytree(ds, tmp_path / "ds"), summary


def _pairs(ds) -> list[dict]:
    table = manifest.read_manifest(Dataset(ds).synthetic_manifest, manifest.SYNTHETIC)
    return table.to_pylist()


def _member(ds, row: dict, name: str) -> np.ndarray:
    with open_shard(ds, row["shard"]) as tar:
        data = read_member(tar, row["shard"], member(row["key"], name), 10**8)
    return np.asarray(Image.open(io.BytesIO(data)))


def test_a_tripod_video_becomes_a_verified_real_paired_split(paired, video):
    ds, summary = paired
    _, rendered = video
    rows = _pairs(ds)
    assert summary.stored["lab-pairs"] == len(rows) >= 3
    assert verify(Dataset(ds), 1) == []
    samples = manifest.read_manifest(Dataset(ds).samples_manifest, manifest.SAMPLES)
    (video_key,) = samples["key"].to_pylist()
    for row in rows:
        assert row["split"] == "lab-pairs" and row["recipe"].startswith("pairs:")
        assert row["source_key"] == row["group"] == video_key
        assert row["window_start"] <= row["frame_index"] <= row["window_end"]
        assert 0 < row["confidence_mean"] <= 1 and row["gt_psnr_estimate"] > 0
        assert row["members"] == [RAIN, GROUND_TRUTH, CONFIDENCE, "json"]
        rain, gt, confidence = (_member(ds, row, name) for name in (RAIN, GROUND_TRUTH, CONFIDENCE))
        assert rain.shape == gt.shape == (HEIGHT, WIDTH, 3) and confidence.shape == (HEIGHT, WIDTH)
        # The ground truth is near the true background where the map trusts it, and the
        # crossing object is never trusted.
        trusted = confidence >= CONFIDENT
        truth = rendered.backgrounds[row["frame_index"]]
        assert trusted.mean() > 0.3
        assert psnr_y(gt, truth, trusted) > 30
        assert not (trusted & rendered.objects[row["frame_index"]]).any()
        with open_shard(ds, row["shard"]) as tar:
            metadata = json.loads(read_member(tar, row["shard"], member(row["key"], "json"), 10**6))
        assert 0.99 < metadata["exposure_gain"] < 1.01  # the rendered video's light is steady


def test_eval_scores_the_pairs_on_their_trusted_pixels(tmp_path, paired):
    ds, _ = paired
    source = DerainerSource(create_derainer("identity"), "cpu", None, 32)
    settings = EvalSettings(metrics=("psnr_y", "ssim_y"), batch=2, crops=1)
    reports = evaluate(source, ds, "all", tmp_path / "res", settings)
    assert {r.split: r.kind for r in reports} == {"lab-pairs": "real-paired"}
    table = pd.read_parquet(tmp_path / "res" / "identity" / "ds" / "lab-pairs.parquet")
    assert (table.status == "ok").all() and table.psnr_y.notna().all()
    info = json.loads((tmp_path / "res" / "identity" / "ds" / "lab-pairs.json").read_text())
    assert set(info["ground_truth"]["methods"]) <= {"pairs:percentile", "pairs:rain-free"}


def test_running_again_is_a_no_op_and_the_same_video_gives_the_same_bytes(tmp_path, paired, video):
    ds, first = paired
    again = build_pairs(ds, PairsOptions(workers=1))
    assert again.stored["lab-pairs"] == 0
    assert again.existing["lab-pairs"] == first.stored["lab-pairs"]
    other = tmp_path / "other"
    ingest([video[0]], other, IngestOptions(workers=2, split=EVERYTHING_TEST))
    build_pairs(other, PairsOptions(workers=2))
    shards = [
        manifest.read_manifest(Dataset(root).shards_manifest, manifest.SHARDS).to_pylist()
        for root in (ds, other)
    ]
    assert [(s["shard"], s["sha256"]) for s in shards[0]] == [
        (s["shard"], s["sha256"]) for s in shards[1]
    ]


def test_a_burst_of_stills_is_a_sequence_too(tmp_path, write_burst):
    rendered = render_rain_video(_still(5), "drizzle", 8, seed=2, shake=0.0, moving_object=False)
    write_burst(tmp_path / "raw", rendered.frames)
    ds = tmp_path / "ds"
    ingest([tmp_path / "raw"], ds, IngestOptions(workers=1, split=EVERYTHING_TEST))
    samples = manifest.read_manifest(Dataset(ds).samples_manifest, manifest.SAMPLES)
    (burst,) = set(samples["sequence"].to_pylist())
    assert burst is not None, "the stills form one burst"
    summary = build_pairs(ds, PairsOptions(workers=1))
    rows = _pairs(ds)
    assert summary.stored["lab-pairs"] == len(rows) >= 1
    assert verify(Dataset(ds), 1) == []


def test_a_burst_still_whose_bytes_are_not_the_manifests_pairs_nothing(tmp_path, write_burst):
    # Bytes changed in place: the tar reads and the JPEG still decodes, to other pixels,
    # which would go into every estimate of the window as a video's never do.
    rendered = render_rain_video(_still(5), "drizzle", 8, seed=2, shake=0.0, moving_object=False)
    write_burst(tmp_path / "raw", rendered.frames)
    ds = tmp_path / "ds"
    ingest([tmp_path / "raw"], ds, IngestOptions(workers=1, split=EVERYTHING_TEST))
    still = manifest.read_manifest(Dataset(ds).samples_manifest, manifest.SAMPLES).to_pylist()[0]
    name = member(still["key"], still["members"][0])
    with tarfile.open(ds / still["shard"]) as archive:
        offset = archive.getmember(name).offset_data
    with open(ds / still["shard"], "r+b") as shard:
        shard.seek(offset + still["bytes"] // 2)
        shard.write(bytes(64))

    summary = build_pairs(ds, PairsOptions(workers=1))

    assert not summary.stored["lab-pairs"] and summary.failed
    assert all("its bytes are not the manifest's" in why for _, why in summary.failed)


def test_a_burst_shot_in_raw_and_jpeg_is_paired_once_from_its_jpegs(tmp_path):
    pytest.importorskip("rawpy")
    rendered = render_rain_video(_still(5), "drizzle", 6, seed=2, shake=0.0, moving_object=False)
    start = datetime(2026, 5, 1, 14, 0, 0)
    for index, frame in enumerate(rendered.frames):
        for fmt, ext in (("jpeg", "JPG"), ("dng", "DNG")):
            spec = CaptureSpec(
                name=f"DCIM/IMG_{index:04d}.{ext}",
                fmt=fmt,
                width=WIDTH,
                height=HEIGHT,
                captured_at=start + timedelta(seconds=index),
            )
            write_picture(tmp_path / "raw", spec, Image.fromarray(frame))
    ds = tmp_path / "ds"
    ingest([tmp_path / "raw"], ds, IngestOptions(workers=1, split=EVERYTHING_TEST))
    samples = manifest.read_manifest(Dataset(ds).samples_manifest, manifest.SAMPLES).to_pylist()
    bursts = {row["format"]: row["sequence"] for row in samples}
    assert len(samples) == 12 and len(set(bursts.values())) == 2, "a burst of each format"
    summary = build_pairs(ds, PairsOptions(workers=1))
    assert summary.stored["lab-pairs"] >= 1
    assert {row["source_key"] for row in _pairs(ds)} <= {
        row["key"] for row in samples if row["format"] == "jpeg"
    }
    assert (
        bursts["dng"],
        f"the same footage as {bursts['jpeg']} (a near-duplicate): not "
        "paired; pair it with --sequence",
    ) in summary.failed


def test_bad_requests_are_one_line_errors(tmp_path, paired):
    ds, _ = paired
    with pytest.raises(DatasetError, match="no rainy video or burst"):
        build_pairs(ds, PairsOptions(sequences=("0" * 24,), workers=1))
    for name in ("test", "syn-streak", "Bad Name", "all"):  # all: eval --split all
        with pytest.raises(DatasetError, match="--name"):
            build_pairs(ds, PairsOptions(name=name, workers=1))
    # A leaderboard would score it as the public set of that name.
    with pytest.raises(DatasetError, match=r"^--name gt-rain-test is a leaderboard protocol's"):
        build_pairs(ds, PairsOptions(name="gt-rain-test", workers=1))


def test_a_sequence_too_short_to_pair_is_reported_and_nothing_to_pair_is_an_error(tmp_path):
    rendered = render_rain_video(_still(4), "drizzle", 2, seed=3, shake=0.0, moving_object=False)
    (tmp_path / "raw").mkdir()
    encode_h264(rendered.frames, tmp_path / "raw" / "brief.mp4", crf=18)
    write_picture(tmp_path / "raw", CaptureSpec(name="still.jpg"), Image.fromarray(_still(6)))
    ds = tmp_path / "ds"
    ingest([tmp_path / "raw"], ds, IngestOptions(workers=1, split=EVERYTHING_TEST))
    with pytest.raises(DatasetError, match=r"nothing to pair .* has fewer than 4 frames"):
        build_pairs(ds, PairsOptions(workers=1))
    result = CliRunner().invoke(main, ["pairs", str(ds)])
    assert result.exit_code == 1 and "nothing to pair" in result.output

    clean = tmp_path / "clean"
    ingest([tmp_path / "raw"], clean, IngestOptions(workers=1, layer="clean"))
    with pytest.raises(DatasetError, match=r"nothing to pair .* no rainy video"):
        build_pairs(clean, PairsOptions(workers=1))
    with pytest.raises(EvalError, match="nothing to evaluate"):
        evaluate(
            DerainerSource(create_derainer("identity"), "cpu", None, 32),
            clean,
            "all",
            tmp_path / "res",
            EvalSettings(metrics=("psnr_y",)),
        )

    encode_h264(_frames(10), tmp_path / "raw" / "long.mp4", crf=18)
    ingest([tmp_path / "raw"], ds, IngestOptions(workers=1, split=EVERYTHING_TEST))
    summary = build_pairs(ds, PairsOptions(workers=1))
    assert summary.stored["lab-pairs"] >= 1, summary.failed
    (left_out,) = [why for _, why in summary.failed if "not paired" in why]
    assert left_out == "2 frames, fewer than 4: not paired"


def _frames(count: int) -> np.ndarray:
    rendered = render_rain_video(
        _still(7), "drizzle", count, seed=4, shake=0.0, moving_object=False
    )
    return rendered.frames


def test_the_cli_pairs_and_reports(paired):
    ds, _ = paired
    result = CliRunner().invoke(main, ["pairs", str(ds), "--json", "-j", "1"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert not report["stored"] and report["existing"]["lab-pairs"] >= 3


def test_a_killed_run_resumes_to_the_same_bytes(tmp_path, monkeypatch, paired, video):
    ds, _ = paired
    other = tmp_path / "other"
    ingest([video[0]], other, IngestOptions(workers=1, split=EVERYTHING_TEST))
    made = build_module.make_window
    calls = []

    def killed(task):
        calls.append(task)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the run dies while its second window is made
        return made(task)

    monkeypatch.setattr(build_module, "make_window", killed)
    small = PairsOptions(workers=1, shard_bytes=1)  # a shard per window
    with pytest.raises(KeyboardInterrupt):
        build_pairs(other, small)
    monkeypatch.undo()
    assert 0 < len(_pairs(other)) < len(_pairs(ds))
    build_pairs(other, small)
    fresh = tmp_path / "fresh"
    ingest([video[0]], fresh, IngestOptions(workers=1, split=EVERYTHING_TEST))
    build_pairs(fresh, small)
    shards = [
        manifest.read_manifest(Dataset(root).shards_manifest, manifest.SHARDS).to_pylist()
        for root in (other, fresh)
    ]
    assert [s["sha256"] for s in shards[0]] == [s["sha256"] for s in shards[1]]
    assert verify(Dataset(other), 1) == []


def test_the_loader_reads_real_pairs_with_their_confidence(paired):
    ds, _ = paired
    data = RainDataset(ds, mode="paired", paired_split="lab-pairs", crop=32, crops_per_image=2)
    crops = list(data)
    assert len(crops) == 2 * len(_pairs(ds))
    for crop in crops:
        assert crop["rain"].shape == crop["gt"].shape == (3, 32, 32)
        assert crop["gt_confidence"].shape == (1, 32, 32)
        assert 0 <= float(crop["gt_confidence"].min()) <= float(crop["gt_confidence"].max()) <= 1


def test_options_out_of_range_are_one_line_errors(paired):
    ds, _ = paired
    with pytest.raises(DatasetError, match="percentile"):
        build_pairs(ds, PairsOptions(estimate=EstimateOptions(percentile=120), workers=1))


def test_workers_are_as_many_as_the_free_memory_holds(monkeypatch, paired):
    ds, _ = paired
    sequences = build_module.find_sequences(Dataset(ds))
    window = 3 * FRAMES * 3 * WIDTH * HEIGHT  # three copies of a window's 8-bit frames
    need = (256 << 20) + sequences[0].rows[0]["bytes"] + window
    for available, workers in ((1, 1), (2 * need + need // 2, 2), (10 * need, 10)):
        monkeypatch.setattr(build_module, "available_memory", lambda free=available: free)
        assert build_module._workers_for_memory(sequences, EstimateOptions(window=64)) == workers


def test_a_split_holds_the_pairs_of_one_set_of_options(paired):
    ds, _ = paired
    # The refusal says what the split holds, as the command's options name it.
    for asked, said in (
        (EstimateOptions(stride=4), r"made with --stride 8 \(these: --stride 4\); give"),
        (
            EstimateOptions(register=False, max_shift=4.0),
            r"made with --register max_shift 8.0 \(these: --no-register max_shift 4.0\)",
        ),
    ):
        with pytest.raises(DatasetError, match=said):
            build_pairs(ds, PairsOptions(estimate=asked, workers=1))
    summary = build_pairs(ds, PairsOptions(name="dense", estimate=EstimateOptions(stride=4)))
    assert summary.stored["dense"] > len([r for r in _pairs(ds) if r["split"] == "lab-pairs"])


def test_a_split_made_by_an_earlier_version_is_made_again(paired):
    ds, _ = paired
    path = Dataset(ds).synthetic_manifest
    table = manifest.read_manifest(path, manifest.SYNTHETIC)
    before = sorted(table["key"].to_pylist())
    shards = sorted(Path(ds, "shards", "synthetic", "lab-pairs").iterdir())
    jobs = [
        job.replace(f"pairs@{build_module.VERSION}:", "pairs@1:")
        for job in table["job"].to_pylist()
    ]
    earlier = table.set_column(table.schema.get_field_index("job"), "job", pa.array(jobs))
    manifest.write_manifest(path, earlier)
    summary = build_pairs(ds, PairsOptions(workers=1))
    assert summary.replaced["lab-pairs"] == len(before) == summary.stored["lab-pairs"]
    again = manifest.read_manifest(path, manifest.SYNTHETIC)
    assert sorted(again["key"].to_pylist()) == before
    assert all(job.startswith(f"pairs@{build_module.VERSION}:") for job in again["job"].to_pylist())
    assert verify(Dataset(ds), 1) == []
    # Only the new shards are left, each listed once.
    listed = manifest.read_manifest(Dataset(ds).shards_manifest, manifest.SHARDS).to_pylist()
    names = sorted(row["shard"] for row in listed if row["split"] == "lab-pairs")
    folder = Path(ds, "shards", "synthetic", "lab-pairs")
    assert names == sorted(path.relative_to(ds).as_posix() for path in folder.iterdir())
    assert len(names) == len(shards)
    line = "lab-pairs: its 5 pairs of an earlier version of rainbench pairs were made again"
    assert line.replace("5", str(len(before))) in "\n".join(pairs_lines(summary))


def _contents(ds) -> set[tuple]:
    return {
        (row["source_key"], row["frame_index"], row["rain_sha256"], row["gt_sha256"])
        for row in _pairs(ds)
    }


def _video_key(ds) -> str:
    samples = manifest.read_manifest(Dataset(ds).samples_manifest, manifest.SAMPLES)
    (key,) = [row["key"] for row in samples.to_pylist() if row["kind"] == "video"]
    return key


def _shard_digests(ds) -> list[tuple[str, str]]:
    listed = manifest.read_manifest(Dataset(ds).shards_manifest, manifest.SHARDS).to_pylist()
    return sorted((s["shard"], s["sha256"]) for s in listed if s["split"] == "lab-pairs")


def test_a_burst_that_grew_is_paired_again_in_place_of_its_old_pairs(
    tmp_path, monkeypatch, video, write_burst
):
    # 12 stills paired (frames 1 and 9) beside a video, in one shard; 8 stills more of
    # the same burst: its pairs (1, 9, 17 now) replace the old ones, never beside them,
    # and the video's pairs that shared their shard are made again as they were.
    rendered = render_rain_video(_still(5), "streak", 20, seed=2, shake=0.0)
    raw = tmp_path / "raw"
    shutil.copytree(video[0], raw / "video")
    write_burst(raw, rendered.frames[:12])
    grown = tmp_path / "grown"
    ingest([raw], grown, IngestOptions(workers=1, split=EVERYTHING_TEST))
    build_pairs(grown, PairsOptions(workers=1))
    (burst,) = {r["source_key"] for r in _pairs(grown)} - {_video_key(grown)}
    assert sorted(r["frame_index"] for r in _pairs(grown) if r["source_key"] == burst) == [1, 9]
    write_burst(raw, rendered.frames[12:], first=12)
    ingest([raw], grown, IngestOptions(workers=1, split=EVERYTHING_TEST))
    before = shutil.copytree(grown, tmp_path / "before")

    summary = build_pairs(grown, PairsOptions(workers=1))
    indices = [r["frame_index"] for r in _pairs(grown) if r["source_key"] == burst]
    assert sorted(indices) == [1, 9, 17]
    assert summary.changed["lab-pairs"] == 2 and summary.to_dict()["changed"] == {"lab-pairs": 2}
    assert verify(Dataset(grown), 1) == []
    folder = Path(grown, "shards", "synthetic", "lab-pairs")
    on_disk = sorted(path.relative_to(grown).as_posix() for path in folder.iterdir())
    assert on_disk == [shard for shard, _ in _shard_digests(grown)]
    # The same pairs as a dataset that held all 20 stills from the start.
    fresh = tmp_path / "fresh"
    ingest([raw], fresh, IngestOptions(workers=1, split=EVERYTHING_TEST))
    build_pairs(fresh, PairsOptions(workers=1))
    assert _contents(grown) == _contents(fresh)
    line = "lab-pairs: 2 pairs of sequences whose frames changed since were replaced"
    assert line in pairs_cli._lines(summary)
    # Asked for the burst alone: the video's pairs that shared its shard are made again
    # too, not lost.
    only = shutil.copytree(before, tmp_path / "only-the-burst")
    build_pairs(only, PairsOptions(workers=1, sequences=(burst,)))
    assert _contents(only) == _contents(fresh)

    # Killed after the old pairs are dropped, before or while the new ones are made: a
    # re-run ends as the uninterrupted run did.
    for where in ("write_pairs", "make_window"):
        killed = shutil.copytree(before, tmp_path / f"killed-{where}")

        def die(*args, **kwargs):
            raise KeyboardInterrupt

        monkeypatch.setattr(build_module, where, die)
        with pytest.raises(KeyboardInterrupt):
            build_pairs(killed, PairsOptions(workers=1))
        monkeypatch.undo()
        build_pairs(killed, PairsOptions(workers=1))
        assert _contents(killed) == _contents(grown)
        assert _shard_digests(killed) == _shard_digests(grown)
        assert verify(Dataset(killed), 1) == []


def test_the_same_footage_in_two_containers_is_paired_once(tmp_path, video):
    import av

    raw = shutil.copytree(video[0], tmp_path / "raw")
    with av.open(str(raw / "tripod.mp4")) as source, av.open(str(raw / "copy.mkv"), "w") as out:
        stream = out.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    # Another take from the same tripod: a near-duplicate too, but with other drops.
    take = render_rain_video(_still(3), "streak", FRAMES, seed=2)
    encode_h264(take.frames, raw / "take.mp4", crf=18)
    ds = tmp_path / "ds"
    ingest([raw], ds, IngestOptions(workers=1, split=EVERYTHING_TEST))
    samples = manifest.read_manifest(Dataset(ds).samples_manifest, manifest.SAMPLES).to_pylist()
    key = {row["source_path"]: row["key"] for row in samples}
    assert sum(1 for row in samples if row["near_dup_of"]) == 2
    summary = build_pairs(ds, PairsOptions(workers=1))
    paired = {row["source_key"] for row in _pairs(ds)}
    (kept,) = paired & {key["tripod.mp4"], key["copy.mkv"]}
    (left,) = {key["tripod.mp4"], key["copy.mkv"]} - {kept}
    assert paired == {kept, key["take.mp4"]}
    why = f"the same footage as {kept} (a near-duplicate): not paired; pair it with --sequence"
    assert (left, why) in summary.failed
    # Asked for by key, it is paired.
    build_pairs(ds, PairsOptions(name="copy", sequences=(left,), workers=1))
    assert {r["source_key"] for r in _pairs(ds) if r["split"] == "copy"} == {left}


def test_a_remux_of_a_clip_whose_middle_frame_repeats_is_the_same_footage():
    # A frame-rate conversion repeats frames: where the middle one repeats, the clip's
    # own step is 0, and a remux (the same pixels) must still count as its copy.
    frame = _still(3).mean(axis=2, dtype=np.float32)
    repeated = np.stack([frame, frame])
    original = build_module.Sequence("original", FRAMES, ({},))
    copy = build_module.Sequence("copy", FRAMES, ({},))
    middles = {"original": repeated, "copy": repeated.copy()}
    assert build_module._same_footage(Path("."), original, copy, middles)
    # Another take has other drops: not the same footage, however still the original.
    middles["copy"] = repeated + np.float32(1)
    middles["copy"][0, 10:20, 10:12] += 80
    assert not build_module._same_footage(Path("."), original, copy, middles)


@pytest.mark.parametrize("height", [66, 64, 2])
def test_the_renderers_videos_take_any_even_size(height):
    # yuv420p's chroma planes are (H/2)×(W/2): laid out flat, not as rows of W, which
    # an H/2 that is odd (270, 358, 66 rows) cannot fill.
    frame = np.zeros((height, 96, 3), np.uint8)
    split = 2 * (height // 4)  # on a chroma row's edge: each 2×2 block is one colour
    frame[:split] = (200, 40, 40)
    frame[split:] = (30, 60, 210)
    (decoded,) = decode_video(encode_h264([frame], crf=0))
    assert decoded.shape == frame.shape
    assert np.abs(decoded.astype(int) - frame).mean() < 4


def test_a_sequences_frames_are_closed_with_it(tmp_path, video, monkeypatch):
    # A video's shard (and from a store its temporary copy) is held while its frames are
    # read, and closed with the `with` block, not whenever the garbage collector runs.
    ds = tmp_path / "ds"
    ingest([video[0]], ds, IngestOptions(workers=1, split=EVERYTHING_TEST))
    (sequence,) = build_module.find_sequences(Dataset(ds))
    opened, original = [], build_module.open_shard

    def recording(*args):
        opened.append(original(*args))
        return opened[-1]

    monkeypatch.setattr(build_module, "open_shard", recording)
    with build_module.open_frames(ds, sequence) as frames:
        frames.read([0])
        assert not opened[0].fileobj.closed
    assert opened[0].fileobj.closed


def _counting(ds, frames: int) -> list[dict]:
    """Rewrite every sample row of `ds` to count `frames` frames; the rows."""
    path = Dataset(ds).samples_manifest
    rows = manifest.read_manifest(path, manifest.SAMPLES).to_pylist()
    rows = [{**row, "frames": frames} for row in rows]
    manifest.write_manifest(path, pa.Table.from_pylist(rows, schema=manifest.SAMPLES))
    return rows


def test_a_forged_frame_count_does_not_drop_the_pairs_already_made(paired):
    # Windows are planned from the count, so a raised count reads as frames that changed
    # since: the video is opened before its pairs would be dropped, and it fails alone.
    ds, _ = paired
    before = _pairs(ds)
    rows = _counting(ds, 400)

    summary = build_pairs(ds, PairsOptions(workers=1))

    assert _pairs(ds) == before
    assert not summary.changed["lab-pairs"] and not summary.stored["lab-pairs"]
    [(key, why)] = summary.failed
    assert key == rows[0]["key"] and why.endswith("the manifest says 400 (run rainbench verify)")


def test_a_frame_count_no_video_holds_fails_as_the_video_opens(paired):
    # 10¹² frames would plan windows without end: the video fails once, its pairs kept.
    ds, _ = paired
    before = _pairs(ds)
    rows = _counting(ds, 10**12)

    summary = build_pairs(ds, PairsOptions(workers=1))

    assert _pairs(ds) == before
    [(key, why)] = summary.failed
    assert key == rows[0]["key"]
    assert why == (
        f"not paired: the manifest says {10**12} frames, more than a video may hold "
        f"({MAX_FRAMES}): run rainbench verify"
    )


def test_a_video_too_small_to_estimate_from_fails_alone(tmp_path):
    # 24×16 px frames: too little scene to register, or to find rain in.
    raw = tmp_path / "raw"
    raw.mkdir()
    rendered = render_rain_video(render_scene(24, 16, 1), "streak", 12, seed=1)
    encode_h264(rendered.frames, raw / "tiny.mp4", crf=18)
    ds = tmp_path / "ds"
    ingest([raw], ds, IngestOptions(workers=1, split=EVERYTHING_TEST))

    result = CliRunner().invoke(main, ["pairs", str(ds), "-j", "1", "--no-progress"])

    assert result.exit_code == 1
    assert "not paired: frames of 24×16 px: pairs needs 32 px a side\n" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_run_that_pairs_nothing_fails_the_command(tmp_path, video):
    # Its only video fails as it opens: the failure is reported and the run exits 1,
    # since nothing was made; a failure beside stored pairs is reported only (above).
    ds = tmp_path / "ds"
    ingest([video[0]], ds, IngestOptions(workers=1, split=EVERYTHING_TEST))
    _counting(ds, 400)

    result = CliRunner().invoke(main, ["pairs", str(ds), "-j", "1", "--no-progress"])

    assert result.exit_code == 1
    assert "the manifest says 400" in result.stderr
    assert result.stderr.endswith(
        "error: no pair stored: no frame of any sequence could be paired (failed: above)\n"
    )


def test_a_video_without_the_frames_its_row_counts_fails_alone(tmp_path, video, write_burst):
    # A video row's `frames` raised past the real count, and a still re-marked as a
    # video: windows are planned from the count, so each fails once, as it opens, and
    # the burst beside them is paired.
    raw = shutil.copytree(video[0], tmp_path / "raw")
    rendered = render_rain_video(_still(5), "drizzle", 8, seed=2, shake=0.0, moving_object=False)
    write_burst(raw, rendered.frames)
    write_picture(raw, CaptureSpec(name="still.jpg"), Image.fromarray(_still(6)))
    ds = tmp_path / "ds"
    ingest([raw], ds, IngestOptions(workers=1, split=EVERYTHING_TEST))
    path = Dataset(ds).samples_manifest
    rows = manifest.read_manifest(path, manifest.SAMPLES).to_pylist()
    forged = {"tripod.mp4": {"frames": 400}, "still.jpg": {"kind": "video", "frames": FRAMES}}
    rows = [{**row, **forged.get(row["source_path"], {})} for row in rows]
    manifest.write_manifest(path, pa.Table.from_pylist(rows, schema=manifest.SAMPLES))

    summary = build_pairs(ds, PairsOptions(workers=1))
    key = {row["source_path"]: row for row in rows}
    assert {r["source_key"] for r in _pairs(ds)} == {key["burst/IMG_0000.jpg"]["sequence"]}
    failed = dict(summary.failed)
    assert set(failed) == {key["tripod.mp4"]["key"], key["still.jpg"]["key"]}
    for name, counts in (("tripod.mp4", f"{FRAMES} frames, the manifest says 400"),
                         ("still.jpg", f"1 frames, the manifest says {FRAMES}")):  # fmt: skip
        row = key[name]
        where = f"{row['shard']}:{row['key']}.{name.split('.')[1]}"
        assert failed[row["key"]] == f"not paired: {where}: {counts} (run rainbench verify)"
    # Asked for the video alone, nothing of what was asked is made: exit 1, the burst's
    # pairs kept; the whole dataset again finds the burst's pairs there: exit 0.
    before = _pairs(ds)
    args = ["pairs", str(ds), "-j", "1", "--no-progress"]
    alone = CliRunner().invoke(main, [*args, "--sequence", key["tripod.mp4"]["key"]])
    assert alone.exit_code == 1 and "error: no pair stored" in alone.stderr
    assert CliRunner().invoke(main, args).exit_code == 0
    assert _pairs(ds) == before


def test_a_burst_whose_only_target_is_rain_free_says_why_nothing_is_stored(tmp_path, write_burst):
    # 8 stills, the first 4 dry: at --stride 8 the one target is frame 3, which is dry
    # and so never paired; at --stride 1 the 4 rainy ones are paired.
    rendered = render_rain_video(
        _still(5), "streak", 8, seed=2, shake=0.0, moving_object=False, rain_free_lead=4
    )
    write_burst(tmp_path / "raw", rendered.frames)
    ds = tmp_path / "ds"
    ingest([tmp_path / "raw"], ds, IngestOptions(workers=1, split=EVERYTHING_TEST))
    (burst,) = set(
        manifest.read_manifest(Dataset(ds).samples_manifest, manifest.SAMPLES)[
            "sequence"
        ].to_pylist()
    )
    args = ["pairs", str(ds), "--sequence", burst, "-j", "1", "--no-progress"]

    result = CliRunner().invoke(main, args)

    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"failed: {burst}: not paired: frame 3, the one --stride 8 picks, is rain-free (a dry "
        "frame is never paired as rainy); --stride 1 pairs every frame, 4 rainy ones among them",
        "error: no pair stored: no frame of any sequence could be paired (failed: above)",
    ]
    again = CliRunner().invoke(main, [*args, "--stride", "1"])
    assert again.exit_code == 0 and "lab-pairs: 4 pairs stored" in again.output, again.output
    # Their ground truth is the dry frames 0-3, a window each paired frame lies after:
    # the manifest reads and verifies as any other.
    assert {(row["recipe"], row["window_start"], row["window_end"]) for row in _pairs(ds)} == {
        ("pairs:rain-free", 0, 3)
    }
    assert verify(Dataset(ds), 1) == []


def test_a_sequence_asked_for_twice_is_paired_once(paired):
    # `--sequence K --sequence K`: each pair once, not a key listed twice in the manifest
    # and a shard holding every member twice.
    ds, first = paired
    key = _video_key(ds)

    summary = build_pairs(ds, PairsOptions(name="twice", sequences=(key, key), workers=1))

    rows = [row for row in _pairs(ds) if row["split"] == "twice"]
    assert summary.stored["twice"] == len(rows) == first.stored["lab-pairs"]
    assert len({row["key"] for row in rows}) == len(rows)
    assert verify(Dataset(ds), 1) == []


def test_the_order_sequences_are_asked_for_in_does_not_change_the_shards(tmp_path, video):
    raw = shutil.copytree(video[0], tmp_path / "raw")
    encode_h264(_frames(10), raw / "short.mp4", crf=18)
    ingested = tmp_path / "ingested"
    ingest([raw], ingested, IngestOptions(workers=1, split=EVERYTHING_TEST))
    samples = manifest.read_manifest(Dataset(ingested).samples_manifest, manifest.SAMPLES)
    keys = sorted(samples["key"].to_pylist())
    digests = []
    for order in (keys, keys[::-1]):
        ds = shutil.copytree(ingested, tmp_path / order[0])
        build_pairs(ds, PairsOptions(workers=1, sequences=tuple(order)))
        digests.append(_shard_digests(ds))
    assert digests[0] == digests[1] and len(digests[0]) == 1


def test_a_bursts_clean_stills_are_its_rain_free_frames_and_keep_its_numbering(
    tmp_path, write_burst
):
    # The 4 stills shot before the rain ingested with --layer clean, the 8 after it as
    # rainy: one burst of 12. Each pair's frame_index is its still's sequence_index, and
    # the clean stills are never paired but are the ground truth.
    rendered = render_rain_video(
        _still(5), "streak", 12, seed=2, shake=0.0, moving_object=False, rain_free_lead=4
    )
    raw, ds = tmp_path / "raw", tmp_path / "ds"
    write_burst(raw, rendered.frames[:4])
    ingest([raw], ds, IngestOptions(workers=1, layer="clean", split=EVERYTHING_TEST))
    write_burst(raw, rendered.frames[4:], first=4)
    ingest([raw], ds, IngestOptions(workers=1, split=EVERYTHING_TEST))
    samples = manifest.read_manifest(Dataset(ds).samples_manifest, manifest.SAMPLES).to_pylist()
    (burst,) = {row["sequence"] for row in samples}
    rainy = {row["sequence_index"]: row for row in samples if row["layer"] == "rainy"}

    build_pairs(ds, PairsOptions(workers=1, estimate=EstimateOptions(stride=1)))

    rows = _pairs(ds)
    assert sorted(row["frame_index"] for row in rows) == sorted(rainy) == list(range(4, 12))
    for row in rows:
        still = rainy[row["frame_index"]]
        with open_shard(ds, still["shard"]) as tar:
            data = read_member(tar, still["shard"], member(still["key"], "jpg"), 10**8)
        decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        assert np.array_equal(_member(ds, row, RAIN), decoded)
        assert (row["source_key"], row["recipe"], row["window_start"], row["window_end"]) == (
            burst,
            "pairs:rain-free",
            0,
            3,
        )
    assert verify(Dataset(ds), 1) == []


@pytest.mark.parametrize("where", ["find_rain_free", "estimate_window"])
def test_a_window_too_large_for_the_memory_fails_in_one_line(tmp_path, monkeypatch, video, where):
    # Finding the dry frames reads chunks of --window frames, estimating a window all of
    # them: where they do not fit, the sequence (or the window) fails, said in one line.
    ds = tmp_path / "ds"
    ingest([video[0]], ds, IngestOptions(workers=1, split=EVERYTHING_TEST))

    def too_large(*args):
        raise MemoryError

    monkeypatch.setattr(build_module, where, too_large)
    result = CliRunner().invoke(main, ["pairs", str(ds), "-j", "1", "--no-progress"])

    assert result.exit_code == 1 and "Traceback" not in result.stderr
    said = f"not enough memory for 31 frames of {WIDTH}×{HEIGHT} at once: give a smaller "
    assert f"{said}--window, or fewer --workers\n" in result.stderr
    nothing = "error: no pair stored: no frame of any sequence could be paired (failed: above)"
    assert result.stderr.endswith(f"{nothing}\n")


def test_stills_without_a_capture_time_are_named_when_nothing_is_paired(tmp_path):
    # A burst is stills shot close together by their EXIF time: without one, none is a
    # burst, and the error says why rather than that there are no stills.
    for index in range(6):
        spec = CaptureSpec(name=f"burst/IMG_{index:04d}.jpg", width=WIDTH, height=HEIGHT)
        write_picture(tmp_path / "raw", spec, Image.fromarray(_still(index)))
    ds = tmp_path / "ds"
    ingest([tmp_path / "raw"], ds, IngestOptions(workers=1, split=EVERYTHING_TEST))

    said = r"; 6 rainy stills without a capture time \(EXIF DateTimeOriginal\), which a burst needs"
    with pytest.raises(DatasetError, match=rf"^nothing to pair in .*: no rainy video .*{said}$"):
        build_pairs(ds, PairsOptions(workers=1))
