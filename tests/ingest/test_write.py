"""The raw folder changes between the scan and the write phase (a card being copied, a
share being written): a stored member is only ever the bytes its manifest hash names,
a file that changed is refused in one line and read again by the next run, and nothing
outside the ingest root is read through a link swapped in meanwhile."""

import os
import shutil

import pandas as pd
import pytest

from rainbench.demo.captures import CaptureSpec, capture_bytes, write_capture
from rainbench.ingest import IngestOptions, ingest
from rainbench.ingest import run as run_module
from rainbench.shards.dataset import Dataset
from rainbench.shards.verify import verify

ONE = IngestOptions(workers=1, tag=False)
NAMES = ("top.jpg", "sub/a.jpg", "sub/b.jpg")


def _spec(name: str, make: str = "Canon") -> CaptureSpec:
    return CaptureSpec(name, 64, 48, make=make, seed=NAMES.index(name))


def _folders(tmp_path):
    raw, outside = tmp_path / "raw", tmp_path / "outside"
    for name in NAMES:
        write_capture(raw, _spec(name))
    outside.mkdir()
    return raw, outside


def _rewrite_in_place(raw, outside):  # same size, time and inode: other bytes
    path = raw / "sub/a.jpg"
    before = path.stat()
    data = capture_bytes(_spec("sub/a.jpg", make="Nikon"))
    assert len(data) == before.st_size
    with open(path, "r+b") as handle:
        handle.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def _replace(raw, outside):
    write_capture(outside, CaptureSpec("new.jpg", 80, 60, seed=7))
    os.replace(outside / "new.jpg", raw / "sub/a.jpg")


def _truncate(raw, outside):
    os.truncate(raw / "sub/a.jpg", 100)


def _grow(raw, outside):
    with open(raw / "sub/a.jpg", "ab") as handle:
        handle.write(bytes(16))


def _delete(raw, outside):
    (raw / "sub/a.jpg").unlink()


def _rename(raw, outside):
    (raw / "sub/a.jpg").rename(raw / "sub/c.jpg")


def _remove_folder(raw, outside):
    shutil.rmtree(raw / "sub")


def _fifo(raw, outside):
    (raw / "sub/a.jpg").unlink()
    os.mkfifo(raw / "sub/a.jpg")  # read, it would block for ever


def _link_outside(raw, outside):  # the same bytes, outside the root
    (raw / "sub/a.jpg").rename(outside / "a.jpg")
    (raw / "sub/a.jpg").symlink_to(outside / "a.jpg")


def _folder_link_outside(raw, outside):  # the same bytes, outside the root
    (raw / "sub").rename(outside / "sub")
    (raw / "sub").symlink_to(outside / "sub")


# change → (what the first run records for each changed file, samples after a re-run)
CHANGES = {
    "rewritten in place": (_rewrite_in_place, {"sub/a.jpg": "changed-during-ingest"}, 3),
    "replaced": (_replace, {"sub/a.jpg": "changed-during-ingest"}, 3),
    "truncated": (_truncate, {"sub/a.jpg": "changed-during-ingest"}, 2),
    "grown": (_grow, {"sub/a.jpg": "changed-during-ingest"}, 3),
    "deleted": (_delete, {"sub/a.jpg": "unreadable"}, 2),
    "renamed": (_rename, {"sub/a.jpg": "unreadable"}, 3),
    "folder removed": (_remove_folder, {"sub/a.jpg": "unreadable", "sub/b.jpg": "unreadable"}, 1),
    "replaced by a FIFO": (_fifo, {"sub/a.jpg": "not-a-file"}, 2),
    "link swapped outside": (_link_outside, {"sub/a.jpg": "link-outside"}, 2),
    "folder swapped for a link outside": (
        _folder_link_outside,
        {"sub/a.jpg": "link-outside", "sub/b.jpg": "link-outside"},
        1,
    ),
}


def _before_first(monkeypatch, name: str, action) -> None:
    """Run `action` once, just before `run_module.<name>` is first called."""
    original, done = getattr(run_module, name), []

    def changed_first(*args, **kwargs):
        if not done:
            done.append(True)
            action()
        return original(*args, **kwargs)

    monkeypatch.setattr(run_module, name, changed_first)


def _rejects(ds) -> dict[str, str]:
    rejects = pd.read_parquet(ds / "manifests" / "rejects.parquet")
    return dict(zip(rejects.source_path, rejects.reason, strict=True))


def _samples(ds) -> pd.DataFrame:
    return pd.read_parquet(ds / "manifests" / "samples.parquet")


@pytest.mark.parametrize("change", CHANGES, ids=list(CHANGES))
def test_a_file_changed_after_its_probe_is_refused_then_taken_next_time(
    tmp_path, monkeypatch, change
):
    action, refused, finally_stored = CHANGES[change]
    raw, outside = _folders(tmp_path)
    ds = tmp_path / "ds"
    with monkeypatch.context() as patch:
        _before_first(patch, "write_unit", lambda: action(raw, outside))
        ingest([raw], ds, ONE)
    assert _rejects(ds) == refused
    assert set(_samples(ds).source_path) == set(NAMES) - set(refused)
    assert verify(Dataset(ds)) == []  # every member is the bytes its row's hash names

    ingest([raw], ds, ONE)
    samples = _samples(ds)
    assert len(samples) == finally_stored
    assert "changed-during-ingest" not in _rejects(ds).values()
    assert verify(Dataset(ds)) == []


def test_a_folder_swapped_for_a_link_after_the_walk_is_not_read(tmp_path, monkeypatch):
    # Before: the probe opened sub/a.jpg through the link (O_NOFOLLOW guards the last
    # part of a path only) and stored the file outside the root as a capture.
    raw, outside = _folders(tmp_path)
    for name in ("sub/a.jpg", "sub/b.jpg"):  # of the size the walk found: other bytes
        write_capture(outside, _spec(name, make="Nikon"))
    walk = run_module.walk_inputs

    def walk_then_swap(inputs):
        found = walk(inputs)
        shutil.rmtree(raw / "sub")
        (raw / "sub").symlink_to(outside / "sub")
        return found

    monkeypatch.setattr(run_module, "walk_inputs", walk_then_swap)
    ds = tmp_path / "ds"
    ingest([raw], ds, ONE)
    assert _rejects(ds) == {"sub/a.jpg": "link-outside", "sub/b.jpg": "link-outside"}
    assert list(_samples(ds).source_path) == ["top.jpg"]
    assert verify(Dataset(ds)) == []


def test_a_copy_of_a_file_lost_before_its_write_is_stored_by_the_next_run(tmp_path, monkeypatch):
    raw, _ = _folders(tmp_path)
    shutil.copyfile(raw / "sub/a.jpg", raw / "sub/copy.jpg")  # the same bytes, named after it
    ds = tmp_path / "ds"
    with monkeypatch.context() as patch:
        _before_first(patch, "write_unit", lambda: (raw / "sub/a.jpg").unlink())
        first = ingest([raw], ds, ONE)
    # Not a duplicate of a capture the dataset does not hold: left for the next run to read.
    assert _rejects(ds)["sub/a.jpg"] == "unreadable"
    assert _rejects(ds)["sub/copy.jpg"] != "duplicate"
    assert first.duplicates == 0

    ingest([raw], ds, ONE)
    assert set(_samples(ds).source_path) == {"top.jpg", "sub/b.jpg", "sub/copy.jpg"}
    assert verify(Dataset(ds)) == []


def test_a_near_duplicate_lost_before_its_write_is_not_counted(tmp_path, monkeypatch):
    raw, _ = _folders(tmp_path)
    # top.jpg's scene again, encoded otherwise: a near-duplicate of it, planned after it.
    write_capture(raw, CaptureSpec("view/near.jpg", 64, 48, seed=0, quality=60))
    ds = tmp_path / "ds"
    with monkeypatch.context() as patch:
        _before_first(patch, "write_unit", lambda: (raw / "view/near.jpg").unlink())
        summary = ingest([raw], ds, ONE)
    assert _rejects(ds) == {"view/near.jpg": "unreadable"}
    assert summary.near_duplicates == _samples(ds).near_dup_of.notna().sum() == 0
    assert Dataset(ds).read_info()["runs"][-1]["near_duplicates"] == 0


def test_a_near_duplicate_root_lost_before_its_write_is_no_near_duplicate_of_itself_later(
    tmp_path, monkeypatch
):
    raw, outside = _folders(tmp_path)
    # top.jpg's scene again, encoded otherwise, planned before it: its group's root.
    write_capture(raw, CaptureSpec("sub/near.jpg", 64, 48, seed=0, quality=60))
    ds = tmp_path / "ds"
    with monkeypatch.context() as patch:
        _before_first(
            patch, "write_unit", lambda: (raw / "sub/near.jpg").rename(outside / "near.jpg")
        )
        ingest([raw], ds, ONE)
    (outside / "near.jpg").rename(raw / "sub/near.jpg")
    again = ingest([raw], ds, ONE)
    samples = _samples(ds).set_index("source_path")
    root = samples.key["sub/near.jpg"]
    assert samples.near_dup_of["top.jpg"] == root
    assert samples.near_dup_of.isna()["sub/near.jpg"]
    assert again.near_duplicates == 0
