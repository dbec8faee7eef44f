"""The versions of the libraries that compute an output's numbers, which the output
records beside rainbench's own (`rainbench.__version__`): read from the installed
packages' metadata, so asking imports none of them.
"""

from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version

# What decodes, measures and tags a capture: ingest's runs and a fitted tagger name these.
CAPTURE_LIBRARIES = ("numpy", "scipy", "pillow", "pillow-heif", "rawpy", "av")


def installed_versions(packages: Iterable[str]) -> dict[str, str]:
    """The installed version of each of `packages`, in their order; one not installed
    is left out."""
    found = {}
    for package in packages:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found
