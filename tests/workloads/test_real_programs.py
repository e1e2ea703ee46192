"""The recipes against the real programs on the live kernel (pytest -m kernel).

Each test writes the composition that describes what it is about to run, runs it on the
model, then runs the real program (Debian's PostgreSQL 15, QEMU 7.2, DPDK 22.11) inside a
private hugetlb cgroup with a pool of at most 64 pages (`live.Live`, holding the machine-wide
lock), reads HugePages_* and the cgroup counters at the points the recipe has phases (start,
use, stop) and compares.  Where a piece is missing the test is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from live import Live, unavailable

from hugetlbsim.backends.base import BackendUnavailable
from hugetlbsim.workloads import expand, load_composition_text, plan, simulate

REASON = unavailable()
pytestmark = [pytest.mark.kernel, pytest.mark.skipif(REASON is not None, reason=str(REASON))]

PG_BIN = Path("/usr/lib/postgresql/15/bin")
QEMU = shutil.which("qemu-system-x86_64")
POOL = 64


@pytest.fixture
def live() -> Iterator[Live]:
    try:
        machine = Live(POOL)
    except BackendUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield machine
    finally:
        machine.close()


def model_phases(text: str) -> dict[str, dict[str, int]]:
    """The model's counters at the end of each phase of the composition."""
    exp = expand(load_composition_text(text))
    sim = simulate(exp, keep_states=True)
    out: dict[str, dict[str, int]] = {}
    for note, state in zip(exp.notes, sim.states, strict=True):
        cg = state["cgroups"].get("pod-p", {})
        out[note.phase] = {"total": state["total"], "free": state["free"],
                           "rsvd": state["rsvd"], "usage": cg.get("usage", 0),
                           "cg_rsvd": cg.get("rsvd", 0)}
    return out


def same(real: dict[str, Any], model: dict[str, int], keys: tuple[str, ...] = (
        "total", "free", "rsvd", "usage", "cg_rsvd")) -> None:
    assert {k: real[k] for k in keys} == {k: model[k] for k in keys}


def composition(program: str, runtime: str = "crun", limit: str = "128MiB",
                pool: int = POOL, stop: bool = True) -> str:
    return (f"workload: 1\nname: live\npool: {pool}\nstop: {str(stop).lower()}\n"
            f"pods:\n  - name: p\n    runtime: {runtime}\n    hugepages: {{2Mi: {limit}}}\n"
            f"    programs:\n      - {program}\n")


# -- PostgreSQL ---------------------------------------------------------------------------------

class Postgres:
    """A throw-away PostgreSQL 15 cluster owned by the postgres user."""

    def __init__(self, live: Live, huge_pages: str = "on") -> None:
        if not (PG_BIN / "postgres").exists() or shutil.which("runuser") is None:
            pytest.skip("PostgreSQL 15 is not installed (apt-get install postgresql)")
        self.live = live
        self.dir = live.tempdir("postgres")
        self.data = os.path.join(self.dir, "data")
        # initdb before the pool exists matters not: bootstrap runs with huge_pages=try
        self.pg(["initdb", "-D", self.data, "--no-sync", "-A", "trust"])
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write(f"huge_pages = {huge_pages}\nshared_buffers = 32MB\nmax_connections = 10\n"
                    f"listen_addresses = ''\nunix_socket_directories = '{self.dir}'\n"
                    "port = 5499\n")

    def pg(self, args: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / args[0]),
                               *args[1:]], capture_output=True, text=True, check=check,
                              timeout=120)

    def shared_memory_pages(self) -> int:
        out = self.pg(["postgres", "-D", self.data, "-C", "shared_memory_size_in_huge_pages"])
        return int(out.stdout.strip())

    def start(self) -> int:
        cmd = (f"runuser -u postgres -- {PG_BIN}/pg_ctl -D {self.data} -w -t 30 "
               f"-l {self.dir}/log start")
        done = subprocess.run(self.live.in_cgroup(cmd), capture_output=True, text=True,
                              timeout=120)
        time.sleep(0.5)
        return done.returncode

    def log(self) -> str:
        return Path(self.dir, "log").read_text(errors="replace")

    def sql(self, query: str) -> str:
        return self.pg(["psql", "-h", self.dir, "-p", "5499", "-d", "postgres", "-Atc",
                        query]).stdout

    def stop(self) -> None:
        self.pg(["pg_ctl", "-D", self.data, "-w", "-m", "fast", "stop"], check=False)
        time.sleep(0.3)


def test_postgres_start_use_stop_match_the_recipe(live: Live) -> None:
    pg = Postgres(live)
    n = pg.shared_memory_pages()
    program = (f"postgres: {{shared_memory: {2 * n}MiB, shared_buffers: 32MiB, "
               f"huge_pages: 'on', in_use: 16MiB, backends: 1}}")
    model = model_phases(composition(program))
    live.set_limits(64, None)
    assert pg.start() == 0, pg.log()
    start = live.state()
    same(start, model["start"])                  # reserved n at mmap, startup pages faulted
    assert start["cg_rsvd"] == n
    # a backend loads about 16 MB into shared buffers (INSERT, not a bulk-write ring)
    pg.sql("create table t(a int, b text); insert into t select g, repeat('x', 500) "
           "from generate_series(1, 30000) g")
    use = live.state()
    same(use, model["use"], ("total", "cg_rsvd"))
    assert abs(use["usage"] - model["use"]["usage"]) <= 1, (use, model["use"])
    assert use["rsvd"] + use["usage"] == n       # what is not faulted stays reserved
    pg.stop()
    same(live.state(), model["stop"])            # everything goes with the last process


def test_postgres_runc_limit_fails_at_mmap_crun_limit_kills(live: Live) -> None:
    """The same limit under runc (rsvd.max too) and crun (max only): ENOMEM vs SIGBUS."""
    pg = Postgres(live)
    n = pg.shared_memory_pages()
    limit = 2                                    # below the pages faulted at start
    for runtime, rsvd_limit in (("runc", limit), ("crun", None)):
        program = (f"postgres: {{shared_memory: {2 * n}MiB, shared_buffers: 32MiB, "
                   "huge_pages: 'on'}")
        predicted = plan(load_composition_text(
            composition(program, runtime, f"{2 * limit}MiB"))).kernels[0].given.failures[0]
        live.set_limits(limit, rsvd_limit)
        code = pg.start()
        log = pg.log()
        assert code != 0
        if runtime == "runc":
            assert (predicted.stage, predicted.result) == ("mmap", "ENOMEM")
            assert "could not map anonymous shared memory" in log
        else:
            assert (predicted.stage, predicted.result) == ("fault", "SIGBUS")
            assert "could not map" not in log
            assert live.state()["failcnt"] >= 1
        time.sleep(0.5)
        assert live.procs() == [] and live.state()["usage"] == 0
        live.set_limits(None, None)
        Path(pg.dir, "log").unlink()


def test_postgres_try_on_a_small_pool_falls_back(live: Live) -> None:
    pg = Postgres(live, huge_pages="try")
    n = pg.shared_memory_pages()
    live.set_pool(8)
    program = f"postgres: {{shared_memory: {2 * n}MiB, shared_buffers: 32MiB, huge_pages: try}}"
    first = plan(load_composition_text(composition(program, pool=8))).kernels[0].given
    assert first.failures[0].note.on_fail == "falls-back"
    assert pg.start() == 0, pg.log()
    assert pg.sql("select 1").strip() == "1"      # running, on normal pages (PG 15 has no
    state = live.state()                          # huge_pages_status: counters say it)
    assert (state["rsvd"], state["usage"], state["cg_rsvd"]) == (0, 0, 0)
    pg.stop()


# -- QEMU ---------------------------------------------------------------------------------------

QEMU_CASES = {
    "share=on": "qemu: {memory: 64MiB, share: on, in_use: 0}",
    "share=on,prealloc=on": "qemu: {memory: 64MiB, share: on, prealloc: on, in_use: 0}",
    "share=on,reserve=off": "qemu: {memory: 64MiB, share: on, reserve: off, in_use: 0}",
    "share=off": "qemu: {memory: 64MiB, share: off, in_use: 0}",
    "share=off,prealloc=on": "qemu: {memory: 64MiB, share: off, prealloc: on, in_use: 0}",
    "memfd:share=on": "qemu: {memory: 64MiB, backend: memfd, in_use: 0}",
    "memfd:share=on,prealloc=on": "qemu: {memory: 64MiB, backend: memfd, prealloc: on, "
                                  "in_use: 0}",
}


def qemu_command(live: Live, opts: str) -> str:
    if opts.startswith("memfd:"):
        backend = f"memory-backend-memfd,id=m,size=64M,hugetlb=on,{opts[6:]}"
    else:
        backend = f"memory-backend-file,id=m,size=64M,mem-path={live.mount},{opts}"
    # -S: paused before the first instruction, so only QEMU itself touches guest RAM
    return (f"{QEMU} -accel tcg -m 64M -object {backend} -machine pc,memory-backend=m "
            "-S -nodefaults -display none -monitor none -serial none")


def wait_steady(live: Live, proc: subprocess.Popen[str], seconds: float = 20,
                busy: bool = False) -> None:
    """Until the counters stop moving (with ``busy``: once they have moved at all)."""
    deadline, last = time.monotonic() + seconds, None
    while time.monotonic() < deadline and proc.poll() is None:
        now = live.state()
        if now == last and (not busy or now["cg_rsvd"] or now["usage"]):
            return
        last = now
        time.sleep(0.7)


@pytest.mark.parametrize("opts", list(QEMU_CASES))
def test_qemu_guest_ram_matches_the_recipe(live: Live, opts: str) -> None:
    if QEMU is None:
        pytest.skip("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
    model = model_phases(composition(QEMU_CASES[opts]))
    proc = live.spawn(qemu_command(live, opts), stderr=subprocess.PIPE)
    try:
        wait_steady(live, proc)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        same(live.state(), model["start"])
    finally:
        proc.kill()
        proc.wait()
    time.sleep(0.3)
    same(live.state(), model["stop"])


def test_qemu_prealloc_over_a_fault_limit_exits_with_an_error(live: Live) -> None:
    if QEMU is None:
        pytest.skip("qemu-system-x86_64 is not installed")
    text = composition(QEMU_CASES["share=on,prealloc=on"], "crun", "32MiB")
    first = plan(load_composition_text(text)).kernels[0].given.failures[0]
    assert (first.stage, first.result, first.note.on_fail) == ("fault", "SIGBUS", "exits")
    live.set_limits(16, None)
    proc = live.spawn(qemu_command(live, "share=on,prealloc=on"), stderr=subprocess.PIPE)
    code = proc.wait(timeout=60)
    err = proc.stderr.read() if proc.stderr else ""
    assert code > 0, (code, err)                 # an exit status, not a signal
    assert "prealloc" in err.lower()
    state = live.state()
    assert (state["usage"], state["cg_rsvd"], state["rsvd"]) == (0, 0, 0)


# -- DPDK ---------------------------------------------------------------------------------------

DPDK_CASES = {
    "file-per-page": ("dpdk: {memory: 32MiB}", ""),
    "file-per-page,huge-unlink": ("dpdk: {memory: 32MiB, huge_unlink: on}", "--huge-unlink"),
    "single-file": ("dpdk: {memory: 32MiB, mode: single-file}", "--single-file-segments"),
    "in-memory": ("dpdk: {memory: 32MiB, mode: in-memory}", "--in-memory"),
}


@pytest.mark.parametrize("case", list(DPDK_CASES))
def test_dpdk_eal_memory_matches_the_recipe(live: Live, case: str) -> None:
    testpmd = shutil.which("dpdk-testpmd")
    if testpmd is None:
        pytest.skip("dpdk-testpmd is not installed (apt-get install dpdk-dev)")
    program, flag = DPDK_CASES[case]
    model = model_phases(composition(program))
    cmd = (f"{testpmd} -l 0-1 -m 32 --no-pci --vdev net_null0 --huge-dir {live.mount} "
           f"--file-prefix hugetlbsim {flag} -- -i --total-num-mbufs=2048")
    proc = live.spawn(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                      stderr=subprocess.STDOUT)
    try:
        wait_steady(live, proc, 30, busy=True)
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.skip(f"dpdk-testpmd did not start here: {out[-300:]}")
        real = live.state()
        print(f"\n{case}: real {real}, recipe {model['start']}")
        # -m 32 preallocated, each page faulted at once; the small mbuf pool fits in it
        same(real, model["start"])
    finally:
        if proc.poll() is None and proc.stdin is not None:
            proc.stdin.write("quit\n")
            proc.stdin.flush()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    time.sleep(0.3)
    after = live.state()
    print(f"{case} after exit: real {after}, recipe {model['stop']}")
    # rtemap files outlive the process unless unlinked (the next EAL start clears them)
    same(after, model["stop"])
