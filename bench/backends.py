"""Benchmark: the model against the live-kernel backend, on the scenario files in ``examples/``.

Run by hand (not in CI), as root on an idle machine for the kernel half::

    .venv/bin/python bench/backends.py                 # all examples, both backends
    .venv/bin/python bench/backends.py --per-example   # plus one row per example
    .venv/bin/python bench/backends.py --model-only examples/shared-file-basics.yaml

Each backend runs every scenario through `hugetlbsim.runner.run`, exactly as ``hugetlbsim run``
does: open a session (the kernel backend takes the machine-wide lock, mounts a private cgroup
hierarchy, sets the pool and spawns a worker; the model builds a `System`), apply each step and
read the full state after it, close the session (the kernel backend tears everything down and
checks that the machine is clean).  Two rates are shown:

* **end to end**: steps / wall time of whole runs, setup and teardown included (what a user of
  ``hugetlbsim run`` or ``diff`` waits for);
* **steps only**: steps / time spent in `Session.apply` and `Session.state` (what one more step
  in a scenario costs).

Each rate is taken from the fastest run of every scenario (best of N), which filters out runs
slowed by other activity on the machine.  The model runs whole rounds until
``--model-seconds`` have passed; the kernel runs ``--kernel-rounds`` rounds, and waits for the
lock to be free before each run so that waiting for another session is not timed.

A scenario whose expectations fail is reported on stderr (its timing still counts).  The result
is a small Markdown table on stdout; progress goes to stderr.  The target is a model at least
20x faster than the kernel backend (end to end).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hugetlbsim.backends.base import Backend, BackendUnavailable, Session
from hugetlbsim.backends.model import ModelBackend
from hugetlbsim.format.loader import load
from hugetlbsim.format.scenario import Scenario
from hugetlbsim.runner import run

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
TARGET_RATIO = 20.0


@dataclass
class Timing:
    """Runs of one backend: per scenario, its step count and, per run, the seconds the whole
    run took and the seconds spent in steps (`Session.apply` + `Session.state`)."""

    backend: str
    steps: dict[str, int] = field(default_factory=dict)
    total: dict[str, list[float]] = field(default_factory=dict)
    in_steps: dict[str, list[float]] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)

    def add(self, name: str, steps: int, total: float, in_steps: float) -> None:
        self.steps[name] = steps
        self.total.setdefault(name, []).append(total)
        self.in_steps.setdefault(name, []).append(in_steps)

    @property
    def runs(self) -> int:
        return sum(len(v) for v in self.total.values())

    @property
    def round_steps(self) -> int:
        return sum(self.steps.values())

    def best(self, name: str, *, steps_only: bool = False) -> float:
        """The fastest run of a scenario (runs slowed by other machine activity filtered out)."""
        return min((self.in_steps if steps_only else self.total)[name])

    def rate(self, name: str | None = None, *, steps_only: bool = False) -> float:
        """Steps per second of one scenario, or of a whole round, from the best runs."""
        names = list(self.steps) if name is None else [name]
        seconds = sum(self.best(n, steps_only=steps_only) for n in names)
        return sum(self.steps[n] for n in names) / seconds if seconds else 0.0


class _TimedSession:
    """A session that adds the time spent in `apply` and `state` to ``seconds``."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.seconds = 0.0

    def apply(self, op: str, args: Mapping[str, Any]) -> str:
        start = time.perf_counter()
        try:
            return self.session.apply(op, args)
        finally:
            self.seconds += time.perf_counter() - start

    def state(self) -> dict[str, Any]:
        start = time.perf_counter()
        try:
            return self.session.state()
        finally:
            self.seconds += time.perf_counter() - start

    def explain(self) -> str | None:
        return self.session.explain()

    def close(self) -> None:
        self.session.close()


class _TimedBackend:
    """A backend whose sessions are `_TimedSession`s; ``last`` is the latest one."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.name = backend.name
        self.last: _TimedSession | None = None

    def version(self) -> str:
        return self.backend.version()

    def open(self, scenario: Scenario) -> _TimedSession:
        self.last = _TimedSession(self.backend.open(scenario))
        return self.last


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def time_once(scenario: Scenario, backend: _TimedBackend, timing: Timing) -> None:
    """One end-to-end run of ``scenario``; failed expectations are reported once."""
    start = time.perf_counter()
    trace = run(scenario, backend)
    elapsed = time.perf_counter() - start
    assert backend.last is not None
    name = Path(scenario.path).stem
    timing.add(name, len(trace.steps), elapsed, backend.last.seconds)
    if trace.failures and name not in timing.failed:
        timing.failed.add(name)
        progress(f"  {backend.name}: {name}: {len(trace.failures)} expectations failed, "
                 f"first: {trace.failures[0]}")


def bench_model(scenarios: Sequence[Scenario], min_seconds: float) -> Timing:
    """Rounds over all scenarios until ``min_seconds`` have passed (at least one round)."""
    timing = Timing("model")
    backend = _TimedBackend(ModelBackend())
    rounds = 0
    start = time.perf_counter()
    while rounds == 0 or time.perf_counter() - start < min_seconds:
        for scenario in scenarios:
            time_once(scenario, backend, timing)
        rounds += 1
    progress(f"model: {rounds} rounds of {len(scenarios)} scenarios in "
             f"{time.perf_counter() - start:.2f} s")
    return timing


def bench_kernel(scenarios: Sequence[Scenario], rounds: int, lock_timeout: float) -> Timing:
    """``rounds`` rounds over all scenarios on the live kernel.  Before each run the bench
    waits until no other hugetlbsim kernel session holds the machine-wide lock, so that (as far
    as possible) a run does not include waiting for somebody else."""
    from hugetlbsim.backends.kernel import LOCK_FILE, KernelBackend, acquire_lock

    timing = Timing("kernel")
    kernel = KernelBackend(lock_timeout=lock_timeout)
    backend = _TimedBackend(kernel)
    lock = os.path.join(kernel.tmpdir, LOCK_FILE)
    for r in range(rounds):
        for i, scenario in enumerate(scenarios, 1):
            progress(f"kernel: round {r + 1}/{rounds}, {i}/{len(scenarios)} "
                     f"{Path(scenario.path).stem}")
            os.close(acquire_lock(lock, lock_timeout))
            time_once(scenario, backend, timing)
    return timing


def _rate(value: float) -> str:
    return f"{value:,.0f}"


def summary_table(timings: Sequence[Timing]) -> list[str]:
    lines = ["| backend | scenarios | steps a round | runs | end to end, steps/s | "
             "ms per scenario run | steps only, steps/s | ms per step |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for t in timings:
        per_run = sum(t.best(n) for n in t.steps) / len(t.steps)
        per_step = sum(t.best(n, steps_only=True) for n in t.steps) / t.round_steps
        lines.append(f"| {t.backend} | {len(t.steps)} | {t.round_steps} | {t.runs} | "
                     f"{_rate(t.rate())} | {1000 * per_run:.2f} | "
                     f"{_rate(t.rate(steps_only=True))} | {1000 * per_step:.3f} |")
    return lines


def ratio_table(model: Timing, kernel: Timing) -> list[str]:
    lines = ["| model / kernel | ratio | target |", "|---|---:|---:|"]
    for label, steps_only in (("end to end", False), ("steps only", True)):
        ratio = model.rate(steps_only=steps_only) / kernel.rate(steps_only=steps_only)
        target = (f"{TARGET_RATIO:.0f}x: " + ("met" if ratio >= TARGET_RATIO else "MISSED")
                  if not steps_only else "-")
        lines.append(f"| {label} | **{ratio:.1f}x** | {target} |")
    return lines


def per_example_table(model: Timing | None, kernel: Timing | None) -> list[str]:
    """End-to-end steps per second of each example (best run)."""
    shown = [t for t in (model, kernel) if t is not None]
    names = sorted({n for t in shown for n in t.steps})
    both = model is not None and kernel is not None
    header = "| example | steps | " + " | ".join(f"{t.backend} steps/s" for t in shown)
    rule = "|---|---:|" + "---:|" * len(shown)
    if both:
        header += " | model / kernel"
        rule += "---:|"
    lines = [header + " |", rule]
    for name in names:
        steps = next(t.steps[name] for t in shown if name in t.steps)
        cells = [_rate(t.rate(name)) if name in t.steps else "-" for t in shown]
        if model is not None and kernel is not None:
            cells.append(f"{model.rate(name) / kernel.rate(name):.0f}x"
                         if name in model.steps and name in kernel.steps else "-")
        lines.append(f"| {name} | {steps} | " + " | ".join(cells) + " |")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", type=Path,
                        help="scenario files (default: examples/*.yaml)")
    parser.add_argument("--model-seconds", type=float, default=3.0,
                        help="run the model for at least this long (default 3)")
    parser.add_argument("--kernel-rounds", type=int, default=3,
                        help="rounds over all scenarios on the kernel (default 3)")
    parser.add_argument("--lock-timeout", type=float, default=300.0,
                        help="seconds to wait for another hugetlbsim kernel session (default 300)")
    parser.add_argument("--per-example", action="store_true",
                        help="also print steps per second for each example")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--model-only", action="store_true", help="skip the kernel backend")
    only.add_argument("--kernel-only", action="store_true", help="skip the model")
    args = parser.parse_args(argv)

    files = args.files or sorted(EXAMPLES_DIR.glob("*.yaml"))
    if not files:
        progress(f"no scenario files (looked in {EXAMPLES_DIR})")
        return 2
    scenarios = [load(f) for f in files]
    progress(f"{len(scenarios)} scenarios, {sum(len(s.steps) for s in scenarios)} steps a round")

    benches: list[tuple[str, Callable[[], Timing]]] = []
    if not args.kernel_only:
        benches.append(("model", lambda: bench_model(scenarios, args.model_seconds)))
    if not args.model_only:
        benches.append(("kernel",
                        lambda: bench_kernel(scenarios, args.kernel_rounds, args.lock_timeout)))
    results: dict[str, Timing] = {}
    for name, bench in benches:
        try:
            results[name] = bench()
        except BackendUnavailable as exc:
            progress(f"{name} backend unavailable: {exc}")
            return 3

    model, kernel = results.get("model"), results.get("kernel")
    out = summary_table(list(results.values()))
    if model is not None and kernel is not None:
        out += ["", *ratio_table(model, kernel)]
    if args.per_example:
        out += ["", *per_example_table(model, kernel)]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
