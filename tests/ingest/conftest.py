"""A dataset ingested once from the sample captures, copied fresh for each test that
changes it; and a library upgrade, faked."""

import shutil

import pytest

from rainbench import versions as versions_module
from rainbench.ingest import IngestOptions, ingest
from rainbench.ingest import run as run_module


@pytest.fixture(scope="session")
def _sample_dataset(tmp_path_factory, _capture_folder):
    ds = tmp_path_factory.mktemp("sample") / "ds"
    ingest([_capture_folder], ds, IngestOptions(workers=1))
    return ds


@pytest.fixture
def sample_dataset(tmp_path, _sample_dataset):
    """A fresh copy of a dataset ingested from the sample captures."""
    return shutil.copytree(_sample_dataset, tmp_path / "ds")


@pytest.fixture
def upgrade(monkeypatch):
    """`upgrade("99.0")`: from then on this process is as one started after numpy 99.0
    was installed (a worker process started apart keeps what it has)."""
    installed = versions_module.version

    def upgrade(numpy: str) -> None:
        monkeypatch.setattr(
            versions_module, "version", lambda name: numpy if name == "numpy" else installed(name)
        )
        run_module._versions_here.cache_clear()

    yield upgrade
    run_module._versions_here.cache_clear()  # the real versions again for the next test
