"""Member names: one place says what a sample stores under which name."""

from rainbench.shards.layout import member, pair_members, picture_ext


def test_a_member_is_the_key_and_the_extension() -> None:
    assert member("0123456789abcdef01234567", "rain.png") == "0123456789abcdef01234567.rain.png"


def test_a_raw_capture_is_decoded_from_its_preview() -> None:
    assert picture_ext("jpeg") == "jpg"
    assert picture_ext("dng") == "preview.jpg"


def test_a_pair_writes_its_pictures_then_its_layers_then_its_metadata() -> None:
    layers = ["transmission.png", "gt.png", "streaks.png", "rain.png"]
    assert pair_members(layers) == [
        "rain.png",
        "gt.png",
        "streaks.png",
        "transmission.png",
        "json",
    ]
