"""NLCL losses: the layer contrast and PatchNCE match brute-force loops, take the heads'
vectors as they are, behave as contrasts should (clustered beats mixed, random gives
log P), and route gradients as documented; the simple terms are their formulas."""

import math

import pytest

torch = pytest.importorskip("torch")

from rainbench.train.core.contrast import patch_nce  # noqa: E402
from rainbench.train.nlcl.losses import (  # noqa: E402
    consistency_loss,
    layer_contrast,
    lsgan_loss,
    sparsity_loss,
)


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def unit(x):
    """Unit vectors along the last axis, as the projection heads give them."""
    return torch.nn.functional.normalize(x, dim=-1)


def layer_contrast_loops(image, rain, temperature, rain_temperature, rain_weight):
    losses = []
    for n in range(image.shape[0]):
        vectors = list(torch.cat([image[n], rain[n]]).double())
        labels = [0] * image.shape[1] + [1] * rain.shape[1]
        total, weights = 0.0, 0.0
        for a, anchor in enumerate(vectors):
            tau, weight = (rain_temperature, rain_weight) if labels[a] else (temperature, 1.0)
            logits = {k: float(anchor @ v) / tau for k, v in enumerate(vectors) if k != a}
            denominator = sum(math.exp(x) for x in logits.values())
            positives = [k for k in logits if labels[k] == labels[a]]
            loss = -sum(math.log(math.exp(logits[p]) / denominator) for p in positives)
            total += weight * loss / len(positives)
            weights += weight
        losses.append(total / weights)
    return sum(losses) / len(losses)


def patch_nce_loops(query, key, temperature):
    losses = []
    for n in range(query.shape[0]):
        q, k = query[n].double(), key[n].double()
        for i in range(len(q)):
            logits = [float(q[i] @ kj) / temperature for kj in k]
            losses.append(-logits[i] + math.log(sum(math.exp(x) for x in logits)))
    return sum(losses) / len(losses)


@pytest.mark.parametrize(
    ("rain_temperature", "rain_weight"), [(None, 1.0), (0.03, 1.0), (0.05, 2.5), (0.2, 0.5)]
)
def test_layer_contrast_matches_loops(rain_temperature, rain_weight):
    image = unit(torch.randn(2, 4, 6, generator=seeded(1)))
    rain = unit(torch.randn(2, 7, 6, generator=seeded(2)))
    loss = layer_contrast(image, rain, 0.1, rain_temperature, rain_weight)
    expected = layer_contrast_loops(image, rain, 0.1, rain_temperature or 0.1, rain_weight)
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_no_rain_temperature_is_the_symmetric_loss():
    image, rain = unit(torch.randn(3, 8, 16)), unit(torch.randn(3, 32, 16))
    assert torch.equal(layer_contrast(image, rain, 0.07), layer_contrast(image, rain, 0.07, 0.07))


def test_clustered_layers_score_lower_than_mixed_ones():
    direction = torch.randn(16, generator=seeded(3))
    noise = 0.1 * torch.randn(2, 40, 16, generator=seeded(4))
    clustered = layer_contrast(unit(direction + noise[:, :8]), unit(-direction + noise[:, 8:]))
    mixed_all = unit(torch.randn(2, 40, 16, generator=seeded(5)))
    mixed = layer_contrast(mixed_all[:, :8], mixed_all[:, 8:])
    assert float(clustered) < float(mixed) - 1.0


def test_layer_contrast_floor_is_not_zero():
    # Two collapsed, opposite sets: each anchor's positives are all at the maximum
    # similarity and its negatives vanish, so ℓ(a) = log(K − 1) for a set of K. With the
    # paper's 8 image and 128 rain vectors the symmetric loss cannot go below
    # (8·ln 7 + 128·ln 127) / 136 ≈ 4.674 (docs/nlcl.md: reading losses.csv).
    direction = unit(torch.randn(16, generator=seeded(6)))
    image, rain = direction.expand(1, 8, 16), -direction.expand(1, 128, 16)
    floor = (8 * math.log(7) + 128 * math.log(127)) / 136
    assert float(layer_contrast(image, rain, 0.07)) == pytest.approx(floor, abs=1e-4)
    assert round(floor, 3) == 4.674


def test_layer_contrast_gradients_reach_both_inputs_and_are_finite():
    image = unit(torch.randn(2, 8, 16)).requires_grad_()
    rain = unit(torch.randn(2, 32, 16)).requires_grad_()
    layer_contrast(image, rain, 0.07, 0.03, 2.0).backward()
    for tensor in (image, rain):
        assert torch.isfinite(tensor.grad).all() and tensor.grad.abs().sum() > 0


def test_layer_contrast_stays_finite_in_bf16():
    image = unit(torch.randn(1, 8, 16)).bfloat16()
    rain = unit(torch.randn(1, 32, 16)).bfloat16()
    assert torch.isfinite(layer_contrast(image, rain))


def test_the_contrasts_take_vectors_as_they_are():
    # The heads' vectors can start short of unit length (networks.py); the public code
    # does not normalise them again, so neither do the losses. In float64 they compute
    # in float64.
    image = unit(torch.randn(1, 8, 16, generator=seeded(9), dtype=torch.float64))
    rain = unit(torch.randn(1, 32, 16, generator=seeded(10), dtype=torch.float64))
    assert layer_contrast(image, rain).dtype == torch.float64
    assert float(layer_contrast(0.99 * image, 0.99 * rain)) != float(layer_contrast(image, rain))
    assert patch_nce(image, image).dtype == torch.float64
    assert float(patch_nce(0.99 * image, image)) != float(patch_nce(image, image))


def test_layer_contrast_needs_positives_for_every_anchor():
    with pytest.raises(ValueError, match="at least 2"):
        layer_contrast(torch.randn(1, 1, 4), torch.randn(1, 5, 4))


def test_patch_nce_matches_loops():
    query, key = (
        unit(torch.randn(2, 9, 5, generator=seeded(6))),
        unit(torch.randn(2, 9, 5, generator=seeded(7))),
    )
    assert float(patch_nce(query, key, 0.2)) == pytest.approx(
        patch_nce_loops(query, key, 0.2), rel=1e-5
    )


def test_patch_nce_sends_no_gradient_to_the_key():
    query = torch.randn(2, 16, 8, requires_grad=True)
    key = torch.randn(2, 16, 8, requires_grad=True)
    patch_nce(query, key).backward()
    assert query.grad.abs().sum() > 0
    assert key.grad is None


def test_patch_nce_is_log_p_for_random_vectors_and_small_for_matching_ones():
    p = 64
    # High dimension: random unit vectors are nearly orthogonal, all logits ≈ 0.
    random = patch_nce(
        unit(torch.randn(4, p, 4096, generator=seeded(8))), unit(torch.randn(4, p, 4096))
    )
    assert float(random) == pytest.approx(math.log(p), abs=0.15)
    keys = torch.eye(p).expand(2, -1, -1)  # distinct, orthogonal
    assert float(patch_nce(keys, keys)) < 1e-3


def test_simple_terms_are_their_formulas():
    logits = torch.tensor([0.0, 0.5, 2.0])
    assert float(lsgan_loss(logits, real=True)) == pytest.approx((1 + 0.25 + 1) / 3)
    assert float(lsgan_loss(logits, real=False)) == pytest.approx((0 + 0.25 + 4) / 3)
    rain, background = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    observed = torch.randn(2, 3, 4, 4)
    assert torch.allclose(
        consistency_loss(rain, background, observed), ((rain + background - observed) ** 2).mean()
    )
    assert torch.allclose(sparsity_loss(observed, background), (observed - background).abs().mean())
    assert float(consistency_loss(rain, background, rain + background)) == 0.0
