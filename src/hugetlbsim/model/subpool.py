"""hugetlbfs subpools (`struct hugepage_subpool`, mm/hugetlb.c): the `size=` and `min_size=`
mount options.

`max_hpages` limits reservations plus allocations of the mount (-1: none); `min_hpages` is a
pool of global reservations taken at mount time (-1: none) that the mount's reservations draw
on first (`rsv_hpages` is what is left of it).  `get_pages`/`put_pages` return how many
*global* reservations the caller must take or drop.
"""

from __future__ import annotations

from dataclasses import dataclass

from hugetlbsim.model.hstate import HState

__all__ = ["HugepageSubpool"]


@dataclass
class HugepageSubpool:
    """One mount's subpool."""

    hstate: HState
    max_hpages: int = -1
    min_hpages: int = -1
    used_hpages: int = 0
    rsv_hpages: int = 0
    count: int = 1
    released_short: int = 0
    """Global reservations the release dropped beyond what `rsv_hpages` still held.

    6.18 releases the whole min_size at the last put whatever `rsv_hpages` holds; a failed
    mmap whose unwind returned the min reserve to the pool before restoring `used_hpages`
    leaves it short, so Rsvd ends that much too low (read from the source, not measured).
    """

    @classmethod
    def new(cls, hstate: HState, max_hpages: int, min_hpages: int) -> HugepageSubpool | None:
        """`hugepage_new_subpool`: None when the min_size reservation cannot be taken."""
        if min_hpages != -1 and not hstate.hugetlb_acct_memory(min_hpages):
            return None
        return cls(hstate, max_hpages, min_hpages, 0, max(min_hpages, 0))

    def get_pages(self, delta: int) -> int | None:
        """`hugepage_subpool_get_pages`: global pages still needed, None if over `size=`."""
        if self.max_hpages != -1:
            if self.used_hpages + delta > self.max_hpages:
                return None
            self.used_hpages += delta
        if self.min_hpages != -1 and self.rsv_hpages:
            if delta > self.rsv_hpages:
                ret = delta - self.rsv_hpages
                self.rsv_hpages = 0
                return ret
            self.rsv_hpages -= delta
            return 0
        return delta

    def put_pages(self, delta: int) -> int:
        """`hugepage_subpool_put_pages`: global reservations the caller should drop."""
        ret = delta
        if self.max_hpages != -1:
            self.used_hpages -= delta
        if self.min_hpages != -1 and self.used_hpages < self.min_hpages:
            ret = 0 if self.rsv_hpages + delta <= self.min_hpages else (
                self.rsv_hpages + delta - self.min_hpages)
            self.rsv_hpages = min(self.rsv_hpages + delta, self.min_hpages)
        self._release_if_unused()
        return ret

    def put(self) -> None:
        """`hugepage_put_subpool` at umount: drop the mount's reference."""
        self.count -= 1
        self._release_if_unused()

    def _release_if_unused(self) -> None:
        """`unlock_or_release_subpool`: the last user of an unmounted subpool returns min_size."""
        if self.count == 0 and self._is_free() and self.min_hpages != -1:
            self.released_short = self.min_hpages - self.rsv_hpages
            self.hstate.hugetlb_acct_memory(-self.min_hpages)
            self.min_hpages = -1

    def _is_free(self) -> bool:
        if self.max_hpages != -1:
            return self.used_hpages == 0
        if self.min_hpages != -1:
            return self.rsv_hpages == self.min_hpages
        return True

    def statfs_free(self) -> int | None:
        """`f_bfree` of statfs: max - used, or None without `size=`."""
        return None if self.max_hpages == -1 else self.max_hpages - self.used_hpages
