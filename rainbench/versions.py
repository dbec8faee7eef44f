"""The versions of the libraries that compute an output's numbers, which the output
records beside rainbench's own (`rainbench.__version__`): read from the installed
packages' metadata (torch's full version from its version.py), so asking imports none
of them.
"""

import re
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec
from pathlib import Path

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


def torch_version() -> str | None:
    """torch's version as `torch.__version__` says it, with the build tag that its
    package metadata may leave out ('2.5.1+cpu', '2.9.0+cu128': which CUDA, if any);
    read from torch/version.py, since importing torch takes seconds. None where torch
    is not installed."""
    spec = find_spec("torch")
    if spec is None or spec.origin is None:
        return None
    try:
        written = (Path(spec.origin).parent / "version.py").read_text(encoding="utf-8")
    except OSError:
        written = ""
    found = re.search(r"^__version__ = '([^']+)'$", written, re.MULTILINE)
    # A torch that writes it otherwise: its metadata's, which may lack the tag.
    return found.group(1) if found else version("torch")
