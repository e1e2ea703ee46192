"""Fuzzing campaigns: many generated scenarios run on two sides, divergences shrunk.

Three modes:

``policies``
    The model with policy ``"6.18"`` against the model with ``"v7"``.  The model backend checks
    its invariants after every step (a broken one raises), and every visible counter must be
    identical, watermarks included (files' ``regions`` are not compared).  Pure Python, so
    batches are spread over J processes (`concurrent.futures.ProcessPoolExecutor`).
``kernel``
    The model (``"6.18"``) against the live kernel of this machine, compared step by step with
    `hugetlbsim.runner.compare`.  Before the kernel runs a scenario, the model plays it with the
    backend's teardown (`leftover`): a scenario that would leave the machine non-idle for good
    (6.18 leaks some reservations) is not run there but reported as unsafe, with the model's
    prediction.  The kernel's counters are global, so kernel runs are serial on one machine:
    a single-worker executor (the kernel backend's session lock would serialise them anyway).
    A multi-machine campaign plugs in an executor whose workers are one process per machine
    (e.g. a Dask ``Client.get_executor()`` with one single-threaded worker per host, or Ray
    actors behind an Executor): `run_batch` runs, shrinks and records where it runs, and
    returns plain data.

``vm:LINE``
    The model at a guest kernel's point (``vm:6.1`` → 6.1.192) against that kernel booted in a
    qemu guest (`hugetlbsim.backends.vm`).  A batch's scenarios run in one boot; a guest's pool
    is disposable, so no scenario is refused (a broken pool costs a re-boot); a scenario that
    hangs or crashes its guest is reported as not run.  One guest at a time: runs are serial.

The unit of work is `run_batch(seeds, mode, options)`: a top-level function of picklable
arguments returning a picklable `BatchResult`, so any `concurrent.futures.Executor` can run it
without changes to `campaign`.  Each finding is shrunk where it was found (a kernel finding
needs that machine's kernel) and comes back as the text of the shrunk scenario, its ``expect``
blocks recorded from the reference side (the kernel, or policy ``"6.18"``).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass, field, replace
from typing import Any

from hugetlbsim.backends.base import Backend, BackendUnavailable, prepare
from hugetlbsim.backends.model import ModelBackend
from hugetlbsim.format.scenario import Scenario
from hugetlbsim.fuzz.generate import GenOptions, generate
from hugetlbsim.fuzz.shrink import scenario_text, shrink
from hugetlbsim.model.kernels import MEMCG_HUGETLB, kernel
from hugetlbsim.model.system import System
from hugetlbsim.record import with_expect
from hugetlbsim.trace import StepDiff, StepRecord, Trace, compare, normalized, show_value

__all__ = [
    "MODES",
    "BatchResult",
    "Checked",
    "Divergence",
    "Finding",
    "Mode",
    "Options",
    "Outcome",
    "Summary",
    "campaign",
    "check",
    "diverge",
    "execute",
    "ignore_sigint",
    "is_mode",
    "leftover",
    "memcg_refused",
    "reference",
    "run_batch",
    "shrink_finding"
]

Mode = str
"""``policies``, ``kernel`` or a ``vm:`` backend spec."""
MODES: tuple[Mode, ...] = ("policies", "kernel")
"""The modes that need no spec; any ``vm:LINE`` is a mode too (`is_mode`)."""


def is_mode(mode: str) -> bool:
    """Whether ``mode`` names a side to fuzz against."""
    return mode in MODES or mode.startswith("vm:")


_REFERENCES: dict[str, Backend] = {}
"""The real kernel of each mode, made once per process (a vm backend keeps its boots' cache)."""


def reference(mode: Mode, options: Options) -> Backend:
    """The real kernel ``mode`` compares the model with."""
    if mode not in _REFERENCES:
        if mode == "kernel":
            from hugetlbsim.backends.kernel import KernelBackend

            _REFERENCES[mode] = KernelBackend(lock_timeout=options.lock_timeout)
        else:
            from hugetlbsim.backends.vm.backend import backend_from_spec

            _REFERENCES[mode] = backend_from_spec(mode)
    return _REFERENCES[mode]


def _model_for(mode: Mode, options: Options) -> ModelBackend:
    """The model at the compared kernel's point (the default line against this machine)."""
    if mode == "kernel":
        return ModelBackend("6.18")
    return ModelBackend("6.18", kernel(reference(mode, options).version()).name)


def memcg_refused(mode: Mode, options: Options) -> str | None:
    """Why the sides of ``mode`` cannot run ``memory_accounting`` scenarios (None if they can).

    cgroup2's memory_hugetlb_accounting came in 6.7 (8cba9576df60): a 6.1 guest refuses the
    mount option (EINVAL) and the model at 6.1 refuses the scenario; the host's kernel backend
    refuses every such scenario (the option is global to the machine, exit 3).  A refused
    scenario would only be "not run", so a campaign that would generate one is refused whole.
    """
    if mode == "kernel":
        return ("the kernel backend never runs memory_accounting scenarios on this machine "
                "(the cgroup2 mount option is machine-wide); fuzz a guest: --against vm:6.12")
    line = kernel() if mode == "policies" else _model_for(mode, options).kernel
    assert line is not None
    if not line.has(MEMCG_HUGETLB):
        return (f"kernel {line.name} has no memory_hugetlb_accounting (added in 6.7, "
                f"{MEMCG_HUGETLB.commit}): memory_accounting scenarios would be refused")
    return None


@dataclass(frozen=True)
class Options:
    """What a batch needs besides its seeds (picklable: it travels with each task)."""

    gen: GenOptions = field(default_factory=GenOptions)
    shrink: bool = True
    known: frozenset[str] = frozenset()
    """Signatures already shrunk elsewhere: findings with these are reported, not shrunk."""
    budget: int = 400
    """Most predicate runs spent shrinking one finding."""
    lock_timeout: float = 600.0
    """Seconds a kernel session waits for another hugetlbsim session to finish."""


@dataclass(frozen=True)
class Finding:
    """One scenario on which the two sides disagree (or one side raised)."""

    seed: int
    mode: Mode
    signature: str
    """What kind of divergence: the first differing operation and what differed there."""
    detail: tuple[str, ...]
    """The first differing step and its differences, one per line."""
    steps: int
    shrunk: str | None = None
    """The shrunk scenario file (YAML with expect blocks), if it was shrunk."""
    shrunk_steps: int = 0
    reproduced: bool = True
    """False if the divergence did not show again when the scenario was re-run (flaky): then
    ``shrunk`` is the whole scenario, without expect blocks."""


@dataclass(frozen=True)
class BatchResult:
    """What one task reports: how much it ran and what it found."""

    scenarios: int
    steps: int
    findings: tuple[Finding, ...]
    unsafe: tuple[tuple[int, str], ...] = ()
    """Kernel mode: (seed, why) of scenarios not run on the kernel (see `leftover`)."""


@dataclass
class Outcome:
    """One scenario on one backend: its trace up to the step that raised, if one did."""

    trace: Trace
    error: str | None = None
    """``ExceptionType: message`` of the step at index ``len(trace.steps)``."""


@dataclass(frozen=True)
class Divergence:
    """Where and how two outcomes first part."""

    index: int
    op: str
    signature: str
    detail: tuple[str, ...]


@dataclass(frozen=True)
class Checked:
    """One scenario run on both sides of a mode."""

    found: Divergence | None
    ref: Outcome | None = None
    """The reference side (the kernel, or policy 6.18); None if it did not run."""
    unsafe: str | None = None
    """Kernel mode: why the kernel did not run the scenario (see `leftover`)."""


def leftover(scenario: Scenario) -> str | None:
    """What the kernel backend's teardown would leave behind after the scenario, as the model
    predicts it; None if the machine would be idle again.

    The model runs the steps, then what the teardown does: every process exits, the scenario's
    handles close, shm segments are removed, mounts unmounted, ``nr_hugepages`` and then
    ``nr_overcommit_hugepages`` written back to 0.  Linux 6.18 has reservation leaks that no
    teardown undoes (a failed mmap on a mount with both ``size=`` and ``min_size=`` loses one
    reservation for good; a failed fault on such a mount keeps its subpool, and so its
    min_size reservation, after umount); a scenario that would trigger one must never run on
    the kernel.  The prediction is only as good as the model: an unforeseen leak still stops
    the campaign when the backend's teardown finds the machine not idle (`KernelNotClean`).
    """
    system = System(pagesize=scenario.pagesize, pool_pages=scenario.pool_pages,
                    pool_overcommit=scenario.pool_overcommit, policy="6.18")
    try:
        for step in scenario.steps:
            system.apply(step.op, step.args)
        for proc in list(system.procs):
            system.apply("exit", {"proc": proc})
        for file in sorted(system.handles):
            system.apply("close", {"file": file})
        for shm in list(system.shms):
            system.apply("shmrm", {"shm": shm})
        for mount in list(system.mounts):
            system.apply("umount", {"name": mount})
        system.apply("pool", {"pages": 0})
        system.apply("pool", {"overcommit": 0})
    except Exception as exc:
        return f"the model cannot play the teardown ({type(exc).__name__}: {exc})"
    h = system.hstate
    left = {"Total": h.nr_huge_pages, "Free": h.free_huge_pages, "Rsvd": h.resv_huge_pages,
            "Surp": h.surplus_huge_pages}
    if any(left.values()) or system.mounts:
        return ("after teardown the model predicts " + ", ".join(
            f"{k} {show_value(normalized(v))}" for k, v in left.items())
            + "".join(f", mount {m} busy" for m in system.mounts))
    return None


def execute(scenario: Scenario, backend: Backend) -> Outcome:
    """Run the scenario like `hugetlbsim.runner.run`, but an exception inside a step ends the
    trace there and is recorded; a kernel that cannot run or clean up aborts the campaign."""
    from hugetlbsim.backends.kernel import KernelNotClean

    trace = Trace(backend=backend.name, kernel=backend.version(), scenario=scenario.name)
    session = backend.open(scenario)
    try:
        for step in scenario.steps:
            try:
                result = session.apply(step.op, step.args)
                state = session.state()
            except (KernelNotClean, BackendUnavailable):
                raise
            except Exception as exc:
                # A recount that finds a broken invariant later names the step that broke it.
                del trace.steps[getattr(exc, "step", len(trace.steps)):]
                return Outcome(trace, f"{type(exc).__name__}: {' '.join(str(exc).split())}")
            trace.steps.append(StepRecord(
                index=step.index, op=step.op,
                args={k: v for k, v in step.args.items() if v is not None},
                result=result, state=state, line=step.line))
    finally:
        session.close()
    return Outcome(trace)


def _generic(key: str) -> str:
    """A difference's key without the object's name: ``cgroup.g1.rsvd`` → ``cgroup.rsvd``."""
    parts = key.split(".")
    return ".".join(parts[:1] + parts[2:]) if parts[0] in ("cgroup", "mount", "file") else key


def _visible(record: StepRecord) -> tuple[str, dict[str, Any]]:
    """The result and state of a step without the model's file ``regions`` (a quick test of
    sameness before `compare` looks closer; it may only report too much)."""
    files = {name: {k: v for k, v in f.items() if k != "regions"}
             for name, f in record.state.get("files", {}).items()}
    return record.result, {**record.state, "files": files}


def diverge(scenario: Scenario, ref: Outcome, other: Outcome, *, watermarks: bool,
            names: tuple[str, str] | None = None) -> Divergence | None:
    """The first step where the outcomes differ: a counter or result, or an exception."""
    n = min(len(ref.trace.steps), len(other.trace.steps))
    a = replace(ref.trace, steps=ref.trace.steps[:n])
    b = replace(other.trace, steps=other.trace.steps[:n])
    diffs: list[StepDiff] = []
    if not all(_visible(sa) == _visible(sb) for sa, sb in zip(a.steps, b.steps, strict=True)):
        diffs = compare(a, b, watermarks=watermarks)
    names = names or (f"{a.backend} {a.kernel}", f"{b.backend} {b.kernel}")
    if diffs:
        first = diffs[0]
        keys = sorted({_generic(d.key) for d in first.differences})
        detail = tuple(f"{d.key}: {names[0]} {show_value(d.a)}, {names[1]} {show_value(d.b)}"
                       for d in first.differences)
        return Divergence(first.index, first.op, f"{first.op}: {', '.join(keys)}", detail)
    for name, outcome in zip(names, (ref, other), strict=True):
        raised = _raised(scenario, outcome, name)
        if raised is not None and raised.index == n:
            return raised
    return None


def _raised(scenario: Scenario, outcome: Outcome, name: str) -> Divergence | None:
    """The step at which ``outcome`` raised, as a divergence (None if it did not)."""
    if outcome.error is None:
        return None
    n = len(outcome.trace.steps)
    kind, op = outcome.error.partition(":")[0], scenario.steps[n].op
    return Divergence(n, op, f"{op}: {name.split()[0]} raises {kind}",
                      (f"{name} raised {outcome.error}",))


def _same(found: Divergence, again: Divergence | None) -> bool:
    """Whether a shrunk candidate still shows the same divergence (same kind, same operation,
    some difference in common), so shrinking does not slide onto another bug."""
    if again is None:
        return False
    if " raises " in found.signature or " raises " in again.signature:
        return found.signature == again.signature
    op, _, keys = found.signature.partition(": ")
    op_again, _, keys_again = again.signature.partition(": ")
    return op == op_again and bool(set(keys.split(", ")) & set(keys_again.split(", ")))


def check(scenario: Scenario, mode: Mode, options: Options) -> Checked:
    """Run one scenario on both sides of the mode and find where they part.

    In kernel mode the kernel runs only the steps the model got through, and only if the model
    predicts that the teardown leaves the machine idle (`leftover`).
    """
    if mode == "policies":
        ref = execute(scenario, ModelBackend("6.18"))
        other = execute(scenario, ModelBackend("v7"))
        return Checked(diverge(scenario, ref, other, watermarks=True,
                               names=("model 6.18", "model v7")), ref)
    model_backend = _model_for(mode, options)
    model = execute(scenario, model_backend)
    ran = _ran(scenario, model)
    if mode == "kernel":
        unsafe = leftover(ran)
        if unsafe is not None:
            return Checked(_raised(scenario, model, "model 6.18"), None, unsafe)
    try:
        real = execute(ran, reference(mode, options))
    except (RuntimeError, BackendUnavailable) as exc:
        # In a guest, a scenario that hung, crashed it or was refused there is reported and
        # the campaign goes on; on this machine, the campaign stops.
        if mode == "kernel" or type(exc).__name__ == "KernelNotClean":
            raise
        return Checked(_raised(scenario, model, "model"), None, f"not run: {exc}")
    return Checked(diverge(scenario, real, model, watermarks=False), real)


def _ran(scenario: Scenario, model: Outcome) -> Scenario:
    """The steps the model got through (a kernel runs no further than the model could)."""
    return replace(scenario, steps=scenario.steps[:len(model.trace.steps)])


def _describe(scenario: Scenario, found: Divergence) -> tuple[str, ...]:
    step = scenario.steps[found.index] if found.index < len(scenario.steps) else None
    where = f"step {found.index} ({step.op})" if step is not None else f"step {found.index}"
    return (where, *found.detail)


def run_batch(seeds: Sequence[int], mode: Mode, options: Options) -> BatchResult:
    """Generate, run and compare the scenario of each seed; shrink what diverges.

    A top-level function of picklable arguments: the task any executor runs.
    """
    findings: list[Finding] = []
    unsafe: list[tuple[int, str]] = []
    known = set(options.known)
    steps = 0
    scenarios = [generate(seed, options.gen) for seed in seeds]
    if mode.startswith("vm:"):  # one boot for the batch
        model = _model_for(mode, options)
        prepare(reference(mode, options), [_ran(s, execute(s, model)) for s in scenarios])
    for seed, scenario in zip(seeds, scenarios, strict=True):
        steps += len(scenario.steps)
        checked = check(scenario, mode, options)
        if checked.unsafe is not None:
            unsafe.append((seed, checked.unsafe))
        found = checked.found
        if found is None:
            continue
        finding = Finding(seed, mode, found.signature, _describe(scenario, found),
                          len(scenario.steps))
        if options.shrink and found.signature not in known:
            known.add(found.signature)
            finding = shrink_finding(scenario, finding, found, mode, options)
        findings.append(finding)
    return BatchResult(len(seeds), steps, tuple(findings), tuple(unsafe))


def shrink_finding(scenario: Scenario, finding: Finding, found: Divergence, mode: Mode,
                   options: Options) -> Finding:
    """Shrink the scenario while the same divergence persists; record the reference side.

    A model that raises needs no kernel to show it: that shrinks on the model alone (both
    policies raise alike), and only the final scenario runs on the kernel, where safe.
    """
    judge: Mode = "policies" if " model raises " in found.signature else mode

    def still(candidate: Scenario) -> bool:
        return _same(found, check(candidate, judge, options).found)

    names = {"policies": ("policy 6.18", "policy v7"), "kernel": ("the kernel", "model 6.18")}
    names.setdefault(mode, (f"the {mode} kernel", "the model at its point"))
    title = f"hugetlbsim fuzz --against {mode}: {names[mode][0]} and {names[mode][1]} differ"
    gen = options.gen
    original = (f"hugetlbsim fuzz --against {mode} --seed {finding.seed} --count 1"
                + (f" --cgroups {gen.cgroups}" if gen.cgroups != "mixed" else "")
                + (f" --memcg {gen.memory_accounting:g}" if gen.memory_accounting else ""))
    small = shrink(scenario, still, budget=options.budget)
    checked = check(small, mode, options)
    if checked.found is None:
        comments = (title, f"seed {finding.seed}: did not diverge again when re-run (flaky); "
                    f"the first run ({original}) showed:", *finding.detail)
        text = scenario_text(replace(scenario, name=f"fuzz-{mode}-seed-{finding.seed}"),
                             comments)
        return replace(finding, shrunk=text, shrunk_steps=len(scenario.steps),
                       reproduced=False)
    again = checked.found
    ref = checked.ref
    recorded_from = names[mode][0]
    if ref is None:
        ref, recorded_from = execute(small, ModelBackend("6.18")), "model 6.18"
    if len(ref.trace.steps) < len(small.steps):
        recorded_from += f" (steps 0-{len(ref.trace.steps) - 1})"
    comments = (
        title,
        f"seed {finding.seed}, shrunk from {finding.steps} to {len(small.steps)} steps; "
        f"the original: {original}",
        *_describe(small, again),
        f"expect blocks: what {recorded_from} showed",
    )
    recorded = with_expect(replace(small, name=f"fuzz-{mode}-seed-{finding.seed}"), ref.trace)
    return replace(finding, detail=_describe(small, again),
                   shrunk=scenario_text(recorded, comments), shrunk_steps=len(small.steps))


@dataclass
class Summary:
    """Totals of a campaign so far."""

    scenarios: int = 0
    steps: int = 0
    findings: list[Finding] = field(default_factory=list)
    unsafe: list[tuple[int, str]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def add(self, result: BatchResult) -> None:
        self.scenarios += result.scenarios
        self.steps += result.steps
        self.findings.extend(result.findings)
        self.unsafe.extend(result.unsafe)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def by_signature(self) -> dict[str, list[Finding]]:
        """Findings grouped by signature, shrunk ones first in each group."""
        groups: dict[str, list[Finding]] = {}
        for f in sorted(self.findings, key=lambda f: (f.shrunk is None, f.seed)):
            groups.setdefault(f.signature, []).append(f)
        return groups


def _seed_batches(seed: int, count: int | None, batch: int) -> Iterator[tuple[int, ...]]:
    start = seed
    while count is None or start < seed + count:
        n = batch if count is None else min(batch, seed + count - start)
        yield tuple(range(start, start + n))
        start += n


def campaign(mode: Mode, executor: Executor, *, seed: int, count: int | None = None,
             seconds: float | None = None, batch: int = 50, in_flight: int = 2,
             options: Options | None = None,
             on_result: Callable[[Summary, BatchResult], None] | None = None) -> Summary:
    """Run seeds ``seed, seed+1, ...`` in batches on ``executor`` until ``count`` scenarios
    ran or ``seconds`` passed (batches under way then still finish).

    At most ``in_flight`` batches are submitted at a time; each result is added to the summary
    and passed to ``on_result``.  Signatures found so far travel with later batches, so a
    divergence seen again is counted but not shrunk again.  On an exception (Ctrl-C included)
    the batches not yet started are cancelled and the running ones are waited for.
    ValueError if the options ask for ``memory_accounting`` scenarios that a side of the mode
    refuses (`memcg_refused`).
    """
    options = options or Options()
    if options.gen.memory_accounting > 0 and (why := memcg_refused(mode, options)) is not None:
        raise ValueError(why)
    summary = Summary()
    deadline = None if seconds is None else summary.started + seconds
    batches = _seed_batches(seed, count, batch)
    pending: set[Future[BatchResult]] = set()

    def submit() -> bool:
        if deadline is not None and time.monotonic() >= deadline:
            return False
        seeds = next(batches, None)
        if seeds is None:
            return False
        known = frozenset(f.signature for f in summary.findings)
        pending.add(executor.submit(run_batch, seeds, mode, replace(options, known=known)))
        return True

    try:
        while len(pending) < in_flight and submit():
            pass
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                pending.discard(future)
                result = future.result()
                summary.add(result)
                if on_result is not None:
                    on_result(summary, result)
            while len(pending) < in_flight and submit():
                pass
    except BaseException:
        for future in pending:
            future.cancel()
        wait(pending)
        raise
    return summary


def ignore_sigint() -> None:
    """Process-pool initializer: Ctrl-C is the parent's business (it cancels and waits)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
