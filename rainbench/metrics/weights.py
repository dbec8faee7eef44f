"""Weight files of the no-reference metrics: where rainbench looks for them, which files
it knows (with checksums) and how a user provides each one. Nothing is downloaded
unless asked (`rainbench weights fetch`); a missing file is a `MetricError` naming the
command that provides it.
"""

import gzip
import hashlib
import http.client
import io
import os
import re
import shlex
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import scipy.io

from rainbench.files import file_sha256, regular_file, write_atomic
from rainbench.metrics.registry import MetricError

WEIGHTS_ENV = "RAINBENCH_WEIGHTS"
DEFAULT_WEIGHTS_DIR = "~/.cache/rainbench/weights"

# The published NIQE parameters inside BasicSR's source distribution (Apache-2.0).
BASICSR_SDIST = "basicsr-1.4.2.tar.gz"
NIQE_NPZ_MEMBER = "basicsr/metrics/niqe_pris_params.npz"
_NIQE_NPZ_BYTES = 1 << 20  # the published member is 11,850 bytes; far more is not it
_SDIST_BYTES = 16 << 20  # BasicSR 1.4.2's sdist unpacks to 0.8 MB in 128 members
_GET_BASICSR = "pip download basicsr==1.4.2 --no-deps --no-binary :all: --no-build-isolation"
_PYIQA_WEIGHTS_URL = "https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main"
# Where `weights fetch` downloads from, unless told: pyiqa's own published files (a
# mirror with the same file names may stand in).
FETCH_URL_ENV = "RAINBENCH_WEIGHTS_URL"
VGG16_FILE = "vgg16-397923af.pth"
CLIP_FILE = "ViT-B-32.pt"
# OpenAI's ViT-B-32.pt, as openai/CLIP checks its download (its URL names it).
OPENAI_VIT_B_32_SHA256 = "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af"
LARGEST_DOWNLOAD = 1 << 30  # bytes: the largest checkpoint is about 0.2 GB


@dataclass(frozen=True)
class WeightFile:
    name: str  # the file name pyiqa loads
    metrics: tuple[str, ...]
    # Hex sha256 the file must start with: a full digest, the 8-digit prefix that pyiqa
    # puts in a checkpoint's name (torch.hub convention), or None when none is published.
    sha256: str | None
    # "file": sha256 of the bytes. "arrays": sha256 of the parameter values (mu ravelled,
    # then cov, little-endian float64), because a .mat header carries its creation time.
    digest: str
    size: int | None  # bytes of the file rainbench writes, when it writes one
    command: str  # the rainbench command that puts it in the weights directory
    source: str  # where that command's input comes from
    fetched: bool = True  # whether `weights fetch` gets it (from pyiqa's location)

    @property
    def expected(self) -> str:
        """The checksum as a message shows it."""
        if self.sha256 is None:
            return "none published"
        return self.sha256 if len(self.sha256) == 64 else f"{self.sha256}…"

    def provide(self, weights_dir: str | Path | None = None) -> str:
        """The command that provides this file, into --weights-dir when one is given."""
        folder = f" --weights-dir {shlex.quote(str(resolve_dir(weights_dir)))}"
        return self.command + (folder if weights_dir else "")

    def check(self, path: Path) -> tuple[str | None, str]:
        """(sha256 as this file is identified, state): ok, mismatch or unverified."""
        return self.state(_digest(path, self.digest))

    def state(self, actual: str | None) -> tuple[str | None, str]:
        """(actual, state) for a file whose digest is `actual` (None: unreadable)."""
        if actual is None:
            return None, "mismatch"
        if self.sha256 is None:
            return actual, "unverified"
        return actual, "ok" if actual.startswith(self.sha256) else "mismatch"


def _digest(path: Path, kind: str) -> str | None:
    """The sha256 of `path` by WeightFile.digest `kind`; None when it cannot be read so."""
    try:
        return _niqe_digest(path) if kind == "arrays" else file_sha256(path)
    except (ValueError, KeyError, OSError):
        return None


def _from_pyiqa(name: str, metric: str, sha256: str | None) -> WeightFile:
    return WeightFile(
        name=name,
        metrics=(metric,),
        sha256=sha256,
        digest="file",
        size=None,
        command=f"rainbench weights import {name}",
        source=f"pyiqa's file, fetched where there is network: {_PYIQA_WEIGHTS_URL}/{name}",
    )


KNOWN_FILES: dict[str, WeightFile] = {
    f.name: f
    for f in (
        WeightFile(
            name="niqe_modelparameters.mat",
            metrics=("niqe",),
            sha256="f6284a2b53fd40bbc960472b76ec55b67a299a0270294b804c847e99b8cc1e30",
            digest="arrays",
            size=10928,
            command=f"rainbench weights extract-niqe {BASICSR_SDIST}",
            source=f"BasicSR's sdist: {_GET_BASICSR}",
        ),
        # pyiqa hard-codes this SVR's rho and feature ranges; the `brisque` wheel's LIVE
        # model is a different SVR and cannot stand in for it (see docs/metrics.md).
        _from_pyiqa("brisque_svm_weights.pth", "brisque", None),
        _from_pyiqa("musiq_koniq_ckpt-e95806b9.pth", "musiq", "e95806b9"),
        _from_pyiqa("cfanet_nr_koniq_res50-9a73138b.pth", "topiq_nr", "9a73138b"),
        # Not a metric's: CCLGAN's semantic cycle contrast encodes with it (rainbench.train.cclgan).
        WeightFile(
            name=VGG16_FILE,
            metrics=("cclgan-vgg16",),
            sha256="397923af",
            digest="file",
            size=None,
            command=f"rainbench weights import {VGG16_FILE}",
            source=f"torchvision's ImageNet VGG16, https://download.pytorch.org/models/{VGG16_FILE}",
            fetched=False,
        ),
        WeightFile(
            name=CLIP_FILE,
            metrics=("cclgan-clip",),
            sha256=None,
            digest="file",
            size=None,
            command=f"rainbench weights import {CLIP_FILE}",
            source="OpenAI's CLIP ViT-B/32 release (openaipublic.azureedge.net/clip/models/…)",
            fetched=False,
        ),
    )
}


@dataclass(frozen=True)
class WeightStatus:
    file: WeightFile
    path: Path | None  # where it was found; None when missing
    sha256: str | None  # as computed here (see WeightFile.digest)
    state: str  # ok, mismatch, unverified (no published checksum) or missing
    weights_dir: str | Path | None = None  # the --weights-dir that `provide` names, if any

    @property
    def present(self) -> bool:
        return self.path is not None

    def to_dict(self) -> dict:
        return {
            "file": self.file.name,
            "metrics": list(self.file.metrics),
            "state": self.state,
            "path": str(self.path) if self.path else None,
            "sha256": self.sha256,
            "expected": self.file.expected,
            "provide": self.file.provide(self.weights_dir),
        }


def resolve_dir(weights_dir: str | Path | None = None) -> Path:
    """`weights_dir` (--weights-dir), else $RAINBENCH_WEIGHTS, else ~/.cache/rainbench/weights."""
    return Path(weights_dir or os.environ.get(WEIGHTS_ENV) or DEFAULT_WEIGHTS_DIR).expanduser()


def pyiqa_cache_dir() -> Path:
    """Where pyiqa keeps what it downloaded: torch.hub.get_dir()/pyiqa. Computed the way
    torch does when torch is not loaded, so that `weights status` never imports it."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return Path(torch.hub.get_dir()) / "pyiqa"
    home = os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch"))
    return Path(home).expanduser() / "hub" / "pyiqa"


def status(weights_dir: str | Path | None = None) -> list[WeightStatus]:
    """Every known file: where it is found first (the weights directory, then pyiqa's
    cache) and whether its checksum holds."""
    folder = resolve_dir(weights_dir)
    return [_status(file, folder, weights_dir) for file in KNOWN_FILES.values()]


def require(metric: str, weights_dir: str | Path | None = None) -> Path | None:
    """The checked weight file `metric` loads; None when it needs none. pyiqa unpickles
    a .pth whole (`weights_only=False`), so one with no checksum to hold it to must first
    read as plain tensors, as `import_file` demands: a pickle that would run code, put
    in the weights folder by hand, never reaches pyiqa."""
    found = required(metric, weights_dir)
    if found is None:
        return None
    if found.state == "unverified" and found.path.suffix == ".pth":
        try:
            _check_loads(found.path, found.file, f"replace it: {found.file.provide(weights_dir)}")
        except MetricError as error:
            raise MetricError(f"{metric}: {error}") from None
    return found.path


def loaded_weights(metrics, weights_dir: str | Path | None = None) -> dict[str, str | None]:
    """The sha256 of each weight file that `metrics` load, by file name."""
    found = (required(metric, weights_dir) for metric in metrics)
    return {status.file.name: status.sha256 for status in found if status is not None}


def required(metric: str, weights_dir: str | Path | None = None) -> WeightStatus | None:
    """The checked weight file `metric` loads, with its sha256; None when it needs none.
    Missing or not the expected file: a one-line MetricError saying how to provide it."""
    file = next((f for f in KNOWN_FILES.values() if metric in f.metrics), None)
    if file is None:
        return None
    folder = resolve_dir(weights_dir)
    found = _status(file, folder)
    command = file.provide(weights_dir)
    if not found.present:
        raise MetricError(
            f"{metric} needs {file.name}, found in neither {folder} nor {pyiqa_cache_dir()}; "
            f"provide it: {command} ({file.source})"
        )
    if found.state == "mismatch":
        raise MetricError(
            f"{metric}: {found.path} is not the expected {file.name} "
            f"({_found(found.sha256)}, expected {file.expected}); replace it: {command}"
        )
    return found


def import_file(path: str | Path, weights_dir: str | Path | None = None) -> Path:
    """Copy a known weight file into the weights directory, under the name pyiqa loads,
    after checking its checksum. A file of another name (a browser's `name (1).mat`) is
    known by its checksum, else by its name less a download's ` (N)`."""
    path = _readable(Path(path))
    file = KNOWN_FILES.get(path.name) or identify(path) or KNOWN_FILES.get(_undownloaded(path))
    if file is None:
        raise MetricError(
            f"{path.name} is not a known weight file, by name or by checksum; known: "
            f"{', '.join(sorted(KNOWN_FILES))} (a file without a published checksum, "
            f"{_unpublished()}, must keep its name)"
        )
    sha256, state = file.check(path)
    if state == "mismatch":
        raise MetricError(
            f"{path} is not the expected {file.name} for {', '.join(file.metrics)}: "
            f"{_found(sha256)}, expected {file.expected} ({file.source})"
        )
    # No checksum: at least plain tensors, or (ViT-B-32.pt) OpenAI's own TorchScript archive.
    if state == "unverified" and sha256 != OPENAI_VIT_B_32_SHA256:
        then = "nothing was imported"
        if file.name == CLIP_FILE:
            then = f"nor is it OpenAI's TorchScript (sha256 {OPENAI_VIT_B_32_SHA256[:8]}…); {then}"
        _check_loads(path, file, then)
    dest = resolve_dir(weights_dir) / file.name
    if not (dest.exists() and dest.samefile(path)):
        # Shared: processes that hold no lock (two imports, an import beside a demo's
        # fetch) may write the one weights folder at once.
        write_atomic(dest, Path(path).read_bytes(), shared=True)
    return dest


def _readable(path: Path) -> Path:
    """`path`, refused in one line unless it is a regular file: hashing a FIFO, or
    opening it as an archive, would wait for a writer for ever."""
    try:
        return regular_file(path)
    except OSError as error:
        raise MetricError(f"{path}: {error.strerror}") from None


def identify(path: Path) -> WeightFile | None:
    """The known file whose published checksum `path` holds, whatever its name; None
    when it holds none (a file without a published checksum is never identified so)."""
    digests: dict[str, str | None] = {}
    for file in KNOWN_FILES.values():
        if file.sha256 is None:
            continue
        if file.digest not in digests:
            digests[file.digest] = _digest(path, file.digest)
        if file.state(digests[file.digest])[1] == "ok":
            return file
    return None


def _undownloaded(path: Path) -> str:
    """`path`'s name less the ` (1)` a browser adds to a file downloaded twice."""
    return re.sub(r" \(\d+\)$", "", path.stem) + path.suffix


def _unpublished() -> str:
    return ", ".join(name for name, file in KNOWN_FILES.items() if file.sha256 is None)


def _check_loads(path: Path, file: WeightFile, then: str) -> None:
    """Refuse a .pth file that PyTorch cannot read as plain tensors, saying `then`."""
    # Here: only an unverified weight file needs torch. Read as a checkpoint is, so a
    # FIFO or an archive that would inflate beyond memory is refused too.
    from rainbench.models.base import CheckpointError, load_weights

    try:
        load_weights(path)
    except CheckpointError:  # what it says of bytes that are no .pth: not shown
        raise MetricError(
            f"{path} is not a PyTorch weight file of plain tensors, which {file.name} for "
            f"{', '.join(file.metrics)} must be ({file.source}); {then}"
        ) from None


def fetch(
    names: list[str],
    weights_dir: str | Path | None = None,
    base_url: str | None = None,
    timeout: float = 30.0,
) -> list[WeightStatus]:
    """Download the weight files of `names` (metric or file names) from `base_url`
    (else $RAINBENCH_WEIGHTS_URL, else pyiqa's published location) into the weights
    directory. Each is checked before it is kept: a file whose checksum does not hold is
    refused and nothing is stored; one with no published checksum is kept, unverified."""
    files = list(dict.fromkeys(_known(name) for name in names))
    root = (base_url or os.environ.get(FETCH_URL_ENV) or _PYIQA_WEIGHTS_URL).rstrip("/")
    folder = resolve_dir(weights_dir)
    folder.mkdir(parents=True, exist_ok=True)
    return [_fetch(file, f"{root}/{file.name}", folder, timeout) for file in files]


def _known(name: str) -> WeightFile:
    files = KNOWN_FILES.values()
    found = KNOWN_FILES.get(name) or next((f for f in files if name in f.metrics), None)
    if found is None:
        fetched = sorted(f.name for f in files if f.fetched)
        metrics = sorted(m for f in files if f.fetched for m in f.metrics)
        raise MetricError(
            f"{name!r} needs no weight file rainbench knows; known: {', '.join(metrics)} "
            f"(or their files: {', '.join(fetched)})"
        )
    if not found.fetched:  # said as unknown, it was listed by `weights status`
        raise MetricError(
            f"{found.name} is not fetched (it is not among pyiqa's files); provide it: "
            f"{found.command} ({found.source})"
        )
    return found


def _fetch(file: WeightFile, url: str, folder: Path, timeout: float) -> WeightStatus:
    partial = folder / f".{file.name}.{os.getpid()}.part"  # two fetches at once: one each
    try:
        # Opened before the download: a folder that cannot be written is said as such, not
        # as a download that failed (whose offline remedy would fail the same way).
        with open(partial, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    _copy(response, out, url)
            except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
                if isinstance(error, urllib.error.HTTPError):
                    reason = f"HTTP {error.code} {error.reason}"
                else:
                    reason = getattr(error, "reason", None) or error
                raise MetricError(
                    f"cannot download {file.name} from {url} ({reason}); without network: "
                    f"{file.command} ({file.source})"
                ) from None
        sha256, state = file.check(partial)
        if state == "mismatch":
            raise MetricError(
                f"{url} is not the expected {file.name} ({_found(sha256)}, expected "
                f"{file.expected}); nothing stored"
            )
        dest = folder / file.name
        os.replace(partial, dest)
        return WeightStatus(file, dest, sha256, state)
    finally:
        partial.unlink(missing_ok=True)


def _copy(response, out: BinaryIO, url: str) -> None:
    """The response body into `out`, refusing one larger than LARGEST_DOWNLOAD, or
    shorter than its Content-Length (a connection closed early: http.client reads that
    as the end, and a file without a published checksum would be kept cut short)."""
    copied = 0
    while chunk := response.read(1 << 20):
        copied += len(chunk)
        if copied > LARGEST_DOWNLOAD:
            raise MetricError(f"{url} sends more than {LARGEST_DOWNLOAD} bytes; refused")
        out.write(chunk)
    length = response.headers.get("Content-Length", "")
    if length.isdigit() and copied < int(length):
        raise MetricError(
            f"the download of {url} was cut short: {copied} of {length} bytes; nothing stored"
        )


def extract_niqe(archive: str | Path, weights_dir: str | Path | None = None) -> Path:
    """Write pyiqa's niqe_modelparameters.mat from the NIQE parameters in BasicSR's sdist,
    reading only that member of the archive."""
    file = KNOWN_FILES["niqe_modelparameters.mat"]
    archive = _readable(Path(archive))
    expected = f"expected BasicSR's sdist {BASICSR_SDIST} ({_GET_BASICSR})"
    if _is_mat(archive):
        raise MetricError(
            f"{archive} is a MATLAB file, not BasicSR's sdist; if it is {file.name}, "
            f"import it: rainbench weights import {shlex.quote(str(archive))}"
        )
    mu, cov = _read_sdist_params(archive, expected)
    try:
        found = _params_sha256(mu, cov)
    except ValueError:
        found = None
    if found != file.sha256:
        raise MetricError(
            f"the NIQE parameters in {archive} are not the published ones "
            f"({_found(found)}, expected {file.sha256}); {expected}"
        )
    buffer = io.BytesIO()
    # pyiqa's NIQE reads these two variable names from a MATLAB file.
    scipy.io.savemat(buffer, {"mu_prisparam": mu, "cov_prisparam": cov})
    dest = resolve_dir(weights_dir) / file.name
    write_atomic(dest, buffer.getvalue(), shared=True)  # as import_file writes
    if file.check(dest)[1] != "ok":
        dest.unlink()
        raise MetricError(f"{dest} did not read back with the published NIQE parameters")
    return dest


def _is_mat(path: Path) -> bool:
    """Whether `path` is a MATLAB file (a v5 file's header starts with its name)."""
    with open(path, "rb") as handle:
        return path.suffix.lower() == ".mat" or handle.read(6) == b"MATLAB"


class _Capped(io.RawIOBase):
    """`stream`, read no further than `limit` bytes in all: beyond, `refusal` is raised."""

    def __init__(self, stream, limit: int, refusal: MetricError):
        self.stream, self.left, self.refusal = stream, limit, refusal

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = self.stream.readinto(buffer)
        self.left -= count
        if self.left < 0:
            raise self.refusal
        return count


def _read_sdist_params(archive: Path, expected: str) -> tuple[np.ndarray, np.ndarray]:
    """mu and cov from the NIQE member of `archive`; whatever else it is (no tar archive,
    a damaged one, a member that is no NumPy archive of them) is said in one sentence
    that names what it should be, never in the reading library's words."""
    unpacked = MetricError(
        f"{archive} unpacks to more than {_SDIST_BYTES} bytes, far more than BasicSR's "
        f"sdist; {expected}"
    )
    try:
        # Read as a stream, no further than _SDIST_BYTES unpacked: many tiny members, or a
        # huge one that tarfile skips or reads whole (a long name), inflated from a few
        # megabytes, would fill memory or take minutes.
        with (
            gzip.open(archive) as stream,
            tarfile.open(fileobj=_Capped(stream, _SDIST_BYTES, unpacked), mode="r|") as tar,
        ):
            member = None
            for found in tar:
                if found.name.endswith(NIQE_NPZ_MEMBER) and found.isfile():
                    member = found
                    break
                # Skipped by reading its way past: a size that ends beyond any real
                # archive's would read an empty stream for ever.
                if found.offset_data + found.size > _SDIST_BYTES:
                    raise unpacked
            if member is None:
                raise MetricError(f"{archive} has no {NIQE_NPZ_MEMBER}; {expected}")
            if member.size > _NIQE_NPZ_BYTES:  # read whole into memory: a bomb would fill it
                raise MetricError(
                    f"{NIQE_NPZ_MEMBER} in {archive} is {member.size} bytes, not the NIQE "
                    f"parameters' few kilobytes; {expected}"
                )
            data = tar.extractfile(member).read()
    except (tarfile.ReadError, gzip.BadGzipFile):
        raise MetricError(f"{archive} is not a .tar.gz archive; {expected}") from None
    # ValueError: tarfile's own, on a header that forges its size or its sparse map.
    except (tarfile.TarError, EOFError, zlib.error, ValueError):
        raise MetricError(f"{archive} is damaged or cut short; {expected}") from None
    try:
        # No pickles: a member that needs one is not the published parameters.
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return npz["mu_pris_param"], npz["cov_pris_param"]
    except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile):
        raise MetricError(
            f"{NIQE_NPZ_MEMBER} in {archive} is not a NumPy archive holding the NIQE "
            f"parameters mu_pris_param and cov_pris_param; {expected}"
        ) from None


def _status(file: WeightFile, folder: Path, weights_dir: str | Path | None = None) -> WeightStatus:
    for candidate in (folder / file.name, pyiqa_cache_dir() / file.name):
        if candidate.is_file():
            sha256, state = file.check(candidate)
            return WeightStatus(file, candidate, sha256, state, weights_dir)
    return WeightStatus(file, None, None, "missing", weights_dir)


def _found(sha256: str | None) -> str:
    return f"sha256 {sha256}" if sha256 else "unreadable"


def _niqe_digest(path: Path) -> str:
    params = _mat_doubles(path)
    if set(params) != {"mu_prisparam", "cov_prisparam"}:
        raise ValueError(f"{path} holds {', '.join(sorted(params))}, not NIQE's two arrays")
    return _params_sha256(params["mu_prisparam"], params["cov_prisparam"])


# MATLAB v5 (the format of niqe_modelparameters.mat): a 128-byte header, then elements,
# each an 8-byte tag (type, byte count) and its data padded to 8 bytes.
_MAT_HEADER = 128
_MI_INT8, _MI_INT32, _MI_UINT32, _MI_DOUBLE, _MI_MATRIX, _MI_COMPRESSED = 1, 5, 6, 9, 14, 15
_MX_DOUBLE = 6  # a matrix's class: double
_NIQE_MAT_BYTES = 1 << 16  # NIQE's arrays take some 11 kB, compressed or not


def _mat_doubles(path: Path) -> dict[str, np.ndarray]:
    """The variables of a little-endian MATLAB v5 file by name, each a real double
    matrix; anything else, or more than _NIQE_MAT_BYTES however compressed, is a
    ValueError. Read here, not by scipy: pyiqa loads the file whole with scipy, whose
    reader inflates every compressed variable whole and crashes the interpreter on an
    element of a type it does not know. A file read here is safe for it to load."""
    with open(regular_file(path), "rb") as handle:
        data = handle.read(_NIQE_MAT_BYTES + 1)
    if len(data) > _NIQE_MAT_BYTES or data[126:_MAT_HEADER] != b"IM":
        raise ValueError(f"{path} is not a small little-endian MATLAB v5 file")
    variables = {}
    for kind, body in _mat_elements(data[_MAT_HEADER:]):
        if kind == _MI_COMPRESSED:
            inflate = zlib.decompressobj()
            try:
                body = inflate.decompress(body, _NIQE_MAT_BYTES)
            except zlib.error:
                raise ValueError(f"{path} holds a damaged compressed variable") from None
            if inflate.unconsumed_tail or not inflate.eof:
                raise ValueError(f"{path} holds a compressed variable too large or cut short")
            ((kind, body),) = _mat_elements(body)
        if kind != _MI_MATRIX:
            raise ValueError(f"{path} holds an element of type {kind}, not a matrix")
        name, values = _mat_matrix(body)
        variables[name] = values
    return variables


def _mat_elements(data: bytes) -> list[tuple[int, bytes]]:
    """(type, data) of each element in `data`, which they must fill exactly."""
    elements, offset = [], 0
    while offset < len(data):
        kind, size = (int(value) for value in np.frombuffer(data, "<u4", 2, offset))
        if kind >> 16:  # the small format: size and type in 4 bytes, data in the next 4
            kind, size, start, end = kind & 0xFFFF, kind >> 16, offset + 4, offset + 8
        else:  # data padded to 8 bytes, but a compressed element's
            start = offset + 8
            end = start + (size if kind == _MI_COMPRESSED else -(-size // 8) * 8)
        if end > len(data) or start + size > end:
            raise ValueError("MATLAB elements cut short")
        elements.append((kind, data[start : start + size]))
        offset = end
    return elements


def _mat_matrix(body: bytes) -> tuple[str, np.ndarray]:
    """The name and values of a real double matrix element's data."""
    parts = _mat_elements(body)
    kinds = [kind for kind, _ in parts]
    if kinds[:3] != [_MI_UINT32, _MI_INT32, _MI_INT8] or len(parts) != 4:
        raise ValueError("a MATLAB variable that is not one real matrix")
    (_, flags), (_, dims), (_, name), (kind, values) = parts
    shape = tuple(int(n) for n in np.frombuffer(dims, "<i4"))
    real_double = len(flags) == 8 and flags[0] == _MX_DOUBLE and not flags[1] & 0x08
    if not real_double or kind != _MI_DOUBLE or len(values) % 8:
        raise ValueError("a MATLAB variable that is not a real double matrix")
    array = np.frombuffer(values, "<f8")
    if len(shape) != 2 or array.size != shape[0] * shape[1]:
        raise ValueError("a MATLAB matrix whose values do not fill its size")
    return name.decode("ascii", "replace"), array.reshape(shape, order="F")


def _params_sha256(mu: np.ndarray, cov: np.ndarray) -> str:
    mu = np.asarray(mu, dtype="<f8").ravel()
    cov = np.asarray(cov, dtype="<f8")
    if mu.shape != (36,) or cov.shape != (36, 36):
        raise ValueError(f"NIQE parameters must be mu 1×36 and cov 36×36, got {mu.shape}")
    return hashlib.sha256(mu.tobytes() + cov.tobytes()).hexdigest()
