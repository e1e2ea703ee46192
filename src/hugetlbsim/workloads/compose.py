"""The workload composition format: programs, pods and a pool, as an operator describes them.

A composition is a small YAML file (docs/workloads.md)::

    workload: 1
    name: pg-under-runc
    cgroups: v2
    pool: 8GiB
    pods:
      - name: db
        runtime: runc            # runc sets max and rsvd.max; crun sets max only
        hugepages: {2Mi: 4GiB}   # sizes not listed get a limit of 0, as Kubernetes does
        programs:
          - postgres: {shared_memory: 4GiB, huge_pages: on}

`load_composition` reads one with ``FILE:LINE:COL`` errors (`ScenarioError`, as scenarios
have); `expand` (module `expand`) turns it into an ordinary scenario.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from hugetlbsim.format.loader import ScenarioError, plain, yaml_rt
from hugetlbsim.format.scenario import CGROUP_INTERFACES
from hugetlbsim.model.kernels import UnknownKernel, kernel
from hugetlbsim.workloads.recipes import PROGRAMS, Amount, Param
from hugetlbsim.workloads.units import PAGESIZE_BYTES, SizeError, pages, parse_size

__all__ = ["RUNTIMES", "TOP_KEYS", "Composition", "Pod", "Program", "load_composition",
           "load_composition_text"]

TOP_KEYS = ("workload", "name", "kernel", "cgroups", "pagesize", "pool", "overcommit", "stop",
            "programs", "pods")
POD_KEYS = ("name", "runtime", "hugepages", "programs")
RUNTIMES = ("runc", "crun")
"""``runc`` (1.1.10 and later) writes both hugetlb limits; ``crun`` writes ``max`` only."""
_NAME = re.compile(r"[A-Za-z0-9_-]{1,40}")


@dataclass(frozen=True)
class Program:
    """One program entry: its recipe, name and checked settings (sizes in bytes)."""

    kind: str
    name: str
    params: dict[str, Any]
    line: int = 0


@dataclass(frozen=True)
class Pod:
    """A Kubernetes pod: a hugetlb cgroup with a limit per page size and its programs."""

    name: str
    runtime: str
    hugepages: dict[str, int]
    """Page size (``2M``, ``1G``) → limit in bytes; sizes not listed are 0."""
    programs: tuple[Program, ...]
    line: int = 0

    def limit_bytes(self, pagesize: str) -> int:
        """The pod's limit for ``pagesize`` (0 when the pod did not request it)."""
        return self.hugepages.get(pagesize, 0)


@dataclass(frozen=True)
class Composition:
    """A checked composition."""

    name: str
    pagesize: str = "2M"
    kernel: str | None = None
    cgroups: str = "v1"
    pool: int = 0
    """Pool size in huge pages."""
    overcommit: int = 0
    stop: bool = False
    programs: tuple[Program, ...] = ()
    """Programs on the node, outside any pod (the scenario's root cgroup)."""
    pods: tuple[Pod, ...] = ()
    path: str = "<workload>"
    extra: dict[str, Any] = field(default_factory=dict)

    def all_programs(self) -> list[tuple[Pod | None, Program]]:
        """Every program with its pod (None on the node), in file order."""
        return [*((None, p) for p in self.programs),
                *((pod, p) for pod in self.pods for p in pod.programs)]


def load_composition(path: str | Path) -> Composition:
    """Read and check a composition file."""
    text = Path(path).read_text(encoding="utf-8")
    return load_composition_text(text, str(path))


def load_composition_text(text: str, path: str = "<workload>") -> Composition:
    """Read and check a composition from text."""
    return _Reader(path).read(text)


def _pagesize(value: Any) -> str | None:
    try:
        nbytes = parse_size(str(value)) if not isinstance(value, bool) else -1
    except SizeError:
        return None
    return next((k for k, v in PAGESIZE_BYTES.items() if v == nbytes), None)


class _Reader:
    def __init__(self, path: str) -> None:
        self.path = path
        self.names: set[str] = set()

    def fail(self, node: Any, key: Any, message: str) -> None:
        line, col = 0, 0
        try:
            if isinstance(node, CommentedMap) and key is not None and key in node:
                line, col = node.lc.value(key)
            elif isinstance(node, CommentedSeq) and isinstance(key, int):
                line, col = node.lc.item(key)
            elif node is not None and hasattr(node, "lc"):
                line, col = node.lc.line, node.lc.col
        except (AttributeError, KeyError, TypeError):
            pass
        raise ScenarioError(self.path, line + 1, col + 1, message)

    def mapping(self, node: Any, key: Any, what: str) -> CommentedMap:
        value = node[key] if key is not None else node
        if not isinstance(value, CommentedMap):
            self.fail(node, key, f"{what} must be a mapping; write e.g. {{key: value}}")
        return value  # type: ignore[no-any-return]

    def keys(self, node: CommentedMap, allowed: tuple[str, ...], what: str) -> None:
        for key in node:
            if key not in allowed:
                line, col = node.lc.key(key)
                raise ScenarioError(self.path, line + 1, col + 1,
                                    f"unknown key {plain(key)!r} in {what}; "
                                    f"one of {', '.join(allowed)}")

    def read(self, text: str) -> Composition:
        try:
            doc = yaml_rt().load(text)
        except YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
            raise ScenarioError(self.path, line, col, "invalid YAML; fix the syntax here") \
                from None
        if not isinstance(doc, CommentedMap):
            raise ScenarioError(self.path, 1, 1, "a composition is a mapping starting with "
                                "'workload: 1'; see docs/workloads.md")
        self.keys(doc, TOP_KEYS, "a composition")
        if doc.get("workload") != 1:
            self.fail(doc, "workload" if "workload" in doc else None,
                      "the first key must be 'workload: 1' (composition format 1)")
        pagesize = "2M"
        if "pagesize" in doc:
            found = _pagesize(doc["pagesize"])
            if found is None:
                self.fail(doc, "pagesize", "pagesize must be 2MiB or 1GiB")
            pagesize = found or "2M"
        line = None
        if "kernel" in doc:
            line = str(doc["kernel"])
            try:
                kernel(line)
            except UnknownKernel as exc:
                self.fail(doc, "kernel", str(exc))
        cgroups = str(doc.get("cgroups", "v1"))
        if cgroups not in CGROUP_INTERFACES:
            self.fail(doc, "cgroups", "cgroups must be v1 or v2")
        pool = self.pages_or_size(doc, "pool", pagesize) if "pool" in doc else 0
        overcommit = self.pages_or_size(doc, "overcommit", pagesize) if "overcommit" in doc \
            else 0
        stop = doc.get("stop", False)
        if not isinstance(stop, bool):
            self.fail(doc, "stop", "stop must be true or false")
        programs = self.programs(doc, "programs", "node") if "programs" in doc else ()
        pods: list[Pod] = []
        if "pods" in doc:
            seq = doc["pods"]
            if not isinstance(seq, CommentedSeq):
                self.fail(doc, "pods", "pods must be a list of pods")
            for i, _ in enumerate(seq):
                pods.append(self.pod(seq, i))
        if not programs and not any(p.programs for p in pods):
            raise ScenarioError(self.path, 1, 1, "the composition runs no program; add "
                                "'programs:' or a pod with 'programs:'")
        name = str(doc.get("name", Path(self.path).stem))
        return Composition(name=name, pagesize=pagesize, kernel=line, cgroups=cgroups,
                           pool=pool, overcommit=overcommit, stop=bool(stop),
                           programs=tuple(programs), pods=tuple(pods), path=self.path)

    def pages_or_size(self, node: CommentedMap, key: str, pagesize: str) -> int:
        value = node[key]
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return int(value)
        try:
            return pages(parse_size(value), pagesize)
        except SizeError as exc:
            self.fail(node, key, f"{key}: {exc} (or a count of huge pages)")
        return 0

    def name(self, node: Any, key: Any, value: Any) -> str:
        if not isinstance(value, str) or not _NAME.fullmatch(value):
            self.fail(node, key, f"name {plain(value)!r} must be letters, digits, _ or -")
        if value in self.names:
            self.fail(node, key, f"name {value!r} is used twice; give each pod and program "
                      "its own name")
        self.names.add(value)
        return str(value)

    def pod(self, seq: CommentedSeq, index: int) -> Pod:
        node = self.mapping(seq, index, "a pod")
        self.keys(node, POD_KEYS, "a pod")
        if "name" not in node:
            self.fail(seq, index, "a pod needs a name: 'name: db'")
        name = self.name(node, "name", node["name"])
        runtime = node.get("runtime", "runc")
        if runtime not in RUNTIMES:
            self.fail(node, "runtime", "runtime must be runc (max and rsvd.max) or crun "
                      "(max only)")
        limits: dict[str, int] = {}
        if "hugepages" in node:
            hp = self.mapping(node, "hugepages", "hugepages")
            for key, value in hp.items():
                size = _pagesize(key)
                if size is None:
                    line, col = hp.lc.key(key)
                    raise ScenarioError(self.path, line + 1, col + 1,
                                        f"hugepages key {plain(key)!r} must be a page size: "
                                        "2Mi or 1Gi")
                if value == 0:
                    limits[size] = 0
                    continue
                try:
                    limits[size] = parse_size(value)
                except SizeError as exc:
                    self.fail(hp, key, f"hugepages limit: {exc}")
        programs = self.programs(node, "programs", name) if "programs" in node else ()
        return Pod(name=name, runtime=str(runtime), hugepages=limits,
                   programs=tuple(programs), line=node.lc.line + 1)

    def programs(self, node: CommentedMap, key: str, owner: str) -> list[Program]:
        seq = node[key]
        if not isinstance(seq, CommentedSeq):
            self.fail(node, key, "programs must be a list, e.g. '- postgres: {shared_memory: "
                      "1GiB}'")
        out = []
        for i, item in enumerate(seq):
            if not isinstance(item, CommentedMap) or len(item) != 1:
                self.fail(seq, i, f"a program is one key, its kind ({', '.join(PROGRAMS)}), "
                          "with its settings")
            kind = next(iter(item))
            if kind not in PROGRAMS:
                line, col = item.lc.key(kind)
                raise ScenarioError(self.path, line + 1, col + 1,
                                    f"unknown program {plain(kind)!r}; one of "
                                    f"{', '.join(PROGRAMS)}")
            settings = item[kind] if item[kind] is not None else CommentedMap()
            if not isinstance(settings, CommentedMap):
                self.fail(item, kind, f"{kind}'s settings must be a mapping")
            default = kind if owner == "node" else f"{owner}-{kind}"
            if default in self.names:
                default = f"{default}{i + 1}"
            name = self.name(settings, "name", settings.get("name", default))
            params = self.params(kind, settings)
            out.append(Program(kind=str(kind), name=name, params=params,
                               line=item.lc.line + 1))
        return out

    def params(self, kind: str, node: CommentedMap) -> dict[str, Any]:
        spec = PROGRAMS[kind].params
        self.keys(node, ("name", *spec), f"{kind}'s settings")
        out: dict[str, Any] = {}
        for pname, param in spec.items():
            if pname not in node:
                if param.required:
                    self.fail(node, None, f"{kind} needs '{pname}' ({param.doc or param.kind})")
                out[pname] = param.default
                continue
            out[pname] = self.value(node, pname, param)
        if kind == "postgres" and not (out["shared_memory"] or out["shared_buffers"]):
            self.fail(node, None, "postgres needs 'shared_memory' (postgres -C "
                      "shared_memory_size) or 'shared_buffers'")
        return out

    def value(self, node: CommentedMap, key: str, param: Param) -> Any:
        value = node[key]
        if param.kind == "size":
            if value == 0 and not isinstance(value, bool):
                return 0
            try:
                return parse_size(value)
            except SizeError as exc:
                self.fail(node, key, f"{key}: {exc}")
        if param.kind == "count":
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                return int(value)
            self.fail(node, key, f"{key} must be a count (an integer >= 0)")
        if param.kind == "bool":
            if isinstance(value, bool) or value in ("on", "off"):
                return value in (True, "on")
            self.fail(node, key, f"{key} must be on/off or true/false")
        if param.kind == "choice":
            if str(value) in param.choices or (value is True and "on" in param.choices):
                return "on" if value is True else str(value)
            self.fail(node, key, f"{key} must be one of {', '.join(param.choices)}")
        if isinstance(value, str) and value.strip().endswith("%"):
            try:
                pct = float(value.strip()[:-1])
            except ValueError:
                pct = -1.0
            if 0 <= pct <= 100:
                return Amount(percent=pct)
            self.fail(node, key, f"{key} must be a percentage from 0% to 100%")
        if value == 0 and not isinstance(value, bool):
            return Amount(nbytes=0)
        try:
            return Amount(nbytes=parse_size(value))
        except SizeError as exc:
            self.fail(node, key, f"{key}: {exc}, or a percentage such as 50%")
        return None
