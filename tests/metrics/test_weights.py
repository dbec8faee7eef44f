"""Offline weight files: where they are looked for, checksums, import, and NIQE's
parameters extracted from BasicSR's sdist (a small fake .npz in a .tar.gz here; the
real sdist when RAINBENCH_BASICSR_SDIST names it).
"""

import dataclasses
import gzip
import hashlib
import io
import os
import re
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from rainbench.metrics import weights
from rainbench.metrics.registry import MetricError

NIQE = "niqe_modelparameters.mat"
MUSIQ = "musiq_koniq_ckpt-e95806b9.pth"
BRISQUE = "brisque_svm_weights.pth"


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path) -> Path:
    """Neither the user's weights nor pyiqa's cache leak in; returns the weights dir."""
    monkeypatch.delenv(weights.WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "weights"


def params_sha256(mu: np.ndarray, cov: np.ndarray) -> str:
    """The digest the table keeps for NIQE: mu ravelled, then cov, as <f8."""
    data = np.asarray(mu, "<f8").ravel().tobytes() + np.asarray(cov, "<f8").tobytes()
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def fake_params(monkeypatch) -> tuple[np.ndarray, np.ndarray]:
    """NIQE-shaped parameters that the table is told to expect."""
    rng = np.random.default_rng(7)
    a = rng.normal(size=(36, 36))
    mu, cov = rng.normal(size=(1, 36)), a @ a.T
    known = dataclasses.replace(weights.KNOWN_FILES[NIQE], sha256=params_sha256(mu, cov))
    monkeypatch.setitem(weights.KNOWN_FILES, NIQE, known)
    return mu, cov


def write_sdist(path: Path, mu=None, cov=None) -> Path:
    """A .tar.gz laid out like BasicSR's sdist; without mu, the npz member is left out."""
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, "basicsr-1.4.2/setup.py", b"# not read\n")
        if mu is not None:
            npz = io.BytesIO()
            np.savez(npz, mu_pris_param=mu, cov_pris_param=cov, gaussian_window=np.ones((7, 7)))
            _add(tar, "basicsr-1.4.2/" + weights.NIQE_NPZ_MEMBER, npz.getvalue())
    return path


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_mat(path: Path, mu: np.ndarray, cov: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"mu_prisparam": mu, "cov_prisparam": cov})
    return path


def test_weights_dir_is_option_then_env_then_home(monkeypatch, tmp_path):
    assert weights.resolve_dir() == tmp_path / "home/.cache/rainbench/weights"
    monkeypatch.setenv(weights.WEIGHTS_ENV, str(tmp_path / "env"))
    assert weights.resolve_dir() == tmp_path / "env"
    assert weights.resolve_dir(tmp_path / "option") == tmp_path / "option"


def test_pyiqa_cache_follows_torch_home(tmp_path):
    assert weights.pyiqa_cache_dir() == tmp_path / "torch/hub/pyiqa"


def test_status_of_an_empty_setup_is_all_missing(isolated):
    found = weights.status(isolated)
    assert [s.file.name for s in found] == list(weights.KNOWN_FILES)
    assert {s.state for s in found} == {"missing"}
    assert not any(s.present for s in found)
    assert weights.require("piqe", isolated) is None  # PIQE needs no file


def test_extract_niqe_writes_the_mat_that_pyiqa_loads(isolated, tmp_path, fake_params):
    mu, cov = fake_params
    path = weights.extract_niqe(write_sdist(tmp_path / "sdist.tar.gz", mu, cov), isolated)
    assert path == isolated / NIQE
    params = scipy.io.loadmat(path)
    np.testing.assert_array_equal(params["mu_prisparam"], mu)
    np.testing.assert_array_equal(params["cov_prisparam"], cov)
    assert sorted(p.name for p in isolated.iterdir()) == [NIQE]  # no .part left behind
    (niqe_status,) = [s for s in weights.status(isolated) if s.file.name == NIQE]
    assert (niqe_status.state, niqe_status.path) == ("ok", path)
    assert weights.require("niqe", isolated) == path


def test_extract_niqe_refuses_other_parameters(isolated, tmp_path):
    rng = np.random.default_rng(1)
    archive = write_sdist(tmp_path / "sdist.tar.gz", rng.normal(size=(1, 36)), np.eye(36))
    with pytest.raises(MetricError, match="not the published ones") as error:
        weights.extract_niqe(archive, isolated)
    assert weights.KNOWN_FILES[NIQE].sha256 in str(error.value)
    assert not (isolated / NIQE).exists()


def test_extract_niqe_needs_the_npz_member(isolated, tmp_path):
    with pytest.raises(MetricError, match=r"niqe_pris_params\.npz.*pip download basicsr"):
        weights.extract_niqe(write_sdist(tmp_path / "other.tar.gz"), isolated)


def _plain(message: str) -> None:
    """A message in rainbench's words: none of tarfile's, numpy's or torch's."""
    for leaked in ("method gz", "ReadError", "allow_pickle", "pickle"):
        assert leaked not in message
    assert not re.search(r"\(\d+\)", message)  # an unpickler's opcode number


def test_extract_niqe_reads_no_member_far_larger_than_the_parameters(isolated, tmp_path):
    # 64 MB of zeros compress to some 64 kB: read whole, a larger one would fill memory.
    archive = tmp_path / "sdist.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        _add(tar, "basicsr-1.4.2/" + weights.NIQE_NPZ_MEMBER, bytes(64 << 20))
    with pytest.raises(MetricError, match=r"is 67108864 bytes, not the NIQE parameters"):
        weights.extract_niqe(archive, isolated)


@pytest.mark.parametrize("bomb", ["tiny members", "a long name"])
def test_extract_niqe_unpacks_no_more_than_a_bound(isolated, tmp_path, bomb):
    # Inflated from a few megabytes to gigabytes, tarfile kept a record of each tiny
    # member, or read a long name whole, before the NIQE member could be found.
    count = (weights._SDIST_BYTES >> 9) + 1
    if bomb == "tiny members":
        data = tarfile.TarInfo("basicsr-1.4.2/setup.cfg").tobuf() * count
    else:
        name = tarfile.TarInfo("././@LongLink")
        name.type, name.size = tarfile.GNUTYPE_LONGNAME, count << 9
        data = name.tobuf(tarfile.GNU_FORMAT) + bytes(count << 9)
    archive = tmp_path / "sdist.tar.gz"
    with gzip.open(archive, "wb", compresslevel=1) as out:
        out.write(data)
    with pytest.raises(MetricError, match=rf"unpacks to more than {weights._SDIST_BYTES} bytes"):
        weights.extract_niqe(archive, isolated)


FORGED = {
    "a size past any offset": {"size": str(2**64)},
    "a sparse member without its map": {
        "GNU.sparse.major": "1",
        "GNU.sparse.minor": "0",
        "GNU.sparse.realsize": "999",
    },
}


@pytest.mark.parametrize("records", FORGED.values(), ids=FORGED)
def test_extract_niqe_from_an_archive_with_a_forged_header_is_one_line(isolated, tmp_path, records):
    # tarfile raised ValueError on either, a traceback, before the NIQE member was found.
    archive = tmp_path / "sdist.tar.gz"
    with tarfile.open(archive, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        forged = tarfile.TarInfo("basicsr-1.4.2/setup.py")
        forged.size, forged.pax_headers = 512, records
        tar.addfile(forged, io.BytesIO(bytes(512)))
        _add(tar, "basicsr-1.4.2/" + weights.NIQE_NPZ_MEMBER, b"x")
    said = rf"^{re.escape(str(archive))} (unpacks to more than \d+ bytes|is damaged or cut short)"
    with pytest.raises(MetricError, match=said):
        weights.extract_niqe(archive, isolated)


def test_extract_niqe_from_a_file_that_is_no_archive(isolated, tmp_path):
    junk = tmp_path / "basicsr-1.4.2.tar.gz"
    junk.write_bytes(os.urandom(1000))
    zipped = tmp_path / "basicsr.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr(weights.NIQE_NPZ_MEMBER, b"x")
    for path in (junk, zipped):
        with pytest.raises(MetricError, match=r"is not a \.tar\.gz archive; expected BasicSR") as e:
            weights.extract_niqe(path, isolated)
        _plain(str(e.value))


def test_extract_niqe_says_what_the_member_should_be_without_numpys_advice(isolated, tmp_path):
    archive = tmp_path / "sdist.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        pickled = io.BytesIO()
        np.save(pickled, np.array([{"mu": 1}], dtype=object), allow_pickle=True)
        _add(tar, "basicsr-1.4.2/" + weights.NIQE_NPZ_MEMBER, pickled.getvalue())
    with pytest.raises(MetricError, match="is not a NumPy archive holding the NIQE") as error:
        weights.extract_niqe(archive, isolated)
    _plain(str(error.value))
    rng = np.random.default_rng(2)
    wrong_shape = write_sdist(tmp_path / "shape.tar.gz", rng.normal(size=(1, 5)), np.eye(5))
    with pytest.raises(MetricError, match="not the published ones"):
        weights.extract_niqe(wrong_shape, isolated)


def test_extract_niqe_given_the_mat_itself_points_to_import(isolated, tmp_path, fake_params):
    for name in (NIQE, "renamed.bin"):
        mat = write_mat(tmp_path / name, *fake_params)
        with pytest.raises(MetricError, match=f"rainbench weights import {mat}$"):
            weights.extract_niqe(mat, isolated)
    assert not isolated.exists()


def test_import_knows_a_renamed_file_by_its_checksum(isolated, tmp_path, fake_params):
    source = write_mat(tmp_path / "niqe_modelparameters (1).mat", *fake_params)
    assert weights.import_file(source, isolated) == isolated / NIQE
    assert weights.require("niqe", isolated) == isolated / NIQE
    assert weights.identify(source) == weights.KNOWN_FILES[NIQE]
    assert weights.identify(tmp_path / "nothing") is None


def test_import_knows_a_downloaded_twice_name_without_a_published_checksum(isolated, tmp_path):
    torch = pytest.importorskip("torch")
    source = tmp_path / "brisque_svm_weights (2).pth"
    torch.save({"sv": torch.zeros(2, 3)}, source)
    assert weights.import_file(source, isolated) == isolated / BRISQUE


def test_two_imports_of_one_file_at_once_both_finish(
    isolated, tmp_path, fake_params, held_at_rename
):
    # The first waits with its copy written, just before it puts it in place, while the
    # second is imported whole; a temporary of the same name was taken from under it.
    source = write_mat(tmp_path / NIQE, *fake_params)
    first, release = held_at_rename(
        f"""
import dataclasses
from rainbench.metrics import weights
known = weights.KNOWN_FILES[{NIQE!r}]
weights.KNOWN_FILES[{NIQE!r}] = dataclasses.replace(known, sha256={params_sha256(*fake_params)!r})
weights.import_file({str(source)!r}, {str(isolated)!r})
"""
    )
    weights.import_file(source, isolated)
    release()
    assert first.wait(timeout=60) == 0, first.stderr.read()
    assert (isolated / NIQE).read_bytes() == source.read_bytes()
    assert sorted(p.name for p in isolated.iterdir()) == [NIQE]


def test_extract_niqe_from_the_real_basicsr_sdist(isolated):
    sdist = os.environ.get("RAINBENCH_BASICSR_SDIST")
    if not sdist:
        pytest.skip(
            "set RAINBENCH_BASICSR_SDIST to basicsr-1.4.2.tar.gz "
            "(pip download basicsr==1.4.2 --no-deps --no-binary :all: --no-build-isolation)"
        )
    path = weights.extract_niqe(sdist, isolated)
    params = scipy.io.loadmat(path)
    assert params["mu_prisparam"].shape == (1, 36)
    assert params["cov_prisparam"].shape == (36, 36)
    assert params_sha256(params["mu_prisparam"], params["cov_prisparam"]) == (
        weights.KNOWN_FILES[NIQE].sha256
    )
    assert path.stat().st_size == weights.KNOWN_FILES[NIQE].size


def test_import_copies_a_file_whose_checksum_holds(isolated, tmp_path, fake_params):
    source = write_mat(tmp_path / "elsewhere" / NIQE, *fake_params)
    assert weights.import_file(source, isolated) == isolated / NIQE
    assert (isolated / NIQE).read_bytes() == source.read_bytes()
    assert weights.import_file(isolated / NIQE, isolated) == isolated / NIQE  # already there


def test_import_refuses_a_mismatching_file(isolated, tmp_path):
    source = write_mat(tmp_path / NIQE, np.zeros((1, 36)), np.eye(36))
    with pytest.raises(MetricError, match="expected " + weights.KNOWN_FILES[NIQE].sha256):
        weights.import_file(source, isolated)
    checkpoint = tmp_path / MUSIQ
    checkpoint.write_bytes(b"not the checkpoint")
    with pytest.raises(MetricError, match="expected e95806b9…"):
        weights.import_file(checkpoint, isolated)
    assert not isolated.exists()


def test_a_mat_is_read_without_scipy_no_further_than_niqes_arrays(isolated, tmp_path, fake_params):
    mu, cov = fake_params
    compressed = tmp_path / "compressed" / NIQE
    compressed.parent.mkdir()
    scipy.io.savemat(compressed, {"mu_prisparam": mu, "cov_prisparam": cov}, do_compression=True)
    assert weights.import_file(compressed, isolated) == isolated / NIQE  # as MATLAB saves it
    # 10 MB of zeros compressed into 10 kB beside the arrays: pyiqa's loadmat would
    # inflate them whole.
    bomb = tmp_path / "bomb" / NIQE
    bomb.parent.mkdir()
    padded = {"mu_prisparam": mu, "cov_prisparam": cov, "pad": np.zeros(1_250_000)}
    scipy.io.savemat(bomb, padded, do_compression=True)
    # An element of a type scipy's reader does not know: it crashes the interpreter.
    crash = write_mat(tmp_path / "crash" / NIQE, mu, cov)
    data = bytearray(crash.read_bytes())
    assert data[192] == 9  # mu's values: miDOUBLE
    data[192] = 222
    crash.write_bytes(bytes(data))
    for path in (bomb, crash):
        with pytest.raises(MetricError, match=r"is not the expected .*: unreadable, expected"):
            weights.import_file(path, isolated)


def _mat_element(kind: int, data: bytes) -> bytes:
    return struct.pack("<II", kind, len(data)) + data + bytes(-len(data) % 8)


@pytest.mark.parametrize("flags", [b"", b"\x06"])
def test_a_mat_whose_matrix_has_no_flags_is_unreadable_not_a_traceback(isolated, tmp_path, flags):
    # An array-flags element shorter than its 8 bytes: indexing it raised IndexError,
    # which status, import and the metrics' check passed on as a traceback.
    header = b"MATLAB 5.0 MAT-file".ljust(124) + struct.pack("<H", 0x0100) + b"IM"
    matrix = b"".join(
        _mat_element(kind, data)
        for kind, data in [
            (6, flags), (5, struct.pack("<ii", 1, 1)), (1, b"mu_prisparam"), (9, bytes(8))
        ]
    )  # fmt: skip
    path = tmp_path / NIQE
    path.write_bytes(header + _mat_element(14, matrix))
    with pytest.raises(MetricError, match=r"is not the expected .*: unreadable, expected"):
        weights.import_file(path, isolated)
    isolated.mkdir()
    (isolated / NIQE).write_bytes(path.read_bytes())
    (niqe,) = [s for s in weights.status(isolated) if s.file.name == NIQE]
    assert niqe.state == "mismatch" and niqe.sha256 is None


def test_import_refuses_an_unknown_file(isolated, tmp_path):
    other = tmp_path / "model.pth"
    other.write_bytes(b"x")
    with pytest.raises(
        MetricError,
        match="not a known weight file, by name or by checksum; known: .*" + re.escape(NIQE),
    ):
        weights.import_file(other, isolated)


@pytest.mark.parametrize("name", [MUSIQ, "model.pth", "basicsr-1.4.2.tar.gz"])
def test_a_fifo_is_refused_in_one_line_not_waited_on(isolated, tmp_path, name):
    # Hashed or opened as an archive, it waited for a writer for ever.
    fifo = tmp_path / name
    os.mkfifo(fifo)
    read = weights.extract_niqe if name.endswith(".tar.gz") else weights.import_file
    with pytest.raises(MetricError, match=rf"^{re.escape(str(fifo))}: not a regular file; "):
        read(fifo, isolated)
    assert not isolated.exists()


def test_a_file_without_published_checksum_is_unverified(isolated, tmp_path):
    torch = pytest.importorskip("torch")
    source = tmp_path / BRISQUE
    torch.save({"sv": torch.zeros(2, 3)}, source)  # a PyTorch file: what it holds is unchecked
    weights.import_file(source, isolated)
    (brisque,) = [s for s in weights.status(isolated) if s.file.name == BRISQUE]
    assert brisque.state == "unverified"
    assert brisque.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()


def test_an_unverified_file_that_is_no_pytorch_file_is_refused(isolated, tmp_path):
    pytest.importorskip("torch")
    source = tmp_path / BRISQUE
    source.write_bytes(bytes(range(256)) * 4)
    message = r"is not a PyTorch weight file of plain tensors, which brisque_svm_weights\.pth"
    with pytest.raises(MetricError, match=message + r".*; nothing was imported$") as error:
        weights.import_file(source, isolated)
    _plain(str(error.value))
    assert not (isolated / BRISQUE).exists()


def test_a_clip_file_is_plain_tensors_or_openais_own(isolated, tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    source = tmp_path / weights.CLIP_FILE
    source.write_bytes(b"not CLIP at all")
    with pytest.raises(MetricError, match=r"nor is it OpenAI's TorchScript \(sha256 40d36571…\)"):
        weights.import_file(source, isolated)
    assert not (isolated / weights.CLIP_FILE).exists()
    # OpenAI's archive (TorchScript: no plain tensors), known by its sha256, is imported.
    monkeypatch.setattr(weights, "OPENAI_VIT_B_32_SHA256", weights.file_sha256(source))
    assert weights.import_file(source, isolated).read_bytes() == source.read_bytes()
    torch.save({"visual.proj": torch.zeros(2, 2)}, source)  # a state dict of CLIP: fine too
    assert weights.import_file(source, isolated).read_bytes() == source.read_bytes()


def test_an_unverified_file_that_would_inflate_beyond_memory_is_refused(isolated, tmp_path):
    torch = pytest.importorskip("torch")
    plain = tmp_path / "plain.pth"
    torch.save({"sv": torch.zeros(1 << 24, dtype=torch.uint8)}, plain)
    source = tmp_path / BRISQUE
    with zipfile.ZipFile(plain) as archive, zipfile.ZipFile(source, "w") as out:
        for member in archive.infolist():
            out.writestr(member.filename, archive.read(member), zipfile.ZIP_DEFLATED)
    assert source.stat().st_size < (1 << 24) // 100
    with pytest.raises(MetricError, match=r"is not a PyTorch weight file of plain tensors"):
        weights.import_file(source, isolated)
    assert not (isolated / BRISQUE).exists()


class _RunsCode:
    """Unpickled, it writes a file: what a hostile .pth would do instead."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.write_text, (self.path, "ran"))


def test_a_pickle_that_runs_code_in_the_weights_folder_never_reaches_pyiqa(isolated, tmp_path):
    # pyiqa unpickles brisque's file whole; with no checksum to hold it to, it is read as
    # plain tensors first. Put in place by hand, not imported.
    torch = pytest.importorskip("torch")
    ran = tmp_path / "ran"
    isolated.mkdir(exist_ok=True)
    torch.save({"sv": _RunsCode(ran)}, isolated / BRISQUE)
    message = rf"^brisque: {isolated / BRISQUE} is not a PyTorch weight file of plain tensors"
    with pytest.raises(MetricError, match=message + r".*; replace it: rainbench weights import"):
        weights.require("brisque", isolated)
    assert not ran.exists()
    torch.save([torch.zeros(2), torch.zeros(2, 3)], isolated / BRISQUE)
    assert weights.require("brisque", isolated) == isolated / BRISQUE


def test_missing_file_names_the_file_the_folders_and_the_command(isolated):
    with pytest.raises(MetricError) as error:
        weights.require("niqe", isolated)
    message = str(error.value)
    assert "\n" not in message
    assert NIQE in message
    assert str(isolated) in message
    assert str(weights.pyiqa_cache_dir()) in message
    assert f"rainbench weights extract-niqe basicsr-1.4.2.tar.gz --weights-dir {isolated}" in (
        message
    )
    assert "pip download basicsr==1.4.2" in message


def test_learned_metric_names_the_checkpoint_pyiqa_expects(isolated):
    with pytest.raises(MetricError, match=f"rainbench weights import {MUSIQ}"):
        weights.require("musiq", isolated)


def test_a_file_in_pyiqas_cache_is_used(isolated, fake_params):
    cached = write_mat(weights.pyiqa_cache_dir() / NIQE, *fake_params)
    assert weights.require("niqe", isolated) == cached
    ours = write_mat(isolated / NIQE, *fake_params)
    assert weights.require("niqe", isolated) == ours  # the weights directory comes first


def test_a_wrong_file_in_place_is_refused_not_used(isolated):
    write_mat(isolated / NIQE, np.zeros((1, 36)), np.eye(36))
    with pytest.raises(MetricError, match=r"is not the expected niqe_modelparameters\.mat"):
        weights.require("niqe", isolated)
    (isolated / NIQE).write_bytes(b"not a MATLAB file")
    with pytest.raises(MetricError, match="replace it: rainbench weights extract-niqe"):
        weights.require("niqe", isolated)
