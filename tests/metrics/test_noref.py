"""No-reference metrics through pyiqa: the calibration images in pyiqa's wheel against
pyiqa's published values, the size limit, missing weights, and never a download.
"""

import importlib.metadata
import re
import socket
import sys
import warnings

import numpy as np
import pytest
from PIL import Image

from rainbench.metrics import create_metric, list_metrics, weights
from rainbench.metrics.registry import MetricError

pyiqa = pytest.importorskip("pyiqa", reason="no-reference metrics need rainbench[eval]")
torch = pytest.importorskip("torch", reason="no-reference metrics need rainbench[eval]")

# pyiqa's ResultsCalibra/calibration_summary.csv, rows "<metric>(ours)"; the wheel ships
# the images but not this table.
PUBLISHED = {
    "niqe": {"I03": 15.6538, "I04": 3.6549, "I06": 3.2342, "I08": 3.1921, "I19": 9.0722},
    "piqe": {"I03": 100.0, "I04": 21.6242, "I06": 35.8646, "I08": 41.147, "I19": 76.9485},
    "brisque": {"I03": 94.6452, "I04": -0.1082, "I06": 1.0759, "I08": 5.1423, "I19": 66.8381},
    "musiq": {"I03": 12.4773, "I04": 75.7764, "I06": 73.7459, "I08": 75.4604, "I19": 38.0248},
}


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """A download attempt fails the test instead of going unnoticed."""

    def refuse(*args):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture(scope="module")
def calibration_images() -> dict[str, np.ndarray]:
    found = {
        f.name.removesuffix(".bmp"): f.locate()
        for f in importlib.metadata.files("pyiqa") or []
        if f.parent.as_posix() == "ResultsCalibra/dist_dir"
    }
    if sorted(found) != sorted(PUBLISHED["niqe"]):
        pytest.skip("this pyiqa wheel does not ship ResultsCalibra/dist_dir")
    return {name: np.asarray(Image.open(path).convert("RGB")) for name, path in found.items()}


@pytest.fixture
def empty_weights(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "weights"


def weights_or_skip(metric: str) -> None:
    """Uses the user's weights ($RAINBENCH_WEIGHTS or the default folder, or pyiqa's cache)."""
    try:
        weights.require(metric)
    except MetricError as error:
        pytest.skip(str(error))


@pytest.mark.parametrize("metric", ["niqe", "piqe", "brisque", "musiq"])
def test_calibration_images_give_pyiqas_published_values(metric, calibration_images):
    weights_or_skip(metric)
    score = create_metric(metric)
    got = {name: score(image) for name, image in calibration_images.items()}
    assert got == pytest.approx(PUBLISHED[metric], abs=0.01)


def test_directions_and_sizes_are_registered():
    lower_is_better = {
        "niqe": True,
        "brisque": True,
        "piqe": True,
        "musiq": False,
        "topiq_nr": False,
    }
    specs = {s.name: s for s in list_metrics() if s.name in lower_is_better}
    assert not any(s.full_reference for s in specs.values())
    assert {n: s.lower_is_better for n, s in specs.items()} == lower_is_better
    assert specs["niqe"].min_side == 96


def test_niqe_refuses_images_below_96_px(any_niqe_parameters):
    niqe = create_metric("niqe")
    with pytest.raises(MetricError, match="at least 96 px"):
        niqe(np.zeros((95, 400, 3), np.uint8))
    assert np.isfinite(niqe(np.random.default_rng(0).integers(0, 256, (96, 96, 3), np.uint8)))


def test_brisque_refuses_images_below_7_px_rather_than_crash(empty_weights):
    # A file of the right form (not the published SVR): the failure is in the features.
    empty_weights.mkdir()
    generator = torch.Generator().manual_seed(0)
    support = torch.randn(10, 36, generator=generator, dtype=torch.float64)
    coefficients = torch.randn(10, generator=generator, dtype=torch.float64)
    torch.save((coefficients, support), empty_weights / "brisque_svm_weights.pth")
    brisque = create_metric("brisque", weights_dir=str(empty_weights))
    image = np.random.default_rng(0).integers(0, 256, (50, 50, 3), np.uint8)
    for small in (image[:6], image[:, :6]):
        with pytest.raises(MetricError, match=r"^brisque needs images of at least 7 px per side"):
            brisque(small)
    assert np.isfinite(brisque(image[:7])) and np.isfinite(brisque(image[:, :7]))


def test_a_view_of_an_array_is_scored_as_its_copy(any_niqe_parameters):
    """RGB taken from OpenCV's BGR (`bgr[..., ::-1]`) or a flipped image is a view with a
    negative stride, which torch refuses: before, a ValueError, not a score."""
    bgr = np.random.default_rng(0).integers(0, 256, (120, 130, 3), np.uint8)
    for name in ("niqe", "piqe"):
        metric = create_metric(name)
        for view in (bgr[..., ::-1], bgr[:, ::-1], bgr[::-1]):
            assert metric(view) == metric(view.copy()), name


def test_a_flat_image_is_one_failure_not_a_crash(any_niqe_parameters):
    # Nor a warning from torch (cov() without observations) on stderr beside that line.
    with pytest.raises(MetricError, match="niqe"), warnings.catch_warnings():
        warnings.simplefilter("error")
        create_metric("niqe")(np.full((200, 300, 3), 128, np.uint8))
    with pytest.raises(MetricError, match="piqe is undefined"):
        create_metric("piqe")(np.zeros((200, 300, 3), np.uint8))


@pytest.mark.parametrize(
    ("metric", "file"),
    [
        ("niqe", "niqe_modelparameters.mat"),
        ("brisque", "brisque_svm_weights.pth"),
        ("musiq", "musiq_koniq_ckpt-e95806b9.pth"),
        ("topiq_nr", "cfanet_nr_koniq_res50-9a73138b.pth"),
    ],
)
def test_missing_weights_give_the_clear_error(metric, file, empty_weights):
    with pytest.raises(MetricError, match=f"needs {re.escape(file)}.*rainbench weights"):
        create_metric(metric, weights_dir=str(empty_weights))


def _import_into(folder) -> str:
    """The end of a message whose fix imports brisque's file into `folder`, where the run
    looks (its --weights-dir), as a pattern."""
    return (
        rf"rainbench weights import brisque_svm_weights.pth --weights-dir {re.escape(str(folder))}$"
    )


def test_a_weight_file_that_does_not_load_is_one_line(empty_weights):
    empty_weights.mkdir()
    (empty_weights / "brisque_svm_weights.pth").write_bytes(bytes(range(256)) * 4)
    message = (
        r"^brisque: .* is not a PyTorch weight file of plain tensors, .*; replace it: "
        + _import_into(empty_weights)
    )
    with pytest.raises(MetricError, match=message):
        create_metric("brisque", weights_dir=str(empty_weights))


def test_a_weight_file_pyiqa_cannot_build_from_names_the_fix_for_this_weights_dir(
    empty_weights, monkeypatch
):
    empty_weights.mkdir()
    torch.save([torch.zeros(2)], empty_weights / "brisque_svm_weights.pth")  # plain tensors

    def refuse(*args, **kwargs):
        raise RuntimeError("Error(s) in loading state_dict")

    monkeypatch.setattr(pyiqa, "create_metric", refuse)
    message = (
        r"^brisque: .* does not load \(Error\(s\) in loading state_dict\); replace it: "
        + _import_into(empty_weights)
    )
    with pytest.raises(MetricError, match=message):
        create_metric("brisque", weights_dir=str(empty_weights))


def test_running_out_of_memory_building_a_metric_is_not_blamed_on_its_weight_file(
    empty_weights, monkeypatch
):
    empty_weights.mkdir()
    torch.save([torch.zeros(2)], empty_weights / "brisque_svm_weights.pth")

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(pyiqa, "create_metric", out_of_memory)
    with pytest.raises(torch.cuda.OutOfMemoryError, match=r"^CUDA out of memory"):
        create_metric("brisque", weights_dir=str(empty_weights))


def test_the_pyiqa_model_is_built_once(monkeypatch):
    built = []
    real = pyiqa.create_metric

    def counting(*args, **kwargs):
        built.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(pyiqa, "create_metric", counting)
    piqe = create_metric("piqe")
    image = np.random.default_rng(0).integers(0, 256, (64, 80, 3), np.uint8)
    assert piqe(image) == piqe(image)
    assert len(built) == 1


def test_threads_hold_for_each_call_and_the_callers_come_back(monkeypatch):
    # A metric made once and called many times, from a notebook: torch runs on the
    # metric's count while it builds and scores, and on the session's own in between and
    # after a call that fails; without `threads` it keeps whatever the caller has.
    from rainbench.metrics import banded

    seen, build, score = [], pyiqa.create_metric, banded.piqe

    def building(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return build(*args, **kwargs)

    def scoring(x):
        seen.append(torch.get_num_threads())
        if not x.any():
            raise RuntimeError("no blocks")
        return score(x)

    monkeypatch.setattr(pyiqa, "create_metric", building)
    monkeypatch.setattr(banded, "piqe", scoring)
    image = np.random.default_rng(0).integers(0, 256, (32, 40, 3), np.uint8)
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        piqe = create_metric("piqe", threads=2)
        assert torch.get_num_threads() == 3
        piqe(image)
        assert torch.get_num_threads() == 3
        with pytest.raises(MetricError, match="piqe fails on this image: no blocks"):
            piqe(np.zeros_like(image))
        assert torch.get_num_threads() == 3
        create_metric("piqe")(image)
        assert seen == [2, 2, 2, 3, 3] and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_without_pyiqa_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyiqa", None)
    with pytest.raises(MetricError, match=r"pip install 'rainbench\[eval\]'"):
        create_metric("piqe")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_asked_where_there_is_none():
    with pytest.raises(MetricError, match="CUDA is not available"):
        create_metric("piqe", device="cuda")


@pytest.mark.parametrize("flags", [(True, True), (True, False), (False, False)])
def test_on_cuda_scoring_runs_in_full_float32_and_restores_the_flags(flags):
    from rainbench.metrics.noref import full_float32

    backends = torch.backends
    saved = backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32
    backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32 = flags
    try:
        with full_float32(torch, torch.device("cpu")):
            assert (backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32) == flags
        with pytest.raises(ValueError), full_float32(torch, torch.device("cuda")):
            assert not backends.cudnn.allow_tf32 and not backends.cuda.matmul.allow_tf32
            raise ValueError("the image fails")
        assert (backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32) == flags
    finally:
        backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_gives_the_cpu_value(calibration_images):
    image = calibration_images["I04"]
    assert create_metric("piqe", device="cuda")(image) == pytest.approx(
        create_metric("piqe")(image), abs=1e-3
    )
