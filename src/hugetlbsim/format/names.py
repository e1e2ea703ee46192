"""The life-cycle of a scenario's names: the one tracker the loader and the fuzzer share.

scenario-format.md, "Names are checked before anything runs": a name must be introduced before
it is used, must be free when it is introduced again, and a page range must lie inside its
mapping as created.  Names end at `exit` (the process and its maps), a `munmap` of the whole
mapping, `shmrm`, and `close` of an unlinked file (or `unlink` of a closed one); after that they
cannot be named until introduced again.  `rmdir` and `umount` (with the files under the mount)
also end their names, but since they can fail at run time (EBUSY) such a name stays *nameable*:
later steps may still use it (the retry after the busy process exits) and may introduce it
again; if the object is really gone the step gets the kernel's answer at run time.  Mounting a
mount name again ends for good the files a `umount` left nameable under it (the new mount hides
them).

`Names.check` says whether a step (its arguments with defaults filled in) is valid here, as a
`Problem` naming the argument to blame and a ``what; fix`` message; `Names.apply` follows a
valid step.  The loader turns a problem into a ``FILE:LINE:COL`` error; the fuzzer's `World`
only asks whether there is one.  Run-time results are not known here: a name whose introducing
step fails at run time stays live, as the format says.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from typing import Any

from hugetlbsim.format.scenario import OPS, SHM_MMAP_ARGS, VALUE_KINDS

__all__ = [
    "ENDED_BY",
    "NAME_PATTERNS",
    "NAME_RE",
    "Key",
    "Life",
    "Names",
    "Problem",
    "name_ok",
]

_NAME = r"[A-Za-z0-9_-]+"
NAME_RE = re.compile(_NAME)
"""A plain name: process, map, shm, mount, one cgroup level."""
NAME_PATTERNS: dict[str, tuple[re.Pattern[str], str]] = {
    "name": (NAME_RE, "letters, digits, _ and -"),
    "cgroup": (re.compile(rf"{_NAME}(?:/{_NAME})*"), "such names joined by /"),
    "file": (re.compile(rf"{_NAME}/{_NAME}|memfd:{_NAME}"), "MOUNT/NAME or memfd:NAME"),
    "memfd": (re.compile(rf"memfd:{_NAME}"), "memfd:NAME"),
}
"""Name kind → (pattern, how it is spelled in messages); other kinds are plain names."""


def name_ok(kind: str, value: object) -> bool:
    """Whether ``value`` is spelled as a name of this kind (no liveness check)."""
    pattern = NAME_PATTERNS.get(kind, NAME_PATTERNS["name"])[0]
    return isinstance(value, str) and pattern.fullmatch(value) is not None


Key = tuple[str, str]
"""(kind, name) of a name; a map's name is ``PROC:MAP``, files of both kinds are "file"."""

_KEY_KIND = {"memfd": "file"}
"""Both kinds of file share one namespace of names."""
ENDED_BY: dict[str, str] = {
    "proc": "exit", "map": "a munmap of the whole mapping", "file": "unlink and close",
    "shm": "shmrm", "cgroup": "rmdir", "mount": "umount",
}
"""How a live name of each kind is ended (for "end it first with ...")."""
_MAY_FAIL = frozenset({"rmdir", "umount"})
"""Operations whose ending of a name may fail at run time (EBUSY): the name stays nameable."""


@dataclass
class Life:
    """A name's life: where it was introduced, plus what later checks need."""

    line: int
    length: int = 0
    """Pages of a mapping as created, or of a shm segment."""
    open: bool = True
    """A file: the scenario still holds its handle."""
    linked: bool = True
    """A file: its path still exists (never, for a memfd)."""


@dataclass(frozen=True)
class Problem:
    """Why a step is not valid where it stands."""

    arg: str
    """The argument to blame (its position in the file); "" for the operation itself."""
    message: str
    """``what is wrong; how to fix it``."""


def _key(kind: str, name: str, args: Mapping[str, Any]) -> Key:
    if kind == "map":
        return ("map", f"{args['proc']}:{name}")
    return (_KEY_KIND.get(kind, kind), name)


def _label(key: Key) -> str:
    kind, name = key
    if kind == "map":
        proc, _sep, name = name.partition(":")
        return f"map {name!r} of proc {proc!r}"
    return f"{kind} {name!r}"


def _introducers(kind: str) -> str:
    return " or ".join(op for op, spec in OPS.items()
                       for a in spec if a.introduces and _KEY_KIND.get(a.kind, a.kind) == kind)


class Names:
    """The names after the steps followed so far.

    ``live`` holds the live names; ``nameable`` the names an `rmdir`/`umount` ended, which may
    still be used or introduced again; ``ended`` the line where each ended name ended.  With
    ``nonempty`` a page range must hold at least one page (the format accepts empty ranges; the
    fuzzer never makes them).
    """

    def __init__(self, *, nonempty: bool = False) -> None:
        self.nonempty = nonempty
        self.live: dict[Key, Life] = {("proc", "init"): Life(0), ("cgroup", "root"): Life(0)}
        self.nameable: dict[Key, Life] = {}
        self.ended: dict[Key, int] = {}

    # -- views --------------------------------------------------------------------------------

    def of_kind(self, kind: str) -> dict[str, Life]:
        """The live names of a kind ("proc", "map" as ``PROC:MAP``, "file", "shm", ...)."""
        return {name: life for (k, name), life in self.live.items() if k == kind}

    def get(self, key: Key) -> Life | None:
        """The life of a live or nameable name."""
        return self.live.get(key) or self.nameable.get(key)

    # -- checking -----------------------------------------------------------------------------

    def check(self, op: str, args: Mapping[str, Any], given: Collection[str]) -> Problem | None:
        """Whether the step (``args`` with every default filled in, ``given`` the argument
        names written) is valid here; its names' kinds and spelling are assumed checked."""
        for arg in OPS[op]:
            value = args[arg.name]
            if value is None or arg.kind in VALUE_KINDS or (op == "cgroup" and arg.introduces):
                continue
            key = _key(arg.kind, value, args)
            problem = self._need_free(key) if arg.introduces else self._need(key)
            if problem is not None:
                return replace(problem, arg=arg.name)
        check = getattr(self, f"_check_{op}", None)
        return None if check is None else check(args, given)

    def _need(self, key: Key, fix: str = "") -> Problem | None:
        if key in self.live or key in self.nameable:
            return None
        ended = f" (it ended at line {self.ended[key]})" if key in self.ended else ""
        fix = fix or f"introduce it first with a {_introducers(key[0])} step"
        return Problem("", f"{_label(key)} does not exist here{ended}; {fix}")

    def _need_free(self, key: Key) -> Problem | None:
        held = self.live.get(key)
        if held is None:
            return None
        if key[0] == "file" and not held.linked:
            return Problem("", f"the scenario still holds the handle of the unlinked file "
                           f"{key[1]!r}; close it before creating the path again")
        return Problem("", f"{_label(key)} is already live (from line {held.line}); choose "
                       f"another name or end it first with {ENDED_BY[key[0]]}")

    def _check_cgroup(self, args: Mapping[str, Any], given: Collection[str]) -> Problem | None:
        name = args["name"]
        if name == "root":
            for limit in ("limit", "rsvd_limit"):
                if args[limit] is not None:
                    return Problem(limit, "the root cgroup takes no limits; set them on a child "
                                   "cgroup, e.g. 'cgroup: {name: a, limit: 4}'")
            return None
        if ("cgroup", name) in self.live:
            return None
        parent = name.rpartition("/")[0]
        if parent.split("/")[0] == "root":
            return Problem("name", f"cgroup names are relative to root; write "
                           f"{name.partition('/')[2]!r} instead of {name!r}")
        if parent:
            problem = self._need(("cgroup", parent),
                                 f"create the parent first with 'cgroup: {{name: {parent}}}'")
            return None if problem is None else replace(problem, arg="name")
        return None

    def _check_rmdir(self, args: Mapping[str, Any], given: Collection[str]) -> Problem | None:
        if args["cgroup"] == "root":
            return Problem("cgroup", "the root cgroup cannot be removed; remove this step")
        return None

    def _check_create(self, args: Mapping[str, Any], given: Collection[str]) -> Problem | None:
        path = args["file"]
        if path.startswith("memfd:"):
            return Problem("file", f"create makes hugetlbfs files (MOUNT/NAME); use "
                           f"'memfd: {{file: {path}}}' for {path!r}")
        mount = path.partition("/")[0]
        problem = self._need(("mount", mount), f"mount it first with 'mount: {{name: {mount}}}'")
        return None if problem is None else replace(problem, arg="file")

    def _check_close(self, args: Mapping[str, Any], given: Collection[str]) -> Problem | None:
        life = self.get(("file", args["file"]))
        if life is not None and not life.open:
            return Problem("file", f"file {args['file']!r} has no open handle (the scenario "
                           "closed it before); remove this step")
        return None

    def _check_unlink(self, args: Mapping[str, Any], given: Collection[str]) -> Problem | None:
        path = args["file"]
        if path.startswith("memfd:"):
            return Problem("file", f"{path!r} is a memfd and has no path to unlink; "
                           "close it instead")
        life = self.get(("file", path))
        if life is not None and not life.linked:
            return Problem("file", f"file {path!r} is already unlinked; remove this step")
        return None

    def _check_mmap(self, args: Mapping[str, Any], given: Collection[str]) -> Problem | None:
        sources = [k for k in ("file", "shm", "anon") if args[k] not in (None, False)]
        if len(sources) != 1:
            return Problem(sources[1] if sources else "map",
                           "mmap needs exactly one of file, shm or 'anon: true'; "
                           + (f"keep only one of {', '.join(sources)}" if sources else "add one"))
        if sources == ["shm"]:
            for key in given:
                if key not in SHM_MMAP_ARGS:
                    return Problem(key, f"mmap of a shm segment takes only "
                                   f"{', '.join(SHM_MMAP_ARGS)} (it maps the whole segment); "
                                   f"remove {key!r}")
        elif args["length"] is None:
            return Problem("map", "mmap of a file or anon mapping is missing argument 'length'; "
                           "add 'length: 4'")
        return None

    def _check_munmap(self, args: Mapping[str, Any], given: Collection[str]) -> Problem | None:
        return self._span(args, ("offset", "length"), given)[1]

    _check_mprotect = _check_munmap

    def _check_touch(self, args: Mapping[str, Any], given: Collection[str]) -> Problem | None:
        return self._span(args, ("page", "count"), given)[1]

    _check_madvise = _check_touch

    def _span(self, args: Mapping[str, Any], names: tuple[str, str],
              given: Collection[str] = ()) -> tuple[tuple[int, int], Problem | None]:
        """The step's pages ``[start, end)`` (no count: to the end), and the problem if they
        do not lie in the mapping as created; ``names`` are the arguments holding start and
        count."""
        key = _key("map", args["map"], args)
        life = self.live[key]
        start: int = args[names[0]]
        count: int | None = args[names[1]]
        end = max(start, life.length) if count is None else start + count
        if end > life.length:
            blamed = names[1] if names[1] in given and start <= life.length else names[0]
            return (start, end), Problem(
                blamed, f"pages [{start}, {end}) are outside {_label(key)}, which has pages "
                f"[0, {life.length}) as created at line {life.line}; keep the range within "
                f"[0, {life.length})")
        if self.nonempty and end <= start:
            return (start, end), Problem(names[1], f"pages [{start}, {end}) hold no page; "
                                         "give a count of at least 1")
        return (start, end), None

    # -- following ----------------------------------------------------------------------------

    def apply(self, op: str, args: Mapping[str, Any], line: int = 0) -> None:
        """Follow a valid step (``args`` with defaults filled in) at ``line``: the names it
        introduces and ends."""
        effect = getattr(self, f"_apply_{op}", None)
        if effect is not None:
            effect(args, line)

    def _introduce(self, key: Key, line: int, **details: Any) -> None:
        self.live[key] = Life(line, **details)
        self.nameable.pop(key, None)
        self.ended.pop(key, None)

    def _end(self, key: Key, line: int, op: str) -> None:
        life = self.live.pop(key, None) or self.nameable.pop(key, None)
        self.ended[key] = line
        if op in _MAY_FAIL and life is not None:
            self.nameable[key] = life

    def _apply_mount(self, args: Mapping[str, Any], line: int) -> None:
        prefix = f"{args['name']}/"
        for key in [k for k in self.nameable if k[0] == "file" and k[1].startswith(prefix)]:
            del self.nameable[key]
        self._introduce(("mount", args["name"]), line)

    def _apply_umount(self, args: Mapping[str, Any], line: int) -> None:
        prefix = f"{args['name']}/"
        for key in [k for k in self.live if k[0] == "file" and k[1].startswith(prefix)]:
            self._end(key, line, "umount")
        self._end(("mount", args["name"]), line, "umount")

    def _apply_cgroup(self, args: Mapping[str, Any], line: int) -> None:
        key = ("cgroup", args["name"])
        if key not in self.live:
            self._introduce(key, line)

    def _apply_rmdir(self, args: Mapping[str, Any], line: int) -> None:
        self._end(("cgroup", args["cgroup"]), line, "rmdir")

    def _apply_spawn(self, args: Mapping[str, Any], line: int) -> None:
        self._introduce(("proc", args["proc"]), line)

    def _apply_fork(self, args: Mapping[str, Any], line: int) -> None:
        prefix = f"{args['proc']}:"
        self._introduce(("proc", args["child"]), line)
        for (kind, name), life in list(self.live.items()):
            if kind == "map" and name.startswith(prefix):
                self._introduce(("map", f"{args['child']}:{name.removeprefix(prefix)}"), line,
                                length=life.length)

    def _apply_exit(self, args: Mapping[str, Any], line: int) -> None:
        prefix = f"{args['proc']}:"
        for key in [k for k in self.live if k[0] == "map" and k[1].startswith(prefix)]:
            self._end(key, line, "exit")
        self._end(("proc", args["proc"]), line, "exit")

    def _apply_create(self, args: Mapping[str, Any], line: int) -> None:
        self._introduce(("file", args["file"]), line)

    def _apply_memfd(self, args: Mapping[str, Any], line: int) -> None:
        self._introduce(("file", args["file"]), line, linked=False)

    def _apply_close(self, args: Mapping[str, Any], line: int) -> None:
        key = ("file", args["file"])
        life = self.get(key)
        if life is None:
            return
        life.open = False
        if not life.linked:
            self._gone(key, line, "close")

    def _apply_unlink(self, args: Mapping[str, Any], line: int) -> None:
        key = ("file", args["file"])
        life = self.get(key)
        if life is None:
            return
        life.linked = False
        if not life.open:
            self._gone(key, line, "unlink")

    def _gone(self, key: Key, line: int, op: str) -> None:
        """A file closed and unlinked: its name ends, even one a umount left nameable."""
        if key in self.live:
            self._end(key, line, op)
        else:
            del self.nameable[key]
            self.ended[key] = line

    def _apply_shmget(self, args: Mapping[str, Any], line: int) -> None:
        self._introduce(("shm", args["shm"]), line, length=args["size"])

    def _apply_shmrm(self, args: Mapping[str, Any], line: int) -> None:
        self._end(("shm", args["shm"]), line, "shmrm")

    def _apply_mmap(self, args: Mapping[str, Any], line: int) -> None:
        shm = args["shm"]
        length = args["length"] if shm is None else self.live[("shm", shm)].length
        self._introduce(_key("map", args["map"], args), line, length=length)

    def _apply_munmap(self, args: Mapping[str, Any], line: int) -> None:
        key = _key("map", args["map"], args)
        if self._span(args, ("offset", "length"))[0] == (0, self.live[key].length):
            self._end(key, line, "munmap")
