"""The scenario loader: one-line errors with line, column and fix; names; defaults; dump."""

from __future__ import annotations

from pathlib import Path

import pytest

from hugetlbsim.format.loader import ScenarioError, dump_scenario, given_args, load, load_text
from hugetlbsim.format.scenario import OPS


def scenario(*steps: str, head: str = "format: 1\n") -> str:
    """A scenario whose steps start on line 3 (line 2 with an empty head + steps line)."""
    return head + "steps:\n" + "".join(f"  - {s}\n" for s in steps)


def error(text: str) -> str:
    with pytest.raises(ScenarioError) as info:
        load_text(text, "s.yaml")
    message = str(info.value)
    assert "\n" not in message
    assert "; " in message, "every message says how to fix it"
    return message


MOUNTED = ("mount: {name: hp}", "create: {file: hp/f, size: 4}")
MAPPED = ("spawn: {proc: p}", "mmap: {proc: p, map: m, anon: true, length: 4}")


def where(text: str, line: int, token: str) -> str:
    """``LINE:COL`` of the first ``token`` on ``line`` of ``text``."""
    column = text.splitlines()[line - 1].index(token) + 1
    return f"{line}:{column}"


@pytest.mark.parametrize(("steps", "line", "token", "words"), [
    # unknown operation, with the closest name
    (("mout: {name: hp}",), 3, "mout", "unknown operation 'mout'; did you mean 'mount'?"),
    (("xyzzy: {}",), 3, "xyzzy", "unknown operation 'xyzzy'; use one of pool, mount"),
    # missing argument
    ((*MOUNTED, "truncate: {file: hp/f}"), 5, "truncate", "truncate is missing argument 'size'; "
     "add 'size: 4'"),
    # wrong types
    (("mount: {name: hp, size: four}",), 3, "four",
     "mount argument 'size' must be an integer >= 0 (huge pages), not 'four'; write e.g. "
     "'size: 4'"),
    (("mount: {name: hp, size: -1}",), 3, "-1", "not -1"),
    (("mount: {name: hp, size: 1.5}",), 3, "1.5", "not 1.5"),
    ((*MAPPED, "touch: {proc: p, map: m, page: 0, write: yes}"), 5, "yes",
     "touch argument 'write' must be true or false, not 'yes'; write 'write: true'"),
    (("cgroup: {name: a, limit: lots}",), 3, "lots", "must be a number of huge pages or max, not "
     "'lots'; write e.g. 'limit: 4' or 'limit: max'"),
    ((*MAPPED, "madvise: {proc: p, map: m, page: 0, advice: free}"), 5, "free",
     "must be dontneed or remove"),
    (("spawn: {proc: 7}",), 3, "7", "must be a name (letters, digits, _ and -), not 7; "
     "quote it ('7')"),
    (("spawn: {proc: a.b}",), 3, "a.b", "not 'a.b'; write e.g. 'p1'"),
    (("mount: [hp]",), 3, "[", "the arguments of mount must be a mapping; write e.g. "
     "'mount: {name: hp}'"),
    # two operations in one step, or none
    (("mount: {name: hp}\n    spawn: {proc: p}",), 4, "spawn",
     "two operations in one step ('mount' and 'spawn'); start a new step ('- ') for 'spawn'"),
    (("expect: {result: ok}",), 3, "expect", "the step has no operation; add one of"),
    (("just-a-string",), 3, "just", "a step must be a mapping"),
    # unknown argument
    (("mount: {name: hp, sise: 4}",), 3, "sise", "unknown argument 'sise' of mount; "
     "did you mean 'size'?"),
    # names used before they exist, or after they ended
    (("exit: {proc: p}",), 3, "p}", "proc 'p' does not exist here; introduce it first with a "
     "spawn or fork step"),
    (("spawn: {proc: p}", "exit: {proc: p}", "exit: {proc: p}"), 5, "p}",
     "proc 'p' does not exist here (it ended at line 4)"),
    (("touch: {proc: init, map: m, page: 0}",), 3, "m,", "map 'm' of proc 'init' does not exist "
     "here; introduce it first with a mmap step"),
    (("shmrm: {shm: s}",), 3, "s}", "shm 's' does not exist here; introduce it first with a "
     "shmget step"),
    (("spawn: {proc: p, cgroup: a}",), 3, "a}", "cgroup 'a' does not exist here"),
    (("umount: {name: hp}",), 3, "hp", "mount 'hp' does not exist here"),
    (("exit: {}",), 3, "exit", "exit is missing argument 'proc'"),
    (("mount: {name: hp}", "create: {file: hp/f, proc: p}"), 4, "p}", "proc 'p' does not "
     "exist"),
    # names introduced again while live
    (("spawn: {proc: p}", "spawn: {proc: p}"), 4, "p}", "proc 'p' is already live (from line "
     "3); choose another name or end it first with exit"),
    (("fork: {proc: init, child: init}",), 3, "init}", "proc 'init' is already live"),
    ((*MAPPED, "mmap: {proc: p, map: m, anon: true, length: 1}"), 5, "m,",
     "map 'm' of proc 'p' is already live (from line 4); choose another name or end it first "
     "with a munmap of the whole mapping"),
    ((*MOUNTED, "create: {file: hp/f}"), 5, "hp/f", "file 'hp/f' is already live (from line 4)"),
    ((*MOUNTED, "unlink: {file: hp/f}", "create: {file: hp/f}"), 6, "hp/f",
     "the scenario still holds the handle of the unlinked file 'hp/f'; close it before creating "
     "the path again"),
    # page ranges outside the mapping as created
    ((*MAPPED, "touch: {proc: p, map: m, page: 3, count: 2}"), 5, "2}",
     "pages [3, 5) are outside map 'm' of proc 'p', which has pages [0, 4) as created at line 4; "
     "keep the range within [0, 4)"),
    ((*MAPPED, "touch: {proc: p, map: m, page: 5, count: 0}"), 5, "5,", "pages [5, 5)"),
    ((*MAPPED, "madvise: {proc: p, map: m, page: 4, advice: remove}"), 5, "4,", "pages [4, 5)"),
    ((*MAPPED, "munmap: {proc: p, map: m, offset: 5}"), 5, "5}", "pages [5, 5) are outside"),
    ((*MAPPED, "mprotect: {proc: p, map: m, offset: 1, length: 4, writable: false}"), 5, "4,",
     "pages [1, 5)"),
    (("shmget: {shm: s, size: 2}", "mmap: {proc: init, map: m, shm: s}",
      "touch: {proc: init, map: m, page: 2}"), 5, "2}", "which has pages [0, 2) as created"),
    # mmap sources
    (("mmap: {proc: init, map: m, length: 2}",), 3, "m,", "mmap needs exactly one of file, shm "
     "or 'anon: true'; add one"),
    ((*MOUNTED, "mmap: {proc: init, map: m, file: hp/f, anon: true, length: 2}"), 5, "true",
     "keep only one of file, anon"),
    (("mmap: {proc: init, map: m, anon: true}",), 3, "m,", "mmap of a file or anon mapping is "
     "missing argument 'length'; add 'length: 4'"),
    (("shmget: {shm: s, size: 2}", "mmap: {proc: init, map: m, shm: s, length: 2}"), 4, "2}",
     "mmap of a shm segment takes only proc, map, shm, writable (it maps the whole segment); "
     "remove 'length'"),
    (("shmget: {shm: s, size: 2}", "mmap: {proc: init, map: m, shm: s, shared: false}"), 4,
     "false", "remove 'shared'"),
    # file names
    (("create: {file: hp/f}",), 3, "hp/f", "mount 'hp' does not exist here; mount it first with "
     "'mount: {name: hp}'"),
    (("mount: {name: hp}", "create: {file: f}"), 4, "f}", "must be a name (MOUNT/NAME or "
     "memfd:NAME), not 'f'"),
    (("create: {file: 'memfd:x'}",), 3, "'memfd", "create makes hugetlbfs files (MOUNT/NAME); "
     "use 'memfd: {file: memfd:x}'"),
    (("mount: {name: hp}", "memfd: {file: hp/f}"), 4, "hp/f", "must be a name (memfd:NAME)"),
    ((*MOUNTED, "close: {file: hp/f}", "close: {file: hp/f}"), 6, "hp/f",
     "file 'hp/f' has no open handle"),
    (("memfd: {file: 'memfd:x'}", "unlink: {file: 'memfd:x'}"), 4, "'memfd",
     "'memfd:x' is a memfd and has no path to unlink; close it instead"),
    ((*MOUNTED, "unlink: {file: hp/f}", "unlink: {file: hp/f}"), 6, "hp/f", "already unlinked"),
    # cgroups
    (("cgroup: {name: a/b}",), 3, "a/b", "cgroup 'a' does not exist here; create the parent first "
     "with 'cgroup: {name: a}'"),
    (("cgroup: {name: root/a}",), 3, "root", "cgroup names are relative to root; write 'a'"),
    (("cgroup: {name: root, rsvd_limit: 4}",), 3, "4}", "the root cgroup takes no limits; set "
     "them on a child cgroup"),
    (("rmdir: {cgroup: root}",), 3, "root", "the root cgroup cannot be removed"),
    # expectations
    (("spawn: {proc: p}\n    expect: {rsv: 0}",), 4, "rsv", "unknown expectation 'rsv'; "
     "did you mean 'rsvd'?"),
    (("spawn: {proc: p}\n    expect: {cgroup: {root: {usgae: 0}}}",), 4, "usgae",
     "unknown cgroup expectation 'usgae'; did you mean 'usage'?"),
    (("spawn: {proc: p}\n    expect: {mount: {hp: {size: 0}}}",), 4, "size",
     "unknown mount expectation 'size'; use one of free"),
    (("spawn: {proc: p}\n    expect: {file: {hp/f: {blocks: 0, bytes: 0}}}",), 4, "bytes",
     "unknown file expectation 'bytes'"),
    (("spawn: {proc: p}\n    expect: {file: {f: {blocks: 0}}}",), 4, "f:",
     "expect file must be a name (MOUNT/NAME or memfd:NAME), not 'f'"),
    (("spawn: {proc: p}\n    expect: {result: EFAULT}",), 4, "EFAULT", "expected result "
     "'EFAULT' is not a result; use one of ok, ENOMEM"),
    (("spawn: {proc: p}\n    expect: {rsvd: -1}",), 4, "-1", "expected rsvd must be an unsigned "
     "integer, not -1; write e.g. 'rsvd: 0' (an underflow reads as 2^64 - n)"),
    (("spawn: {proc: p}\n    expect: {free: 18446744073709551616}",), 4, "1844", "not "
     "18446744073709551616"),
    (("spawn: {proc: p}\n    expect: {cgroup: {root: {limit: lots}}}",), 4, "lots",
     "expected limit must be an unsigned integer, max or null"),
    (("spawn: {proc: p}\n    expect: {cgroup: {root: {usage: null}}}",), 4, "null",
     "expected usage must be an unsigned integer, not None"),
    (("spawn: {proc: p}\n    expect: {cgroup: [root]}",), 4, "[", "expect 'cgroup' must be a "
     "mapping by cgroup name"),
    (("spawn: {proc: p}\n    expect: {cgroup: {root: 0}}",), 4, "0}", "expect cgroup 'root' "
     "must be a mapping of counters"),
    (("spawn: {proc: p}\n    expect: ok",), 4, "ok", "'expect' must be a mapping"),
])
def test_step_errors(steps: tuple[str, ...], line: int, token: str, words: str) -> None:
    text = scenario(*steps)
    message = error(text)
    assert message.startswith(f"s.yaml:{where(text, line, token)}: "), message
    assert words in message, message


@pytest.mark.parametrize(("text", "where", "words"), [
    ("", "1:1", "the file is empty; start it with 'format: 1'"),
    ("- a\n", "1:1", "a scenario must be a mapping"),
    ("steps: []\n", "1:1", "missing 'format'; add 'format: 1' at the top"),
    ("format: 2\nsteps: []\n", "1:9", "unsupported format 2; this version reads 'format: 1'"),
    ("format: 1\n", "1:1", "missing 'steps'"),
    ("format: 1\nsteps: {a: 1}\n", "2:8", "'steps' must be a list"),
    ("format: 1\npagesize: 4K\nsteps: []\n", "2:11", "unsupported pagesize '4K'; use one of "
     "2M, 1G"),
    ("format: 1\npool: {pages: 8, surplus: 1}\nsteps: []\n", "2:18", "unknown pool key "
     "'surplus'; use one of pages, overcommit"),
    ("format: 1\npool: {pages: many}\nsteps: []\n", "2:15", "pool pages must be an integer"),
    ("format: 1\nname: {a: 1}\nsteps: []\n", "2:7", "'name' must be a line of text"),
    ("format: 1\nstep: []\n", "2:1", "unknown top-level key 'step'; did you mean 'steps'?"),
    ("format: 1\nsteps: [\n", "3:1", "; fix the YAML syntax here"),
    ("format: 1\nformat: 1\nsteps: []\n", "2:1", 'found duplicate key "format"'),
    ("format: 1\npagesize: 1G\npool: {pages: 2, overcommit: 1}\nsteps: []\n", "3:30",
     "the kernel refuses to overcommit 1G pages (EINVAL); remove 'overcommit'"),
    ("format: 1\npool: {pages: 18446744073709551616}\nsteps: []\n", "2:15",
     "pool pages must be an integer from 0 to 2^64 - 1"),
])
def test_document_errors(text: str, where: str, words: str) -> None:
    message = error(text)
    assert message.startswith(f"s.yaml:{where}: "), message
    assert words in message, message


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"missing.yaml:1:1: cannot read the file .*; check"):
        load(tmp_path / "missing.yaml")


@pytest.mark.parametrize("steps", [
    # exit frees the process and its maps
    (*MAPPED, "exit: {proc: p}", "spawn: {proc: p}", "mmap: {proc: p, map: m, anon: true, "
     "length: 1}"),
    # munmap of the whole mapping frees the name; of a part, it stays live
    (*MAPPED, "munmap: {proc: p, map: m, offset: 1}", "touch: {proc: p, map: m, page: 0}",
     "munmap: {proc: p, map: m}", "mmap: {proc: p, map: m, anon: true, length: 1}"),
    (*MAPPED, "munmap: {proc: p, map: m, offset: 0, length: 4}",
     "mmap: {proc: p, map: m, anon: true, length: 1}"),
    # fork copies the maps, with their lengths
    (*MAPPED, "fork: {proc: p, child: c}", "touch: {proc: c, map: m, page: 3}"),
    # a closed file stays nameable; close of an unlinked file frees the path
    (*MOUNTED, "close: {file: hp/f}", "truncate: {file: hp/f, size: 0}", "unlink: {file: hp/f}",
     "create: {file: hp/f}"),
    (*MOUNTED, "unlink: {file: hp/f}", "truncate: {file: hp/f, size: 0}", "close: {file: hp/f}",
     "create: {file: hp/f}"),
    ("memfd: {file: 'memfd:x'}", "close: {file: 'memfd:x'}", "memfd: {file: 'memfd:x'}"),
    # umount frees the mount and its files
    (*MOUNTED, "umount: {name: hp}", "mount: {name: hp}", "create: {file: hp/f}"),
    # shmrm and rmdir free their names; cgroup on a live cgroup sets limits
    ("shmget: {shm: s, size: 1}", "shmrm: {shm: s}", "shmget: {shm: s, size: 2}"),
    ("cgroup: {name: a}", "cgroup: {name: a/b, limit: 2}", "cgroup: {name: a, rsvd_limit: max}",
     "rmdir: {cgroup: a/b}", "cgroup: {name: a/b}", "cgroup: {name: root}"),
])
def test_valid_name_lifetimes(steps: tuple[str, ...]) -> None:
    assert len(load_text(scenario(*steps)).steps) == len(steps)


@pytest.mark.parametrize("steps", [
    # rmdir -> EBUSY -> exit -> rmdir: the retry after the busy process exits
    ("cgroup: {name: a}", "spawn: {proc: p, cgroup: a}", "rmdir: {cgroup: a}", "exit: {proc: p}",
     "rmdir: {cgroup: a}"),
    # a cgroup rmdir ended may still be used (the kernel answers ENOENT if it is gone)
    ("cgroup: {name: a}", "rmdir: {cgroup: a}", "spawn: {proc: p, cgroup: a}",
     "cgroup: {name: a/b}", "attach: {proc: p, cgroup: a}", "cgroup: {name: a, limit: 2}"),
    # umount -> EBUSY -> close -> umount, and the files stay nameable meanwhile
    (*MOUNTED, "umount: {name: hp}", "close: {file: hp/f}", "umount: {name: hp}"),
    (*MOUNTED, "spawn: {proc: p}", "mmap: {proc: p, map: m, file: hp/f, length: 4}",
     "umount: {name: hp}", "exit: {proc: p}", "truncate: {file: hp/f, size: 0}",
     "create: {file: hp/g}", "umount: {name: hp}", "umount: {name: hp}"),
    # and they may be introduced again
    (*MOUNTED, "umount: {name: hp}", "create: {file: hp/f}"),
    (*MOUNTED, "umount: {name: hp}", "mount: {name: hp}", "create: {file: hp/f}"),
])
def test_names_ended_by_rmdir_or_umount_stay_nameable(steps: tuple[str, ...]) -> None:
    assert len(load_text(scenario(*steps)).steps) == len(steps)


def test_a_umount_ends_a_file_closed_before_for_good_once_unlinked() -> None:
    assert "has no open handle" in error(scenario(
        *MOUNTED, "close: {file: hp/f}", "umount: {name: hp}", "close: {file: hp/f}"))


def test_ended_names_cannot_be_used() -> None:
    # a umount leaves the mount's files nameable (it may fail); mounting again ends them
    assert "file 'hp/f' does not exist here (it ended at line 5)" in error(scenario(
        *MOUNTED, "umount: {name: hp}", "mount: {name: hp}", "truncate: {file: hp/f, size: 0}"))
    # a file closed and unlinked after a umount is gone for good
    assert "(it ended at line 7)" in error(scenario(
        *MOUNTED, "umount: {name: hp}", "unlink: {file: hp/f}", "close: {file: hp/f}",
        "truncate: {file: hp/f, size: 0}"))
    assert "map 'm' of proc 'p' does not exist here (it ended at line 5)" in error(scenario(
        *MAPPED, "munmap: {proc: p, map: m}", "touch: {proc: p, map: m, page: 0}"))
    assert "(it ended at line 5)" in error(scenario(
        *MAPPED, "exit: {proc: p}", "spawn: {proc: p}", "touch: {proc: p, map: m, page: 0}"))
    assert "file 'memfd:x' does not exist here (it ended at line 4)" in error(scenario(
        "memfd: {file: 'memfd:x'}", "close: {file: 'memfd:x'}", "truncate: {file: 'memfd:x', "
        "size: 0}"))


FULL = """\
format: 1
name: shared-file-basics
pagesize: 1G
pool: {pages: 8, overcommit: 0}
seed: 1234  # an extension: kept in extra
steps:
  - mount: {name: hp, size: 8}
  - create: {file: hp/f, size: 4}
  - spawn: {proc: p1}
  - mmap: {proc: p1, map: m, file: hp/f, length: 4, shared: true}
    expect:
      result: ok
      rsvd: 4
      cgroup: {root: {limit: max, rsvd_limit: null, usage: 0}}
      mount: {hp: {free: 4}}
      file: {hp/f: {blocks: 0, size: 4}}
  - cgroup: {name: a, limit: max}
  - pool: {}
  - touch: {proc: p1, map: m, page: 0, count: 0x2}
"""


def test_valid_scenario_with_defaults_filled() -> None:
    sc = load_text(FULL, "full.yaml")
    assert (sc.name, sc.pagesize, sc.pool_pages, sc.pool_overcommit, sc.path) == (
        "shared-file-basics", "1G", 8, 0, "full.yaml")
    assert sc.extra == {"seed": 1234}
    for step in sc.steps:
        assert list(step.args) == [a.name for a in OPS[step.op]]
    mmap = sc.steps[3]
    assert mmap.args == {"proc": "p1", "map": "m", "file": "hp/f", "shm": None, "anon": False,
                         "offset": 0, "length": 4, "shared": True, "noreserve": False,
                         "writable": True, "populate": False}
    assert (mmap.index, mmap.line) == (3, 10)
    assert mmap.expect == {"result": "ok", "rsvd": 4,
                           "cgroup": {"root": {"limit": "max", "rsvd_limit": None, "usage": 0}},
                           "mount": {"hp": {"free": 4}},
                           "file": {"hp/f": {"blocks": 0, "size": 4}}}
    assert sc.steps[1].args == {"file": "hp/f", "size": 4, "proc": "init"}
    assert sc.steps[4].args == {"name": "a", "limit": "max", "rsvd_limit": None}
    assert sc.steps[5].args == {"pages": None, "overcommit": None}
    assert sc.steps[6].args["count"] == 2
    assert type(sc.steps[6].args["count"]) is int
    assert type(sc.steps[3].args["shared"]) is bool
    assert given_args("mmap", mmap.args) == {"proc": "p1", "map": "m", "file": "hp/f",
                                             "length": 4}


def test_empty_steps() -> None:
    assert load_text("format: 1\nsteps:\n").steps == ()


def test_dump_reads_back_the_same() -> None:
    sc = load_text(FULL)
    text = dump_scenario(sc)
    again = load_text(text)
    assert [(s.index, s.op, s.args, s.expect) for s in again.steps] == [
        (s.index, s.op, s.args, s.expect) for s in sc.steps]
    lines = text.splitlines()
    assert all(lines[s.line - 1].startswith(f"  - {s.op}:") for s in again.steps)
    assert (again.name, again.pagesize, again.pool_pages, again.pool_overcommit, again.extra) == (
        sc.name, sc.pagesize, sc.pool_pages, sc.pool_overcommit, sc.extra)
    assert "  - mmap: {proc: p1, map: m, file: hp/f, length: 4}\n" in text
    assert "      cgroup:\n        root: {limit: max, rsvd_limit: null, usage: 0}\n" in text
    assert dump_scenario(again) == text


def test_dump_minimal_scenario() -> None:
    text = dump_scenario(load_text(scenario("memfd: {file: 'memfd:x'}")))
    assert text == "format: 1\nsteps:\n  - memfd: {file: memfd:x}\n"
