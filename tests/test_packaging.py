"""What an installed rainbench holds: the README's demo command installs the package
itself (`pip install ".[demo]"`), not a link to the checkout, so a file the code reads
that pyproject.toml does not ship is missing there and only there."""

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_data_file_in_the_package_is_shipped():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    shipped = config["package-data"]
    package = ROOT / "rainbench"
    data = [
        path for path in package.rglob("*") if path.is_file() and path.suffix not in {".py", ".pyc"}
    ]
    assert data, "the package holds no data file: the test would prove nothing"
    missing = []
    for path in data:
        owner = ".".join(path.parent.relative_to(ROOT).parts)
        if not any(fnmatch.fnmatch(path.name, pattern) for pattern in shipped.get(owner, [])):
            missing.append(str(path.relative_to(ROOT)))
    assert not missing, f"not in [tool.setuptools.package-data]: {missing}"


def test_every_folder_of_the_package_is_a_package():
    # packages.find only finds folders with an __init__.py; the others are left out.
    package = ROOT / "rainbench"
    folders = [
        folder
        for folder in [package, *package.rglob("*")]
        if folder.is_dir() and folder.name != "__pycache__" and any(folder.glob("*.py"))
    ]
    assert [folder for folder in folders if not (folder / "__init__.py").exists()] == []
