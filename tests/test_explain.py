"""Explanations of failed steps: one scenario per failure cause, the model's sentence naming the
cause and its numbers, the same results on the live kernel, and ``hugetlbsim explain``."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from hugetlbsim import cli
from hugetlbsim.backends.base import BackendUnavailable
from hugetlbsim.backends.kernel import KernelBackend, machine_unavailable
from hugetlbsim.backends.model import ModelBackend
from hugetlbsim.format.loader import load_text
from hugetlbsim.format.scenario import Scenario
from hugetlbsim.runner import run
from hugetlbsim.trace import Trace, compare
from hugetlbsim.views.explain import chain, explanation, initial_state

LOCK_WAIT = 600.0
"""Seconds a kernel test waits for another hugetlbsim session on this machine to finish."""


def run_on_kernel(scenario: Scenario) -> Trace:
    """The scenario on the live kernel, or a skip saying why it cannot run."""
    reason = machine_unavailable()
    if reason is not None:
        pytest.skip(reason)
    try:
        return run(scenario, KernelBackend(lock_timeout=LOCK_WAIT))
    except BackendUnavailable as exc:
        pytest.skip(f"kernel backend unavailable: {exc}")


def scenario(text: str) -> Scenario:
    return load_text("format: 1\n" + textwrap.dedent(text))


CASES: dict[str, tuple[str, int, str, tuple[str, ...]]] = {
    # name: (scenario, failing step, its result, fragments the explanation must hold)
    "pool-mmap": ("""
        pool: {pages: 4, overcommit: 1}
        steps:
          - mmap: {proc: init, map: m, anon: true, length: 6}
        """, 0, "ENOMEM", ("6 pages must be reserved", "Free 4 - Rsvd 0 leaves 4 unreserved",
                           "overcommit allows 1 more surplus")),
    "pool-fault": ("""
        pool: {pages: 2, overcommit: 1}
        steps:
          - mmap: {proc: init, map: r, anon: true, length: 2}
          - mmap: {proc: init, map: n, anon: true, length: 2, noreserve: true}
          - touch: {proc: init, map: n, page: 0}
          - touch: {proc: init, map: n, page: 1}
        """, 3, "SIGBUS", ("has no reservation", "Free 2 - Rsvd 2 = 0", "(1 surplus of 1)")),
    "subpool-size-mmap": ("""
        pool: {pages: 8}
        steps:
          - mount: {name: hp, size: 2}
          - create: {file: hp/f, size: 4}
          - mmap: {proc: init, map: m, file: hp/f, length: 3}
        """, 2, "ENOMEM", ("size= limit is 2 pages with 0 used", "3 more cannot be reserved")),
    "subpool-size-fault": ("""
        pool: {pages: 8}
        steps:
          - mount: {name: hp, size: 2}
          - create: {file: hp/f, size: 4}
          - mmap: {proc: init, map: m, file: hp/f, length: 4, noreserve: true}
          - touch: {proc: init, map: m, page: 0, count: 3}
        """, 3, "SIGBUS", ("size= limit of 2 pages is used up", "2 reserved or allocated")),
    "subpool-min-size": ("""
        pool: {pages: 2}
        steps:
          - mount: {name: hp, min_size: 4}
        """, 0, "ENOMEM", ("min_size=4 must be reserved", "only 2 pages are free")),
    "subpool-min-size-overcommit": ("""
        pool: {pages: 2, overcommit: 1}
        steps:
          - mount: {name: hp, min_size: 4}
        """, 0, "ENOMEM", ("min_size=4 must be reserved", "overcommit allows 1 more surplus")),
    "cgroup-fault-limit": ("""
        pool: {pages: 4}
        steps:
          - cgroup: {name: a, limit: 1}
          - spawn: {proc: p, cgroup: a}
          - mmap: {proc: p, map: m, anon: true, length: 2}
          - touch: {proc: p, map: m, page: 0, count: 2}
        """, 3, "SIGBUS", ("cgroup 'a' fault limit is 1 pages with 1 in use",
                           "a charge of 1 was refused")),
    "cgroup-rsvd-limit": ("""
        pool: {pages: 4}
        steps:
          - cgroup: {name: a, rsvd_limit: 1}
          - spawn: {proc: p, cgroup: a}
          - mmap: {proc: p, map: m, anon: true, length: 2}
        """, 2, "ENOMEM", ("cgroup 'a' reservation limit is 1 pages with 0 in use",
                           "a charge of 2 was refused")),
    "cgroup-parent-rsvd-limit": ("""
        pool: {pages: 4}
        steps:
          - cgroup: {name: a, rsvd_limit: 1}
          - cgroup: {name: a/b}
          - spawn: {proc: p, cgroup: a/b}
          - mmap: {proc: p, map: m, anon: true, length: 2}
        """, 3, "ENOMEM", ("cgroup 'a' reservation limit is 1 pages", "a charge of 2")),
    "fork-child-no-reservation": ("""
        pool: {pages: 2}
        steps:
          - spawn: {proc: p}
          - mmap: {proc: p, map: m, anon: true, shared: false, length: 2}
          - fork: {proc: p, child: c}
          - touch: {proc: c, map: m, page: 0}
        """, 3, "SIGBUS", ("fork", "Free 2 - Rsvd 2 = 0", "(0 surplus of 0)")),
    "fork-child-not-noreserve": ("""
        pool: {pages: 2}
        steps:
          - spawn: {proc: p}
          - mmap: {proc: p, map: m, anon: true, shared: false, length: 2}
          - fork: {proc: p, child: c}
          - touch: {proc: c, map: m, page: 0}
        """, 3, "SIGBUS", ("the child of a fork has no reservation",)),
    "noreserve-private": ("""
        pool: {pages: 1}
        steps:
          - mmap: {proc: init, map: r, anon: true, length: 1}
          - mmap: {proc: init, map: n, anon: true, shared: false, length: 1, noreserve: true}
          - touch: {proc: init, map: n, page: 0}
        """, 2, "SIGBUS", ("MAP_NORESERVE", "Free 1 - Rsvd 1 = 0")),
    "owner-stole-page": ("""
        pool: {pages: 2}
        steps:
          - spawn: {proc: p}
          - mmap: {proc: p, map: m, anon: true, shared: false, length: 2}
          - touch: {proc: p, map: m, page: 0, count: 2}
          - fork: {proc: p, child: c}
          - touch: {proc: p, map: m, page: 0}
          - touch: {proc: c, map: m, page: 0, write: false}
        """, 5, "SIGBUS", ("owner of this private mapping took back a page",
                           "every fault in this mapping SIGBUSes")),
    "beyond-file-size": ("""
        pool: {pages: 4}
        steps:
          - mount: {name: hp}
          - create: {file: hp/f, size: 2}
          - mmap: {proc: init, map: m, file: hp/f, length: 4, writable: false}
          - touch: {proc: init, map: m, page: 3, write: false}
        """, 3, "SIGBUS", ("page index 3 is beyond the file size of 2 pages",)),
    "limit-ebusy": ("""
        pool: {pages: 4}
        steps:
          - cgroup: {name: a}
          - spawn: {proc: p, cgroup: a}
          - mmap: {proc: p, map: m, anon: true, length: 2}
          - touch: {proc: p, map: m, page: 0, count: 2}
          - cgroup: {name: a, limit: 1}
        """, 4, "EBUSY", ("cannot set a's limit to 1: 2 pages are charged",)),
    "rsvd-limit-ebusy": ("""
        pool: {pages: 4}
        steps:
          - cgroup: {name: a}
          - spawn: {proc: p, cgroup: a}
          - mmap: {proc: p, map: m, anon: true, length: 2}
          - cgroup: {name: a, rsvd_limit: 1}
        """, 3, "EBUSY", ("cannot set a's rsvd_limit to 1: 2 pages are charged",)),
    "rmdir-ebusy-task": ("""
        steps:
          - cgroup: {name: a}
          - spawn: {proc: p, cgroup: a}
          - rmdir: {cgroup: a}
        """, 2, "EBUSY", ("cgroup a still has 1 tasks and 0 child cgroups",)),
    "rmdir-ebusy-child": ("""
        steps:
          - cgroup: {name: a}
          - cgroup: {name: a/b}
          - rmdir: {cgroup: a}
        """, 2, "EBUSY", ("cgroup a still has 0 tasks and 1 child cgroups (a/b)",)),
    "umount-ebusy-open": ("""
        steps:
          - mount: {name: hp}
          - create: {file: hp/f}
          - umount: {name: hp}
        """, 2, "EBUSY", ("file hp/f is still in use: 1 open handles, 0 mappings",)),
    "umount-ebusy-mapped": ("""
        pool: {pages: 1}
        steps:
          - mount: {name: hp}
          - create: {file: hp/f, size: 1}
          - mmap: {proc: init, map: m, file: hp/f, length: 1}
          - close: {file: hp/f}
          - umount: {name: hp}
        """, 4, "EBUSY", ("file hp/f is still in use: 0 open handles, 1 mappings",)),
    "einval-min-size": ("""
        steps:
          - mount: {name: hp, size: 1, min_size: 2}
        """, 0, "EINVAL", ("min_size (2) is larger than size (1)",)),
    "einval-mmap-length": ("""
        steps:
          - mmap: {proc: init, map: m, anon: true, length: 0}
        """, 0, "EINVAL", ("at least one page",)),
    "einval-shmget-size": ("""
        steps:
          - shmget: {shm: s, size: 0}
        """, 0, "EINVAL", ("at least one page",)),
    "einval-fallocate-length": ("""
        steps:
          - mount: {name: hp}
          - create: {file: hp/f}
          - fallocate: {file: hp/f, offset: 0, length: 0}
        """, 2, "EINVAL", ("fallocate needs a length of at least one page",)),
    "einval-umount-absent": ("""
        steps:
          - mount: {name: hp, size: 1, min_size: 2}
          - umount: {name: hp}
        """, 1, "EINVAL", ("mount hp does not exist",)),
    "einval-gigantic-overcommit": ("""
        pagesize: 1G
        steps:
          - pool: {overcommit: 1}
        """, 0, "EINVAL", ("gigantic (1G) pages cannot be overcommitted",)),
}

KERNEL_ONLY_RESULT = {"einval-gigantic-overcommit": "the kernel backend runs 2M pages only"}


@pytest.mark.parametrize("name", list(CASES))
def test_model_explains_cause_with_numbers(name: str) -> None:
    text, index, result, fragments = CASES[name]
    trace = run(scenario(text), ModelBackend())
    step = trace.steps[index]
    assert step.result == result
    assert step.explain is not None
    for fragment in fragments:
        assert fragment in step.explain


@pytest.mark.parametrize("name", list(CASES))
def test_explanation_in_run_table_and_json(name: str) -> None:
    """Every failed step's explanation is in run's notes column and in the JSON trace."""
    text = CASES[name][0]
    trace = run(scenario(text), ModelBackend())
    notes = [str(cell) for cell in cli.trace_table(trace).columns[-1].cells]
    for step, note in zip(trace.steps, notes, strict=True):
        if step.result != "ok":
            assert step.explain and step.explain in note
            assert step.to_json()["explain"] == step.explain
        else:
            assert "explain" not in step.to_json()


@pytest.mark.kernel
@pytest.mark.parametrize("name", list(CASES))
def test_kernel_gives_the_same_results(name: str) -> None:
    """The same scenario on the live kernel: the same result at every step, same counters."""
    text, index, result, _ = CASES[name]
    if name in KERNEL_ONLY_RESULT:
        pytest.skip(KERNEL_ONLY_RESULT[name])
    model = run(scenario(text), ModelBackend())
    kernel = run_on_kernel(scenario(text))
    assert kernel.steps[index].result == result
    assert [s.result for s in kernel.steps] == [s.result for s in model.steps]
    assert compare(model, kernel) == []


def test_model_state_adds_cache_subpool_overcommit() -> None:
    trace = run(scenario("""
        pool: {pages: 4, overcommit: 2}
        steps:
          - mount: {name: hp, size: 3, min_size: 1}
          - create: {file: hp/f, size: 3}
          - mmap: {proc: init, map: m, file: hp/f, length: 3}
          - touch: {proc: init, map: m, page: 1}
          - mount: {name: plain}
        """), ModelBackend())
    state = trace.steps[-1].state
    assert state["overcommit"] == 2
    assert state["files"]["hp/f"]["cached"] == [[1, 2]]
    assert state["mounts"]["hp"]["subpool"] == {"size": 3, "min_size": 1, "used": 3,
                                                "min_reserve": 0}
    assert state["mounts"]["plain"]["subpool"] is None


def test_chain_rows_before_and_after() -> None:
    text, index, _, _ = CASES["cgroup-fault-limit"]
    backend = ModelBackend()
    trace = run(scenario(text), backend)
    before, after = dict(chain(trace.steps[index - 1].state)), dict(chain(trace.steps[index].state))
    assert before[("cgroup a", "failcnt")] == "0" and after[("cgroup a", "failcnt")] == "1"
    assert after[("cgroup a", "limit")] == "1" and after[("cgroup root", "limit")] == "max"
    assert after[("pool", "available (Free - Rsvd)")] == "2"
    start = dict(chain(initial_state(backend, scenario(text))))
    assert start[("pool", "Total")] == "4" and ("cgroup a", "usage") not in start
    rendered = cli._out()
    with rendered.capture() as captured:
        rendered.print(explanation(trace, index, trace.steps[index - 1].state))
    assert "fault limit is 1 pages with 1 in use" in captured.get()


def test_explain_command(tmp_path: Path) -> None:
    text, index, _, _ = CASES["subpool-size-mmap"]
    path = tmp_path / "s.yaml"
    path.write_text("format: 1\n" + textwrap.dedent(text))
    result = CliRunner().invoke(cli.main, ["explain", str(path), "--step", str(index)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "step 2 (line 7): mmap proc=init map=m file=hp/f length=3" in out
    assert "result: ENOMEM" in out
    assert "why: the mount's size= limit is 2 pages with 0 used" in out
    assert re.search(r"mount hp\s+│ size\s+│\s+2 │\s+2 │", out)
    assert re.search(r"│ rsvd_max_usage\s+│\s+0 │\s+3 │", out)
    first = CliRunner().invoke(cli.main, ["explain", str(path), "--step", "0"])
    assert first.exit_code == 0 and "result: ok" in first.stdout
    bad = CliRunner().invoke(cli.main, ["explain", str(path), "--step", "3"])
    assert bad.exit_code == 2 and "the scenario has 3 steps (0 to 2)" in bad.output
