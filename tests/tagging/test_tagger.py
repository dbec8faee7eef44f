"""The shipped tagger: its parameter file, its decisions, and its caveats."""

import io
import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from rainbench.capture.decode import decode_capture
from rainbench.capture.formats import FORMATS
from rainbench.synth.recipes import RECIPES
from rainbench.synth.render import render
from rainbench.tagging.features import FEATURE_NAMES, FEATURES_VERSION
from rainbench.tagging.measure import compute_features
from rainbench.tagging.tagger import (
    LOW_CONFIDENCE_CAP,
    RAIN_TYPES,
    Tagger,
    TaggerError,
    load_tagger,
    looks_night,
)
from rainbench.train.tagger import INPUTS, sample_photo


def _capture(pixels: np.ndarray, quality: int = 92):
    """Through ingest's own JPEG decode, as a capture would be."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    decoded = decode_capture(buffer.getvalue(), FORMATS["jpeg"])
    return compute_features(decoded.preview), decoded.height


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A held-out photograph (never calibrated on), at a camera-like size."""
    image = Image.open(sample_photo("chelsea.png")).convert("RGB")
    return np.asarray(image.resize((1800, 1200), Image.Resampling.BICUBIC))


def test_the_shipped_parameters_match_the_features():
    tagger = load_tagger()
    assert tagger.features_version == FEATURES_VERSION
    assert tagger.inputs == tuple(name for name, _, _ in INPUTS)
    assert Tagger.from_json(tagger.to_json()).to_json() == tagger.to_json()
    assert tagger.calibration["script"] == "benchmarks/calibrate_tagger.py"


@pytest.mark.parametrize("rain_type", RAIN_TYPES)
def test_each_type_is_recognised_on_clear_examples(photo, rain_type):
    # Five renders at the middle of the recipe's intensity range; the tagger is not
    # perfect (docs/tagging.md gives its measured confusions), so four must be right,
    # and surer than the 0.4 a capped tag may claim (tagger 5, calibrated on four rain
    # models that disagree most about drizzle, gives version 1's drizzle 0.50–0.56).
    typical = sum(RECIPES[rain_type].intensity) / 2
    right = 0
    for seed in range(5):
        features, height = _capture(render(photo, rain_type, seed, intensity=typical).rain)
        tag = load_tagger().tag(features, "rainy", height)
        assert not tag.caveats
        right += tag.rain_type == rain_type and tag.confidence > 0.4
    assert right >= 4


def test_a_clean_photo_is_not_flagged(photo):
    features, height = _capture(photo)
    tag = load_tagger().tag(features, "clean", height)
    assert tag.rain_type is None and tag.confidence is None
    assert tag.looks_rainy is False and tag.best == "clean"


def test_a_rainy_capture_in_the_clean_layer_is_flagged(photo):
    features, height = _capture(render(photo, "streak", seed=6, intensity=0.06).rain)
    assert load_tagger().tag(features, "clean", height).looks_rainy is True


def test_a_layer_neither_rainy_nor_clean_is_refused():
    # Anything but "clean" would otherwise be tagged as rainy.
    features = dict.fromkeys(FEATURE_NAMES, 0.2)
    with pytest.raises(ValueError, match=r"layer is one of rainy, clean, not 'wet'"):
        load_tagger().tag(features, "wet", 480)


@pytest.mark.parametrize(
    ("caveat", "make", "capped"),
    [
        ("tiny", lambda p: np.asarray(Image.fromarray(p).resize((60, 40))), True),
        (
            "grey",
            lambda p: np.repeat(p.mean(axis=2, keepdims=True), 3, axis=2).astype(np.uint8),
            False,
        ),
        ("night", lambda p: (p * 0.15).astype(np.uint8), False),
    ],
)
def test_hard_captures_are_named_and_the_tiny_capped(photo, caveat, make, capped):
    # Night and grey scenes are calibrated on, so their confidence is the calibrated
    # one; a tiny capture shows too little to trust any.
    pixels = make(render(photo, "streak", seed=7).rain)
    features, height = _capture(pixels)
    tagger = load_tagger()
    tag = tagger.tag(features, "rainy", height)
    assert tag.rain_type in RAIN_TYPES and caveat in tag.caveats
    assert looks_night(features) is (caveat == "night")  # what benchmarks go by
    assert (caveat in tagger.capped) is capped
    if capped:
        assert tag.confidence <= LOW_CONFIDENCE_CAP


def test_the_first_tagger_still_reads_these_features(photo):
    first = load_tagger("tagger-v1.json")
    assert first.version == "1" and first.capped == ("tiny", "grey", "night")
    features, height = _capture(render(photo, "storm", seed=2).rain)
    assert first.tag(features, "rainy", height).rain_type in RAIN_TYPES


def test_a_one_pixel_capture_is_tagged_not_crashed():
    features, height = _capture(np.full((1, 1, 3), 128, np.uint8))
    tag = load_tagger().tag(features, "rainy", height)
    assert tag.rain_type in RAIN_TYPES and tag.confidence <= LOW_CONFIDENCE_CAP


def test_the_second_tagger_is_kept_and_reads_these_features(photo):
    second = load_tagger("tagger-v2.json")
    assert second.version == "2" and second.detector is None
    features, height = _capture(render(photo, "streak", seed=2).rain)
    assert second.tag(features, "rainy", height).rain_type in RAIN_TYPES


def test_the_third_tagger_is_kept_and_reads_these_features(photo):
    third = load_tagger("tagger-v3.json")
    assert third.version == "3" and third.detector is not None
    assert "temple" not in third.calibration["backgrounds"]
    features, height = _capture(render(photo, "streak", seed=2).rain)
    assert third.tag(features, "rainy", height).rain_type in RAIN_TYPES


def test_a_detector_gives_p_rain_and_the_softmax_shares_it_among_the_types():
    tagger = load_tagger()
    assert tagger.version == "5" and tagger.detector is not None
    assert {"temple", "flower"} <= set(tagger.calibration["backgrounds"])
    rng = np.random.default_rng(0)
    features = rng.uniform(0.01, 0.5, (6, len(FEATURE_NAMES)))
    p = tagger.probabilities(features)
    assert np.allclose(p.sum(axis=1), 1)
    assert np.allclose(1 - p[:, 0], tagger.rain_probability(features))
    # Among the types, the softmax's shares, whatever the detector says.
    without = replace(tagger, detector=None).probabilities(features)
    assert np.allclose(
        p[:, 1:] / p[:, 1:].sum(axis=1, keepdims=True),
        without[:, 1:] / without[:, 1:].sum(axis=1, keepdims=True),
    )
    # The veil, brightness and colour do not move P(rain).
    hazy = features.copy()
    for name in ("dark_channel", "transmission", "black_level", "brightness", "saturation"):
        hazy[:, FEATURE_NAMES.index(name)] *= 1.7
    assert np.allclose(tagger.rain_probability(hazy), tagger.rain_probability(features))


def test_a_detector_reading_an_input_the_tagger_lacks_is_refused():
    data = load_tagger().to_json()
    data["detector"] = dict(data["detector"], inputs=["hf_share", *data["detector"]["inputs"][1:]])
    with pytest.raises(ValueError, match="detector"):
        Tagger.from_json(data)


@pytest.mark.parametrize("field", ["weights", "mean", "expanded_scale", "bias"])
def test_a_parameter_file_whose_arrays_do_not_fit_is_refused_when_read(field):
    data = load_tagger().to_json()
    data[field] = [[1.0]] if field == "weights" else [1.0]
    with pytest.raises(ValueError, match=f"the tagger's {field} have shape"):
        Tagger.from_json(data)


@pytest.mark.parametrize("field", ["scale", "mean", "offsets", "bias", "expanded_mean"])
def test_a_parameter_file_with_text_for_numbers_is_refused_when_read(field):
    data = load_tagger().to_json()
    data[field] = ["x"] * len(data[field])
    with pytest.raises(ValueError, match=f"the tagger's {field} holds something other than"):
        Tagger.from_json(data)


@pytest.mark.parametrize("field", ["weights", "bias", "scale"])
def test_a_parameter_file_with_true_among_its_numbers_is_refused_when_read(field):
    """numpy would read the true as 1.0: a hand edit's slip tagging every capture."""
    data = json.loads(json.dumps(load_tagger().to_json()))
    if field == "weights":
        data["weights"][1][0] = True
    else:
        data[field][0] = True
    with pytest.raises(ValueError, match=f"the tagger's {field} holds something other than"):
        Tagger.from_json(data)


def test_a_parameter_file_lacking_parts_or_of_wrong_types_is_a_value_error():
    """What from_json promises for any malformed object, whose callers catch ValueError:
    each part of the shipped file, and of its ood and detector, removed or of another
    type, is refused as one (or, where it has a default or is not read, accepted)."""
    with pytest.raises(ValueError, match=r"the tagger's file has no version, .*, calibration$"):
        Tagger.from_json({})
    shipped = load_tagger().to_json()
    others = []
    for place in ((), ("ood",), ("detector",)):
        for name in list(_part(shipped, place)):
            for wrong in (None, True, "x", [], {}, [None], {"x": 1}, "<missing>"):
                data = json.loads(json.dumps(shipped))
                if wrong == "<missing>":
                    del _part(data, place)[name]
                else:
                    _part(data, place)[name] = wrong
                try:
                    Tagger.from_json(data)
                except ValueError:
                    pass
                except Exception as error:
                    others.append(f"{'/'.join([*place, name])} = {wrong!r}: {error!r}")
    assert others == []


def _part(data: dict, place: tuple[str, ...]) -> dict:
    return data[place[0]] if place else data


def _first_weight_infinite(data: dict) -> None:
    data["weights"][0][0] = float("inf")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(temperature=0.0), "temperature 0.0 is not above 0"),
        (lambda d: d.update(scale=[0.0] * len(d["scale"])), "scale and expanded_scale are not"),
        (_first_weight_infinite, "weights holds a number that is not finite"),
        (lambda d: d["transforms"].__setitem__(0, "cube"), "transforms are not all one of"),
        (lambda d: d.update(flag_threshold=float("nan")), "flag_threshold holds a number that"),
        (lambda d: d.update(flag_threshold=1.5), r"flag_threshold 1.5 is not in \[0, 1\]"),
        (lambda d: d.update(capped=["tiny", 3]), "capped are not a list of names"),
        (lambda d: d.update(products="no"), "products is not true or false"),
        (lambda d: d["detector"].update(bias="1"), "detector bias holds something other"),
        (lambda d: d["ood"].update(limit=None), "ood limit holds something other"),
        (lambda d: d.update(version=5), "version is not text"),
        (
            lambda d: d["calibration"].update(fit={"labels": {"storm\nerror: x": 5}}),
            "calibration fit labels are not counts per rain type",
        ),
        (lambda d: d.update(version="5\nerror: x"), r"version '5\\nerror: x' holds a control"),
    ],
)
def test_a_parameter_file_of_degenerate_numbers_is_refused_when_read(edit, message):
    """Numbers that would make every probability NaN, and names the tagger ignores."""
    data = json.loads(json.dumps(load_tagger().to_json()))  # the shipped one's, untouched
    edit(data)
    with pytest.raises(ValueError, match=message):
        Tagger.from_json(data)


def test_a_tagger_never_gives_probabilities_that_are_not_numbers():
    """Finite parameters can still overflow; features read from a manifest can be NaN.
    Either is a one-line TaggerError naming the file, not NaN in a manifest."""
    tagger = load_tagger()
    features = np.full((1, len(FEATURE_NAMES)), 0.1)
    weights = np.full_like(tagger.weights, 1e308)  # finite, but no sum of them is
    huge = replace(tagger, weights=weights, source="ds/taggers/tagger-fit-1.json")
    with pytest.raises(TaggerError, match=r"^ds/taggers/tagger-fit-1.json: its parameters give"):
        huge.probabilities(features)
    features[0, FEATURE_NAMES.index(tagger.inputs[0])] = np.nan
    with pytest.raises(TaggerError, match=f"a capture's features {tagger.inputs[0]} are not"):
        tagger.tag(dict(zip(FEATURE_NAMES, features[0], strict=True)), "rainy", 480)
