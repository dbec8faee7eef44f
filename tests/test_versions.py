"""The libraries' versions an output records: read from the packages' metadata, in the
order asked, a package not installed left out; torch's as it says it, build tag and all."""

from importlib.metadata import version

import pytest

from rainbench.versions import installed_versions, torch_version


def test_the_installed_are_named_in_the_order_asked_and_the_rest_left_out():
    found = installed_versions(("pillow", "rainbench-no-such-package", "numpy"))
    assert list(found.items()) == [("pillow", version("pillow")), ("numpy", version("numpy"))]


def test_torchs_version_is_what_torch_says_its_build_tag_included():
    torch = pytest.importorskip("torch")
    assert torch_version() == torch.__version__  # '2.5.1+cpu', which the metadata may lack
