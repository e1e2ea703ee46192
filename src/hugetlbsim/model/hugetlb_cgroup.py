"""hugetlb cgroups (mm/hugetlb_cgroup.c, mm/page_counter.c), one set of counters for both
interfaces.

Every cgroup has two hierarchical `PageCounter`s per page size: the fault counter
(`hugepage[idx]`: pages allocated) and the reservation counter (`rsvd_hugepage[idx]`:
reservations plus allocations made without one).  A charge walks from the cgroup to the root
and fails at the first level whose limit it would exceed.  Units here are huge pages (the
kernel counts base pages and rounds limits down to whole huge pages, so nothing is lost).
cgroup v1 shows the counters' watermarks and failcnts; cgroup v2 shows the ``events`` counts
that every refused charge raises (`hugetlb_event`), and, with ``memory_hugetlb_accounting``,
the memory controller's charge of each page (`memory`).
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
    ceiling: int | None = None
    """What "unlimited" really allows (`PAGE_COUNTER_MAX` rounded down to huge pages: a single
    charge above it fails even with no limit); a child inherits its parent's."""

    def __post_init__(self) -> None:
        if self.ceiling is None and self.parent is not None:
            self.ceiling = self.parent.ceiling

    def try_charge(self, pages: int) -> PageCounter | None:
        """Charge every level up to the root; on failure roll back and return the level hit.

        Each level's watermark is raised as soon as that level accepts, so a parent refusing
        still leaves the child's watermark raised (measured: P07c).
        """
        counter: PageCounter | None = self
        while counter is not None:
            new = counter.usage + pages
            limit = counter.ceiling if counter.limit is None else counter.limit
            if limit is not None and new > limit:
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
    events: int = 0
    """The ``max`` line of ``hugetlb.<size>.events``: refused charges here and below."""
    events_local: int = 0
    """The ``max`` line of ``hugetlb.<size>.events.local``: refused charges of this
    cgroup's own tasks."""
    memory: PageCounter | None = None
    """The memory controller's hugetlb charge (``memory_hugetlb_accounting``), else None."""
    v2: bool = False
    """The tree is shown through the cgroup v2 interface (explanations name its files)."""
    size_tag: str = "2MB"
    """The page size as the cgroup files spell it (``mem_fmt``: ``2MB``, ``1GB``)."""

    @classmethod
    def child_of(cls, parent: HugetlbCgroup, name: str) -> HugetlbCgroup:
        """mkdir: a new cgroup below ``parent``, its counters linked to the parent's."""
        memory = None if parent.memory is None else PageCounter(parent.memory)
        cg = cls(name, parent, PageCounter(parent.fault), PageCounter(parent.rsvd),
                 memory=memory, v2=parent.v2, size_tag=parent.size_tag)
        parent.children.append(cg)
        return cg

    def __repr__(self) -> str:
        return f"<cgroup {self.name}>"

    def charge_fault(self, pages: int = 1) -> PageCounter | None:
        """`hugetlb_cgroup_charge_cgroup`: None on success, else the counter whose limit hit."""
        return self._charge(self.fault, pages)

    def charge_rsvd(self, pages: int) -> PageCounter | None:
        """`hugetlb_cgroup_charge_cgroup_rsvd`: None on success, else the counter hit."""
        return self._charge(self.rsvd, pages)

    def _charge(self, counter: PageCounter, pages: int) -> PageCounter | None:
        """`__hugetlb_cgroup_charge_cgroup`: a refusal, whichever level's limit refused,
        raises ``events_local`` of the charging cgroup and ``events`` of it and of every
        ancestor (`hugetlb_event`, which stops below the machine's root cgroup; the model's
        root is the scenario's, a cgroup below the machine's root, so it counts too).  Fault
        and reservation refusals count on the same ``max`` line (measured on 6.18)."""
        hit = counter.try_charge(pages)
        if hit is not None:
            self.events_local += 1
            cg: HugetlbCgroup | None = self
            while cg is not None:
                cg.events += 1
                cg = cg.parent
        return hit

    def refused_by(self, hit: PageCounter) -> tuple[HugetlbCgroup, str]:
        """The cgroup (this one or an ancestor) whose counter ``hit`` is, and which counter:
        ``"fault"`` or ``"reservation"``."""
        cg: HugetlbCgroup | None = self
        while cg is not None and hit is not cg.fault and hit is not cg.rsvd:
            cg = cg.parent
        if cg is None:
            return self, "reservation"
        return cg, "fault" if hit is cg.fault else "reservation"

    def refusal(self, hit: PageCounter, pages: int) -> str:
        """One sentence naming the cgroup and limit that refused a charge of ``pages`` (and,
        under v2, the ``events`` counters the refusal raised)."""
        cg, which = self.refused_by(hit)
        limit = hit.limit if hit.limit is not None else f"unlimited, at most {hit.ceiling},"
        if self.v2:
            moved: list[str] = []
            walk: HugetlbCgroup | None = self
            while walk is not None:
                moved.append(walk.name)
                walk = walk.parent
            local = "" if self.parent is None else f" and events.local of '{self.name}'"
            file = "max" if which == "fault" else "rsvd.max"
            return (f"hugetlb.{self.size_tag}.{file} of cgroup '{cg.name}' is {limit} "
                    f"pages with {hit.usage} in use, so a {which} charge of {pages} was "
                    f"refused; events went up in {', '.join(repr(n) for n in moved)}{local}")
        return (f"the hugetlb cgroup '{cg.name}' {which} limit is {limit} pages with "
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
        assert self.events >= self.events_local >= 0
        for child in self.children:
            assert child.parent is self
            assert child.fault.parent is self.fault and child.rsvd.parent is self.rsvd
            assert (child.memory is None) == (self.memory is None)
