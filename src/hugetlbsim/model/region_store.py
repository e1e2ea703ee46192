"""Sorted storage for disjoint half-open ranges: the container behind `resv_map`.

The kernel keeps a reservation map's `file_region`s in a linked list and walks it from the
head, so one call costs O(n).  This store keeps the same ordered sequence in blocks of flat
`array('q')` columns (starts, ends) plus a list of uncharge infos, with a per-block index of the
last end for bisection.  Locating a range is O(log n); changing k entries costs O(k + LOAD).
Memory is about 26 bytes per range (two int64 columns and one pointer).

Ranges are disjoint and non-empty, so both starts and ends are strictly increasing: a range is
found by bisecting on ends, which also finds the neighbour that merely touches ``f``.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Sequence

__all__ = ["LOAD", "Entry", "RegionStore"]

Entry = tuple[int, int, object]
"""(from, to, uncharge info) of one range."""

LOAD = 512
"""Target block length; blocks are split above 2*LOAD and merged below LOAD/4."""


class RegionStore:
    """An ordered sequence of disjoint half-open ranges ``[from, to)`` with one info each."""

    __slots__ = ("_ends", "_exports", "_infos", "_lasts", "_len", "_starts", "version")

    def __init__(self) -> None:
        self._starts: list[array[int]] = []
        self._ends: list[array[int]] = []
        self._infos: list[list[object]] = []
        self._lasts: list[int] = []
        self._exports: list[tuple[object, list[list[object]]] | None] = []
        """Per block, the lists `export` made of it and the label they used (None: changed)."""
        self._len = 0
        self.version = 0
        """Bumped by every `replace`: equal versions mean equal contents (snapshots reuse)."""

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[Entry]:
        for starts, ends, infos in zip(self._starts, self._ends, self._infos, strict=True):
            yield from zip(starts, ends, infos, strict=True)

    def export(self, label: Callable[[object], object]) -> list[list[object]]:
        """Every range as a list ``[from, to, label(info)]``, in order, in a new list.

        The ranges' lists are made again only for the blocks that changed since the last
        export with this ``label`` (in C, one ``label`` call per distinct info of a block);
        they are shared with earlier exports and must not be modified.
        """
        out: list[list[object]] = []
        blocks = zip(self._starts, self._ends, self._infos, strict=True)
        for k, (starts, ends, infos) in enumerate(blocks):
            made = self._exports[k]
            if made is None or made[0] is not label:
                table = {info: label(info) for info in set(infos)}
                made = self._exports[k] = (label, list(map(list, zip(
                    starts, ends, map(table.__getitem__, infos), strict=True))))
            out.extend(made[1])
        return out

    def window(self, f: int, t: int, touching: bool) -> tuple[int, int, list[Entry]]:
        """Cursor of, and the entries of, the ranges meeting ``[f, t)``.

        With ``touching`` the ranges that end exactly at ``f`` or start exactly at ``t`` are
        included too (they are the candidates for coalescing).  The entries are contiguous; the
        cursor ``(block, offset)`` is where the first one is, or where one would be inserted.
        """
        lasts = self._lasts
        if not lasts:
            return 0, 0, []
        b = bisect_left(lasts, f) if touching else bisect_right(lasts, f)
        if b == len(lasts):
            return b - 1, len(self._ends[b - 1]), []
        ends = self._ends[b]
        i = bisect_left(ends, f) if touching else bisect_right(ends, f)
        out: list[Entry] = []
        nblocks = len(lasts)
        bb, j = b, i
        while bb < nblocks:
            starts = self._starts[bb]
            stop = bisect_right(starts, t) if touching else bisect_left(starts, t)
            if stop > j:
                out.extend(zip(starts[j:stop], self._ends[bb][j:stop], self._infos[bb][j:stop],
                               strict=True))
            if stop < len(starts):
                break
            bb, j = bb + 1, 0
        return b, i, out

    def next_covered(self, f: int) -> int | None:
        """The first index at or after ``f`` inside a range, if any."""
        b = bisect_right(self._lasts, f)
        if b == len(self._lasts):
            return None
        i = bisect_right(self._ends[b], f)
        return max(self._starts[b][i], f)

    def replace(self, b: int, i: int, count: int, new: Sequence[Entry]) -> None:
        """Replace ``count`` entries starting at cursor ``(b, i)`` by ``new`` (kept sorted)."""
        self.version += 1
        if not self._starts:
            if new:
                self._rebuild(0, 0, array("q"), array("q"), [], new, array("q"), array("q"), [])
            return
        # Find the block holding the last removed entry and the offset just past it.
        e, j, left = b, i, count
        while left > len(self._starts[e]) - j:
            left -= len(self._starts[e]) - j
            e, j = e + 1, 0
        j += left
        if e == b and len(self._starts[b]) - count + len(new) <= 2 * LOAD and (
            len(self._starts[b]) - count + len(new) >= LOAD // 4 or len(self._starts) == 1
        ):
            self._starts[b][i:j] = array("q", [r[0] for r in new])
            self._ends[b][i:j] = array("q", [r[1] for r in new])
            self._infos[b][i:j] = [r[2] for r in new]
            self._len += len(new) - count
            if self._starts[b]:
                self._lasts[b] = self._ends[b][-1]
                self._exports[b] = None
            else:
                del self._starts[b], self._ends[b], self._infos[b], self._lasts[b]
                del self._exports[b]
            return
        # General case: rebuild blocks b..e (and a small neighbour) from their pieces.
        if e + 1 < len(self._starts) and len(self._starts[e + 1]) < LOAD:
            tail_s = self._starts[e][j:] + self._starts[e + 1]
            tail_e = self._ends[e][j:] + self._ends[e + 1]
            tail_i = self._infos[e][j:] + self._infos[e + 1]
            e += 1
        else:
            tail_s, tail_e, tail_i = self._starts[e][j:], self._ends[e][j:], self._infos[e][j:]
        self._len -= count
        self._rebuild(b, e + 1, self._starts[b][:i], self._ends[b][:i], self._infos[b][:i], new,
                      tail_s, tail_e, tail_i)

    def _rebuild(self, b: int, e: int, head_s: array[int], head_e: array[int],
                 head_i: list[object], new: Sequence[Entry], tail_s: array[int],
                 tail_e: array[int], tail_i: list[object]) -> None:
        """Replace blocks [b, e) by head + new + tail, cut into blocks of about LOAD."""
        starts = head_s + array("q", [r[0] for r in new]) + tail_s
        ends = head_e + array("q", [r[1] for r in new]) + tail_e
        infos = head_i + [r[2] for r in new] + tail_i
        self._len += len(new)
        n = len(starts)
        pieces = max(1, -(-n // LOAD)) if n > 2 * LOAD else (1 if n else 0)
        size = -(-n // pieces) if pieces else 0
        cuts = range(0, n, size) if size else range(0)
        self._starts[b:e] = [starts[k:k + size] for k in cuts]
        self._ends[b:e] = [ends[k:k + size] for k in cuts]
        self._infos[b:e] = [infos[k:k + size] for k in cuts]
        self._lasts[b:e] = [ends[min(k + size, n) - 1] for k in cuts]
        self._exports[b:e] = [None] * len(cuts)

    def nbytes(self) -> int:
        """Bytes held by the store's containers (not counting the shared info objects)."""
        import sys

        total = sys.getsizeof(self._starts) + sys.getsizeof(self._ends)
        total += sys.getsizeof(self._infos) + sys.getsizeof(self._lasts)
        for starts, ends, infos in zip(self._starts, self._ends, self._infos, strict=True):
            total += sys.getsizeof(starts) + sys.getsizeof(ends) + sys.getsizeof(infos)
        total += sum(sys.getsizeof(x) for x in self._lasts)
        return total
