"""The region-coalescing policy must not show in any counter.

``System(policy="v7")`` never merges file regions (resv_map.py); that changes the region
lists only.  Every measured sequence and every §10 trace is run under both policies, with
`check_invariants()` after every step, and the results and visible snapshots (the files'
``regions`` dropped) must be identical at every step.  This compares the two policies with
each other, not with the measurements (the other flow tests do that).
"""

from __future__ import annotations

import pytest
import test_cgroup_flows
import test_kernel_quirks
import test_noreserve_memfd_shm
import test_overcommit
import test_populate_and_pitfalls
import test_private_fork
import test_shared
import test_subpool_flows
import test_traces
from helpers import Seq, new_system, replay, row, rows, run_rows, visible

ALL = [
    *test_shared.SEQUENCES,
    *test_private_fork.SEQUENCES,
    *test_noreserve_memfd_shm.SEQUENCES,
    *test_subpool_flows.SEQUENCES,
    *test_overcommit.SEQUENCES,
    *test_cgroup_flows.SEQUENCES,
    *test_kernel_quirks.SEQUENCES,
    *test_populate_and_pitfalls.SEQUENCES,
    *test_traces.SEQUENCES,
    *test_traces.CLAIMS,
]


@pytest.mark.parametrize("seq", ALL, ids=lambda s: s.name)
def test_v7_shows_the_same_counters(seq: Seq) -> None:
    base = replay(seq, "6.18", check=False)
    v7 = replay(seq, "v7", check=False)
    assert len(base) == len(v7)
    for i, ((r1, s1), (r2, s2)) in enumerate(zip(base, v7, strict=True)):
        step = seq.rows[i]
        where = f"{seq.name}, step {i} ({step.note!r}: {step.op} {step.args})"
        assert r1 == r2, f"{where}: result 6.18 {r1!r}, v7 {r2!r}"
        assert visible(s1) == visible(s2), f"{where}: visible state differs"


def test_v7_really_keeps_regions_apart() -> None:
    """The switch is live: after T2's second mmap by the same cgroup (no cgroup change), 6.18
    merges [0,4) and [4,6) into one region, v7 keeps two."""
    seq = Seq("T2 with one cgroup", pool=10, rows=test_traces.T1_ROWS[:3])
    more = rows(row("mmap [0,6) by the same cgroup", "mmap", "R=6", map="m2", file="hp/f",
                    length=6))
    got = {}
    for policy in ("6.18", "v7"):
        system = new_system(seq, policy)
        run_rows(system, seq, seq.rows)
        run_rows(system, seq, more)
        got[policy] = system.snapshot()["files"]["hp/f"]["regions"]
    assert got["6.18"] == [[0, 6, "root"]]
    assert got["v7"] == [[0, 4, "root"], [4, 6, "root"]]
