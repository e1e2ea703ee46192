"""The model backend: a `System` behind the Backend/Session interface, through the runner."""

from __future__ import annotations

import pytest

from hugetlbsim.backends.model import ModelBackend
from hugetlbsim.format.loader import load_text
from hugetlbsim.model.system import System
from hugetlbsim.runner import run
from hugetlbsim.trace import compare

P01A = """\
format: 1
name: p01a
pool: {pages: 8}
steps:
  - mount: {name: hp}
  - create: {file: hp/f, size: 4}
  - spawn: {proc: p1}
  - mmap: {proc: p1, map: m, file: hp/f, length: 4}
    expect: {result: ok, total: 8, free: 8, rsvd: 4, surp: 0}
  - touch: {proc: p1, map: m, page: 0}
    expect: {free: 7, rsvd: 3}
  - touch: {proc: p1, map: m, page: 1, write: false}
    expect: {free: 6, rsvd: 2}
  - madvise: {proc: p1, map: m, page: 0, advice: dontneed}
    expect: {free: 6, rsvd: 2}
  - munmap: {proc: p1, map: m}
    expect: {free: 6, rsvd: 2, file: {hp/f: {blocks: 2, size: 4}}}
  - close: {file: hp/f}
  - truncate: {file: hp/f, size: 1}
    expect: {result: ok, free: 7, rsvd: 0, file: {hp/f: {blocks: 1, size: 1}}}
  - mmap: {proc: p1, map: big, anon: true, length: 9}
    expect: {result: ENOMEM, rsvd: 0}
"""


def test_names_and_version() -> None:
    backend = ModelBackend()
    assert (backend.name, backend.version(), backend.policy) == ("model", "6.18", "6.18")


def test_session_starts_as_the_scenario_says() -> None:
    scenario = load_text("format: 1\npagesize: 1G\npool: {pages: 3}\nsteps: []\n")
    session = ModelBackend("v7").open(scenario)
    assert (session.system.pagesize, session.system.policy) == ("1G", "v7")
    state = session.state()
    assert (state["total"], state["free"], state["nr_hugepages"]) == (3, 3, 3)
    assert list(state["cgroups"]) == ["root"]


def test_measured_sequence_runs_clean() -> None:
    trace = run(load_text(P01A), ModelBackend())
    assert trace.failures == []
    assert trace.steps[0].state == {
        "total": 8, "free": 8, "rsvd": 0, "surp": 0, "nr_hugepages": 8, "overcommit": 0,
        "cgroups": {"root": {"usage": 0, "rsvd": 0, "max_usage": 0, "rsvd_max_usage": 0,
                             "failcnt": 0, "rsvd_failcnt": 0, "limit": None,
                             "rsvd_limit": None}},
        "mounts": {"hp": {"free": None, "subpool": None}}, "files": {}}
    assert trace.steps[-1].explain, "a refused mmap is explained"
    assert "regions" in trace.steps[3].state["files"]["hp/f"]


def test_regions_are_not_compared() -> None:
    model = run(load_text(P01A), ModelBackend())
    other = run(load_text(P01A), ModelBackend())
    for step in other.steps:  # a state's parts are shared between steps: replace, not modify
        step.state["files"] = {name: {k: v for k, v in file.items() if k != "regions"}
                               for name, file in step.state["files"].items()}
    assert compare(model, other) == []


def test_invariants_checked_after_every_step(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def check(system: System) -> None:
        calls.append(system.hstate.resv_huge_pages)
        if len(calls) == 4:
            raise AssertionError("broken")

    monkeypatch.setattr(System, "check_invariants", check)
    with pytest.raises(AssertionError, match="broken"):
        run(load_text(P01A), ModelBackend())
    assert calls == [0, 0, 0, 4]


def test_the_first_steps_are_recounted_one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the state's size, each of the first `DENSE_STEPS` operations is recounted;
    after them, here, only the last."""
    from hugetlbsim.model import checking

    monkeypatch.setattr(checking, "WORK_PER_STEP", 1e-9)
    steps = ["  - spawn: {proc: p}", *["  - touch: {proc: p, map: m, page: 0}"] * 79]
    steps[1] = "  - mmap: {proc: p, map: m, anon: true, length: 1}"
    calls: list[int] = []
    monkeypatch.setattr(System, "check_invariants", lambda system: calls.append(1))
    run(load_text("format: 1\npool: {pages: 1}\nsteps:\n" + "\n".join(steps)), ModelBackend())
    assert len(calls) == checking.DENSE_STEPS + 1


def test_a_late_recount_names_the_step_that_broke(monkeypatch: pytest.MonkeyPatch) -> None:
    """With recounts only at the end, a failure is replayed back to the step that broke it,
    and the fuzzer's trace ends just before that step."""
    from hugetlbsim.fuzz.campaign import execute
    from hugetlbsim.model import checking

    monkeypatch.setattr(checking, "DENSE_STEPS", 0)
    monkeypatch.setattr(checking, "WORK_PER_STEP", 1e-9)  # one recount, after the last step
    calls: list[int] = []

    def check(system: System) -> None:
        calls.append(len(system.procs))
        if "p1" in system.procs:
            raise AssertionError("p1 broke it")

    monkeypatch.setattr(System, "check_invariants", check)
    with pytest.raises(checking.InvariantBroken, match=r"step 2 \(spawn\): p1 broke it") as err:
        run(load_text(P01A), ModelBackend())
    assert err.value.step == 2
    # After the first step, after the last, then the replay's from the last good one on.
    assert calls == [1, 2, 1, 2]
    outcome = execute(load_text(P01A), ModelBackend())
    assert len(outcome.trace.steps) == 2 and outcome.error is not None
    assert "step 2 (spawn)" in outcome.error


def test_a_crash_after_unchecked_steps_is_traced_to_the_broken_invariant(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from hugetlbsim.model import checking

    monkeypatch.setattr(checking, "DENSE_STEPS", 0)
    monkeypatch.setattr(checking, "WORK_PER_STEP", 1e-9)
    monkeypatch.setattr(System, "check_invariants", lambda system: None if (
        "p1" not in system.procs) else (_ for _ in ()).throw(AssertionError("p1 broke it")))
    def crash(self: System, file: str, size: int, proc: str = "init") -> None:
        raise RuntimeError("crashed")

    monkeypatch.setattr(System, "truncate", crash)
    with pytest.raises(checking.InvariantBroken, match=r"step 2 \(spawn\)"):
        run(load_text(P01A), ModelBackend())
    monkeypatch.setattr(System, "check_invariants", lambda system: None)
    with pytest.raises(RuntimeError, match="crashed"):
        run(load_text(P01A), ModelBackend())
