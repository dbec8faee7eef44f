import numpy as np
import pytest
from PIL import Image

from rainbench.capture.phash import _PARTS, HashIndex, _part, hamming, phash_variants
from rainbench.demo.photos import CLEAN_SCENES, RAINY_SCENES
from rainbench.train.tagger import sample_photo


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


def _nearest_by_hand(hashes: np.ndarray, queries: list[int], before: int, max_bits: int):
    """Each query against each of the first `before` hashes: the least (distance, query,
    hash) within max_bits, as (distance, hash)."""
    found = [
        (bin(int(hashes[index]) ^ query).count("1"), which, index)
        for which, query in enumerate(queries)
        for index in range(before)
    ]
    best = min((f for f in found if f[0] <= max_bits), default=None)
    return None if best is None else (best[0], best[2])


def _changed(rng: np.random.Generator, value: int, most: int) -> int:
    bits = rng.choice(64, size=rng.integers(0, most + 1), replace=False)
    return value ^ sum(1 << int(bit) for bit in bits)


def _clustered(rng: np.random.Generator, scenes: int, copies: int) -> np.ndarray:
    """Hashes in groups: each scene's, then copies a few bits off, some exact repeats."""
    roots = [int(value) for value in rng.integers(0, 1 << 64, scenes, dtype=np.uint64)]
    values = [_changed(rng, roots[i % scenes], 12) for i in range(scenes * copies)]
    values += values[:scenes]
    return np.array(values, dtype=np.uint64)


@pytest.mark.parametrize("max_bits", [0, 3, 8, 11, 12, 20])
def test_the_index_finds_what_comparing_every_hash_finds(max_bits):
    rng = np.random.default_rng(max_bits)
    hashes = _clustered(rng, scenes=60, copies=6)
    index = HashIndex(hashes, max_bits, compare_all_below=0)
    for _ in range(12):
        scene = int(hashes[rng.integers(len(hashes))])
        queries = [_changed(rng, scene, 10) for _ in range(8)]
        for before in (0, 1, 150, len(hashes)):
            expected = _nearest_by_hand(hashes, queries, before, max_bits)
            assert index.nearest(queries, before) == expected, (queries, before)


@pytest.mark.parametrize("compare_all_below", [0, 10])
def test_a_tie_goes_to_the_earliest_query_then_the_earliest_hash(compare_all_below):
    # As ingest searched before the index: the first variant (the upright picture's hash)
    # that comes nearest wins, whichever hash it finds.
    far, near = 0xF0F0_0000_0000_0000, 0x0000_0000_0F0F_0000
    others = np.random.default_rng(4).integers(0, 1 << 64, 200, dtype=np.uint64)
    hashes = np.concatenate([np.array([far, near, near], dtype=np.uint64), others])
    index = HashIndex(hashes, 8, compare_all_below)
    assert index.nearest([near ^ 0b11, far ^ 0b11], len(hashes)) == (2, 1)
    assert index.nearest([near ^ 0b111, far ^ 0b11], len(hashes)) == (2, 0)


def test_the_index_compares_only_hashes_that_may_be_near():
    rng = np.random.default_rng(1)
    hashes = rng.integers(0, 1 << 64, 20_000, dtype=np.uint64)
    queries = np.array([int(hashes[7]) ^ 0b1011, *range(7)], dtype=np.uint64)
    indices, _ = HashIndex(hashes, 8, compare_all_below=0)._candidates(queries, len(hashes))
    assert 7 in indices and len(indices) < len(hashes) / 20
    assert HashIndex(hashes, 8)._candidates(queries, len(hashes)) is None  # few: compare all


def test_hashes_that_crowd_a_value_are_all_compared_with_the_same_result():
    hashes = np.array([0b111] * 300 + [0b111 | (1 << 60)] * 300, dtype=np.uint64)
    index = HashIndex(hashes, 8, compare_all_below=0)
    queries = [0b111 ^ (1 << bit) for bit in range(3, 11)]
    assert index._candidates(np.array(queries, dtype=np.uint64), 600) is None
    assert index.nearest(queries, 600) == (1, 0)
    assert index.nearest([1 << 60], 600) == (3, 300)


def test_photographs_spread_over_the_index_parts():
    # The index costs little only while pHashes spread over each part's 2^21–2^22 values:
    # 1200 crops of twelve photographs (many alike) share a value with about one other.
    rng = np.random.default_rng(3)
    photos = [Image.open(sample_photo(name)).convert("RGB") for name in RAINY_SCENES + CLEAN_SCENES]
    hashes = []
    for number in range(1200):
        photo = photos[number % len(photos)]
        width, height = (int(side * rng.uniform(0.3, 1)) for side in photo.size)
        left, top = rng.integers(photo.width - width + 1), rng.integers(photo.height - height + 1)
        crop = photo.crop((left, top, left + width, top + height)).resize((96, 96))
        hashes.append(phash_variants(crop)[0])
    hashes = np.array(hashes, dtype=np.uint64)
    for shift, width in _PARTS:
        _, counts = np.unique(_part(hashes, shift, width), return_counts=True)
        sharing = float((counts * counts).sum() / len(hashes))  # hashes a lookup meets
        assert sharing < 2.5, (width, sharing)
