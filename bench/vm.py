"""Benchmark: scenarios in qemu guests (the vm backend), side by side with the host kernel.

Run by hand (not in CI); one guest at a time, so nothing else should boot guests meanwhile::

    .venv/bin/python bench/vm.py                          # examples/*.yaml, every cached kernel
    .venv/bin/python bench/vm.py --kernels 6.1,6.12 --generated 40 --steps 50
    .venv/bin/python bench/vm.py --no-host                # without the host kernel backend

Per kernel it reports:

* **boot**: wall seconds from starting qemu to the guest's first frame (kernel boot and Python
  start), measured on a boot that runs one one-step scenario, and the whole of that boot
  (power-off included);
* **batch**: one batch of all the scenarios (in one boot unless a scenario breaks the pool):
  wall seconds, boots used, scenarios per minute and steps per second end to end;
* **steps/s in guest**: steps / guest seconds spent in `Session.apply` + `Session.state`.

The host kernel backend (root, idle pool; it changes the machine's pool while it runs, the
vm backend never does) runs the same scenarios through `hugetlbsim.runner.run` for the
``host`` row, except those the model predicts would break the machine's pool for good
(`hugetlbsim.fuzz.campaign.leftover`: generated batches can hold such sequences; a guest
shrugs them off with a re-boot, the host keeps the leak until it reboots).  The result is a
Markdown table on stdout; progress goes to stderr.  The aim
(issue 11): a 40-scenario, 2 000-step batch in under 3 minutes per kernel on 2 cores.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hugetlbsim.backends.base import BackendUnavailable
from hugetlbsim.backends.vm.backend import backend_from_spec
from hugetlbsim.backends.vm.cache import cached_kernels
from hugetlbsim.format.loader import load, load_text
from hugetlbsim.format.scenario import Scenario
from hugetlbsim.runner import run

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
ONE_STEP = "format: 1\nname: boot-probe\nsteps:\n  - mount: {name: hp}\n"


@dataclass
class Row:
    """One kernel's figures."""

    kernel: str
    boot_s: float | None = None
    boot_total_s: float | None = None
    batch_s: float = 0.0
    boots: int = 1
    scenarios: int = 0
    steps: int = 0
    guest_step_s: float | None = None
    failed: int = 0

    def cells(self) -> list[str]:
        def f(v: float | None, fmt: str = ".1f") -> str:
            return "-" if v is None else format(v, fmt)
        per_min = self.scenarios / self.batch_s * 60 if self.batch_s else None
        e2e = self.steps / self.batch_s if self.batch_s else None
        inner = self.steps / self.guest_step_s if self.guest_step_s else None
        return [self.kernel, f(self.boot_s), f(self.boot_total_s), f(self.batch_s),
                str(self.boots), f(per_min, ".0f"), f(e2e, ".0f"), f(inner, ".0f"),
                str(self.failed)]


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    """The batch: generated scenarios, or scenario files (the examples by default)."""
    if args.generated:
        from hugetlbsim.fuzz.generate import GenOptions, generate

        opts = GenOptions(min_steps=args.steps, max_steps=args.steps)
        return [generate(seed, opts) for seed in range(args.seed, args.seed + args.generated)]
    files = args.files or sorted(glob.glob(str(EXAMPLES_DIR / "*.yaml")))
    return [load(f) for f in files]


def bench_vm(spec: str, batch: list[Scenario]) -> Row:
    """Boot time, then the whole batch, on one kernel."""
    backend = backend_from_spec(spec, log=_log)
    row = Row(backend.version())
    backend.initramfs()  # built (or found) before any timing
    backend.prepare([load_text(ONE_STEP, "boot-probe.yaml")])
    probe = backend.stats[-1]
    row.boot_s, row.boot_total_s = probe.hello_s, probe.total_s
    first = len(backend.stats)
    t0 = time.monotonic()
    outcomes = backend.prepare(batch)
    row.batch_s = time.monotonic() - t0
    stats = backend.stats[first:]
    row.boots = len(stats)
    row.scenarios = len(batch)
    row.steps = sum(len(o.steps) for o in outcomes)
    row.guest_step_s = sum(s.step_s for s in stats)
    row.failed = sum(o.kind != "trace" for o in outcomes)
    broken = sum(o.broken is not None for o in outcomes)
    _log(f"{row.kernel}: {row.scenarios} scenarios in {row.batch_s:.1f} s, {row.boots} boot(s)"
         f" ({broken} broken pool(s)), {row.failed} not run")
    return row


def bench_host(batch: list[Scenario]) -> Row:
    """The same scenarios on this machine's kernel (the kernel backend), except those the
    model predicts would leave the machine's pool broken for good (`fuzz.campaign.leftover`:
    Linux 6.18 leaks reservations in a few subpool sequences, which only a reboot clears)."""
    from hugetlbsim.backends.kernel import (
        LOCK_FILE,
        KernelBackend,
        KernelNotClean,
        acquire_lock,
        machine_unavailable,
        pool_busy,
    )
    from hugetlbsim.fuzz.campaign import leftover

    backend = KernelBackend(lock_timeout=float(os.environ.get("HUGETLBSIM_LOCK_TIMEOUT", "60")))
    row = Row(f"host {backend.version()}")
    why = machine_unavailable()
    if why is None:  # whether the pool is idle, asked under the sessions' lock
        fd = acquire_lock(os.path.join(backend.tmpdir, LOCK_FILE), backend.lock_timeout)
        try:
            why = pool_busy()
        finally:
            os.close(fd)
    if why is not None:
        _log(f"host: not run: {why}")
        row.failed = len(batch)
        return row
    in_steps = 0.0
    t0 = time.monotonic()
    for scenario in batch:
        unsafe = leftover(scenario)
        if unsafe is not None:
            _log(f"host: {scenario.name}: not run, {unsafe}")
            row.failed += 1
            continue
        t = time.monotonic()
        try:
            trace = run(scenario, backend)
        except BackendUnavailable as e:
            _log(f"host: {scenario.name}: {e}")
            row.failed += 1
            continue
        except KernelNotClean as e:
            _log(f"host: {scenario.name}: {e}; stopping the host row")
            row.failed += 1
            break
        in_steps += time.monotonic() - t
        row.steps += len(trace.steps)
        row.scenarios += 1
    row.batch_s = time.monotonic() - t0
    row.guest_step_s = None
    row.boots = 0
    _log(f"host: {row.scenarios} scenarios in {row.batch_s:.1f} s ({in_steps:.1f} s in runs)")
    return row


def main(argv: list[str] | None = None) -> int:
    """Parse options, run every kernel, print the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("files", nargs="*", help="scenario files (default: examples/*.yaml)")
    p.add_argument("--kernels", help="comma-separated: 6.1, 6.12, or releases "
                                     "(default: every cached kernel)")
    p.add_argument("--generated", type=int, default=0,
                   help="run N generated (fuzz) scenarios instead of files")
    p.add_argument("--steps", type=int, default=50, help="steps per generated scenario")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-host", action="store_true", help="skip the host kernel backend")
    args = p.parse_args(argv)
    batch = scenarios(args)
    kernels = (args.kernels.split(",") if args.kernels
               else [k.uname for k in cached_kernels()])
    if not kernels:
        _log("no cached kernels: hugetlbsim kernels fetch 6.1 6.12")
        return 3
    rows = []
    for k in kernels:
        try:
            rows.append(bench_vm(f"vm:{k}", batch))
        except BackendUnavailable as e:
            _log(f"vm:{k}: {e}")
    if not args.no_host:
        try:
            rows.append(bench_host(batch))
        except BackendUnavailable as e:
            _log(f"host: {e}")
    steps = sum(len(s.steps) for s in batch)
    print(f"{len(batch)} scenarios, {steps} steps; load average "
          f"{os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs\n")
    print("| kernel | boot to Python (s) | probe boot total (s) | batch (s) | boots "
          "| scenarios/min | steps/s end to end | steps/s in guest | not run |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row.cells()) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
