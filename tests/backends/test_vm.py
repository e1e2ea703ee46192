"""The vm backend: frames, specs, the kernel cache, vmlinux extraction and the guest runner.

The unit tests always run.  The boot logic (timeouts, crashes, garbled records, broken pools,
leftovers) is tested against a fake ``qemu`` that plays a guest: it reads the batch out of
the initramfs it is given and writes frames to its second serial file, misbehaving as each
scenario's name asks.  Tests marked ``vm`` boot real Debian kernels from the cache under qemu
TCG and skip, saying why, when qemu or cached kernels are missing (``hugetlbsim kernels fetch
6.1 6.12``).
"""

from __future__ import annotations

import bz2
import glob
import gzip
import json
import lzma
import os
import shutil
import stat
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from hugetlbsim.backends.base import BackendUnavailable
from hugetlbsim.backends.vm import boot as vmboot
from hugetlbsim.backends.vm import cache as vmcache
from hugetlbsim.backends.vm.backend import (
    VmBackend,
    VmScenarioError,
    VmSpec,
    backend_from_spec,
    is_vm_spec,
    parse_spec,
)
from hugetlbsim.backends.vm.frames import (
    FrameError,
    FrameParser,
    FrameWriter,
    decode_frame,
    encode_frame,
    scenario_from_wire,
    scenario_to_wire,
)
from hugetlbsim.backends.vm.initramfs import Entry, batch_cpio, cpio_newc, with_batch
from hugetlbsim.backends.vm.vmlinux import VmlinuxError, elf_info, extract_vmlinux
from hugetlbsim.format.loader import load, load_text
from hugetlbsim.runner import run

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

SMALL = """\
format: 1
name: {name}
pool: {{pages: 2}}
steps:
  - mount: {{name: hp}}
  - create: {{file: hp/f, size: 1}}
  - spawn: {{proc: p}}
  - mmap: {{proc: p, map: m, file: hp/f, length: 1, shared: true}}
    expect: {{rsvd: 1}}
  - touch: {{proc: p, map: m, page: 0}}
    expect: {{rsvd: 0, free: 1}}
"""


def small(name: str = "small") -> Any:
    return load_text(SMALL.format(name=name), f"{name}.yaml")


def run_many(backend: VmBackend, scenarios: list[Any]) -> list[Any]:
    """What a command with many files does: one `prepare`, then `run` per scenario; a
    scenario that could not run gives its exception."""
    backend.prepare(scenarios)
    out: list[Any] = []
    for s in scenarios:
        try:
            out.append(run(s, backend))
        except (BackendUnavailable, VmScenarioError) as e:
            out.append(e)
    return out


# ---- frames ---------------------------------------------------------------------------------

def test_frame_round_trip() -> None:
    body = {"i": 3, "steps": [["mmap", "ok", {"rsvd": (1 << 64) - 1}]]}
    frame = decode_frame(encode_frame("trace", body).rstrip(b"\n"))
    assert (frame.kind, frame.body) == ("trace", body)


def test_frames_arrive_in_pieces() -> None:
    data = b"".join(encode_frame(k, {"n": n}) for n, k in enumerate(["hello", "begin", "end"]))
    parser = FrameParser()
    got = []
    for i in range(0, len(data), 7):
        got += parser.feed(data[i:i + 7])
    parser.finish()
    assert [(f.kind, f.body["n"]) for f in got] == [("hello", 0), ("begin", 1), ("end", 2)]


def test_crlf_line_ends_are_accepted() -> None:
    line = encode_frame("end", {}).replace(b"\n", b"\r\n")
    assert [f.kind for f in FrameParser().feed(line)] == ["end"]


def test_good_frames_before_a_bad_line_are_kept() -> None:
    parser = FrameParser()
    frames = parser.feed(encode_frame("hello", {}) + b"garbage\n" + encode_frame("end", {}))
    assert [f.kind for f in frames] == ["hello"]
    with pytest.raises(FrameError, match="at byte"):
        parser.check()
    with pytest.raises(FrameError):
        parser.finish()


def test_truncated_record_is_an_error() -> None:
    data = encode_frame("trace", {"i": 0, "steps": []})
    parser = FrameParser()
    assert parser.feed(data[:-5]) == []
    with pytest.raises(FrameError, match="truncated"):
        parser.finish()


def _field(line: bytes, n: int, value: bytes) -> bytes:
    parts = line.rstrip(b"\n").split(b" ")
    parts[n] = value
    return b" ".join(parts) + b"\n"


@pytest.mark.parametrize("mangle, match", [
    (lambda ln: ln.replace(b"HSIM1", b"HSIM2", 1), "not a frame"),
    (lambda ln: _field(ln, 1, b"bogus"), "unknown frame kind"),
    (lambda ln: _field(ln, 2, b"7"), "length"),
    (lambda ln: _field(ln, 3, b"0" * 64), "sha256"),
    (lambda ln: ln[:40] + bytes([ln[40] ^ 1]) + ln[41:], "sha256|length|not a frame"),
    (lambda ln: b"kernel says hello\n" + ln, "not a frame"),
])
def test_garbled_record_is_an_error(mangle: Any, match: str) -> None:
    line = encode_frame("trace", {"i": 0, "steps": [["mount", "ok", {}]]})
    with pytest.raises(FrameError, match=match):
        FrameParser().feed(mangle(line))


def test_payload_checked_after_checksum() -> None:
    import base64
    import hashlib
    import zlib

    for payload in (b"!!notbase64", base64.b64encode(b"not zlib"),
                    base64.b64encode(zlib.compress(b"[1, 2]"))):
        line = b"HSIM1 end %d %s %s" % (len(payload), hashlib.sha256(payload).hexdigest()
                                         .encode(), payload)
        with pytest.raises(FrameError):
            decode_frame(line)


def test_frame_writer_to_a_file(tmp_path: Path) -> None:
    out = FrameWriter(str(tmp_path / "port"))
    out.send("hello", {"uname": "x"})
    out.close()
    frames = FrameParser().feed((tmp_path / "port").read_bytes())
    assert frames[0].body == {"uname": "x"}


def test_scenario_wire_round_trip() -> None:
    s = load(str(EXAMPLES / "shared-file-basics.yaml"))
    back = scenario_from_wire(json.loads(json.dumps(scenario_to_wire(s, 5))))
    assert [(t.index, t.op, t.args, t.line) for t in back.steps] == [
        (t.index, t.op, t.args, t.line) for t in s.steps]
    assert (back.pool_pages, back.pool_overcommit, back.name) == (
        s.pool_pages, s.pool_overcommit, s.name)
    v2 = load_text("format: 1\ncgroups: v2\nkernel: '6.12'\nsteps:\n  - mount: {name: hp}\n")
    back = scenario_from_wire(json.loads(json.dumps(scenario_to_wire(v2, 0))))
    assert (back.cgroups, back.kernel) == ("v2", "6.12")
    assert all(t.expect is None for t in back.steps)


# ---- specs and the cache --------------------------------------------------------------------

@pytest.mark.parametrize("text, spec", [
    ("vm:6.1", VmSpec("6.1")),
    ("vm:6.12", VmSpec("6.12")),
    ("vm:6.1.0-57-cloud-amd64", VmSpec("6.1.0-57-cloud-amd64")),
    ("vm:6.12.117+deb12-cloud-amd64", VmSpec("6.12.117+deb12-cloud-amd64")),
    ("vm:6.12?mem=2048&timeout=30", VmSpec("6.12", (("mem", 2048), ("timeout", 30)))),
])
def test_parse_spec(text: str, spec: VmSpec) -> None:
    assert parse_spec(text) == spec
    assert is_vm_spec(text)


@pytest.mark.parametrize("text", ["vm:", "vm", "kernel", "vm:6.1?numa", "vm:6.1?mem=x",
                                  "vm:6.1?color=2", "vm:6.1 6.12"])
def test_bad_specs(text: str) -> None:
    with pytest.raises(ValueError):
        parse_spec(text)


def _fake_kernel(cache: Path, uname: str, version: str = "1") -> vmcache.CachedKernel:
    d = cache / "kernels" / uname
    d.mkdir(parents=True)
    (d / "vmlinux").write_bytes(b"\x7fELF")
    (d / "kernel.json").write_text(json.dumps(
        {"uname": uname, "package": "linux-image-" + uname, "version": version}))
    return vmcache.CachedKernel(uname, "linux-image-" + uname, version, d)


def test_resolve_cached(tmp_path: Path) -> None:
    for u in ("6.1.0-47-cloud-amd64", "6.1.0-57-amd64", "6.1.0-57-cloud-amd64",
              "6.1.0-9-cloud-amd64", "6.12.100+deb12-cloud-amd64",
              "6.12.117+deb12-cloud-amd64"):
        _fake_kernel(tmp_path, u)
    (tmp_path / "kernels" / "half-fetched").mkdir()
    assert vmcache.resolve_cached("6.1", tmp_path).uname == "6.1.0-57-cloud-amd64"
    assert vmcache.resolve_cached("6.12", tmp_path).uname == "6.12.117+deb12-cloud-amd64"
    assert vmcache.resolve_cached("6.1.0-57-amd64", tmp_path).uname == "6.1.0-57-amd64"
    assert vmcache.resolve_cached("linux-image-6.1.0-9-cloud-amd64", tmp_path).uname == (
        "6.1.0-9-cloud-amd64")
    with pytest.raises(vmcache.KernelNotCached, match=r"hugetlbsim kernels fetch 6\.6"):
        vmcache.resolve_cached("6.6", tmp_path)
    assert [k.uname for k in vmcache.cached_kernels(tmp_path)][:3] == [
        "6.1.0-9-cloud-amd64", "6.1.0-47-cloud-amd64", "6.1.0-57-cloud-amd64"]


def test_cache_dir_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HUGETLBSIM_CACHE", str(tmp_path))
    assert vmcache.cache_dir() == tmp_path
    monkeypatch.delenv("HUGETLBSIM_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert vmcache.cache_dir() == tmp_path / "x" / "hugetlbsim"


def test_kernel_names() -> None:
    assert vmcache.kernel_line("6.12.117+deb12-cloud-amd64") == (6, 12)
    assert vmcache.kernel_line("6.1.0-57-cloud-amd64") == (6, 1)
    assert vmcache.uname_key("6.1.0-57-cloud-amd64") > vmcache.uname_key("6.1.0-9-cloud-amd64")
    assert vmcache.uname_key("6.12.117+deb12-amd64") > vmcache.uname_key(
        "6.12.100+deb12-cloud-amd64")


def test_package_names_need_no_apt() -> None:
    assert vmcache.resolve_package("6.1.0-57-amd64", update=False) == (
        "linux-image-6.1.0-57-amd64")
    assert vmcache.resolve_package("linux-image-6.12.117+deb12-cloud-amd64", update=False) == (
        "linux-image-6.12.117+deb12-cloud-amd64")
    with pytest.raises(vmcache.FetchError, match="not a kernel"):
        vmcache.resolve_package("latest", update=False)


def test_refuses_without_the_kernel(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable, match=r"kernels fetch 6\.1"):
        backend_from_spec("vm:6.1", cache=tmp_path)


def test_refuses_without_qemu_naming_the_fix(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    real = shutil.which
    monkeypatch.setattr("hugetlbsim.backends.vm.cache.shutil.which",
                        lambda name: None if name.startswith("qemu") else real(name))
    _fake_kernel(tmp_path, "6.1.0-57-cloud-amd64")
    with pytest.raises(BackendUnavailable, match="apt-get install -y qemu-system-x86"):
        backend_from_spec("vm:6.1", cache=tmp_path)


def test_install_command() -> None:
    pieces = [vmcache.HostPiece("qemu", "qemu-system-x86", False, ""),
              vmcache.HostPiece("busybox", "busybox-static", False, "")]
    assert vmcache.install_command(pieces) == (
        "apt-get update && apt-get install -y qemu-system-x86 busybox-static")
    assert vmcache.install_command([]) is None


# ---- vmlinux extraction ---------------------------------------------------------------------

def _elf(pvh: bool = True, size: int = 4096) -> bytes:
    """A minimal x86-64 ELF with one PT_NOTE segment (the Xen PVH entry note, or another)."""
    name, desc = b"Xen\0", struct.pack("<I", 0x1000000)
    note = struct.pack("<III", len(name), len(desc), 18 if pvh else 1) + name + desc
    phoff, note_off = 64, 64 + 56
    ehdr = (b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
            + struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, 0x1000000, phoff, 0, 0, 64, 56, 1, 64,
                          0, 0))
    phdr = struct.pack("<IIQQQQQQ", 4, 4, note_off, 0, 0, len(note), len(note), 4)
    body = ehdr + phdr + note
    return body + bytes(range(256)) * ((size - len(body)) // 256 + 1)


def _lz4_literals(data: bytes) -> bytes:
    """The simplest valid LZ4 block: one sequence of literals only."""
    n = len(data)
    if n < 15:
        return bytes([n << 4]) + data
    out = bytearray([0xF0])
    rest = n - 15
    while rest >= 255:
        out.append(255)
        rest -= 255
    out.append(rest)
    return bytes(out) + data


def _bzimage(payload: bytes) -> bytes:
    """A fake bzImage: setup header (HdrS 2.15, 1 setup sector) and the payload after it."""
    setup = bytearray(1024)
    setup[0x1F1] = 1
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", setup, 0x206, 0x20F)
    struct.pack_into("<II", setup, 0x248, 16, len(payload))
    return bytes(setup) + bytes(16) + payload + b"\0" * 64


def _with_size(data: bytes, elf: bytes) -> bytes:
    return data + struct.pack("<I", len(elf))


@pytest.mark.parametrize("fmt", ["gzip", "xz", "bzip2", "lz4", "lzma", "zstd"])
def test_extract_vmlinux(fmt: str) -> None:
    elf = _elf()
    if fmt == "gzip":
        payload = gzip.compress(elf)
    elif fmt == "xz":
        payload = _with_size(lzma.compress(elf, format=lzma.FORMAT_XZ), elf)
    elif fmt == "lzma":
        payload = _with_size(lzma.compress(elf, format=lzma.FORMAT_ALONE), elf)
    elif fmt == "bzip2":
        payload = _with_size(bz2.compress(elf), elf)
    elif fmt == "lz4":
        block = _lz4_literals(elf)
        payload = _with_size(struct.pack("<II", 0x184C2102, len(block)) + block, elf)
    else:
        if shutil.which("zstd") is None:
            pytest.skip("the zstd program is not installed")
        z = subprocess.run(["zstd", "-c", "-q"], input=elf, capture_output=True, check=True)
        payload = _with_size(z.stdout, elf)
    image, info = extract_vmlinux(_bzimage(payload))
    assert image == elf
    assert info.pvh and info.machine == 62


def test_lz4_matches_overlap() -> None:
    from hugetlbsim.backends.vm.vmlinux import lz4_block

    out = bytearray()
    # literals "ab", then a match of 4 + 3 bytes at offset 2 (overlapping), then literals "z"
    lz4_block(bytes([0x23]) + b"ab" + struct.pack("<H", 2) + bytes([0x10]) + b"z", out)
    assert bytes(out) == b"ababababaz"


def test_extract_checks_the_size_and_the_elf() -> None:
    elf = _elf()
    xz = lzma.compress(elf, format=lzma.FORMAT_XZ)
    with pytest.raises(VmlinuxError, match="the image says"):
        extract_vmlinux(_bzimage(xz + struct.pack("<I", len(elf) + 1)))
    with pytest.raises(VmlinuxError, match="not an ELF"):
        extract_vmlinux(_bzimage(gzip.compress(b"MZ" + bytes(100))))
    with pytest.raises(VmlinuxError, match="no known compression"):
        extract_vmlinux(_bzimage(b"\x01\x02\x03\x04" * 10))
    assert not elf_info(_elf(pvh=False)).pvh


def test_extract_without_a_header_scans_for_magic() -> None:
    elf = _elf()
    image, _ = extract_vmlinux(b"junk" * 100 + lzma.compress(elf, format=lzma.FORMAT_XZ))
    assert image == elf
    with pytest.raises(VmlinuxError, match="no compressed ELF"):
        extract_vmlinux(b"junk" * 100)


# ---- cpio -----------------------------------------------------------------------------------

def _cpio_members(data: bytes) -> list[tuple[str, int, bytes]]:
    out: list[tuple[str, int, bytes]] = []
    pos = 0
    while True:
        assert data[pos:pos + 6] == b"070701"
        fields = [int(data[pos + 6 + 8 * i:pos + 14 + 8 * i], 16) for i in range(13)]
        namesize, filesize, mode = fields[11], fields[6], fields[1]
        name = data[pos + 110:pos + 110 + namesize - 1].decode()
        pos = (pos + 110 + namesize + 3) // 4 * 4
        body = data[pos:pos + filesize]
        pos = (pos + filesize + 3) // 4 * 4
        if name == "TRAILER!!!":
            return out
        out.append((name, mode, body))


def test_cpio_newc() -> None:
    data = cpio_newc([Entry("d", stat.S_IFDIR | 0o755), Entry("d/f", stat.S_IFREG | 0o644, b"x"),
                      Entry("l", stat.S_IFLNK | 0o777, b"d/f")])
    assert len(data) % 4 == 0
    assert _cpio_members(data) == [("d", stat.S_IFDIR | 0o755, b""),
                                   ("d/f", stat.S_IFREG | 0o644, b"x"),
                                   ("l", stat.S_IFLNK | 0o777, b"d/f")]
    if shutil.which("cpio"):
        listing = subprocess.run(["cpio", "-t", "--quiet"], input=data, capture_output=True,
                                 check=True).stdout.split()
        assert listing == [b"d", b"d/f", b"l"]


def test_batch_is_appended_at_a_4_byte_boundary() -> None:
    base = gzip.compress(b"abc")
    joined = with_batch(base, {"scenarios": []})
    start = len(joined) - len(batch_cpio({"scenarios": []}))
    assert start % 4 == 0 and joined[len(base):start] == b"\0" * (start - len(base))
    name, _, body = _cpio_members(joined[start:])[0]
    assert name == "batch.json" and json.loads(body) == {"scenarios": []}


# ---- the boot loop, against a fake qemu -----------------------------------------------------

FAKE_QEMU = textwrap.dedent("""\
    #!{python}
    import json, os, sys, time
    from hugetlbsim.backends.vm.frames import encode_frame
    args = sys.argv[1:]
    initrd = open(args[args.index("-initrd") + 1], "rb").read()
    ports = [a[5:] for a in args if a.startswith("file:")]
    uname = os.path.basename(os.path.dirname(args[args.index("-kernel") + 1]))
    at = initrd.rindex(b"batch.json\\0")
    size = int(initrd[at - 110 + 54:at - 110 + 62], 16)
    start = (at + 11 + 3) // 4 * 4
    batch = json.loads(initrd[start:start + size])
    with open(os.environ["FAKE_QEMU_LOG"], "a") as log:
        log.write(" ".join(str(s["i"]) for s in batch["scenarios"]) + "\\n")
    out = open(ports[1], "ab", buffering=0)
    out.write(encode_frame("hello", {{"uname": uname, "python": "3", "uptime": 1.0}}))
    for s in batch["scenarios"]:
        name, i = s["name"], s["i"]
        out.write(encode_frame("begin", {{"i": i}}))
        if name == "hang":
            time.sleep(600)
        if name == "crash":
            sys.exit(1)
        if name == "garble":
            out.write(b"HSIM1 trace 3 00 abc\\n")
            time.sleep(600)
        if name == "truncate":
            out.write(encode_frame("trace", {{"i": i, "steps": []}})[:30])
            sys.exit(0)
        if name == "unavailable":
            out.write(encode_frame("error", {{"i": i, "kind": "unavailable",
                                              "message": "1G pages"}}))
            continue
        steps = [[op, "ok", {{"total": 2, "i": i}}] for _, op, _, _ in s["steps"]]
        out.write(encode_frame("trace", {{"i": i, "steps": steps, "not_clean": None,
                                          "timing": {{"steps": 0.5}}}}))
        if name.startswith("broken"):
            out.write(encode_frame("broken", {{"i": i, "why": "Rsvd = 2^64-1"}}))
            break
    out.write(encode_frame("end", {{}}))
""")


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    qemu = tmp_path / "fake-qemu"
    qemu.write_text(FAKE_QEMU.format(python=sys.executable))
    qemu.chmod(0o755)
    log = tmp_path / "boots.log"
    monkeypatch.setenv("FAKE_QEMU_LOG", str(log))
    cache = tmp_path / "cache"
    kernel = _fake_kernel(cache, "6.1.0-99-cloud-amd64")
    initramfs = tmp_path / "initramfs.cpio.gz"
    initramfs.write_bytes(gzip.compress(cpio_newc([])))
    opts = vmboot.BootOptions(qemu=str(qemu), boot_timeout=20, scenario_timeout=3,
                              step_timeout=0)

    def backend() -> VmBackend:
        b = VmBackend(kernel, cache, opts)
        b._initramfs = initramfs
        return b

    def boots() -> list[list[int]]:
        return [[int(i) for i in line.split()] for line in log.read_text().splitlines()]

    return backend, boots


def _fakes_alive(tmp_path: Path) -> bytes:
    """pids of this test's fake qemu still running (other test runs may have their own)."""
    return subprocess.run(["pgrep", "-f", str(tmp_path / "fake-qemu")],
                          capture_output=True).stdout


def _leftovers() -> list[str]:
    return glob.glob(os.path.join("/tmp", f"{vmboot.TMP_PREFIX}{os.getpid()}-*"))


def test_one_boot_runs_the_batch(fake: Any) -> None:
    make, boots = fake
    backend = make()
    traces = run_many(backend, [small("a"), small("b"), small("c")])
    assert boots() == [[0, 1, 2]]
    assert [t.kernel for t in traces] == ["6.1.0-99-cloud-amd64"] * 3
    assert [t.backend for t in traces] == ["vm"] * 3
    assert [len(t.steps) for t in traces] == [5, 5, 5]
    assert traces[1].steps[4].state == {"total": 2, "i": 1}
    assert backend.stats[0].scenarios == 3 and backend.stats[0].steps == 15
    assert _leftovers() == []


def test_broken_pool_goes_on_in_a_fresh_guest(fake: Any) -> None:
    make, boots = fake
    traces = run_many(make(), [small("a"), small("broken1"), small("c"), small("broken2"),
                              small("e")])
    assert boots() == [[0, 1, 2, 3, 4], [2, 3, 4], [4]]
    assert all(len(t.steps) == 5 for t in traces)  # the breaking scenario keeps its trace


@pytest.mark.parametrize("name, kind", [("hang", "timeout"), ("crash", "crash"),
                                        ("garble", "protocol"), ("truncate", "protocol")])
def test_misbehaving_guest_is_reported_and_the_batch_goes_on(fake: Any, name: str,
                                                             kind: str, tmp_path: Path) -> None:
    make, boots = fake
    backend = make()
    t0 = time.monotonic()
    outcomes = backend.prepare([small("a"), small(name), small("c")])
    assert time.monotonic() - t0 < 30
    assert [o.kind for o in outcomes] == ["trace", kind, "trace"]
    assert boots() == [[0, 1, 2], [2]]
    with pytest.raises(VmScenarioError, match=kind):
        run(small(name), backend)  # prepared outcomes are used once; this one runs again
    assert _leftovers() == []
    assert _fakes_alive(tmp_path) == b""


def test_unavailable_in_the_guest_is_backend_unavailable(fake: Any) -> None:
    make, _ = fake
    with pytest.raises(BackendUnavailable, match="1G pages"):
        run(small("unavailable"), make())


def test_guest_that_never_comes_up(fake: Any, tmp_path: Path) -> None:
    make, _ = fake
    backend = make()
    silent = tmp_path / "silent-qemu"
    silent.write_text("#!/bin/sh\nsleep 600\n")
    silent.chmod(0o755)
    backend.options = vmboot.BootOptions(qemu=str(silent), boot_timeout=1)
    with pytest.raises(vmboot.BootError, match="did not come up"):
        backend.prepare([small()])
    assert _leftovers() == []


def test_interrupt_leaves_nothing_behind(fake: Any, monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    make, _ = fake
    backend = make()
    real_sleep = time.sleep
    calls = {"n": 0}

    def interrupting_sleep(s: float) -> None:
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt
        real_sleep(s)

    monkeypatch.setattr("hugetlbsim.backends.vm.boot.time.sleep", interrupting_sleep)
    with pytest.raises(KeyboardInterrupt):
        backend.prepare([small("hang")])
    assert _leftovers() == []
    assert _fakes_alive(tmp_path) == b""


# ---- real guests ----------------------------------------------------------------------------

def _vm_unavailable() -> str | None:
    missing = [p for p in vmcache.missing_host_pieces()
               if p.package in ("qemu-system-x86", "busybox-static", "python3.11-minimal")]
    if missing:
        return f"missing {', '.join(p.name for p in missing)}: {vmcache.install_command(missing)}"
    if not vmcache.cached_kernels():
        return "no cached kernels: hugetlbsim kernels fetch 6.1 6.12"
    return None


VM_REASON = _vm_unavailable()
KERNELS = [] if VM_REASON else [k.uname for k in vmcache.cached_kernels()]


@pytest.mark.vm
@pytest.mark.skipif(VM_REASON is not None, reason=str(VM_REASON))
@pytest.mark.parametrize("uname", KERNELS or ["none"])
def test_small_scenario_in_each_cached_kernel(uname: str) -> None:
    backend = backend_from_spec(f"vm:{uname}")
    traces = run_many(backend, [load(str(EXAMPLES / "shared-file-basics.yaml")), small()])
    for trace in traces:
        assert not isinstance(trace, Exception), trace
        assert trace.kernel == uname and not trace.failures
    assert len(backend.stats) == 1
    assert _leftovers() == []


def test_sigterm_leaves_nothing_behind(fake: Any, tmp_path: Path) -> None:
    """A host process killed with SIGTERM while its guest hangs takes qemu and its boot
    directory with it."""
    make, _ = fake
    backend = make()
    script = tmp_path / "host.py"
    script.write_text(textwrap.dedent(f"""\
        import gzip, pathlib, sys
        from hugetlbsim.backends.vm import boot
        from hugetlbsim.backends.vm.cache import resolve_cached
        from hugetlbsim.backends.vm.frames import scenario_to_wire
        from hugetlbsim.format.loader import load_text
        kernel = resolve_cached("6.1", pathlib.Path({str(backend.cache)!r}))
        opts = boot.BootOptions(qemu={backend.options.qemu!r}, scenario_timeout=600)
        s = load_text({SMALL.format(name="hang")!r}, "hang.yaml")
        print("go", flush=True)
        boot.run_batch(kernel, pathlib.Path({str(backend._initramfs)!r}),
                       [scenario_to_wire(s, 0)], opts, pathlib.Path({str(tmp_path)!r}))
        """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"go\n"
    prefix = os.path.join("/tmp", f"{vmboot.TMP_PREFIX}{proc.pid}-")
    deadline = time.monotonic() + 20
    while not glob.glob(prefix + "*/results.bin") and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    proc.terminate()
    assert proc.wait(20) == 128 + 15
    assert glob.glob(prefix + "*") == []
    assert _fakes_alive(tmp_path) == b""
