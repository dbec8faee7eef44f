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
