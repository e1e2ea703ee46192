"""Replaying measured counter sequences through `System.apply`.

A sequence (`Seq`) is a list of `Row`s, one per row of a measured block in
../shared/spec/live-kernel.md (or per step of a trace of kernel-semantics.md §10).  Each row
names the operation that reproduces the measured step, the result the kernel gave and the
counters it showed afterwards, written the way live-kernel.md writes them::

    row("write fault page0", "touch", "T=8 F=7 R=3 S=0 A.u=1 A.r=4", map="m", page=0)

Counter tokens: ``T F R S`` (HugePages_Total/Free/Rsvd/Surp; ``R`` as the kernel prints it,
or negative for an underflow), ``N`` (/proc/sys/vm/nr_hugepages), ``CG.u`` / ``CG.r`` (fault
and reservation usage of cgroup CG in pages; ``rt`` is the scenario's ``root``), ``CG.KEY``
for any other cgroup key of the trace (``failcnt``, ``rsvd_failcnt``, ``max_usage``,
``rsvd_max_usage``, ``limit``, ``rsvd_limit``; ``max`` means unlimited), ``bfree[M]`` (statfs
free pages of mount M; -1 when the mount has no ``size=``), ``blocks[F]`` and ``size[F]``
(st_blocks and st_size of file F, in pages).  Only the counters named are compared.

`replay` applies every row, runs `check_invariants()` after *every* step, then compares the
result and the named counters; a mismatch names the sequence, the step and the row.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from hugetlbsim.format.scenario import OPS
from hugetlbsim.model.system import System

U64 = 1 << 64

_SHORT = {"T": "total", "F": "free", "R": "rsvd", "S": "surp", "N": "nr_hugepages"}
_CG_SHORT = {"u": "usage", "r": "rsvd"}
_CG_KEYS = {"usage", "rsvd", "failcnt", "rsvd_failcnt", "max_usage", "rsvd_max_usage",
            "limit", "rsvd_limit"}
_BRACKET = re.compile(r"^(bfree|blocks|size)\[([^\]]+)\]$")


@dataclass(frozen=True)
class Row:
    """One measured step: the operation (None for a pure observation), its expectations."""

    note: str
    op: str | None
    args: dict[str, Any]
    expect: dict[str, Any]
    result: str | None


@dataclass(frozen=True)
class Seq:
    """A measured sequence: where it comes from, the initial pool, and its rows."""

    name: str
    rows: tuple[Row, ...]
    pool: int = 0
    overcommit: int = 0
    pagesize: str = "2M"


def parse_counters(text: str) -> dict[str, Any]:
    """Turn ``"T=8 F=7 A.u=1 bfree[hp]=2"`` into a nested expectation dict."""
    out: dict[str, Any] = {}
    for token in text.split():
        key, _, raw = token.partition("=")
        if not raw:
            raise ValueError(f"bad counter token {token!r}")
        value = None if raw in ("max", "None") else int(raw)
        if key in _SHORT:
            assert value is not None
            out[_SHORT[key]] = value % U64 if key == "R" else value
            continue
        bracket = _BRACKET.match(key)
        if bracket:
            kind, name = bracket.groups()
            if kind == "bfree":
                out.setdefault("mounts", {})[name] = {"free": None if value == -1 else value}
            else:
                out.setdefault("files", {}).setdefault(name, {})[kind] = value
            continue
        cg, _, what = key.rpartition(".")
        what = _CG_SHORT.get(what, what)
        if not cg or what not in _CG_KEYS:
            raise ValueError(f"bad counter token {token!r}")
        cg = "root" if cg == "rt" else cg
        out.setdefault("cgroups", {}).setdefault(cg, {})[what] = value
    return out


def row(note: str, op: str | None = None, counters: str = "", result: str | None = "ok",
        **args: Any) -> Row:
    """A row; ops that act for a process act for ``init`` unless told otherwise."""
    if op is not None:
        if op not in OPS:
            raise ValueError(f"unknown op {op!r}")
        names = {a.name for a in OPS[op]}
        if "proc" in names and op != "spawn" and "proc" not in args:
            args["proc"] = "init"
        unknown = set(args) - names
        if unknown:
            raise ValueError(f"{op} takes no {sorted(unknown)}")
    else:
        result = None
    return Row(note, op, args, parse_counters(counters), result)


def look(note: str, counters: str) -> Row:
    """A row that only reads counters (statfs, st_size, a counters line)."""
    return row(note, None, counters)


def child_touch(note: str, map: str, page: int, counters: str, result: str = "ok", *,
                write: bool = True, count: int = 1, parent: str = "init",
                child: str = "kid") -> list[Row]:
    """A probe child that touches and dies: fork, touch (result checked), exit (counters)."""
    return [
        row(f"{note} [fork]", "fork", proc=parent, child=child),
        row(f"{note} [touch in child]", "touch", result=result, proc=child, map=map,
            page=page, count=count, write=write),
        row(f"{note} [child exits]", "exit", counters, proc=child),
    ]


def rows(*items: Row | Iterable[Row]) -> tuple[Row, ...]:
    """Flatten rows and lists of rows (from `child_touch`)."""
    out: list[Row] = []
    for item in items:
        if isinstance(item, Row):
            out.append(item)
        else:
            out.extend(item)
    return tuple(out)


def _diff(state: dict[str, Any], expect: dict[str, Any], path: str = "",
          source: str = "measured") -> list[str]:
    problems = []
    for key, want in expect.items():
        where = f"{path}{key}"
        if not isinstance(state, dict) or key not in state:
            problems.append(f"{where}: absent in the model, {source} {want!r}")
            continue
        got = state[key]
        if isinstance(want, dict):
            problems.extend(_diff(got, want, f"{where}.", source))
        elif got != want:
            problems.append(f"{where}: model {got!r}, {source} {want!r}")
    return problems


def new_system(seq: Seq, policy: str = "6.18") -> System:
    return System(pagesize=seq.pagesize, pool_pages=seq.pool,
                  pool_overcommit=seq.overcommit, policy=policy)  # type: ignore[arg-type]


def run_rows(system: System, seq: Seq, steps: Sequence[Row], *, check: bool = True,
             offset: int = 0) -> list[tuple[str | None, dict[str, Any]]]:
    """Apply ``steps`` one by one; invariants after every step, expectations if ``check``."""
    trace = []
    for i, r in enumerate(steps, start=offset):
        where = f"{seq.name}, step {i} ({r.note!r}: {r.op} {r.args})"
        result = system.apply(r.op, r.args) if r.op is not None else None
        try:
            system.check_invariants()
        except AssertionError as err:
            raise AssertionError(f"{where}: invariant broken: {err}") from err
        state = system.snapshot()
        trace.append((result, state))
        if not check:
            continue
        source = "measured" if seq.name.startswith("live-kernel") else "expected"
        problems = []
        if r.result is not None and result != r.result:
            problems.append(f"result: model {result!r}, {source} {r.result!r} "
                            f"(model says: {system.last_explanation})")
        problems.extend(_diff(state, r.expect, source=source))
        assert not problems, f"{where}:\n  " + "\n  ".join(problems)
    return trace


def replay(seq: Seq, policy: str = "6.18", *, check: bool = True
           ) -> list[tuple[str | None, dict[str, Any]]]:
    """Run ``seq`` on a fresh `System`; see `run_rows`."""
    system = new_system(seq, policy)
    system.check_invariants()
    return run_rows(system, seq, seq.rows, check=check)


def visible(state: dict[str, Any]) -> dict[str, Any]:
    """A snapshot without the model-only region lists of the files."""
    out = dict(state)
    out["files"] = {name: {k: v for k, v in f.items() if k != "regions"}
                    for name, f in state["files"].items()}
    return out
