"""NIQE and PIQE band by band against pyiqa's whole-image functions: the same value on
images of many sizes (partial blocks, one band, many bands), flat and dark regions, and
through the metric registry.
"""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from rainbench.metrics import create_metric

pyiqa = pytest.importorskip("pyiqa", reason="no-reference metrics need rainbench[eval]")
torch = pytest.importorskip("torch", reason="no-reference metrics need rainbench[eval]")
from pyiqa.archs.niqe_arch import calculate_niqe  # noqa: E402
from pyiqa.archs.piqe_arch import piqe as whole_piqe  # noqa: E402

from rainbench.metrics import banded  # noqa: E402

# Sizes (height, width): below two blocks, partial blocks both ways, tall, wide.
SIZES = [(96, 96), (200, 150), (517, 263), (263, 517), (640, 100)]


def scene(height: int, width: int, seed: int) -> np.ndarray:
    """Smooth texture, noise, bright streaks, a flat patch and a dark corner."""
    rng = np.random.default_rng(seed)
    image = gaussian_filter(rng.random((height, width, 3)), (4, 4, 0))
    image = (image - image.min()) / (np.ptp(image) + 1e-9) * 200 + 20
    image += rng.normal(0, 5, image.shape)
    for _ in range(height // 8):
        row, col = rng.integers(0, height), rng.integers(0, width)
        image[row : row + 20, col : col + 2] += 80
    image[: height // 4, : width // 4] = 128
    image[-height // 5 :, -width // 5 :] *= 0.1
    # Never white: PIQE divides by the brightest Y, and a division by 1 hides its order.
    return np.clip(image, 0, 230).astype(np.uint8)


def tensor(image: np.ndarray):
    return torch.tensor(image).permute(2, 0, 1).unsqueeze(0).float() / 255


@pytest.fixture
def pristine():
    """A valid LIVE-like model: any mean and a covariance that is positive definite."""
    rng = np.random.default_rng(0)
    spread = rng.normal(0, 1, (36, 36))
    cov = torch.tensor(spread @ spread.T / 36 + np.eye(36))
    return torch.tensor(rng.normal(1, 0.5, 36)), cov


@pytest.fixture(params=[20_000, banded.BAND_PIXELS], ids=["one-block-bands", "default-bands"])
def band_pixels(request, monkeypatch):
    monkeypatch.setattr(banded, "BAND_PIXELS", request.param)


@pytest.mark.parametrize(("height", "width"), SIZES)
def test_niqe_in_bands_is_pyiqas_niqe(height, width, pristine, band_pixels):
    x = tensor(scene(height, width, seed=height + width))
    mu, cov = pristine
    expected = calculate_niqe(x, 0, True, "yiq", mu.unsqueeze(0), cov.unsqueeze(0))
    got = banded.niqe(x, mu, cov)
    assert float(got) == pytest.approx(float(expected), rel=1e-9)


@pytest.mark.parametrize(("height", "width"), [*SIZES, (16, 16), (33, 47)])
def test_piqe_in_bands_is_pyiqas_piqe(height, width, band_pixels):
    x = tensor(scene(height, width, seed=height * width))
    assert float(banded.piqe(x)) == pytest.approx(float(whole_piqe(x)[0]), rel=1e-6)


def test_bands_are_many_at_the_small_band_size(monkeypatch):
    """The tests above cut 517 rows into bands of one block row: the path they check is
    the banded one, not a single band."""
    monkeypatch.setattr(banded, "BAND_PIXELS", 20_000)
    assert banded._band_rows(263, banded.NIQE_BLOCK) == banded.NIQE_BLOCK
    assert banded._band_rows(263, banded.PIQE_BLOCK) == 4 * banded.PIQE_BLOCK


def test_the_registered_metrics_give_pyiqas_values(any_niqe_parameters, monkeypatch):
    monkeypatch.setattr(banded, "BAND_PIXELS", 20_000)
    image = scene(300, 200, seed=1)
    for name in ("niqe", "piqe"):
        direct = pyiqa.create_metric(name, device="cpu", **_parameters(name))
        with torch.inference_mode():
            expected = float(direct(tensor(image)))
        assert create_metric(name)(image) == pytest.approx(expected, rel=1e-6), name


def _parameters(name: str) -> dict:
    from rainbench.metrics import weights

    path = weights.require(name)
    return {"pretrained_model_path": str(path)} if path else {}
