"""The docs stay true: every `rainbench …` command README.md and docs/*.md show parses
against the click commands (parsed as a run would parse it, never run), and the Python
they show compiles and imports from rainbench only names that exist. docs/cli.md is
generated from the commands (tests/test_cli_reference.py) and not read here."""

import ast
import importlib
import re
import shlex
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

import rainbench
from rainbench.errors import RainbenchError

ROOT = Path(__file__).resolve().parents[1]
SOURCE = Path(rainbench.__file__).parents[1]  # where the rainbench being tested lies
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PAGES.remove(ROOT / "docs" / "cli.md")
SHELL = {"", "bash", "sh", "shell", "console"}
PYTHON = {"python", "py"}
ELLIPSIS = {"…", "..."}

# Shell lines that show a command's form rather than one to run: `[optional]` parts and
# `a|b` alternatives. They are checked as inline commands are (below), not skipped.
SYNOPSES = {
    "rainbench ingest RAW... --out DS [--layer rainy|clean] [--split train=0.8,val=0.1,test=0.1]",
}


def _entry_point() -> click.Group:
    """The click group pyproject's `rainbench` console script names."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    module, _, attribute = scripts["scripts"]["rainbench"].partition(":")
    return getattr(importlib.import_module(module), attribute)


CLI = _entry_point()


@dataclass(frozen=True)
class Snippet:
    where: str  # PAGE:LINE
    text: str


def _fenced_blocks(page: Path) -> Iterator[tuple[int, str, list[str]]]:
    """(number of its first line, language, lines) of each fenced code block of `page`."""
    fence = None
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        if fence is None:
            opening = re.match(r"\s*(`{3,}|~{3,})\s*([\w+-]*)", line)
            if opening:
                fence, language, start, body = opening[1], opening[2].lower(), number + 1, []
        elif re.fullmatch(rf"\s*{fence[0]}{{{len(fence)},}}\s*", line):
            yield start, language, body
            fence = None
        else:
            body.append(line)


def _shell_lines(language: str, start: int, body: list[str]):
    """(line number, command line, here-document's lines) of each command in a shell
    block: continuations joined, a `$ ` prompt dropped; in a console block only the
    prompted lines are commands, the rest is output."""
    index = 0
    while index < len(body):
        number, text = start + index, body[index].strip()
        index += 1
        if language == "console" and not text.startswith("$ "):
            continue
        text = text.removeprefix("$ ")
        while text.endswith("\\") and index < len(body):
            text = text[:-1] + " " + body[index].strip()
            index += 1
        here = []
        delimiter = re.search(r"<<-?\s*['\"]?(\w+)", text)
        if delimiter:
            while index < len(body) and body[index].strip() != delimiter[1]:
                here.append(body[index])
                index += 1
            index += 1
        yield number, text, here


def _segments(text: str) -> Iterator[list[str]]:
    """The words of each simple command of a shell line (split at pipes, `&&`, `;`; a
    redirection and its target dropped; comments dropped)."""
    # A descriptor's number is part of its redirection (`2>&1`), no argument.
    text = re.sub(r"(?<=\s)\d+(?=[<>])", "", text)
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words, tokens = [], iter(lexer)
    for token in tokens:
        if token in ("<", ">", ">>", "<<", "<<-", ">&", "&>"):
            next(tokens, None)
        elif set(token) <= set("();<>|&"):
            yield words
            words = []
        else:
            words.append(token)
    yield words


def _rainbench_arguments(words: list[str]) -> list[str] | None:
    """The arguments of `rainbench …` or `… -m rainbench …` in a simple command; None
    when it runs something else."""
    while words and (re.fullmatch(r"\w+=\S*", words[0]) or words[0] in ("time", "do", "then")):
        words = words[1:]
    if words[:1] == ["rainbench"]:
        return words[1:]
    for index in range(len(words) - 1):
        if words[index : index + 2] == ["-m", "rainbench"]:
            return words[index + 2 :]
    return None


def _python_in_shell(words: list[str], here: list[str]) -> str | None:
    """The code a `python -c CODE` or `python - <<EOF` command runs, if it is one."""
    for index, word in enumerate(words):
        if re.fullmatch(r"python(3[.\d]*)?", word):
            rest = words[index + 1 :]
            if rest[:1] == ["-c"] and len(rest) > 1:
                return rest[1]
            return "\n".join(here) if here else None
    return None


def _collect() -> tuple[list[Snippet], list[Snippet], list[Snippet]]:
    """The docs' shell commands, inline commands (with the synopses) and Python code."""
    commands, inline, python = [], [], []
    for page in PAGES:
        name = page.relative_to(ROOT).as_posix()
        for start, language, body in _fenced_blocks(page):
            if language in PYTHON:
                python.append(Snippet(f"{name}:{start}", "\n".join(body)))
            if language not in SHELL:
                continue
            for number, text, here in _shell_lines(language, start, body):
                where = f"{name}:{number}"
                if text in SYNOPSES:
                    inline.append(Snippet(where, text))
                    continue
                try:
                    simple_commands = list(_segments(text))
                except ValueError:  # no shell line (a block with no language may hold anything)
                    simple_commands = [text.split()] if text.startswith("rainbench ") else []
                for words in simple_commands:
                    if _rainbench_arguments(words) is not None:
                        commands.append(Snippet(where, shlex.join(words)))
                    code = _python_in_shell(words, here)
                    if code is not None:
                        python.append(Snippet(where, code))
        inline += _inline_commands(page, name)
    return commands, inline, python


def _inline_commands(page: Path, name: str) -> Iterator[Snippet]:
    """Code spans in the prose of `page` that are a `rainbench …` command line."""
    lines = page.read_text(encoding="utf-8").splitlines()
    fence = None
    for number, line in enumerate(lines):
        fenced = re.match(r"\s*(`{3,}|~{3,})", line)
        if fence is None and fenced:
            fence = fenced[1][0]
        elif fence is not None and re.fullmatch(rf"\s*{fence}{{3,}}\s*", line):
            fence = None
        elif fence is None:
            continue
        lines[number] = ""
    prose = "\n".join(lines)
    for span in re.finditer(r"(`+)(.+?)\1", prose, re.DOTALL):
        text = " ".join(span[2].split())
        if re.match(r"(python -m )?rainbench ", text):
            line = prose.count("\n", 0, span.start()) + 1
            yield Snippet(f"{name}:{line}", text)


COMMANDS, INLINE, PYTHON_CODE = _collect()


@pytest.fixture
def paths_as_written(monkeypatch):
    """Paths are taken as written: the docs' paths are not on this machine, and whether
    they exist is the run's business, not the command line's."""
    monkeypatch.setattr(
        click.Path, "convert", lambda self, value, *_: self.coerce_path_result(value)
    )


def parse_error(arguments: list[str]) -> str | None:
    """What `rainbench ARGUMENTS` would be refused with before it runs (None: nothing):
    click's own parsing, group by group as click runs them, then the leaf command's
    make_context (options, values, choices, types, positional count), then the
    required DATASET that rainbench.cli.options.dataset checks as the command starts."""
    command, context, name = CLI, None, "rainbench"
    try:
        while isinstance(command, click.Group):
            context = _context(command, name, context)
            rest = []
            if arguments:  # a group given nothing prints its help (no_args_is_help)
                with context.scope(cleanup=False):
                    rest = click.Command.parse_args(command, context, list(arguments))
            if not rest:
                return (
                    None
                    if command.invoke_without_command
                    else f"{context.command_path}: no command"
                )
            name, command, arguments = command.resolve_command(context, rest)
        context = command.make_context(name, list(arguments), parent=context)
    except click.exceptions.Exit:  # --help, --version
        return None
    except (click.ClickException, RainbenchError) as error:
        return str(error.format_message() if isinstance(error, click.ClickException) else error)
    dataset = next((param for param in command.params if param.name == "dataset"), None)
    given = [context.params.get(key) for key in ("dataset", "dataset_alias")]
    if dataset is not None and dataset.metavar == "DATASET" and given == [None, None]:
        return "Missing argument 'DATASET'."
    if None not in given:
        return "DATASET given twice (as DATASET and by its old flag)"
    return None


def fragment_error(arguments: list[str]) -> str | None:
    """What is wrong in a command quoted in prose or as a synopsis, where positionals and
    values may be left out or written as `…`: a command that does not exist, an option
    that none of the commands it may be takes, a value of a choice not among them (each
    of `a|b`), a flag given `=value`."""
    candidates = [(CLI, _context(CLI, "rainbench"))]
    words = [word.strip("[]") for word in arguments]
    while words:
        word = words.pop(0)
        if word in ELLIPSIS:
            candidates = [
                below for candidate in candidates for below in _commands_below(*candidate)
            ]
        elif word.startswith("-") and len(word) > 1:
            flag, equals, value = word.partition("=")
            takers = [
                (param, ctx)
                for _, ctx in candidates
                for param in ctx.command.get_params(ctx)
                if flag in param.opts + param.secondary_opts
            ]
            if not takers:
                return f"no such option: {flag}"
            if all(param.is_flag or param.count for param, _ in takers):
                if equals:
                    return f"{flag} takes no value"
                continue
            if not equals and words and not words[0].startswith("-") and words[0] not in ELLIPSIS:
                value = words.pop(0)
            if value and not any(_valid_choice(param, ctx, value) for param, ctx in takers):
                return f"{flag}: {value!r} is not one of its choices"
        elif len(candidates) == 1 and isinstance(candidates[0][0], click.Group):
            group, ctx = candidates[0]
            command = group.get_command(ctx, word)
            if command is None:
                return f"no such command: {ctx.command_path} {word}"
            candidates = [(command, _context(command, word, ctx))]
    return None


def _context(
    command: click.Command, name: str, parent: click.Context | None = None
) -> click.Context:
    """A context for `command` as click makes one, with the settings it declares: a
    command caches its help option from the first context it sees (`-h` comes from
    rainbench's), and the CLI reference renders that option afterwards."""
    return click.Context(command, info_name=name, parent=parent, **command.context_settings)


def _commands_below(command: click.Command, ctx: click.Context):
    """`command` itself when it is no group, else every command below it."""
    if not isinstance(command, click.Group):
        yield command, ctx
        return
    for name in command.list_commands(ctx):
        below = command.get_command(ctx, name)
        yield from _commands_below(below, _context(below, name, ctx))


def _valid_choice(param: click.Parameter, ctx: click.Context, value: str) -> bool:
    if not isinstance(param.type, click.Choice):
        return True
    try:
        for alternative in value.split("|"):
            param.type.convert(alternative, param, ctx)
    except click.BadParameter:
        return False
    return True


def missing_imports(code: str) -> list[str]:
    """The `rainbench…` modules and names `code` imports that do not exist. Read from
    the modules' source, not imported (rainbench.data would import torch); a module
    that makes names on demand (a module __getattr__) is imported and asked."""
    missing = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            missing += [a.name for a in node.names if _ours(a.name) and not _module_file(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _ours(node.module):
            if not _module_file(node.module):
                missing.append(node.module)
                continue
            names = [a.name for a in node.names if a.name != "*"]
            missing += [
                f"{node.module}.{name}" for name in names if not _defines(node.module, name)
            ]
    return missing


def _ours(module: str) -> bool:
    return module == "rainbench" or module.startswith("rainbench.")


def _module_file(module: str) -> Path | None:
    path = SOURCE.joinpath(*module.split("."))
    return next((p for p in (path.with_suffix(".py"), path / "__init__.py") if p.is_file()), None)


def _defines(module: str, name: str) -> bool:
    if _module_file(f"{module}.{name}"):
        return True
    tree = ast.parse(_module_file(module).read_text(encoding="utf-8"))
    names = _bound(tree.body)
    if "__getattr__" in names:
        return hasattr(importlib.import_module(module), name)
    return name in names


def _bound(statements: list[ast.stmt]) -> set[str]:
    """The names statements at a module's top level bind (inside if/try/with too)."""
    names = set()
    for node in statements:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        else:  # if, try (its handlers), with, for: their bodies bind at the top level too
            for field in ("body", "orelse", "finalbody", "handlers"):
                names |= _bound(getattr(node, field, []))
    return names


def test_the_docs_are_read():
    # A change in how the docs are read that finds nothing would pass everything.
    assert len(COMMANDS) > 80 and len(INLINE) > 100 and len(PYTHON_CODE) > 8
    assert {"README.md", "docs/nlcl.md", "docs/cluster.md"} <= {
        s.where.split(":")[0] for s in COMMANDS
    }


def test_every_synopsis_is_still_in_the_docs():
    # An edited synopsis would otherwise be read as a command to run, and pass as one.
    gone = SYNOPSES - {snippet.text for snippet in INLINE}
    assert not gone, f"SYNOPSES lists lines no doc has (edited? update SYNOPSES): {gone}"


@pytest.mark.parametrize("snippet", COMMANDS, ids=lambda snippet: snippet.where)
def test_command_parses(snippet, paths_as_written):
    error = parse_error(_rainbench_arguments(shlex.split(snippet.text)))
    assert error is None, f"{snippet.where}: {snippet.text}: {error}"


@pytest.mark.parametrize("snippet", INLINE, ids=lambda snippet: snippet.where)
def test_inline_command_names_what_exists(snippet):
    error = fragment_error(_rainbench_arguments(snippet.text.split()))
    assert error is None, f"{snippet.where}: {snippet.text}: {error}"


@pytest.mark.parametrize("snippet", PYTHON_CODE, ids=lambda snippet: snippet.where)
def test_python_compiles_and_imports_what_exists(snippet):
    compile(snippet.text, snippet.where, "exec")
    missing = missing_imports(snippet.text)
    assert not missing, f"{snippet.where}: imports what rainbench does not have: {missing}"


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ("rainbench injest raw --out ds", "No such command 'injest'"),
        ("rainbench ingest raw --out ds --layers clean", "No such option '--layers'"),
        ("rainbench ingest raw --out", "'--out' requires an argument"),
        ("rainbench ingest raw --out ds --layer muddy", "'muddy' is not one of"),
        ("rainbench verify ds --json=yes", "'--json' does not take a value"),
        ("rainbench verify ds more", "unexpected extra argument (more)"),
        ("rainbench verify", "Missing argument 'DATASET'"),
        ("rainbench train nlcl ds --dataset ds --out run", "DATASET given twice"),
        ("rainbench train nlcl ds --out runs --steps many", "'many' is not a valid integer"),
        ("rainbench train", "rainbench train: no command"),
        ("rainbench verify s3:///ds", "no bucket named"),
    ],
)
def test_a_broken_command_is_caught(line, said, paths_as_written):
    assert said in parse_error(shlex.split(line)[1:])


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("rainbench injest", "no such command: rainbench injest"),
        ("rainbench tag DS --label", "no such option: --label"),
        ("rainbench leaderboard --format md|docx", "--format: 'md|docx' is not one of its choices"),
        ("rainbench train … --outdir RUN", "no such option: --outdir"),
        ("rainbench verify --json=yes", "--json takes no value"),
    ],
)
def test_a_broken_inline_command_is_caught(text, said):
    assert fragment_error(text.split()[1:]) == said


def test_shell_lines_are_read_as_a_shell_reads_them():
    lines = [
        "$ time rainbench verify ds \\",
        "    --json 2>&1 | tee log  # a comment",
        "rainbench demo: done in 3 s",
        "$ RAINBENCH_WEIGHTS=w python - <<'EOF'",
        "from rainbench.metrics import create_metric",
        "EOF",
    ]
    read = [
        (number, [words for words in _segments(text) if words], here)
        for number, text, here in _shell_lines("console", 10, lines)
    ]
    assert read == [
        (10, [["time", "rainbench", "verify", "ds", "--json"], ["tee", "log"]], []),
        (13, [["RAINBENCH_WEIGHTS=w", "python", "-"]], [lines[4]]),
    ]
    assert _rainbench_arguments(read[0][1][0]) == ["verify", "ds", "--json"]
    assert _python_in_shell(read[1][1][0], read[1][2]) == lines[4]


def test_an_import_of_what_does_not_exist_is_caught():
    code = (
        "from rainbench.data import Filters, Loadr\n"
        "import rainbench.nowhere\n"
        "from rainbench.synth.recipes import RECIPES\n"
    )
    assert missing_imports(code) == ["rainbench.data.Loadr", "rainbench.nowhere"]
