"""Traces: what a backend showed after each step of a scenario, and how two traces differ.

`Trace.to_json` is the JSON trace of the scenario format.  `compare` lines up two traces of one
scenario (say model and kernel) and reports the steps whose result or counters differ.  Values
are compared as the kernel shows them (`same`): an int counter modulo 2^64 (an underflow reads
as 2^64 - n) and an unlimited limit as null, however it is written (``max`` or ``null``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import compress
from operator import is_not
from typing import Any, Final, TextIO

from hugetlbsim.format.scenario import CGROUP_V2_KEYS, POOL_KEYS, SECTION_KEYS, UNSIGNED_MAX

_COMPARED: Final = {**SECTION_KEYS,
                    "cgroup": tuple(dict.fromkeys((*SECTION_KEYS["cgroup"], *CGROUP_V2_KEYS)))}
"""The counters `diff` compares per section: a cgroup's v1 and v2 keys (a state holds one
interface's, and a key missing from either trace is not compared)."""

__all__ = ["ABSENT", "STATE_SECTIONS", "WATERMARKS", "Difference", "JsonStream", "StepDiff",
           "StepRecord", "Trace", "compare", "key_name", "normalized", "same", "show_value"]

STATE_SECTIONS: Final = {"cgroup": "cgroups", "mount": "mounts", "file": "files"}
"""Expectation section → key of the trace state that holds it."""
WATERMARKS: Final = frozenset({"max_usage", "rsvd_max_usage"})
"""Cgroup watermarks: they count failed attempts too, so `compare` skips them by default."""


class _Absent:
    """The value of a counter, cgroup, mount or file that is not in the state."""

    def __repr__(self) -> str:
        return "absent"


ABSENT: Final = _Absent()

Path_ = tuple[str, ...]
"""An expectation's place: ``("rsvd",)``, ``("cgroup", "a", "usage")``..."""


def key_name(path: Path_) -> str:
    """``cgroup.a.usage``: how failures and differences name a counter."""
    return ".".join(path)


def normalized(value: Any) -> Any:
    """A value as the kernel shows it: ints modulo 2^64, ``max`` as null (unlimited)."""
    if value == "max":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value & UNSIGNED_MAX
    return value


def same(a: Any, b: Any) -> bool:
    """Whether two values read the same on the kernel (the one comparison of counters)."""
    return bool(normalized(a) == normalized(b))


@dataclass(frozen=True)
class StepRecord:
    """One step of a trace: what was run and what the backend showed after it."""

    index: int
    op: str
    args: dict[str, Any]
    """The step's arguments with defaults filled in; absent optional ones left out."""
    result: str
    state: dict[str, Any]
    explain: str | None = None
    line: int = 0

    def to_json(self) -> dict[str, Any]:
        """The step object of the JSON trace."""
        out = {"index": self.index, "op": self.op, "args": self.args, "result": self.result,
               "state": self.state}
        if self.explain is not None:
            out["explain"] = self.explain
        return out

    def observed(self, path: Path_) -> Any:
        """The value an expectation at ``path`` is checked against (`ABSENT` if missing)."""
        if path == ("result",):
            return self.result
        node: Any = self.state
        for part in (STATE_SECTIONS.get(path[0], path[0]), *path[1:]):
            if not isinstance(node, Mapping) or part not in node:
                return ABSENT
            node = node[part]
        return node


@dataclass
class Trace:
    """A scenario run on one backend, with the expectations that failed."""

    backend: str
    kernel: str
    scenario: str
    steps: list[StepRecord] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The JSON trace object of scenario-format.md."""
        return {"format": 1, "backend": self.backend, "kernel": self.kernel,
                "scenario": self.scenario, "steps": [s.to_json() for s in self.steps]}

    def dumps(self) -> str:
        """The JSON trace as text."""
        return json.dumps(self.to_json())


def _json_encoder() -> Callable[[Any], str]:
    """`json.dumps` with its defaults, its C encoder made once (``json.dumps`` makes one per
    call, which costs more than encoding a small part of a state); else `json.dumps`."""
    from json import encoder

    make = getattr(encoder, "c_make_encoder", None)
    probe = {"a": [1, -2, None, True, 2.5, "\u00e9\n"], "b": {"c": 2**64}, "": {}}
    try:
        iterencode = make(None, json.JSONEncoder().default, encoder.encode_basestring_ascii,
                          None, ": ", ", ", False, False, True) if make is not None else None
        if iterencode is not None and "".join(iterencode(probe, 0)) == json.dumps(probe):
            return lambda value: "".join(iterencode(value, 0))
    except TypeError:  # another signature
        pass
    return json.dumps


_dumps: Final = _json_encoder()


_HOLES: Final = {key: f"\0{key}" for key in STATE_SECTIONS.values()}
"""A state section's stand-in while the rest of a step is encoded (a NUL cannot come from a
name, and the stand-in's text must occur once in the step's text)."""
_HOLE_MEMBERS: Final = 8
"""Members a section needs to be written on its own (a smaller one costs less to encode with
the step than to compare)."""


class _Written:
    """A state section as the stream last wrote it: the section, its members' names and
    values (held, so their ids stay theirs), each member's text and the section's."""

    __slots__ = ("names", "section", "text", "texts", "values")

    def __init__(self, section: dict[str, Any], names: list[str], values: list[Any],
                 texts: list[str]) -> None:
        self.section = section
        self.names = names
        self.values = values
        self.texts = texts
        self.text = "{" + ", ".join(texts) + "}"


class JsonStream:
    """Writes a JSON trace step by step: the same text as `Trace.dumps`, holding no step.

    A state section (cgroups, mounts, files) that is the very object written the step before
    is written with that step's text, and so is each member of a changed section that is the
    very object it was: a model snapshot keeps what did not change (`model.snapshot`), so an
    unchanged cgroup or file costs a join, not an encoding.
    """

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.started = False
        self._written: dict[str, _Written] = {}

    def _head(self, trace: Trace) -> None:
        if not self.started:
            head = json.dumps({**Trace(trace.backend, trace.kernel, trace.scenario).to_json()})
            self.out.write(head[:-2])  # up to and including the steps' "["
            self.started = True
        else:
            self.out.write(", ")

    def step(self, trace: Trace, record: StepRecord) -> None:
        """Write one step (after the trace's header, at the first)."""
        self._head(trace)
        step = record.to_json()
        state = record.state
        holes = [key for key in _HOLES if len(value := state.get(key, ())) >= _HOLE_MEMBERS
                 and type(value) is dict]
        if not holes:
            self.out.write(_dumps(step))
            return
        step["state"] = {key: _HOLES[key] if key in holes else value
                         for key, value in state.items()}
        text = _dumps(step)
        for key in holes:
            hole = _dumps(_HOLES[key])
            if text.count(hole) != 1:
                self.out.write(_dumps(record.to_json()))
                return
            text = text.replace(hole, self._section(key, state[key]))
        self.out.write(text)

    def _section(self, key: str, section: dict[str, Any]) -> str:
        """The text of a state section, from the last step's text of what did not change."""
        last = self._written.get(key)
        if last is not None and last.section is section:
            return last.text
        names = list(section)
        values = list(section.values())
        if last is not None and last.names == names:
            texts = last.texts.copy()
            for i in compress(range(len(values)), map(is_not, values, last.values)):
                texts[i] = f"{_dumps(names[i])}: {_dumps(values[i])}"
        else:
            before = {} if last is None else {
                (id(value), name): text
                for name, value, text in zip(last.names, last.values, last.texts, strict=True)}
            texts = [before.get((id(value), name)) or f"{_dumps(name)}: {_dumps(value)}"
                     for name, value in zip(names, values, strict=True)]
        written = self._written[key] = _Written(section, names, values, texts)
        return written.text

    def end(self, trace: Trace) -> None:
        """Close the steps list and the trace object."""
        if not self.started:
            self.out.write(json.dumps(trace.to_json())[:-2])
            self.started = True
        self.out.write("]}")


@dataclass(frozen=True)
class Difference:
    """A result or counter that differs between two traces (``a`` and ``b``)."""

    key: str
    a: Any
    b: Any


@dataclass(frozen=True)
class StepDiff:
    """A step whose result or counters differ between two traces."""

    index: int
    op: str
    args: dict[str, Any]
    line: int
    differences: tuple[Difference, ...]


def compare(a: Trace, b: Trace, *, watermarks: bool = False) -> list[StepDiff]:
    """The steps where the two traces' results or counters differ, in step order.

    Only the counters of scenario-format.md are compared, and only where both traces have
    them; a cgroup, mount or file that exists in one trace only is one difference.
    """
    if len(a.steps) != len(b.steps):
        raise ValueError(f"traces of different lengths ({len(a.steps)} and {len(b.steps)} steps)")
    diffs = []
    for sa, sb in zip(a.steps, b.steps, strict=True):
        differences = tuple(_differences(sa, sb, watermarks))
        if differences:
            diffs.append(StepDiff(sa.index, sa.op, sa.args, sa.line, differences))
    return diffs


def _differences(a: StepRecord, b: StepRecord, watermarks: bool) -> Iterator[Difference]:
    """Result, pool counters, then per cgroup/mount/file: its presence, or its counters."""
    paths: list[Path_] = [("result",), *((k,) for k in POOL_KEYS)]
    for section, plural in STATE_SECTIONS.items():
        names_a, names_b = a.state.get(plural, {}), b.state.get(plural, {})
        for name in [*names_a, *(n for n in names_b if n not in names_a)]:
            if name in names_a and name in names_b:
                paths.extend((section, name, counter) for counter in _COMPARED[section]
                             if watermarks or counter not in WATERMARKS)
            else:
                paths.append((section, name))
    for path in paths:
        va, vb = a.observed(path), b.observed(path)
        if len(path) == 2:
            yield Difference(key_name(path), *("present" if v is not ABSENT else ABSENT
                                               for v in (va, vb)))
        elif va is not ABSENT and vb is not ABSENT and not same(va, vb):
            yield Difference(key_name(path), va, vb)


def show_value(value: Any) -> str:
    """A value for people: null as ``null``, an underflowed counter as ``2^64-n``."""
    if isinstance(value, int) and not isinstance(value, bool) and value > UNSIGNED_MAX >> 1:
        return f"2^64-{UNSIGNED_MAX + 1 - value}"
    return "null" if value is None else str(value)
