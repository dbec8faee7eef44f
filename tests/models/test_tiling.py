"""Tiled deraining: identity comes back exactly, `guided` tiled stays within the
documented tolerance of the whole image, tiles are batched and cover odd sizes."""

import pytest

from rainbench.models import DerainerError, create_derainer, derain_tiled
from rainbench.models.base import Derainer
from rainbench.models.tiling import TILE_BATCH, TILED_TOLERANCE, _starts

torch = pytest.importorskip("torch")


class Recorder(Derainer):
    """Identity that remembers the shape of every batch it was given."""

    name = "recorder"

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[int, ...]] = []

    def derain(self, batch):
        self.calls.append(tuple(batch.shape))
        return batch.clone()


@pytest.mark.parametrize(
    ("shape", "tile", "overlap"),
    [((1, 3, 300, 400), 96, 12), ((2, 3, 37, 53), 16, 5), ((1, 3, 129, 64), 64, 0)],
)
def test_identity_tiled_reproduces_the_input(shape, tile, overlap):
    image = torch.rand(shape)
    tiled = derain_tiled(create_derainer("identity"), image, tile, overlap)
    assert tiled.shape == image.shape
    assert (tiled - image).abs().max() < 1e-6


def test_guided_tiled_matches_the_whole_image_within_the_tolerance(rainy, to_batch):
    # Radius 3, so its support is 12 px: the overlap. Measured: 0.0079 at most.
    image = to_batch(rainy("streak", 0))
    derainer = create_derainer("guided", radius=3)
    tiled = derain_tiled(derainer, image, tile=96, overlap=12)
    assert (tiled - derainer.derain(image)).abs().max() < TILED_TOLERANCE


def test_tiles_go_in_batches_and_cover_every_pixel():
    recorder = Recorder()
    image = torch.rand(1, 3, 37, 53)
    out = derain_tiled(recorder, image, tile=16, overlap=4)
    # Rows start at 0, 12, 21 (flush with the end), columns at 0, 12, 24, 36, 37.
    assert sum(shape[0] for shape in recorder.calls) == 3 * 5
    assert all(shape[0] <= TILE_BATCH and shape[1:] == (3, 16, 16) for shape in recorder.calls)
    assert torch.allclose(out, image, atol=1e-6)


def test_an_image_no_larger_than_a_tile_goes_through_in_one_call():
    recorder = Recorder()
    derain_tiled(recorder, torch.rand(2, 3, 37, 53), tile=64, overlap=8)
    assert recorder.calls == [(2, 3, 37, 53)]


def test_an_image_narrower_than_a_tile_is_tiled_along_its_length_only():
    recorder = Recorder()
    image = torch.rand(1, 3, 20, 100)
    assert torch.allclose(derain_tiled(recorder, image, tile=32, overlap=8), image, atol=1e-6)
    assert {shape[1:] for shape in recorder.calls} == {(3, 20, 32)}


def test_tile_starts_step_by_tile_minus_overlap_and_end_flush():
    assert _starts(37, 16, 4) == [0, 12, 21]
    assert _starts(40, 16, 4) == [0, 12, 24]
    assert _starts(16, 16, 4) == [0]
    assert _starts(10, 16, 4) == [0]


@pytest.mark.parametrize(("tile", "overlap"), [(16, 16), (16, -1), (0, 0)])
def test_an_overlap_not_below_the_tile_is_an_error(tile, overlap):
    with pytest.raises(DerainerError, match="0 ≤ overlap < tile"):
        derain_tiled(create_derainer("identity"), torch.rand(1, 3, 40, 40), tile, overlap)
