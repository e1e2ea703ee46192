"""docs/api.md's examples run, in order, in one namespace; and `__all__` is importable."""

from __future__ import annotations

import re
from pathlib import Path

import hugetlbsim

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def test_the_api_page_examples_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) >= 5
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)


def test_every_public_name_resolves() -> None:
    for name in hugetlbsim.__all__:
        assert getattr(hugetlbsim, name) is not None, name
