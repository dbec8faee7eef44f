"""NLCL's loss terms: the layer contrast (supervised contrastive over image and rain
patch vectors, optionally asymmetric), LSGAN, and the decomposition's consistency and
sparsity (the location contrast is the core's: rainbench.train.core.contrast).
Scalars, averaged over the batch.

The contrasts take the projection heads' vectors as they are, as the public code does:
normalising them again would change the logits, because a head's output can be short
of unit length (networks.ProjectionHead).
"""

import torch
import torch.nn.functional as F
from torch import Tensor

from rainbench.train.core.contrast import at_least_float32


def layer_contrast(
    image_vectors: Tensor,
    rain_vectors: Tensor,
    temperature: float = 0.07,
    rain_temperature: float | None = None,
    rain_weight: float = 1.0,
) -> Tensor:
    """Supervised contrastive loss (Khosla et al., 2020) over image and rain patch vectors.

    Per image, the Ki image vectors (N×Ki×D) and Kr rain vectors (N×Kr×D), unit vectors,
    are pooled. Each vector a is an anchor; its positives P(a) are the other vectors of
    its label, its denominator holds every vector but itself:

        ℓ(a) = −1/|P(a)| Σ_{p∈P(a)} log( exp(a·p/τ_a) / Σ_{k≠a} exp(a·k/τ_a) )

    and the loss is the weighted mean Σ_a w_a ℓ(a) / Σ_a w_a, averaged over the batch.

    Image anchors use τ_a = `temperature` and w_a = 1. Rain anchors use τ_a =
    `rain_temperature` and w_a = `rain_weight`. With the defaults (rain_temperature =
    temperature, rain_weight = 1) this is the symmetric loss of NLCL (CVPR 2022).

    The asymmetric variant is our parameterisation of the journal version's loss, whose
    formula is not public: its premise is that rain patches have a lower intrinsic
    dimension than non-local image patches. A rain temperature below `temperature`
    sharpens the rain anchors' softmax, so a rain anchor is only satisfied when its
    fellow rain vectors are much closer than the image vectors, holding the rain set
    more compactly than the image set; `rain_weight` sets how much those terms count.
    """
    k_image, k_rain = image_vectors.shape[1], rain_vectors.shape[1]
    if k_image < 2 or k_rain < 2:
        raise ValueError(
            "the layer contrast needs at least 2 image and 2 rain vectors per image, got "
            f"{k_image} and {k_rain}"
        )
    k = k_image + k_rain
    device = image_vectors.device
    vectors = at_least_float32(torch.cat([image_vectors, rain_vectors], dim=1))
    is_rain = torch.arange(k, device=device) >= k_image
    rain_temperature = temperature if rain_temperature is None else rain_temperature
    temperatures = torch.where(is_rain, rain_temperature, temperature)
    weights = torch.where(is_rain, rain_weight, 1.0)

    self_pair = torch.eye(k, dtype=torch.bool, device=device)
    # −inf, not a large negative constant: it stays exact in low precision.
    logits = (vectors @ vectors.transpose(1, 2) / temperatures[:, None]).masked_fill(
        self_pair, float("-inf")
    )
    log_prob = logits - logits.logsumexp(dim=2, keepdim=True)
    positives = (is_rain[:, None] == is_rain[None, :]) & ~self_pair
    # masked_fill, not a product: the −inf on the diagonal times 0 would be NaN.
    per_anchor = -log_prob.masked_fill(~positives, 0.0).sum(dim=2) / positives.sum(dim=1)
    return ((per_anchor * weights).sum(dim=1) / weights.sum()).mean()


def lsgan_loss(logits: Tensor, real: bool) -> Tensor:
    """Least-squares GAN loss: mean((logits − 1)²) for real, mean(logits²) for fake."""
    return (logits - 1).square().mean() if real else logits.square().mean()


def consistency_loss(rain: Tensor, background: Tensor, observed: Tensor) -> Tensor:
    """mean((R̂ + B̂ − O)²): the two layers must add up to the rainy image."""
    return F.mse_loss(rain + background, observed)


def sparsity_loss(observed: Tensor, background: Tensor) -> Tensor:
    """mean|O − B̂|: rain is sparse, so the background should stay close to the input."""
    return F.l1_loss(background, observed)
