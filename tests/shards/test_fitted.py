"""A dataset's active fitted tagger as stored (rainbench.shards.fitted): what dataset.json
names is refused in one line unless it is a printable version and a path in taggers/."""

import json

import pytest

from rainbench.ingest import IngestOptions, ingest
from rainbench.shards.dataset import Dataset, DatasetError
from rainbench.shards.fitted import active_tagger
from rainbench.tagging.tagger import load_tagger


@pytest.fixture(scope="module")
def ds(tmp_path_factory, _capture_folder):
    ds = tmp_path_factory.mktemp("fitted") / "ds"
    ingest([_capture_folder], ds, IngestOptions(workers=1))
    return ds


def _name_fit(ds, version_named: str, version_stored: str) -> None:
    (ds / "taggers").mkdir(exist_ok=True)
    stored = {**load_tagger().to_json(), "version": version_stored}
    (ds / "taggers" / "tagger-fit-1.json").write_text(json.dumps(stored))
    info = json.loads((ds / "dataset.json").read_text())
    info["tagger"] = {"version": version_named, "path": "taggers/tagger-fit-1.json"}
    (ds / "dataset.json").write_text(json.dumps(info))


@pytest.mark.parametrize(
    ("named", "stored", "message"),
    [
        ("5\nerror: forged", "5-fit-1-x", r"dataset.json: tagger version '5\\nerror: forged'"),
        ("5\nerror: forged", "5\nerror: forged", r"tagger version '5\\nerror: forged' holds a"),
        ("5-fit-1-x", "5-fit-1-x\x1b[2J", r"the tagger's version '5-fit-1-x\\x1b\[2J' holds a"),
    ],
)
def test_a_tagger_version_that_would_break_the_output_is_refused(ds, named, stored, message):
    """Every output prints the version: a line break in it would forge a line of its own."""
    _name_fit(ds, named, stored)
    with pytest.raises(DatasetError, match=message) as refused:
        active_tagger(Dataset(ds))
    assert "\n" not in str(refused.value)


def test_a_printable_fitted_tagger_is_read(ds):
    _name_fit(ds, "5-fit-1-x", "5-fit-1-x")
    assert active_tagger(Dataset(ds)).version == "5-fit-1-x"
