"""A dataset directory: dataset.json read as untrusted."""

import pytest

from rainbench.shards.dataset import Dataset, DatasetError


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"name": "ds", "counts": ', "cannot read it: not JSON"),
        (b"\xff\xfe\x00", "cannot read it: not JSON"),
        (b'["a", "list"]', "not an object"),
    ],
)
def test_a_dataset_json_that_is_no_json_object_is_one_line(tmp_path, content, message):
    (tmp_path / "dataset.json").write_bytes(content)
    with pytest.raises(DatasetError, match=message) as caught:
        Dataset(tmp_path).read_info()
    assert "\n" not in str(caught.value)


def test_no_dataset_json_is_not_a_dataset(tmp_path):
    with pytest.raises(DatasetError, match="not a rainbench dataset"):
        Dataset(tmp_path).read_info()
