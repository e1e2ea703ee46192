"""Booting guests: qemu (TCG) runs a batch of scenarios and the host collects their results.

One boot runs as much of the batch as it can: the guest (see `guest`) sends a checksummed
frame per scenario on its second serial port, which qemu writes to a file the host reads as
it grows.  A boot ends when the guest powers off after its batch or after a scenario that left
the pool broken, when qemu dies, when a frame is bad, or when the guest is silent past its
deadline (then qemu is killed).  Whatever scenario was running is reported (`Outcome` with an
error kind) and the rest of the batch goes on in a fresh guest.

Only one guest runs at a time on a host (a lock under the cache directory): TCG guests in
parallel do not help on a 2-core machine.  Nothing is left behind: the per-boot temporary
directory and qemu go at the end of each boot, on an exception, on Ctrl-C and on SIGTERM;
qemu dies with its parent (PR_SET_PDEATHSIG) if the host process is killed, and a later run
removes temporary directories whose owner is dead.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hugetlbsim.backends.base import BackendFailed
from hugetlbsim.backends.vm.cache import CachedKernel
from hugetlbsim.backends.vm.frames import Frame, FrameError, FrameParser
from hugetlbsim.backends.vm.initramfs import with_batch

__all__ = [
    "BootError",
    "BootOptions",
    "BootStats",
    "Outcome",
    "OutcomeKind",
    "clean_leftovers",
    "qemu_command",
    "run_batch",
]

TMP_PREFIX = "hugetlbsim.vm-"
LOCK_NAME = "vm.lock"

OutcomeKind = Literal["trace", "unavailable", "error", "timeout", "crash", "protocol"]


class BootError(BackendFailed):
    """A guest did not come up at all (twice in a row): nothing of the batch ran."""


@dataclass(frozen=True)
class BootOptions:
    """How guests are booted and how long they may take."""

    memory_mb: int = 1024
    numa: int = 1
    """NUMA nodes of the guest: its memory (and its pool) split evenly between them."""
    max_pages: int = 64
    """The guest's `KernelBackend` refuses scenarios whose pool could exceed this."""
    boot_timeout: float = 180.0
    """Seconds from starting qemu to the guest's hello."""
    scenario_timeout: float = 60.0
    """Seconds a scenario may take, plus `step_timeout` per step."""
    step_timeout: float = 2.0
    lock_timeout: float = 3600.0
    """Seconds to wait for another guest on this host to finish."""
    cmdline: str = "console=ttyS0 loglevel=4 panic=-1 rdinit=/init"
    qemu: str = "qemu-system-x86_64"


@dataclass
class Outcome:
    """What became of one scenario of the batch."""

    index: int
    kind: OutcomeKind
    uname: str = ""
    steps: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    """(op, result, state) per step, for a ``trace``."""
    message: str = ""
    """Why it failed; for a trace that broke the pool, what was wrong (the trace stands)."""
    broken: str | None = None
    """The pool was not idle after this scenario: its guest was not used further."""
    timing: dict[str, float] = field(default_factory=dict)


@dataclass
class BootStats:
    """Timings of one boot, for `bench/vm.py`."""

    uname: str = ""
    scenarios: int = 0
    steps: int = 0
    hello_s: float = 0.0
    """Wall seconds from starting qemu to the guest's hello (kernel boot + Python start)."""
    guest_uptime_at_hello: float = 0.0
    total_s: float = 0.0
    """Wall seconds from starting qemu until it has exited."""
    step_s: float = 0.0
    """Guest seconds spent in steps (apply + state), summed over scenarios."""


def _pdeathsig() -> None:  # pragma: no cover - runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def qemu_command(kernel: CachedKernel, initrd: Path, console: Path, results: Path,
                 opts: BootOptions) -> list[str]:
    """The qemu command line of one boot (TCG, PVH entry, two serial ports, no devices)."""
    return [opts.qemu, "-accel", "tcg", "-cpu", "max", "-m", str(opts.memory_mb),
            "-smp", str(max(1, opts.numa)), *numa_args(opts),
            "-nodefaults", "-display", "none", "-no-reboot", "-monitor", "none",
            "-kernel", str(kernel.vmlinux), "-initrd", str(initrd), "-append", opts.cmdline,
            "-serial", f"file:{console}", "-serial", f"file:{results}"]


def numa_args(opts: BootOptions) -> list[str]:
    """qemu options for a guest of ``opts.numa`` nodes (one memory backend and one CPU each);
    none for a single node."""
    if opts.numa <= 1:
        return []
    size = opts.memory_mb // opts.numa
    args: list[str] = []
    for node in range(opts.numa):
        args += ["-object", f"memory-backend-ram,id=mem{node},size={size}M",
                 "-numa", f"node,nodeid={node},cpus={node},memdev=mem{node}"]
    return args


def clean_leftovers(tmpdir: str | None = None) -> None:
    """Remove the boot directories of host processes that are gone."""
    base = Path(tmpdir or tempfile.gettempdir())
    for d in base.glob(TMP_PREFIX + "*"):
        pid = d.name[len(TMP_PREFIX):].partition("-")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists() and d.is_dir():
            shutil.rmtree(d, ignore_errors=True)


@contextlib.contextmanager
def _host_lock(cache: Path, timeout: float) -> Any:
    cache.mkdir(parents=True, exist_ok=True)
    fd = os.open(cache / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise BootError(f"another hugetlbsim guest kept running for {timeout:.0f}"
                                    f" s (lock {cache / LOCK_NAME})") from None
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)


def _sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def _sigterm_exits() -> Any:
    """SIGTERM raises SystemExit while guests run, so qemu and the boot directory go (only in
    the main thread, and only where nobody else handles SIGTERM)."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL):
        yield
        return
    signal.signal(signal.SIGTERM, _sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no console output)"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class _Boot:
    """The state of one boot while its frames arrive."""

    pending: list[int]
    """Global indexes of the scenarios this boot was given, in order."""
    uname: str = ""
    current: int | None = None
    done: list[Outcome] = field(default_factory=list)
    ended: bool = False
    broken: bool = False

    def next_index(self) -> int | None:
        finished = {o.index for o in self.done}
        if self.current is not None:
            return self.current
        return next((i for i in self.pending if i not in finished), None)


def _timeout_for(n_steps: int, opts: BootOptions) -> float:
    return opts.scenario_timeout + opts.step_timeout * n_steps


def _apply(frame: Frame, boot: _Boot) -> None:
    b = frame.body
    if frame.kind == "hello":
        boot.uname = str(b["uname"])
    elif frame.kind == "begin":
        boot.current = int(b["i"])
    elif frame.kind == "trace":
        steps = [(str(op), str(result), state) for op, result, state in b["steps"]]
        boot.done.append(Outcome(int(b["i"]), "trace", boot.uname, steps,
                                 message=b.get("not_clean") or "",
                                 timing={k: float(v) for k, v in b["timing"].items()}))
        boot.current = None
    elif frame.kind == "error":
        kind: OutcomeKind = "unavailable" if b.get("kind") == "unavailable" else "error"
        boot.done.append(Outcome(int(b["i"]), kind, boot.uname, message=str(b["message"])))
        boot.current = None
    elif frame.kind == "broken":
        boot.broken = True
        for o in boot.done:
            if o.index == int(b["i"]):
                o.broken = str(b["why"])
    elif frame.kind == "end":
        boot.ended = True


def _one_boot(kernel: CachedKernel, base: bytes, items: Sequence[dict[str, Any]],
              opts: BootOptions, stats: BootStats) -> _Boot:
    """Boot once with these scenarios; return what came back (never raises for a guest
    that misbehaves: the affected scenario gets an error outcome)."""
    boot = _Boot([int(item["i"]) for item in items])
    steps_of = {int(item["i"]): len(item["steps"]) for item in items}
    with tempfile.TemporaryDirectory(prefix=f"{TMP_PREFIX}{os.getpid()}-") as tmp:
        d = Path(tmp)
        initrd, console, results = d / "initrd.img", d / "console.log", d / "results.bin"
        initrd.write_bytes(with_batch(base, {"max_pages": opts.max_pages,
                                             "scenarios": list(items)}))
        results.touch()
        cmd = qemu_command(kernel, initrd, console, results, opts)
        with open(d / "qemu.log", "wb") as qlog:
            start = time.monotonic()
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=qlog,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=_pdeathsig)
        try:
            _watch(proc, results, console, d / "qemu.log", boot, opts, steps_of, start, stats)
        finally:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            stats.total_s += time.monotonic() - start
    return boot


def _watch(proc: subprocess.Popen[bytes], results: Path, console: Path, qemu_log: Path,
           boot: _Boot, opts: BootOptions, steps_of: dict[int, int], start: float,
           stats: BootStats) -> None:
    parser = FrameParser()
    deadline = start + opts.boot_timeout

    def fail(kind: OutcomeKind, why: str) -> None:
        index = boot.next_index()
        if index is None:
            return
        detail = f"{why}\n--- guest console (last lines) ---\n{_tail(console)}"
        if not boot.uname:
            detail += f"\n--- qemu ---\n{_tail(qemu_log)}"
        boot.done.append(Outcome(index, kind, boot.uname, message=detail))
        boot.current = None

    with open(results, "rb") as f:
        while True:
            exited = proc.poll() is not None
            try:
                for frame in parser.feed(f.read()):
                    had_uname = bool(boot.uname)
                    _apply(frame, boot)
                    now = time.monotonic()
                    if frame.kind == "hello" and not had_uname:
                        stats.hello_s += now - start
                        stats.guest_uptime_at_hello += float(frame.body.get("uptime", 0.0))
                    if frame.kind == "begin":
                        deadline = now + _timeout_for(steps_of.get(boot.current or 0, 0), opts)
                    elif frame.kind in ("trace", "error"):
                        deadline = now + opts.scenario_timeout
                    elif frame.kind == "end":
                        deadline = now + 60.0  # only the power-off is left
                parser.check()
                if exited:
                    parser.finish()
            except FrameError as e:
                fail("protocol", f"bad record from the guest: {e}")
                return
            if exited:
                if not boot.ended and not boot.broken:
                    fail("crash", f"the guest stopped (qemu exit status {proc.returncode}) "
                                  "before finishing its batch")
                return
            if time.monotonic() > deadline:
                if not boot.ended:
                    what = ("did not come up" if not boot.uname else
                            "stopped answering")
                    fail("timeout", f"the guest {what} in time; killed")
                return
            time.sleep(0.05)


def run_batch(kernel: CachedKernel, initramfs: Path, items: Sequence[dict[str, Any]],
              opts: BootOptions, cache: Path,
              log: Callable[[str], None] = lambda s: None,
              stats: list[BootStats] | None = None) -> list[Outcome]:
    """Run the scenarios (`frames.scenario_to_wire` objects) in as few boots as possible;
    one outcome per item, in order."""
    if not items:
        return []
    clean_leftovers()
    base = initramfs.read_bytes()
    outcomes: dict[int, Outcome] = {}
    order = [int(item["i"]) for item in items]
    failed_boots = 0
    with _host_lock(cache, opts.lock_timeout), _sigterm_exits():
        while len(outcomes) < len(order):
            rest = [item for item in items if int(item["i"]) not in outcomes]
            log(f"booting {kernel.uname} for {len(rest)} scenario(s)")
            st = BootStats(uname=kernel.uname)
            boot = _one_boot(kernel, base, rest, opts, st)
            st.scenarios = len(boot.done)
            st.steps = sum(len(o.steps) for o in boot.done)
            st.step_s = sum(o.timing.get("steps", 0.0) for o in boot.done)
            if stats is not None:
                stats.append(st)
            if not boot.uname:
                failed_boots += 1
                if failed_boots >= 2:
                    why = boot.done[0].message if boot.done else "no output"
                    raise BootError(f"the {kernel.uname} guest did not come up twice: {why}")
                continue
            failed_boots = 0
            if boot.uname != kernel.uname:
                raise BootError(f"the guest runs {boot.uname}, not {kernel.uname}")
            for o in boot.done:
                outcomes[o.index] = o
            if not boot.done:
                # Up, but nothing came back and nothing was blamed: should not happen; do
                # not loop forever on it.
                outcomes[rest[0]["i"]] = Outcome(int(rest[0]["i"]), "crash", boot.uname,
                                                 message="the guest returned nothing")
    return [outcomes[i] for i in order]
