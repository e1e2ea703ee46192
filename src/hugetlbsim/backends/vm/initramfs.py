"""The guest's initramfs: the host's Python, busybox and this package, cached by content hash.

Debian's ``/usr/bin/python3.11`` links libpython statically, so the interpreter, the few
shared libraries ``ldd`` lists (for it and for the extension modules used) and the standard
library modules the guest really imports make a working Python.  Which modules those are is
asked of that interpreter itself: it imports `hugetlbsim.backends.vm.guest` from this source
tree and lists ``sys.modules``.  Each module ships with a ``.pyc`` compiled by the same
interpreter in unchecked-hash mode (no compiling at TCG speed, no mtime to check).  busybox
provides ``/init``'s shell, ``mount`` and ``reboot``.  The cpio (newc) archive is written here,
in Python, with fixed owners and times, so the same inputs give the same bytes; its name is
the hash of its inputs, under ``<cache>/initramfs/``.

A run's batch of scenarios travels in a second, small cpio (`batch_cpio`) appended to this one:
the kernel unpacks concatenated archives in order.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import stat
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hugetlbsim

__all__ = [
    "GUEST_MODULE",
    "GUEST_SRC",
    "Entry",
    "InitramfsError",
    "batch_cpio",
    "build_initramfs",
    "cpio_newc",
    "guest_python",
    "host_busybox",
    "shared_libs",
    "with_batch",
]

BUILDER_VERSION = "2"
"""Part of the cache key: bump when the layout or /init changes."""
GUEST_SRC = "/opt/hugetlbsim"
GUEST_MODULE = "hugetlbsim.backends.vm.guest"
BATCH_PATH = "/batch.json"
RESULT_PORT = "/dev/ttyS1"
EXCLUDED_EXTENSIONS = ("_hashlib", "_ssl")
"""OpenSSL bindings (libcrypto is 5 MB): hashlib falls back to its built-in sha256."""
KEEP_BUILDS = 4

INIT = f"""#!/bin/sh
export PATH=/bin
busybox mount -t proc proc /proc
busybox mount -t sysfs sysfs /sys
busybox mount -t devtmpfs devtmpfs /dev
busybox mount -t cgroup2 cgroup2 /sys/fs/cgroup
cd {GUEST_SRC}
/usr/bin/python3 -S -E -B -m {GUEST_MODULE} {BATCH_PATH} {RESULT_PORT}
echo "hugetlbsim guest: python exited with status $?"
busybox sync
busybox reboot -f
"""


class InitramfsError(RuntimeError):
    """The initramfs cannot be built on this host (no suitable Python or busybox)."""


@dataclass(frozen=True)
class Entry:
    """One cpio member: a path without leading slash, a mode (with file type) and content."""

    path: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


def _header(ino: int, e: Entry, name: bytes) -> bytes:
    nlink = 2 if stat.S_ISDIR(e.mode) else 1
    fields = (ino, e.mode, 0, 0, nlink, 0, len(e.data), 0, 0, e.rdev[0], e.rdev[1],
              len(name) + 1, 0)
    return b"070701" + b"".join(b"%08X" % f for f in fields)


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 4)


def cpio_newc(entries: Iterable[Entry]) -> bytes:
    """A cpio archive in the kernel's "newc" format, entries in the order given."""
    out = bytearray()
    for ino, e in enumerate([*entries, Entry("TRAILER!!!", 0)], start=1):
        name = e.path.encode()
        out += _header(0 if e.path == "TRAILER!!!" else ino, e, name) + name + b"\0"
        out += _pad(len(out))
        out += e.data
        out += _pad(len(out))
    out += _pad(len(out))
    return bytes(out)


def _with_parents(entries: Mapping[str, Entry]) -> list[Entry]:
    """Every entry after the directories that hold it, in path order."""
    full = dict(entries)
    for path in list(entries):
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            full.setdefault(d, Entry(d, stat.S_IFDIR | 0o755))
    return [full[p] for p in sorted(full)]


def batch_cpio(batch: Mapping[str, Any]) -> bytes:
    """The per-run archive: the batch of scenarios as ``/batch.json``."""
    data = json.dumps(batch, separators=(",", ":")).encode()
    return cpio_newc([Entry(BATCH_PATH.lstrip("/"), stat.S_IFREG | 0o644, data)])


def with_batch(base: bytes, batch: Mapping[str, Any]) -> bytes:
    """The base initramfs followed by the batch's archive (which the kernel accepts only at
    a 4-byte aligned offset: the zero bytes between are skipped)."""
    return base + b"\0" * (-len(base) % 4) + batch_cpio(batch)


def guest_python() -> str:
    """The interpreter to copy: $HUGETLBSIM_VM_PYTHON, else Debian's /usr/bin/python3.11."""
    path = os.environ.get("HUGETLBSIM_VM_PYTHON", "/usr/bin/python3.11")
    if not os.access(path, os.X_OK):
        raise InitramfsError(f"{path} is missing: apt-get install -y python3.11-minimal")
    return path


def host_busybox() -> str:
    """A statically linked busybox (Debian's busybox-static)."""
    for path in ("/bin/busybox", "/usr/bin/busybox"):
        if os.access(path, os.X_OK) and not shared_libs([path]):
            return path
    raise InitramfsError("no statically linked busybox: apt-get install -y busybox-static")


def shared_libs(paths: Iterable[str]) -> list[str]:
    """The shared libraries (and the dynamic loader) that ``ldd`` lists for these files."""
    libs: set[str] = set()
    for path in paths:
        proc = subprocess.run(["ldd", path], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            continue  # "not a dynamic executable"
        for line in proc.stdout.splitlines():
            words = line.split()
            if "=>" in words:
                target = words[words.index("=>") + 1]
                if target.startswith("/"):
                    libs.add(target)
                elif target == "not":
                    raise InitramfsError(f"{path}: {line.strip()}")
            elif words and words[0].startswith("/"):
                libs.add(words[0])
    return sorted(libs)


_COLLECT = """
import json, os, sys
sys.path.insert(0, sys.argv[1])
import encodings.ascii, encodings.latin_1, encodings.utf_8, termios
import encodings.unicode_escape, encodings.raw_unicode_escape  # kernel_sys.mount_points
import runpy
runpy._get_module_details("hugetlbsim.backends.vm.guest")  # what -m needs to find it
import hugetlbsim.backends.vm.guest
files = sorted({m.__file__ for m in list(sys.modules.values())
                if isinstance(getattr(m, "__file__", None), str)})
print(json.dumps({"files": files, "stdlib": os.path.dirname(os.__file__),
                  "version": "%d.%d" % sys.version_info[:2],
                  "cache_tag": sys.implementation.cache_tag}))
"""

_COMPILE = """
import json, py_compile, sys
for i, (src, dfile) in enumerate(json.load(sys.stdin)):
    py_compile.compile(src, cfile="%s/%d.pyc" % (sys.argv[1], i), dfile=dfile, doraise=True,
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
"""


def _src_root() -> str:
    return str(Path(hugetlbsim.__file__).resolve().parent.parent)


def _run_python(python: str, code: str, *args: str, stdin: str | None = None) -> str:
    proc = subprocess.run([python, "-S", "-E", "-B", "-c", code, *args], input=stdin,
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"},
                          check=False)
    if proc.returncode != 0:
        raise InitramfsError(f"{python} failed: {proc.stderr.strip()[-2000:]}")
    return proc.stdout


@dataclass(frozen=True)
class _Plan:
    files: dict[str, tuple[str, int]]
    """guest path (no leading slash) -> (host file, mode)."""
    sources: list[tuple[str, str]]
    """(host .py, guest path) to compile."""
    pyc_dirs: dict[str, str]
    """guest .py path -> guest .pyc path."""
    version: str


def _plan(python: str, busybox: str) -> _Plan:
    src = _src_root()
    info = json.loads(_run_python(python, _COLLECT, src))
    version, stdlib, tag = info["version"], info["stdlib"], info["cache_tag"]
    guest_lib = f"usr/lib/python{version}"
    files: dict[str, tuple[str, int]] = {}
    sources: list[tuple[str, str]] = []
    extensions: list[str] = []
    for f in [*info["files"], os.path.join(stdlib, "os.py")]:
        if f.startswith(src + "/"):
            guest = GUEST_SRC.lstrip("/") + f[len(src):]
        elif f.startswith(stdlib + "/"):
            guest = guest_lib + f[len(stdlib):]
        else:
            raise InitramfsError(f"the guest would import {f}, outside the standard library "
                                 "and this source tree")
        if f.endswith(".so"):
            if os.path.basename(f).startswith(EXCLUDED_EXTENSIONS):
                continue
            extensions.append(f)
            files[guest] = (f, 0o755)
        else:
            files[guest] = (f, 0o644)
            if f.endswith(".py"):
                sources.append((f, "/" + guest))
    pyc = {g.lstrip("/"): f"{os.path.dirname(g)}/__pycache__/{os.path.basename(g)[:-3]}"
                          f".{tag}.pyc".lstrip("/") for _, g in sources}
    files[f"usr/bin/python{version}"] = (python, 0o755)
    for lib in shared_libs([python, *extensions]):
        files[lib.lstrip("/")] = (lib, 0o755)
    files["bin/busybox"] = (busybox, 0o755)
    return _Plan(files, sources, pyc, version)


def _input_key(plan: _Plan) -> str:
    h = hashlib.sha256(f"hugetlbsim-initramfs {BUILDER_VERSION}\n{INIT}".encode())
    for guest, (host, mode) in sorted(plan.files.items()):
        with open(host, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        h.update(f"{guest} {mode:o} {digest}\n".encode())
    return h.hexdigest()


def _build(plan: _Plan, python: str) -> bytes:
    entries: dict[str, Entry] = {}
    for guest, (host, mode) in plan.files.items():
        with open(host, "rb") as f:
            entries[guest] = Entry(guest, stat.S_IFREG | mode, f.read())
    with tempfile.TemporaryDirectory(prefix="hugetlbsim.pyc-") as tmp:
        _run_python(python, _COMPILE, tmp, stdin=json.dumps(plan.sources))
        for i, (_, guest) in enumerate(plan.sources):
            g = guest.lstrip("/")
            with open(f"{tmp}/{i}.pyc", "rb") as f:
                entries[plan.pyc_dirs[g]] = Entry(plan.pyc_dirs[g], stat.S_IFREG | 0o644,
                                                  f.read())
    entries["init"] = Entry("init", stat.S_IFREG | 0o755, INIT.encode())
    entries["bin/sh"] = Entry("bin/sh", stat.S_IFLNK | 0o777, b"busybox")
    entries["usr/bin/python3"] = Entry("usr/bin/python3", stat.S_IFLNK | 0o777,
                                       f"python{plan.version}".encode())
    entries[f"usr/lib/python{plan.version}/lib-dynload"] = Entry(
        f"usr/lib/python{plan.version}/lib-dynload", stat.S_IFDIR | 0o755)
    for d in ("proc", "sys", "dev", "tmp", "run"):
        entries[d] = Entry(d, stat.S_IFDIR | (0o1777 if d == "tmp" else 0o755))
    entries["dev/console"] = Entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
    return gzip.compress(cpio_newc(_with_parents(entries)), compresslevel=6, mtime=0)


def build_initramfs(cache: Path, python: str | None = None, busybox: str | None = None) -> Path:
    """The gzip'ed initramfs for the current source tree, built unless already cached."""
    python = python or guest_python()
    busybox = busybox or host_busybox()
    plan = _plan(python, busybox)
    key = _input_key(plan)
    out_dir = cache / "initramfs"
    out = out_dir / f"{key[:20]}.cpio.gz"
    if out.exists():
        return out
    out_dir.mkdir(parents=True, exist_ok=True)
    data = _build(plan, python)
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".build-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, out)
    except BaseException:
        os.unlink(tmp)
        raise
    old = sorted(out_dir.glob("*.cpio.gz"), key=lambda p: p.stat().st_mtime, reverse=True)
    for p in old[KEEP_BUILDS:]:
        p.unlink(missing_ok=True)
    return out
