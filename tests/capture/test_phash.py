import numpy as np
import pytest
from PIL import Image

from rainbench.capture.phash import hamming, phash_variants


def _picture(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    coarse = (rng.random((24, 32, 3)) * 255).astype(np.uint8)
    return Image.fromarray(coarse).resize((640, 480), Image.Resampling.BICUBIC)


def _distance(a: int, b: int) -> int:
    return int(hamming(np.array([a], dtype=np.uint64), b)[0])


def test_rotations_and_mirrors_match_one_variant_exactly():
    picture = _picture(0)
    upright = phash_variants(picture)[0]
    for transform in Image.Transpose:
        variants = phash_variants(picture.transpose(transform))
        assert min(_distance(v, upright) for v in variants) <= 2, transform


def test_reencoded_and_resized_stay_close():
    import io

    picture = _picture(1)
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=40)
    reencoded = Image.open(buffer)
    upright = phash_variants(picture)[0]
    assert _distance(phash_variants(reencoded)[0], upright) <= 4
    assert _distance(phash_variants(picture.resize((320, 240)))[0], upright) <= 4


def test_different_pictures_are_far_apart():
    hashes = [phash_variants(_picture(seed)) for seed in range(10, 20)]
    for i, a in enumerate(hashes):
        for b in hashes[i + 1 :]:
            assert min(_distance(v, a[0]) for v in b) > 12


@pytest.mark.parametrize(("size", "bits"), [((64, 64), 0), ((1000, 750), 2), ((750, 1000), 2)])
def test_upright_hash_without_turning_the_image(size, bits):
    # Exact when the thumbnail's box filter has whole factors; otherwise its rounding
    # is not symmetric under flips, and a bit or two may differ at preview sizes.
    upright = _picture(3).resize(size)
    # Stored so that EXIF orientation o makes it upright: stored = inverse transform.
    stored_for = {
        1: upright,
        2: upright.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        3: upright.transpose(Image.Transpose.ROTATE_180),
        4: upright.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
        5: upright.transpose(Image.Transpose.TRANSPOSE),
        6: upright.transpose(Image.Transpose.ROTATE_90),
        7: upright.transpose(Image.Transpose.TRANSVERSE),
        8: upright.transpose(Image.Transpose.ROTATE_270),
    }
    expected = phash_variants(upright)
    for orientation, stored in stored_for.items():
        variants = phash_variants(stored, orientation)
        assert _distance(variants[0], expected[0]) <= bits, orientation
