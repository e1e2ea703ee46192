"""Fixtures of the fuzzer's tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from planting import Switch, plant


@pytest.fixture
def planted(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Switch]:
    """``planted("punch")`` plants a bug (see `planting`) for the rest of the test."""
    def make(mutation: str) -> Switch:
        return plant(mutation, monkeypatch)

    return make
