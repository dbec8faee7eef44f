"""The derainer interface: abstract, with provenance in info()."""

import pytest

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
    files = {
        "text.pt": (b"hello\n", r"is not a PyTorch checkpoint \(neither torch\.save's zip"),
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
    return {
        **{folder / name: message for name, (_, message) in files.items()},
        trapped: refused,
        folder / "absent.pt": "cannot be read: No such file or directory",
    }


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
