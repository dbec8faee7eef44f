"""A dataset ingested once from the sample captures, copied fresh for each test that
changes it."""

import shutil

import pytest

from rainbench.ingest import IngestOptions, ingest


@pytest.fixture(scope="session")
def _sample_dataset(tmp_path_factory, _capture_folder):
    ds = tmp_path_factory.mktemp("sample") / "ds"
    ingest([_capture_folder], ds, IngestOptions(workers=1))
    return ds


@pytest.fixture
def sample_dataset(tmp_path, _sample_dataset):
    """A fresh copy of a dataset ingested from the sample captures."""
    return shutil.copytree(_sample_dataset, tmp_path / "ds")
