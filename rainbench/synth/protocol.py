"""The public real test splits a leaderboard protocol names (benchmarks/leaderboard/v2.toml):
the layout each is read with, the pairs it holds and a checksum list of its files, so
that two labs that download a set import identical splits. A lab writes a split's list
once from its download; every import checks against it and reports each difference.
"""

import codecs
import re
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from rainbench.capture.source import name_text
from rainbench.files import file_sha256, regular_file, write_atomic
from rainbench.shards.dataset import DatasetError
from rainbench.synth.importers import REAL_PAIRED, LayoutProblem, PairSource
from rainbench.wording import counted

# What a protocol check reports; any of these keeps the split out of the dataset.
MISMATCHES = frozenset(
    {
        "protocol-count",
        "checksum-missing",
        "checksum-extra",
        "checksum-mismatch",
        "checksum-list",
        "checksums-not-written",  # --write-checksums from a download with problems
    }
)
# A note, not a mismatch: the split's checksum list has not been written yet.
NO_CHECKSUMS = "no-checksums"

# One line of a checksum list, as sha256sum writes it: the hex digest, two spaces, the
# file's path relative to the folder the set was imported from (a space may start it).
_LINE = re.compile(r"([0-9a-f]{64})  (.+)")
# A checksum list's size read at most: a line per file, some 100 bytes; 64 MiB is some
# 600,000 files, where the public real test sets have a few thousand.
MAX_CHECKSUM_LIST_BYTES = 64 << 20

# The real-paired splits the published protocols name (benchmarks/leaderboard/v*.toml,
# which an installed rainbench does not ship): imported under these names only through
# --protocol, so a split of that name has always been checked against its protocol.
# tests/synth/test_protocol.py keeps it equal to the definitions.
PROTOCOL_SPLIT_NAMES = frozenset(
    {
        "spa-real-test-1000",
        "gt-rain-test",
        "realrain-1k-l-test",
        "realrain-1k-h-test",
        "lhp-rain-test",
    }
)


@dataclass(frozen=True)
class ProtocolSplit:
    version: str  # the protocol's, e.g. "2"
    name: str  # the split's name in the protocol and in the dataset
    layout: str
    pairs: int | None  # how many pairs it holds; None where the protocol fixes no count yet
    checksums: Path  # where its checksum list lies, written yet or not

    @property
    def title(self) -> str:
        return f"protocol v{self.version} split {self.name}"


def protocol_split(path: Path, name: str) -> ProtocolSplit:
    """The real-paired split `name` of the protocol definition at `path`."""
    try:
        definition = tomllib.loads(Path(path).read_text("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise DatasetError(f"{path}: not a protocol definition ({error})") from None
    listed = definition.get("splits", [])
    if not isinstance(listed, list) or not all(isinstance(s, dict) for s in listed):
        raise DatasetError(
            f"{path}: not a protocol definition (its splits are no [[splits]] tables)"
        )
    splits = [s for s in listed if s.get("kind") == REAL_PAIRED]
    found = next((s for s in splits if s.get("name") == name), None)
    if found is None:
        known = ", ".join(str(s.get("name")) for s in splits) or "none"
        raise DatasetError(f"{path} names no real-paired split {name!r}; it names: {known}")
    pairs, texts = found.get("pairs"), [found.get(key, "") for key in ("layout", "checksums")]
    if not all(isinstance(text, str) for text in texts) or not (
        pairs is None or (type(pairs) is int and pairs >= 0)
    ):
        raise DatasetError(
            f"{path}: split {name}'s layout and checksums must be text, its pairs a whole number"
        )
    try:
        checksums = PurePosixPath(found["checksums"])
        split = ProtocolSplit(
            str(definition["protocol_version"]),
            name,
            found["layout"],
            found.get("pairs"),
            Path(path).parent / checksums,
        )
    except KeyError as error:
        raise DatasetError(f"{path}: split {name} has no {error}") from None
    if checksums.is_absolute() or ".." in checksums.parts:
        raise DatasetError(f"{path}: split {name}'s checksums must lie beside the definition")
    return split


def check_protocol(
    split: ProtocolSplit,
    root: Path,
    pairs: list[PairSource],
    write: bool = False,
    found: Sequence[LayoutProblem] = (),
    sha256: Callable[[Path], str] = file_sha256,
) -> list[LayoutProblem]:
    """How the pairs found under `root` differ from `split`: a wrong pair count, then
    every listed file not among them, every file of theirs not listed and every file
    whose bytes differ, one problem each (kinds in MISMATCHES). Without a checksum list
    yet, one NO_CHECKSUMS note says so. `sha256` gives a file's digest (the caller's,
    when it has them already).

    With `write`, first writes the list from these pairs, when their count is right,
    finding them met no problem (`found`, which a "checksums-not-written" mismatch
    then names) and no list exists yet: a list is written once, from one whole download.
    """
    problems = []
    if split.pairs is not None and len(pairs) != split.pairs:
        detail = f"{len(pairs)} pairs found; {split.title} holds {split.pairs}"
        problems.append(LayoutProblem("protocol-count", ".", detail))
    files = _files(root, pairs)
    if write and found:
        kinds = ", ".join(sorted({problem.kind for problem in found}))
        detail = (
            f"{split.checksums.name} not written: finding the pairs met "
            f"{counted(len(found), 'problem')} ({kinds}); a list is written only from a "
            "download whose every file pairs"
        )
        problems.append(LayoutProblem("checksums-not-written", ".", detail))
    if write and not problems:
        _write_checksums(split, files, sha256)
    if not split.checksums.exists():
        checked = "only the pair count was" if split.pairs is not None else "nothing could be"
        fix = (
            "it was not written, for the problems above"
            if write
            else "write it once from a download with --write-checksums"
        )
        detail = (
            f"{split.title} has no checksum list yet ({split.checksums.name}), so "
            f"{checked} checked; {fix}"
        )
        return [*problems, LayoutProblem(NO_CHECKSUMS, ".", detail)]
    listed, unreadable = _read_checksums(split.checksums)
    problems += unreadable
    where = split.checksums.name
    for path in sorted(listed.keys() - files.keys()):
        detail = f"listed in {where} but not among the pairs found"
        problems.append(LayoutProblem("checksum-missing", path, detail))
    for path in sorted(files.keys() - listed.keys()):
        detail = f"a file of the pairs found that {where} does not list"
        problems.append(LayoutProblem("checksum-extra", path, detail))
    for path in sorted(files.keys() & listed.keys()):
        digest = sha256(files[path])
        if digest != listed[path]:
            detail = f"sha256 {digest[:16]}…, {where} lists {listed[path][:16]}…"
            problems.append(LayoutProblem("checksum-mismatch", path, detail))
    return problems


def _files(root: Path, pairs: list[PairSource]) -> dict[str, Path]:
    """Every rainy and ground-truth file of the pairs, once (a clean frame several rainy
    frames share is one file), by its path relative to `root` as the split stores it
    (`name_text`: bytes that are not UTF-8 as `\\xHH`)."""
    return {
        name_text(path.relative_to(root).as_posix()): path
        for pair in pairs
        for path in (pair.rain, pair.gt)
    }


def _write_checksums(
    split: ProtocolSplit, files: dict[str, Path], sha256: Callable[[Path], str]
) -> None:
    if any("\n" in path or "\r" in path for path in files):
        raise DatasetError("a file name holds a line break: it cannot be listed")
    lines = "".join(f"{sha256(files[path])}  {path}\n" for path in sorted(files))
    if split.checksums.exists():
        if _same_list(split.checksums, lines):  # written by this command, killed after it
            return
        raise DatasetError(
            f"{split.checksums} exists and lists other files or bytes: a checksum list is "
            "written once; delete it to write it again"
        )
    write_atomic(split.checksums, lines.encode("utf-8"))


def _same_list(path: Path, lines: str) -> bool:
    """Whether the list at `path` is `lines`, as `_write_checksums` writes them."""
    try:
        return (
            path.stat().st_size == len(lines.encode("utf-8")) and path.read_text("utf-8") == lines
        )
    except (OSError, UnicodeDecodeError):
        return False


def _read_checksums(path: Path) -> tuple[dict[str, str], list[LayoutProblem]]:
    listed: dict[str, str] = {}
    problems = []
    with open(regular_file(path), "rb") as handle:  # a FIFO would block the reader
        data = handle.read(MAX_CHECKSUM_LIST_BYTES + 1)
    if len(data) > MAX_CHECKSUM_LIST_BYTES:
        raise DatasetError(
            f"{path}: larger than {MAX_CHECKSUM_LIST_BYTES >> 20} MiB, more than a line per "
            "file of any public set takes; refused"
        )
    # A list saved by an editor may start with a byte-order mark. Only \n and \r end a
    # line, as where it is written: a name may hold U+2028.
    for number, raw in enumerate(data.removeprefix(codecs.BOM_UTF8).splitlines(), 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            detail = f"line {number} of {path.name}: not UTF-8 text, got {raw[:80]!r}"
            problems.append(LayoutProblem("checksum-list", ".", detail))
            continue
        found = _LINE.fullmatch(line)
        if found is None or found[2] in listed:
            why = "a second line for the same file" if found else "expected 'sha256  path'"
            detail = f"line {number} of {path.name}: {why}, got {line[:80]!r}"
            problems.append(LayoutProblem("checksum-list", ".", detail))
        else:
            listed[found[2]] = found[1]
    return listed, problems
