"""`rainbench score` telling the user what it did: files it cannot read, predictions
that match no reference, a metric's failure, an infinite PSNR in the mean, and JSON
that any parser reads."""

import json
import math
import os
import struct
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from PIL import Image

from rainbench.cli import main
from rainbench.cli.output import to_json
from rainbench.metrics.engine import pair_folders
from rainbench.metrics.fullref import matlab_y


def _save(path, seed, size=(48, 64)):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return pixels


def _score(pred, ref, tmp_path, *extra):
    out = tmp_path / "scores.parquet"
    arguments = ["score", "--pred", str(pred), "--ref", str(ref), "--out", str(out)]
    return CliRunner().invoke(main, [*arguments, "--no-cache", "-j", "1", *extra])


def test_a_file_that_is_no_image_is_listed_not_ignored(tmp_path):
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    _save(ref / "a.png", 0)
    _save(pred / "a.png", 1)
    np.save(pred / "b.npy", np.zeros((4, 4, 3), np.float32))
    (pred / ".DS_Store").write_bytes(b"hidden")
    pairing = pair_folders(pred, ref)
    assert pairing.unsupported_pred == ["b.npy"] and pairing.unsupported_ref == []
    result = _score(pred, ref, tmp_path, "--metrics", "psnr")
    assert result.exit_code == 0, result.output
    assert "unsupported prediction (not an image file rainbench reads): b.npy" in result.output
    assert ".DS_Store" not in result.output


def test_a_video_is_listed_as_unsupported_and_its_bytes_under_an_image_name_refused(tmp_path):
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    mp4 = b"\x00\x00\x00\x18ftypisom" + bytes(100)
    _save(ref / "a.png", 0)
    _save(pred / "a.png", 1)
    (pred / "a.mp4").write_bytes(mp4)  # beside a.png: not a second prediction of a
    (ref / "clip.MOV").write_bytes(mp4)
    _save(ref / "b.png", 2)
    (pred / "b.png").write_bytes(mp4)
    pairing = pair_folders(pred, ref)
    assert (pairing.unsupported_pred, pairing.unsupported_ref) == (["a.mp4"], ["clip.MOV"])
    result = _score(pred, ref, tmp_path, "--metrics", "psnr", "--json")
    assert result.exit_code == 0, result.output
    assert "unsupported prediction (not an image file rainbench reads): a.mp4" in result.stderr
    [error] = json.loads(result.stdout)["errors"]
    assert error["status"] == "error: b.png is not an image that can be scored"


def test_json_accounts_for_every_file_it_did_not_score(tmp_path):
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    _save(ref / "a.png", 0)
    _save(pred / "a.png", 1)
    _save(pred / "only-pred.png", 2)
    _save(ref / "sub" / "only-ref.png", 3)
    np.save(pred / "b.npy", np.zeros((4, 4, 3), np.float32))
    _save(tmp_path / "private" / "c.png", 4)
    pred.joinpath("c.png").symlink_to(tmp_path / "private" / "c.png")
    result = _score(pred, ref, tmp_path, "--metrics", "psnr", "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert [line["images"] for line in found["summary"]] == [1]
    assert {key: found[key] for key in found if key not in ("out", "summary", "errors")} == {
        "unmatched_pred": ["only-pred.png"],
        "unmatched_ref": ["sub/only-ref.png"],
        "unsupported_pred": ["b.npy"],
        "unsupported_ref": [],
        "outside_pred": ["c.png"],
        "outside_ref": [],
    }


def test_an_image_name_that_cannot_be_read_is_its_rows_error_not_left_unsaid(tmp_path):
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    for name in ("a", "b", "c", "d", "e"):
        _save(ref / f"{name}.png", 0)
    _save(pred / "a.png", 0)
    (pred / "b.png").symlink_to("gone.png")  # a derainer's output link to a deleted file
    os.mkfifo(pred / "c.png")  # reading it would block for ever
    (pred / "d.png").symlink_to("d.png")
    _save(pred / "e.png", 0)
    (ref / "e.png").unlink()
    (ref / "e.png").symlink_to("gone.png")
    result = _score(pred, ref, tmp_path, "--metrics", "psnr", "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["unmatched_pred"] == found["unmatched_ref"] == []
    assert {row["name"]: row["status"] for row in found["errors"]} == {
        "b.png": "error: cannot read: No such file or directory",
        "c.png": "error: not a regular file: a FIFO",
        "d.png": "error: cannot read: Too many levels of symbolic links",
        "e.png": "error: reference e.png: cannot read: No such file or directory",
    }


def test_a_reference_that_does_not_decode_is_named_as_the_reference(tmp_path):
    # Paired files share their name: a status naming only the file reads as the prediction's.
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    for name in ("a", "b"):
        _save(pred / f"{name}.png", 0)
        _save(ref / f"{name}.png", 0)
    whole = (ref / "a.png").read_bytes()
    (ref / "a.png").write_bytes(whole[: len(whole) // 2])
    (pred / "b.png").write_bytes(whole[: len(whole) // 2])
    result = _score(pred, ref, tmp_path, "--metrics", "psnr", "--json")
    assert {row["name"]: row["status"] for row in json.loads(result.stdout)["errors"]} == {
        "a.png": "error: reference a.png does not decode: image file is truncated",
        "b.png": "error: b.png does not decode: image file is truncated",
    }


def test_a_link_leading_out_of_the_folder_is_said_and_not_scored(tmp_path):
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    _save(ref / "a.png", 0)
    _save(ref / "b.png", 1)
    _save(pred / "a.png", 1)
    _save(tmp_path / "private" / "b.png", 2)
    pred.joinpath("b.png").symlink_to(tmp_path / "private" / "b.png")
    result = _score(pred, ref, tmp_path, "--metrics", "psnr", "--json")
    assert result.exit_code == 0, result.output
    assert "left out: prediction b.png is a link leading out of its folder" in result.stderr
    rows = pq.read_table(tmp_path / "scores.parquet").to_pylist()
    assert [row["name"] for row in rows] == ["a.png"]


def test_a_float_tiff_is_named_as_such(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    truth = _save(ref / "a.png", 0)
    pred.mkdir()
    tifffile.imwrite(pred / "a.tif", truth.astype(np.float32) / 255, photometric="rgb")
    # One channel, which Pillow would read as black.
    _save(ref / "b.png", 1)
    Image.fromarray(np.full((48, 64), 0.5, np.float32)).save(pred / "b.tif")
    result = _score(pred, ref, tmp_path, "--metrics", "psnr", "--json")
    errors = json.loads(result.stdout)["errors"]
    for error, name in zip(errors, ("a.tif", "b.tif"), strict=True):
        assert error["status"] == (
            f"error: {name} is a floating-point TIFF, which is not scored: save the output as "
            "an 8- or 16-bit image (PNG, TIFF)"
        )


def test_a_metric_failure_names_the_metric_once(tmp_path):
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    _save(ref / "a.png", 0)
    _save(pred / "a.png", 1, size=(40, 64))
    result = _score(pred, ref, tmp_path, "--metrics", "psnr_y,psnr", "--json")
    [error] = json.loads(result.stdout)["errors"]
    assert error["status"] == (
        "error: prediction 64×40 and reference 64×48 differ in size: psnr_y, psnr not scored"
    )


def test_images_are_compared_upright_and_a_turn_that_differs_is_said(tmp_path):
    """A phone's JPEG stored 48×64 with EXIF orientation 6 is shown 64×48: scored upright
    (as OpenCV reads it), and a prediction of its stored, unturned pixels is told why its
    size differs."""
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    upright = _save(pred / "upright.png", 0)  # 48 rows, 64 columns
    stored = np.ascontiguousarray(np.rot90(upright))  # orientation 6 turns it back
    exif = Image.Exif()
    exif[0x0112] = 6
    for name in ("upright", "unturned"):
        (ref / f"{name}.jpg").parent.mkdir(exist_ok=True)
        Image.fromarray(stored).save(ref / f"{name}.jpg", quality=100, subsampling=0, exif=exif)
    Image.fromarray(stored).save(pred / "unturned.png")
    result = _score(pred, ref, tmp_path, "--metrics", "psnr", "--json")
    [error] = json.loads(result.stdout)["errors"]
    assert error["name"] == "unturned.png" and error["status"] == (
        "error: prediction 48×64 and reference 64×48 differ in size (the reference is turned "
        "upright by its EXIF orientation 6; as stored, unturned, it has the prediction's "
        "size): psnr not scored"
    )
    [row] = pq.read_table(tmp_path / "scores.parquet").to_pylist()[1:]
    assert row["name"] == "upright.png" and row["psnr"] > 40  # only the JPEG's loss


def _png16(path, samples):
    """A 16-bit PNG of `samples` (uint16 H×W grey or H×W×3 RGB), written by hand: Pillow
    writes no 16-bit RGB."""
    height, width = samples.shape[:2]
    colour = 2 if samples.ndim == 3 else 0
    rows = samples.astype(">u2").reshape(height, -1).view(np.uint8)
    raw = b"".join(b"\0" + row.tobytes() for row in rows)  # filter 0 on each row

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 16, colour, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )  # fmt: skip


def test_16_bit_samples_are_scored_as_their_high_byte(tmp_path):
    """v >> 8, in grey and in colour, as Pillow and OpenCV read a 16-bit PNG (MATLAB's
    im2uint8 rounds v / 257 instead: metrics.md)."""
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    pred.mkdir()
    ref.mkdir()
    samples = np.random.default_rng(0).integers(0, 65536, (48, 64, 3), dtype=np.uint16)
    high = (samples >> 8).astype(np.uint8)
    _png16(pred / "rgb.png", samples)
    _png16(pred / "grey.png", samples[..., 1])
    Image.fromarray(high).save(ref / "rgb.png")
    Image.fromarray(high[..., 1]).convert("RGB").save(ref / "grey.png")
    result = _score(pred, ref, tmp_path, "--metrics", "psnr")
    assert result.exit_code == 0, result.output
    values = pq.read_table(tmp_path / "scores.parquet").column("psnr").to_pylist()
    assert values == [math.inf, math.inf]


def test_when_no_name_matches_it_says_so_with_an_example_of_each_side(tmp_path):
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    _save(ref / "a.png", 0)
    _save(pred / "a_derained.png", 0)
    _save(pred / "b_derained.png", 1)
    result = _score(pred, ref, tmp_path, "--metrics", "psnr")
    assert result.exit_code == 1
    assert (
        f"error: none of the 2 images in {pred} has a reference of the same name in {ref} "
        "(paired by path without extension): e.g. prediction a_derained.png, reference a.png"
    ) in result.output


def test_names_found_twice_on_one_side_are_said_to_be_ambiguous_not_missing(tmp_path):
    # Before: "none of the 2 images … has a reference of the same name" (it has), and with
    # no --ref, "no images in None to score the 2 … against".
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    _save(ref / "a.png", 0)
    _save(pred / "a.png", 0)
    _save(pred / "a.jpg", 0)  # the derainer run again, writing JPEG
    twice = f"error: a.jpg and a.png in {pred} have the same path without extension, by which"
    for extra in ((), ("--ref", str(ref))):
        out = ["--out", str(tmp_path / "s.parquet"), "--no-cache", "--metrics", "piqe"]
        result = CliRunner().invoke(main, ["score", "--pred", str(pred), *extra, *out])
        assert result.exit_code == 1
        assert twice in result.stderr
        assert "unmatched prediction: a.jpg (ambiguous: another file there has the same" in (
            result.stderr
        )
    _save(ref / "b.png", 0)
    _save(ref / "b.jpg", 0)
    _save(pred / "b.png", 0)
    (pred / "a.jpg").unlink()
    result = _score(pred, ref, tmp_path, "--metrics", "psnr")
    assert result.exit_code == 0  # a.png is scored; b.png said, and why
    assert "unmatched prediction: b.png\n" in result.stderr
    assert "unmatched reference: b.jpg (ambiguous:" in result.stderr


def test_an_identical_image_makes_the_mean_infinite_and_the_rest_is_said_apart(tmp_path):
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    for index in range(3):
        truth = _save(ref / f"{index}.png", index)
        pred.mkdir(exist_ok=True)
        shift = 0 if index == 0 else 9  # the first is the reference itself
        Image.fromarray(np.clip(truth.astype(int) + shift, 0, 255).astype(np.uint8)).save(
            pred / f"{index}.png"
        )
    text = _score(pred, ref, tmp_path, "--metrics", "psnr")
    assert text.exit_code == 0, text.output
    [line] = [line for line in text.stdout.splitlines() if line.startswith("psnr ")]
    assert line.split()[:6] == ["psnr", "mean", "inf", "over", "3", "images"]
    assert "(1 infinite; " in line and " over the other 2)" in line
    as_json = _score(pred, ref, tmp_path, "--metrics", "psnr", "--json")
    [summary] = json.loads(as_json.stdout)["summary"]  # strict JSON: no Infinity
    assert summary["mean"] == "inf" and summary["infinite"] == 1
    assert math.isfinite(summary["finite_mean"])


def test_an_infinite_psnr_y_is_not_called_an_identical_image(tmp_path):
    """PSNR-Y is infinite wherever the Y planes agree: R, G and B may still differ."""
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    truth = _save(ref / "a.png", 0)
    truth[0, 0] = (100, 100, 100)
    Image.fromarray(truth).save(ref / "a.png")
    near = truth.copy()
    near[0, 0] = (100, 100, 101)  # Y 101.88 and 101.98: both 102
    assert np.array_equal(matlab_y(near), matlab_y(truth))
    pred.mkdir()
    Image.fromarray(near).save(pred / "a.png")
    text = _score(pred, ref, tmp_path, "--metrics", "psnr_y,psnr")
    lines = {line.split()[0]: line for line in text.stdout.splitlines()[:2]}
    assert lines["psnr_y"].split()[:3] == ["psnr_y", "mean", "inf"]
    assert "identical" not in lines["psnr_y"] and "(1 infinite)" in lines["psnr_y"]
    assert "inf" not in lines["psnr"]


def test_json_writes_non_finite_numbers_as_any_parser_reads_them():
    text = to_json({"a": math.inf, "b": [-math.inf, math.nan, 1.5], "c": (math.nan,)})
    assert json.loads(text) == {"a": "inf", "b": ["-inf", None, 1.5], "c": [None]}
    assert "Infinity" not in text and "NaN" not in text


def test_out_replaces_only_an_earlier_runs_scores_and_provenance(tmp_path):
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    for name in ("a", "b"):
        _save(pred / f"{name}.png", 1)
        _save(ref / f"{name}.png", 2)
    photo = (pred / "a.png").read_bytes()
    assert _score(pred, ref, tmp_path).exit_code == 0
    assert _score(pred, ref, tmp_path).exit_code == 0  # its own scores: replaced
    notes = tmp_path / "other.json"
    notes.write_text("my notes\n")
    os.mkfifo(tmp_path / "fifo.parquet")
    mine = tmp_path / "mine.parquet"
    pq.write_table(pa.table({"x": [1]}), mine)
    table = mine.read_bytes()
    refusals = {
        pred / "a.png": "name it .parquet",  # an input, refused by its name alone
        mine: "is not a scores table of rainbench score",  # a table of the user's
        tmp_path / "other.parquet": "is not the provenance of the scores",  # beside: notes
        tmp_path / "fifo.parquet": "is not a scores table",  # refused, never opened
    }
    for out, message in refusals.items():
        arguments = ["--pred", str(pred), "--ref", str(ref), "--out", str(out), "--no-cache"]
        refused = CliRunner().invoke(main, ["score", *arguments])
        assert refused.exit_code == 1 and message in refused.output, refused.output
        assert refused.output.count("\n") == 1
    assert (pred / "a.png").read_bytes() == photo and notes.read_text() == "my notes\n"
    assert mine.read_bytes() == table and not (tmp_path / "other.parquet").exists()


@pytest.mark.parametrize("name", ["s.csv", "s.json", "scores"])
def test_scores_are_named_parquet_or_refused(tmp_path, name):
    # Never Parquet under another name (s.csv); s.json would be overwritten by its own
    # provenance.
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    _save(pred / "a.png", 1)
    _save(ref / "a.png", 2)
    arguments = ["--pred", str(pred), "--ref", str(ref), "--out", str(tmp_path / name)]
    refused = CliRunner().invoke(main, ["score", *arguments, "--no-cache"])
    assert refused.exit_code == 1 and refused.output.count("\n") == 1, refused.output
    assert f"name it .parquet ({(tmp_path / name).with_suffix('.parquet')})" in refused.output
    assert sorted(path.name for path in tmp_path.iterdir()) == ["pred", "ref"]


def test_the_scores_carry_their_provenance_whatever_happens_to_the_json(tmp_path, monkeypatch):
    from rainbench.metrics import report

    pred, ref = tmp_path / "pred", tmp_path / "ref"
    _save(pred / "a.png", 1)
    _save(ref / "a.png", 2)
    assert _score(pred, ref, tmp_path).exit_code == 0
    out = tmp_path / "scores.parquet"
    sidecar = out.with_suffix(".json")
    inside = pq.read_schema(out).metadata[b"rainbench_provenance"]
    assert json.loads(inside) == json.loads(sidecar.read_text())

    before, original = sidecar.read_text(), report.write_atomic

    def full_disk_for_the_json(path, data, shared=False):
        if path == sidecar:
            raise OSError(28, "No space left on device")
        original(path, data, shared)

    monkeypatch.setattr(report, "write_atomic", full_disk_for_the_json)
    assert _score(pred, ref, tmp_path, "--metrics", "psnr_y").exit_code == 1
    assert sidecar.read_text() == before  # the earlier run's, beside the new scores ...
    inside = json.loads(pq.read_schema(out).metadata[b"rainbench_provenance"])
    assert inside["metrics"] == ["psnr_y"]  # ... which say how they were made


def test_another_scores_half_written_files_at_the_same_out_are_left_alone(tmp_path):
    # Two scores finishing into one --out at once: each writes through its own temporary.
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    _save(pred / "a.png", 1)
    _save(ref / "a.png", 2)
    theirs = [tmp_path / ".scores.parquet.tmp", tmp_path / ".scores.json.tmp"]
    for path in theirs:
        path.write_bytes(b"another score, half way")
    assert _score(pred, ref, tmp_path).exit_code == 0
    assert [path.read_bytes() for path in theirs] == [b"another score, half way"] * 2


def test_a_prediction_of_another_size_is_said_once_per_image(tmp_path):
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    _save(pred / "a.png", 1, size=(40, 48))
    _save(ref / "a.png", 2, size=(44, 48))
    _save(pred / "b.png", 3)
    _save(ref / "b.png", 4)
    result = _score(pred, ref, tmp_path, "--metrics", "psnr_y,ssim_y,psnr")
    assert result.exit_code == 0, result.output
    said = (
        "a.png: error: prediction 48×40 and reference 48×44 differ in size: "
        "psnr_y, ssim_y, psnr not scored\n"
    )
    assert said in result.stderr and result.stderr.count("differ in size") == 1
    rows = {row["name"]: row for row in pq.read_table(tmp_path / "scores.parquet").to_pylist()}
    assert rows["a.png"]["status"] == said.split(": ", 1)[1].rstrip()
    assert rows["a.png"]["psnr_y"] is None and rows["b.png"]["status"] == "ok"


def test_the_provenance_records_the_processes_and_torchs_threads(tmp_path, monkeypatch):
    # As train's run.json does: torch's CPU threads may change a torch metric's rounding.
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    for name in ("a", "b"):
        _save(pred / f"{name}.png", 1)
        _save(ref / f"{name}.png", 2)
    provenance = tmp_path / "scores.json"
    assert _score(pred, ref, tmp_path, "--metrics", "psnr").exit_code == 0
    alone = json.loads(provenance.read_text())
    assert (alone["workers"], alone["threads"]) == (1, 3)  # one process: OMP_NUM_THREADS
    assert _score(pred, ref, tmp_path, "--metrics", "psnr", "-j", "2").exit_code == 0
    shared = json.loads(provenance.read_text())
    assert (shared["workers"], shared["threads"]) == (2, 1)  # one thread per process
    assert shared["max_pixels"] == 250_000_000  # the readers' cap it ran under
    monkeypatch.setenv("RAINBENCH_MAX_PIXELS", "400000000")
    assert _score(pred, ref, tmp_path, "--metrics", "psnr").exit_code == 0
    assert json.loads(provenance.read_text())["max_pixels"] == 400_000_000


def test_the_provenance_names_the_folders_wherever_score_ran(tmp_path, monkeypatch):
    for name in ("a", "b"):
        _save(tmp_path / "pred" / f"{name}.png", 1)
        _save(tmp_path / "ref" / f"{name}.png", 2)
    monkeypatch.chdir(tmp_path)
    arguments = ["score", "--pred", "pred", "--ref", "ref", "--out", "s.parquet"]
    result = CliRunner().invoke(main, [*arguments, "--cache", "c", "-j", "1", "--metrics", "psnr"])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "s.json").read_text())
    assert (record["pred"], record["ref"], record["cache"]) == tuple(
        str(tmp_path / name) for name in ("pred", "ref", "c")
    )
