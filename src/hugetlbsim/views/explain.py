"""``hugetlbsim explain``: one step of a scenario on the model, why it failed, and every counter
before and after it.

The model's trace state also carries what only the model knows (`System.snapshot`): each
file's page-cache indexes, each mount's subpool and the overcommit limit.  Everything shown
comes from the runner's trace.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from hugetlbsim.backends.model import ModelBackend
from hugetlbsim.format.loader import short_op
from hugetlbsim.format.scenario import CGROUP_KEYS, CGROUP_V2_KEYS, UNSIGNED_MAX, Scenario
from hugetlbsim.trace import Trace, show_value

__all__ = ["Row", "chain", "explanation", "initial_state"]

Row = tuple[str, str]
"""(what, counter) naming one line of the chain: ``("cgroup a", "usage")``."""


def initial_state(backend: ModelBackend, scenario: Scenario) -> dict[str, Any]:
    """The state before the first step, as the backend shows it."""
    session = backend.open(scenario)
    try:
        return session.state()
    finally:
        session.close()


def chain(state: Mapping[str, Any]) -> Iterator[tuple[Row, str]]:
    """Every counter of a (possibly inspected) trace state, formatted, in display order."""
    for key in ("total", "free", "rsvd", "surp"):
        yield ("pool", key.capitalize()), show_value(state[key])
    yield ("pool", "available (Free - Rsvd)"), show_value(
        (state["free"] - state["rsvd"]) & UNSIGNED_MAX)
    if "overcommit" in state:
        yield ("pool", "overcommit"), show_value(state["overcommit"])
    yield ("pool", "nr_hugepages"), show_value(state["nr_hugepages"])
    for name, mount in state.get("mounts", {}).items():
        if "subpool" in mount and mount["subpool"] is None:
            yield (f"mount {name}", "subpool"), "none"
        for key, value in (mount.get("subpool") or {}).items():
            yield (f"mount {name}", key), _shown(key, value)
        yield (f"mount {name}", "statfs free"), _shown("free", mount["free"])
    for name, cgroup in state.get("cgroups", {}).items():
        for key in _CGROUP_ROWS:
            if key in cgroup:
                yield (f"cgroup {name}", key), _shown(key, cgroup[key])
    for name, file in state.get("files", {}).items():
        for key in ("size", "blocks"):
            yield (f"file {name}", key), show_value(file[key])
        if "regions" in file:
            yield (f"file {name}", "regions"), " ".join(
                f"[{f},{t})" + (f":{cg}" if cg else "") for f, t, cg in file["regions"]) or "-"
        if "cached" in file:
            yield (f"file {name}", "cached"), " ".join(
                str(page) for f, t in file["cached"] for page in range(f, t)) or "-"


_CGROUP_ROWS = tuple(dict.fromkeys((*CGROUP_KEYS, *CGROUP_V2_KEYS)))
"""A cgroup's rows: the v1 counters, then the v2-only ones (``events``, ``events_local``,
``memory``); a state holds one interface's, and the refusal's explanation (from the model)
names the v2 limit that refused and the cgroups whose events moved."""


def _shown(key: str, value: Any) -> str:
    """A limit of None is ``max``; any other None (no size=, no min_size=) is ``-``."""
    if value is None:
        return "max" if key.endswith("limit") else "-"
    return show_value(value)


def explanation(trace: Trace, index: int, before: Mapping[str, Any]) -> RenderableType:
    """Step ``index`` of ``trace``: the step, its result and why, then every counter before
    and after it (changed ones highlighted; ``before`` is the state the step started from)."""
    step = trace.steps[index]
    failed = step.result != "ok"
    head = Text.assemble(("step ", "bold"), (f"{step.index}", "bold"),
                         f" (line {step.line}): " if step.line else ": ",
                         (short_op(step.op, step.args), "bold"), "\nresult: ",
                         (step.result, "bold red" if failed else "green"))
    if failed:
        head.append("\nwhy: ")
        head.append(step.explain or "the backend gives no explanation", style="yellow")
    table = Table(title=f"{trace.scenario} on {trace.backend} {trace.kernel}: "
                        f"counters around step {step.index}", title_justify="left")
    table.add_column("")
    table.add_column("counter")
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    old, new = dict(chain(before)), dict(chain(step.state))
    kinds = ("pool", "mount", "cgroup", "file")
    rows = sorted([*old, *(r for r in new if r not in old)],
                  key=lambda r: kinds.index(r[0].split()[0]))
    for n, row in enumerate(rows):
        a, b = old.get(row, "(none)"), new.get(row, "(none)")
        style = "bold yellow" if a != b else "dim"
        first = n == 0 or rows[n - 1][0] != row[0]
        last = n == len(rows) - 1 or rows[n + 1][0] != row[0]
        table.add_row(Text(row[0] if first else "", style="bold"), Text(row[1], style=style),
                      Text(a, style=style), Text(b, style=style), end_section=last)
    return Group(head, Text(), table)

