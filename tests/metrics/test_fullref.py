"""The full-reference metrics compute the MATLAB convention deraining papers publish:
known answers, two independent SSIM implementations, and the YIQ luma that is not
PSNR-Y."""

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from scipy.signal import convolve2d
from skimage.metrics import structural_similarity

from rainbench.demo.captures import render_scene
from rainbench.metrics import MetricError, create_metric, fullref, list_metrics
from rainbench.metrics.fullref import matlab_y, psnr, psnr_y, ssim, ssim_y

# MATLAB rgb2ycbcr's published coefficients, kept as exact decimals.
Y_WEIGHTS = (Fraction("65.481"), Fraction("128.553"), Fraction("24.966"))
YIQ_GAP_DB = 20 * math.log10(255 / 219)  # ≈ 1.3219


def exact_y(r: int, g: int, b: int) -> Fraction:
    return 16 + sum(w * v for w, v in zip(Y_WEIGHTS, (r, g, b), strict=True)) / 255


def matlab_round(value: Fraction) -> int:
    return math.floor(value + Fraction(1, 2))  # half away from zero, for positive values


def pixel(r: int, g: int, b: int) -> np.ndarray:
    return np.array([[[r, g, b]]], dtype=np.uint8)


def pair(seed: int, width: int = 96, height: int = 72) -> tuple[np.ndarray, np.ndarray]:
    """A natural-looking reference and a blurred, noisy prediction of it."""
    ref = render_scene(width, height, seed)
    rng = np.random.default_rng(seed)
    blurred = gaussian_filter(ref.astype(np.float64), sigma=(1.0, 1.0, 0))
    pred = np.clip(np.rint(blurred + rng.normal(0, 4, ref.shape)), 0, 255).astype(np.uint8)
    return pred, ref


def all_colours() -> np.ndarray:
    """Every uint8 RGB colour once, as a 4096×4096×3 image."""
    codes = np.arange(1 << 24, dtype=np.uint32)
    rgb = np.stack([codes >> 16, (codes >> 8) & 255, codes & 255], axis=-1)
    return rgb.astype(np.uint8).reshape(4096, 4096, 3)


# --- MATLAB Y ---------------------------------------------------------------------------


def scaled_y(rgb: np.ndarray) -> np.ndarray:
    """255000·(Y − 16), exact: 1000 × MATLAB's coefficients are integers (≤ 55 845 000)."""
    r, g, b = (rgb[..., c].astype(np.int32) for c in range(3))
    return 65481 * r + 128553 * g + 24966 * b


def test_matlab_y_on_every_colour_is_the_exactly_rounded_formula():
    colours = all_colours()
    expected = 16 + (scaled_y(colours) + 127_500) // 255_000
    y = matlab_y(colours)
    assert y.dtype == np.uint8
    assert np.array_equal(y, expected)
    assert (y.min(), y.max()) == (16, 235)


@pytest.mark.parametrize("rgb", [(0, 0, 0), (255, 255, 255), (255, 0, 0), (17, 201, 99)])
def test_matlab_y_agrees_with_the_decimal_formula(rgb):
    assert matlab_y(pixel(*rgb))[0, 0] == matlab_round(exact_y(*rgb))


def test_ties_round_half_away_from_zero_unlike_numpy():
    # Y exactly 52.5 and 198.5: numpy's half-to-even round goes down, MATLAB goes up.
    for rgb, tie in [((2, 44, 141), Fraction(105, 2)), ((123, 251, 249), Fraction(397, 2))]:
        assert exact_y(*rgb) == tie
        assert np.round(float(tie)) == math.floor(tie)
        assert matlab_y(pixel(*rgb))[0, 0] == math.floor(tie) + 1


def test_ties_exist_for_194_colours_at_three_values():
    scaled = scaled_y(all_colours())
    ties = scaled[scaled % 255_000 == 127_500]
    assert ties.size == 194
    assert sorted(set(16 + ties / 255_000)) == [52.5, 125.5, 198.5]


# --- PSNR -------------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [1, 3, 7, 20])
def test_psnr_of_a_constant_offset_is_exact(offset):
    ref = np.random.default_rng(offset).integers(0, 256 - offset, (40, 50, 3), dtype=np.uint8)
    pred = ref + np.uint8(offset)
    assert psnr(pred, ref) == 20 * math.log10(255 / offset)
    assert psnr(ref, pred) == 20 * math.log10(255 / offset)


@pytest.mark.parametrize("offset", [1, 2, 5, 30])
def test_psnr_y_of_a_constant_offset_follows_the_rounded_y(offset):
    colours = [(10, 200, 50), (128, 128, 128), (200, 30, 90), (2, 44, 141)]
    ref = np.array(colours, dtype=np.uint8).reshape(2, 2, 3).repeat(5, axis=0).repeat(5, axis=1)
    pred = ref + np.uint8(offset)
    y_steps = [
        matlab_round(exact_y(*(v + offset for v in c))) - matlab_round(exact_y(*c)) for c in colours
    ]
    mse = sum(Fraction(step * step) for step in y_steps) / len(colours)  # equal areas
    assert psnr_y(pred, ref) == pytest.approx(20 * math.log10(255 / math.sqrt(mse)), abs=1e-12)


def test_identical_images_have_infinite_psnr_and_unit_ssim():
    _, ref = pair(seed=1)
    assert psnr(ref, ref) == math.inf
    assert psnr_y(ref, ref) == math.inf
    assert ssim(ref, ref) == 1.0
    assert ssim_y(ref, ref) == 1.0


# --- SSIM against two independent implementations ---------------------------------------


def naive_ssim(pred: np.ndarray, ref: np.ndarray) -> float:
    """Wang et al.'s ssim_index.m, literally: fspecial('gaussian', 11, 1.5) and 2-D
    filter2(…, 'valid') — the kernel is symmetric, so convolution is correlation."""
    grid = np.arange(-5, 6)
    kernel = np.exp(-(grid[:, None] ** 2 + grid[None, :] ** 2) / (2 * 1.5**2))
    kernel /= kernel.sum()
    x, y = pred.astype(np.float64), ref.astype(np.float64)

    def window_mean(plane):
        return convolve2d(plane, kernel, mode="valid")

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_x, mu_y = window_mean(x), window_mean(y)
    var_x = window_mean(x * x) - mu_x**2
    var_y = window_mean(y * y) - mu_y**2
    cov = window_mean(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    assert ssim_map.shape == (pred.shape[0] - 10, pred.shape[1] - 10)
    return float(ssim_map.mean())


def skimage_ssim(pred: np.ndarray, ref: np.ndarray) -> float:
    """skimage with Wang's settings; it filters the whole image and drops 5 px on each
    side of the map, which leaves exactly the 'valid' windows."""
    return structural_similarity(
        pred,
        ref,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
        channel_axis=-1 if pred.ndim == 3 else None,
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ssim_y_matches_naive_2d_filtering_and_skimage(seed):
    pred, ref = pair(seed)
    y_pred, y_ref = matlab_y(pred), matlab_y(ref)
    ours = ssim_y(pred, ref)
    assert 0.5 < ours < 0.99  # a real, imperfect prediction
    assert ours == pytest.approx(naive_ssim(y_pred, y_ref), abs=1e-12)
    assert ours == pytest.approx(skimage_ssim(y_pred, y_ref), abs=1e-6)


def test_rgb_ssim_is_the_mean_of_the_channels():
    pred, ref = pair(seed=3)
    channels = [naive_ssim(pred[..., c], ref[..., c]) for c in range(3)]
    assert ssim(pred, ref) == pytest.approx(np.mean(channels), abs=1e-12)
    assert ssim(pred, ref) == pytest.approx(skimage_ssim(pred, ref), abs=1e-6)


def test_ssim_does_not_depend_on_the_band_size(monkeypatch):
    pred, ref = pair(seed=4, width=37, height=53)
    whole = ssim_y(pred, ref)
    monkeypatch.setattr(fullref, "SSIM_BAND_VALUES", 7 * 27)  # 7 rows a band, the last 1
    assert ssim_y(pred, ref) == pytest.approx(whole, abs=1e-14)
    assert whole == pytest.approx(naive_ssim(matlab_y(pred), matlab_y(ref)), abs=1e-12)


def test_ssim_at_the_smallest_size_has_a_single_window():
    pred, ref = pair(seed=5, width=11, height=11)
    assert ssim_y(pred, ref) == pytest.approx(naive_ssim(matlab_y(pred), matlab_y(ref)))


# --- The YIQ trap -----------------------------------------------------------------------


def yiq_psnr(pred: np.ndarray, ref: np.ndarray) -> float:
    """What pyiqa's `psnry` computes: full-range luma 0.299R + 0.587G + 0.114B, unrounded."""
    weights = np.array([0.299, 0.587, 0.114])
    diff = pred.astype(np.float64) @ weights - ref.astype(np.float64) @ weights
    return 20 * math.log10(255 / math.sqrt(np.mean(diff**2)))


@pytest.mark.parametrize("seed", [0, 7, 11])
def test_psnr_y_is_matlab_y_not_yiq(seed):
    pred, ref = pair(seed, width=320, height=240)
    gap = psnr_y(pred, ref) - yiq_psnr(pred, ref)
    # Y − 16 = (219/255)·Y′ exactly, so only the rounding of Y moves the gap off 1.32 dB.
    assert gap == pytest.approx(YIQ_GAP_DB, abs=0.03)


@pytest.mark.parametrize("seed", [0, 7, 11])
def test_pyiqas_ssim_on_yiq_luma_reads_lower_by_the_documented_gap(seed):
    """metrics.md's figure: pyiqa's `ssim` (Y′ of YIQ, rounded) is 0.028–0.049 below
    `ssim_y` on these scenes; its `ssimc` is `ssim` on RGB."""
    pyiqa = pytest.importorskip("pyiqa", reason="pyiqa comes with rainbench[eval]")
    torch = pytest.importorskip("torch", reason="pyiqa comes with rainbench[eval]")
    pred, ref = pair(seed, width=320, height=240)
    pred_t, ref_t = (torch.tensor(x).permute(2, 0, 1)[None].double() / 255 for x in (pred, ref))
    with torch.inference_mode():
        yiq = float(pyiqa.create_metric("ssim", device="cpu")(pred_t, ref_t))
        rgb = float(pyiqa.create_metric("ssimc", device="cpu")(pred_t, ref_t))
    assert 0.028 <= ssim_y(pred, ref) - yiq <= 0.049
    assert rgb == pytest.approx(ssim(pred, ref), abs=1e-6)


def basicsr_y(rgb: np.ndarray) -> np.ndarray:
    """BasicSR 1.4.2's Y (`to_y_channel`, `bgr2ycbcr(…, y_only=True)` on its BGR order),
    written from its formula: float32 and not rounded."""
    weights = np.array([65.481, 128.553, 24.966], np.float32)
    return ((rgb.astype(np.float32) / 255) @ weights + 16).astype(np.float64)


@pytest.mark.parametrize("seed", [0, 7, 11])
def test_basicsr_unrounded_y_reads_higher_by_the_documented_gap(seed):
    """metrics.md's figures: on these scenes BasicSR's Y puts PSNR-Y 0.009–0.012 dB and
    SSIM-Y 0.0013–0.0014 above ours (the rounding of Y is noise it leaves out)."""
    pred, ref = pair(seed, width=320, height=240)
    y_pred, y_ref = basicsr_y(pred), basicsr_y(ref)
    unrounded = 20 * math.log10(255 / math.sqrt(np.mean((y_pred - y_ref) ** 2)))
    assert 0.009 <= unrounded - psnr_y(pred, ref) <= 0.013
    ssim_unrounded = structural_similarity(
        y_pred,
        y_ref,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
    )
    assert 0.0012 <= ssim_unrounded - ssim_y(pred, ref) <= 0.0015


# --- Through the registry ---------------------------------------------------------------


def test_registered_with_the_design_names():
    specs = {spec.name: spec for spec in list_metrics()}
    for name, min_side in [("psnr_y", 1), ("ssim_y", 11), ("psnr", 1), ("ssim", 11)]:
        assert specs[name].full_reference
        assert not specs[name].lower_is_better
        assert specs[name].min_side == min_side


@pytest.mark.parametrize(
    ("name", "function"), [("psnr_y", psnr_y), ("ssim_y", ssim_y), ("psnr", psnr), ("ssim", ssim)]
)
def test_create_metric_scores_a_pair(name, function):
    pred, ref = pair(seed=6)
    value = create_metric(name)(pred, ref)
    assert isinstance(value, float)
    assert value == function(pred, ref)


def test_create_metric_gives_inf_for_identical_images():
    _, ref = pair(seed=6)
    assert create_metric("psnr_y")(ref, ref) == math.inf


@pytest.mark.parametrize("name", ["psnr_y", "ssim_y", "psnr", "ssim"])
def test_bad_inputs_are_metric_errors(name):
    pred, ref = pair(seed=8)
    metric = create_metric(name)
    with pytest.raises(MetricError, match="differ in size"):
        metric(pred[:-1], ref)
    with pytest.raises(MetricError, match="uint8"):
        metric(pred.astype(np.float32), ref)
    with pytest.raises(MetricError, match="H×W×3"):
        metric(pred[..., 0], ref[..., 0])
    with pytest.raises(MetricError, match="full-reference"):
        metric(pred)


@pytest.mark.parametrize("function", [psnr_y, ssim_y, psnr, ssim])
def test_bad_inputs_are_metric_errors_when_called_directly_too(function):
    pred, ref = pair(seed=8)
    with pytest.raises(MetricError, match="differ in size"):
        function(pred[:-1], ref)
    with pytest.raises(MetricError, match="uint8"):
        function(pred.astype(np.float64), ref)  # a value, not an error, were it unchecked
    with pytest.raises(MetricError, match="uint8"):
        function(pred, ref.astype(np.float32))


@pytest.mark.parametrize(
    ("function", "shape"),
    [(psnr, (0, 4)), (psnr, (4, 4, 0)), (psnr_y, (0, 4, 3)), (ssim, (20, 20, 0))],
)
def test_arrays_without_values_are_metric_errors_not_nan(function, shape):
    # Before: PSNR divided by zero values, SSIM averaged no channels into NaN.
    empty = np.zeros(shape, np.uint8)
    with pytest.raises(MetricError, match="hold no values"):
        function(empty, empty)


@pytest.mark.parametrize("function", [psnr_y, ssim_y])
def test_the_y_metrics_called_directly_take_rgb_only(function):
    pred, ref = pair(seed=8)
    with pytest.raises(MetricError, match="H×W×3"):
        function(pred[..., 0], ref[..., 0])  # a broadcasting error, were it unchecked
    with pytest.raises(MetricError, match="uint8"):
        matlab_y(pred / 255)


@pytest.mark.parametrize("name", ["ssim_y", "ssim"])
def test_ssim_refuses_images_smaller_than_its_window(name):
    pred, ref = pair(seed=9, width=40, height=10)
    with pytest.raises(MetricError, match="at least 11 px"):
        create_metric(name)(pred, ref)
    with pytest.raises(MetricError, match="at least 11 px"):
        ssim(pred, ref)  # also when called directly


def test_psnr_takes_tiny_images():
    pred, ref = pixel(10, 20, 30), pixel(11, 21, 31)
    assert create_metric("psnr")(pred, ref) == 20 * math.log10(255)


def test_a_mask_scores_only_its_pixels():
    rng = np.random.default_rng(5)
    ref = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    pred = np.clip(ref + rng.normal(0, 4, ref.shape), 0, 255).astype(np.uint8)
    everything = np.ones(ref.shape[:2], bool)
    assert psnr_y(pred, ref, everything) == psnr_y(pred, ref)
    assert ssim_y(pred, ref, everything) == pytest.approx(ssim_y(pred, ref), abs=1e-12)
    mask = everything.copy()
    mask[:, :20] = False
    spoiled = pred.copy()
    spoiled[:, :15] = 0  # left of the mask, and of every window centred in it
    assert psnr_y(spoiled, ref, mask) == psnr_y(pred[:, 20:], ref[:, 20:])
    assert ssim_y(spoiled, ref, mask) == pytest.approx(ssim_y(pred, ref, mask), abs=1e-12)
    assert ssim_y(spoiled, ref) < ssim_y(pred, ref)


def test_an_empty_or_misshapen_mask_is_refused():
    image = np.zeros((20, 20, 3), np.uint8)
    with pytest.raises(MetricError, match="no pixel"):
        psnr_y(image, image, np.zeros((20, 20), bool))
    with pytest.raises(MetricError, match="does not match"):
        ssim_y(image, image, np.ones((10, 20), bool))
    border = np.zeros((20, 20), bool)
    border[0] = True
    with pytest.raises(MetricError, match="5 px"):
        ssim_y(image, image, border)
