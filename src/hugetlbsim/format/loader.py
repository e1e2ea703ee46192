"""Scenario files (YAML, format 1) to validated `Scenario` objects, and back.

Every problem is reported as a `ScenarioError` whose message is one line,
``FILE:LINE:COL: what is wrong; how to fix it``.  Besides types and required arguments, the
loader follows each name through the scenario (scenario-format.md, "Names are checked before
anything runs"): a name must be introduced before it is used, must be free when introduced
again, and a page range must lie inside its mapping as created.

Top-level keys other than format/name/pagesize/pool/steps are extensions and are kept in
`Scenario.extra`, except near-misses of a known key, which are reported as typos.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any, NoReturn

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.representer import RoundTripRepresenter
from ruamel.yaml.scalarbool import ScalarBoolean

from hugetlbsim.format.scenario import (
    CGROUP_KEYS,
    EXPECT_KEYS,
    OPS,
    PAGESIZES,
    POOL_KEYS,
    RESULTS,
    Arg,
    ArgKind,
    Scenario,
    Step,
)

Pos = tuple[int, int]
"""0-based (line, column) of a YAML node, as ruamel reports it."""
PosOf = Callable[[str], Pos]
"""Where a step's argument is written (the operation key for an argument left out)."""

TOP_KEYS = ("format", "name", "pagesize", "pool", "steps")
POOL_ARGS = ("pages", "overcommit")
SECTION_KEYS: dict[str, tuple[str, ...]] = {
    "cgroup": CGROUP_KEYS,
    "mount": ("free",),
    "file": ("blocks", "size"),
}
"""The keys an expectation may hold per cgroup / mount / file."""
NULLABLE_KEYS = frozenset({"limit", "rsvd_limit", "free"})
"""Expectation keys whose value may be null (unlimited limit, mount without size)."""
UNSIGNED_MAX = (1 << 64) - 1
SHM_MMAP_ARGS = ("proc", "map", "shm", "writable")

_NAME = r"[A-Za-z0-9_-]+"
_PATTERNS: dict[str, tuple[re.Pattern[str], str]] = {
    "name": (re.compile(_NAME), "letters, digits, _ and -"),
    "cgroup": (re.compile(rf"{_NAME}(?:/{_NAME})*"), "such names joined by /"),
    "file": (re.compile(rf"{_NAME}/{_NAME}|memfd:{_NAME}"), "MOUNT/NAME or memfd:NAME"),
    "memfd": (re.compile(rf"memfd:{_NAME}"), "memfd:NAME"),
}
_VALUE_KINDS = frozenset({"int", "bool", "limit", "advice"})
_ADVICE = ("dontneed", "remove")
_EXAMPLE: dict[str, str] = {
    "int": "4", "bool": "true", "limit": "4 or max", "advice": "dontneed", "proc": "p1",
    "map": "m", "file": "hp/f", "memfd": "memfd:f", "shm": "s", "cgroup": "a", "mount": "hp",
    "name": "hp",
}
_KEY_KIND = {"memfd": "file"}
"""Both kinds of file share one namespace of live names."""
_ENDED_BY: dict[str, str] = {
    "proc": "exit", "map": "a munmap of the whole mapping", "file": "unlink and close",
    "shm": "shmrm", "cgroup": "rmdir", "mount": "umount",
}


class ScenarioError(ValueError):
    """A scenario that cannot run; ``str()`` is ``FILE:LINE:COL: what is wrong; how to fix it``."""

    def __init__(self, path: str, line: int, col: int, message: str) -> None:
        super().__init__(f"{path}:{line}:{col}: {message}")
        self.path = path
        self.line = line
        self.col = col


def load(path: str | Path) -> Scenario:
    """Read and validate a scenario file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        message = f"cannot read the file ({exc}); check the path"
        raise ScenarioError(str(path), 1, 1, message) from None
    return load_text(text, str(path))


def load_text(text: str, path: str = "<scenario>") -> Scenario:
    """Validate scenario YAML given as text; ``path`` names it in error messages."""
    return _Loader(path).scenario(_parse(text, path))


def _parse(text: str, path: str) -> Any:
    """Round-trip parse (positions and comments kept), YAML errors as `ScenarioError`."""
    try:
        return yaml_rt().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        problem = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
        raise ScenarioError(path, line, col, f"{problem}; fix the YAML syntax here") from None


class _Representer(RoundTripRepresenter):
    """Round-trip output that writes null as ``null`` rather than as nothing."""

    def represent_none(self, data: None) -> Any:
        return self.represent_scalar("tag:yaml.org,2002:null", "null")


_Representer.add_representer(type(None), _Representer.represent_none)


def yaml_rt() -> YAML:
    """The project's YAML reader/writer: round-trip, block lists indented under their key."""
    yaml = YAML(typ="rt")
    yaml.Representer = _Representer
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096
    return yaml


def given_args(op: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments that differ from their defaults, as a scenario file would spell them."""
    defaults = {a.name: a.default for a in OPS[op]}
    return {k: v for k, v in args.items() if v is not None and v != defaults[k]}


def dump_scenario(scenario: Scenario) -> str:
    """Write a scenario as YAML that `load_text` reads back to the same steps."""
    doc = CommentedMap(format=1)
    if scenario.name:
        doc["name"] = scenario.name
    if scenario.pagesize != "2M":
        doc["pagesize"] = scenario.pagesize
    pool = {"pages": scenario.pool_pages, "overcommit": scenario.pool_overcommit}
    if any(pool.values()):
        doc["pool"] = flow_map({k: v for k, v in pool.items() if v})
    doc.update(scenario.extra)
    steps = CommentedSeq()
    for step in scenario.steps:
        item = CommentedMap({step.op: flow_map(given_args(step.op, step.args))})
        if step.expect is not None:
            item["expect"] = expect_node(step.expect)
        steps.append(item)
    doc["steps"] = steps
    out = StringIO()
    yaml_rt().dump(doc, out)
    return out.getvalue()


def flow_map(values: Mapping[str, Any]) -> CommentedMap:
    """A mapping written on one line, ``{a: 1, b: 2}``."""
    node = CommentedMap(values)
    node.fa.set_flow_style()
    return node


def expect_node(expect: Mapping[str, Any]) -> CommentedMap:
    """An ``expect`` block: one key a line, each cgroup/mount/file's counters on one line."""
    node = CommentedMap()
    for key, value in expect.items():
        if key in SECTION_KEYS:
            node[key] = CommentedMap({name: flow_map(v) for name, v in value.items()})
        else:
            node[key] = value
    return node


def plain(node: Any) -> Any:
    """ruamel's round-trip nodes as plain dicts, lists, bools, ints, floats and strs."""
    if isinstance(node, Mapping):
        return {plain(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    if isinstance(node, ScalarBoolean | bool):
        return bool(node)
    for kind in (int, float, str):
        if isinstance(node, kind):
            return kind(node)
    return node


def _suggest(word: object, choices: Iterable[str]) -> str:
    """``did you mean 'x'?`` for the closest choice, else the list of choices."""
    choices = list(choices)
    close = difflib.get_close_matches(str(word), choices, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else f"use one of {', '.join(choices)}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool | ScalarBoolean)


@dataclass
class _Live:
    """A live name: where it was introduced, plus what later checks need."""

    line: int
    length: int = 0
    """Pages of a mapping as created, or of a shm segment."""
    open: bool = True
    """A file: the scenario still holds its handle."""
    linked: bool = True
    """A file: its path still exists (never, for a memfd)."""


Key = tuple[str, str]
"""(kind, name) of a live name; a map's name is ``PROC:MAP``, files of both kinds are "file"."""


class _Loader:
    """Validates one scenario document, following every name from step to step."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.live: dict[Key, _Live] = {("proc", "init"): _Live(0), ("cgroup", "root"): _Live(0)}
        self.ended: dict[Key, int] = {}

    def fail(self, pos: Pos, message: str) -> NoReturn:
        raise ScenarioError(self.path, pos[0] + 1, pos[1] + 1, message)

    # -- top level --------------------------------------------------------------------------

    def scenario(self, doc: Any) -> Scenario:
        if doc is None:
            self.fail((0, 0), "the file is empty; start it with 'format: 1' and a 'steps:' list")
        if not isinstance(doc, CommentedMap):
            self.fail((0, 0), "a scenario must be a mapping; start it with 'format: 1'")
        extra: dict[str, Any] = {}
        for key in doc:
            if key not in TOP_KEYS:
                if difflib.get_close_matches(str(key), TOP_KEYS, n=1, cutoff=0.75):
                    self.fail(doc.lc.key(key), f"unknown top-level key {key!r}; "
                              + _suggest(key, TOP_KEYS))
                extra[str(key)] = plain(doc[key])
        if "format" not in doc:
            self.fail((0, 0), "missing 'format'; add 'format: 1' at the top")
        if doc["format"] != 1 or not _is_int(doc["format"]):
            self.fail(doc.lc.value("format"),
                      f"unsupported format {doc['format']!r}; this version reads 'format: 1'")
        pagesize = doc.get("pagesize", "2M")
        if not isinstance(pagesize, str) or pagesize not in PAGESIZES:
            self.fail(doc.lc.value("pagesize"),
                      f"unsupported pagesize {pagesize!r}; use one of {', '.join(PAGESIZES)}")
        pool = self.pool(doc)
        if "steps" not in doc:
            self.fail((0, 0), "missing 'steps'; add a 'steps:' list of operations")
        steps = doc["steps"]
        if steps is None:
            steps = CommentedSeq()
        if not isinstance(steps, CommentedSeq):
            self.fail(doc.lc.value("steps"), "'steps' must be a list; write each step as "
                      "'- op: {...}'")
        return Scenario(
            steps=tuple(self.step(steps, i) for i in range(len(steps))),
            name=self.title(doc),
            pagesize=str(pagesize),
            pool_pages=pool["pages"],
            pool_overcommit=pool["overcommit"],
            path=self.path,
            extra=extra,
        )

    def title(self, doc: CommentedMap) -> str:
        name = doc.get("name")
        if name is None:
            return ""
        if isinstance(name, str | int) and not isinstance(name, bool | ScalarBoolean):
            return str(name)
        self.fail(doc.lc.value("name"), "'name' must be a line of text; write e.g. 'name: my-test'")

    def pool(self, doc: CommentedMap) -> dict[str, int]:
        pool = doc.get("pool")
        if pool is None:
            return dict.fromkeys(POOL_ARGS, 0)
        if not isinstance(pool, CommentedMap):
            self.fail(doc.lc.value("pool"), "'pool' must be a mapping; write e.g. "
                      "'pool: {pages: 8, overcommit: 0}'")
        for key, value in pool.items():
            if key not in POOL_ARGS:
                self.fail(pool.lc.key(key), f"unknown pool key {key!r}; {_suggest(key, POOL_ARGS)}")
            if not _is_int(value) or value < 0:
                self.fail(pool.lc.value(key), f"pool {key} must be an integer >= 0, not {value!r}; "
                          f"write e.g. '{key}: 8'")
        return {k: int(pool.get(k, 0)) for k in POOL_ARGS}

    # -- one step ---------------------------------------------------------------------------

    def step(self, steps: CommentedSeq, index: int) -> Step:
        pos = steps.lc.item(index)
        item = steps[index]
        if not isinstance(item, CommentedMap):
            self.fail(pos, "a step must be a mapping with one operation; write e.g. "
                      "'- spawn: {proc: p1}'")
        ops = []
        for key in item:
            if key == "expect":
                continue
            if key not in OPS:
                self.fail(item.lc.key(key), f"unknown operation {key!r}; "
                          + _suggest(key, [*OPS, "expect"]))
            ops.append(key)
            if len(ops) == 2:
                self.fail(item.lc.key(key), f"two operations in one step ({ops[0]!r} and {key!r}); "
                          f"start a new step ('- ') for {key!r}")
        if not ops:
            self.fail(pos, f"the step has no operation; add one of {', '.join(OPS)}")
        op = ops[0]
        op_pos: Pos = item.lc.key(op)
        node = item[op]
        if node is None:
            node = CommentedMap()
        if not isinstance(node, CommentedMap):
            self.fail(item.lc.value(op), f"the arguments of {op} must be a mapping; write e.g. "
                      f"'{op}: {{{self.example(op)}}}'")

        def pos_of(name: str) -> Pos:
            if name not in node:
                return op_pos
            line, col = node.lc.value(name)
            return line, col

        args = self.arguments(op, node, op_pos)
        self.names(op, args, set(node), pos_of, pos[0] + 1)
        expect = self.expect(item) if "expect" in item else None
        return Step(index=index, op=op, args=args, expect=expect, line=pos[0] + 1)

    def example(self, op: str) -> str:
        return ", ".join(f"{a.name}: {_EXAMPLE[a.kind]}" for a in OPS[op] if a.required)

    def arguments(self, op: str, node: CommentedMap, op_pos: Pos) -> dict[str, Any]:
        spec = {a.name: a for a in OPS[op]}
        for key in node:
            if key not in spec:
                self.fail(node.lc.key(key), f"unknown argument {key!r} of {op}; "
                          + _suggest(key, spec))
        args = {a.name: a.default for a in spec.values()}
        for arg in spec.values():
            if arg.name in node:
                args[arg.name] = self.value(op, arg, node[arg.name], node.lc.value(arg.name))
            elif arg.required:
                self.fail(op_pos, f"{op} is missing argument {arg.name!r}; "
                          f"add '{arg.name}: {_EXAMPLE[arg.kind]}'")
        return args

    def value(self, op: str, arg: Arg, value: Any, pos: Pos) -> Any:
        """Check one argument's type, returning it as a plain Python value."""
        what = f"{op} argument {arg.name!r}"
        kind: ArgKind = arg.kind
        if kind == "int":
            if _is_int(value) and value >= 0:
                return int(value)
            self.fail(pos, f"{what} must be an integer >= 0 (huge pages), not {value!r}; "
                      f"write e.g. '{arg.name}: 4'")
        if kind == "bool":
            if isinstance(value, bool | ScalarBoolean):
                return bool(value)
            self.fail(pos, f"{what} must be true or false, not {value!r}; write "
                      f"'{arg.name}: true' or '{arg.name}: false'")
        if kind == "limit":
            if (_is_int(value) and value >= 0) or value == "max":
                return plain(value)
            self.fail(pos, f"{what} must be a number of huge pages or max, not {value!r}; "
                      f"write e.g. '{arg.name}: 4' or '{arg.name}: max'")
        if kind == "advice":
            if value in _ADVICE:
                return str(value)
            self.fail(pos, f"{what} must be dontneed or remove, not {value!r}; "
                      f"write '{arg.name}: dontneed' or '{arg.name}: remove'")
        return self.name(what, kind, value, pos)

    def name(self, what: str, kind: str, value: Any, pos: Pos) -> str:
        pattern, spelled = _PATTERNS.get(kind, _PATTERNS["name"])
        if isinstance(value, str):
            if pattern.fullmatch(value):
                return str(value)
            fix = f"write e.g. {_EXAMPLE[kind]!r}"
        else:
            fix = f"quote it ('{plain(value)}') if it is meant as a name"
        self.fail(pos, f"{what} must be a name ({spelled}), not {plain(value)!r}; {fix}")

    # -- names ------------------------------------------------------------------------------

    def names(self, op: str, args: dict[str, Any], given: set[str], pos_of: PosOf,
              line: int) -> None:
        """Follow the step's names: uses must be live, introductions free; then apply it."""
        for arg in OPS[op]:
            value = args[arg.name]
            if value is None or arg.kind in _VALUE_KINDS or (op == "cgroup" and arg.introduces):
                continue
            key = self.key(arg.kind, value, args)
            if arg.introduces:
                self.need_free(key, pos_of(arg.name))
            else:
                self.need(key, pos_of(arg.name))
        effect = getattr(self, f"op_{op}", None)
        if effect is not None:
            effect(args, given, pos_of, line)

    @staticmethod
    def key(kind: str, name: str, args: Mapping[str, Any]) -> Key:
        if kind == "map":
            return ("map", f"{args['proc']}:{name}")
        return (_KEY_KIND.get(kind, kind), name)

    @staticmethod
    def label(key: Key) -> str:
        kind, name = key
        if kind == "map":
            proc, _sep, name = name.partition(":")
            return f"map {name!r} of proc {proc!r}"
        return f"{kind} {name!r}"

    @staticmethod
    def introducers(kind: str) -> str:
        return " or ".join(op for op, spec in OPS.items()
                           for a in spec if a.introduces and _KEY_KIND.get(a.kind, a.kind) == kind)

    def need(self, key: Key, pos: Pos, fix: str = "") -> _Live:
        if key in self.live:
            return self.live[key]
        ended = f" (it ended at line {self.ended[key]})" if key in self.ended else ""
        fix = fix or f"introduce it first with a {self.introducers(key[0])} step"
        self.fail(pos, f"{self.label(key)} does not exist here{ended}; {fix}")

    def need_free(self, key: Key, pos: Pos) -> None:
        held = self.live.get(key)
        if held is None:
            return
        if key[0] == "file" and not held.linked:
            self.fail(pos, f"the scenario still holds the handle of the unlinked file {key[1]!r}; "
                      "close it before creating the path again")
        self.fail(pos, f"{self.label(key)} is already live (from line {held.line}); choose another "
                  f"name or end it first with {_ENDED_BY[key[0]]}")

    def end(self, key: Key, line: int) -> None:
        del self.live[key]
        self.ended[key] = line

    def introduce(self, key: Key, line: int, **details: Any) -> None:
        self.live[key] = _Live(line, **details)
        self.ended.pop(key, None)

    def op_mount(self, args: dict[str, Any], given: set[str], pos_of: PosOf, line: int) -> None:
        self.introduce(("mount", args["name"]), line)

    def op_umount(self, args: dict[str, Any], given: set[str], pos_of: PosOf, line: int) -> None:
        mount = args["name"]
        for key in [k for k in self.live if k[0] == "file" and k[1].startswith(f"{mount}/")]:
            self.end(key, line)
        self.end(("mount", mount), line)

    def op_cgroup(self, args: dict[str, Any], given: set[str], pos_of: PosOf, line: int) -> None:
        name = args["name"]
        if name == "root":
            for limit in ("limit", "rsvd_limit"):
                if args[limit] is not None:
                    self.fail(pos_of(limit), "the root cgroup takes no limits; set them on a child "
                              "cgroup, e.g. 'cgroup: {name: a, limit: 4}'")
            return
        if ("cgroup", name) in self.live:
            return
        parent = name.rpartition("/")[0]
        if parent.split("/")[0] == "root":
            self.fail(pos_of("name"), f"cgroup names are relative to root; write "
                      f"{name.partition('/')[2]!r} instead of {name!r}")
        if parent:
            self.need(("cgroup", parent), pos_of("name"),
                      f"create the parent first with 'cgroup: {{name: {parent}}}'")
        self.introduce(("cgroup", name), line)

    def op_rmdir(self, args: dict[str, Any], given: set[str], pos_of: PosOf, line: int) -> None:
        if args["cgroup"] == "root":
            self.fail(pos_of("cgroup"), "the root cgroup cannot be removed; remove this step")
        self.end(("cgroup", args["cgroup"]), line)

    def op_spawn(self, args: dict[str, Any], given: set[str], pos_of: PosOf, line: int) -> None:
        self.introduce(("proc", args["proc"]), line)

    def op_fork(self, args: dict[str, Any], given: set[str], pos_of: PosOf, line: int) -> None:
        prefix = f"{args['proc']}:"
        self.introduce(("proc", args["child"]), line)
        for (kind, name), live in list(self.live.items()):
            if kind == "map" and name.startswith(prefix):
                self.introduce(("map", f"{args['child']}:{name.removeprefix(prefix)}"), line,
                               length=live.length)

    def op_exit(self, args: dict[str, Any], given: set[str], pos_of: PosOf, line: int) -> None:
        proc = args["proc"]
        for key in [k for k in self.live if k[0] == "map" and k[1].startswith(f"{proc}:")]:
            self.end(key, line)
        self.end(("proc", proc), line)

    def op_create(self, args: dict[str, Any], given: set[str], pos_of: PosOf, line: int) -> None:
        path = args["file"]
        if path.startswith("memfd:"):
            self.fail(pos_of("file"), f"create makes hugetlbfs files (MOUNT/NAME); use "
                      f"'memfd: {{file: {path}}}' for {path!r}")
        mount = path.partition("/")[0]
        self.need(("mount", mount), pos_of("file"),
                  f"mount it first with 'mount: {{name: {mount}}}'")
        self.introduce(("file", path), line)

    def op_memfd(self, args: dict[str, Any], given: set[str], pos_of: PosOf, line: int) -> None:
        self.introduce(("file", args["file"]), line, linked=False)

    def op_close(self, args: dict[str, Any], given: set[str], pos_of: PosOf, line: int) -> None:
        key = ("file", args["file"])
        live = self.live[key]
        if not live.open:
            self.fail(pos_of("file"), f"file {key[1]!r} has no open handle (the scenario closed "
                      "it before); remove this step")
        live.open = False
        if not live.linked:
            self.end(key, line)

    def op_unlink(self, args: dict[str, Any], given: set[str], pos_of: PosOf, line: int) -> None:
        key = ("file", args["file"])
        live = self.live[key]
        if key[1].startswith("memfd:"):
            self.fail(pos_of("file"), f"{key[1]!r} is a memfd and has no path to unlink; "
                      "close it instead")
        if not live.linked:
            self.fail(pos_of("file"), f"file {key[1]!r} is already unlinked; remove this step")
        live.linked = False
        if not live.open:
            self.end(key, line)

    def op_shmget(self, args: dict[str, Any], given: set[str], pos_of: PosOf, line: int) -> None:
        self.introduce(("shm", args["shm"]), line, length=args["size"])

    def op_shmrm(self, args: dict[str, Any], given: set[str], pos_of: PosOf, line: int) -> None:
        self.end(("shm", args["shm"]), line)

    def op_mmap(self, args: dict[str, Any], given: set[str], pos_of: PosOf, line: int) -> None:
        sources = [k for k in ("file", "shm", "anon") if args[k] not in (None, False)]
        if len(sources) != 1:
            pos = pos_of(sources[1]) if sources else pos_of("map")
            self.fail(pos, "mmap needs exactly one of file, shm or 'anon: true'; "
                      + (f"keep only one of {', '.join(sources)}" if sources else "add one"))
        if sources == ["shm"]:
            for key in given:
                if key not in SHM_MMAP_ARGS:
                    self.fail(pos_of(key), f"mmap of a shm segment takes only "
                              f"{', '.join(SHM_MMAP_ARGS)} (it maps the whole segment); "
                              f"remove {key!r}")
            length = self.live[("shm", args["shm"])].length
        elif args["length"] is None:
            self.fail(pos_of("map"), "mmap of a file or anon mapping is missing argument 'length'; "
                      "add 'length: 4'")
        else:
            length = args["length"]
        self.introduce(self.key("map", args["map"], args), line, length=length)

    def op_munmap(self, args: dict[str, Any], given: set[str], pos_of: PosOf, line: int) -> None:
        key = self.key("map", args["map"], args)
        if self.span(key, args, ("offset", "length"), given, pos_of) == (0, self.live[key].length):
            self.end(key, line)

    def op_mprotect(self, args: dict[str, Any], given: set[str], pos_of: PosOf, line: int) -> None:
        self.span(self.key("map", args["map"], args), args, ("offset", "length"), given, pos_of)

    def op_touch(self, args: dict[str, Any], given: set[str], pos_of: PosOf, line: int) -> None:
        self.span(self.key("map", args["map"], args), args, ("page", "count"), given, pos_of)

    op_madvise = op_touch

    def span(self, key: Key, args: Mapping[str, Any], names: tuple[str, str], given: set[str],
             pos_of: PosOf) -> tuple[int, int]:
        """Check the step's pages ``[start, end)`` (no count: to the end) lie in the mapping;
        ``names`` are the arguments holding start and count."""
        live = self.live[key]
        start: int = args[names[0]]
        count: int | None = args[names[1]]
        end = max(start, live.length) if count is None else start + count
        if end > live.length:
            blamed = names[1] if names[1] in given and start <= live.length else names[0]
            self.fail(pos_of(blamed),
                      f"pages [{start}, {end}) are outside {self.label(key)}, which has pages "
                      f"[0, {live.length}) as created at line {live.line}; keep the range "
                      f"within [0, {live.length})")
        return start, end

    # -- expectations -----------------------------------------------------------------------

    def expect(self, item: CommentedMap) -> dict[str, Any]:
        node = item["expect"]
        if not isinstance(node, CommentedMap):
            self.fail(item.lc.value("expect"), "'expect' must be a mapping; write e.g. "
                      "'expect: {result: ok, rsvd: 4}'")
        for key, value in node.items():
            pos = node.lc.value(key)
            if key not in EXPECT_KEYS:
                self.fail(node.lc.key(key), f"unknown expectation {key!r}; "
                          + _suggest(key, EXPECT_KEYS))
            if key == "result":
                if value not in RESULTS:
                    self.fail(pos, f"expected result {value!r} is not a result; use one of "
                              f"{', '.join(RESULTS)}")
            elif key in POOL_KEYS:
                self.count(key, value, pos)
            else:
                self.section(key, value, pos)
        return {str(k): plain(v) for k, v in node.items()}

    def section(self, section: str, node: Any, pos: Pos) -> None:
        allowed = SECTION_KEYS[section]
        example = f"'{section}: {{{_EXAMPLE[section]}: {{{allowed[0]}: 0}}}}'"
        if not isinstance(node, CommentedMap):
            self.fail(pos, f"expect {section!r} must be a mapping by {section} name; write e.g. "
                      + example)
        kind = "name" if section == "mount" else section
        for name, counters in node.items():
            self.name(f"expect {section}", kind, name, node.lc.key(name))
            if not isinstance(counters, CommentedMap):
                self.fail(node.lc.value(name), f"expect {section} {name!r} must be a mapping of "
                          f"counters; write e.g. {example}")
            for key, value in counters.items():
                if key not in allowed:
                    self.fail(counters.lc.key(key), f"unknown {section} expectation {key!r}; "
                              + _suggest(key, allowed))
                if key in NULLABLE_KEYS and value is None:
                    continue
                if key in ("limit", "rsvd_limit") and value == "max":
                    continue
                self.count(key, value, counters.lc.value(key))

    def count(self, key: str, value: Any, pos: Pos) -> None:
        if not _is_int(value) or not 0 <= value <= UNSIGNED_MAX:
            extra = ", max or null" if key in ("limit", "rsvd_limit") else (
                " or null" if key in NULLABLE_KEYS else "")
            self.fail(pos, f"expected {key} must be an unsigned integer{extra}, not {value!r}; "
                      f"write e.g. '{key}: 0' (an underflow reads as 2^64 - n)")


def short_op(op: str, args: Mapping[str, Any]) -> str:
    """``mmap proc=p1 map=m file=hp/f length=4``: the operation with its non-default args."""
    return " ".join([op, *(f"{k}={_yaml_value(v)}" for k, v in given_args(op, args).items())])


def _yaml_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
