"""The guide and the README show code that runs against this version of ``bridge``.

Every fenced ``python`` block compiles as written, and every ``bridge`` import
in it resolves to a public name. A block that is part of a function or of a
call is fenced as ``python excerpt``: it is not compiled (it could not be),
only its imports are checked. Any other info string is a language that is not
Python and must be one of :data:`OTHER`, so that no block escapes unseen.

Outside the blocks, the prose names no private ``bridge._`` module, and every
repository path it mentions (``async_app/orders.py``) or links exists.
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PAGES = [*sorted((ROOT / "migration_guide").glob("*.md")), ROOT / "README.md"]

PYTHON = "python"
EXCERPT = "python excerpt"
OTHER = frozenset({"console", "json", "sh", "text", "toml"})

_OPENING = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_IMPORT = re.compile(r"^\s*(import\s|from\s+\S+\s+import\b)")
_PRIVATE_NAME = re.compile(r"\bbridge\._\w+")
_PATH = re.compile(r"`(?P<path>[\w.-]+/(?:[\w.-]+/)*(?:[\w.-]+\.(?:py|toml|jsonl|json|md))?)`")
_LINK = re.compile(r"\]\((?P<target>[^)\s#]+)(?:#[^)]*)?\)")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: str
    line: int  # of the opening fence, 1-based
    info: str
    source: str

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


@dataclass(frozen=True)
class Page:
    """A Markdown file split into its fenced blocks and the prose around them."""

    path: Path
    blocks: tuple[Block, ...]
    prose: tuple[tuple[int, str], ...]  # (line number, text) outside every block

    @property
    def name(self) -> str:
        return self.path.relative_to(ROOT).as_posix()


def read_page(path: Path) -> Page:
    """Split a page as CommonMark does: a fence closes with the same character, at least as long."""
    name = path.relative_to(ROOT).as_posix()
    blocks: list[Block] = []
    prose: list[tuple[int, str]] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    number = 0
    while number < len(lines):
        opening = _OPENING.match(lines[number])
        if opening is None:
            prose.append((number + 1, lines[number]))
            number += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        closing = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        end = next((i for i in range(number + 1, len(lines)) if closing.match(lines[i])), None)
        if end is None:
            raise AssertionError(f"{name}:{number + 1}: the fenced block is never closed")
        body = [_unindent(line, indent) for line in lines[number + 1 : end]]
        info = " ".join(opening["info"].split())
        blocks.append(Block(name, number + 1, info, "\n".join(body) + "\n"))
        number = end + 1
    return Page(path, tuple(blocks), tuple(prose))


def _unindent(line: str, indent: int) -> str:
    # The fence's own indentation is not part of the code (CommonMark).
    return line[min(indent, len(line) - len(line.lstrip(" "))) :]


ALL_PAGES = [read_page(path) for path in PAGES]
PYTHON_BLOCKS = [
    block for page in ALL_PAGES for block in page.blocks if block.info.startswith(PYTHON)
]


def import_nodes(block: Block) -> list[ast.Import | ast.ImportFrom]:
    """The import statements of a block."""
    try:
        tree = ast.parse(block.source, filename=block.where)
    except SyntaxError:  # an excerpt: its imports are found line by line
        tree = ast.parse("\n".join(excerpt_imports(block.source)), filename=block.where)
    return [node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)]


def excerpt_imports(source: str) -> Iterator[str]:
    """Each import statement of *source*, with the lines it continues onto."""
    lines = iter(source.splitlines())
    for line in lines:
        if _IMPORT.match(line):
            statement = line.strip()
            while statement.endswith("\\") or statement.count("(") > statement.count(")"):
                statement += "\n" + next(lines).strip()
            yield statement


def bridge_imports(block: Block) -> Iterator[tuple[str, str | None]]:
    """``(module, name)`` per name imported from bridge; ``None`` for ``import bridge...``."""
    for node in import_nodes(block):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _is_bridge(alias.name):
                    yield alias.name, None
        elif node.level == 0 and node.module is not None and _is_bridge(node.module):
            for alias in node.names:
                yield node.module, alias.name


def _is_bridge(module: str) -> bool:
    return module == "bridge" or module.startswith("bridge.")


def _has(module_name: str, name: str) -> bool:
    module = importlib.import_module(module_name)
    if hasattr(module, name):
        return True
    try:  # `from bridge import pytest_plugin` names a submodule
        importlib.import_module(f"{module_name}.{name}")
    except ModuleNotFoundError:
        return False
    return True


@pytest.mark.parametrize("page", ALL_PAGES, ids=lambda page: page.name)
def test_every_block_says_its_language(page: Page) -> None:
    unknown = [
        f"{block.where}: {block.info or '(none)'}"
        for block in page.blocks
        if block.info not in {PYTHON, EXCERPT, *OTHER}
    ]
    assert not unknown, f"fence these as {PYTHON}, {EXCERPT} or one of {sorted(OTHER)}: {unknown}"


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=lambda block: block.where)
def test_python_block_compiles(block: Block) -> None:
    try:
        compile(block.source, block.where, "exec", dont_inherit=True)
    except SyntaxError as exc:
        if block.info == EXCERPT:
            return
        line = block.line + (exc.lineno or 0)
        pytest.fail(
            f"{block.page}:{line}: {exc.msg}: make the block valid Python, or fence it as "
            f"```{EXCERPT} if it is part of a function or a call",
            pytrace=False,
        )
    if block.info == EXCERPT:
        pytest.fail(f"{block.where} compiles: fence it as ```{PYTHON}", pytrace=False)


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=lambda block: block.where)
def test_bridge_imports_resolve_to_public_names(block: Block) -> None:
    for module, name in bridge_imports(block):
        private = [part for part in module.split(".") if part.startswith("_")]
        assert not private, f"{block.where} imports the private module {module}: import from bridge"
        if name is None:
            importlib.import_module(module)
            continue
        assert name != "*" and not name.startswith("_"), f"{block.where}: import {name} by name"
        assert _has(module, name), f"{block.where}: {module} has no public name {name}"


@pytest.mark.parametrize("page", ALL_PAGES, ids=lambda page: page.name)
def test_prose_names_no_private_module(page: Page) -> None:
    found = [
        f"{page.name}:{number}: {match.group()}"
        for number, text in page.prose
        for match in _PRIVATE_NAME.finditer(text)
    ]
    assert not found, f"name the public bridge.X instead: {found}"


@pytest.mark.parametrize("page", ALL_PAGES, ids=lambda page: page.name)
def test_paths_in_the_prose_exist(page: Page) -> None:
    missing = [
        f"{page.name}:{number}: {match['path']}"
        for number, text in page.prose
        for match in _PATH.finditer(text)
        if not (ROOT / match["path"]).exists()
    ]
    missing += [
        f"{page.name}:{number}: {match['target']}"
        for number, text in page.prose
        for match in _LINK.finditer(text)
        if "://" not in match["target"] and not (page.path.parent / match["target"]).exists()
    ]
    assert not missing, f"these paths name no file of the repository: {missing}"
