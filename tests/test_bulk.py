"""Bulk faulting (`hugetlbsim.model.bulk`) against the page-by-page path: equal traces.

Random scenarios run twice, on every kernel point and line in turn: once with every page
through `hugetlb_fault` (``BULK = False``), once taking uniform strides from a single page on
(``_MIN_STRIDE = 1``, so strides engage as often as they can).  The JSON traces, every
counter of every step, must be equal.  The scenarios are the fuzzer's, with small and larger
pools, and a generator aimed at strides: shared mappings of one file, touched in long ranges
across cgroup limits, the pool running out, pages already present, MAP_NORESERVE holes,
size= mounts, truncation and populate.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from hugetlbsim.backends.model import ModelBackend
from hugetlbsim.format.loader import load_text
from hugetlbsim.format.scenario import Scenario
from hugetlbsim.fuzz.generate import GenOptions, generate
from hugetlbsim.model import bulk
from hugetlbsim.model.kernels import KNOWN_POINTS, LINES
from hugetlbsim.runner import run

KERNELS = (*KNOWN_POINTS, *LINES)
"""Every kernel point and line the model follows: a stride must follow each one's switches."""


def _trace(scenario: Scenario, kernel: str) -> str:
    try:
        return run(scenario, ModelBackend(kernel=kernel)).dumps()
    except Exception as exc:  # the same failure on both sides is equal too
        return f"{type(exc).__name__}: {exc}"


class _Strides:
    """Counts the pages faulted in shared, private and write strides."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.pages = 0
        self.private = 0
        self.writes = 0
        for name, counter in (("_shared_stride", "pages"), ("_private_stride", "private"),
                              ("_write_stride", "writes")):
            monkeypatch.setattr(bulk, name, self._counted(getattr(bulk, name), counter))
        monkeypatch.setattr(bulk, "_MIN_STRIDE", 1)

    def _counted(self, stride: Callable[..., int], counter: str) -> Callable[..., int]:
        def counted(*args: Any) -> int:
            done = stride(*args)
            setattr(self, counter, getattr(self, counter) + done)
            return done

        return counted


def _both(scenario: Scenario, monkeypatch: pytest.MonkeyPatch, kernel: str) -> None:
    monkeypatch.setattr(bulk, "BULK", False)
    page_by_page = _trace(scenario, kernel)
    monkeypatch.setattr(bulk, "BULK", True)
    assert _trace(scenario, kernel) == page_by_page, (scenario.name, kernel)


@pytest.mark.parametrize("chunk", range(4))
def test_fuzz_scenarios_agree(chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    strides = _Strides(monkeypatch)
    for seed in range(chunk * 150, (chunk + 1) * 150):
        options = GenOptions(max_pool=64, max_steps=60) if seed % 2 else None
        _both(generate(seed, options), monkeypatch, KERNELS[seed % len(KERNELS)])
    assert strides.pages > 50 and strides.private > 50


def _stride_scenario(rng: random.Random) -> str:
    """Shared and private mappings of one file (and private anon ones), touched in long ranges,
    fallocate, with every way a stride stops and every way its pages go."""
    pool = rng.randint(0, 80)
    size = rng.randint(8, 60)
    v2 = rng.random() < 0.4
    lines = ["format: 1", "name: stride", f"pool: {{pages: {pool}, overcommit: "
             f"{rng.randint(0, 4)}}}"]
    if v2:
        lines += ["cgroups: v2"] + (["memory_accounting: true"] if rng.random() < 0.5 else [])
    lines.append("steps:")
    mount = rng.choice(["{name: hp}", f"{{name: hp, size: {rng.randint(4, 70)}}}",
                        f"{{name: hp, min_size: {rng.randint(0, 10)}}}"])
    lines += [f"  - mount: {mount}", f"  - create: {{file: hp/f, size: {size}}}",
              f"  - cgroup: {{name: g, limit: {rng.randint(0, 50)}}}"]
    procs: dict[str, list[tuple[str, int, int]]] = {}
    for i in range(rng.randint(1, 3)):
        proc = f"p{i}"
        procs[proc] = []
        lines.append(f"  - spawn: {{proc: {proc}, cgroup: {rng.choice(['root', 'g'])}}}")
    maps = 0
    for _ in range(rng.randint(4, 24)):
        proc = rng.choice(list(procs))
        how = rng.random()
        if how < 0.3 or not procs[proc]:
            offset = rng.randint(0, size - 1)
            length = rng.randint(1, size - offset + 4)
            name = f"m{maps}"
            maps += 1
            extra = ", noreserve: true" if rng.random() < 0.2 else ""
            extra += ", populate: true" if rng.random() < 0.2 else ""
            extra += ", writable: false" if rng.random() < 0.1 else ""
            extra += ", shared: false" if rng.random() < 0.4 else ""
            what = "anon: true" if rng.random() < 0.15 else "file: hp/f"
            lines.append(f"  - mmap: {{proc: {proc}, map: {name}, {what}, offset: {offset}, "
                         f"length: {length}{extra}}}")
            procs[proc].append((name, offset, length))
            continue
        name, _, length = rng.choice(procs[proc])
        page = rng.randint(0, length - 1)
        count = rng.randint(1, length - page)
        if how < 0.75:
            write = "" if rng.random() < 0.7 else ", write: false"
            lines.append(f"  - touch: {{proc: {proc}, map: {name}, page: {page}, count: {count}"
                         f"{write}}}")
        elif how < 0.83:
            lines.append(f"  - madvise: {{proc: {proc}, map: {name}, page: {page}, "
                         f"count: {count}, advice: dontneed}}")
        elif how < 0.85:
            lines.append(f"  - punch: {{file: hp/f, offset: {rng.randint(0, size - 1)}, "
                         f"length: {rng.randint(1, 30)}}}")
        elif how < 0.88:
            keep = rng.choice(["true", "false"])
            lines.append(f"  - fallocate: {{file: hp/f, offset: {rng.randint(0, size)}, "
                         f"length: {rng.randint(1, 40)}, keep_size: {keep}}}")
        elif how < 0.92:
            lines.append(f"  - truncate: {{file: hp/f, size: {rng.randint(0, size)}}}")
        elif how < 0.94:
            lines.append(f"  - pool: {{pages: {rng.randint(0, 80)}}}")
        elif how < 0.97:
            child = f"p{len(procs)}"
            procs[child] = list(procs[proc])
            lines.append(f"  - fork: {{proc: {proc}, child: {child}}}")
        elif how < 0.98:
            lines.append(f"  - munmap: {{proc: {proc}, map: {name}, offset: {page}, "
                         f"length: {count}}}")
            procs[proc] = [m for m in procs[proc] if m[0] != name]
        elif how < 0.99:
            lines.append(f"  - mprotect: {{proc: {proc}, map: {name}, offset: {page}, "
                         f"length: {count}, writable: {rng.choice(['true', 'false'])}}}")
        else:
            lines.append(f"  - cgroup: {{name: g, limit: {rng.randint(0, 50)}}}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("chunk", range(4))
def test_stride_scenarios_agree(chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    strides = _Strides(monkeypatch)
    rng = random.Random(chunk)
    ran = 0
    for _ in range(150):
        text = _stride_scenario(rng)
        try:
            scenario = load_text(text)
        except ValueError:
            continue  # a combination the format refuses (a name rule)
        _both(scenario, monkeypatch, KERNELS[ran % len(KERNELS)])
        ran += 1
    assert ran > 100
    assert strides.pages > 200 and strides.private > 150


def _fork_scenario(rng: random.Random) -> str:
    """Private mappings touched, forked, then written by parents and children (COW strides),
    with exits, munmap, mprotect, the pool and the cgroup limit moving under them."""
    pool = rng.randint(20, 120)
    size = rng.randint(8, 40)
    lines = ["format: 1", "name: cow", f"pool: {{pages: {pool}, overcommit: {rng.randint(0, 4)}}}"]
    if rng.random() < 0.4:
        lines += ["cgroups: v2"] + (["memory_accounting: true"] if rng.random() < 0.5 else [])
    mount = rng.choice(["{name: hp}", f"{{name: hp, size: {rng.randint(8, 120)}}}"])
    lines += ["steps:", f"  - mount: {mount}", f"  - create: {{file: hp/f, size: {size}}}",
              f"  - cgroup: {{name: g, limit: {rng.randint(10, 120)}}}",
              f"  - spawn: {{proc: p0, cgroup: {rng.choice(['root', 'g'])}}}"]
    what = "anon: true" if rng.random() < 0.5 else "file: hp/f"
    lines += [f"  - mmap: {{proc: p0, map: m, {what}, shared: false, length: {size}}}",
              f"  - touch: {{proc: p0, map: m, page: 0, count: {size}}}"]
    live, born = ["p0"], 1
    for _ in range(rng.randint(3, 14)):
        proc = rng.choice(live)
        page = rng.randint(0, size - 1)
        count = rng.randint(1, size - page)
        how = rng.random()
        if how < 0.25 and len(live) < 5:
            child = f"p{born}"
            born += 1
            live.append(child)
            lines.append(f"  - fork: {{proc: {proc}, child: {child}}}")
        elif how < 0.75:
            write = "" if rng.random() < 0.85 else ", write: false"
            lines.append(f"  - touch: {{proc: {proc}, map: m, page: {page}, count: {count}"
                         f"{write}}}")
        elif how < 0.82 and proc != "p0":
            live.remove(proc)
            lines.append(f"  - exit: {{proc: {proc}}}")
        elif how < 0.88:
            lines.append(f"  - mprotect: {{proc: {proc}, map: m, offset: {page}, "
                         f"length: {count}, writable: {rng.choice(['true', 'false'])}}}")
        elif how < 0.93:
            lines.append(f"  - madvise: {{proc: {proc}, map: m, page: {page}, count: {count}, "
                         f"advice: dontneed}}")
        elif how < 0.97:
            lines.append(f"  - pool: {{pages: {rng.randint(0, 120)}}}")
        else:
            lines.append(f"  - cgroup: {{name: g, limit: {rng.randint(0, 120)}}}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("chunk", range(2))
def test_fork_scenarios_agree(chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    strides = _Strides(monkeypatch)
    rng = random.Random(1000 + chunk)
    for n in range(150):
        _both(load_text(_fork_scenario(rng)), monkeypatch, KERNELS[n % len(KERNELS)])
    assert strides.private > 300 and strides.writes > 300
