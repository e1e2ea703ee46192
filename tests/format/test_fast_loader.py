"""The fast reader (libyaml nodes) and the round-trip reader (ruamel) give the same answer.

`load_text` reads with libyaml first and hands the text to ruamel whenever the answers could
differ (`_fast_parse` returns `_ASIDE`) and for every problem found, so each error message is
the round-trip reader's.  These tests compare the two readers directly: every example and
regression loads to an equal `Scenario` through both, edge cases of YAML 1.1 against 1.2 and
a hostile campaign either step aside or agree.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from hugetlbsim.format import loader
from hugetlbsim.format.loader import ScenarioError, load_text

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted([*ROOT.glob("examples/*.yaml"), *ROOT.glob("tests/regressions/*.yaml")])


def _slow(text: str, path: str = "x.yaml") -> Any:
    try:
        return loader._Loader(path).scenario(loader._parse(text, path))
    except ScenarioError as exc:
        return ("error", str(exc))


def _fast(text: str, path: str = "x.yaml") -> Any:
    doc = loader._fast_parse(text)
    if doc is loader._ASIDE:
        return loader._ASIDE
    try:
        return loader._Loader(path).scenario(doc)
    except (ScenarioError, loader._Aside) as exc:  # a position asked: a message is coming
        return ("error", str(exc))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_examples_load_fast_and_equal(path: Path) -> None:
    text = path.read_text()
    fast = _fast(text, str(path))
    assert fast is not loader._ASIDE, "the fast reader should take every example"
    assert fast == _slow(text, str(path))
    assert load_text(text, str(path)) == fast


EDGE = [
    "{a:1}", "[a:b]", '"\\/"', "'it''s'", "[a, b,]", "{a, b}", "[a: 1]", "{? a}", '"a\\\n  b"',
    "|2-\n   x\n  y", ">\n  a\n   b\n  c\n\n  d", "a\n  b\n  c", '"\\N\\_\\L\\P"', '"\\e\\a"',
    "{a: [b, {c: d}]}", "[[a]]", "- a\n- b", "!!str 1", "! 1", "!x 1", '"\\x41\\u0042"', "0x_1",
    "1__0", "0b", "._1", "1.", ".5", "+.5", "-.inf", "0o", "1e", "+1e+2", "Null", "NULL", "nUll",
    "TRUE", "tRue", "Off", "y", "n", "on", "yes", '"a  \n\n  b"', "'a\n\n b'", "[a, ? b : c]",
    "{a: }", "{: a}", "[,]", "- ", '{"a":1}', '["a":1]', '[a, "b":c]', "{'a':b}", "{a: 1, a: 2}",
    "{1: a, true: b}", "{1: a, 0x1: b}", "? x", '"#"', "a #b", "a#b", "-1", "[-]", "{-: -}",
    "? - a\n  - b\n: c", "0:0", "12:30:00", "1_0:2", "0x1F", "1e3", "685.230_15e+03",
    "190:20:30.15", "-.Inf", ".NAN", "~", "2002-12-14t21:59:43.10-05:00", "2001-12-14", "=",
    "<<", "{<<: {a: 1}}", "[a?b]", "{a?b: c}", "[?a]", "[? a]", "a?", "{a: b}}", "[a\n b]",
    "{a: b\n c}", "[a #c\n, b]", '"a" b', "[a: b: c]", "[a::b]", "::", "[a:]", "{a:}", "--- a",
    "'" + "9" * 101 + "'", "9" * 101, "9" * 100, "0x" + "f" * 98, "*x", "&x a",
]


@pytest.mark.parametrize("value", EDGE)
def test_edge_values_agree(value: str) -> None:
    if "\n" in value and not value.startswith(("|", ">", '"', "'")):
        body = "\n" + "".join(f"  {line}\n" for line in value.split("\n"))
    else:
        body = f" {value}\n"
    text = f"format: 1\nsteps: []\nx-ext:{body}"
    fast = _fast(text)
    slow = _slow(text)
    if fast is loader._ASIDE:
        if not isinstance(slow, tuple):
            assert load_text(text, "x.yaml") == slow
        return
    if isinstance(fast, tuple):  # an error: load_text asks the round-trip reader
        assert isinstance(slow, tuple)
        with pytest.raises(ScenarioError) as caught:
            load_text(text, "x.yaml")
        assert str(caught.value) == slow[1]
    else:
        assert fast == slow


def test_hostile_campaign_agrees() -> None:
    """The hostile generators' files: the fast reader steps aside, fails (and then the
    round-trip reader answers), or loads exactly what the round-trip reader loads."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    try:
        import test_hostile as hostile
    finally:
        sys.path.pop(0)
    rng = random.Random(2026)
    took = 0
    for make, count in hostile.FAMILIES.values():
        for _ in range(count // 2):
            content = make(rng)
            if isinstance(content, bytes):
                try:
                    content = content.decode("utf-8")
                except UnicodeDecodeError:
                    continue
            if loader._NON_PRINTABLE.search(content):
                continue
            fast = _fast(content)
            if fast is loader._ASIDE or isinstance(fast, tuple):
                continue
            took += 1
            assert fast == _slow(content), content[:300]
    assert took > 50


def test_without_libyaml_the_round_trip_reader_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    text = FILES[0].read_text()
    expected = load_text(text, "a.yaml")
    monkeypatch.setattr(loader, "_CParser", None)
    assert loader._fast_parse(text) is loader._ASIDE
    assert load_text(text, "a.yaml") == expected


def test_error_messages_come_from_the_round_trip_reader() -> None:
    """An empty value: libyaml and ruamel mark it at different places; the message is ruamel's
    (the fast reader keeps no position but where each step starts)."""
    text = "format: 1\nsteps:\n  - spawn: {proc: p}\n    expect:\n  - exit: {proc: p}\n"
    slow = _slow(text)
    assert isinstance(slow, tuple)
    with pytest.raises(ScenarioError) as caught:
        load_text(text, "x.yaml")
    assert str(caught.value) == slow[1]


def test_large_file_loads_fast() -> None:
    """10^4 small steps through the fast reader (the round-trip reader took ~0.5 s a thousand),
    in bounded memory (no node tree is kept)."""
    import time
    import tracemalloc

    lines = ["format: 1", "pool: {pages: 64}", "steps:", "  - mount: {name: hp}",
             "  - create: {file: hp/f, size: 64}", "  - spawn: {proc: p}",
             "  - mmap: {proc: p, map: m, file: hp/f, length: 64}"]
    for i in range(10_000):
        lines.append(f"  - touch: {{proc: p, map: m, page: {i % 64}}}")
    text = "\n".join(lines) + "\n"
    tracemalloc.start()
    try:
        assert loader._fast_parse(text) is not loader._ASIDE
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 30 << 20
    start = time.perf_counter()
    scenario = load_text(text)
    assert len(scenario.steps) == 10_004
    assert time.perf_counter() - start < 2.5


_TOKENS = ["p", "hp/f", "0", "7", "18446744073709551616", "0x10", "0o7", "1_0", ".5", "1e3",
           "true", "false", "True", "null", "Null", "yes", "on", "y", "max", "dontneed", "a.b",
           "+1", "a-b", "_x", ".inf", "9" * 101, '"p"', '"hp/f"', '"a, b: c"', '"{x}"', '"#"',
           '""', "'it'", "'a, b'", "''", '"memfd:f"', "memfd:f", "a:b:c", "1:20", "0:0"]
"""Values a `_STEP_LINE` takes."""
_ODD = ["-1", "a:", "a::b", ":a", "a: b", "a:,", "a b", "~", "-", "<<", "a#b", '"a\\"b"',
        "'it''s'", "[a]", "{a: 1}", "&x a", "*x", "!t a", "? a"]
"""Values it leaves to libyaml."""


def _step_line(rng: random.Random) -> str:
    op = rng.choice(["touch", "spawn", "mmap", "madvise", "exit", "null", "true", "x_y"])
    keys = rng.sample(["proc", "map", "page", "count", "write", "advice", "null", "a"],
                      rng.randint(0, 4))
    if rng.random() < 0.05:
        keys.append(keys[0] if keys else "proc")  # a duplicate key
    body = ", ".join(f"{k}: {rng.choice(_ODD if rng.random() < 0.03 else _TOKENS)}"
                     for k in keys)
    if rng.random() < 0.05:
        body = body.replace(", ", ",", 1) if rng.random() < 0.5 else body + " "
    return f"- {op}: {{{body}}}"


def _shape(doc: Any) -> Any:
    """A document with every value's type and each sequence's item positions."""
    if isinstance(doc, dict):
        return ("map", [(_shape(k), _shape(v)) for k, v in doc.items()])
    if isinstance(doc, list):
        return ("seq", [_shape(v) for v in doc], doc.lc.items if doc.lc.items else None)
    return (type(doc), doc)


def test_steps_read_line_by_line_agree_with_libyaml(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files whose steps are one-line flow mappings (`_STEP_LINE`) read line by line: the same
    document, values, types and step positions as libyaml's events give (with ``steps: `` the
    line reader does not apply), and the same scenario or error as the round-trip reader."""
    step_lines = loader._step_lines
    read: list[bool] = []

    def spy(*args: Any) -> Any:
        steps = step_lines(*args)
        read.append(steps is not None)
        return steps

    monkeypatch.setattr(loader, "_step_lines", spy)
    rng = random.Random(10)
    lines_read = 0
    for _ in range(1000):
        indent = " " * rng.choice([0, 2, 4])
        head = rng.choice(["format: 1\n", "format: 1\nname: x\npool: {pages: 4}\n", "",
                           "format: 1\nx: |\n  a\n", "format: 1\nsteps: []\n", "---\nformat: 1\n",
                           "format: 1\nname: 'a\n"])
        steps = [indent + _step_line(rng) for _ in range(rng.randint(1, 6))]
        if rng.random() < 0.1:
            steps.insert(rng.randrange(len(steps)), rng.choice(["", "# c", indent + "- spawn:",
                                                                "  " + steps[0], "x: 1"]))
        text = head + "steps:\n" + "\n".join(steps) + rng.choice(["\n", "", "\n\n"])
        read.clear()
        fast = loader._fast_parse(text)
        lines_read += read == [True] and fast is not loader._ASIDE
        reference = loader._fast_parse(text.replace("\nsteps:\n", "\nsteps: \n"))
        if reference is loader._ASIDE:
            assert fast is loader._ASIDE
            continue
        assert fast is not loader._ASIDE
        assert _shape(fast) == _shape(reference), text
        slow = _slow(text)
        try:
            assert load_text(text, "x.yaml") == slow
        except ScenarioError as exc:
            assert ("error", str(exc)) == slow
    assert lines_read > 100
