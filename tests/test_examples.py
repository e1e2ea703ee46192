"""The scenario files in ``examples/`` and the fuzzer's shrunk divergences kept in
``tests/regressions/``: their expectations were recorded from the live kernel (``hugetlbsim
record``), so every one must pass on the model, and, where the machine allows it, still match
the kernel it was recorded from.

An example that fails on the model documents a model bug: it stays here (and fails) until the
model is fixed.  The kernel half needs root, hugetlbfs, the hugetlb cgroup controller and an
idle huge page pool; it waits for other hugetlbsim kernel sessions (machine-wide lock) and is
skipped, with the reason, when the machine cannot run it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hugetlbsim.backends.base import BackendUnavailable
from hugetlbsim.backends.kernel import machine_unavailable
from hugetlbsim.backends.model import ModelBackend
from hugetlbsim.format.loader import load
from hugetlbsim.format.scenario import OPS, Scenario
from hugetlbsim.runner import run
from hugetlbsim.trace import Trace

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.yaml"))
REGRESSIONS = sorted((Path(__file__).resolve().parent / "regressions").glob("*.yaml"))
RECORDED = EXAMPLES + REGRESSIONS
ON_HOST = [p for p in RECORDED if not load(p).memory_accounting]
"""What the host's kernel backend can run: memory accounting needs a guest (its scenarios are
replayed on 6.12 by ``tests/backends/test_memcg.py``)."""
LOCK_WAIT = 300.0
"""Seconds a kernel example waits for another hugetlbsim kernel session to finish."""


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def _failures(trace: Trace, scenario: Scenario) -> str:
    """The failed expectations, one per line, as ``FILE:LINE: step N: key expected X, got Y``."""
    return "\n".join(f"{scenario.path}:{f.line}: {f}" for f in trace.failures)


# ---- the set of examples --------------------------------------------------------------------


def test_enough_examples() -> None:
    assert len(EXAMPLES) >= 30, f"only {len(EXAMPLES)} examples in {EXAMPLES_DIR}"
    assert (EXAMPLES_DIR / "shared-file-basics.yaml") in EXAMPLES  # the README's showcase


def test_every_operation_is_shown() -> None:
    used = {step.op for path in EXAMPLES for step in load(path).steps}
    assert sorted(set(OPS) - used) == []


@pytest.mark.parametrize("path", RECORDED, ids=_ids(RECORDED))
def test_example_is_documented_and_recorded(path: Path) -> None:
    """A comment on top says what it shows, ``name`` is the file's stem, and every step has
    the expectations ``record`` wrote (at least the result and the pool counters)."""
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# "), "start the file with a comment saying what it shows"
    scenario = load(path)
    assert scenario.name == path.stem
    assert scenario.pool_pages + scenario.pool_overcommit <= 16
    for step in scenario.steps:
        assert step.expect is not None, f"line {step.line}: no expect block (run record)"
        missing = {"result", "total", "free", "rsvd", "surp", "nr_hugepages"} - set(step.expect)
        assert not missing, f"line {step.line}: expect lacks {sorted(missing)} (run record)"


# ---- the model --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", RECORDED, ids=_ids(RECORDED))
def test_example_on_model(path: Path) -> None:
    scenario = load(path)
    trace = run(scenario, ModelBackend())
    assert len(trace.steps) == len(scenario.steps)
    assert not trace.failures, "the model differs from the recorded kernel values:\n" + (
        _failures(trace, scenario))


# ---- the live kernel ----------------------------------------------------------------------------


KERNEL_REASON = machine_unavailable()


@pytest.mark.kernel
@pytest.mark.skipif(KERNEL_REASON is not None, reason=str(KERNEL_REASON))
@pytest.mark.parametrize("path", ON_HOST, ids=_ids(ON_HOST))
def test_example_on_kernel(path: Path) -> None:
    from hugetlbsim.backends.kernel import KernelBackend

    scenario = load(path)
    try:
        trace = run(scenario, KernelBackend(lock_timeout=LOCK_WAIT))
    except BackendUnavailable as exc:  # pool not idle, leftovers, lock held too long...
        pytest.skip(f"kernel backend unavailable: {exc}")
    assert len(trace.steps) == len(scenario.steps)
    assert not trace.failures, "the kernel no longer shows the recorded values:\n" + (
        _failures(trace, scenario))
