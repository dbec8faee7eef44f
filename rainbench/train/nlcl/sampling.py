"""Where NLCL's contrasts look: non-local self-similar patch centres, in the images for
the layer contrast and in the generator's first-layer features for the location
contrast, and the gathers that turn chosen positions into feature vectors. Batched,
on the inputs' device.
"""

import torch
from torch import Tensor


def similar_centres(
    images: Tensor,
    count: int,
    window: int = 40,
    patch: int = 16,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The centres of the `count` patches most like a random reference patch, per image.

    For each image of the N×C×H×W batch a reference centre is drawn (from `generator`,
    see `reference_centres`); every centre in the `window`×`window` square around it
    (a window larger than the image is clamped to it) whose `patch`×`patch` patch lies
    inside the image is a candidate, ranked by the squared L2 distance
    between its patch and the reference's. Returns N×count×2 (row, column) in image
    coordinates: the reference first, then the nearest by distance, ties by position
    (row-major). `count` is clamped to the fewest candidates any reference can have,
    so the result's shape depends on the sizes only; see `candidate_count`.

    A patch centred on (r, c) covers rows r − patch//2 … r − patch//2 + patch − 1.
    """
    n, _, h, w = images.shape
    refs = reference_centres(n, h, w, window, patch, generator)
    return rank_candidates(images, refs, count, window, patch)


def candidate_count(height: int, width: int, window: int, patch: int) -> int:
    """The fewest candidates a reference centre can have in an image of this size."""
    _check_sizes(height, width, window, patch)
    return _fewest(height, window, patch) * _fewest(width, window, patch)


def reference_centres(
    n: int,
    height: int,
    width: int,
    window: int,
    patch: int,
    generator: torch.Generator | None = None,
) -> Tensor:
    """N×2 reference centres, uniform over a whole patch's width from each border, as
    the public code draws them (on a 256 crop 16…240, where a 40 window near a border
    loses some candidates); on images too small for that, wherever the reference's own
    patch fits. On the generator's device (CPU if none)."""
    _check_sizes(height, width, window, patch)
    device = generator.device if generator is not None else torch.device("cpu")
    rows = torch.randint(*_reference_range(height, patch), (n,), generator=generator, device=device)
    cols = torch.randint(*_reference_range(width, patch), (n,), generator=generator, device=device)
    return torch.stack([rows, cols], dim=1)


def rank_candidates(
    images: Tensor, refs: Tensor, count: int, window: int = 40, patch: int = 16
) -> Tensor:
    """`similar_centres` for given N×2 reference centres: N×count×2 on the images' device."""
    n, _, h, w = images.shape
    count = min(_checked_count(count), candidate_count(h, w, window, patch))
    wh, ww = min(window, h), min(window, w)
    device = images.device
    refs = refs.to(device, torch.long)
    cand_rows = refs[:, :1] - wh // 2 + torch.arange(wh, device=device)  # N × wh
    cand_cols = refs[:, 1:] - ww // 2 + torch.arange(ww, device=device)  # N × ww
    # The crop holding every candidate's patch. Rows and columns off the image only
    # feed candidates masked out below, so clamping them stands in for padding.
    rows, cols = _crop_indices(cand_rows, patch, h), _crop_indices(cand_cols, patch, w)
    batch = torch.arange(n, device=device)[:, None, None]
    pixels = images.detach().float()
    crops = pixels[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    patches = crops.unfold(2, patch, 1).unfold(3, patch, 1)  # N×C×wh×ww×patch×patch view
    reference = patches[:, :, wh // 2 : wh // 2 + 1, ww // 2 : ww // 2 + 1]
    # Exact differences, not ‖a‖² − 2ab + ‖b‖²: exact copies tie at 0, and the ranking
    # matches the brute-force reference.
    distances = (patches - reference).square_().sum(dim=(1, 4, 5)).flatten(1)
    rows_fit, cols_fit = _patch_fits(cand_rows, h, patch), _patch_fits(cand_cols, w, patch)
    inside = rows_fit[:, :, None] & cols_fit[:, None, :]
    distances = distances.masked_fill(~inside.flatten(1), float("inf"))
    distances[:, (wh // 2) * ww + ww // 2] = -1.0  # the reference first, even before copies
    order = distances.sort(dim=1, stable=True).indices[:, :count]
    return torch.stack([cand_rows.gather(1, order // ww), cand_cols.gather(1, order % ww)], dim=2)


def similar_centres_reference(
    images: Tensor, refs: Tensor, count: int, window: int = 40, patch: int = 16
) -> Tensor:
    """`rank_candidates` as plain loops over every candidate: slow, obvious, for tests."""
    n, _, h, w = images.shape
    count = min(_checked_count(count), candidate_count(h, w, window, patch))
    wh, ww = min(window, h), min(window, w)
    half = patch // 2
    out = torch.empty(n, count, 2, dtype=torch.long)
    for i in range(n):
        r0, c0 = (int(v) for v in refs[i])
        ref_patch = images[i, :, r0 - half : r0 - half + patch, c0 - half : c0 - half + patch]
        scored = []
        for r in range(r0 - wh // 2, r0 - wh // 2 + wh):
            for c in range(c0 - ww // 2, c0 - ww // 2 + ww):
                if not (half <= r <= h - patch + half and half <= c <= w - patch + half):
                    continue
                candidate = images[i, :, r - half : r - half + patch, c - half : c - half + patch]
                distance = float((candidate.float() - ref_patch.float()).square().sum())
                scored.append((-1.0 if (r, c) == (r0, c0) else distance, r, c))
        scored.sort()
        out[i] = torch.tensor([[r, c] for _, r, c in scored[:count]])
    return out


def gather(features: Tensor, centres: Tensor, image_size: tuple[int, int]) -> Tensor:
    """N×K×C: the feature vector under each of the N×K×2 image-coordinate `centres`,
    mapped to the N×C×h×w feature map as floor(r·h/H), floor(c·w/W), clamped."""
    h, w = features.shape[-2:]
    height, width = image_size
    centres = centres.to(features.device, torch.long)
    rows = (centres[..., 0] * h // height).clamp(0, h - 1)
    cols = (centres[..., 1] * w // width).clamp(0, w - 1)
    return gather_flat(features, rows * w + cols)


def gather_flat(features: Tensor, indices: Tensor) -> Tensor:
    """N×K×C: the vectors of the N×C×H×W `features` at N×K flat indices into H·W."""
    flat = features.flatten(2)
    indices = indices.to(features.device, torch.long)
    return flat.gather(2, indices[:, None, :].expand(-1, flat.shape[1], -1)).transpose(1, 2)


def _check_sizes(height: int, width: int, window: int, patch: int) -> None:
    if window < 1 or patch < 1:
        raise ValueError(f"window ({window}) and patch ({patch}) must be positive")
    if patch > min(height, width):
        raise ValueError(f"a {patch}×{patch} patch does not fit a {height}×{width} image")


def _checked_count(count: int) -> int:
    if count < 1:
        raise ValueError(f"count must be positive, not {count}")
    return count


def _reference_range(size: int, patch: int) -> tuple[int, int]:
    """[low, high) of reference coordinates along one axis of length `size`."""
    low, high = patch, size - patch
    if low > high:
        low, high = patch // 2, size - patch + patch // 2
    return low, high + 1


def _fewest(size: int, window: int, patch: int) -> int:
    """The fewest valid candidate coordinates in a window along one axis."""
    window = min(window, size)
    valid_low, valid_high = patch // 2, size - patch + patch // 2

    def valid(ref: int) -> int:
        start = ref - window // 2
        return min(start + window - 1, valid_high) - max(start, valid_low) + 1

    # The overlap of two intervals is concave in the shift, so an end is the minimum.
    low, high = _reference_range(size, patch)
    return min(valid(low), valid(high - 1))


def _crop_indices(candidates: Tensor, patch: int, size: int) -> Tensor:
    """The coordinates covered by the patches of N×k consecutive candidate centres."""
    span = torch.arange(candidates.shape[1] + patch - 1, device=candidates.device)
    return (candidates[:, :1] - patch // 2 + span).clamp(0, size - 1)


def _patch_fits(centres: Tensor, size: int, patch: int) -> Tensor:
    return (centres >= patch // 2) & (centres <= size - patch + patch // 2)
