"""Benchmark: the reservation map at scale, against the list-walking baseline.

Run by hand (not in CI):

    .venv/bin/python bench/resv_map.py [--sizes 1000,10000,100000,1000000] [--ops 20000]

Progress goes to stderr; a Markdown report goes to stdout.

For each size n the map starts with n sparse one-page regions ``[2k, 2k+1)``, all with the same
uncharge info, built through region_chg/region_add pairs (the build is timed).  Then, at random
positions k, in batches:

* fill: ``region_chg(2k+1, 2k+2)`` + ``region_add`` of the gap between two regions.  Same info,
  so under the 6.18 policy the new entry merges with both neighbours into ``[2k, 2k+3)``;
* split del: ``region_del(2k+1, 2k+2)``, strictly inside that merged region, which splits it
  back (this needs a spare entry, taken from the allocator), so after each batch the map has n
  regions again;
* count: ``region_count(2k, 2k+10)``.

Batches are small (10 positions by default), so the map never strays far from n regions.

The baseline (bench/baseline_resv_map.py, a Python list walked from the head) runs the same
operations, in the same order, at the same positions: a prefix of the same batches, as many as
fit in a time budget.  Its map is created directly as a list of n regions (building it
through the protocol would cost O(n^2)); that list is identical to ResvMap's after its build.

Times are per operation: the median over batches of each batch's mean, which keeps them stable
when other processes share the machine.  Bytes per region are reported two ways:
``RegionStore.nbytes()`` (the store's own containers) and the net memory tracemalloc sees
retained by building a fresh map of n regions (everything the map holds, measured in a separate
build so that tracing does not distort the timings).
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field

from hugetlbsim.model.resv_map import Policy, ResvMap
from hugetlbsim.model.resv_map_list import BaselineResvMap, Rg

AnyMap = ResvMap | BaselineResvMap
INFO = "cg"  # every region carries the same uncharge info, so fills merge under 6.18
COUNT_SPAN = 10

TARGET_SCALING = 2.0  # per-op time at the largest size within 2x of the smallest
TARGET_SPEEDUP = 100.0  # at 10^5 regions, at least 100x faster than the baseline
TARGET_BYTES = 150.0  # bytes per region at 10^6


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build(policy: Policy, n: int) -> ResvMap:
    m = ResvMap(policy)
    for k in range(n):
        _, needed = m.region_chg(2 * k, 2 * k + 1)
        m.region_add(2 * k, 2 * k + 1, needed, INFO)
    return m


def baseline_like(policy: Policy, n: int) -> BaselineResvMap:
    """The baseline holding what `build` produces, created directly."""
    b = BaselineResvMap(policy)
    b.list = [Rg(2 * k, 2 * k + 1, INFO) for k in range(n)]
    b.region_cache_count = 0  # build's adds consumed every cached entry
    return b


def fill(m: AnyMap, k: int) -> None:
    chg, needed = m.region_chg(2 * k + 1, 2 * k + 2)
    added = m.region_add(2 * k + 1, 2 * k + 2, needed, INFO)
    assert chg == added == 1


def split_del(m: AnyMap, k: int) -> None:
    assert m.region_del(2 * k + 1, 2 * k + 2).pages == 1


def count(m: AnyMap, k: int) -> None:
    m.region_count(2 * k, 2 * k + COUNT_SPAN)


OPS: dict[str, Callable[[AnyMap, int], None]] = {
    "fill (chg+add)": fill,
    "split del": split_del,
    "count": count,
}


@dataclass
class Timing:
    """Per-op times of one op kind, one sample per batch."""

    ops: int = 0
    seconds: float = 0.0
    per_batch: list[float] = field(default_factory=list)

    @property
    def us(self) -> float:
        """Median over batches of the mean time per op, in microseconds.

        The median keeps the figure stable when other processes share the machine.
        """
        return statistics.median(self.per_batch) * 1e6 if self.per_batch else float("nan")


@dataclass
class Row:
    n: int
    build_s: float
    nbytes_per_region: float
    traced_per_region: float
    model: dict[str, Timing] = field(default_factory=dict)
    base: dict[str, Timing] = field(default_factory=dict)


def batches(n: int, total: int, rng: random.Random, size: int) -> list[list[int]]:
    """Random gap positions, distinct within a batch (so each fill finds its gap open)."""
    size = max(1, min(size, (n - 1) // 10))
    return [rng.sample(range(n - 1), size) for _ in range(-(-total // size))]


def run(m: AnyMap, plan: list[list[int]], budget_s: float | None) -> dict[str, Timing]:
    """Time each op kind over the plan, batch by batch; stop after ``budget_s`` in total.

    Each batch fills its gaps, splits them back and counts, so after every whole batch the map
    is back to its initial n regions, and a truncated run has made a prefix of the same ops.
    """
    timings = {name: Timing() for name in OPS}
    clock = time.perf_counter
    for batch in plan:
        for name, op in OPS.items():
            start = clock()
            for k in batch:
                op(m, k)
            elapsed = clock() - start
            timing = timings[name]
            timing.seconds += elapsed
            timing.ops += len(batch)
            timing.per_batch.append(elapsed / len(batch))
        if budget_s is not None and sum(t.seconds for t in timings.values()) > budget_s:
            break
    return timings


def measure(policy: Policy, n: int, ops: int, batch: int, baseline_s: float, seed: int,
            traced: bool) -> Row:
    log(f"n={n}: building through region_chg/region_add ...")
    gc.collect()
    start = time.perf_counter()
    m = build(policy, n)
    build_s = time.perf_counter() - start
    assert len(m) == n
    nbytes = m._store.nbytes() / n
    log(f"n={n}: built in {build_s:.2f}s, store nbytes {nbytes:.1f} B/region")
    traced_per = float("nan")
    if traced:
        del m
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        m = build(policy, n)
        traced_per = (tracemalloc.get_traced_memory()[0] - before) / n
        tracemalloc.stop()
        log(f"n={n}: tracemalloc {traced_per:.1f} B/region")
    row = Row(n, build_s, nbytes, traced_per)
    plan = batches(n, ops, random.Random(seed), batch)
    log(f"n={n}: ResvMap, {ops} ops of each kind ...")
    run(m, plan[: max(1, len(plan) // 10)], None)  # warm-up, not reported
    row.model = run(m, plan, None)
    assert len(m) == n
    m.check()
    if baseline_s > 0:
        log(f"n={n}: baseline, same ops for up to {baseline_s:.0f}s ...")
        b = baseline_like(policy, n)
        row.base = run(b, plan, baseline_s)
        assert b.regions() == m.regions()
    for name in OPS:
        mt, bt = row.model[name], row.base.get(name, Timing())
        log(f"n={n}: {name}: {mt.us:.2f} us/op"
            + (f", baseline {bt.us:.1f} us/op over {bt.ops} ops" if bt.ops else ""))
    return row


def fmt_int(n: int) -> str:
    return f"10^{len(str(n)) - 1}" if str(n).strip("0") == "1" else str(n)


def report(rows: list[Row], policy: Policy, ops: int) -> None:
    names = list(OPS)
    print(f"### resv_map at scale (policy {policy}, {ops} ops per kind, "
          f"Python {platform.python_version()})\n")
    print("| regions | build (s) | B/region nbytes() | B/region tracemalloc | "
          + " | ".join(f"{name} µs/op" for name in names) + " |")
    print("|---:" * (4 + len(names)) + "|")
    for r in rows:
        print(f"| {fmt_int(r.n)} | {r.build_s:.2f} | {r.nbytes_per_region:.1f} | "
              f"{r.traced_per_region:.1f} | "
              + " | ".join(f"{r.model[name].us:.2f}" for name in names) + " |")
    print("\n### List-walking baseline on the same operations\n")
    print("| regions | " + " | ".join(f"{name} µs/op (ops)" for name in names) + " | "
          + " | ".join(f"{name} speedup" for name in names) + " |")
    print("|---:" * (1 + 2 * len(names)) + "|")
    for r in rows:
        if not r.base:
            continue
        cells = [f"{r.base[name].us:.1f} ({r.base[name].ops})" for name in names]
        ratios = [f"{r.base[name].us / r.model[name].us:.0f}x" for name in names]
        print(f"| {fmt_int(r.n)} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    print("\n### Targets\n")
    small, large = rows[0], rows[-1]
    for name in names:
        ratio = large.model[name].us / small.model[name].us
        verdict = "PASS" if ratio <= TARGET_SCALING else "MISS"
        print(f"- {name}: {fmt_int(large.n)} vs {fmt_int(small.n)} regions: "
              f"{ratio:.2f}x (target <= {TARGET_SCALING:g}x) **{verdict}**")
    at_1e5 = next((r for r in rows if r.n == 10**5 and r.base), None)
    if at_1e5 is not None:
        for name in names:
            ratio = at_1e5.base[name].us / at_1e5.model[name].us
            verdict = "PASS" if ratio >= TARGET_SPEEDUP else "MISS"
            print(f"- {name}: speedup over the baseline at 10^5: {ratio:.0f}x "
                  f"(target >= {TARGET_SPEEDUP:g}x) **{verdict}**")
    at_1e6 = next((r for r in rows if r.n == 10**6), None)
    if at_1e6 is not None:
        worst = max(at_1e6.nbytes_per_region, at_1e6.traced_per_region)
        verdict = "PASS" if worst <= TARGET_BYTES else "MISS"
        print(f"- bytes per region at 10^6: {at_1e6.nbytes_per_region:.1f} (nbytes), "
              f"{at_1e6.traced_per_region:.1f} (tracemalloc) (target <= {TARGET_BYTES:g}) "
              f"**{verdict}**")
        print(f"- building 10^6 regions through region_chg/region_add: "
              f"{at_1e6.build_s:.1f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--ops", type=int, default=20000, help="ops of each kind per size")
    parser.add_argument("--batch", type=int, default=10,
                        help="gaps filled (then split back) per batch")
    parser.add_argument("--baseline-seconds", type=float, default=10.0,
                        help="time budget of the baseline per size (0: skip it)")
    parser.add_argument("--policy", default="6.18", choices=["6.18", "v7", "legacy"])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-tracemalloc", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = [measure(args.policy, n, args.ops, args.batch, args.baseline_seconds, args.seed,
                    not args.no_tracemalloc) for n in sizes]
    report(rows, args.policy, args.ops)


if __name__ == "__main__":
    main()
