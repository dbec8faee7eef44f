"""The members of a shard, by name: what a sample stores under which name, and which
member holds the picture a reader decodes. Writers and readers take the names from here.
"""

from rainbench.capture.formats import FORMATS

METADATA = "json"  # <key>.json: the sample's immutable metadata, last in its sample
PREVIEW = "preview.jpg"  # a camera RAW's rendered, upright sRGB preview
RAIN = "rain.png"  # a pair's rainy picture
GROUND_TRUTH = "gt.png"  # a pair's clean picture
CONFIDENCE = "confidence.png"  # a real pair's confidence map: grey, 255 trusted, 0 skipped
# A split name as a reader accepts it (manifests, dataset.json's split fractions): longer
# than a new one may be, so a dataset holding a longer one (written before the cap) still
# reads; manifests cap it (manifest.STORED_SPLIT_MAX) so its files' names fit a file system.
STORED_SPLIT = "[a-z0-9][a-z0-9_-]*"


def member(key: str, ext: str) -> str:
    """The tar member of sample `key` holding `ext`, one of the manifest's `members`."""
    return f"{key}.{ext}"


def picture_ext(fmt: str) -> str:
    """Which member of a capture in format `fmt` holds the picture to decode: the stored
    bytes, or a camera RAW's preview."""
    return PREVIEW if FORMATS[fmt].raw else FORMATS[fmt].ext


def pair_members(layers: list[str]) -> list[str]:
    """A pair's members in the order they are written: the two pictures, the optional
    layers (streaks, transmission, …) sorted, the metadata."""
    return [RAIN, GROUND_TRUTH, *sorted(set(layers) - {RAIN, GROUND_TRUTH}), METADATA]
