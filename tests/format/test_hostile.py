"""Hostile input: thousands of malformed scenario files, each loads or fails in one line.

`test_bad_input_campaign` generates (deterministically, from `SEED`) at least 2 000 malformed
files of five families (structural, textual, YAML-level, numeric, path-level) and loads each
in-process through `hugetlbsim.format.loader.load`, with a per-file time budget (a watchdog
alarm turns a hang into a failure) and a memory budget (tracemalloc peak).  Each file either
loads or raises `ScenarioError` whose message is one ``FILE:LINE:COL: what; fix`` line of at
most `MAX_LINE` characters; any other exception, a timeout or an overdrawn budget fails.

The CLI tests run ``hugetlbsim run BADFILE`` for each kind of bad input issue 9 lists under
"Why": exit 2 and one line on stderr.
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import stat
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import pytest

from hugetlbsim.format.loader import MAX_FILE_BYTES, ScenarioError, load

SEED = 9_2024
TIME_BUDGET = 2.0
"""Seconds a file may take to load."""
MEMORY_BUDGET = 50 << 20
"""Bytes a file's loading may allocate at its peak (tracemalloc)."""
MAX_LINE = 500
"""Characters of an error message."""
MIN_FILES = 2000

LINE_FORM = re.compile(r"^.+:\d+:\d+: .+; .+$")

BASES = (
    """\
format: 1
name: base
pool: {pages: 4, overcommit: 1}
steps:
  - mount: {name: hp, size: 4}
  - create: {file: hp/f, size: 2}
  - spawn: {proc: p1}
  - mmap: {proc: p1, map: m, file: hp/f, length: 2}
    expect: {result: ok, rsvd: 2, cgroup: {root: {usage: 0}}}
  - touch: {proc: p1, map: m, page: 0, count: 1}
  - cgroup: {name: a, limit: 2}
  - rmdir: {cgroup: a}
""",
    """\
format: 1
pagesize: 2M
steps:
  - shmget:
      shm: s
      size: 3
  - mmap:
      proc: init
      map: m
      shm: s
    expect:
      result: ok
      free: 0
      file:
        memfd:x: {blocks: 0, size: 0}
  - memfd: {file: 'memfd:x', size: 2}
  - munmap: {proc: init, map: m, offset: 1, length: 1}
  - pool: {pages: 8}
""",
    """\
format: 1
steps:
  - spawn: {proc: p, cgroup: root}
  - mmap: {proc: p, map: a, anon: true, length: 4, shared: false}
  - fork: {proc: p, child: c}
  - madvise: {proc: c, map: a, page: 1, count: 2, advice: dontneed}
    expect: {result: ok, cgroup: {root: {limit: max, rsvd_limit: null}}}
  - exit: {proc: c}
""",
)
INT_RE = re.compile(r"(?<=: )\d+(?=[,}\n])")
"""An integer value written after a key."""


# -- the families of bad files ----------------------------------------------------------------

Content = str | bytes


def structural(rng: random.Random) -> Content:
    lines = rng.choice(BASES).splitlines(keepends=True)
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    fragments = ["- ", ":", "? ", "steps:", "- expect: {}", "format: 2", "  - mount:", "[", "{",
                 "}", "]", "|", ">", "&", "*", "!", "%", "@", "`", '"', "'", "#", "-", "---",
                 "...", "  - spawn: {proc: p1}", "  - exit: {proc: nobody}", "steps: {a: 1}",
                 "format: [1]", "  - mmap: {proc: p1, map: m, anon: true, length: 9}",
                 "pool: 7", "name: {x: 1}", "  - : {}", "  - {}", "  - []", "  - null"]
    how = rng.randrange(10)
    if how == 0:
        del lines[i]
    elif how == 1:
        lines.insert(i, lines[j])
    elif how == 2:
        lines[i], lines[j] = lines[j], lines[i]
    elif how == 3:
        lines[i] = " " * rng.randrange(1, 9) + lines[i]
    elif how == 4:
        lines[i] = lines[i].lstrip(" ")
    elif how == 5:
        text = "".join(lines)
        return text[:rng.randrange(len(text))]
    elif how == 6:
        lines[i] = lines[i].rstrip("\n") + lines[j]
    elif how == 7:
        lines.insert(i, rng.choice(fragments) + "\n")
    elif how == 8:
        lines[i] = re.sub(r"[a-z]+", lambda m: rng.choice(
            [m.group(), "x", "mout", "expect", "steps", "proc", "", "root", "init"]), lines[i])
    else:
        text = "".join(lines)
        return rng.choice(["- a\n", "42\n", "'just text'\n", "[]\n", "{}\n", "null\n",
                           text.replace("steps:", "steeps:"), text.replace("format: 1\n", ""),
                           text.replace("format: 1", "format: '1'")])
    return "".join(lines)


def textual(rng: random.Random) -> Content:
    text = rng.choice(BASES)
    at = rng.randrange(len(text) + 1)
    how = rng.randrange(8)
    if how == 0:
        bad = chr(rng.choice([*range(0, 9), 11, 12, *range(14, 32), 127, *range(128, 160)]))
        return text[:at] + bad * rng.randrange(1, 4) + text[at:]
    if how == 1:
        raw = text.encode()
        junk = rng.choice([b"\xff", b"\xfe", b"\xc0\x80", b"\x80", b"\xe2\x82", b"\xed\xa0\x80",
                           b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80", b"\xc3"])
        return raw[:at] + junk + raw[at:]
    if how == 2:
        return text.encode(rng.choice(["utf-16", "utf-32", "utf-16-be"]))
    if how == 3:
        return text.replace("proc: p", "proc: pé").encode("latin-1")
    if how == 4:
        return text[:at] + rng.choice(["\ufeff", "\u2028", "\u2029", "\x85", "\u200b", "\u202e",
                                       "\t", "\r", "\r\n", "\U0001f600", "\ufffd"]) + text[at:]
    if how == 5:
        return text.replace("\n", rng.choice(["\r\n", "\r", "\n\t", "\x85"]))
    if how == 6:
        return text.replace("p1", rng.choice(["p\x00", "p\x1b[31m", "p\u202e1", "p\ud800",
                                              "x" * rng.randrange(1000, 30_000)]))
    return text[:at] + "\\" + rng.choice(["x00", "0", "e", "u0000", "\\"]) + text[at:]


def _bomb(levels: int, width: int) -> list[str]:
    """Anchored flow lists, each holding ``width`` aliases of the one before: the last one
    expands to ``width ** levels`` strings."""
    lines = [f"&b0 [{', '.join(['lol'] * width)}]"]
    for level in range(1, levels):
        lines.append(f"&b{level} [{', '.join([f'*b{level - 1}'] * width)}]")
    return lines


def yaml_level(rng: random.Random) -> Content:
    base = BASES[0]
    how = rng.randrange(10)
    if how <= 2:  # billion laughs, 9-12 levels
        levels, width = rng.randint(9, 12), rng.randint(9, 10)
        anchors = _bomb(levels, width)
        top = "".join(f"x{i}: {a}\n" for i, a in enumerate(anchors))
        last = f"*b{levels - 1}"
        where = rng.randrange(3)
        if where == 0:  # inline in a step argument
            inline = ", ".join(f"k{i}: {a}" for i, a in enumerate(anchors))
            return base.replace("{proc: p1}", f"{{proc: p1, {inline}, z: {last}}}")
        if where == 1:  # in an expect value
            return base.replace("rsvd: 2,", f"rsvd: {{{', '.join(f'k{i}: {a}' for i, a in enumerate(anchors))}, z: {last}}},")  # noqa: E501
        return base.replace("format: 1\n", f"format: 1\n{top}bomb: {last}\n")
    if how == 3:
        return base.replace(rng.choice(["{name: hp, size: 4}", "{proc: p1}"]),
                            rng.choice(["{<<: {name: hp}}", "{<<: *a}", "*a", "&a {proc: p1}",
                                        "{<<: [{name: hp}, {size: 4}]}", "{proc: *undefined}"]))
    if how == 4:
        tag = rng.choice(["!!python/object/apply:os.system ['true']", "!!binary aGVsbG8=",
                          "!!int x", "!!float x", "!!timestamp 2001-13-45", "!custom 4",
                          "!<tag:example.com,2000:x> 4", "!!set {a, b}", "!!omap [a: 1]",
                          "!!str 4", "!!bool maybe", "!!null x", "! 4", "!!map [1]"])
        return base.replace("size: 4", f"size: {tag}")
    if how == 5:
        directive = rng.choice(["%YAML 1.1", "%YAML 2.0", "%YAML 1.2\n%YAML 1.2",
                                "%TAG ! tag:example.com,2000:", "%FOO bar", "%YAML"])
        return f"{directive}\n---\n{base}"
    if how == 6:  # deep flow nesting
        depth = rng.choice([33, 100, 1000, 3000, 20_000])
        open_, close = rng.choice([("[", "]"), ("{a: ", "}")])
        value = open_ * depth + close * depth
        return base.replace("{proc: p1}", f"{{proc: {value}}}") if rng.random() < 0.5 \
            else base.replace("name: base", f"name: {value}")
    if how == 7:  # deep block nesting
        depth = rng.choice([33, 100, 500])
        block = "".join(" " * (2 * k) + "-\n" for k in range(1, depth))
        return base.replace("name: base\n", f"name:\n{block}")
    if how == 8:
        return base.replace("name: base", rng.choice([
            "? [a, b]\n: 1", "? {a: 1}\n: 2", "format: 1", "steps: []", "name: x\nname: y",
            "? |\n  block key\n: 1"]))
    return rng.choice([base + "---\n" + base, base + "...\n---\nformat: 1\n",
                       base.replace("base", "'unterminated"), base.replace("base", '"a\\q"'),
                       base + "  - spawn: {proc: [p2\n", base + "]\n", base + "  - |\n bad\n",
                       base.replace("steps:", "steps: >\n  text\nx:")])


_NUMBERS = [
    *("9" * k for k in (19, 20, 21, 99, 100, 101, 4300, 4301, 5000, 20_000)),
    str(2**63 - 1), str(2**63), str(2**64 - 1), str(2**64), str(2**64 + 1), "-1",
    str(-2**63), "1e308", "1e400", "-1e400", ".inf", "-.inf", ".nan", "NaN",
    "0x" + "f" * 16, "0x" + "f" * 17, "0x" + "f" * 200, "0o777", "0b" + "1" * 70, "1_000",
    "+5", "007", "1:30", "0.0", "-0", "1.5", "true", "null", "~", "''", "2001-12-14",
    "2001-13-45", "12e3", "0x", "\u0661\u0662", "4 pages", "[4]", "{n: 4}",
]


def numeric(rng: random.Random) -> Content:
    base = rng.choice(BASES)
    matches = list(INT_RE.finditer(base))
    m = rng.choice(matches)
    return base[:m.start()] + rng.choice(_NUMBERS) + base[m.end():]


def big_value(rng: random.Random) -> Content:
    n = rng.choice([500, 1000, 3000])
    value = rng.choice([
        "[" + ", ".join(["1"] * n) + "]",
        "{" + ", ".join(f"k{i}: {i}" for i in range(n // 2)) + "}",
        "x" * (n * 10),
        "'" + "y" * (n * 10) + "'",
    ])
    base = BASES[0]
    target = rng.choice(["{proc: p1}", "{name: a, limit: 2}", "rsvd: 2,", "name: base"])
    replacement = {"{proc: p1}": f"{{proc: {value}}}", "{name: a, limit: 2}":
                   f"{{name: a, limit: {value}}}", "rsvd: 2,": f"rsvd: {value},",
                   "name: base": f"name: {value}"}[target]
    return base.replace(target, replacement)


FAMILIES: dict[str, tuple[Callable[[random.Random], Content], int]] = {
    "structural": (structural, 520),
    "textual": (textual, 480),
    "yaml": (yaml_level, 520),
    "numeric": (numeric, 480),
    "values": (big_value, 40),
}


@dataclass
class Case:
    family: str
    path: Path


def path_cases(root: Path) -> Iterator[Case]:
    """Files that are not plain scenario files."""
    d = root / "paths"
    d.mkdir()
    fifo = d / "fifo.yaml"
    os.mkfifo(fifo)
    yield Case("path", fifo)
    yield Case("path", d)
    (d / "dir.yaml").mkdir()
    yield Case("path", d / "dir.yaml")
    loop = d / "loop.yaml"
    loop.symlink_to(d / "loop2.yaml")
    (d / "loop2.yaml").symlink_to(loop)
    yield Case("path", loop)
    (d / "dangling.yaml").symlink_to(d / "nowhere.yaml")
    yield Case("path", d / "dangling.yaml")
    (d / "link-to-fifo.yaml").symlink_to(fifo)
    yield Case("path", d / "link-to-fifo.yaml")
    locked = d / "unreadable.yaml"
    locked.write_text(BASES[0])
    locked.chmod(0)
    yield Case("path", locked)  # root reads it anyway: then it loads
    plain = d / "plain.yaml"
    plain.write_text(BASES[0])
    yield Case("path", plain / "below.yaml")  # ENOTDIR
    yield Case("path", d / ("x" * 300 + ".yaml"))  # ENAMETOOLONG
    yield Case("path", d / "missing.yaml")
    yield Case("path", Path("/dev/null"))
    yield Case("path", Path("/dev/zero"))
    sock_path = d / "sock.yaml"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    sock.close()
    yield Case("path", sock_path)
    huge = d / "huge.yaml"
    with huge.open("wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)
    yield Case("path", huge)
    for name, content in [("empty.yaml", b""), ("blank.yaml", b"\n\n  \n"),
                          ("comment.yaml", b"# nothing\n"), ("bom.yaml", b"\xef\xbb\xbf"),
                          ("nul.yaml", b"\0" * 100), ("binary.yaml", bytes(range(256)) * 4)]:
        (d / name).write_bytes(content)
        yield Case("path", d / name)
    weird = d / "we\nird\x1b[31m.yaml"
    weird.write_text("format: 2\nsteps: []\n")
    yield Case("path", weird)


def cases(root: Path) -> Iterator[Case]:
    rng = random.Random(SEED)
    files = root / "files"
    files.mkdir()
    for family, (make, count) in FAMILIES.items():
        for i in range(count):
            content = make(rng)
            path = files / f"{family}-{i}.yaml"
            if isinstance(content, str):
                content = content.encode("utf-8", "surrogatepass")
            path.write_bytes(content)
            yield Case(family, path)
    yield from path_cases(root)


# -- the campaign -----------------------------------------------------------------------------


class _Hang(BaseException):
    """Raised by the watchdog alarm: the load did not come back."""


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise _Hang


def _load(case: Case) -> str | None:
    """Load one file under the watchdog: None if all is well, else what went wrong."""
    signal.setitimer(signal.ITIMER_REAL, 4 * TIME_BUDGET)
    try:
        load(case.path)
    except ScenarioError as exc:
        message = str(exc)
        if "\n" in message or len(message) > MAX_LINE or not LINE_FORM.match(message):
            return f"bad message {message[:200]!r}"
        return "refused"
    except _Hang:
        return f"timeout (> {4 * TIME_BUDGET} s)"
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return None


def _traced(index: int, case: Case) -> bool:
    """Whether the memory of this file is measured (tracemalloc slows loading some fivefold):
    every YAML-level file (the alias bombs), every big value and every fourth other file."""
    return case.family in ("yaml", "values") or index % 4 == 0


def test_bad_input_campaign(tmp_path: Path) -> None:
    problems: list[str] = []
    outcomes = {"loaded": 0, "refused": 0}
    slowest = peak_max = 0.0
    files = traced = 0
    started = time.perf_counter()
    old = signal.signal(signal.SIGALRM, _alarm)
    try:
        for index, case in enumerate(cases(tmp_path)):
            files += 1
            t0 = time.perf_counter()
            outcome = _load(case)
            elapsed = time.perf_counter() - t0
            slowest = max(slowest, elapsed)
            if outcome not in (None, "refused"):
                problems.append(f"{case.path.name}: {outcome}")
                continue
            outcomes["refused" if outcome else "loaded"] += 1
            if elapsed > TIME_BUDGET:
                problems.append(f"{case.path.name}: {elapsed:.2f} s, over the time budget")
            if _traced(index, case):
                traced += 1
                tracemalloc.start()
                try:
                    _load(case)
                    peak = tracemalloc.get_traced_memory()[1]
                finally:
                    tracemalloc.stop()
                peak_max = max(peak_max, peak)
                if peak > MEMORY_BUDGET:
                    problems.append(f"{case.path.name}: {peak >> 20} MB, over the memory budget")
    finally:
        signal.signal(signal.SIGALRM, old)
        for p in (tmp_path / "paths").glob("unreadable.yaml"):
            p.chmod(stat.S_IRUSR | stat.S_IWUSR)
    print(f"\nhostile campaign: {files} files, {outcomes['loaded']} loaded, {outcomes['refused']} "
          f"refused in {time.perf_counter() - started:.1f} s; slowest {slowest:.2f} s; "
          f"memory of {traced} files measured, peak {peak_max / (1 << 20):.1f} MB")
    assert files >= MIN_FILES
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:20])


def test_campaign_is_deterministic() -> None:
    def contents() -> list[bytes]:
        rng = random.Random(SEED)
        return [_content(make(rng)) for make, _count in FAMILIES.values() for _ in range(20)]

    assert contents() == contents()


def _content(content: Content) -> bytes:
    return content.encode("utf-8", "surrogatepass") if isinstance(content, str) else content


# -- the CLI, for each kind issue 9 lists -------------------------------------------------------


HUGETLBSIM = str(Path(sys.executable).parent / "hugetlbsim")


def _run(path: Path, *extra: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HUGETLBSIM, "run", *extra, str(path)], capture_output=True,
                          text=True, timeout=timeout)


def _refused(path: Path, words: str) -> str:
    result = _run(path)
    lines = result.stderr.splitlines()
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1, result.stderr[-2000:]
    assert len(lines[0]) <= MAX_LINE
    assert LINE_FORM.match(lines[0]), lines[0]
    assert lines[0].startswith(f"{path}:"), lines[0]
    assert words in lines[0], lines[0]
    return lines[0]


def _write(tmp_path: Path, text: str | bytes, name: str = "bad.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(_content(text))
    return path


STEPS = "format: 1\nsteps:\n  - mount: {name: hp}\n  - create: {file: hp/f, size: 2}\n"


@pytest.mark.parametrize("where", ["argument", "expect"])
def test_cli_alias_bomb(tmp_path: Path, where: str) -> None:
    anchors = _bomb(12, 10)
    inline = ", ".join(f"k{i}: {a}" for i, a in enumerate(anchors))
    step = (f"  - spawn: {{proc: p, {inline}, z: *b11}}\n" if where == "argument" else
            f"  - spawn: {{proc: p}}\n    expect: {{rsvd: {{{inline}, z: *b11}}}}\n")
    _refused(_write(tmp_path, STEPS + step), "anchors and aliases")


@pytest.mark.parametrize("char", ["\0", "\x1b", "\x07", "\x7f", "\x9b"])
def test_cli_control_characters(tmp_path: Path, char: str) -> None:
    _refused(_write(tmp_path, STEPS.replace("hp/f", f"hp/f{char}")), f"U+{ord(char):04X}")


def test_cli_bad_utf8(tmp_path: Path) -> None:
    _refused(_write(tmp_path, STEPS.encode().replace(b"hp/f", b"hp/\xff")), "not valid UTF-8")


def test_cli_deep_nesting(tmp_path: Path) -> None:
    _refused(_write(tmp_path, STEPS + "  - spawn: {proc: " + "[" * 1000 + "]" * 1000 + "}\n"),
             "nests deeper than")


def test_cli_integer_over_4300_digits(tmp_path: Path) -> None:
    _refused(_write(tmp_path, STEPS + "  - truncate: {file: hp/f, size: " + "9" * 5000 + "}\n"),
             "an integer of 5000 characters")


def test_cli_integer_beyond_2_64(tmp_path: Path) -> None:
    _refused(_write(tmp_path, STEPS + f"  - truncate: {{file: hp/f, size: {2**64}}}\n"),
             "beyond 2^64 - 1")


def test_cli_size_beyond_2_63_bytes_gets_the_kernels_answer(tmp_path: Path) -> None:
    # 2^42 huge pages of 2 MB are 2^63 bytes: ftruncate takes a signed length
    result = _run(_write(tmp_path, STEPS + f"  - truncate: {{file: hp/f, size: {2**42}}}\n"
                         f"  - truncate: {{file: hp/f, size: {2**64 - 1}}}\n"), "--json")
    assert result.returncode == 0, result.stderr
    assert '"result": "EINVAL"' in result.stdout


def test_cli_merge_key(tmp_path: Path) -> None:
    _refused(_write(tmp_path, STEPS + "  - spawn: {<<: {proc: p}}\n"), "merge keys (<<)")


def test_cli_1g_overcommit(tmp_path: Path) -> None:
    _refused(_write(tmp_path, "format: 1\npagesize: 1G\npool: {pages: 1, overcommit: 2}\n"
                    "steps: []\n"), "refuses to overcommit 1G pages")
    result = _run(_write(tmp_path, "format: 1\npagesize: 1G\nsteps:\n  - pool: {overcommit: 2}\n"
                         "    expect: {result: EINVAL}\n", "step.yaml"))
    assert result.returncode == 0, result.stderr


def test_cli_huge_value_is_not_echoed_whole(tmp_path: Path) -> None:
    line = _refused(_write(tmp_path, STEPS + "  - spawn: {proc: [" + ", ".join(["1"] * 100_000)
                           + "]}\n"), "must be a name")
    assert "..." in line


def test_cli_fifo_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    _refused(fifo, "is a FIFO, not a regular file")


def test_cli_directory(tmp_path: Path) -> None:
    d = tmp_path / "dir.yaml"
    d.mkdir()
    _refused(d, "is a directory")


def test_cli_missing_empty_huge_and_looping_files(tmp_path: Path) -> None:
    _refused(tmp_path / "missing.yaml", "cannot read the file")
    _refused(_write(tmp_path, "", "empty.yaml"), "the file is empty")
    huge = tmp_path / "huge.yaml"
    with huge.open("wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)
    _refused(huge, "more than the")
    loop = tmp_path / "loop.yaml"
    loop.symlink_to(loop)
    _refused(loop, "cannot read the file")


def test_cli_rmdir_busy_then_retry_runs(tmp_path: Path) -> None:
    path = _write(tmp_path, "format: 1\nsteps:\n  - cgroup: {name: a}\n"
                  "  - spawn: {proc: p, cgroup: a}\n  - rmdir: {cgroup: a}\n"
                  "    expect: {result: EBUSY}\n  - exit: {proc: p}\n"
                  "  - rmdir: {cgroup: a}\n    expect: {result: ok}\n")
    result = _run(path)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("steps", [
    "  - cgroup: {name: a}\n  - rmdir: {cgroup: a}\n  - rmdir: {cgroup: a}\n"
    "    expect: {result: ENOENT}\n",
    "  - cgroup: {name: a}\n  - rmdir: {cgroup: a}\n  - spawn: {proc: p, cgroup: a}\n"
    "    expect: {result: ENOENT}\n",
    "  - mount: {name: hp}\n  - umount: {name: hp}\n  - umount: {name: hp}\n"
    "    expect: {result: ENOENT}\n",
    "  - mount: {name: hp}\n  - create: {file: hp/f}\n  - close: {file: hp/f}\n"
    "  - umount: {name: hp}\n  - truncate: {file: hp/f, size: 1}\n    expect: {result: ENOENT}\n",
])
def test_cli_names_really_gone_get_enoent(tmp_path: Path, steps: str) -> None:
    result = _run(_write(tmp_path, "format: 1\nsteps:\n" + steps))
    assert result.returncode == 0, result.stderr
