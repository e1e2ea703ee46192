"""Planted accounting bugs for the fuzzer's tests (mutation checks).

`plant` patches one known bug into the model.  It is switched on for the model runs the fuzzer
compares, and off while the kernel guard (`campaign.leftover`) predicts whether a scenario can
safely run on the kernel: that prediction must always come from the real model.  The model's
own invariants are off while the bug is on, so only the comparison can catch it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

import hugetlbsim.fuzz.campaign as campaign_mod
import hugetlbsim.model.system as system_mod
import hugetlbsim.model.unmap as unmap_mod
from hugetlbsim.format.scenario import Scenario
from hugetlbsim.model.hugetlb_cgroup import HugetlbCgroup, PageCounter
from hugetlbsim.model.inode import Inode, hugetlb_unreserve_pages
from hugetlbsim.model.system import System
from hugetlbsim.model.vma import VMA

MUTATIONS = ("punch", "munmap", "rmdir")
"""punch: a hole punch also releases the reservations of never-faulted pages in the hole;
munmap: closing a private owner mapping keeps its unconsumed reservations;
rmdir: removing a cgroup charges its reservation usage to the parent again."""


@dataclass
class Switch:
    """Whether the planted bug is active."""

    on: bool = True


def plant(mutation: str, monkeypatch: pytest.MonkeyPatch) -> Switch:
    """Patch ``mutation`` into the model; returns its switch (on)."""
    switch = Switch()
    if mutation == "punch":
        punch_hole = system_mod.hugetlbfs_punch_hole

        def punch(inode: Inode, offset: int, length: int) -> None:
            punch_hole(inode, offset, length)
            if switch.on:
                hugetlb_unreserve_pages(inode, offset, offset + length, 0)

        monkeypatch.setattr(system_mod, "hugetlbfs_punch_hole", punch)
    elif mutation == "munmap":
        vm_op_close = unmap_mod.hugetlb_vm_op_close

        def close(vma: VMA) -> None:
            if not (switch.on and vma.private_owner and vma.resv is not None):
                vm_op_close(vma)
            elif vma.resv.cgroup is not None:
                vma.resv.cgroup.rsvd.uncharge(vma.end - vma.start)

        monkeypatch.setattr(unmap_mod, "hugetlb_vm_op_close", close)
    elif mutation == "rmdir":
        css_offline = HugetlbCgroup.css_offline

        def offline(cg: HugetlbCgroup) -> None:
            moved, parent = cg.rsvd.usage, cg.parent
            css_offline(cg)
            if switch.on and moved and parent is not None:
                cg.rsvd.cancel(moved)
                counter: PageCounter | None = parent.rsvd
                while counter is not None:
                    counter.usage += moved
                    counter.watermark = max(counter.watermark, counter.usage)
                    counter = counter.parent

        monkeypatch.setattr(HugetlbCgroup, "css_offline", offline)
    else:
        raise ValueError(mutation)
    check_invariants = System.check_invariants

    def invariants(system: System) -> None:
        if not switch.on:
            check_invariants(system)

    monkeypatch.setattr(System, "check_invariants", invariants)
    leftover = campaign_mod.leftover

    def real_leftover(scenario: Scenario) -> str | None:
        was, switch.on = switch.on, False
        try:
            return leftover(scenario)
        finally:
            switch.on = was

    monkeypatch.setattr(campaign_mod, "leftover", real_leftover)
    return switch


def off(switch: Switch, run: Callable[[], Any]) -> Any:
    """``run()`` with the planted bug switched off."""
    was, switch.on = switch.on, False
    try:
        return run()
    finally:
        switch.on = was
