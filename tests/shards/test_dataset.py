"""A dataset directory: dataset.json read as untrusted."""

import pytest

from rainbench.shards.dataset import Dataset, DatasetError, initial_info


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"name": "ds", "counts": ', "cannot read it: not JSON"),
        (b"\xff\xfe\x00", "cannot read it: not JSON"),
        (b'["a", "list"]', "not an object"),
        (b'{"name": "x\\u0000y"}', "its name is not one line of text"),
        (b'{"name": "a\\nb"}', "its name is not one line of text"),
        (b'{"name": {"a": 1}}', "its name is not one line of text"),
        (b'{"name": "ds", "counts": [1]}', "its counts are not an object"),
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


def test_a_dataset_named_by_a_folder_with_a_line_break_keeps_one_line():
    assert initial_info("rain\nfall", {})["name"] == "rain_fall"
