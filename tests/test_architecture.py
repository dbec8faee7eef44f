"""The layers hold: no two parts of rainbench import each other (imports inside
functions count), every import points down the layers, every part has a layer, and
docs/architecture.md is what rainbench.architecture renders from the imports now."""

from pathlib import Path

from rainbench import architecture
from rainbench.architecture import cycles, graph, imports, rank, render, upward

PAGE = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def test_no_two_parts_import_each_other():
    found = imports()
    groups = cycles(graph(found))
    members = {part for group in groups for part in group}
    culprits = [str(i) for i in found if i.importer in members and i.imported in members]
    assert not groups, f"import cycles {groups}:\n" + "\n".join(culprits)


def test_every_import_points_down_the_layers():
    assert not upward(imports()), "\n".join(map(str, upward(imports())))


def test_every_part_has_a_layer():
    package = architecture.PACKAGE
    parts = {p.name for p in package.iterdir() if (p / "__init__.py").is_file()}
    parts |= {p.stem for p in package.glob("*.py")}
    assert parts <= set(rank()), f"not placed in LAYERS: {sorted(parts - set(rank()))}"


def test_docs_architecture_md_is_up_to_date():
    assert PAGE.read_text(encoding="utf-8") == render(imports()), (
        "docs/architecture.md is stale: python -m rainbench.architecture docs/architecture.md"
    )


def test_a_cycle_through_an_import_inside_a_function_is_found(tmp_path):
    package = tmp_path / "pkg"
    for name, text in {
        "__init__.py": "",
        "low/__init__.py": "",
        "low/a.py": "def f():\n    from pkg.high.b import g\n",
        "high/__init__.py": "",
        "high/b.py": "from pkg.low import a\n",
        "tool.py": "from pkg import high\nfrom . import low\n",
    }.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    found = imports(package)
    assert cycles(graph(found)) == [["high", "low"]]
    assert [(i.path, i.line) for i in found if i.importer == "low"] == [("pkg/low/a.py", 2)]
    assert graph(found)["tool"] == {"high", "low"}
