"""The documents stand alone and say what the code does.

(a) every relative link in README.md and docs/*.md leads to a file of the repository, and no
document points outside it (``../shared``); (b) the operation table and the expectation keys of
docs/scenario-format.md equal the loader's; (c) when the shared specification is present
beside the repository, docs/scenario-format.md has exactly its tables.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
FORMAT_PAGE = ROOT / "docs" / "scenario-format.md"
SHARED_FORMAT = ROOT.parent / "shared" / "spec" / "scenario-format.md"

# The scenario format's constants: the new home first, the old flat layout as a fallback.
_FORMAT_MODULES = ("hugetlbsim.format.scenario", "hugetlbsim.format.loader", "hugetlbsim.format",
                   "hugetlbsim.scenario", "hugetlbsim.loader")

_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
_TICKED = re.compile(r"`([^`]+)`")


def _format_modules() -> list[ModuleType]:
    modules = []
    for name in _FORMAT_MODULES:
        try:
            modules.append(importlib.import_module(name))
        except ImportError:
            continue
    assert modules, f"none of {', '.join(_FORMAT_MODULES)} can be imported"
    return modules


def _constant(name: str) -> Any:
    """The first definition of ``name`` among the format modules."""
    for module in _format_modules():
        if hasattr(module, name):
            return getattr(module, name)
    raise AssertionError(f"no format module defines {name}")


def _links(path: Path) -> list[str]:
    """The targets of the markdown links and images of a document, outside code blocks."""
    return _LINK.findall(_FENCE.sub("", path.read_text(encoding="utf-8")))


def _cells(line: str) -> list[str]:
    """The cells of a markdown table row (``\\|`` is a literal bar inside a cell)."""
    inner = line.strip().removeprefix("|").removesuffix("|")
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", inner)]


def _table(text: str, header: tuple[str, ...]) -> list[list[str]]:
    """The body rows of the table whose header row is ``header``."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|") and tuple(_cells(line)) == header:
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                rows.append(_cells(row))
            return rows
    raise AssertionError(f"no table with header {' | '.join(header)}")


def _tables(text: str) -> list[str]:
    """Every table row of a document, in order, outside code blocks."""
    return [line for line in _FENCE.sub("", text).splitlines() if line.startswith("|")]


def _documented_ops() -> dict[str, list[str]]:
    """Operation → argument names, from the ``| op | arguments | kernel action |`` table.

    Argument names are the backticked words of the arguments cell, outside parentheses (which
    hold defaults and allowed values), with the optional mark ``?`` and values (``anon: true``)
    removed.
    """
    ops = {}
    for row in _table(FORMAT_PAGE.read_text(encoding="utf-8"), ("op", "arguments",
                                                                 "kernel action")):
        op = row[0].strip("`")
        arguments = re.sub(r"\([^)]*\)", "", row[1])
        ops[op] = [word.partition(":")[0].strip().rstrip("?") for word in
                   _TICKED.findall(arguments)]
    return ops


def _documented_keys() -> tuple[list[str], dict[str, list[str]]]:
    """Top-level expectation keys, and each section's keys, from the ``| key | meaning |``
    table: a section is written ``section: {NAME: {a: N, b: N}}``, or ``{NAME: {...}}`` with
    its keys backticked in the meaning."""
    keys: list[str] = []
    sections: dict[str, list[str]] = {}
    for key_cell, meaning in _table(FORMAT_PAGE.read_text(encoding="utf-8"), ("key", "meaning")):
        for word in _TICKED.findall(key_cell):
            key, _sep, rest = word.partition(":")
            keys.append(key.strip())
            if not rest:
                continue
            inner = re.fullmatch(r"\s*\{\s*\w+:\s*\{(.*)\}\s*\}\s*", rest)
            assert inner, f"cannot read the section keys of {word!r}"
            if inner.group(1).strip() == "...":
                sections[key.strip()] = _TICKED.findall(meaning)
            else:
                sections[key.strip()] = [part.partition(":")[0].strip()
                                         for part in inner.group(1).split(",")]
    return keys, sections


# -- (a) links ------------------------------------------------------------------------------

@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_lead_to_files_in_the_repository(doc: Path) -> None:
    broken = []
    for target in _links(doc):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL (https:, mailto:) or an anchor on the same page
        path = (doc.parent / target.partition("#")[0]).resolve()
        if not path.is_relative_to(ROOT) or not path.exists():
            broken.append(target)
    assert not broken, f"{doc.relative_to(ROOT)} links to {broken}, not files of the repository"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_document_points_outside_the_repository(doc: Path) -> None:
    assert "../shared" not in doc.read_text(encoding="utf-8")


def test_the_user_documents_exist() -> None:
    for name in ("scenario-format.md", "semantics.md", "cli.md", "tutorial.md", "design.md"):
        assert (ROOT / "docs" / name).is_file(), f"docs/{name} is missing"


# -- (b) the format page against the loader -------------------------------------------------

def test_operation_table_equals_the_loaders_operations() -> None:
    ops = _constant("OPS")
    documented = _documented_ops()
    assert list(documented) == list(ops), "operations (in order)"
    for op, args in ops.items():
        assert sorted(documented[op]) == sorted(a.name for a in args), f"arguments of {op}"


def test_expectation_table_equals_the_loaders_keys() -> None:
    keys, sections = _documented_keys()
    assert keys == list(_constant("EXPECT_KEYS"))
    assert set(_constant("POOL_KEYS")) <= set(keys)
    assert sections == {k: list(v) for k, v in _constant("SECTION_KEYS").items()}
    assert sections["cgroup"] == list(_constant("CGROUP_KEYS"))


# -- (c) the format page against the shared specification -----------------------------------

@pytest.mark.skipif(not SHARED_FORMAT.is_file(),
                    reason=f"the shared specification ({SHARED_FORMAT}) is not beside this clone")
def test_format_page_has_the_shared_specifications_tables() -> None:
    ours = _tables(FORMAT_PAGE.read_text(encoding="utf-8"))
    source = _tables(SHARED_FORMAT.read_text(encoding="utf-8"))
    assert ours == source, "docs/scenario-format.md's tables differ from the shared spec's"
