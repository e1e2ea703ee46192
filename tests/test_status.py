"""``hugetlbsim status``: parsing a fabricated /proc and /sys tree, reading as nobody, and the
live machine while a kernel backend session holds a pool, a mount and cgroups."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from rich.console import Console
from test_explain import LOCK_WAIT, scenario

from hugetlbsim import cli
from hugetlbsim.backends.base import BackendUnavailable
from hugetlbsim.backends.kernel import KernelBackend, machine_unavailable
from hugetlbsim.views.status import Status, collect, render

NOBODY = 65534
MB2 = 2 << 20


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def cgroup_files(directory: Path, usage: int, limit: int | None, failcnt: int = 0) -> None:
    """hugetlb.2MB.* files of a cgroup v1 directory (usage, limit in pages)."""
    values = {"usage_in_bytes": usage * MB2, "max_usage_in_bytes": usage * MB2,
              "limit_in_bytes": 9223372036854771712 if limit is None else limit * MB2,
              "failcnt": failcnt, "rsvd.usage_in_bytes": 2 * usage * MB2,
              "rsvd.max_usage_in_bytes": 2 * usage * MB2,
              "rsvd.limit_in_bytes": 9223372036854771712, "rsvd.failcnt": 0}
    for suffix, value in values.items():
        write(directory / f"hugetlb.2MB.{suffix}", f"{value}\n")
    write(directory / "hugetlb.1GB.usage_in_bytes", "0\n")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A fabricated machine: 2M pool with surplus and overcommit, a zero 1G pool, two
    hugetlbfs mounts (one with a space in its path) and a hugetlb hierarchy mounted twice."""
    for size, values in (("2048", (6, 3, 2, 1, 2)), ("1048576", (0, 0, 0, 0, 0))):
        for name, value in zip(("nr_hugepages", "free_hugepages", "resv_hugepages",
                                "surplus_hugepages", "nr_overcommit_hugepages"), values,
                               strict=True):
            write(tmp_path / f"sys/kernel/mm/hugepages/hugepages-{size}kB/{name}", f"{value}\n")
    write(tmp_path / "proc/meminfo", "MemTotal: 1 kB\nHugePages_Total:       6\n"
                                     "Hugepagesize:       2048 kB\n")
    write(tmp_path / "proc/sys/vm/nr_hugepages", "5\n")
    write(tmp_path / "proc/mounts", "\n".join([
        "proc /proc proc rw 0 0",
        "none /mnt/huge hugetlbfs rw,relatime,pagesize=2M,size=8388608,min_size=4194304 0 0",
        r"none /mnt/big\040one hugetlbfs rw,relatime,pagesize=1024M 0 0",
        "cgroup /cg cgroup rw,relatime,hugetlb 0 0",
        "cgroup /cg cgroup rw,relatime,hugetlb 0 0",
        "cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0",
    ]) + "\n")
    (tmp_path / "mnt/huge").mkdir(parents=True)
    (tmp_path / "mnt/big one").mkdir()
    cgroup_files(tmp_path / "cg", usage=3, limit=None)
    cgroup_files(tmp_path / "cg/a", usage=3, limit=4, failcnt=2)
    cgroup_files(tmp_path / "cg/a/idle", usage=0, limit=None)
    return tmp_path


def text(status: Status) -> str:
    out = io.StringIO()
    Console(file=out, width=200).print(render(status))
    return out.getvalue()


def test_pools(tree: Path) -> None:
    status = collect(tree)
    two, one = status.pools
    assert (two.size_kb, two.default, two.target) == (2048, True, 5)
    assert two.counters == {"total": 6, "free": 3, "rsvd": 2, "surp": 1, "overcommit": 2}
    assert (one.size_kb, one.default, one.target) == (1048576, False, None)
    row = next(line for line in text(status).splitlines() if "2M (default)" in line)
    assert [c.strip() for c in row.split("│")[1:-1]] == [
        "2M (default)", "6", "3", "2", "1", "1", "5", "5", "2", "7"]


def test_mounts(tree: Path) -> None:
    huge, big = collect(tree).mounts
    assert (huge.point, huge.pagesize_kb, huge.size, huge.min_size) == ("/mnt/huge", 2048, 4, 2)
    assert huge.free == os.statvfs(tree / "mnt/huge").f_bfree and huge.error is None
    assert (big.point, big.pagesize_kb, big.size, big.min_size, big.free) == (
        "/mnt/big one", 1048576, None, None, None)
    assert "/mnt/big one" in text(collect(tree))


def test_cgroups(tree: Path) -> None:
    (hierarchy,) = collect(tree).hierarchies
    assert hierarchy.point == "/cg" and hierarchy.also == ["/cg"] and hierarchy.error is None
    assert [c.path for c in hierarchy.cgroups] == ["/", "/a", "/a/idle"]
    a = hierarchy.cgroups[1].counters["2MB"]
    assert a == {"usage": 3, "limit": 4, "rsvd": 6, "rsvd_limit": None, "max_usage": 3,
                 "rsvd_max_usage": 6, "failcnt": 2, "rsvd_failcnt": 0}
    assert hierarchy.cgroups[0].counters["1GB"] == {"usage": 0}
    shown = text(collect(tree))
    assert "/a/idle" not in shown, "an all-zero unlimited cgroup is left out"
    line = next(ln for ln in shown.splitlines() if "│ /a " in ln)
    assert [c.strip() for c in line.split("│")[1:-1]] == ["/a", "2M", "3", "4", "6", "max",
                                                           "3", "6", "2", "0"]


def test_nothing_mounted(tmp_path: Path) -> None:
    status = collect(tmp_path)
    assert status == Status([], [], [], os.geteuid())
    shown = text(status)
    assert "no hugetlbfs mounts" in shown and "no cgroup v1 hierarchy" in shown


def test_status_command_json() -> None:
    result = CliRunner().invoke(cli.main, ["status", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {p["size_kb"] for p in data["pools"]} == {
        int(d.removeprefix("hugepages-").removesuffix("kB"))
        for d in os.listdir("/sys/kernel/mm/hugepages")}
    assert CliRunner().invoke(cli.main, ["status"]).exit_code == 0


def as_nobody(root: str = "/") -> dict[str, Any]:
    """`collect` in a forked child running as uid/gid nobody; its status as JSON data."""
    if os.geteuid() != 0:
        pytest.skip("switching to nobody needs root")
    read, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            data = json.dumps(collect(root).to_json()).encode()
            while data:
                data = data[os.write(write_end, data):]
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, "collect failed as nobody"
    result: dict[str, Any] = json.loads(data)
    return result


def test_live_as_nobody() -> None:
    data = as_nobody()
    assert data["uid"] == NOBODY
    assert [p["size_kb"] for p in data["pools"]] == [p.size_kb for p in collect().pools]
    assert all(v is not None for p in data["pools"] for v in p["counters"].values())


@pytest.fixture
def open_tree(tree: Path) -> Iterator[Path]:
    """The fabricated tree copied where nobody can walk, with a private mount point and a
    private cgroup below the hierarchy root."""
    top = Path(tempfile.mkdtemp(prefix="hugetlbsim-status-test-"))
    try:
        shutil.copytree(tree, top, dirs_exist_ok=True)
        for path in [top, *top.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        (top / "mnt").chmod(0o700)
        (top / "cg/a").chmod(0o700)
        yield top
    finally:
        shutil.rmtree(top)


def test_unreadable_parts_as_nobody(open_tree: Path) -> None:
    data = as_nobody(str(open_tree))
    huge = data["mounts"][0]
    assert huge["free"] is None and "statfs" in huge["error"]
    (hierarchy,) = data["hierarchies"]
    assert hierarchy["error"] and [c["path"] for c in hierarchy["cgroups"]] == ["/"]
    assert data["pools"][0]["counters"]["total"] == 6


@pytest.mark.kernel
def test_live_session() -> None:
    """A kernel session's pool, mount and cgroups, as status reads them (also as nobody)."""
    reason = machine_unavailable()
    if reason is not None:
        pytest.skip(reason)
    setup = scenario("""
        pool: {pages: 4, overcommit: 2}
        steps:
          - mount: {name: hp, size: 4, min_size: 2}
          - cgroup: {name: a, limit: 3}
          - spawn: {proc: p, cgroup: a}
          - create: {file: hp/f, size: 4}
          - mmap: {proc: p, map: m, file: hp/f, length: 3}
          - touch: {proc: p, map: m, page: 0}
          - mmap: {proc: p, map: n, anon: true, length: 1, noreserve: true}
          - pool: {pages: 0}
        """)
    try:
        session = KernelBackend(lock_timeout=LOCK_WAIT).open(setup)
    except BackendUnavailable as exc:
        pytest.skip(f"kernel backend unavailable: {exc}")
    try:
        assert [session.apply(s.op, s.args) for s in setup.steps] == ["ok"] * len(setup.steps)
        state = session.state()
        status = collect()
        nobody = as_nobody()
    finally:
        session.close()
    (pool,) = [p for p in status.pools if p.size_kb == 2048]
    assert pool.counters == {k: state[k] for k in ("total", "free", "rsvd", "surp")} | {
        "overcommit": 2}
    assert pool.target == state["nr_hugepages"] and pool.counters["surp"] > 0
    (mount,) = [m for m in status.mounts if "/hugetlbsim-" in m.point]
    assert (mount.pagesize_kb, mount.size, mount.min_size, mount.error) == (2048, 4, 2, None)
    assert mount.free == state["mounts"]["hp"]["free"]
    (hierarchy,) = [h for h in status.hierarchies
                    if any("/hugetlbsim-" in p for p in [h.point, *h.also])]
    by_name = {c.path.rpartition("/")[2]: c.counters["2MB"] for c in hierarchy.cgroups}
    ours = next(c.path for c in hierarchy.cgroups if c.path.startswith("/hugetlbsim-"))
    expected = state["cgroups"]
    assert by_name["a"] == expected["a"]
    assert by_name[ours.lstrip("/")] == expected["root"]
    (nobody_mount,) = [m for m in nobody["mounts"] if "/hugetlbsim-" in m["point"]]
    assert nobody_mount["error"] and nobody_mount["free"] is None
    assert nobody["pools"] == [dataclasses.asdict(p) for p in status.pools]
