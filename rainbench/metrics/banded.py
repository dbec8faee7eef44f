"""NIQE and PIQE computed band by band, from pyiqa's own building blocks, to the value
pyiqa's whole-image call gives (tests/metrics/test_banded.py holds them to it). pyiqa
filters and cuts the whole image at once, in float64 for NIQE: about 430 bytes per pixel,
5 GB on 12 MP, which two workers fault in page by page and share the memory bus for. A
band of rows needs the same work in a fraction of the memory, and runs faster alone too
(benchmarks/metric_memory.py).

Both metrics are local up to their pooling: a block's features depend only on pixels a
few rows away (a 7×7 Gaussian, and for NIQE's second scale the bicubic downscale). Each
band is filtered with real rows as margins, and the blocks' features are pooled in the
order pyiqa pools them, so even the float sums add up in the same order.
"""

import torch
from pyiqa.archs.func_util import diff_round, normalize_img_with_gauss
from pyiqa.archs.niqe_arch import compute_feature
from pyiqa.archs.piqe_arch import noise_criterion, notice_dist_criterion
from pyiqa.matlab_utils import blockproc, imresize, nancov, nanmean, symm_pad
from pyiqa.utils.color_util import to_y_channel

# A band's pixels, in whole rows of blocks (on a 12 MP image, one row of NIQE's blocks).
# Smaller bands ran no faster here; bands of 2 MP ran slower.
BAND_PIXELS = 500_000
# Rows beyond a band that its filters read, with room to spare: the 7×7 Gaussian reads 3
# rows each way, the downscale's antialiased bicubic 4 rows of the larger image (the tests
# fail at 2 and 3). Even, so a band starts on the same sampling phase as the whole image.
FILTER_MARGIN = 8
RESIZE_MARGIN = 16

NIQE_BLOCK = 96  # the LIVE model's block side at the first scale; 48 at the second
PIQE_BLOCK = 16


def niqe(image: torch.Tensor, mu_pristine: torch.Tensor, cov_pristine: torch.Tensor):
    """NIQE of one RGB image (1×3×H×W, 0..1), as pyiqa's `niqe` metric with the LIVE
    parameters `mu_pristine` and `cov_pristine`: Y of YIQ, rounded, in float64."""
    luma = diff_round(to_y_channel(image, 255, "yiq")).to(torch.float64)
    height = luma.shape[2] // NIQE_BLOCK * NIQE_BLOCK
    width = luma.shape[3] // NIQE_BLOCK * NIQE_BLOCK
    luma = luma[..., :height, :width]
    rows = _band_rows(width, NIQE_BLOCK)
    fine = _niqe_features(luma, NIQE_BLOCK, rows)
    coarse = _niqe_features(_half(luma, rows), NIQE_BLOCK // 2, rows // 2)
    features = torch.cat([fine, coarse], -1)
    # The distance between the image's Gaussian and the pristine one (the paper's Eq. 10).
    mu = nanmean(features, dim=1)
    cov = nancov(features)
    pooled = torch.linalg.pinv((cov_pristine.to(luma).unsqueeze(0) + cov) / 2)
    gap = (mu_pristine.to(luma).unsqueeze(0) - mu).unsqueeze(1)
    return torch.sqrt(torch.bmm(torch.bmm(gap, pooled), gap.transpose(1, 2)).squeeze())


def _niqe_features(luma: torch.Tensor, block: int, rows: int) -> torch.Tensor:
    """The 18 features of every block (1 × blocks × 18), blocks column by column as
    pyiqa's `blockproc` orders them."""
    columns = luma.shape[3] // block
    bands = []
    for normalized in _normalized_bands(luma, rows, luma.shape[2]):
        features = blockproc(normalized, [block, block], fun=compute_feature)
        bands.append(features.reshape(columns, -1, features.shape[-1]))
    joined = torch.cat(bands, 1)  # columns × all rows of blocks × 18
    return joined.reshape(1, -1, joined.shape[-1])


def _band_rows(width: int, block: int) -> int:
    """Rows per band: whole blocks, about BAND_PIXELS, at least one block."""
    return max(1, BAND_PIXELS // (width * block)) * block


def _normalized_bands(image: torch.Tensor, rows: int, height: int):
    """The first `height` rows of `image` in bands of `rows`, each normalised by pyiqa's
    local mean and contrast (replicated borders) with the image's own rows around it:
    row for row what normalising the whole image gives."""
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        start, stop = max(0, top - FILTER_MARGIN), min(image.shape[2], bottom + FILTER_MARGIN)
        normalized = normalize_img_with_gauss(image[..., start:stop, :], padding="replicate")
        yield normalized[..., top - start : bottom - start, :]


def _half(luma: torch.Tensor, rows: int) -> torch.Tensor:
    """The image at half size, by MATLAB's antialiased bicubic `imresize`, band by band."""
    height = luma.shape[2]
    halves = []
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        start, stop = max(0, top - RESIZE_MARGIN), min(height, bottom + RESIZE_MARGIN)
        half = imresize(luma[..., start:stop, :] / 255.0, scale=0.5, antialiasing=True) * 255.0
        skip = (top - start) // 2
        halves.append(half[..., skip : skip + (bottom - top) // 2, :])
    return torch.cat(halves, 2)


def piqe(image: torch.Tensor):
    """PIQE of one RGB image (1×3×H×W, 0..1), as pyiqa's `piqe` metric."""
    luma = to_y_channel(image, 1, "yiq")
    luma = torch.round(255 * (luma / luma.max()))  # in pyiqa's order: it rounds float32
    height, width = luma.shape[2], luma.shape[3]
    # pyiqa pads by the remainder (not up to a whole block); partial blocks are dropped.
    luma = symm_pad(luma, (0, width % PIQE_BLOCK, 0, height % PIQE_BLOCK))
    usable = luma.shape[2] // PIQE_BLOCK * PIQE_BLOCK
    scores, active = [], []
    for normalized in _normalized_bands(luma, _band_rows(luma.shape[3], PIQE_BLOCK), usable):
        blocks = normalized.unfold(2, PIQE_BLOCK, PIQE_BLOCK).unfold(3, PIQE_BLOCK, PIQE_BLOCK)
        blocks = blocks.contiguous().view(1, -1, PIQE_BLOCK, PIQE_BLOCK)
        variance = torch.var(blocks, dim=[2, 3], unbiased=True)
        busy = (variance > 0.1).float()  # spatially prominent blocks
        sigma, beta = noise_criterion(blocks, PIQE_BLOCK - 1, variance)
        noisy = (sigma > 2 * beta).float()
        impaired = notice_dist_criterion(blocks, 6, 0.1, PIQE_BLOCK).float()
        scores.append(busy * impaired * (1 - variance) + busy * noisy * variance)
        active.append(busy)
    # One sum over all blocks, in pyiqa's order (row by row), as pyiqa sums them.
    distortion = torch.cat(scores, 1).sum(dim=1)
    prominent = torch.cat(active, 1).sum(dim=1)
    return (distortion + 1) / (prominent + 1) * 100
