"""Benchmark: how the model's cost grows, one dimension at a time, before and after.

Run by hand (not in CI)::

    .venv/bin/python bench/scale.py                 # every family, this tree against --base
    .venv/bin/python bench/scale.py --quick         # smaller sizes, shorter timeout
    .venv/bin/python bench/scale.py --family length --family steps
    .venv/bin/python bench/scale.py --base none     # this tree only

Each family grows one dimension and keeps the rest small:

* ``length``: one shared file mapping of n pages, faulted in one touch step, unmapped in one
  step (n = 10^2..10^6); ``private``: the same with an anonymous private mapping;
* ``procs``: n processes, each mapping and faulting its own page of one shared file;
* ``cgroups``: n cgroups with a limit, a process in each faulting one private page;
* ``fork-width``: one process with 8 touched private pages forks n children, each reading
  one page; ``fork-depth``: a chain of n forks, each child reading a page and forking the next;
* ``steps``: n small steps (touch, madvise dontneed) on one 64-page mapping, YAML loading
  included (the scenario is generated as text and loaded);
* ``regions``: n single-page faults on every other page of a MAP_NORESERVE shared mapping,
  leaving n regions in the file's reservation map;
* ``server``: n processes of the "1 TB server" (524 288 pages of 2 MB for n = 1 000): each
  maps and faults its own 512-page slice of one shared file, then every process exits.

Every run goes through `hugetlbsim.runner.run` and writes the JSON trace (to /dev/null) as
``hugetlbsim run --json`` does: streamed step by step where the code can (`JsonStream`), else
kept whole and dumped.  Each (family, size, code) runs in a fresh
subprocess so peak memory (ru_maxrss above the interpreter's start) is its own; the "before"
code runs from a git worktree of ``--base`` (created in /tmp if missing) through PYTHONPATH.
A run longer than the timeout is shown as ``>T``, and larger sizes of that family are skipped.

Printed: seconds, microseconds per unit, peak MB per run, and per family the growth exponent b
fitted to ``time ~ n^b`` (least squares on log-log, runs under 5 ms left out); for the
``steps`` family also the loading time, steps per second and the run's time per step over its
first and its last tenth of steps (flat means the same).  A family whose
n steps each change O(1) has per-step exponent b - 1; the ``length`` families change n pages in
one step, so b is the exponent in what the step changes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BASE_COMMIT = "b6480f0"
"""The last commit before the scaling work (the "before" code)."""

StepSpec = tuple[str, dict[str, Any]]


# -- families: each yields (pool pages, steps) ----------------------------------------------


def fam_length(n: int) -> tuple[int, list[StepSpec]]:
    return n, [("mount", {"name": "hp"}), ("create", {"file": "hp/f", "size": n}),
               ("spawn", {"proc": "p"}),
               ("mmap", {"proc": "p", "map": "m", "file": "hp/f", "length": n}),
               ("touch", {"proc": "p", "map": "m", "page": 0, "count": n}),
               ("munmap", {"proc": "p", "map": "m"})]


def fam_private(n: int) -> tuple[int, list[StepSpec]]:
    return n, [("spawn", {"proc": "p"}),
               ("mmap", {"proc": "p", "map": "m", "anon": True, "shared": False, "length": n}),
               ("touch", {"proc": "p", "map": "m", "page": 0, "count": n}),
               ("munmap", {"proc": "p", "map": "m"})]


def fam_procs(n: int) -> tuple[int, list[StepSpec]]:
    steps: list[StepSpec] = [("mount", {"name": "hp"}), ("create", {"file": "hp/f", "size": n})]
    for i in range(n):
        steps += [("spawn", {"proc": f"p{i}"}),
                  ("mmap", {"proc": f"p{i}", "map": "m", "file": "hp/f", "offset": i,
                            "length": 1}),
                  ("touch", {"proc": f"p{i}", "map": "m", "page": 0})]
    return n, steps


def fam_cgroups(n: int) -> tuple[int, list[StepSpec]]:
    steps: list[StepSpec] = []
    for i in range(n):
        steps += [("cgroup", {"name": f"g{i}", "limit": 4}),
                  ("spawn", {"proc": f"p{i}", "cgroup": f"g{i}"}),
                  ("mmap", {"proc": f"p{i}", "map": "m", "anon": True, "shared": False,
                            "length": 1}),
                  ("touch", {"proc": f"p{i}", "map": "m", "page": 0})]
    return n, steps


def fam_fork_width(n: int) -> tuple[int, list[StepSpec]]:
    steps: list[StepSpec] = [
        ("spawn", {"proc": "p"}),
        ("mmap", {"proc": "p", "map": "m", "anon": True, "shared": False, "length": 8}),
        ("touch", {"proc": "p", "map": "m", "page": 0, "count": 8})]
    for i in range(n):
        steps += [("fork", {"proc": "p", "child": f"c{i}"}),
                  ("touch", {"proc": f"c{i}", "map": "m", "page": i % 8, "write": False})]
    return 8, steps


def fam_fork_depth(n: int) -> tuple[int, list[StepSpec]]:
    steps: list[StepSpec] = [
        ("spawn", {"proc": "c0"}),
        ("mmap", {"proc": "c0", "map": "m", "anon": True, "shared": False, "length": 8}),
        ("touch", {"proc": "c0", "map": "m", "page": 0, "count": 8})]
    for i in range(n):
        steps += [("fork", {"proc": f"c{i}", "child": f"c{i + 1}"}),
                  ("touch", {"proc": f"c{i + 1}", "map": "m", "page": i % 8, "write": False})]
    return 8, steps


def fam_steps(n: int) -> tuple[int, list[StepSpec]]:
    steps: list[StepSpec] = [("mount", {"name": "hp"}), ("create", {"file": "hp/f", "size": 64}),
                             ("spawn", {"proc": "p"}),
                             ("mmap", {"proc": "p", "map": "m", "file": "hp/f", "length": 64})]
    for i in range(n - len(steps)):
        if i % 2 == 0:
            steps.append(("touch", {"proc": "p", "map": "m", "page": (i // 2) % 64}))
        else:
            steps.append(("madvise", {"proc": "p", "map": "m", "page": (i // 2) % 64,
                                      "advice": "dontneed"}))
    return 64, steps


def fam_regions(n: int) -> tuple[int, list[StepSpec]]:
    steps: list[StepSpec] = [
        ("mount", {"name": "hp"}), ("create", {"file": "hp/f", "size": 2 * n}),
        ("spawn", {"proc": "p"}),
        ("mmap", {"proc": "p", "map": "m", "file": "hp/f", "length": 2 * n, "noreserve": True})]
    steps += [("touch", {"proc": "p", "map": "m", "page": 2 * i}) for i in range(n)]
    return n, steps


def fam_server(n: int) -> tuple[int, list[StepSpec]]:
    slice_ = 512
    steps: list[StepSpec] = [("mount", {"name": "hp"}),
                             ("create", {"file": "hp/db", "size": n * slice_})]
    for i in range(n):
        steps += [("spawn", {"proc": f"p{i}"}),
                  ("mmap", {"proc": f"p{i}", "map": "db", "file": "hp/db",
                            "offset": i * slice_, "length": slice_}),
                  ("touch", {"proc": f"p{i}", "map": "db", "page": 0, "count": slice_})]
    steps += [("exit", {"proc": f"p{i}"}) for i in range(n)]
    return n * slice_ + 512, steps


FAMILIES: dict[str, tuple[Callable[[int], tuple[int, list[StepSpec]]], list[int], list[int]]] = {
    # name: (builder, sizes, quick sizes)
    "length": (fam_length, [10**2, 10**3, 10**4, 10**5, 10**6], [10**2, 10**3, 10**4, 10**5]),
    "private": (fam_private, [10**2, 10**3, 10**4, 10**5, 10**6], [10**2, 10**3, 10**4]),
    "procs": (fam_procs, [10, 100, 1000, 10**4], [10, 100, 1000]),
    "cgroups": (fam_cgroups, [10, 100, 1000, 10**4], [10, 100, 1000]),
    "fork-width": (fam_fork_width, [10, 100, 1000], [10, 100, 1000]),
    "fork-depth": (fam_fork_depth, [10, 100, 1000], [10, 100, 1000]),
    "steps": (fam_steps, [10**2, 10**3, 10**4, 10**5], [10**2, 10**3, 10**4]),
    "regions": (fam_regions, [10**2, 10**3, 10**4, 10**5], [10**2, 10**3, 10**4]),
    "server": (fam_server, [10, 100, 1000], [10, 100]),
}


# -- one run, in a subprocess -----------------------------------------------------------------


def _yaml(pool: int, steps: list[StepSpec]) -> str:
    lines = ["format: 1", "name: scale", f"pool: {{pages: {pool}}}", "steps:"]
    for op, args in steps:
        body = ", ".join(f"{k}: {json.dumps(v)}" for k, v in args.items())
        lines.append(f"  - {op}: {{{body}}}")
    return "\n".join(lines) + "\n"


def _scenario(pool: int, steps: list[StepSpec]) -> Any:
    """A `Scenario` built in code (defaults filled in as the loader does)."""
    from hugetlbsim.format.scenario import OPS, Scenario, Step

    built = []
    for index, (op, given) in enumerate(steps):
        args = {arg.name: given.get(arg.name, arg.default) for arg in OPS[op]}
        built.append(Step(index=index, op=op, args=args))
    return Scenario(steps=tuple(built), name="scale", pool_pages=pool)


def worker(family: str, n: int) -> dict[str, Any]:
    """Run one size of one family here; what the parent prints."""
    from hugetlbsim.backends.model import ModelBackend
    from hugetlbsim.runner import run

    base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    pool, steps = FAMILIES[family][0](n)
    text = _yaml(pool, steps) if family == "steps" else ""
    start = time.perf_counter()
    if text:
        from hugetlbsim.format.loader import load_text

        scenario = load_text(text)
    else:
        scenario = _scenario(pool, steps)
    loaded = time.perf_counter()
    tenth = max(1, len(steps) // 10)
    marks: dict[int, float] = {}
    with open(os.devnull, "w") as out:
        counted = _Counting(out)
        try:  # as `run --json` does: streamed where the code can, else kept and dumped
            from hugetlbsim.trace import JsonStream
        except ImportError:
            trace = run(scenario, ModelBackend())
            counted.write(trace.dumps())
        else:
            stream = JsonStream(counted)  # type: ignore[arg-type]

            def on_step(trace: Any, record: Any) -> None:
                stream.step(trace, record)
                if record.index + 1 in (tenth, len(steps) - tenth):
                    marks[record.index + 1] = time.perf_counter()

            trace = run(scenario, ModelBackend(), on_step=on_step, keep=False)
            stream.end(trace)
    done = time.perf_counter()
    if getattr(trace, "failures", None):
        raise SystemExit(f"{family} {n}: expectations failed")
    result = {"seconds": done - start, "load": loaded - start, "run": done - loaded,
              "steps": len(steps), "trace_mb": counted.chars / 1e6,
              "peak_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_kb) / 1024}
    if len(marks) == 2:  # the run's time per step over its first and its last tenth
        result["tenths_us"] = (1e6 * (marks[tenth] - loaded) / tenth,
                               1e6 * (done - marks[len(steps) - tenth]) / tenth)
    return result


class _Counting:
    """A text sink that counts what goes through it."""

    def __init__(self, out: Any) -> None:
        self.out = out
        self.chars = 0

    def write(self, text: str) -> int:
        self.chars += len(text)
        return int(self.out.write(text))


def measure(src: Path, family: str, n: int, timeout: float) -> dict[str, Any] | None:
    """One run in a fresh interpreter with ``src`` first on the path; None on timeout."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    try:
        out = subprocess.run([sys.executable, __file__, "--worker", family, str(n)], env=env,
                             capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return None
    if out.returncode != 0:
        tail = (out.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": tail}
    result: dict[str, Any] = json.loads(out.stdout)
    return result


# -- the parent: table and exponents ----------------------------------------------------------


def base_tree(commit: str) -> Path:
    """A worktree of ``commit`` under /tmp (created once)."""
    path = Path("/tmp/hugetlbsim-base")
    if not (path / "src" / "hugetlbsim").is_dir():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path),
                        commit], check=True, capture_output=True)
    return path / "src"


def exponent(points: list[tuple[int, float]]) -> float | None:
    """b of time ~ n^b by least squares on log-log (runs under 5 ms are noise)."""
    pts = [(math.log(n), math.log(t)) for n, t in points if t >= 0.005]
    if len(pts) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sxx if sxx else None


def _cell(r: dict[str, Any] | None, n: int, timeout: float) -> str:
    if r is None:
        return f">{timeout:.0f}s | | "
    if "error" in r:
        return f"error | {r['error'][:30]} | "
    return f"{r['seconds']:.3f} | {1e6 * r['seconds'] / n:.1f} | {r['peak_mb']:.0f}"


def rows(families: list[str], quick: bool) -> Iterator[tuple[str, int]]:
    for fam in families:
        sizes = FAMILIES[fam][2] if quick else FAMILIES[fam][1]
        for n in sizes:
            yield fam, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", nargs=2, metavar=("FAMILY", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, 20 s timeout")
    parser.add_argument("--family", action="append", choices=sorted(FAMILIES))
    parser.add_argument("--base", default=BASE_COMMIT,
                        help="commit of the 'before' code, or 'none' (default %(default)s)")
    parser.add_argument("--before-only", action="store_true", help="run the 'before' code only")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per run")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]))))
        return
    timeout = args.timeout or (20.0 if args.quick else 60.0)
    families = args.family or list(FAMILIES)
    codes = {"after": ROOT / "src"}
    if args.base != "none":
        codes = {"before": base_tree(args.base), **codes}
    if args.before_only:
        del codes["after"]
    results: dict[tuple[str, str], list[tuple[int, float]]] = {}
    tenths: list[str] = []
    gave_up: set[tuple[str, str]] = set()
    head = " | ".join(f"{c} s | {c} us/unit | {c} MB" for c in codes)
    print(f"| family | n | {head} |")
    print("|---|---:|" + "---:|" * 3 * len(codes))
    for fam, n in rows(families, args.quick):
        cells = []
        for code, src in codes.items():
            if (fam, code) in gave_up:
                cells.append("skipped | | ")
                continue
            r = measure(src, fam, n, timeout)
            if r is None or "error" in r:
                gave_up.add((fam, code))
            else:
                results.setdefault((fam, code), []).append((n, r["seconds"]))
                if fam == "steps" and "tenths_us" in r:
                    first, last = r["tenths_us"]
                    tenths.append(f"| {n} | {code} | {r['load']:.3f} | {n / r['seconds']:.0f} "
                                  f"| {first:.1f} | {last:.1f} |")
            cells.append(_cell(r, n, timeout))
        print(f"| {fam} | {n} | {' | '.join(cells)} |", flush=True)
    print()
    print("| family | " + " | ".join(f"exponent {c}" for c in codes) + " |")
    print("|---|" + "---:|" * len(codes))
    for fam in families:
        exps = [exponent(results.get((fam, c), [])) for c in codes]
        print(f"| {fam} | " + " | ".join("-" if e is None else f"{e:.2f}" for e in exps) + " |")
    if tenths:  # is a small step's cost flat over the run?
        print()
        print("| steps n | code | load s | steps/s | us/step, first tenth | us/step, last tenth |")
        print("|---:|---|---:|---:|---:|---:|")
        print("\n".join(tenths))


if __name__ == "__main__":
    main()
