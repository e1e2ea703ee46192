"""Reservation map strips: the seed example's entry shapes per policy, cached pages, cgroup
colours, the image and the ``regions`` command."""

from __future__ import annotations

import textwrap
from pathlib import Path

from click.testing import CliRunner

from hugetlbsim import cli
from hugetlbsim.backends.model import ModelBackend
from hugetlbsim.format.loader import load_text
from hugetlbsim.model.resv_map import Policy
from hugetlbsim.runner import run
from hugetlbsim.trace import Trace
from hugetlbsim.views.regions import cgroup_colours, map_rows, save_image, strip, width

SEED = """\
format: 1
name: seed
pool: {pages: 8}
steps:
  - mount: {name: hp}
  - create: {file: hp/f, size: 6}
  - mmap: {proc: init, map: a, file: hp/f, offset: 0, length: 1}
  - mmap: {proc: init, map: b, file: hp/f, offset: 2, length: 1}
  - mmap: {proc: init, map: c, file: hp/f, offset: 5, length: 1}
  - mmap: {proc: init, map: m, file: hp/f, length: 5}
  - touch: {proc: init, map: m, page: 0, count: 5}
"""
"""The seed example: a map [0,1) [2,3) [5,6), then an mmap of [0,5) and a fill of it."""


def trace(policy: Policy, text: str = SEED) -> Trace:
    return run(load_text(text), ModelBackend(policy))


def strips(policy: Policy, text: str = SEED) -> list[str]:
    rows = map_rows(trace(policy, text), "hp/f")
    pages, colours = width(rows), cgroup_colours(rows)
    return [strip(r, pages, colours).plain for r in rows]


def test_seed_v7_keeps_five_entries() -> None:
    rows = map_rows(trace("v7"), "hp/f")
    assert [None if r.regions is None else len(r.regions) for r in rows] == [None, 0, 1, 2, 3, 5, 5]
    assert strips("v7")[4:] == ["|▒|·|▒|· ·|▒|", "|▒|▒|▒|▒ ▒|▒|", "|█|█|█|█ █|▒|"]


def test_seed_618_coalesces_to_one_entry() -> None:
    rows = map_rows(trace("6.18"), "hp/f")
    assert [None if r.regions is None else len(r.regions) for r in rows] == [None, 0, 1, 2, 3, 1, 1]
    assert rows[-1].regions == ((0, 6, "root"),)
    assert rows[-1].cached == frozenset(range(5))
    assert strips("6.18")[1:] == [" · · · · · · ", "|▒|· · · · · ", "|▒|·|▒|· · · ",
                                  "|▒|·|▒|· ·|▒|", "|▒ ▒ ▒ ▒ ▒ ▒|", "|█ █ █ █ █ ▒|"]


def test_cgroups_keep_entries_apart_and_get_colours() -> None:
    text = SEED.replace("  - mmap: {proc: init, map: m, file: hp/f, length: 5}\n", """\
  - cgroup: {name: a}
  - spawn: {proc: p, cgroup: a}
  - mmap: {proc: p, map: m, file: hp/f, length: 5}
""").replace("touch: {proc: init,", "touch: {proc: p,")
    rows = map_rows(trace("6.18", text), "hp/f")
    assert rows[-1].regions == ((0, 1, "root"), (1, 2, "a"), (2, 3, "root"), (3, 5, "a"),
                                (5, 6, "root"))
    colours = cgroup_colours(rows)
    assert list(colours) == ["root", "a"] and colours["root"] != colours["a"]
    text_strip = strip(rows[-1], width(rows), colours)
    cells = [text_strip.plain[1 + 2 * page] for page in range(6)]
    owners = [next(str(s.style) for s in text_strip.spans if s.start == 1 + 2 * page)
              for page in range(6)]
    assert cells == ["█", "█", "█", "█", "█", "▒"]
    assert owners == [colours[c] for c in ("root", "a", "root", "a", "a", "root")]


def test_pages_beyond_the_size_and_fault_entries() -> None:
    text = textwrap.dedent("""\
        format: 1
        pool: {pages: 4}
        steps:
          - mount: {name: hp}
          - create: {file: hp/f, size: 4}
          - mmap: {proc: init, map: m, file: hp/f, length: 4, noreserve: true}
          - touch: {proc: init, map: m, page: 1}
          - truncate: {file: hp/f, size: 2}
        """)
    rows = map_rows(trace("6.18", text), "hp/f")
    assert rows[3].regions == ((1, 2, None),)
    assert strips("6.18", text)[3:] == [" ·|█|· · ", " ·|█|    "]


def test_image(tmp_path: Path) -> None:
    out = tmp_path / "map.png"
    save_image(trace("v7"), "hp/f", "seed v7", out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000


def test_regions_command(tmp_path: Path) -> None:
    path = tmp_path / "seed.yaml"
    path.write_text(SEED)
    image = tmp_path / "seed.svg"
    result = CliRunner().invoke(cli.main, ["regions", str(path), "--file", "hp/f",
                                           "--policy", "v7", "-o", str(image)])
    assert result.exit_code == 0, result.output
    assert "seed: reservation map of hp/f, v7 policy" in result.stdout
    assert "|█|█|█|█ █|▒|" in result.stdout
    assert image.read_text().lstrip().startswith("<?xml")
    result = CliRunner().invoke(cli.main, ["regions", str(path), "--file", "hp/f"])
    assert "|█ █ █ █ █ ▒|" in result.stdout and "6.18 policy" in result.stdout
    result = CliRunner().invoke(cli.main, ["regions", str(path), "--file", "hp/f", "-o", "x.pdf"])
    assert result.exit_code == 2 and "use a name ending in .png, .svg" in result.output
