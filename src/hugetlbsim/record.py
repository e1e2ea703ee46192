"""Expect blocks: the one checker of expectations and the one builder of recorded blocks.

`check` says which expectations of a step its record does not meet; `recorded_expect` says
what a step should expect, from what a backend showed after it (what ``record`` writes and
what the fuzzer saves with a shrunk divergence); `record_file` writes those blocks into a
scenario file in place, keeping its comments and spelling.  Values are compared as the kernel
shows them (`same`): an int counter modulo 2^64 and an unlimited limit as null, however it is
written (``max`` or ``null``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from io import StringIO
from pathlib import Path
from typing import Any, Final

from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.scalarstring import DoubleQuotedScalarString
from ruamel.yaml.util import load_yaml_guess_indent

from hugetlbsim.format.loader import expect_node, yaml_rt
from hugetlbsim.format.scenario import POOL_KEYS, SECTION_KEYS, Scenario, Step
from hugetlbsim.trace import ABSENT, STATE_SECTIONS, Path_, StepRecord, Trace, key_name, same

__all__ = ["RECORDED_CGROUP_KEYS", "Failure", "check", "expectations", "record_file",
           "recorded_expect", "with_expect"]

RECORDED_CGROUP_KEYS: Final = ("usage", "rsvd", "failcnt", "rsvd_failcnt", "events",
                               "events_local", "memory")
"""Cgroup counters written into expect blocks when the state has them (watermarks count failed
attempts, and limits are what the scenario set: both left out)."""


@dataclass(frozen=True)
class Failure:
    """An expectation that did not hold."""

    index: int
    line: int
    key: str
    expected: Any
    actual: Any

    def __str__(self) -> str:
        from hugetlbsim.trace import show_value

        return (f"step {self.index}: {self.key} expected {show_value(self.expected)}, "
                f"got {show_value(self.actual)}")


def expectations(expect: Mapping[str, Any]) -> Iterator[tuple[Path_, Any]]:
    """Every leaf of an ``expect`` block with its place."""
    for key, value in expect.items():
        if key in STATE_SECTIONS:
            for name, counters in value.items():
                for counter, expected in counters.items():
                    yield (key, name, counter), expected
        else:
            yield (key,), value


def check(step: Step, record: StepRecord) -> list[Failure]:
    """The step's expectations that the record does not meet."""
    return [Failure(step.index, step.line, key_name(path), expected, record.observed(path))
            for path, expected in expectations(step.expect or {})
            if not same(expected, record.observed(path))]


def recorded_expect(step: StepRecord, existing: Any = None) -> dict[str, Any]:
    """What a step should expect, from its record: result, pool, cgroup, mount and file
    counters (no watermarks or limits), plus any other counter ``existing`` checks."""
    state = step.state
    expect: dict[str, Any] = {"result": step.result,
                              **{k: state[k] for k in POOL_KEYS if k in state}}
    sections = {
        "cgroup": {name: _pick(c, RECORDED_CGROUP_KEYS)
                   for name, c in state.get("cgroups", {}).items()},
        "mount": {name: {"free": c["free"]}
                  for name, c in state.get("mounts", {}).items() if c.get("free") is not None},
        "file": {name: _pick(c, SECTION_KEYS["file"])
                 for name, c in state.get("files", {}).items()},
    }
    expect.update({section: values for section, values in sections.items() if values})
    if isinstance(existing, Mapping):
        for path, _ in expectations(existing):
            value = step.observed(path)
            if value is not ABSENT and len(path) == 3:
                expect.setdefault(path[0], {}).setdefault(path[1], {}).setdefault(path[2], value)
    return expect


def _pick(counters: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    return {k: counters[k] for k in keys if k in counters}


def with_expect(scenario: Scenario, trace: Trace) -> Scenario:
    """The scenario with each step's ``expect`` holding what ``trace`` showed after it."""
    steps = list(scenario.steps)
    for n, record in enumerate(trace.steps[:len(steps)]):
        steps[n] = replace(steps[n], expect=recorded_expect(record))
    return replace(scenario, steps=tuple(steps))


def record_file(path: Path, trace: Trace) -> None:
    """Write ``trace``'s counters into the expect blocks of the scenario file at ``path``, and
    the kernel it ran on (``uname -r``) as the scenario's ``kernel:``.

    Existing blocks are updated in place: comments stay with their keys, and equal values
    keep their spelling (``max`` for null, hex...).  The file is replaced atomically.
    """
    doc, indent, block_seq_indent = load_yaml_guess_indent(path.read_text(encoding="utf-8"))
    kernel = DoubleQuotedScalarString(trace.kernel)  # quoted: 6.10 is not a number
    if "kernel" in doc:
        doc["kernel"] = kernel
    else:
        doc.insert(list(doc).index("steps"), "kernel", kernel)
    for item, step in zip(doc["steps"] or (), trace.steps, strict=True):
        fresh = expect_node(recorded_expect(step, item.get("expect")))
        old = item.get("expect")
        if isinstance(old, CommentedMap):
            for node in (old, *(old[k] for k in SECTION_KEYS
                                if isinstance(old.get(k), CommentedMap))):
                node.fa.set_block_style()  # record adds many keys: one a line, as expect_node
            _merge(old, fresh)
        else:
            item["expect"] = fresh
    yaml = yaml_rt()
    yaml.indent(mapping=2, sequence=indent or 4,
                offset=2 if block_seq_indent is None else block_seq_indent)
    output = StringIO()
    yaml.dump(doc, output)
    _write_atomically(path, output.getvalue())


def _merge(node: CommentedMap, fresh: Mapping[str, Any]) -> None:
    """Make ``node`` hold ``fresh``'s values in ``fresh``'s order, in place."""
    for key in [k for k in node if k not in fresh]:
        del node[key]
    for key, value in fresh.items():
        old = node.get(key)
        if isinstance(value, Mapping) and isinstance(old, CommentedMap):
            _merge(old, value)
        elif key not in node or isinstance(value, Mapping) or not same(old, value):
            node[key] = value
        node.move_to_end(key)


def _write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` through a temporary file in the same directory."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
