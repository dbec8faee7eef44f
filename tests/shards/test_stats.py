"""What `rainbench stats` counts per rain type."""

import pyarrow as pa

from rainbench.shards.stats import rain_type_counts


def test_a_capture_labelled_clean_is_not_counted_as_untagged():
    samples = pa.table(
        {
            "rain_type": ["storm", None, None, None, "storm"],
            "layer": ["rainy", "rainy", "rainy", "clean", "rainy"],
            "rain_type_source": ["auto", "manual", None, None, "manual"],
        }
    )
    assert rain_type_counts(samples) == {
        "storm": 2,
        "labelled no rain": 1,
        "untagged": 1,
        "clean layer": 1,
    }
