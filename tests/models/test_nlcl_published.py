"""Importing the published NLCL background generator: bare or nested state dicts, with
or without DataParallel prefixes, load into our Generator and compute the same output;
anything off the layout is named; pickled objects are refused without running; our own
checkpoint is written atomically."""

import os
from pathlib import Path

import pytest
import torch

from rainbench.models.nlcl.generator import Generator, to_model_range
from rainbench.models.nlcl.published import (
    CheckpointError,
    import_published,
    published_layout,
    save_generator_checkpoint,
)
from rainbench.models.registry import create_derainer
from rainbench.train.nlcl.networks import init_weights


@pytest.fixture(scope="module")
def released() -> Generator:
    """Stands in for the released generator: random weights, non-zero biases."""
    torch.manual_seed(1)
    generator = init_weights(Generator())
    with torch.no_grad():
        for name, parameter in generator.named_parameters():
            if name.endswith("bias"):
                parameter.normal_(0, 0.01)
    return generator.eval()


def write(path: Path, checkpoint: object) -> Path:
    torch.save(checkpoint, path)
    return path


def test_published_layout_has_72_tensors_and_316195_values():
    layout = published_layout()
    assert len(layout) == 72
    assert sum(torch.Size(shape).numel() for shape in layout.values()) == 316_195
    assert layout["gen.17.conv.3.weight"] == (32, 32, 3, 3)
    assert layout == {k: tuple(v.shape) for k, v in Generator().state_dict().items()}


@pytest.mark.parametrize("nesting", ["bare", "netG", "netG_B+module", "only-dict"])
def test_imported_generator_computes_the_same_output(tmp_path, released, nesting):
    state = released.state_dict()
    if nesting.endswith("+module"):
        state = {f"module.{key}": value for key, value in state.items()}
    checkpoint = {
        "bare": state,
        "netG": {"netG": state, "epoch": 200},
        "netG_B+module": {"netG_A": Generator().state_dict(), "netG_B": state},
        "only-dict": {"weights": state, "lr": 2e-4, "name": "nlcl"},
    }[nesting]
    imported = import_published(write(tmp_path / "release.pth", checkpoint))
    assert list(imported) == list(published_layout())
    fresh = Generator().eval()
    fresh.load_state_dict(imported)
    x = to_model_range(torch.rand(1, 3, 13, 17, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        assert torch.equal(fresh(x), released(x))


def broken(state: dict, change: str) -> dict:
    state = dict(state)
    if change == "shape":
        state["gen.5.model.1.conv.weight"] = torch.zeros(32, 32, 5, 5)
    elif change == "missing":
        del state["gen.17.conv.3.bias"]
    elif change == "extra":
        state["gen.19.weight"] = torch.zeros(3)
    elif change == "integer":
        state["gen.0.bias"] = torch.zeros(32, dtype=torch.int64)
    elif change == "nan":
        state["gen.0.bias"] = torch.full((32,), float("nan"))
    elif change == "float8":  # floating point, but torch cannot check it for NaN
        state["gen.0.bias"] = torch.zeros(32, dtype=torch.float8_e4m3fn)
    elif change == "sparse":
        state["gen.0.bias"] = state["gen.0.bias"].to_sparse()
    elif change == "meta":
        state["gen.0.bias"] = torch.empty(32, device="meta")
    return state


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("shape", r"'gen\.5\.model\.1\.conv\.weight' has shape \(32, 32, 5, 5\)"),
        ("missing", r"missing key 'gen\.17\.conv\.3\.bias'"),
        ("extra", r"unexpected key 'gen\.19\.weight'"),
        ("integer", r"'gen\.0\.bias' is torch\.int64"),
        ("nan", r"'gen\.0\.bias' holds NaN"),
        ("float8", r"'gen\.0\.bias' is torch\.float8_e4m3fn, expected float16, bfloat16"),
        ("sparse", r"'gen\.0\.bias' is a torch\.sparse_coo tensor, expected a dense one"),
        ("meta", r"'gen\.0\.bias' is a meta device tensor, expected a dense one"),
    ],
)
def test_off_layout_checkpoints_name_the_key(tmp_path, released, change, message):
    path = write(tmp_path / "bad.pth", broken(released.state_dict(), change))
    with pytest.raises(CheckpointError, match=message) as caught:
        import_published(path)
    assert "\n" not in str(caught.value)


def test_files_without_one_state_dict_are_refused(tmp_path, released):
    state = released.state_dict()
    with pytest.raises(CheckpointError, match="several state dicts"):
        import_published(write(tmp_path / "two.pth", {"a": state, "b": state}))
    with pytest.raises(CheckpointError, match="no state dict"):
        import_published(write(tmp_path / "none.pth", {"epoch": 3}))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk\.pth"):
        import_published(tmp_path / "junk.pth")
    with pytest.raises(CheckpointError, match=r"absent\.pth"):
        import_published(tmp_path / "absent.pth")


class Trap:
    """Unpickling this calls os.mkdir: the stand-in for code hidden in a checkpoint."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


class Payload:
    """A custom class, pickled by reference."""


def test_pickled_objects_are_refused_without_running(tmp_path, released):
    marker = tmp_path / "ran"
    path = write(tmp_path / "trap.pth", {**released.state_dict(), "extra": Trap(marker)})
    refused = r"holds objects a weights-only load refuses \(posix\.mkdir\)"
    with pytest.raises(CheckpointError, match=refused):
        import_published(path)
    assert not marker.exists()
    # The trap is live: unsafe loading would have run it.
    torch.load(path, weights_only=False)
    assert marker.is_dir()

    payload = write(tmp_path / "payload.pth", {"netG": released.state_dict(), "x": Payload()})
    with pytest.raises(CheckpointError, match=r"refuses \(\S*Payload\): not loaded for safety"):
        import_published(payload)


def test_saved_checkpoint_holds_the_background_and_its_source(tmp_path, released):
    state = import_published(write(tmp_path / "release.pth", released.state_dict()))
    out = tmp_path / "weights" / "nlcl.pt"
    save_generator_checkpoint(state, out, source_sha256="ab" * 32)
    save_generator_checkpoint(state, out, source_sha256="cd" * 32)  # replaces it
    assert [p.name for p in out.parent.iterdir()] == ["nlcl.pt"]  # no temporary file left
    saved = torch.load(out, map_location="cpu", weights_only=True)
    assert {k: v for k, v in saved.items() if k != "background"} == {
        "format": "rainbench-nlcl",
        "version": 1,
        "rain": None,
        "config": {"channels": 32, "blocks": 16},
        "imported_from": {"sha256": "cd" * 32, "layout": "published NLCL release"},
    }
    assert all(torch.equal(saved["background"][k], v) for k, v in state.items())
    Generator().load_state_dict(saved["background"])


def test_saving_an_off_layout_state_writes_nothing(tmp_path, released):
    out = tmp_path / "nlcl.pt"
    with pytest.raises(CheckpointError, match="missing key"):
        save_generator_checkpoint(broken(released.state_dict(), "missing"), out, "00" * 32)
    assert list(tmp_path.iterdir()) == []


def test_an_imported_checkpoint_scores_under_its_own_name(tmp_path, released):
    out = tmp_path / "nlcl-published.pt"
    save_generator_checkpoint(released.state_dict(), out, source_sha256="ab" * 32)
    derainer = create_derainer("nlcl", checkpoint=out)
    assert derainer.info()["name"] == "nlcl-published"
    assert derainer.info()["options"]["imported_from"]["sha256"] == "ab" * 32


def test_a_checkpoint_rainbench_wrote_is_said_to_need_no_import(tmp_path, released):
    # nlcl.pt as rainbench train nlcl writes it: several state dicts, none the release's.
    state = released.state_dict()
    trained = {"format": "rainbench-nlcl", "version": 1, "config": {}, "step": 3,
               "trained_on": {"rainy": torch.zeros(2, 12, dtype=torch.uint8)},
               "background": state, "rain": state}  # fmt: skip
    path = write(tmp_path / "nlcl.pt", trained)
    said = (
        rf"^{path} is already a rainbench NLCL checkpoint: nothing to import, use it as it "
        rf"is: rainbench eval --model nlcl --checkpoint {path}$"
    )
    with pytest.raises(CheckpointError, match=said):
        import_published(path)
