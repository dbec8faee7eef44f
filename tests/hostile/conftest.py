"""A corpus of hostile datasets, each made in code from one small good dataset: names
that climb out of their folder, shards outside the dataset or in another store, tar
members that are links, sparse, devices or FIFOs, a truncated shard, decompression bombs
whose hashes are updated so `verify` passes them, manifests that are not Parquet or
JSON, and a first ingest killed before its first commit.
"""

import hashlib
import io
import os
import shutil
import struct
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rainbench.demo.captures import CaptureSpec, write_capture
from rainbench.ingest import IngestOptions, ingest
from rainbench.shards import manifest
from rainbench.synth.build import SynthOptions, synthesize

EVERYTHING_TEST = {"train": 0.0, "val": 0.0, "test": 1.0}
SIZE = (64, 48)
BOMB_SIDE = 16_000  # 256 MP: past the 250 MP cap, in well under a megabyte of PNG
SPARSE_BYTES = 3 << 29  # 1.5 GiB declared, 512 bytes stored


def _good(root: Path) -> Path:
    """Two rainy captures (a JPEG and a PNG) and two clean ones, all in split test, and
    the clean ones rendered into the paired split syn-drizzle. Their features are
    cleared, so `rainbench tag` decodes every capture again."""
    for index, fmt in enumerate(("jpeg", "png")):
        name = f"rain{index}.{'jpg' if fmt == 'jpeg' else fmt}"
        write_capture(root / "rainy", CaptureSpec(name, *SIZE, fmt=fmt, seed=index))
    for index in range(2):
        write_capture(root / "clean", CaptureSpec(f"clean{index}.jpg", *SIZE, seed=10 + index))
    ds = root / "good"
    ingest([root / "rainy"], ds, IngestOptions(workers=1, split=EVERYTHING_TEST))
    ingest([root / "clean"], ds, IngestOptions(workers=1, layer="clean", split=EVERYTHING_TEST))
    synthesize(ds, SynthOptions(recipes=("drizzle",), workers=1))
    _edit_rows(ds, "samples", lambda rows: [{**row, "features_version": None} for row in rows])
    return ds


# -- editing a dataset behind rainbench's back ----------------------------------------------

_SCHEMAS = {"samples": manifest.SAMPLES, "shards": manifest.SHARDS, "synthetic": manifest.SYNTHETIC}


def _rows(ds: Path, name: str) -> list[dict]:
    return pq.read_table(ds / "manifests" / f"{name}.parquet").to_pylist()


def _edit_rows(ds: Path, name: str, edit: Callable[[list[dict]], list[dict]]) -> None:
    table = pa.Table.from_pylist(edit(_rows(ds, name)), schema=_SCHEMAS[name])
    pq.write_table(table, ds / "manifests" / f"{name}.parquet")


def _rainy(ds: Path, fmt: str) -> dict:
    return next(r for r in _rows(ds, "samples") if r["layer"] == "rainy" and r["format"] == fmt)


def _rewrite_shard(ds: Path, shard: str, change: Callable[[str, bytes], tuple]) -> None:
    """Write `shard` again, each member (name, data) replaced by what `change` gives: a
    TarInfo and its data; then update its sha256 and size in shards.parquet, as a forger
    would."""
    with tarfile.open(ds / shard) as tar:
        members = [(info.name, tar.extractfile(info).read()) for info in tar]
    with tarfile.open(ds / shard, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info, content = change(name, data)
            tar.addfile(info, io.BytesIO(content) if content is not None else None)
    _update_shard_row(ds, shard)


def _update_shard_row(ds: Path, shard: str) -> None:
    data = (ds / shard).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    _edit_rows(
        ds,
        "shards",
        lambda rows: [
            {**r, "sha256": digest, "bytes": len(data)} if r["shard"] == shard else r for r in rows
        ],
    )


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _replace_member(ds: Path, shard: str, target: str, info: tarfile.TarInfo, data) -> None:
    _rewrite_shard(ds, shard, lambda n, d: (info, data) if n == target else _file(n, d))


def _link(name: str, kind: bytes, target: str) -> tarfile.TarInfo:
    info = _special(name, kind)
    info.linkname = target
    return info


def _special(name: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    return info


def _sparse(name: str) -> tarfile.TarInfo:
    """A PAX (GNU 0.1) sparse member: 512 bytes stored at the end of SPARSE_BYTES."""
    info = tarfile.TarInfo(name)
    info.size = 512
    info.pax_headers = {
        "GNU.sparse.size": str(SPARSE_BYTES),
        "GNU.sparse.map": f"{SPARSE_BYTES - 512},512",
    }
    return info


def bomb_png() -> bytes:
    """A whole, valid 16000×16000 RGB PNG of 0.75 MB. The deflate stream is one block of
    rows repeated after full flushes (each copy stands alone), so it is made in a second."""
    rows = 1000
    block = bytes(rows * (1 + 3 * BOMB_SIDE))
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    copy = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    checksum = 1
    for _ in range(BOMB_SIDE // rows):
        checksum = zlib.adler32(block, checksum)
    stream = b"\x78\xda" + copy * (BOMB_SIDE // rows) + b"\x03\x00" + struct.pack(">I", checksum)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", BOMB_SIDE, BOMB_SIDE, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")
    )


# -- the hostile datasets --------------------------------------------------------------------


def traversal_split(ds: Path, context: dict) -> None:
    key = _rainy(ds, "jpeg")["key"]
    _edit_rows(
        ds,
        "samples",
        lambda rows: [{**r, "split": "../../../../x"} if r["key"] == key else r for r in rows],
    )


def traversal_key(ds: Path, context: dict) -> None:
    """A capture's key, and its members' names, climbing out of any folder."""
    row = _rainy(ds, "jpeg")
    hostile = "../../../../../y"
    _rewrite_shard(ds, row["shard"], lambda n, d: _file(n.replace(row["key"], hostile), d))
    _edit_rows(
        ds,
        "samples",
        lambda rows: [{**r, "key": hostile} if r["key"] == row["key"] else r for r in rows],
    )


def _move_shard(ds: Path, to: str) -> None:
    shard = _rainy(ds, "jpeg")["shard"]
    for name in ("samples", "shards"):
        _edit_rows(
            ds, name, lambda rows: [{**r, "shard": to} if r["shard"] == shard else r for r in rows]
        )


def dotdot_shard(ds: Path, context: dict) -> None:
    _move_shard(ds, "../../../../../../../../etc/passwd")


def absolute_shard(ds: Path, context: dict) -> None:
    _move_shard(ds, "/etc/passwd")


def url_shard(ds: Path, context: dict) -> None:
    """A shard path that is another store's object."""
    _move_shard(ds, "s3://elsewhere/shards/test/test-000000.tar")


def linked_shard(ds: Path, context: dict) -> None:
    """A shard path as rainbench writes it, but the file is a link out of the dataset."""
    shard = ds / _rainy(ds, "jpeg")["shard"]
    outside = ds.parent / "elsewhere.tar"
    shutil.copyfile(shard, outside)
    shard.unlink()
    shard.symlink_to(outside)


def fifo_shard(ds: Path, context: dict) -> None:
    """A shard path as rainbench writes it, but the file is a FIFO: opened to be read, it
    would wait for a writer forever."""
    shard = ds / _rainy(ds, "jpeg")["shard"]
    shard.unlink()
    os.mkfifo(shard)


def fifo_manifest(ds: Path, context: dict) -> None:
    """samples.parquet is a FIFO."""
    path = ds / "manifests" / "samples.parquet"
    path.unlink()
    os.mkfifo(path)


def _member_of(ds: Path, fmt: str) -> tuple[str, str]:
    row = _rainy(ds, fmt)
    return row["shard"], f"{row['key']}.{'jpg' if fmt == 'jpeg' else fmt}"


def sparse_member(ds: Path, context: dict) -> None:
    shard, member = _member_of(ds, "jpeg")
    _replace_member(ds, shard, member, _sparse(member), bytes(512))


def symlink_member(ds: Path, context: dict) -> None:
    shard, member = _member_of(ds, "jpeg")
    _replace_member(ds, shard, member, _link(member, tarfile.SYMTYPE, "/etc/passwd"), None)


def hardlink_member(ds: Path, context: dict) -> None:
    shard, member = _member_of(ds, "jpeg")
    _replace_member(ds, shard, member, _link(member, tarfile.LNKTYPE, "etc/passwd"), None)


def device_member(ds: Path, context: dict) -> None:
    """A member that is /dev/zero's character device: extracted, it would read forever."""
    shard, member = _member_of(ds, "jpeg")
    info = _special(member, tarfile.CHRTYPE)
    info.devmajor, info.devminor = 1, 5
    _replace_member(ds, shard, member, info, None)


def fifo_member(ds: Path, context: dict) -> None:
    shard, member = _member_of(ds, "jpeg")
    _replace_member(ds, shard, member, _special(member, tarfile.FIFOTYPE), None)


def truncated_tar(ds: Path, context: dict) -> None:
    shard = ds / _rainy(ds, "jpeg")["shard"]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])


def bomb_pair(ds: Path, context: dict) -> None:
    """A pair's rain.png replaced by the bomb; every hash updated, so verify passes."""
    row = _rows(ds, "synthetic")[0]
    bomb = context["bomb"]
    _replace_member(
        ds, row["shard"], f"{row['key']}.rain.png", *_file(f"{row['key']}.rain.png", bomb)
    )
    digest = hashlib.sha256(bomb).hexdigest()
    _edit_rows(
        ds,
        "synthetic",
        lambda rows: [{**r, "rain_sha256": digest} if r["key"] == row["key"] else r for r in rows],
    )


def bomb_capture(ds: Path, context: dict) -> None:
    """A rainy PNG capture replaced by the bomb, sha256 and bytes updated."""
    shard, member = _member_of(ds, "png")
    bomb = context["bomb"]
    _replace_member(ds, shard, member, *_file(member, bomb))
    key = member.split(".")[0]
    update = {"sha256": hashlib.sha256(bomb).hexdigest(), "bytes": len(bomb)}
    _edit_rows(
        ds, "samples", lambda rows: [{**r, **update} if r["key"] == key else r for r in rows]
    )


def not_parquet(ds: Path, context: dict) -> None:
    (ds / "manifests" / "samples.parquet").write_bytes(b"PAR1 this is not a Parquet file PAR1")


def wrong_schema(ds: Path, context: dict) -> None:
    table = pa.table({"name": ["a", "b"], "size": [1, 2]})
    pq.write_table(table, ds / "manifests" / "samples.parquet")


def unknown_format(ds: Path, context: dict) -> None:
    _edit_rows(ds, "samples", lambda rows: [{**rows[0], "format": "gif"}, *rows[1:]])


def not_json(ds: Path, context: dict) -> None:
    (ds / "dataset.json").write_text('{"name": "good", "counts": ')


def killed_first_ingest(ds: Path, context: dict) -> None:
    """The first ingest into a new folder, killed as it commits its first shards."""
    shutil.rmtree(ds)

    class Killed(BaseException):
        pass

    write = manifest.write_manifest

    def crash(path: Path, table: pa.Table) -> None:
        if path.parent.name == "manifests":
            raise Killed
        write(path, table)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(manifest, "write_manifest", crash)
        with pytest.raises(Killed):
            ingest([context["raw"] / "rainy"], ds, IngestOptions(workers=1))
    assert (ds / ".ingest" / "run.json").exists() and not (ds / "dataset.json").exists()


HOSTILE = {
    f.__name__.replace("_", "-"): f
    for f in (
        traversal_split,
        traversal_key,
        dotdot_shard,
        absolute_shard,
        url_shard,
        linked_shard,
        sparse_member,
        symlink_member,
        hardlink_member,
        device_member,
        fifo_member,
        truncated_tar,
        bomb_pair,
        bomb_capture,
        not_parquet,
        wrong_schema,
        unknown_format,
        not_json,
        killed_first_ingest,
        fifo_shard,
        fifo_manifest,
    )
}


@pytest.fixture(scope="session")
def hostile_corpus(tmp_path_factory) -> dict[str, Path]:
    """Every hostile dataset by name, each at <name>/l1/l2/l3/l4/ds: deep enough that a
    name climbing out of the dataset or the results lands inside <name>/."""
    root = tmp_path_factory.mktemp("hostile")
    context = {"raw": root, "good": _good(root), "bomb": bomb_png()}
    corpus = {}
    for name, make in HOSTILE.items():
        ds = root / "corpus" / name / "l1" / "l2" / "l3" / "l4" / "ds"
        shutil.copytree(context["good"], ds)
        make(ds, context)
        corpus[name] = ds
    return corpus


def pytest_generate_tests(metafunc):
    if "hostile" in metafunc.fixturenames:
        metafunc.parametrize("hostile", sorted(HOSTILE))
