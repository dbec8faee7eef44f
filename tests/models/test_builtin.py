"""The built-in derainers as the harness sees them: built by name, options checked,
shapes kept (odd sizes too), identity exact, provenance JSON-serialisable."""

import json

import numpy as np
import pytest

from rainbench.models import DerainerError, create_derainer

torch = pytest.importorskip("torch")

BUILT_INS = ("identity", "guided", "dcp")


def test_identity_returns_an_exact_copy():
    batch = torch.rand(2, 3, 37, 53)
    derained = create_derainer("identity").derain(batch)
    assert torch.equal(derained, batch)
    derained[0, 0, 0, 0] = 2.0  # a copy: the caller's batch stays as it was
    assert batch[0, 0, 0, 0] <= 1


@pytest.mark.parametrize("name", BUILT_INS)
def test_shape_dtype_and_range_are_kept_for_odd_sizes(name):
    batch = torch.rand(2, 3, 37, 53)
    derained = create_derainer(name).derain(batch)
    assert derained.shape == batch.shape
    assert derained.dtype == batch.dtype
    assert derained.device == batch.device
    assert torch.isfinite(derained).all()
    assert derained.min() >= 0 and derained.max() <= 1


@pytest.mark.parametrize("name", BUILT_INS)
def test_images_of_a_batch_are_derained_independently(name):
    batch = torch.rand(3, 3, 40, 30)
    derainer = create_derainer(name)
    together = derainer.derain(batch)
    alone = derainer.derain(batch[1:2])
    assert torch.allclose(together[1:2], alone, atol=1e-6)


@pytest.mark.parametrize("name", BUILT_INS)
def test_info_names_version_and_options_as_json(name):
    info = create_derainer(name).info()
    assert info["name"] == name
    assert info["version"]
    assert json.loads(json.dumps(info)) == info


def test_options_reach_the_derainer_and_show_in_its_info():
    info = create_derainer("guided", radius=3, eps=0.05, refine_eps=None).info()
    assert info["options"] == {"radius": 3, "eps": 0.05, "refine_eps": None}
    assert create_derainer("dcp", omega=0.8).info()["options"]["omega"] == 0.8


def test_an_unknown_option_is_an_error_naming_the_known_ones():
    with pytest.raises(DerainerError, match="guided has no option 'sigma'; its options: radius"):
        create_derainer("guided", sigma=2)
    with pytest.raises(DerainerError, match="identity has no option 'x'; its options: none"):
        create_derainer("identity", x=1)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("guided", {"radius": 0}, "radius must be at least 1"),
        ("guided", {"eps": 0}, "must be positive"),
        ("dcp", {"omega": 1.5}, r"must be in \(0, 1\]"),
        ("dcp", {"patch": 0}, "at least 1"),
    ],
)
def test_bad_option_values_are_errors(name, options, message):
    with pytest.raises(DerainerError, match=message):
        create_derainer(name, **options)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("guided", {"radius": "abc"}, 'radius must be .*an integer.*, not "abc"$'),
        ("guided", {"radius": float("inf")}, "radius .* not Infinity$"),
        ("guided", {"radius": [1, 2]}, r"radius .* not \[1, 2\]$"),
        ("guided", {"radius": True}, "radius .* not true$"),
        ("guided", {"radius": 2.7}, "radius .* not 2.7$"),
        ("guided", {"radius": 10**6}, "radius must be at least 1 and at most 10000"),
        ("guided", {"eps": float("nan")}, r"eps must be positive \(a finite number\), not NaN$"),
        ("guided", {"refine_eps": "0.1"}, "refine_eps must be positive"),
        ("dcp", {"t0": float("nan")}, r"t0 must be in \(0, 1\]"),
        ("dcp", {"light_fraction": False}, "light_fraction"),
        ("dcp", {"patch": 3.5}, "patch .* not 3.5$"),
        ("dcp", {"radius": None, "eps": "x"}, "eps must be positive"),
    ],
)
def test_option_values_are_typed_strictly(name, options, message):
    with pytest.raises(DerainerError, match=f"^{name}: {message}"):
        create_derainer(name, **options)


def test_null_options_take_the_automatic_value():
    assert create_derainer("guided", radius=None).info()["options"]["radius"] is None
    assert create_derainer("dcp", patch=None, radius=None).info()["options"]["patch"] is None


def test_built_ins_take_no_checkpoint(tmp_path):
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"")
    with pytest.raises(DerainerError, match="guided takes no checkpoint"):
        create_derainer("guided", checkpoint=weights)


def test_a_numpy_derainer_returns_on_the_input_dtype():
    batch = torch.rand(1, 3, 20, 24, dtype=torch.float64)
    derained = create_derainer("guided").derain(batch)
    assert derained.dtype == torch.float64
    assert np.isfinite(derained.numpy()).all()
