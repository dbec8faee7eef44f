"""The `nlcl` derainer on pictures at the edge of what its generator takes."""

import pytest

torch = pytest.importorskip("torch")

from rainbench.models.nlcl.checkpoint import CHECKPOINT_FORMAT, save_atomic  # noqa: E402
from rainbench.models.nlcl.generator import Generator  # noqa: E402
from rainbench.models.registry import DerainerError, create_derainer  # noqa: E402


@pytest.fixture
def derainer(tmp_path):
    path = tmp_path / "nlcl.pt"
    state = {"format": CHECKPOINT_FORMAT, "step": 0, "config": {"channels": 4, "blocks": 1}}
    save_atomic({**state, "background": Generator(4, 1).state_dict()}, path)
    return create_derainer("nlcl", checkpoint=path)


def test_a_one_pixel_picture_is_refused_in_a_line_that_says_why(derainer):
    # torch's own refusal said "Expected more than 1 spatial element when training".
    with pytest.raises(DerainerError, match=r"^nlcl cannot derain a 1×1 picture: its Instance"):
        derainer.derain(torch.rand(1, 3, 1, 1))


@pytest.mark.parametrize("shape", [(1, 3, 1, 2), (2, 3, 3, 1), (1, 3, 5, 7)])
def test_a_picture_of_two_pixels_or_more_is_derained_to_its_size(derainer, shape):
    out = derainer.derain(torch.rand(shape))
    assert out.shape == shape and out.min() >= 0 and out.max() <= 1
