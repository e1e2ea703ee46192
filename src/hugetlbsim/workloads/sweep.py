"""Outcome and counters of a composition as the pool or one pod's limit varies: `sweep`, and its
picture (`draw`, matplotlib from the optional ``plot`` extra, imported only there)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hugetlbsim.format.scenario import UNSIGNED_MAX
from hugetlbsim.workloads.compose import Composition
from hugetlbsim.workloads.expand import expand, pod_cgroup
from hugetlbsim.workloads.plan import simulate
from hugetlbsim.workloads.units import PAGESIZE_BYTES

__all__ = ["OUTCOMES", "Point", "axis_values", "draw", "sweep"]

OUTCOMES = ("fits", "falls back", "exits at mmap", "exits", "killed (SIGBUS)", "handled")
"""The outcome classes on the picture's y axis, best first."""


@dataclass(frozen=True)
class Point:
    """One run of the sweep."""

    x: int
    """Pool or limit, in pages."""
    outcome: str
    failure: str
    in_use: int
    """HugePages_Total - HugePages_Free after the last step."""
    rsvd: int
    peak: int
    pod_usage: int
    pod_rsvd: int


def _outcome(on_fail: str, stage: str) -> str:
    if on_fail == "falls-back":
        return "falls back"
    if on_fail == "killed":
        return "killed (SIGBUS)"
    if on_fail == "exits":
        return "exits at mmap" if stage == "mmap" else "exits"
    return "handled"


def axis_values(hi: int, points: int = 41) -> list[int]:
    """``points`` values from 0 to ``hi`` (pages), evenly spaced, each once."""
    return sorted({round(hi * i / (points - 1)) for i in range(points)})


def sweep(comp: Composition, axis: str, values: list[int], line: str | None = None) -> list[Point]:
    """Run ``comp`` with the pool (``axis="pool"``) or pod P's limit (``"limit:P"``) at each
    value; everything else as the composition says."""
    pod = axis.partition(":")[2] if axis.startswith("limit:") else None
    if axis != "pool" and pod not in {p.name for p in comp.pods}:
        raise ValueError(f"--sweep {axis}: sweep 'pool' or 'limit:POD' with POD one of "
                         f"{', '.join(p.name for p in comp.pods) or '(no pods)'}")
    out = []
    for x in values:
        exp = (expand(comp, pool=x, kernel=line) if pod is None
               else expand(comp, limits={pod: x}, kernel=line))
        sim = simulate(exp, line, keep_states=True)
        last: dict[str, Any] = sim.states[-1] if sim.states else {
            "total": 0, "free": 0, "rsvd": 0, "cgroups": {}}
        first = sim.failures[0] if sim.failures else None
        cg = {} if pod is None else last["cgroups"].get(f"pod-{pod}", {})
        if pod is None and comp.pods:
            cg = last["cgroups"].get(pod_cgroup(comp.pods[0]), {})
        rsvd = last["rsvd"] if last["rsvd"] <= UNSIGNED_MAX >> 1 else 0
        out.append(Point(x, "fits" if first is None else _outcome(first.note.on_fail,
                                                                  first.stage),
                         "" if first is None else f"{first.op} {first.result}",
                         last["total"] - last["free"], rsvd, sim.peak_pool,
                         int(cg.get("usage") or 0), int(cg.get("rsvd") or 0)))
    return out


def draw(comp: Composition, axis: str, points: list[Point], output: str | Path) -> None:
    """Two panels over the swept value (GiB): the outcome class, and the counters."""
    from matplotlib.figure import Figure

    gib = PAGESIZE_BYTES[comp.pagesize] / (1 << 30)
    xs = [p.x * gib for p in points]
    fig = Figure(figsize=(9, 6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(1, 2))
    level = {o: i for i, o in enumerate(OUTCOMES)}
    colours = {"fits": "tab:green", "falls back": "tab:olive", "exits at mmap": "tab:orange",
               "exits": "tab:orange", "killed (SIGBUS)": "tab:red", "handled": "tab:blue"}
    top.scatter(xs, [level[p.outcome] for p in points],
                c=[colours[p.outcome] for p in points], s=18)
    top.set_yticks(range(len(OUTCOMES)), OUTCOMES)
    top.invert_yaxis()
    top.set_title(f"{comp.name}: outcome vs {axis}")
    for label, values in (("pages in use (end)", [p.in_use for p in points]),
                          ("HugePages_Rsvd (end)", [p.rsvd for p in points]),
                          ("peak in use + reserved", [p.peak for p in points]),
                          ("pod usage (end)", [p.pod_usage for p in points]),
                          ("pod rsvd (end)", [p.pod_rsvd for p in points])):
        if any(values):
            bottom.plot(xs, values, label=label, drawstyle="steps-post")
    bottom.set_xlabel(f"{axis} (GiB)")
    bottom.set_ylabel("huge pages")
    bottom.legend(loc="best", fontsize="small")
    fig.savefig(str(output))
