"""Derainers outside rainbench: a command run on a folder of PNGs (here a small
Python script written by the test) and a folder of outputs computed elsewhere."""

import hashlib
import json
import os
import shlex
import struct
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rainbench.capture.source import max_still_bytes
from rainbench.models import CommandDerainer, DerainerError, OutputsFolder

torch = pytest.importorskip("torch")

# Inverts every image of --in into --out; the other flags misbehave on purpose.
SCRIPT = """
import argparse, pathlib, sys
from PIL import Image, ImageOps

parser = argparse.ArgumentParser()
parser.add_argument("--in", dest="source", type=pathlib.Path)
parser.add_argument("--out", type=pathlib.Path)
parser.add_argument("--ext", default="png")
parser.add_argument("--skip", default="")
parser.add_argument("--shrink", action="store_true")
parser.add_argument("--fail", action="store_true")
args = parser.parse_args()
if args.fail:
    print("loading weights", file=sys.stderr)
    print("CUDA out of memory", file=sys.stderr)
    sys.exit(3)
for path in sorted(args.source.iterdir()):
    if path.stem == args.skip:
        continue
    image = ImageOps.invert(Image.open(path).convert("RGB"))
    if args.shrink:
        image = image.resize((image.width - 1, image.height))
    image.save(args.out / f"{path.stem}.{args.ext}", quality=100)
"""


@pytest.fixture
def script(tmp_path) -> str:
    """The script's command prefix; its folder has a space, so paths must be quoted."""
    folder = tmp_path / "their model"
    folder.mkdir()
    (folder / "test.py").write_text(SCRIPT)
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(folder / 'test.py'))}"


@pytest.fixture
def batch():
    pixels = np.random.default_rng(0).integers(0, 256, (3, 3, 37, 53), dtype=np.uint8)
    return torch.from_numpy(pixels).float() / 255


def command(script: str, *flags: str) -> str:
    return f"{script} --in {{input_dir}} --out {{output_dir}} {' '.join(flags)}"


def test_a_command_derains_a_batch_through_png_files(script, batch):
    derainer = CommandDerainer(command(script), name="inverter")
    derained = derainer.derain(batch)
    assert derained.shape == batch.shape
    assert torch.allclose(derained, 1 - batch, atol=1e-6)  # 8-bit in, 8-bit out: exact


def test_outputs_may_come_back_as_another_format(script, batch):
    derained = CommandDerainer(command(script, "--ext BMP")).derain(batch)
    assert torch.allclose(derained, 1 - batch, atol=1e-6)


def test_a_failing_command_is_an_error_with_its_last_stderr_line(script, batch):
    derainer = CommandDerainer(command(script, "--fail"), name="theirs")
    with pytest.raises(
        DerainerError, match=r"^theirs: the command exited with 3: CUDA out of memory$"
    ):
        derainer.derain(batch)


def test_a_missing_output_is_an_error_naming_it(script, batch):
    # Named in the command's placeholder, not the batch's temporary folder, gone by then
    # and another every run.
    with pytest.raises(DerainerError, match=r"^theirs: no output for 000001 in \{output_dir\}$"):
        CommandDerainer(command(script, "--skip 000001"), name="theirs").derain(batch)


def test_an_output_of_the_wrong_size_is_an_error_naming_it(script, batch):
    with pytest.raises(
        DerainerError, match=r"^theirs: \{output_dir\}/000000\.png is 52×37, the input is 53×37$"
    ):
        CommandDerainer(command(script, "--shrink"), name="theirs").derain(batch)


def test_a_program_that_is_not_there_is_an_error(batch):
    derainer = CommandDerainer("rainbench-no-such-program {input_dir} {output_dir}")
    with pytest.raises(DerainerError, match="cannot run rainbench-no-such-program"):
        derainer.derain(batch)


def test_a_command_past_its_timeout_is_an_error(batch):
    sleep = "'import time; time.sleep(5)'"
    sleeper = f"{shlex.quote(sys.executable)} -c {sleep} {{input_dir}} {{output_dir}}"
    with pytest.raises(DerainerError, match=r"ran past its 0\.2 s timeout"):
        CommandDerainer(sleeper, timeout=0.2).derain(batch)


def test_a_command_past_its_timeout_leaves_nothing_it_started_running(tmp_path, batch):
    # A wrapper script as many a model's is: the program is the shell's child, and the
    # shell alone was killed at the timeout.
    pid_file = tmp_path / "child.pid"
    child = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(60)"
    wrapper = tmp_path / "run.sh"
    wrapper.write_text(f"{shlex.quote(sys.executable)} -c {shlex.quote(child)} {pid_file}\n")
    derainer = CommandDerainer(f"sh {wrapper} {{input_dir}} {{output_dir}}", timeout=2)
    with pytest.raises(DerainerError, match=r"ran past its 2\.0 s timeout"):
        derainer.derain(batch)
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(pid)


def _running(pid: int) -> bool:
    """Whether `pid` is a process not yet ended (a zombie has ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), "5", True])
def test_a_timeout_must_be_a_positive_number(timeout):
    with pytest.raises(DerainerError, match=r"^theirs: timeout must be positive"):
        CommandDerainer("run {input_dir} {output_dir}", "theirs", timeout=timeout)


def test_both_placeholders_are_required():
    with pytest.raises(DerainerError, match=r"needs a \{output_dir\} placeholder"):
        CommandDerainer("python test.py --in {input_dir}")


def test_a_command_that_cannot_be_split_is_refused_before_any_image():
    # It was every image's failure: "ValueError: No closing quotation".
    with pytest.raises(DerainerError, match=r"^the command cannot be split as a shell would: No"):
        CommandDerainer("python 'my test.py --in {input_dir} --out {output_dir}")


def test_info_holds_the_command_and_its_hash(script):
    line = command(script)
    info = CommandDerainer(line, name="theirs", timeout=60).info()
    # The timeout is on record, not an option: it changes which images fail, no output.
    assert info == {
        "name": "theirs",
        "version": "external",
        "options": {},
        "command": line,
        "command_sha256": hashlib.sha256(line.encode()).hexdigest(),
        "timeout": 60,
    }


def test_a_command_naming_a_path_not_utf8_runs_and_is_recorded_as_its_bytes(tmp_path, batch):
    # Bytes that are not UTF-8 reach Python from argv as surrogates; the provenance is
    # JSON, which holds no lone surrogate. info() raised UnicodeEncodeError before.
    folder = Path(os.fsdecode(bytes(tmp_path) + b"/their \xff model"))
    folder.mkdir()
    (folder / "test.py").write_text(SCRIPT)
    line = command(f"{shlex.quote(sys.executable)} {shlex.quote(str(folder / 'test.py'))}")
    derainer = CommandDerainer(line, name="theirs")
    assert torch.allclose(derainer.derain(batch), 1 - batch, atol=1e-6)
    info = derainer.info()
    assert info["command"] == line.replace("\udcff", "\\xff")
    expected = hashlib.sha256(os.fsencode(line)).hexdigest()
    assert info["command_sha256"] == expected
    json.dumps(info, ensure_ascii=False).encode()


# --- outputs computed elsewhere -------------------------------------------------------


def save(path, width=6, height=4, value=0, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (width, height), value).save(path)
    return path


def test_an_output_is_found_by_key_in_the_folder_or_its_split(tmp_path):
    save(tmp_path / "a.png", value=(10, 20, 30))
    save(tmp_path / "b.JPG", value=(200, 200, 200))
    save(tmp_path / "test" / "a.webp", value=(90, 90, 90))
    outputs = OutputsFolder(tmp_path, "theirs")
    image = outputs.load("a", (6, 4))
    assert image.dtype == np.uint8 and image.shape == (4, 6, 3)
    assert image[0, 0].tolist() == [10, 20, 30]
    assert outputs.load("a", (6, 4), split="test")[0, 0].tolist() == [90, 90, 90]  # split first
    assert outputs.load("b", (6, 4), split="test")[0, 0].tolist() == [200, 200, 200]  # then root
    assert outputs.keys() == ["a", "b"]
    assert outputs.keys("test") == ["a", "b"]


def test_grey_outputs_are_read_as_rgb(tmp_path):
    save(tmp_path / "k.png", value=77, mode="L")
    assert OutputsFolder(tmp_path, "x").load("k", (6, 4))[1, 1].tolist() == [77, 77, 77]


@pytest.mark.parametrize(
    ("files", "key", "size", "message"),
    [
        ([], "k", (6, 4), "no output for k in "),
        # Sideways: most often a capture derained as stored, not turned upright.
        (
            ["k.png"],
            "k",
            (4, 6),
            r"k\.png is 6×4, the input is 4×6 \(the input is the capture "
            r"upright, turned by its EXIF orientation: PIL\.ImageOps\.exif_transpose\)$",
        ),
        (["k.png"], "k", (6, 5), r"k\.png is 6×4, the input is 6×5$"),
        (["k.png", "k.jpg"], "k", (6, 4), r"more than one output for k in .*: k\.jpg, k\.png"),
    ],
)
def test_lookup_errors_name_the_key_or_file(tmp_path, files, key, size, message):
    for name in files:
        save(tmp_path / name)
    with pytest.raises(DerainerError, match=message):
        OutputsFolder(tmp_path, "theirs").load(key, size)


def test_a_missing_output_names_every_folder_looked_in_and_a_near_miss(tmp_path):
    (tmp_path / "test").mkdir()
    save(tmp_path / "test" / "k.rain.png")  # named as extracted from the shards
    with pytest.raises(DerainerError) as refused:
        OutputsFolder(tmp_path, "theirs").load("k", (6, 4), split="test")
    assert str(refused.value) == (
        f"no output for k in {tmp_path / 'test'} or {tmp_path}; there is "
        f"{tmp_path / 'test' / 'k.rain.png'}: an output is named by its key alone, k.png"
    )


def test_a_sixteen_bit_output_is_scaled_not_clipped(tmp_path):
    Image.fromarray(np.full((4, 6), 40000, np.uint16)).save(tmp_path / "k.png")
    assert OutputsFolder(tmp_path, "theirs").load("k", (6, 4))[0, 0].tolist() == [156] * 3


def test_an_output_is_read_upright_as_score_reads_a_prediction(tmp_path):
    stored = np.zeros((6, 4, 3), np.uint8)  # stored 4 wide, 6 high, to be turned 90°
    stored[0, 0] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to view
    Image.fromarray(stored).save(tmp_path / "k.png", exif=exif)
    upright = OutputsFolder(tmp_path, "theirs").load("k", (6, 4))
    assert upright.shape == (4, 6, 3) and upright[0, -1].tolist() == [255, 255, 255]


@pytest.mark.parametrize(("shape", "photometric"), [((4, 6), "minisblack"), ((4, 6, 3), "rgb")])
def test_a_float_tiff_output_is_refused_as_score_refuses_it(tmp_path, shape, photometric):
    # Pillow would read the grey one as black and score it; the colour one not at all.
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(tmp_path / "k.tif", np.full(shape, 0.5, np.float32), photometric=photometric)
    with pytest.raises(DerainerError) as refused:
        OutputsFolder(tmp_path, "theirs").load("k", (6, 4))
    assert str(refused.value) == (
        f"{tmp_path / 'k.tif'} is a floating-point TIFF, which is not scored: save the output "
        "as an 8- or 16-bit image (PNG, TIFF)"
    )


def test_an_unreadable_output_is_an_error_said_the_same_every_run(tmp_path):
    # Pillow's own message names the in-memory file by its address.
    (tmp_path / "k.png").write_bytes(b"not a png")
    (tmp_path / "m.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(8))
    for key, what in (("k", "an image"), ("m", "a png image")):
        with pytest.raises(DerainerError) as refused:
            OutputsFolder(tmp_path, "theirs").load(key, (6, 4))
        said = f"cannot read {tmp_path / f'{key}.png'}: no readable header of {what}"
        assert str(refused.value) == said


def test_an_output_declaring_a_pixel_bomb_is_an_error_not_a_crash(tmp_path):
    # A PNG whose header claims 20000×20000 pixels: this output fails, the run goes on.
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(1000))) + chunk(b"IEND", b"")
    (tmp_path / "k.png").write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    with pytest.raises(DerainerError) as refused:
        OutputsFolder(tmp_path, "theirs").load("k", (6, 4))
    # Said as any output of another size is, from its header: no pixel cap the user set.
    assert str(refused.value) == f"{tmp_path / 'k.png'} is 20000×20000, the input is 6×4"


def test_an_output_larger_than_any_picture_of_the_inputs_size_is_refused_unread(tmp_path):
    # It is read whole to be decoded: a file of GBs named .png would fill memory first.
    save(tmp_path / "k.png")
    with (tmp_path / "k.png").open("r+b") as file:
        file.truncate(max_still_bytes(6 * 4) + 1)  # sparse: takes no disk
    with pytest.raises(DerainerError) as refused:
        OutputsFolder(tmp_path, "theirs").load("k", (6, 4))
    assert str(refused.value) == (
        f"cannot read {tmp_path / 'k.png'}: a still of {max_still_bytes(24) + 1} bytes, more "
        "than a picture of 24 pixels takes (16 bytes a pixel, 16 MiB besides); not read"
    )


def test_an_output_that_is_a_link_out_of_the_folder_is_refused_unread(tmp_path):
    save(tmp_path / "private.png", value=(1, 2, 3))  # crops of it would go on a leaderboard
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "k.png").symlink_to(tmp_path / "private.png")
    save(tmp_path / "outputs" / "in" / "j.png")
    (tmp_path / "outputs" / "j.png").symlink_to("in/j.png")  # a link inside is followed
    outputs = OutputsFolder(tmp_path / "outputs", "theirs")
    with pytest.raises(DerainerError, match=r"k\.png leads outside the outputs folder .*; refused"):
        outputs.load("k", (6, 4))
    assert outputs.load("j", (6, 4)).shape == (4, 6, 3)


def test_a_missing_folder_is_an_error(tmp_path):
    with pytest.raises(DerainerError, match=r"outputs folder .* not found"):
        OutputsFolder(tmp_path / "nope", "theirs")


def test_each_output_is_known_by_its_own_file_not_the_folder(tmp_path):
    save(tmp_path / "a.png")
    save(tmp_path / "val" / "b.png")
    save(tmp_path / "c.png")
    save(tmp_path / "c.jpg")
    outputs = OutputsFolder(tmp_path, "theirs")
    assert outputs.info() == {
        "name": "theirs",
        "version": "precomputed",
        "folder": str(tmp_path.resolve()),
    }
    digest = hashlib.sha256((tmp_path / "a.png").read_bytes()).hexdigest()
    assert outputs.sha256("a") == outputs.sha256("a", split="val") == digest
    assert outputs.sha256("b", split="val") != outputs.sha256("b") == "missing"
    assert outputs.sha256("c") == "ambiguous"
    save(tmp_path / "val" / "d.png")  # another split's output: a's is as it was
    assert OutputsFolder(tmp_path, "theirs").sha256("a") == digest


def test_an_oriented_tiff_output_of_the_inputs_size_is_read(tmp_path):
    # Pillow turns a TIFF upright itself as it opens it: its header size is already
    # upright, which a size check from the header would turn a second time.
    stored = np.zeros((4, 6, 3), np.uint8)
    stored[0, 0] = 255
    Image.fromarray(stored).save(tmp_path / "k.tif", tiffinfo={274: 6})
    upright = OutputsFolder(tmp_path, "theirs").load("k", (4, 6))
    assert upright.shape == (6, 4, 3)


def test_a_heic_output_larger_than_its_input_is_said_as_any_wrong_size(tmp_path):
    # Its size is read by libheif, as it is decoded, not from a header Pillow reads.
    from rainbench.demo.captures import CaptureSpec, capture_bytes, missing_writer

    if missing_writer("heic") is not None:
        pytest.skip(f"building test files: {missing_writer('heic')}")
    (tmp_path / "k.png").write_bytes(capture_bytes(CaptureSpec("k.heic", 64, 48, fmt="heic")))
    with pytest.raises(DerainerError) as refused:
        OutputsFolder(tmp_path, "theirs").load("k", (32, 24))
    assert str(refused.value) == f"{tmp_path / 'k.png'} is 64×48, the input is 32×24"
