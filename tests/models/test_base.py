"""The derainer interface: abstract, with provenance in info(); checkpoints read
weights-only, and networks built only as large as the weights they hold."""

import io
import os
import zipfile

import pytest
from PIL import Image

from rainbench.models.base import Derainer, NumpyDerainer

torch = pytest.importorskip("torch")


class Halve(NumpyDerainer):
    name = "halve"
    version = "2"

    def derain_images(self, images):
        return images / 2

    def options(self):
        return {"factor": 0.5}


def test_derain_is_abstract():
    with pytest.raises(TypeError):
        Derainer()


def test_info_is_name_version_and_options():
    assert Halve().info() == {"name": "halve", "version": "2", "options": {"factor": 0.5}}


def test_a_numpy_derainer_sees_images_last_axis_rgb_and_answers_like_the_batch():
    batch = torch.rand(2, 3, 5, 7, dtype=torch.float64)
    derained = Halve(device="cuda").derain(batch)
    assert derained.dtype == torch.float64
    assert derained.device == batch.device  # the input's, not the derainer's
    assert torch.allclose(derained, batch / 2)


class Trap:
    """Unpickling this calls os.mkdir: code hidden in a checkpoint."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.mkdir, (str(self.marker),))


def _unreadable(folder) -> dict:
    """Files torch.load refuses, each with what the error says of it."""
    import pickle

    whole = folder / "whole.pt"
    torch.save({"format": "rainbench-x", "weights": torch.zeros(500)}, whole)
    old = folder / "old.pt"
    torch.save({"weights": torch.zeros(500)}, old, _use_new_zipfile_serialization=False)
    picture = io.BytesIO()
    Image.new("RGB", (8, 8)).save(picture, "PNG")
    files = {
        "text.pt": (b"hello\n", r"is not a PyTorch checkpoint \(neither torch\.save's zip"),
        "sheet.png": (picture.getvalue(), r"is not a PyTorch checkpoint \(neither torch\.save's"),
        "empty.pt": (b"", "is not a PyTorch checkpoint"),
        "cut.pt": (whole.read_bytes()[:600], "is truncated: a zip archive without its end"),
        "old-cut.pt": (old.read_bytes()[:900], "is truncated: it ends before its tensors"),
        "trap.pt": (
            pickle.dumps({"format": "rainbench-x", "x": Trap(folder / "ran")}, protocol=4),
            r"holds objects a weights-only load refuses \(.*\): not loaded for safety",
        ),
    }
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    trapped = folder / "trapped.pt"
    torch.save({"format": "rainbench-x", "x": Trap(folder / "ran")}, trapped)
    refused = r"holds objects a weights-only load refuses \(posix\.mkdir\): not loaded for safety"
    os.mkfifo(folder / "fifo.pt")  # would block its reader
    return {
        **{folder / name: message for name, (_, message) in files.items()},
        trapped: refused,
        folder / "absent.pt": "cannot be read: No such file or directory",
        folder / "fifo.pt": "cannot be read: not a regular file; refused",
        _deflated(folder, 1 << 24): r"holds a compressed member \(.*\), which torch\.save never",
    }


def _deflated(folder, size: int):
    """torch.save's archive of `size` zero bytes, its members recompressed: a small file
    torch.load would inflate whole (a zip bomb)."""
    whole = folder / "plain.pt"
    torch.save({"format": "rainbench-x", "weights": torch.zeros(size, dtype=torch.uint8)}, whole)
    bomb = folder / "bomb.pt"
    with zipfile.ZipFile(whole) as source, zipfile.ZipFile(bomb, "w") as out:
        for member in source.infolist():
            out.writestr(member.filename, source.read(member), zipfile.ZIP_DEFLATED)
    assert bomb.stat().st_size < size // 100
    return bomb


def test_a_file_no_checkpoint_is_one_line_saying_what_it_is_not(tmp_path, recwarn):
    from rainbench.models.base import CheckpointError, read_checkpoint
    from rainbench.models.cclgan import import_cyclegan_generator
    from rainbench.models.nlcl.published import import_published

    readers = [
        lambda path: read_checkpoint(path, "rainbench-x", "a rainbench x checkpoint"),
        import_published,
        lambda path: import_cyclegan_generator(path, tmp_path / "out.pt", "00" * 32),
    ]
    for path, message in _unreadable(tmp_path).items():
        for read in readers:
            with pytest.raises(CheckpointError, match=f"{path.name} {message}") as raised:
                read(path)
            assert "\n" not in str(raised.value) and "weights_only" not in str(raised.value)
    assert not (tmp_path / "ran").exists()
    # torch's warnings (a pickle protocol it did not write) are not passed on either.
    assert not [w for w in recwarn if "torch" in str(w.filename)]


class Net(torch.nn.Module):
    """A network sized as the trained ones are: `channels` wide, `blocks` deep."""

    def __init__(self, channels: int = 2, blocks: int = 1):
        super().__init__()
        self.layers = torch.nn.Sequential(
            *(torch.nn.Conv2d(channels, channels, 1) for _ in range(blocks + 1))
        )


def test_a_network_holds_its_checkpoints_weights():
    from rainbench.models.base import load_network

    weights = Net(3, 2).state_dict()
    network = load_network(Net, {"channels": 3, "blocks": 2, "other": "x"}, weights, "ckpt")
    assert not network.training
    assert all(torch.equal(network.state_dict()[k], v) for k, v in weights.items())


def test_a_network_is_never_larger_than_the_weights_its_checkpoint_holds():
    from rainbench.models.base import CheckpointError, load_network

    weights = Net().state_dict()
    nan = {**weights, "layers.0.bias": torch.tensor([0.0, float("nan")])}
    expanded = {
        **Net(4096).state_dict(),
        "layers.0.weight": torch.zeros(1).expand(4096, 4096, 1, 1),
        "layers.1.weight": torch.zeros(1).expand(4096, 4096, 1, 1),
    }
    refused = {
        "its config's channels and blocks are no network's size": [
            ({"channels": 2, "blocks": 10**9}, weights),  # more blocks than weights
            ({"channels": "2"}, weights),
            ({"channels": 0}, weights),
            ({"channels": 2**62}, weights),
            ([2, 1], weights),
        ],
        r"'layers\.0\.weight' has shape \(2, 2, 1, 1\), expected \(100000, 100000, 1, 1\)": [
            ({"channels": 100_000}, weights),  # 40 GB asked of a file of 56 bytes
        ],
        "missing key 'layers.1.bias'": [
            ({}, {k: v for k, v in weights.items() if k != "layers.1.bias"})
        ],
        "unexpected key 'x'": [({}, {**weights, "x": torch.zeros(1)})],
        "'layers.0.weight' is torch.int64, expected float16, bfloat16, float32 or float64": [
            ({}, {**weights, "layers.0.weight": torch.zeros(2, 2, 1, 1, dtype=torch.long)})
        ],
        "'layers.0.bias' is torch.float8_e5m2, expected float16, bfloat16, float32 or float64": [
            ({}, {**weights, "layers.0.bias": torch.zeros(2, dtype=torch.float8_e5m2)})
        ],
        "'layers.0.bias' is a torch.sparse_coo tensor, expected a dense one of values": [
            ({}, {**weights, "layers.0.bias": torch.zeros(2).to_sparse()})
        ],
        "'layers.0.bias' is a meta device tensor, expected a dense one of values": [
            ({}, {**weights, "layers.0.bias": torch.empty(2, device="meta")})
        ],
        "'layers.0.bias' holds NaN or infinite values": [({}, nan)],
        r"its weights share their values \(expanded tensors": [({"channels": 4096}, expanded)],
        "is not a state dict of tensors": [({}, None), ({}, {"a": 1})],
    }
    for message, cases in refused.items():
        for config, state in cases:
            with pytest.raises(CheckpointError, match=f"^ckpt:? {message}"):
                load_network(Net, config, state, "ckpt")
