"""NLCL sampling: the batched ranking matches brute force, the reference always comes
first, exact copies rank next, references keep the public code's distance from the
borders, draws are reproducible, and the gathers pick the right vectors at each feature
resolution."""

import pytest

torch = pytest.importorskip("torch")

from rainbench.train.nlcl.sampling import (  # noqa: E402
    candidate_count,
    gather,
    gather_flat,
    rank_candidates,
    reference_centres,
    similar_centres,
    similar_centres_reference,
)

WINDOW, PATCH = 20, 8


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("shape", [(3, 3, 48, 56), (2, 1, 33, 27)])
def test_batched_ranking_matches_brute_force(shape):
    images = torch.rand(shape, generator=seeded(1))
    n, _, h, w = shape
    refs = reference_centres(n, h, w, WINDOW, PATCH, seeded(2))
    # The top-left corner too, where part of the window's candidates fall off the image.
    refs[0] = torch.tensor([WINDOW // 2, WINDOW // 2])
    fast = rank_candidates(images, refs, 6, WINDOW, PATCH)
    assert fast.shape == (n, 6, 2)
    assert torch.equal(fast, similar_centres_reference(images, refs, 6, WINDOW, PATCH))


def test_the_reference_comes_first_and_every_centre_is_a_valid_candidate():
    images = torch.rand(4, 3, 48, 56, generator=seeded(3))
    refs = reference_centres(4, 48, 56, WINDOW, PATCH, seeded(4))
    centres = rank_candidates(images, refs, 10, WINDOW, PATCH)
    assert torch.equal(centres[:, 0], refs)
    offsets = centres - refs[:, None, :]
    assert (offsets >= -WINDOW // 2).all() and (offsets < WINDOW - WINDOW // 2).all()
    assert (centres >= PATCH // 2).all()
    assert (centres[..., 0] <= 48 - PATCH // 2).all() and (centres[..., 1] <= 56 - PATCH // 2).all()
    assert all(len({tuple(c) for c in image.tolist()}) == 10 for image in centres)


def test_a_planted_copy_of_the_reference_patch_ranks_right_after_it():
    images = torch.rand(2, 3, 48, 56, generator=seeded(5))
    refs = torch.tensor([[24, 30], [20, 20]])
    copies = torch.tensor([[18, 35], [13, 12]])  # inside each window
    half = PATCH // 2
    for image, (r, c), (rc, cc) in zip(images, refs.tolist(), copies.tolist(), strict=True):
        image[:, rc - half : rc + half, cc - half : cc + half] = image[
            :, r - half : r + half, c - half : c + half
        ].clone()
    centres = rank_candidates(images, refs, 4, WINDOW, PATCH)
    assert torch.equal(centres[:, 1], copies)


def test_count_is_clamped_to_the_fewest_candidates():
    # 20×20 image, window 40 → clamped to the image; centres 4…16 on each axis: 13².
    images = torch.rand(2, 3, 20, 20)
    assert candidate_count(20, 20, 40, PATCH) == 13 * 13
    centres = similar_centres(images, 1000, window=40, patch=PATCH, generator=seeded())
    assert centres.shape == (2, 169, 2)
    assert all(len({tuple(c) for c in image.tolist()}) == 169 for image in centres)
    # In a larger image a reference nearest a corner sees the fewest: at (8, 8) window
    # rows and columns −2…17, valid 4…17.
    assert candidate_count(48, 56, WINDOW, PATCH) == 14 * 14


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="does not fit"):
        similar_centres(torch.rand(1, 3, 6, 30), 4, patch=PATCH)
    with pytest.raises(ValueError, match="count"):
        similar_centres(torch.rand(1, 3, 30, 30), 0, patch=PATCH)


def test_draws_are_reproducible_with_a_seeded_generator():
    images = torch.rand(3, 3, 37, 45)  # odd sizes
    first = similar_centres(images, 8, WINDOW, PATCH, seeded(7))
    assert torch.equal(first, similar_centres(images, 8, WINDOW, PATCH, seeded(7)))
    assert not torch.equal(first, similar_centres(images, 8, WINDOW, PATCH, seeded(8)))


def test_images_in_a_batch_get_their_own_references():
    image = torch.rand(1, 3, 64, 64)
    centres = similar_centres(image.expand(6, -1, -1, -1), 5, WINDOW, PATCH, seeded(9))
    assert len({tuple(c) for c in centres[:, 0].tolist()}) > 1


def test_gather_maps_centres_to_the_feature_resolution():
    features = torch.randn(2, 5, 12, 7)
    centres = torch.tensor([[[0, 0], [47, 55], [20, 30]], [[8, 9], [47, 0], [4, 55]]])
    vectors = gather(features, centres, (48, 56))
    assert vectors.shape == (2, 3, 5)
    for n in range(2):
        for k in range(3):
            r, c = centres[n, k].tolist()
            assert torch.equal(vectors[n, k], features[n, :, r * 12 // 48, c * 7 // 56])
    # At full resolution the centre itself.
    assert torch.equal(
        gather(features, torch.tensor([[[11, 6]]] * 2), (12, 7))[:, 0], features[:, :, 11, 6]
    )


def test_gather_flat_picks_vectors_and_passes_gradients():
    features = torch.randn(2, 4, 5, 6, requires_grad=True)
    indices = torch.tensor([[0, 29, 7], [13, 13, 1]])
    vectors = gather_flat(features, indices)
    for n in range(2):
        for k in range(3):
            i = int(indices[n, k])
            assert torch.equal(vectors[n, k], features[n, :, i // 6, i % 6])
    vectors.sum().backward()
    assert features.grad.abs().sum() > 0


def test_references_keep_a_whole_patch_from_every_border():
    # As the public code draws them: on a 256 crop with 16 px patches, 16…240.
    refs = reference_centres(4000, 256, 64, 40, 16, seeded(12))
    assert (refs[:, 0].min(), refs[:, 0].max()) == (16, 240)
    assert (refs[:, 1].min(), refs[:, 1].max()) == (16, 48)
    # An image too small for that: wherever the reference's own patch fits.
    refs = reference_centres(500, 20, 20, 40, 16, seeded(13))
    assert refs.min() == 8 and refs.max() == 12


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_ranking_on_the_gpu_matches_brute_force_on_the_cpu():
    images = torch.rand(4, 3, 64, 64, generator=seeded(7))
    refs = reference_centres(4, 64, 64, 40, 16, seeded(8))
    on_gpu = rank_candidates(images.cuda(), refs.cuda(), 8, 40, 16)
    assert on_gpu.is_cuda
    # The GPU's float sums may order a near-tie the other way; nothing more.
    same = (on_gpu.cpu() == similar_centres_reference(images, refs, 8, 40, 16)).all(-1)
    assert same.float().mean() >= 0.95
