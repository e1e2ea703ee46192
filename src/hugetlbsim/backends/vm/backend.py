"""`VmBackend`: the Backend protocol of `hugetlbsim.backends.base`, on a kernel in a guest.

A guest boot costs seconds, so the backend works in batches: `VmBackend.prepare` runs many
scenarios in one boot (more only when a scenario breaks the pool or hangs) and keeps their
results; `VmBackend.open` then hands out a `VmSession` that replays one scenario's recorded
results and states to the runner, step by step, exactly as a live session would have
returned them.  `open` on a scenario that was not prepared runs it in a boot of its own, so
a caller with many scenarios calls `prepare` with all of them, then `hugetlbsim.runner.run`
on each as usual.

Backend specs: ``vm:6.1`` (the newest cached 6.1 kernel), ``vm:6.12``, or an exact release
``vm:6.1.0-57-cloud-amd64``; options follow a ``?`` (``vm:6.12?mem=2048``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hugetlbsim.backends.base import BackendFailed, BackendUnavailable, ScenarioRefused
from hugetlbsim.backends.vm.boot import BootOptions, BootStats, Outcome, run_batch
from hugetlbsim.backends.vm.cache import (
    CachedKernel,
    KernelNotCached,
    cache_dir,
    install_command,
    missing_host_pieces,
    resolve_cached,
)
from hugetlbsim.backends.vm.frames import scenario_to_wire
from hugetlbsim.backends.vm.initramfs import InitramfsError, build_initramfs
from hugetlbsim.format.scenario import Scenario

__all__ = [
    "VmBackend",
    "VmScenarioError",
    "VmSession",
    "VmSpec",
    "backend_from_spec",
    "is_vm_spec",
    "parse_spec",
]

_SPEC = re.compile(r"vm:([A-Za-z0-9.+_-]+)(?:\?(.*))?")
_OPTIONS = {"mem": "memory_mb", "max_pages": "max_pages", "timeout": "scenario_timeout",
            "numa": "numa"}


class VmScenarioError(BackendFailed):
    """A scenario did not run to the end in its guest (it hung, the guest crashed, a record
    came back garbled, or the kernel backend failed inside)."""


@dataclass(frozen=True)
class VmSpec:
    """A parsed ``vm:`` backend spec."""

    kernel: str
    """A kernel line (``6.1``) or an exact ``uname -r``."""
    options: tuple[tuple[str, int], ...] = ()


def is_vm_spec(text: str) -> bool:
    """Whether a ``--backend`` value names the vm backend."""
    return text == "vm" or text.startswith("vm:")


def parse_spec(text: str) -> VmSpec:
    """``vm:6.1``, ``vm:6.12?mem=2048``, ``vm:6.1.0-57-cloud-amd64``; ValueError if malformed."""
    m = _SPEC.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"not a vm backend spec: {text!r} (examples: vm:6.1, vm:6.12, "
                         "vm:6.1.0-57-cloud-amd64)")
    options: list[tuple[str, int]] = []
    for part in filter(None, (m.group(2) or "").split("&")):
        key, eq, value = part.partition("=")
        if key not in _OPTIONS or not eq or not value.isdigit() or int(value) <= 0:
            raise ValueError(f"bad vm option {part!r} in {text!r} (known: "
                             f"{', '.join(f'{k}=N' for k in _OPTIONS)})")
        options.append((key, int(value)))
    return VmSpec(m.group(1), tuple(options))


def _key(scenario: Scenario) -> str:
    """What identifies a scenario's run: everything the guest receives."""
    return json.dumps(scenario_to_wire(scenario, 0), sort_keys=True)


class VmSession:
    """One scenario's recorded run, replayed step by step."""

    def __init__(self, outcome: Outcome) -> None:
        self._steps = outcome.steps
        self._next = 0
        self.outcome = outcome

    def apply(self, op: str, args: Mapping[str, Any]) -> str:
        """The recorded result of the next step (which must be ``op``)."""
        if self._next >= len(self._steps):
            raise VmScenarioError(f"the guest recorded {len(self._steps)} steps only")
        rec_op, result, _ = self._steps[self._next]
        if rec_op != op:
            raise VmScenarioError(f"step {self._next}: the guest ran {rec_op}, not {op}")
        self._next += 1
        return result

    def state(self) -> dict[str, Any]:
        """The state the guest read after the last step."""
        if self._next == 0:
            raise VmScenarioError("no step has been applied")
        return self._steps[self._next - 1][2]

    def explain(self) -> str | None:
        """The kernel gives no reasons."""
        return None

    def kernel(self) -> str:
        """The guest's ``uname -r``, as it reported it."""
        return self.outcome.uname

    def close(self) -> None:
        """Nothing to release: the guest is gone already."""


class VmBackend:
    """Runs scenarios in qemu guests booted from one cached Debian kernel."""

    name = "vm"

    def __init__(self, kernel: CachedKernel, cache: Path | None = None,
                 options: BootOptions | None = None,
                 log: Callable[[str], None] = lambda s: None) -> None:
        self.kernel = kernel
        self.cache = cache or cache_dir()
        self.options = options or BootOptions()
        self.log = log
        self.stats: list[BootStats] = []
        """Timings of every boot so far."""
        self._results: dict[str, Outcome] = {}
        self._initramfs: Path | None = None

    def version(self) -> str:
        """The guest's ``uname -r`` (each boot checks that the guest reports it)."""
        return self.kernel.uname

    def initramfs(self) -> Path:
        """The cached initramfs for this source tree (built on first use)."""
        if self._initramfs is None:
            try:
                self._initramfs = build_initramfs(self.cache)
            except InitramfsError as e:
                raise BackendUnavailable(str(e)) from e
        return self._initramfs

    def prepare(self, scenarios: Sequence[Scenario]) -> list[Outcome]:
        """Run these scenarios in as few boots as possible and keep their outcomes for
        `open`; scenarios already prepared are not run again."""
        keys = [_key(s) for s in scenarios]
        todo: dict[str, Scenario] = {}
        for k, s in zip(keys, scenarios, strict=True):
            if k not in self._results:
                todo.setdefault(k, s)
        if todo:
            # cgroup v2 scenarios first: on 6.1, once a v1 hugetlb hierarchy has been mounted
            # and unmounted, hugetlb is slow to come back to cgroup2 (measured on 6.1 guests).
            todo = dict(sorted(todo.items(), key=lambda kv: kv[1].cgroups != "v2"))
            items = [scenario_to_wire(s, i) for i, s in enumerate(todo.values())]
            outcomes = run_batch(self.kernel, self.initramfs(), items, self.options,
                                 self.cache, self.log, self.stats)
            for k, o in zip(todo, outcomes, strict=True):
                self._results[k] = o
        return [self._results[k] for k in keys]

    def open(self, scenario: Scenario) -> VmSession:
        """A replay of the scenario's run (run now, alone, if it was not prepared)."""
        outcome = self.prepare([scenario])[0]
        self._results.pop(_key(scenario), None)  # a second run of the file runs it again
        if outcome.kind == "trace":
            return VmSession(outcome)
        if outcome.kind == "unavailable":
            # the guest is fresh for each batch: what it refuses is this scenario
            raise ScenarioRefused(f"in the {self.kernel.uname} guest: {outcome.message}")
        raise VmScenarioError(f"{scenario.name or scenario.path} on {self.kernel.uname}: "
                              f"{outcome.kind}: {outcome.message}")


def backend_from_spec(spec: str | VmSpec, cache: Path | None = None,
                      log: Callable[[str], None] = lambda s: None) -> VmBackend:
    """The backend a ``vm:...`` spec names; `BackendUnavailable` (exit 3) naming the fix when
    a host piece or the kernel is missing."""
    parsed = parse_spec(spec) if isinstance(spec, str) else spec
    missing = [p for p in missing_host_pieces()
               if p.package in ("qemu-system-x86", "busybox-static", "python3.11-minimal")]
    if missing:
        raise BackendUnavailable(
            "the vm backend needs " + ", ".join(p.name for p in missing)
            + f"; install with: {install_command(missing)}")
    try:
        kernel = resolve_cached(parsed.kernel, cache)
    except KernelNotCached as e:
        raise BackendUnavailable(str(e)) from e
    fields: dict[str, Any] = {_OPTIONS[k]: v for k, v in parsed.options}
    if "scenario_timeout" in fields:
        fields["scenario_timeout"] = float(fields["scenario_timeout"])
    return VmBackend(kernel, cache, BootOptions(**fields), log)
