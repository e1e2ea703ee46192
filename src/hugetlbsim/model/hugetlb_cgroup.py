"""hugetlb cgroups, cgroup v1 meaning (mm/hugetlb_cgroup.c, mm/page_counter.c).

Every cgroup has two hierarchical `PageCounter`s per page size: the fault counter
(`hugepage[idx]`: pages allocated) and the reservation counter (`rsvd_hugepage[idx]`:
reservations plus allocations made without one).  A charge walks from the cgroup to the root
and fails at the first level whose limit it would exceed.  Units here are huge pages (the
kernel counts base pages and rounds limits down to whole huge pages, so nothing is lost).
This layer knows nothing of mappings: the flows above decide who pays for what.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["HugetlbCgroup", "PageCounter"]


@dataclass(eq=False)
class PageCounter:
    """`struct page_counter`: usage, limit (None = unlimited), watermark, failcnt."""

    parent: PageCounter | None = None
    usage: int = 0
    limit: int | None = None
    watermark: int = 0
    failcnt: int = 0

    def try_charge(self, pages: int) -> PageCounter | None:
        """Charge every level up to the root; on failure roll back and return the level hit.

        Each level's watermark is raised as soon as that level accepts, so a parent refusing
        still leaves the child's watermark raised (live-kernel.md §4.2, P07c).
        """
        counter: PageCounter | None = self
        while counter is not None:
            new = counter.usage + pages
            if counter.limit is not None and new > counter.limit:
                counter.failcnt += 1
                undo: PageCounter | None = self
                while undo is not counter and undo is not None:
                    undo.usage -= pages
                    undo = undo.parent
                return counter
            counter.usage = new
            counter.watermark = max(counter.watermark, new)
            counter = counter.parent
        return None

    def uncharge(self, pages: int) -> None:
        """`page_counter_uncharge`: every level up to the root."""
        counter: PageCounter | None = self
        while counter is not None:
            counter.usage -= pages
            counter = counter.parent

    def cancel(self, pages: int) -> None:
        """`page_counter_cancel`: this level only (charges moved to the parent at offline)."""
        self.usage -= pages


@dataclass(eq=False)
class HugetlbCgroup:
    """One hugetlb cgroup: its counters, its place in the tree, its tasks."""

    name: str
    parent: HugetlbCgroup | None = None
    fault: PageCounter = field(default_factory=PageCounter)
    rsvd: PageCounter = field(default_factory=PageCounter)
    children: list[HugetlbCgroup] = field(default_factory=list)
    nr_tasks: int = 0
    online: bool = True

    @classmethod
    def child_of(cls, parent: HugetlbCgroup, name: str) -> HugetlbCgroup:
        """mkdir: a new cgroup below ``parent``, its counters linked to the parent's."""
        cg = cls(name, parent, PageCounter(parent.fault), PageCounter(parent.rsvd))
        parent.children.append(cg)
        return cg

    def __repr__(self) -> str:
        return f"<cgroup {self.name}>"

    def charge_fault(self, pages: int = 1) -> PageCounter | None:
        """`hugetlb_cgroup_charge_cgroup`: None on success, else the counter whose limit hit."""
        return self.fault.try_charge(pages)

    def charge_rsvd(self, pages: int) -> PageCounter | None:
        """`hugetlb_cgroup_charge_cgroup_rsvd`: None on success, else the counter hit."""
        return self.rsvd.try_charge(pages)

    def refusal(self, hit: PageCounter, pages: int) -> str:
        """One sentence naming the cgroup and limit that refused a charge of ``pages``."""
        cg: HugetlbCgroup | None = self
        while cg is not None and hit is not cg.fault and hit is not cg.rsvd:
            cg = cg.parent
        name = cg.name if cg is not None else self.name
        which = "fault" if cg is not None and hit is cg.fault else "reservation"
        return (f"the hugetlb cgroup '{name}' {which} limit is {hit.limit} pages with "
                f"{hit.usage} in use, so a charge of {pages} was refused")

    def set_limit(self, which: str, limit: int | None) -> bool:
        """Write a limit (`page_counter_set_max`); False (EBUSY) if below current usage."""
        counter = self.fault if which == "limit" else self.rsvd
        if limit is not None and limit < counter.usage:
            return False
        counter.limit = limit
        return True

    def css_offline(self) -> None:
        """rmdir: fault charges move to the parent; reservation charges stay here.

        The parent's hierarchical usage already includes them, so only this level is
        cancelled.  The caller re-points the pages charged here at the parent.
        """
        assert self.parent is not None, "the root cgroup cannot be removed"
        self.fault.cancel(self.fault.usage)
        self.online = False
        self.parent.children.remove(self)

    def check(self) -> None:
        for counter in (self.fault, self.rsvd):
            assert counter.usage >= 0, f"{self.name}: negative usage {counter}"
            assert counter.watermark >= 0
        for child in self.children:
            assert child.parent is self
            assert child.fault.parent is self.fault and child.rsvd.parent is self.rsvd
