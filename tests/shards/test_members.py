"""Reading members out of shards: the shard must lie inside the dataset, the member
must be a regular file within the manifest's size, the picture's header within the
manifest's pixels before anything is decoded."""

import hashlib
import io
import sys
import tarfile

import pytest
from PIL import Image

from rainbench.capture.formats import FORMATS
from rainbench.errors import RainbenchError
from rainbench.shards.members import (
    ShardError,
    check_jpeg,
    decode_picture,
    open_shard,
    read_member,
    shard_path,
    size_limit,
)
from rainbench.shards.tar import ShardWriter

SHARD = "shards/test/test-000000.tar"


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (40, 80, 120)).save(buffer, "PNG")
    return buffer.getvalue()


def _jpeg(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height)).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture
def ds(tmp_path):
    root = tmp_path / "ds"
    with ShardWriter(root / SHARD) as writer:
        writer.add("a.png", _png(32, 24))
        writer.commit()
    return root


def _append(ds, info: tarfile.TarInfo, data: bytes | None = None) -> None:
    path = ds / SHARD
    with tarfile.open(path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar]
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for member, content in [*members, (info, data)]:
            tar.addfile(member, io.BytesIO(content) if content is not None else None)


def test_a_member_is_read_within_its_limit(ds):
    with open_shard(ds, SHARD) as tar:
        data = read_member(tar, SHARD, "a.png", 10_000)
        assert decode_picture(data, FORMATS["png"], "a.png", 32, 24)[0].size == (32, 24)
        with pytest.raises(ShardError, match=r"a\.png: \d+ bytes, more than the 10 allowed"):
            read_member(tar, SHARD, "a.png", 10)
        with pytest.raises(ShardError, match=r"b\.png: not in the shard"):
            read_member(tar, SHARD, "b.png", 10_000)


def test_a_shards_members_are_found_by_name_without_a_scan_per_member(tmp_path, monkeypatch):
    # tarfile's getmember walks the member list for each name: N² for a whole shard.
    root = tmp_path / "many"
    with ShardWriter(root / SHARD) as writer:
        for index in range(50):
            writer.add(f"{index:02d}.png", _png(4, 4))
        writer.add("00.png", _png(8, 8))  # a name twice: the last one counts, as in tarfile
        writer.commit()
    listed = []
    members = tarfile.TarFile.getmembers
    monkeypatch.setattr(
        tarfile.TarFile, "getmembers", lambda tar: listed.append(tar) or members(tar)
    )
    with open_shard(root, SHARD) as tar:
        for index in range(50):
            read_member(tar, SHARD, f"{index:02d}.png", 10_000)
        assert Image.open(io.BytesIO(read_member(tar, SHARD, "00.png", 10_000))).size == (8, 8)
        with pytest.raises(ShardError, match="not in the shard"):
            read_member(tar, SHARD, "50.png", 10_000)
    assert len(listed) == 1


def test_a_member_given_its_sha256_is_read_only_if_its_bytes_match(ds):
    with open_shard(ds, SHARD) as tar:
        data = read_member(tar, SHARD, "a.png", 10_000)
        digest = hashlib.sha256(data).hexdigest()
        assert read_member(tar, SHARD, "a.png", 10_000, digest) == data
        with pytest.raises(ShardError, match=r"a\.png: its bytes are not the manifest's"):
            read_member(tar, SHARD, "a.png", 10_000, "0" * 64)


@pytest.mark.parametrize(
    ("kind", "what"),
    [
        (tarfile.SYMTYPE, "symbolic link"),
        (tarfile.LNKTYPE, "hard link"),
        (tarfile.CHRTYPE, "device"),
    ],
)
def test_links_and_devices_are_refused_unread(ds, kind, what):
    info = tarfile.TarInfo("b.png")
    info.type, info.linkname = kind, "a.png"
    _append(ds, info)
    with open_shard(ds, SHARD) as tar, pytest.raises(ShardError, match=f"a {what}, not a regular"):
        read_member(tar, SHARD, "b.png", 10_000)


def test_a_sparse_member_is_refused_unread(ds):
    info = tarfile.TarInfo("b.png")
    info.size = 512
    info.pax_headers = {"GNU.sparse.size": str(3 << 29), "GNU.sparse.map": f"{(3 << 29) - 512},512"}
    _append(ds, info, bytes(512))
    with open_shard(ds, SHARD) as tar, pytest.raises(ShardError, match="a sparse file"):
        read_member(tar, SHARD, "b.png", size_limit(None, None, None))


# PAX records tarfile takes as given: a GNU sparse 1.0 member whose data is no sparse
# map, and sizes no file holds.
_FORGED = {
    "sparse-1.0 without a map": {
        "GNU.sparse.major": "1",
        "GNU.sparse.minor": "0",
        "GNU.sparse.name": "b.png",
        "GNU.sparse.realsize": "999",
    },
    "size past any offset": {"size": str(2**64)},
}


@pytest.mark.parametrize("records", _FORGED.values(), ids=_FORGED)
def test_a_forged_header_makes_the_shard_unreadable_in_one_line(ds, records):
    info = tarfile.TarInfo("b.png")
    info.size, info.pax_headers = 512, records
    _append(ds, info, _png(8, 8).ljust(512, b"\0"))
    with open_shard(ds, SHARD) as tar, pytest.raises(ShardError) as caught:
        read_member(tar, SHARD, "a.png", 10_000)
    assert str(caught.value).startswith(f"cannot read shard {SHARD}: a damaged tar header")
    assert len(str(caught.value)) < 120  # not the member's bytes, quoted


def test_a_negative_size_is_refused_unread(ds):
    info = tarfile.TarInfo("b.png")
    info.size, info.pax_headers = 512, {"size": "-5"}  # tarfile takes the record as given
    _append(ds, info, bytes(512))
    with open_shard(ds, SHARD) as tar, pytest.raises(ShardError, match="negative size \\(-5\\)"):
        read_member(tar, SHARD, "b.png", 10_000)


def test_a_shard_must_lie_inside_the_dataset(ds, tmp_path):
    assert shard_path(ds, SHARD) == ds / SHARD
    for name in ("../outside.tar", "/etc/passwd", "shards/test/../../x-000000.tar"):
        with pytest.raises(ShardError, match="not a shard path"):
            shard_path(ds, name)
    outside = tmp_path / "outside.tar"
    (ds / SHARD).rename(outside)
    (ds / SHARD).symlink_to(outside)
    with pytest.raises(ShardError, match="leads outside"):
        open_shard(ds, SHARD)


def test_a_shard_that_is_a_link_loop_is_one_line(ds):
    (ds / SHARD).unlink()
    (ds / SHARD).symlink_to(SHARD.rsplit("/", 1)[-1])
    with pytest.raises(ShardError, match="Too many levels of symbolic links"):
        open_shard(ds, SHARD)


def test_a_missing_or_truncated_shard_is_one_line(ds):
    data = (ds / SHARD).read_bytes()
    (ds / SHARD).write_bytes(data[:700])
    with open_shard(ds, SHARD) as tar, pytest.raises(ShardError, match="unexpected end of data"):
        read_member(tar, SHARD, "a.png", 10_000)
    (ds / SHARD).unlink()
    with pytest.raises(ShardError, match=f"cannot read shard {SHARD}"):
        open_shard(ds, SHARD)


def test_an_undecodable_picture_is_one_line_without_a_memory_address():
    with pytest.raises(ShardError) as caught:
        decode_picture(b"\xff\xd8\xff" + bytes(100), FORMATS["jpeg"], "s:a.jpg", 10, 10)
    assert str(caught.value) == "s:a.jpg: does not decode: no readable jpeg header"


def test_a_picture_larger_than_the_manifest_says_is_not_decoded():
    with pytest.raises(ShardError, match="more pixels than the manifest's 16×12"):
        decode_picture(_png(32, 24), FORMATS["png"], "a.png", 16, 12)
    with pytest.raises(ShardError, match="more pixels than the manifest's 16×12"):
        check_jpeg(_jpeg(32, 24), "a.jpg", 16, 12)
    check_jpeg(_jpeg(32, 24), "a.jpg", 24, 32)  # turned by EXIF: the same pixels
    with pytest.raises(ShardError, match="does not decode"):
        decode_picture(b"\x89PNG\r\n\x1a\n" + bytes(30), FORMATS["png"], "a.png", 16, 12)


def test_size_limits_come_from_the_manifest():
    assert size_limit(1234, 4000, 3000) == 1234
    assert size_limit(None, 10, 10) == 800 + (16 << 20)
    assert size_limit(None, None, -1) == size_limit(None, 10**6, 10**6)


def test_the_readers_cap_is_rainbench_max_pixels(monkeypatch):
    # A capture ingested under a higher --max-pixels than readers keep (its manifest says
    # its true size): refused, naming what raises the cap, until that is raised.
    png, jpeg = _png(32, 24), _jpeg(32, 24)
    monkeypatch.setenv("RAINBENCH_MAX_PIXELS", str(32 * 24 - 1))
    said = (
        "a.png: its header declares more pixels than the manifest's 32×24 (or the 767 pixels "
        "cap readers keep: RAINBENCH_MAX_PIXELS); not decoded"
    )
    with pytest.raises(ShardError) as refused:
        decode_picture(png, FORMATS["png"], "a.png", 32, 24)
    assert str(refused.value) == said
    with pytest.raises(
        ShardError, match=r"\(or the 767 pixels cap readers keep: RAINBENCH_MAX_PIXELS\)"
    ):
        check_jpeg(jpeg, "a.jpg", 32, 24)
    assert size_limit(None, None, None) == (32 * 24 - 1) * 8 + (16 << 20)
    monkeypatch.setenv("RAINBENCH_MAX_PIXELS", str(32 * 24))
    assert decode_picture(png, FORMATS["png"], "a.png", 32, 24)[0].size == (32, 24)
    check_jpeg(jpeg, "a.jpg", 32, 24)
    monkeypatch.delenv("RAINBENCH_MAX_PIXELS")
    assert decode_picture(png, FORMATS["png"], "a.png", 32, 24)[0].size == (32, 24)
    assert size_limit(None, None, None) == 250_000_000 * 8 + (16 << 20)


def test_a_bad_readers_cap_is_one_line_naming_the_variable(monkeypatch):
    monkeypatch.setenv("RAINBENCH_MAX_PIXELS", "0")
    with pytest.raises(RainbenchError, match=r"^RAINBENCH_MAX_PIXELS='0' is not a positive") as bad:
        decode_picture(_png(32, 24), FORMATS["png"], "a.png", 32, 24)
    assert not isinstance(bad.value, ShardError)  # the setting's fault, not the shard's
    assert "\n" not in str(bad.value)


def test_a_heic_without_pillow_heif_is_one_line_naming_the_extra(monkeypatch):
    # A dataset ingested where pillow-heif was installed, read where it is not.
    pillow_heif = pytest.importorskip("pillow_heif", reason="HEIC needs rainbench[heic]")
    buffer = io.BytesIO()
    pillow_heif.from_pillow(Image.new("RGB", (32, 24), (90, 60, 30))).save(buffer, quality=90)
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # makes the import fail
    with pytest.raises(ShardError, match=r"^s:a\.heic: HEIC needs pillow-heif: pip install"):
        decode_picture(buffer.getvalue(), FORMATS["heic"], "s:a.heic", 32, 24)
