"""The house rules a newcomer relies on, checked on the source: the two layers keep apart (protocol/ imports
nothing above it, the pure core imports no I/O), modules and classes stay small, and the README's Layout
section names every module of the package."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "daemon" / "voiceterm"
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name not in ("__init__.py", "__main__.py"))
MAX_MODULE_LINES = 505  # "about 500": the link's machine keeps its table and its transitions together
MAX_CLASS_LINES = 400
# What the shell talks to; none of it may be imported by the pure layers, not even lazily.
IO_LIBRARIES = {
    "trio",
    "trio_websocket",
    "alsaaudio",
    "gpiozero",
    "httpx",
    "socket",
    "threading",
    "subprocess",
}


def imports(path: Path) -> set[str]:
    """Every module `path` imports, at any depth (lazy imports count)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            if node.module == "voiceterm":
                found.update(f"voiceterm.{alias.name}" for alias in node.names)
    return found


def layer(directory: str) -> list[Path]:
    return [p for p in MODULES if p.parent.name == directory]


@pytest.mark.parametrize("path", layer("protocol"), ids=lambda p: p.name)
def test_protocol_imports_nothing_above_it(path: Path) -> None:
    ours = {m for m in imports(path) if m.startswith("voiceterm")}
    # The package's version, its JSON-at-the-edges helpers and `record` sit at the bottom, beside protocol/.
    allowed = {"voiceterm", "voiceterm.__version__", "voiceterm.safejson", "voiceterm.record"}
    assert {m for m in ours if not m.startswith("voiceterm.protocol") and m not in allowed} == set()
    assert not imports(path) & IO_LIBRARIES


@pytest.mark.parametrize("path", layer("core"), ids=lambda p: p.name)
def test_the_core_is_pure(path: Path) -> None:
    ours = {m for m in imports(path) if m.startswith("voiceterm")}
    assert not {m for m in ours if m.startswith(("voiceterm.io", "voiceterm.app"))}
    assert not {m.split(".")[0] for m in imports(path)} & IO_LIBRARIES


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_and_classes_stay_small(path: Path) -> None:
    text = path.read_text()
    assert text.count("\n") <= MAX_MODULE_LINES, "split it by responsibility"
    assert ast.get_docstring(ast.parse(text)), "a module's docstring states its job"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ClassDef):
            assert node.end_lineno - node.lineno + 1 <= MAX_CLASS_LINES, node.name


def test_the_readme_layout_names_every_module() -> None:
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout") : readme.index("## How it behaves")]
    named = set(re.findall(r"[\w]+\.py", layout))
    missing = [str(p.relative_to(PACKAGE)) for p in MODULES if p.name not in named]
    assert missing == [], "add them to the README's Layout section"
    assert "transition table" in layout and "core/linkmachine.py" in layout
