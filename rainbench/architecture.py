"""The package's layers, read from its imports: docs/architecture.md is rendered from
every module's `import` statements (those inside functions too) by

    python -m rainbench.architecture docs/architecture.md

and tests/test_architecture.py fails while the page is stale, while two packages import
each other, or while an import points up the layers.
"""

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent

# The layers from the bottom up: the stages of a capture's journey in their order, the
# foundation every stage stands on below them, and what drives the stages placed above
# what it uses. A package may import only from layers below its own. A new package or
# top-level module gets its place here.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "foundation",
        (
            "__init__",
            "errors",
            "files",
            "seeds",
            "versions",
            "windows",
            "threads",
            "wording",
        ),
    ),
    # Worker processes on this machine, which say their failures as rainbench errors.
    ("workers", ("parallel", "forkserver")),
    ("scale-out", ("cluster", "store")),
    ("capture", ("capture",)),
    ("tagging", ("tagging",)),
    ("shards", ("shards",)),
    ("ingest", ("ingest",)),
    ("data", ("data",)),
    ("synth", ("synth",)),
    ("pairs", ("pairs",)),
    ("models", ("models",)),
    ("metrics", ("metrics",)),
    ("leaderboard", ("leaderboard",)),
    ("train", ("train",)),
    ("analysis", ("analysis",)),
    ("demo", ("demo",)),
    ("cli", ("cli",)),
    ("entry points", ("__main__", "cli_reference", "architecture")),
)


@dataclass(frozen=True)
class Import:
    """One import of another part of rainbench: where it is and what it names."""

    importer: str  # the importing part: a subpackage or a top-level module
    imported: str
    path: str  # relative to the repository
    line: int
    module: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.importer} imports {self.module}"


def part_of(module: str) -> str:
    """The part of rainbench a dotted module name belongs to: `rainbench.shards.tar` →
    `shards`, `rainbench.files` → `files`, `rainbench` itself → `__init__`."""
    names = module.split(".")
    return names[1] if len(names) > 1 else "__init__"


def imports(package: Path = PACKAGE) -> list[Import]:
    """Every import from one part of rainbench into another, in file and line order."""
    found = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package.parent)
        names = list(relative.with_suffix("").parts)
        if names[-1] == "__init__":
            names.pop()
        importer = part_of(".".join(names))
        # What `from . import x` is relative to: the module's own package.
        here = names if path.name == "__init__.py" else names[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            for module in _imported_modules(node, here, package.parent):
                imported = part_of(module)
                if module.split(".")[0] == package.name and imported != importer:
                    found.append(Import(importer, imported, str(relative), node.lineno, module))
    return sorted(found, key=lambda i: (i.path, i.line, i.module))


def _imported_modules(node: ast.AST, here: list[str], root: Path) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        base = here[: len(here) - node.level + 1] if node.level else []
        module = ".".join([*base, *([node.module] if node.module else [])])
        for alias in node.names:
            # `from rainbench import files` imports the part `files`, not the root.
            submodule = f"{module}.{alias.name}"
            yield submodule if _is_module(root, submodule) else module


def _is_module(root: Path, dotted: str) -> bool:
    path = root.joinpath(*dotted.split("."))
    return path.is_dir() or path.with_suffix(".py").is_file()


def graph(found: list[Import]) -> dict[str, set[str]]:
    """Part → the parts it imports."""
    edges: dict[str, set[str]] = {}
    for item in found:
        edges.setdefault(item.importer, set()).add(item.imported)
    return edges


def rank() -> dict[str, int]:
    """Part → the index of its layer, 0 at the bottom."""
    return {part: index for index, (_, parts) in enumerate(LAYERS) for part in parts}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The groups of parts that reach each other through imports (Tarjan's strongly
    connected components of more than one part), each sorted, the groups sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups = []

    def visit(part: str) -> None:
        index[part] = low[part] = len(index)
        stack.append(part)
        for other in sorted(edges.get(part, ())):
            if other not in index:
                visit(other)
                low[part] = min(low[part], low[other])
            elif other in stack:
                low[part] = min(low[part], index[other])
        if low[part] == index[part]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == part:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for part in sorted(edges):
        if part not in index:
            visit(part)
    return sorted(groups)


def upward(found: list[Import]) -> list[Import]:
    """The imports that do not point down the layers: into the importer's own layer, a
    higher one, or from or to a part no layer places."""
    ranks = rank()
    return [
        item
        for item in found
        if item.importer not in ranks
        or item.imported not in ranks
        or ranks[item.imported] >= ranks[item.importer]
    ]


def render(found: list[Import]) -> str:
    """docs/architecture.md: the layers drawn top to bottom with every part's direct
    imports as arrows, then a table of them."""
    edges = graph(found)
    lines = [
        "# Architecture: the package's layers",
        "",
        "rainbench's folders follow a capture's journey: capture → tagging → shards →",
        "data → synth → models → metrics → leaderboard. Below the stages lies a foundation",
        "(the error base, atomic files and hashes, seeds, the libraries' versions, window",
        "filters, torch's CPU threads), just above it the local worker pools, and above them",
        "scale-out (Ray pools, object-store datasets); above the stages the drivers: ingest,",
        "training, analysis, the demo and the CLI. Every import points down: a stage uses only",
        "what lies below it, never a later stage.",
        "",
        "This page is generated from the imports themselves (those inside functions too) by",
        "`python -m rainbench.architecture docs/architecture.md`; tests/test_architecture.py",
        "fails while it is stale, while two parts import each other, or while an import",
        "points up. The order of the layers is `LAYERS` in rainbench/architecture.py.",
        "",
        "```mermaid",
        "flowchart TD",
    ]
    for name, parts in reversed(LAYERS):
        lines.append(f'  subgraph {_node(name)}_layer["{name}"]')
        lines.extend(f'    {_node(part)}["{part}"]' for part in parts)
        lines.append("  end")
    for importer, imported in _drawn(edges):
        lines.append(f"  {_node(importer)} --> {_node(imported)}")
    lines += [
        "```",
        "",
        "An arrow stands for the imports from one part into another that no path of",
        "other arrows already implies; the table lists every direct import.",
        "",
        "| layer | part | imports from |",
        "|---|---|---|",
    ]
    for name, parts in reversed(LAYERS):
        for part in parts:
            used = ", ".join(sorted(edges.get(part, ()), key=lambda p: (-rank()[p], p)))
            lines.append(f"| {name} | `{part}` | {used or '—'} |")
    return "\n".join(lines) + "\n"


def _drawn(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    """The transitive reduction of `edges` (acyclic): an arrow a → b unless another
    path leads from a to b."""

    def reaches(start: str, goal: str, skip: tuple[str, str]) -> bool:
        seen, todo = set(), [start]
        while todo:
            part = todo.pop()
            for other in edges.get(part, ()):
                if (part, other) != skip and other not in seen:
                    if other == goal:
                        return True
                    seen.add(other)
                    todo.append(other)
        return False

    ranks = rank()
    arrows = [(a, b) for a in edges for b in edges[a] if not reaches(a, b, (a, b))]
    return sorted(arrows, key=lambda e: (-ranks.get(e[0], -1), e[0], -ranks.get(e[1], -1), e[1]))


def _node(name: str) -> str:
    return "m_" + name.replace(" ", "_")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    found = imports()
    problems = [", ".join(group) for group in cycles(graph(found))] + list(map(str, upward(found)))
    if problems:
        print("imports that break the layers:", *problems, sep="\n  ", file=sys.stderr)
        return 1
    page = render(found)
    if args:
        Path(args[0]).write_text(page, encoding="utf-8")
    else:
        sys.stdout.write(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
