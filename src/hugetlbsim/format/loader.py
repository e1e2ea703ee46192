"""Scenario files (YAML, format 1) to validated `Scenario` objects, and back.

Every problem is reported as a `ScenarioError` whose message is one line of bounded length,
``FILE:LINE:COL: what is wrong; how to fix it``, whatever the input: a missing, unreadable or
non-regular file (a FIFO is never waited on), a file over `MAX_FILE_BYTES`, bad UTF-8, control
characters, YAML anchors, aliases, tags and merge keys (refused outright: a scenario needs none,
and refusing them bounds what a file can expand to), nesting deeper than `MAX_DEPTH`, integers
longer than `MAX_INT_CHARS` or above 2^64 - 1 (no kernel interface takes a wider value).  Values
shown in messages are cut to `MAX_SHOWN` characters.

Besides types and required arguments, the loader follows each name through the scenario with
`hugetlbsim.format.names` (scenario-format.md, "Names are checked before anything runs").
Top-level keys other than format/name/pagesize/pool/steps are extensions and are kept in
`Scenario.extra`, except near-misses of a known key, which are reported as typos.

Two readers give the same answer.  The fast one builds the document from libyaml's events
(PyYAML's ``CSafeLoader``, in C; where each step starts is kept from its marks), or, for steps
written one per line as generated files write them, from the lines themselves, and resolves
each plain scalar with ruamel's YAML 1.2 resolver and constructor (once per distinct text); it
steps aside, and the round-trip reader
(ruamel, in Python) reads the file, whenever it could answer differently: anything libyaml
refuses, tags, anchors, directives, tabs, carriage returns and non-ASCII text, duplicate or
complex keys, merge keys, overlong integers, nesting deeper than `MAX_DEPTH`, and every problem
the checks find (so each message comes from the round-trip reader, exactly as before).
"""

from __future__ import annotations

import difflib
import gc
import os
import re
import stat
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from io import StringIO
from pathlib import Path
from typing import Any, NoReturn, get_args

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.composer import Composer
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    MappingStartEvent,
    NodeEvent,
    SequenceStartEvent,
)
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.representer import RoundTripRepresenter
from ruamel.yaml.scalarbool import ScalarBoolean
from ruamel.yaml.scanner import RoundTripScanner

try:  # libyaml through PyYAML: the fast reader; without it every file takes the round-trip one
    from yaml import CSafeLoader as _CParser
    from yaml import YAMLError as _CYAMLError
    from yaml.events import DocumentEndEvent as _DocumentEndEvent
    from yaml.events import MappingEndEvent as _MappingEndEvent
    from yaml.events import MappingStartEvent as _MappingStartEvent
    from yaml.events import ScalarEvent as _ScalarEvent
    from yaml.events import SequenceEndEvent as _SequenceEndEvent
    from yaml.events import SequenceStartEvent as _SequenceStartEvent
    from yaml.events import StreamEndEvent as _StreamEndEvent
except ImportError:  # pragma: no cover - PyYAML is a dependency; a build without libyaml
    _CParser = None  # type: ignore[assignment,misc]

from hugetlbsim.format.names import NAME_PATTERNS, Names
from hugetlbsim.format.scenario import (
    ADVICE,
    CGROUP_INTERFACES,
    CGROUP_KEYS,
    CGROUP_V1_ONLY_KEYS,
    CGROUP_V2_KEYS,
    EXPECT_KEYS,
    NULLABLE_KEYS,
    OPS,
    PAGESIZES,
    POOL_ARGS,
    POOL_KEYS,
    RESULTS,
    SECTION_KEYS,
    TOP_KEYS,
    UNSIGNED_MAX,
    VALUE_KINDS,
    Arg,
    ArgKind,
    Scenario,
    Step,
)

__all__ = [
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_INT_CHARS",
    "MAX_MESSAGE",
    "MAX_SHOWN",
    "ScenarioError",
    "dump_scenario",
    "expect_node",
    "flow_map",
    "given_args",
    "load",
    "load_text",
    "plain",
    "short_op",
    "yaml_rt",
]

MAX_FILE_BYTES = 64 << 20
"""The largest scenario file read.  Scenarios are a few kilobytes, but a generated one can
be large (bench/scale.py loads 10^5 steps, some 6 MB); loading costs about 0.1 s a MB when
every step is one line, 0.25 s and 20 MB a MB through libyaml, up to about 7 s and 150 MB a
MB through the round-trip reader."""
MAX_DEPTH = 32
"""The deepest nesting of YAML collections (a scenario needs 6)."""
MAX_INT_CHARS = 100
"""The longest integer literal (2^64 - 1 takes 20 digits, 66 characters in binary)."""
MAX_SHOWN = 60
"""Characters of a value shown in a message."""
MAX_MESSAGE = 400
"""Characters of ``what; fix`` in a message (the FILE part is cut separately)."""

Pos = tuple[int, int]
"""0-based (line, column) of a YAML node, as ruamel reports it."""
Where = Callable[[], Pos]
"""Where a value is written, asked only when there is something to report."""
PosOf = Callable[[str], Pos]
"""Where a step's argument is written (the operation key for an argument left out)."""

_EXAMPLE: dict[str, str] = {
    "int": "4", "bool": "true", "limit": "4 or max", "advice": "dontneed", "proc": "p1",
    "map": "m", "file": "hp/f", "memfd": "memfd:f", "shm": "s", "cgroup": "a", "mount": "hp",
    "name": "hp",
}
_NON_PRINTABLE = re.compile(
    "[^\x09\x0A\x0D\x20-\x7E\x85\xA0-\uD7FF\uE000-\uFFFD\U00010000-\U0010FFFF]")
"""The characters YAML does not allow in a stream (ruamel's reader refuses them)."""
_TAG = "tag:yaml.org,2002:"
_PLAIN_TAGS = frozenset(_TAG + t for t in ("str", "int", "float", "bool", "null", "seq", "map"))
"""The node tags a scenario is made of; a timestamp-like scalar is read as text."""


def _shown(value: Any) -> str:
    """``repr`` of a value (plain Python), cut to `MAX_SHOWN` characters."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN - 3] + "..."


def _one_line(text: str) -> str:
    """Text with every non-printable character escaped, so a message stays on one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class ScenarioError(ValueError):
    """A scenario that cannot run; ``str()`` is ``FILE:LINE:COL: what is wrong; how to fix it``,
    on one line of bounded length."""

    def __init__(self, path: str, line: int, col: int, message: str) -> None:
        shown_path = _one_line(path)
        if len(shown_path) > 100:
            shown_path = "..." + shown_path[-97:]
        message = _one_line(message)
        if len(message) > MAX_MESSAGE:
            what, sep, fix = message.rpartition("; ")
            fix = fix[:MAX_MESSAGE // 2]
            what = what[:MAX_MESSAGE - len(fix) - 5] + "..."
            message = what + sep + fix
        super().__init__(f"{shown_path}:{line}:{col}: {message}")
        self.path = path
        self.line = line
        self.col = col


def load(path: str | Path) -> Scenario:
    """Read and validate a scenario file."""
    return load_text(_read(str(path)), str(path))


def _read(path: str) -> str:
    """The file's text; a directory, FIFO, device or socket is refused before it is opened,
    and the file is opened non-blocking, so nothing here waits on a writer."""

    def fail(message: str, line: int = 1, col: int = 1) -> NoReturn:
        raise ScenarioError(path, line, col, message)

    def not_regular(mode: int) -> NoReturn:
        if stat.S_ISDIR(mode):
            fail(f"{path} is a directory; give a scenario file (.yaml)")
        kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a file")
        fail(f"{path} is {kind}, not a regular file; give a scenario file (.yaml)")

    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            not_regular(mode)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        fail(f"cannot read the file ({exc.strerror or exc}); check the path")
    try:
        with os.fdopen(fd, "rb") as file:
            info = os.fstat(file.fileno())
            if not stat.S_ISREG(info.st_mode):  # replaced since the stat above
                not_regular(info.st_mode)
            if info.st_size > MAX_FILE_BYTES:
                fail(_too_big(info.st_size))
            chunks: list[bytes] = []
            size = 0
            while size <= MAX_FILE_BYTES and (chunk := file.read(1 << 16)):
                chunks.append(chunk)
                size += len(chunk)
            data = b"".join(chunks)
    except OSError as exc:
        fail(f"cannot read the file ({exc.strerror or exc}); check the path")
    if len(data) > MAX_FILE_BYTES:
        fail(_too_big(len(data)))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = _line_col(data[:exc.start].decode("utf-8", "replace"), len(
            data[:exc.start].decode("utf-8", "replace")))
        fail(f"the file is not valid UTF-8 (byte 0x{data[exc.start]:02x}); save it as UTF-8",
             line, col)


def _too_big(size: int) -> str:
    return (f"the file has {size} bytes, more than the {MAX_FILE_BYTES >> 20} MB a scenario may "
            "have; split it or check that this is a scenario")


def _line_col(text: str, index: int) -> Pos:
    """1-based (line, column) of ``text[index]``."""
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def load_text(text: str, path: str = "<scenario>") -> Scenario:
    """Validate scenario YAML given as text; ``path`` names it in error messages."""
    if len(text) > MAX_FILE_BYTES:
        raise ScenarioError(path, 1, 1, _too_big(len(text.encode("utf-8", "replace"))))
    bad = _NON_PRINTABLE.search(text)
    if bad is not None:
        char = bad.group()
        name = {"\0": " (NUL)", "\x1b": " (ESC)", "\x7f": " (DEL)"}.get(char, "")
        what = ("a control character" if ord(char) < 0xA0 or char == "\x7f"
                else "a character YAML does not allow")
        raise ScenarioError(path, *_line_col(text, bad.start()),
                            f"{what}, U+{ord(char):04X}{name}; remove it (a scenario holds "
                            "printable text, tabs and newlines)")
    enabled = gc.isenabled()
    gc.disable()  # the collector would walk the growing tree again and again
    try:
        fast = _fast_parse(text)
        if fast is not _ASIDE:
            try:
                return _Loader(path).scenario(fast)
            except (ScenarioError, _Aside):
                pass  # the message, and where it points, come from the round-trip reader
    finally:
        if enabled:
            gc.enable()
    return _Loader(path).scenario(_parse(text, path))


class _Refused(Exception):
    """YAML the scenario format does not take, found while composing."""

    def __init__(self, mark: Any, message: str) -> None:
        super().__init__(message)
        self.pos: Pos = (mark.line, mark.column) if mark is not None else (0, 0)
        self.message = message


def _too_deep(mark: Any) -> _Refused:
    return _Refused(mark, f"the YAML nests deeper than {MAX_DEPTH} levels; a scenario needs at "
                    "most 6, flatten it")


class _ScenarioScanner(RoundTripScanner):
    """ruamel's scanner, refusing flow collections (``[``, ``{``) nested deeper than
    `MAX_DEPTH` as it meets them (it scans ahead through open brackets, each costing a walk
    over the levels before it)."""

    def fetch_flow_collection_start(self, TokenClass: Any, to_push: Any) -> None:
        if len(self.flow_context) >= MAX_DEPTH:
            raise _too_deep(self.reader.get_mark())
        super().fetch_flow_collection_start(TokenClass, to_push)


class _ScenarioComposer(Composer):
    """ruamel's composer, refusing anchors, aliases, tags, merge keys, deep nesting and
    overlong integers before anything is built from them."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.parser.peek_event()
        if isinstance(event, AliasEvent) or (isinstance(event, NodeEvent)
                                             and event.anchor is not None):
            raise _Refused(event.start_mark, "YAML anchors and aliases (&name, *name) are not "
                           "part of the scenario format; write the value out in full")
        ctag = getattr(event, "ctag", None)
        if ctag is not None and str(ctag) != "!":
            raise _Refused(event.start_mark, f"YAML tags ({_shown(str(ctag))}) are not part "
                           "of the scenario format; remove the tag")
        if isinstance(event, MappingStartEvent | SequenceStartEvent):
            depth = getattr(self, "_scenario_depth", 0)
            if depth >= MAX_DEPTH:
                raise _too_deep(event.start_mark)
            self._scenario_depth = depth + 1
            try:
                return super().compose_node(parent, index)
            finally:
                self._scenario_depth = depth
        return super().compose_node(parent, index)

    def compose_scalar_node(self, anchor: Any) -> Any:
        node = super().compose_scalar_node(anchor)
        tag = str(node.tag)
        if tag == _TAG + "merge":
            raise _Refused(node.start_mark, "YAML merge keys (<<) are not part of the scenario "
                           "format; write the keys out in full")
        if tag == _TAG + "int" and len(node.value) > MAX_INT_CHARS:
            raise _Refused(node.start_mark, f"an integer of {len(node.value)} characters is "
                           f"beyond any counter (at most 2^64 - 1 = {UNSIGNED_MAX}); "
                           "write a smaller number")
        if tag not in _PLAIN_TAGS:
            return ScalarNode(_TAG + "str", node.value, node.start_mark, node.end_mark,
                              style=node.style, comment=node.comment)
        return node


def _parse(text: str, path: str) -> Any:
    """Round-trip parse (positions and comments kept), YAML errors as `ScenarioError`."""
    yaml = yaml_rt()
    yaml.Scanner = _ScenarioScanner
    yaml.Composer = _ScenarioComposer
    try:
        return yaml.load(text)
    except _Refused as exc:
        raise ScenarioError(path, exc.pos[0] + 1, exc.pos[1] + 1, exc.message) from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        problem = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
        raise ScenarioError(path, line, col, f"{problem}; fix the YAML syntax here") from None
    except (YAMLError, ValueError, TypeError, RecursionError) as exc:
        # not expected after the checks above; a safety net so that no input is an internal error
        raise ScenarioError(path, 1, 1, f"the YAML cannot be read ({type(exc).__name__}: "
                            f"{exc}); fix the YAML syntax") from None


class _Lines:
    """``.lc`` of a fast-read mapping or sequence.  A checked file needs only where each step
    starts (`item`); every other position is asked only for a message, and messages come from
    the round-trip reader, so asking for one hands the text over to it (`_Aside`)."""

    __slots__ = ("items",)

    def __init__(self, items: list[Pos] | None = None) -> None:
        self.items = items

    def key(self, key: Any) -> Pos:
        raise _Aside

    def value(self, key: Any) -> Pos:
        raise _Aside

    def item(self, index: int) -> Pos:
        if self.items is None:
            raise _Aside
        return self.items[index]


_MAP_LINES = _Lines()


class _FastMap(dict[Any, Any]):
    """A mapping read by the fast reader (a plain dict; `_Lines` without positions)."""

    __slots__ = ("lc",)
    lc: _Lines


class _FastSeq(list[Any]):
    """A sequence read by the fast reader (a plain list; `_Lines` with its items' starts)."""

    __slots__ = ("lc",)
    lc: _Lines


_MAPS = (CommentedMap, _FastMap)
_SEQS = (CommentedSeq, _FastSeq)
_Map = CommentedMap | _FastMap
_Seq = CommentedSeq | _FastSeq


class _Aside(Exception):
    """The fast reader steps aside: the round-trip reader must answer for this text."""


_ASIDE: Any = object()
"""What `_fast_parse` returns when the round-trip reader must read the text."""
_JSON_COLON = re.compile(r"[\]}\"']:\S")
"""A colon right after a quoted scalar or a flow collection: libyaml takes ``["a":1]`` as a
pair, ruamel refuses it.  `_fast_parse` steps aside for it and for other text whose reading
may differ between libyaml (YAML 1.1) and ruamel (YAML 1.2): non-ASCII text (with its other
line breaks), anchors, directives, tabs, carriage returns."""


_STEP_LINE = re.compile(r"( *)- ([a-z_]+): \{(.*)\}")
"""A step written on one line with flow arguments, the shape generated files take."""
_STEP_ARG = re.compile(r"""([a-z_]+): ("[^"\\]*"|'[^']*'|[\w./][\w./+-]*(?::[\w./+-]+)*)""",
                       re.ASCII)
"""One argument of `_STEP_LINE`: a plain key, and a value quoted without escapes or plain
without any character YAML gives a meaning to in a flow mapping (a colon only between two
such characters, as in ``memfd:f``)."""


_StepLine = tuple[str, Any, tuple[tuple[Any, Any], ...]]
"""(indent, operation, arguments) of a step written on one line."""


def _step_line(line: str, scalar: Callable[[str], Any]) -> _StepLine | None:
    """A `_STEP_LINE` read (plain scalars through ``scalar``), None for any other line."""
    match = _STEP_LINE.fullmatch(line)
    if match is None:
        return None
    spaces, op, body = match.groups()
    pairs = _STEP_ARG.findall(body)
    if ", ".join([f"{key}: {value}" for key, value in pairs]) != body:
        return None
    args = tuple((scalar(key), value[1:-1] if value[0] in "\"'" else scalar(value))
                 for key, value in pairs)
    if len(dict(args)) != len(args):
        return None  # a duplicate key
    return spaces, scalar(op), args


def _step_lines(tail: str, first: int, scalar: Callable[[str], Any]) -> _FastSeq | None:
    """The steps written one per line from line ``first`` (0-based) to the end, as libyaml's
    events would build them, or None if a line has another shape.  Generated files repeat
    their lines, so each distinct line is read once."""
    steps = _FastSeq()
    starts: list[Pos] = []
    read: dict[str, _StepLine] = {}
    lines = tail.split("\n")
    if lines[-1] == "":
        lines.pop()
    indent = None
    for number, line in enumerate(lines, first):
        known = read.get(line)
        if known is None:
            known = _step_line(line, scalar)
            if known is None:
                return None
            if len(read) < 1 << 16:
                read[line] = known
        spaces, op, pairs = known
        if spaces != indent and indent is not None:
            return None
        indent = spaces
        args = _FastMap(pairs)
        args.lc = _MAP_LINES
        item = _FastMap(((op, args),))
        item.lc = _MAP_LINES
        steps.append(item)
        starts.append((number, len(spaces) + 2))
    steps.lc = _Lines(starts)
    return steps


def _fast_parse(text: str) -> Any:
    """The document as `_FastMap`/`_FastSeq`/scalars equal to the round-trip reader's, or
    `_ASIDE` where it could differ.

    Built straight from libyaml's events (no node tree is kept: a 6 MB file costs tens of MB,
    not hundreds); anchors, aliases, tags (even ``!``), complex or duplicate keys, nesting
    deeper than `MAX_DEPTH` and more than one document step aside.  When the file ends with
    a top-level ``steps:`` whose every step is one `_STEP_LINE` (as generated files write
    them), the steps are read line by line, the rest through libyaml: libyaml's events cost
    about 8 us a step, the lines about 1.
    """
    if (_CParser is None or not text.isascii() or "&" in text or "\t" in text or "\r" in text
            or text.startswith("%") or "\n%" in text or _JSON_COLON.search(text)):
        return _ASIDE
    resolver_yaml = yaml_rt()
    resolve = resolver_yaml.resolver.resolve
    construct = resolver_yaml.constructor.construct_object
    scalars: dict[str, Any] = {}

    def plain(value: str) -> Any:
        """A plain scalar as the round-trip reader builds it (its resolver and constructor,
        after `_ScenarioComposer`'s rules), once per distinct text."""
        tag = str(resolve(ScalarNode, value, (True, False)))
        if tag == _TAG + "merge" or (tag == _TAG + "int" and len(value) > MAX_INT_CHARS):
            raise _Aside
        if tag not in _PLAIN_TAGS:
            tag = _TAG + "str"
        built = construct(ScalarNode(tag, value, None, None), deep=True)
        if len(scalars) < 1 << 16:
            scalars[value] = built
        return built

    def scalar(value: str) -> Any:
        try:
            return scalars[value]
        except KeyError:
            return plain(value)

    def document(text: str) -> Any:
        """The one document of ``text`` from libyaml's events (`_Aside` where it could differ)."""
        parser = _CParser(text)
        get: Callable[[], Any] = parser.get_event

        def build(event: Any, depth: int) -> Any:
            kind = type(event)
            if event.anchor is not None or event.tag is not None:
                raise _Aside
            if kind is _ScalarEvent:
                value: str = event.value
                if event.style:  # quoted or block: text; plain is ""
                    return value
                return scalar(value)
            if depth >= MAX_DEPTH:
                raise _Aside
            depth += 1
            if kind is _MappingStartEvent:
                mapping = _FastMap()
                pairs = 0
                while True:
                    key_event = get()
                    if type(key_event) is _MappingEndEvent:
                        break
                    if type(key_event) is not _ScalarEvent:
                        raise _Aside  # a complex key (or an alias)
                    key = build(key_event, depth)
                    mapping[key] = build(get(), depth)
                    pairs += 1
                if len(mapping) != pairs:
                    raise _Aside  # a duplicate key
                mapping.lc = _MAP_LINES
                return mapping
            if kind is _SequenceStartEvent:
                items = _FastSeq()
                starts: list[Pos] = []
                while True:
                    item = get()
                    if type(item) is _SequenceEndEvent:
                        break
                    mark: Any = item.start_mark
                    starts.append((mark.line, mark.column))
                    items.append(build(item, depth))
                items.lc = _Lines(starts)
                return items
            raise _Aside  # an alias

        try:
            get()  # the stream's start
            event = get()
            if type(event) is _StreamEndEvent:
                return None
            root = build(get(), 0)  # after the document's start
            if type(get()) is not _DocumentEndEvent or type(get()) is not _StreamEndEvent:
                raise _Aside  # more than one document
            return root
        finally:
            parser.dispose()

    try:
        head, sep, tail = text.rpartition("\nsteps:\n")
        if sep and tail:  # the common shape, read line by line where every step takes it
            try:
                steps = _step_lines(tail, head.count("\n") + 2, scalar)
                root = document(head + sep) if steps is not None else None
            except (_Aside, _CYAMLError, RecursionError, ValueError, TypeError, AttributeError):
                root = None
            if (type(root) is _FastMap and next(reversed(root)) == "steps"
                    and root["steps"] is None):
                root["steps"] = steps
                return root
        return document(text)
    except (_Aside, _CYAMLError, RecursionError, ValueError, TypeError, AttributeError):
        return _ASIDE


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
    if scenario.kernel is not None:
        doc["kernel"] = scenario.kernel
    if scenario.cgroups != "v1":
        doc["cgroups"] = scenario.cgroups
    if scenario.memory_accounting:
        doc["memory_accounting"] = True
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
        return {_plain_key(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    if isinstance(node, ScalarBoolean | bool):
        return bool(node)
    for kind in (int, float, str):
        if isinstance(node, kind):
            return kind(node)
    return node


def _plain_key(key: Any) -> Any:
    """A mapping key as plain Python; a complex key (``? [a, b]``) as its text."""
    value = plain(key)
    return str(value) if isinstance(value, list | dict) else value


def _suggest(word: object, choices: Iterable[str]) -> str:
    """``did you mean 'x'?`` for the closest choice, else the list of choices."""
    choices = list(choices)
    close = difflib.get_close_matches(str(word)[:MAX_SHOWN], choices, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else f"use one of {', '.join(choices)}"



_SPECS: dict[str, tuple[dict[str, Arg], dict[str, Any]]] = {
    op: ({a.name: a for a in spec}, {a.name: a.default for a in spec}) for op, spec in OPS.items()}
"""Operation → its arguments by name, and their defaults."""
_NAME_KINDS = {kind: NAME_PATTERNS.get(kind, NAME_PATTERNS["name"])[0]
               for kind in get_args(ArgKind) if kind not in VALUE_KINDS}
"""Argument kind → the pattern of its names, for the kinds `_Loader.value` reads as names."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool | ScalarBoolean)


class _Loader:
    """Validates one scenario document, following every name from step to step."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.names = Names()
        self.cgroups = "v1"
        self.memory_accounting = False

    def fail(self, pos: Pos, message: str) -> NoReturn:
        raise ScenarioError(self.path, pos[0] + 1, pos[1] + 1, message)

    # -- top level --------------------------------------------------------------------------

    def scenario(self, doc: Any) -> Scenario:
        if doc is None:
            self.fail((0, 0), "the file is empty; start it with 'format: 1' and a 'steps:' list")
        if not isinstance(doc, _MAPS):
            self.fail((0, 0), "a scenario must be a mapping; start it with 'format: 1'")
        extra: dict[str, Any] = {}
        for key in doc:
            if key not in TOP_KEYS:
                if difflib.get_close_matches(str(key)[:MAX_SHOWN], TOP_KEYS, n=1, cutoff=0.75):
                    self.fail(doc.lc.key(key), f"unknown top-level key {_shown(plain(key))}; "
                              + _suggest(key, TOP_KEYS))
                extra[str(key)] = plain(doc[key])
        if "format" not in doc:
            self.fail((0, 0), "missing 'format'; add 'format: 1' at the top")
        if doc["format"] != 1 or not _is_int(doc["format"]):
            self.fail(doc.lc.value("format"), f"unsupported format {_shown(plain(doc['format']))}"
                      "; this version reads 'format: 1'")
        pagesize = doc.get("pagesize", "2M")
        if not isinstance(pagesize, str) or pagesize not in PAGESIZES:
            self.fail(doc.lc.value("pagesize"), f"unsupported pagesize {_shown(plain(pagesize))}; "
                      f"use one of {', '.join(PAGESIZES)}")
        kernel = self.kernel(doc)
        self.interface(doc)
        pool = self.pool(doc)
        if pagesize == "1G" and pool["overcommit"]:
            self.fail(doc["pool"].lc.value("overcommit"), "the kernel refuses to overcommit 1G "
                      "pages (EINVAL); remove 'overcommit' here (a 'pool' step shows the "
                      "kernel's answer)")
        if "steps" not in doc:
            self.fail((0, 0), "missing 'steps'; add a 'steps:' list of operations")
        steps = doc["steps"]
        if steps is None:
            steps = CommentedSeq()
        if not isinstance(steps, _SEQS):
            self.fail(doc.lc.value("steps"), "'steps' must be a list; write each step as "
                      "'- op: {...}'")
        return Scenario(
            steps=tuple(self.step(steps, i) for i in range(len(steps))),
            name=self.title(doc),
            pagesize=str(pagesize),
            pool_pages=pool["pages"],
            pool_overcommit=pool["overcommit"],
            path=self.path,
            kernel=kernel,
            cgroups=self.cgroups,
            memory_accounting=self.memory_accounting,
            extra=extra,
        )

    def kernel(self, doc: _Map) -> str | None:
        """``kernel``: a line (``"6.1"``) or a ``uname -r``, as a string."""
        value = doc.get("kernel")
        if value is None:
            return None
        if not isinstance(value, str) or not re.fullmatch(r"\d+\.\d+[0-9A-Za-z.+_~-]{0,60}",
                                                          value):
            self.fail(doc.lc.value("kernel"), f"kernel {_shown(plain(value))} is not a kernel "
                      "line or release; write it quoted, e.g. 'kernel: \"6.1\"'")
        return str(value)

    def interface(self, doc: _Map) -> None:
        """``cgroups: v1|v2`` and ``memory_accounting`` (cgroup v2 only)."""
        cgroups = doc.get("cgroups", "v1")
        if not isinstance(cgroups, str) or cgroups not in CGROUP_INTERFACES:
            self.fail(doc.lc.value("cgroups"), f"cgroups {_shown(plain(cgroups))} is not a "
                      f"cgroup interface; use one of {', '.join(CGROUP_INTERFACES)}")
        memory = doc.get("memory_accounting", False)
        if not isinstance(memory, bool | ScalarBoolean):
            self.fail(doc.lc.value("memory_accounting"), "memory_accounting must be true or "
                      f"false, not {_shown(plain(memory))}")
        if memory and cgroups != "v2":
            self.fail(doc.lc.value("memory_accounting"), "memory_accounting is a cgroup v2 "
                      "mount option; add 'cgroups: v2' at the top")
        self.cgroups, self.memory_accounting = str(cgroups), bool(memory)

    def title(self, doc: _Map) -> str:
        name = doc.get("name")
        if name is None:
            return ""
        if isinstance(name, str | int) and not isinstance(name, bool | ScalarBoolean):
            return str(name)
        self.fail(doc.lc.value("name"), "'name' must be a line of text; write e.g. 'name: my-test'")

    def pool(self, doc: _Map) -> dict[str, int]:
        pool = doc.get("pool")
        if pool is None:
            return dict.fromkeys(POOL_ARGS, 0)
        if not isinstance(pool, _MAPS):
            self.fail(doc.lc.value("pool"), "'pool' must be a mapping; write e.g. "
                      "'pool: {pages: 8, overcommit: 0}'")
        for key, value in pool.items():
            if key not in POOL_ARGS:
                self.fail(pool.lc.key(key), f"unknown pool key {_shown(plain(key))}; "
                          + _suggest(key, POOL_ARGS))
            if not _is_int(value) or not 0 <= value <= UNSIGNED_MAX:
                self.fail(pool.lc.value(key), f"pool {key} must be an integer from 0 to 2^64 - 1, "
                          f"not {_shown(plain(value))}; write e.g. '{key}: 8'")
        return {k: int(pool.get(k, 0)) for k in POOL_ARGS}

    # -- one step ---------------------------------------------------------------------------

    def step(self, steps: _Seq, index: int) -> Step:
        pos = steps.lc.item(index)
        item = steps[index]
        if not isinstance(item, _MAPS):
            self.fail(pos, "a step must be a mapping with one operation; write e.g. "
                      "'- spawn: {proc: p1}'")
        ops = []
        for key in item:
            if key == "expect":
                continue
            if key not in OPS:
                self.fail(item.lc.key(key), f"unknown operation {_shown(plain(key))}; "
                          + _suggest(key, [*OPS, "expect"]))
            ops.append(key)
            if len(ops) == 2:
                self.fail(item.lc.key(key), f"two operations in one step ({ops[0]!r} and "
                          f"{key!r}); start a new step ('- ') for {key!r}")
        if not ops:
            self.fail(pos, f"the step has no operation; add one of {', '.join(OPS)}")
        op = ops[0]
        op_pos: Where = partial(item.lc.key, op)  # asked only for a message, as every position
        node = item[op]
        if node is None:
            node = CommentedMap()
        if not isinstance(node, _MAPS):
            self.fail(item.lc.value(op), f"the arguments of {op} must be a mapping; write e.g. "
                      f"'{op}: {{{self.example(op)}}}'")
        args = self.arguments(op, node, op_pos)
        line = pos[0] + 1
        problem = self.names.check(op, args, set(node))
        if problem is not None:
            self.fail(node.lc.value(problem.arg) if problem.arg in node else op_pos(),
                      problem.message)
        self.names.apply(op, args, line)
        expect = self.expect(item) if "expect" in item else None
        return Step(index=index, op=op, args=args, expect=expect, line=line)

    def example(self, op: str) -> str:
        return ", ".join(f"{a.name}: {_EXAMPLE[a.kind]}" for a in OPS[op] if a.required)

    def arguments(self, op: str, node: _Map, op_pos: Where) -> dict[str, Any]:
        spec, defaults = _SPECS[op]
        for key in node:
            if key not in spec:
                self.fail(node.lc.key(key), f"unknown argument {_shown(plain(key))} of {op}; "
                          + _suggest(key, spec))
        args = dict(defaults)
        for name, arg in spec.items():
            if name in node:
                value = node[name]
                kind = arg.kind
                if type(value) is str:  # a well-spelled name, the common case
                    pattern = _NAME_KINDS.get(kind)
                    if pattern is not None and pattern.fullmatch(value):
                        args[name] = value
                        continue
                elif type(value) is int and kind == "int" and 0 <= value <= UNSIGNED_MAX:
                    args[name] = value
                    continue
                args[name] = self.value(op, arg, value, partial(node.lc.value, name))
            elif arg.required:
                self.fail(op_pos(), f"{op} is missing argument {name!r}; "
                          f"add '{name}: {_EXAMPLE[arg.kind]}'")
        return args

    def value(self, op: str, arg: Arg, value: Any, where: Where) -> Any:
        """Check one argument's type, returning it as a plain Python value; ``where`` is asked
        for the argument's position only when there is something to report.  (`arguments`
        takes well-spelled names and counts without asking.)"""
        kind: ArgKind = arg.kind
        if kind == "int":
            if _is_int(value) and value >= 0:
                if value > UNSIGNED_MAX:
                    self.fail(where(), f"{op} argument {arg.name!r} is {value}, beyond "
                              "2^64 - 1, which no system call takes; write a number of huge "
                              "pages below 2^64")
                return int(value)
            self.fail(where(), f"{op} argument {arg.name!r} must be an integer >= 0 (huge "
                      f"pages), not {_shown(plain(value))}; write e.g. '{arg.name}: 4'")
        if kind == "bool":
            if isinstance(value, bool | ScalarBoolean):
                return bool(value)
            self.fail(where(), f"{op} argument {arg.name!r} must be true or false, not "
                      f"{_shown(plain(value))}; write '{arg.name}: true' or "
                      f"'{arg.name}: false'")
        if kind == "limit":
            if (_is_int(value) and 0 <= value <= UNSIGNED_MAX) or value == "max":
                return plain(value)
            self.fail(where(), f"{op} argument {arg.name!r} must be a number of huge pages or "
                      f"max, not {_shown(plain(value))}; write e.g. '{arg.name}: 4' or "
                      f"'{arg.name}: max'")
        if kind == "advice":
            if value in ADVICE:
                return str(value)
            self.fail(where(), f"{op} argument {arg.name!r} must be dontneed or remove, not "
                      f"{_shown(plain(value))}; write '{arg.name}: dontneed' or "
                      f"'{arg.name}: remove'")
        return self.name(f"{op} argument {arg.name!r}", kind, value, where)

    def name(self, what: str, kind: str, value: Any, where: Where) -> str:
        pattern, spelled = NAME_PATTERNS.get(kind, NAME_PATTERNS["name"])
        if isinstance(value, str):
            if pattern.fullmatch(value):
                return str(value)
            fix = f"write e.g. {_EXAMPLE[kind]!r}"
        else:
            fix = f"quote it ('{_shown(plain(value)).strip(chr(39))}') if it is meant as a name"
        self.fail(where(), f"{what} must be a name ({spelled}), not {_shown(plain(value))}; {fix}")

    # -- expectations -----------------------------------------------------------------------

    def expect(self, item: _Map) -> dict[str, Any]:
        node = item["expect"]
        if not isinstance(node, _MAPS):
            self.fail(item.lc.value("expect"), "'expect' must be a mapping; write e.g. "
                      "'expect: {result: ok, rsvd: 4}'")
        for key, value in node.items():
            pos = partial(node.lc.value, key)
            if key not in EXPECT_KEYS:
                self.fail(node.lc.key(key), f"unknown expectation {_shown(plain(key))}; "
                          + _suggest(key, EXPECT_KEYS))
            if key == "result":
                if value not in RESULTS:
                    self.fail(pos(), f"expected result {_shown(plain(value))} is not a result; "
                              f"use one of {', '.join(RESULTS)}")
            elif key in POOL_KEYS:
                self.count(key, value, pos)
            else:
                self.section(key, value, pos)
        return {str(k): plain(v) for k, v in node.items()}

    def section(self, section: str, node: Any, pos: Where) -> None:
        allowed = SECTION_KEYS[section]
        if section == "cgroup" and self.cgroups == "v2":
            allowed = tuple(k for k in CGROUP_V2_KEYS
                            if k != "memory" or self.memory_accounting)
        example = f"'{section}: {{{_EXAMPLE[section]}: {{{allowed[0]}: 0}}}}'"
        if not isinstance(node, _MAPS):
            self.fail(pos(), f"expect {section!r} must be a mapping by {section} name; write e.g. "
                      + example)
        kind = "name" if section == "mount" else section
        for name, counters in node.items():
            self.name(f"expect {section}", kind, name, partial(node.lc.key, name))
            if not isinstance(counters, _MAPS):
                self.fail(node.lc.value(name), f"expect {section} {_shown(plain(name))} must be "
                          f"a mapping of counters; write e.g. {example}")
            for key, value in counters.items():
                if key not in allowed:
                    self.fail(counters.lc.key(key), self.not_here(section, key, allowed))
                if key in NULLABLE_KEYS and value is None:
                    continue
                if key in ("limit", "rsvd_limit") and value == "max":
                    continue
                self.count(key, value, partial(counters.lc.value, key))

    def not_here(self, section: str, key: Any, allowed: tuple[str, ...]) -> str:
        """Why an expectation key is refused: unknown, or of the other cgroup interface."""
        if section == "cgroup" and self.cgroups == "v2" and key in CGROUP_V1_ONLY_KEYS:
            return (f"cgroup v2 has no {key} (a cgroup v1 counter); use one of "
                    f"{', '.join(allowed)}")
        if section == "cgroup" and key == "memory" and self.cgroups == "v2":
            return "memory needs 'memory_accounting: true' at the top"
        if section == "cgroup" and key in CGROUP_V2_KEYS and key not in CGROUP_KEYS:
            return f"{key} is a cgroup v2 counter; add 'cgroups: v2' at the top"
        return f"unknown {section} expectation {_shown(plain(key))}; " + _suggest(key, allowed)

    def count(self, key: str, value: Any, pos: Where) -> None:
        if not _is_int(value) or not 0 <= value <= UNSIGNED_MAX:
            extra = ", max or null" if key in ("limit", "rsvd_limit") else (
                " or null" if key in NULLABLE_KEYS else "")
            self.fail(pos(), f"expected {key} must be an unsigned integer{extra}, not "
                      f"{_shown(plain(value))}; "
                      f"write e.g. '{key}: 0' (an underflow reads as 2^64 - n)")


def short_op(op: str, args: Mapping[str, Any]) -> str:
    """``mmap proc=p1 map=m file=hp/f length=4``: the operation with its non-default args."""
    return " ".join([op, *(f"{k}={_yaml_value(v)}" for k, v in given_args(op, args).items())])


def _yaml_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
