"""The model at each kernel point, switch by switch (src/hugetlbsim/model/kernels.py).

Every scenario of tests/kernel-lines/ runs on the model at 6.1.170, 6.1.192, 6.12.117 and
6.18.44.  The expected counters below were worked out by hand, step by step, from the kernel
source of each release (mm/hugetlb.c of 6.1: `alloc_huge_page`, `dequeue_huge_page_vma`,
`vma_has_reserves`, `hugetlb_reserve_pages`'s `out_put_pages`; the 58db7c5fbe7d, a833a693a490
and rsvd-mismatch patch texts; the research note /work/notes/kernel-lines.md) - never copied
from the model's output.  The reasoning is written next to each step: ``F``/``R`` are Free
and Rsvd, ``rsv`` the subpool's min_size reserve, ``get``/``put`` the subpool calls.

Where a real kernel was measured, `test_recorded_kernel_traces` replays the comparison: the
model at that point against the trace the kernel (a vm guest) recorded, every step, every
counter.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hugetlbsim.backends.model import ModelBackend
from hugetlbsim.format.loader import load
from hugetlbsim.model.kernels import KNOWN_POINTS, SWITCHES, kernel, model_points_table
from hugetlbsim.runner import run
from hugetlbsim.trace import StepRecord, Trace, compare

LINES_DIR = Path(__file__).resolve().parents[1] / "kernel-lines"
U64 = 1 << 64
P170, P192, P12, P18 = "6.1.170", "6.1.192", "6.12.117", "6.18.44"
ALL = (P170, P192, P12, P18)
OLD61 = (P170, P192)

Expect = dict[str, Any]
"""Counters after one step: result, total, free, rsvd (negative: underflowed), surp,
nr_hugepages, ``cg`` {cgroup: (usage, rsvd)}, ``bfree`` {mount: statfs free}."""

# scenario file -> step index -> list of (points, expected counters)
CASES: dict[str, dict[int, list[tuple[tuple[str, ...], Expect]]]] = {
    # Switch restore_reserve_on_unmap (df7a6d1f6405, v6.8): not in 6.1.
    "restore-reserve-on-unmap": {
        # mmap 2 private pages in cgroup a: R2, a.rsvd 2 everywhere.
        2: [(ALL, {"free": 4, "rsvd": 2, "cg": {"a": (0, 2)}})],
        # touch page 0: unconsumed owner index, consumes: F3 R1.
        3: [(ALL, {"free": 3, "rsvd": 1, "cg": {"a": (1, 2)}})],
        # DONTNEED page 0: 6.12/6.18 restore (marker dropped, page restores Rsvd); 6.1 frees it
        # with put_pages(NULL, 1) == 1, no restore.
        4: [((P12, P18), {"free": 4, "rsvd": 2, "cg": {"a": (0, 2)}}),
            (OLD61, {"free": 4, "rsvd": 1, "cg": {"a": (0, 2)}})],
        # re-fault: 6.12/6.18 REUSE (consume); 6.1 NEEDED: rsvd charged again, gbl 1, no
        # consumption, needs an unreserved page (4 - 1 = 3 available).
        5: [((P12, P18), {"free": 3, "rsvd": 1, "cg": {"a": (1, 2)}}),
            (OLD61, {"free": 3, "rsvd": 1, "cg": {"a": (1, 3)}})],
        # munmap: 6.12/6.18 restore page 0 then close returns 2; 6.1 frees page 0 (its rsvd
        # charge goes with it), close returns 2 - 1 marker = 1.
        6: [(ALL, {"free": 4, "rsvd": 0, "cg": {"a": (0, 0)}})],
    },
    "restore-reserve-on-unmap-sigbus": {
        3: [(ALL, {"free": 0, "rsvd": 0})],
        4: [((P12, P18), {"free": 1, "rsvd": 1}), (OLD61, {"free": 1, "rsvd": 0})],
        # q reserves 1: 6.12/6.18 need 1 + 1 - 1 = 1 surplus page, none allowed: ENOMEM.
        5: [((P12, P18), {"result": "ENOMEM", "free": 1, "rsvd": 1}),
            (OLD61, {"result": "ok", "free": 1, "rsvd": 1})],
        # p re-faults page 0: REUSE (F0 R0); 6.1 NEEDED with 1 - 1 = 0 available: SIGBUS.
        6: [((P12, P18), {"result": "ok", "free": 0, "rsvd": 0}),
            (OLD61, {"result": "SIGBUS", "free": 1, "rsvd": 1})],
        7: [((P12, P18), {"free": 0, "rsvd": 0}), (OLD61, {"free": 1, "rsvd": 0})],
        8: [(ALL, {"total": 2, "free": 2, "rsvd": 0})],
    },
    "restore-reserve-cgroup-move": {
        4: [(ALL, {"free": 7, "rsvd": 3, "cg": {"a": (1, 4)}})],
        5: [((P12, P18), {"free": 8, "rsvd": 4}), (OLD61, {"free": 8, "rsvd": 3})],
        # after attach to b: the re-fault charges b's fault counter; 6.1 also b's rsvd.
        7: [((P12, P18), {"free": 7, "rsvd": 3, "cg": {"a": (0, 4), "b": (1, 0)}}),
            (OLD61, {"free": 7, "rsvd": 3, "cg": {"a": (0, 4), "b": (1, 1)}})],
        # munmap pages 0-1: close of that piece gives back 2 (6.12/6.18, after the restore)
        # or 2 - 1 marker (6.1); a's rsvd loses the piece's 2 pages.
        8: [(ALL, {"free": 8, "rsvd": 2, "cg": {"a": (0, 2), "b": (0, 0)}})],
        9: [(ALL, {"free": 8, "rsvd": 0, "cg": {"a": (0, 0), "b": (0, 0)}})],
    },
    # Switch unmap_restore_only_if_unmapped (6.12.110): live-kernel P14a on 6.18.44.
    "unmap-restore-only-if-unmapped": {
        1: [(ALL, {"free": 2, "rsvd": 0})],
        # owner munmaps pages the child maps: 6.18 restores both (markers dropped, close
        # returns 2 more): R -2; 6.12 (mapcount 2) and 6.1 (no restore) leave R 0.
        3: [((P18,), {"free": 2, "rsvd": -2}), ((P170, P192, P12), {"free": 2, "rsvd": 0})],
        # child exits: 6.18's pages carry restore_reserve: R back to 0.
        4: [(ALL, {"free": 4, "rsvd": 0})],
    },
    "unmap-restore-only-if-unmapped-dontneed": {
        3: [(ALL, {"free": 2, "rsvd": 0})],
        # owner writes page 0 again: 6.18 REUSE of a reservation that is gone (R -1);
        # 6.12 and 6.1: marker kept, NEEDED, 2 - 0 available.
        4: [((P18,), {"free": 1, "rsvd": -1}), ((P170, P192, P12), {"free": 1, "rsvd": 0})],
        # child exits: its page 0 (restore flag on 6.18) is freed.
        5: [(ALL, {"free": 2, "rsvd": 0})],
        6: [(ALL, {"free": 4, "rsvd": 0})],
    },
    # Switch subpool_unwind_exact (a833a693a490, v6.15): not in 6.1 nor 6.12.
    "subpool-unwind-failed-mmap": {
        0: [(ALL, {"rsvd": 2})],
        2: [(ALL, {"rsvd": 2})],
        # get(3): rsv 1 -> 0, gbl 2; acct(2) needs 2 + 2 - 3 = 1 surplus: ENOMEM.
        4: [(ALL, {"result": "ENOMEM", "rsvd": 2})],
        # truncate a: put(1): 6.18 rsv 1 + 1 <= 2 returns 0; 6.1/6.12 put(3) had refilled
        # rsv to 2, so this put returns 1 and Rsvd drops.
        6: [((P18,), {"rsvd": 2}), ((P170, P192, P12), {"rsvd": 1})],
        # umount releases min_size 2.
        11: [((P18,), {"rsvd": 0}), ((P170, P192, P12), {"rsvd": -1})],
        # nr_hugepages 0: min_count = unsigned(-1 + 3 - 3) keeps every page, all surplus.
        12: [((P18,), {"total": 0, "free": 0, "rsvd": 0}),
             ((P170, P192, P12), {"total": 3, "free": 3, "surp": 3, "nr_hugepages": 0,
                                  "rsvd": -1})],
    },
    "subpool-unwind-failed-fault": {
        3: [(ALL, {"free": 0, "rsvd": 0})],
        # NEEDED fault, get(1) = 1, no unreserved page: SIGBUS; 6.1/6.12 put(1) anyway
        # (phantom rsv 1).
        6: [(ALL, {"result": "SIGBUS", "free": 0, "rsvd": 0})],
        # truncate a frees the cached page: put(1) returns 0 on 6.18 (restore) but 1 on
        # 6.1/6.12 (rsv already full).
        9: [((P18,), {"free": 1, "rsvd": 1}), ((P170, P192, P12), {"free": 1, "rsvd": 0})],
        14: [((P18,), {"rsvd": 0}), ((P170, P192, P12), {"rsvd": -1})],
    },
    "subpool-size-failed-faults": {
        3: [(ALL, {"free": 0, "bfree": {"hp": 2}})],
        # failed faults: 6.18 keeps the subpool page (gbl_chg 1), 6.1/6.12 put it back.
        4: [((P18,), {"result": "SIGBUS", "bfree": {"hp": 1}}),
            ((P170, P192, P12), {"result": "SIGBUS", "bfree": {"hp": 2}})],
        5: [((P18,), {"result": "SIGBUS", "bfree": {"hp": 0}}),
            ((P170, P192, P12), {"result": "SIGBUS", "bfree": {"hp": 2}})],
        7: [((P18,), {"free": 2, "bfree": {"hp": 2}}),
            ((P170, P192, P12), {"free": 2, "bfree": {"hp": 4}})],
        # a 3-page mmap: 6.18 is over size= (2 + 3 > 4); the others pass the subpool and
        # fail the global reservation, then put all 3 back.
        9: [((P18,), {"result": "ENOMEM", "bfree": {"hp": 2}}),
            ((P170, P192, P12), {"result": "ENOMEM", "bfree": {"hp": 4}})],
    },
    # Switch subpool_used_restore_on_failed_reserve (1d3f9bb4c8af): get(3) passes size= 4,
    # acct(3) fails with 2 free.  6.18 (a833 + 1d3f): put(0), used -= 3; 6.1/6.12: put(3).
    # Either way used_hpages is 0 again and a 2-page mmap fits.
    "subpool-size-failed-mmap": {
        2: [(ALL, {"result": "ENOMEM", "rsvd": 0, "bfree": {"hp": 4}})],
        3: [(ALL, {"result": "ok", "rsvd": 2, "bfree": {"hp": 2}})],
        6: [(ALL, {"rsvd": 0, "bfree": {"hp": 4}})],
    },
    # Switch cow_owner_takes_subpool_reserve (58db7c5fbe7d): off on 6.1.170 only.
    "cow-owner-subpool": {
        0: [(ALL, {"rsvd": 4})],
        2: [(ALL, {"free": 7, "rsvd": 3})],
        4: [(ALL, {"free": 6, "rsvd": 2})],
        # owner COW: get(1) takes rsv; 6.1.170 forces gbl 1 and consumes nothing.
        6: [((P192, P12, P18), {"free": 5, "rsvd": 1}), ((P170,), {"free": 5, "rsvd": 2})],
        # child exit frees the old copy: put(1) returns 0, restore.
        7: [((P192, P12, P18), {"free": 6, "rsvd": 2}), ((P170,), {"free": 6, "rsvd": 3})],
        8: [((P192, P12, P18), {"free": 7, "rsvd": 3}), ((P170,), {"free": 7, "rsvd": 4})],
        10: [((P192, P12, P18), {"free": 8, "rsvd": 4}), ((P170,), {"free": 8, "rsvd": 5})],
        11: [((P192, P12, P18), {"rsvd": 0}), ((P170,), {"rsvd": 1})],
    },
    "cow-owner-subpool-exhausted": {
        4: [(ALL, {"free": 2, "rsvd": 2})],
        # owner COW: with the fix it uses the subpool's reserve (F1 R1); 6.1.170 needs an
        # unreserved page (2 - 2 = 0), fails, puts rsv back and takes the page from the child.
        6: [((P192, P12, P18), {"result": "ok", "free": 1, "rsvd": 1}),
            ((P170,), {"result": "ok", "free": 2, "rsvd": 2})],
        7: [((P192, P12, P18), {"result": "ok"}), ((P170,), {"result": "SIGBUS"})],
        8: [(ALL, {"free": 2, "rsvd": 2})],
        9: [(ALL, {"free": 3, "rsvd": 3})],
        12: [(ALL, {"total": 4, "free": 4, "rsvd": 0})],
    },
    # Switch gbl_chg_decides_consumption (923682a0dd57, v6.14): only 6.18.
    "gbl-chg-consumption": {
        # private MAP_NORESERVE fault: get(1) = 0; 6.18 consumes, others need 2 - 1 = 1
        # unreserved page and consume nothing.
        3: [((P18,), {"free": 1, "rsvd": 0}), ((P170, P192, P12), {"free": 1, "rsvd": 1})],
        4: [((P18,), {"free": 2, "rsvd": 1}), ((P170, P192, P12), {"free": 2, "rsvd": 2})],
        7: [((P18,), {"rsvd": 0}), ((P170, P192, P12), {"rsvd": 1})],
    },
    "gbl-chg-consumption-sigbus": {
        3: [((P18,), {"result": "ok", "free": 0, "rsvd": 0}),
            ((P170, P192, P12), {"result": "SIGBUS", "free": 1, "rsvd": 1})],
        4: [(ALL, {"free": 1, "rsvd": 1})],
        7: [(ALL, {"rsvd": 0})],
    },
    "gbl-chg-consumption-fork-child": {
        3: [(ALL, {"free": 3, "rsvd": 2})],
        # the child's fault takes the last rsv (get = 0): 6.18 consumes; others do not.
        5: [((P18,), {"free": 2, "rsvd": 1}), ((P170, P192, P12), {"free": 2, "rsvd": 2})],
        6: [((P18,), {"free": 3, "rsvd": 2}), ((P170, P192, P12), {"free": 3, "rsvd": 3})],
        7: [((P18,), {"free": 4, "rsvd": 3}), ((P170, P192, P12), {"free": 4, "rsvd": 4})],
        10: [((P18,), {"rsvd": 0}), ((P170, P192, P12), {"rsvd": 1})],
    },
}


def _check(step: StepRecord, want: Expect, where: str) -> None:
    state = step.state
    for key, value in want.items():
        if key == "result":
            assert step.result == value, f"{where}: result {step.result} != {value}"
        elif key == "cg":
            for name, (usage, rsvd) in value.items():
                got = state["cgroups"][name]
                assert (got["usage"], got["rsvd"]) == (usage, rsvd), (
                    f"{where}: cgroup {name} (usage, rsvd) = ({got['usage']}, {got['rsvd']})"
                    f" != ({usage}, {rsvd})")
        elif key == "bfree":
            for name, free in value.items():
                got = state["mounts"][name]["free"]
                assert got == free, f"{where}: mount {name} free {got} != {free}"
        else:
            expected = value % U64 if key == "rsvd" else value
            assert state[key] == expected, f"{where}: {key} {state[key]} != {expected}"


@pytest.mark.parametrize("point", ALL)
@pytest.mark.parametrize("name", sorted(CASES))
def test_switch_scenarios(name: str, point: str) -> None:
    scenario = load(LINES_DIR / f"{name}.yaml")
    trace = run(scenario, ModelBackend("6.18", point))
    assert not trace.failures
    checked = 0
    for index, rows in CASES[name].items():
        for points, want in rows:
            if point in points:
                _check(trace.steps[index], want, f"{name} step {index} on {point}")
                checked += 1
    assert checked, f"{name}: nothing expected on {point}"


def test_every_scenario_has_expectations() -> None:
    assert {p.stem for p in LINES_DIR.glob("*.yaml")} == set(CASES)


def test_points_carry_the_switches_the_research_found() -> None:
    """The mapping of research note §1 (with 7 on in 6.18.44: fixed in 6.18.40)."""
    table = model_points_table()
    assert table.points == [P170, P192, P12, P18]
    names = [s.name for s in table.switches]
    carried = {p: {n for n, c in zip(names, table.carries[p], strict=True) if c}
               for p in table.points}
    assert carried[P170] == set()
    assert carried[P192] == {"cow_owner_takes_subpool_reserve", "cgroup_rsvd_mismatch_fix"}
    assert carried[P12] == {"memcg_hugetlb", "restore_reserve_on_unmap",
                            "unmap_restore_only_if_unmapped",
                            "cow_owner_takes_subpool_reserve", "cgroup_rsvd_mismatch_fix"}
    assert carried[P18] == {"memcg_hugetlb", "restore_reserve_on_unmap", "subpool_unwind_exact",
                            "subpool_used_restore_on_failed_reserve",
                            "cow_owner_takes_subpool_reserve", "gbl_chg_decides_consumption",
                            "cgroup_rsvd_mismatch_fix"}
    assert set(KNOWN_POINTS) == set(table.points)
    assert "6.1.0-47" in table.aliases[P170] and "6.1" in table.aliases[P192]
    for switch in SWITCHES.values():
        assert len(switch.commit) == 12 and switch.subject and switch.effect


def test_min_count_wraps_once_rsvd_underflowed() -> None:
    """set_max_huge_pages computes min_count in unsigned long arithmetic."""
    from hugetlbsim.model.hstate import HState

    h = HState(nr_huge_pages=3, free_huge_pages=3, resv_huge_pages=-1, max_huge_pages=3,
               kernel=kernel(P12))
    h.set_max_huge_pages(0)  # min_count = 2^64 - 1: nothing freed, all turned surplus
    assert (h.nr_huge_pages, h.free_huge_pages, h.surplus_huge_pages) == (3, 3, 3)
    h = HState(nr_huge_pages=3, free_huge_pages=2, resv_huge_pages=-1, max_huge_pages=3,
               kernel=kernel(P12))
    h.set_max_huge_pages(0)  # min_count = -1 + 3 - 2 = 0: both free pages go
    assert (h.nr_huge_pages, h.free_huge_pages, h.surplus_huge_pages) == (1, 0, 1)


def test_a833_without_1d3f_leaks_the_global_part() -> None:
    """A release with a833a693a490 but not 1d3f9bb4c8af (6.15.0: neither 6.15 nor a 6.15.y
    backport of 1d3f is known): the failed mmap's global part (3) stays in used_hpages."""
    from hugetlbsim.model.kernels import Kernel
    from hugetlbsim.model.system import System

    system = System(pool_pages=2, kernel=Kernel((6, 15, 0)))
    for op, args in [("mount", {"name": "hp", "size": 4}),
                     ("create", {"file": "hp/g", "size": 3}),
                     ("mmap", {"proc": "init", "map": "g", "file": "hp/g", "length": 3})]:
        system.apply(op, args)
    assert system.snapshot()["mounts"]["hp"]["free"] == 1


def _recorded() -> list[Path]:
    return sorted((LINES_DIR / "traces").glob("*/*.json"))


def _trace(path: Path) -> Trace:
    doc = json.loads(path.read_text())
    steps = [StepRecord(s["index"], s["op"], s["args"], s["result"], s["state"],
                        s.get("explain")) for s in doc["steps"]]
    return Trace(doc["backend"], doc["kernel"], doc["scenario"], steps)


@pytest.mark.parametrize("path", _recorded(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_recorded_kernel_traces(path: Path) -> None:
    """The model at the recorded kernel's point against that kernel's trace: 0 differ."""
    point = path.parent.name
    recorded = _trace(path)
    assert kernel(recorded.kernel).name == point
    model = run(load(LINES_DIR / f"{path.stem}.yaml"), ModelBackend("6.18", point))
    diffs = compare(model, recorded)
    assert not diffs, f"{path.stem} on {point}: {len(diffs)} steps differ, first {diffs[0]}"


ROOT = LINES_DIR.parents[1]


def _example_traces() -> list[Path]:
    return sorted((LINES_DIR / "examples").glob("*/*.json"))


@pytest.mark.parametrize("path", _example_traces(),
                         ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_examples_recorded_on_each_line(path: Path) -> None:
    """Every example and regression scenario, recorded on Debian's 6.1.170, 6.1.192 and
    6.12.117 kernels (vm backend): the model at that point shows the same at every step."""
    point = path.parent.name
    recorded = _trace(path)
    stem = path.stem
    sources = [p for p in (ROOT / "examples" / f"{stem}.yaml",
                           ROOT / "tests" / "regressions" / f"{stem}.yaml") if p.exists()]
    if not sources:
        pytest.skip(f"{stem} is no longer in examples/ or tests/regressions/")
    source = sources[0]
    model = run(load(source), ModelBackend("6.18", point))
    if [(s.op, s.args) for s in model.steps] != [(s.op, s.args) for s in recorded.steps]:
        pytest.skip(f"{stem} changed since it was recorded on {point}: record it again")
    diffs = compare(model, recorded)
    assert not diffs, f"{stem} on {point}: {len(diffs)} steps differ, first {diffs[0]}"
