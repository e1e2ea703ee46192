"""The kernel backend on cgroup v2 (``cgroups: v2``): a private subtree of the machine's cgroup2
hierarchy, measured counters, the kernel's EBUSY rules, teardown after a kill, and v1/v2 runs
one after the other (the hugetlb controller moves between hierarchies).

These tests need root, an idle pool, a cgroup2 mount and the hugetlb controller; the conftest
checks that each leaves the cgroup2 hierarchy exactly as it found it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest

from hugetlbsim.backends.base import BackendUnavailable
from hugetlbsim.backends.kernel import LOCK_FILE, KernelBackend, acquire_lock, machine_unavailable
from hugetlbsim.backends.kernel_cgroup import cgroup2_mount, hugetlb_hierarchy
from hugetlbsim.backends.kernel_sys import meminfo_hugepages, mount, umount
from hugetlbsim.backends.model import ModelBackend
from hugetlbsim.format.loader import load_text
from hugetlbsim.runner import run
from hugetlbsim.trace import compare


def _unavailable() -> str | None:
    reason = machine_unavailable()
    if reason is not None:
        return reason
    if cgroup2_mount() is None:
        return "no cgroup2 hierarchy is mounted"
    fd = acquire_lock(os.path.join("/tmp", LOCK_FILE), 300.0)
    try:
        mi = meminfo_hugepages()
        if any(mi[k] for k in ("total", "free", "rsvd", "surp")):
            return "the huge page pool is not idle"
    finally:
        os.close(fd)
    return None


REASON = _unavailable()
pytestmark = [pytest.mark.kernel, pytest.mark.skipif(REASON is not None, reason=str(REASON))]


def _both(text: str) -> None:
    """Run a v2 scenario on the kernel and on the model: no difference."""
    scenario = load_text(textwrap.dedent(text))
    kernel = run(scenario, KernelBackend(lock_timeout=300.0))
    model = run(scenario, ModelBackend())
    assert not kernel.failures, kernel.failures
    assert compare(kernel, model) == []


def test_events_propagate_to_every_ancestor() -> None:
    """A task in a/s refused by a's fault limit: events of a/s, a and root, events.local of a/s
    only; a/b untouched; a reservation refusal counts on the same line."""
    _both("""
        format: 1
        cgroups: v2
        pool: {pages: 8}
        steps:
          - cgroup: {name: a, limit: 2}
          - cgroup: {name: a/s}
          - cgroup: {name: a/b}
          - spawn: {proc: p, cgroup: a/s}
          - mmap: {proc: p, map: m, anon: true, length: 4, shared: false}
          - touch: {proc: p, map: m, page: 0, count: 4}
            expect:
              result: SIGBUS
              cgroup:
                root: {usage: 2, rsvd: 4, events: 1}
                a: {events: 1, events_local: 0, limit: 2}
                a/s: {events: 1, events_local: 1}
                a/b: {events: 0, events_local: 0}
          - cgroup: {name: a, rsvd_limit: 4}
          - mmap: {proc: p, map: m2, anon: true, length: 1}
            expect: {result: ENOMEM, cgroup: {a: {events: 2}, a/s: {events_local: 2}}}
          - cgroup: {name: a, limit: 1}
            expect: {result: EBUSY}
          - cgroup: {name: a, rsvd_limit: max}
            expect: {result: ok, cgroup: {a: {rsvd_limit: null}}}
    """)


def test_no_internal_processes_and_rmdir_with_charges() -> None:
    """EBUSY for a child of a busy cgroup and for a process moved into a parent; rmdir of a
    cgroup holding charges moves its fault charges up and keeps its reservations charged."""
    _both("""
        format: 1
        cgroups: v2
        pool: {pages: 8}
        steps:
          - cgroup: {name: a}
          - spawn: {proc: p, cgroup: a}
          - cgroup: {name: a/c}
            expect: {result: EBUSY}
          - attach: {proc: p, cgroup: root}
          - cgroup: {name: a/c}
            expect: {result: ok}
          - attach: {proc: p, cgroup: a}
            expect: {result: EBUSY}
          - spawn: {proc: q, cgroup: a}
            expect: {result: EBUSY}
          - attach: {proc: p, cgroup: a/c}
          - mmap: {proc: p, map: m, anon: true, length: 3, shared: false}
          - touch: {proc: p, map: m, page: 0}
          - attach: {proc: p, cgroup: root}
          - rmdir: {cgroup: a/c}
            expect: {result: ok, cgroup: {a: {usage: 1, rsvd: 3}}}
          - spawn: {proc: r, cgroup: a}
            expect: {result: ok}
          - munmap: {proc: p, map: m}
            expect: {result: ok, rsvd: 0, cgroup: {a: {usage: 0, rsvd: 0}}}
    """)


def test_v1_then_v2_then_v1() -> None:
    """The controller moves between hierarchies: each mode runs right after the other."""
    for interface in ("v1", "v2", "v1", "v2"):
        _both(f"""
            format: 1
            cgroups: {interface}
            pool: {{pages: 2}}
            steps:
              - cgroup: {{name: a}}
              - cgroup: {{name: a/b}}
              - spawn: {{proc: p, cgroup: a/b}}
              - mmap: {{proc: p, map: m, anon: true, length: 1}}
              - attach: {{proc: p, cgroup: root}}
              - rmdir: {{cgroup: a/b}}
        """)
        assert hugetlb_hierarchy()[0] == 0, "hugetlb did not come back to cgroup2"


def test_a_leftover_v1_hierarchy_is_destroyed() -> None:
    """A v1 hierarchy unmounted while a removed cgroup is still being released stays bound;
    a v2 session mounts and unmounts it once and gets the controller back."""
    fd = acquire_lock(os.path.join("/tmp", LOCK_FILE), 300.0)
    point = f"/tmp/hugetlbsim-test-leftover-{os.getpid()}"
    try:
        os.mkdir(point)
        assert mount("cgroup", point, "hugetlb") == "ok"
        os.mkdir(os.path.join(point, "x"))
        os.rmdir(os.path.join(point, "x"))
        assert umount(point) == "ok"  # at once: the removed cgroup may not be released yet
        os.rmdir(point)
    finally:
        os.close(fd)
    _both("""
        format: 1
        cgroups: v2
        steps:
          - cgroup: {name: a}
    """)
    assert hugetlb_hierarchy()[0] == 0


_HOLDER = """
import json, time
from hugetlbsim.backends.kernel import KernelBackend
from hugetlbsim.format.loader import load_text
scenario = load_text('''
format: 1
cgroups: v2
pool: {pages: 4}
steps:
  - cgroup: {name: a, limit: 3}
  - cgroup: {name: a/b}
  - spawn: {proc: p, cgroup: a/b}
  - mmap: {proc: p, map: m, anon: true, length: 2, shared: false}
  - touch: {proc: p, map: m, page: 0}
''')
session = KernelBackend(lock_timeout=300).open(scenario)
for step in scenario.steps:
    session.apply(step.op, step.args)
print(json.dumps({"rundir": session._rec.rundir, "cg2": session._rec.cg2_dir}), flush=True)
time.sleep(120)
"""


@pytest.fixture
def holder() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_v2_run_is_undone(holder: subprocess.Popen[str], sig: signal.Signals) -> None:
    """A v2 run killed (SIGKILL: by the next session; Ctrl-C: at once) leaves no cgroup and
    puts back the cgroup2 root's subtree_control."""
    assert holder.stdout is not None and holder.stderr is not None
    line = holder.stdout.readline()
    assert line, holder.stderr.read()
    info = json.loads(line)
    assert os.path.isdir(info["cg2"])
    holder.send_signal(sig)
    holder.communicate(timeout=60)
    if sig == signal.SIGKILL:
        with KernelBackend(lock_timeout=300.0).open(load_text("format: 1\nsteps: []\n")):
            pass
    deadline = time.monotonic() + 10
    while os.path.exists(info["cg2"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(info["cg2"])
    assert not os.path.exists(info["rundir"])


def test_memory_accounting_is_refused() -> None:
    scenario = load_text("format: 1\ncgroups: v2\nmemory_accounting: true\nsteps: []\n")
    with pytest.raises(BackendUnavailable, match="memory_accounting"):
        KernelBackend(lock_timeout=300.0).open(scenario)
