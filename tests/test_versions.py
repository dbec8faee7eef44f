"""The libraries' versions an output records: read from the packages' metadata, in the
order asked, a package not installed left out."""

from importlib.metadata import version

from rainbench.versions import installed_versions


def test_the_installed_are_named_in_the_order_asked_and_the_rest_left_out():
    found = installed_versions(("pillow", "rainbench-no-such-package", "numpy"))
    assert list(found.items()) == [("pillow", version("pillow")), ("numpy", version("numpy"))]
