"""Worker processes: the scenario's processes, made real.

Each scenario process is a real Linux process that performs the system calls which charge a
task (mmap, faults, fallocate, shmget...), so the kernel charges its cgroup and treats it as the
owner of its private reservations.  The controller talks to a worker over a SOCK_SEQPACKET
socket pair, one JSON request and one JSON reply at a time.

`spawn` forks a worker from the controller and immediately closes every inherited descriptor
(the controller's file handles must not keep inodes alive).  The scenario's ``fork`` is a real
fork(2) of the worker, so the child inherits its mappings exactly as the kernel copies them: the
controller passes a fresh socket end with the request and the child keeps it.  A worker ends
with os._exit only (never the controller's cleanup) and exits by itself when its socket reaches
EOF, i.e. when the controller dies.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import socket
import traceback
from typing import Any

from hugetlbsim.backends import kernel_sys as ks

__all__ = ["Worker", "WorkerGone", "handle"]


class WorkerGone(RuntimeError):
    """A worker process disappeared while the controller expected a reply."""


def _open(path: str) -> int:
    return os.open(path, os.O_RDWR)


def handle(req: dict[str, Any]) -> dict[str, Any]:
    """Run one request in this process; return the reply (``r`` is the kernel's answer)."""
    op = req["op"]
    if op in ("mmap", "ftruncate", "fallocate"):
        fd = -1
        if req.get("path") is not None:
            try:
                fd = _open(req["path"])
            except OSError as e:
                return {"r": ks.errname(e.errno or 0)}
        try:
            if op == "mmap":
                r, addr = ks.mmap(req["length"], req["prot"], req["flags"], fd, req["offset"])
                return {"r": r, "addr": addr}
            if op == "ftruncate":
                return {"r": ks.ftruncate(fd, req["size"])}
            return {"r": ks.fallocate(fd, req["mode"], req["offset"], req["length"])}
        finally:
            if fd >= 0:
                os.close(fd)
    if op == "shmat":
        r, addr = ks.shmat(req["id"], req["flags"])
        return {"r": r, "addr": addr}
    if op == "shmget":
        r, shmid = ks.shmget(req["size"], req["flags"])
        return {"r": r, "id": shmid}
    if op == "mem":
        for addr, length in req["ranges"]:
            if req["call"] == "munmap":
                r = ks.munmap(addr, length)
            elif req["call"] == "mprotect":
                r = ks.mprotect(addr, length, req["arg"])
            else:
                r = ks.madvise(addr, length, req["arg"])
            if r != "ok":
                return {"r": r}
        return {"r": "ok"}
    if op == "touch":
        # One page at a time from ``addr`` (a range, not a list: a list of a long mapping's
        # pages would not fit one message).
        for i in range(req["count"]):
            r = ks.madvise(req["addr"] + i * ks.PAGE_2M, ks.PAGE_2M, req["advice"])
            if r != "ok":
                return {"r": r, "done": i}
        return {"r": "ok", "done": req["count"]}
    raise ValueError(f"unknown worker request {op!r}")


def _serve(sock: socket.socket) -> None:
    """The worker's loop: one request, one reply, until `exit` or EOF."""
    while True:
        msg, fds, _, _ = socket.recv_fds(sock, 1 << 16, 1)
        if not msg:
            os._exit(0)
        req = json.loads(msg)
        if req["op"] == "exit":
            os._exit(0)
        if req["op"] == "fork":
            child_sock = socket.socket(fileno=fds[0])
            try:
                pid = os.fork()
            except OSError as e:
                child_sock.close()
                sock.send(json.dumps({"r": ks.errname(e.errno or 0)}).encode())
                continue
            if pid == 0:
                sock.close()
                sock = child_sock
                continue
            child_sock.close()
            reply: dict[str, Any] = {"r": "ok", "pid": pid}
        else:
            try:
                reply = handle(req)
            except Exception:
                reply = {"error": traceback.format_exc()}
        sock.send(json.dumps(reply).encode())


def _become_worker(sock: socket.socket) -> None:
    """In a child just forked from the controller: shed its state, then serve requests."""
    keep = sock.fileno()
    devnull = os.open(os.devnull, os.O_RDWR)
    for std in (0, 1, 2):
        os.dup2(devnull, std)
    os.closerange(3, keep)
    os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX"))
    gc.disable()  # never finalize the controller's objects (their fds are closed or reused)
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the controller's business
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # forked children are reaped by the kernel
    sock.send(json.dumps({"r": "ready"}).encode())
    _serve(sock)


class Worker:
    """The controller's handle on one worker process."""

    def __init__(self, pid: int, sock: socket.socket, direct: bool) -> None:
        self.pid = pid
        self.sock = sock
        self.direct = direct
        """A child of the controller (spawned), so the controller must reap it."""
        self.pidfd = os.pidfd_open(pid)
        self.start = ks.start_time(pid)

    @classmethod
    def spawn(cls) -> Worker:
        """Fork a fresh worker from the controller (it starts in the controller's cgroup)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            try:
                _become_worker(theirs)
            finally:
                os._exit(70)
        theirs.close()
        worker = cls(pid, ours, direct=True)
        # Until the child has closed the descriptors it inherited, it holds the controller's
        # files open: a `close` right after `spawn` would not free an unlinked file (fuzz
        # seed 524, once in 5000 runs).
        if worker._reply().get("r") != "ready":
            raise WorkerGone(f"worker {pid} did not start")
        return worker

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        """Send one request and wait for its reply."""
        self._send({"op": op, **args})
        return self._reply()

    def fork(self) -> tuple[str, Worker | None]:
        """fork(2) this worker: the child inherits every mapping and the cgroup."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._send({"op": "fork"}, theirs.fileno())
        finally:
            theirs.close()
        reply = self._reply()
        if reply["r"] != "ok":
            ours.close()
            return reply["r"], None
        return "ok", Worker(reply["pid"], ours, direct=False)

    def exit(self) -> None:
        """Let the worker exit and wait until it is gone, so its mappings are torn down."""
        with contextlib.suppress(WorkerGone):
            self._send({"op": "exit"})
        self._finish(ks.wait_exit(self.pidfd))

    def kill(self) -> None:
        """SIGKILL the worker and wait until it is gone."""
        self._finish(ks.kill_and_wait(self.pidfd))

    def _finish(self, gone: bool) -> None:
        if not gone:
            raise WorkerGone(f"worker {self.pid} did not exit")
        if self.direct:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
        self.sock.close()
        os.close(self.pidfd)

    def _send(self, req: dict[str, Any], fd: int | None = None) -> None:
        data = json.dumps(req).encode()
        try:
            if fd is None:
                self.sock.send(data)
            else:
                socket.send_fds(self.sock, [data], [fd])
        except OSError as e:
            raise WorkerGone(f"worker {self.pid} is gone ({e})") from e

    def _reply(self) -> dict[str, Any]:
        data = self.sock.recv(1 << 16)
        if not data:
            raise WorkerGone(f"worker {self.pid} died")
        reply: dict[str, Any] = json.loads(data)
        if "error" in reply:
            raise RuntimeError(f"worker {self.pid} failed:\n{reply['error']}")
        return reply
