"""What runs inside the guest: the batch of scenarios on the project's own kernel backend.

``python3.11 -m hugetlbsim.backends.vm.guest BATCH.json PORT`` is started by the initramfs'
``/init`` after it has mounted proc, sys and dev.  Each scenario runs through `KernelBackend`
exactly as on the host (the guest is its only user: the session lock and the run directory
live in the guest's own /tmp; the guest is disposable, so a ``memory_accounting`` scenario may
remount its cgroup2), the result and state after every step are sent back as one
``trace`` frame (see `frames`).  After each scenario the pool must be idle (HugePages_Rsvd 0,
no surplus, free == total, no overcommit): if it is not, a real kernel bug has broken it for
the rest of this boot, so the guest says ``broken`` and stops; the host goes on in a fresh
guest.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Mapping
from typing import Any

from hugetlbsim.backends import kernel_sys as ks
from hugetlbsim.backends.base import BackendUnavailable
from hugetlbsim.backends.kernel import KernelBackend, KernelNotClean
from hugetlbsim.backends.kernel_cleanup import NR_OVERCOMMIT
from hugetlbsim.backends.vm.frames import FrameWriter, scenario_from_wire

__all__ = ["main", "pool_broken", "run_item"]


def pool_broken() -> str | None:
    """Why the pool is not idle, or None."""
    mi = ks.meminfo_hugepages()
    ovc = ks.read_int(NR_OVERCOMMIT)
    if mi["rsvd"] or mi["surp"] or mi["free"] != mi["total"] or ovc:
        return (f"HugePages_Total/Free/Rsvd/Surp = {mi['total']}/{mi['free']}/{mi['rsvd']}/"
                f"{mi['surp']}, nr_overcommit_hugepages = {ovc}")
    return None


def run_item(backend: KernelBackend, item: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Run one scenario: (``"trace"``, body) or (``"error"``, body)."""
    index = item["i"]
    t0 = time.monotonic()
    try:
        scenario = scenario_from_wire(item)
        session = backend.open(scenario)
    except BackendUnavailable as e:
        return "error", {"i": index, "kind": "unavailable", "message": str(e)}
    except Exception:
        return "error", {"i": index, "kind": "error", "message": traceback.format_exc()}
    t1 = time.monotonic()
    steps: list[list[Any]] = []
    not_clean = None
    try:
        try:
            for step in scenario.steps:
                result = session.apply(step.op, step.args)
                steps.append([step.op, result, session.state()])
        finally:
            t2 = time.monotonic()
            try:
                session.close()
            except KernelNotClean as e:
                not_clean = str(e)
    except Exception:
        return "error", {"i": index, "kind": "error", "message": traceback.format_exc(),
                         "steps": len(steps)}
    t3 = time.monotonic()
    return "trace", {"i": index, "steps": steps, "not_clean": not_clean,
                     "timing": {"open": t1 - t0, "steps": t2 - t1, "close": t3 - t2}}


def _uptime() -> float:
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])


def main(argv: list[str]) -> int:
    """Run the batch file ``argv[0]``, writing frames to ``argv[1]``."""
    batch_path, port = argv
    out = FrameWriter(port)
    try:
        with open(batch_path) as f:
            batch = json.load(f)
        out.send("hello", {"uname": os.uname().release, "python": sys.version.split()[0],
                           "uptime": _uptime()})
        backend = KernelBackend(max_pages=batch["max_pages"], tmpdir="/tmp",
                                remount_cgroup2=True)
        for item in batch["scenarios"]:
            out.send("begin", {"i": item["i"]})
            kind, body = run_item(backend, item)
            out.send(kind, body)
            why = pool_broken() or body.get("not_clean")
            if why is not None:
                out.send("broken", {"i": item["i"], "why": why})
                break
        out.send("end", {"uptime": _uptime()})
    finally:
        out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
