"""The house's rooms import downwards only (docs/design.md, "Rooms").

Each room has a rank; a module may import from its own room or a lower one, never from a room
above it: the model knows nothing of scenarios, the format nothing of backends, and so on.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "hugetlbsim"

RANKS = {"model": 0, "format": 1, "trace": 2, "record": 3, "backends": 4, "runner": 5,
         "views": 6, "workloads": 7, "fuzz": 8, "cli": 9}
"""Room → rank, bottom up; a room is a subpackage or a top-level module."""


def room(module: str) -> str | None:
    """``hugetlbsim.model.system`` → ``model``; None for the package itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def imports(path: Path) -> list[tuple[int, str]]:
    """Every ``hugetlbsim.*`` module imported by the file, anywhere in it, with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            if node.module == "hugetlbsim":
                names = names[1:]
            found.extend((node.lineno, n) for n in names[:1] if n.startswith("hugetlbsim."))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names
                         if a.name.startswith("hugetlbsim."))
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


def test_every_room_has_a_rank() -> None:
    rooms = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in MODULES}
    assert rooms - {"__init__"} == set(RANKS)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_upward(path: Path) -> None:
    here = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    if here == "__init__":
        return
    upward = [f"line {line}: {name}" for line, name in imports(path)
              if (r := room(name)) is not None and RANKS[r] > RANKS[here]]
    assert not upward, f"{path.relative_to(PACKAGE)} imports from a room above it: {upward}"


def test_the_check_catches_an_upward_import(tmp_path: Path) -> None:
    """The checker itself: a model module importing the runner is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("from hugetlbsim.runner import run\nimport hugetlbsim.cli\n")
    assert [room(n) for _, n in imports(bad)] == ["runner", "cli"]
