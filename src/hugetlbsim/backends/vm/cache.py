"""The kernel cache: Debian kernel packages fetched with apt, kept as bootable ELF images.

Layout under `cache_dir()` (``$HUGETLBSIM_CACHE``, default ``~/.cache/hugetlbsim``)::

    kernels/<uname -r>/vmlinux       the uncompressed kernel (PVH entry, booted by qemu)
    kernels/<uname -r>/config        the kernel's build configuration
    kernels/<uname -r>/kernel.json   package, Debian version, sha256 of vmlinux
    initramfs/<hash>.cpio.gz         see `initramfs`

`fetch` takes a kernel line (``"6.1"``: the newest ``linux-image-6.1.0-N-cloud-amd64`` apt
knows; ``"6.12"``: the newest ``linux-image-6.12.N+deb12-cloud-amd64``), a full ``uname -r``
(``6.1.0-57-amd64``) or a package name; it runs ``apt-get download``, takes ``boot/vmlinuz-*``
and ``boot/config-*`` out of the package's data (``dpkg-deb --fsys-tarfile``: the modules are
never written to disk) and extracts the ELF image (`vmlinux.extract_vmlinux`).  The machine's
own kernel, packages and apt state are not changed (``apt-get update`` refreshes the package
lists when they know no kernel at all).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from hugetlbsim.backends.vm.vmlinux import VmlinuxError, extract_vmlinux

__all__ = [
    "DEFAULT_FLAVOUR",
    "AptKernel",
    "CachedKernel",
    "FetchError",
    "HostPiece",
    "KernelNotCached",
    "available_kernels",
    "cache_dir",
    "cached_kernels",
    "check_host",
    "fetch",
    "fetch_one",
    "install_command",
    "kernel_line",
    "missing_host_pieces",
    "resolve_cached",
    "resolve_package",
    "uname_key",
]

DEFAULT_FLAVOUR = "cloud-amd64"
"""The flavour a bare kernel line resolves to: no 9p, fewer drivers, the same HugeTLB config."""
_UNAME = re.compile(r"(\d+)\.(\d+)\.\d+(?:-\d+)?(?:\+deb\d+)?-[a-z0-9-]+")
"""A concrete Debian kernel release (``6.1.0-57-cloud-amd64``, ``6.12.117+deb12-amd64``)."""
_LINE = re.compile(r"(\d+)\.(\d+)")


class FetchError(RuntimeError):
    """A kernel could not be found, downloaded or unpacked."""


class KernelNotCached(LookupError):
    """No cached kernel matches a name (the message names the fetch command)."""


def cache_dir() -> Path:
    """``$HUGETLBSIM_CACHE``, else ``$XDG_CACHE_HOME/hugetlbsim``, else ``~/.cache/hugetlbsim``."""
    env = os.environ.get("HUGETLBSIM_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg or Path.home() / ".cache") / "hugetlbsim"


def kernel_line(uname: str) -> tuple[int, int]:
    """``(6, 1)`` for ``6.1.0-57-cloud-amd64``."""
    m = _LINE.match(uname)
    if m is None:
        raise ValueError(f"not a kernel release: {uname!r}")
    return int(m.group(1)), int(m.group(2))


def uname_key(uname: str) -> tuple[int, ...]:
    """Orders the releases of one line and flavour: the numbers before the flavour."""
    return tuple(int(n) for n in re.findall(r"\d+", uname.split("-amd64")[0].split("-cloud")[0]
                                             .split("-rt")[0]))


@dataclass(frozen=True)
class CachedKernel:
    """A kernel ready to boot."""

    uname: str
    package: str
    version: str
    """The Debian package version (``6.1.192-3``)."""
    directory: Path

    @property
    def vmlinux(self) -> Path:
        """The ELF image qemu boots."""
        return self.directory / "vmlinux"

    @property
    def line(self) -> tuple[int, int]:
        """``(6, 1)``."""
        return kernel_line(self.uname)

    @property
    def flavour(self) -> str:
        """``cloud-amd64``, ``amd64``, ``rt-amd64``..."""
        m = re.match(r"[\d.]+(?:-\d+)?(?:\+deb\d+)?-(.+)", self.uname)
        return m.group(1) if m else ""


@dataclass(frozen=True)
class AptKernel:
    """A kernel package apt can download."""

    package: str
    uname: str
    cached: bool


def _kernels_dir(cache: Path | None) -> Path:
    return (cache or cache_dir()) / "kernels"


def cached_kernels(cache: Path | None = None) -> list[CachedKernel]:
    """Every kernel in the cache, by line then release."""
    out: list[CachedKernel] = []
    root = _kernels_dir(cache)
    if not root.is_dir():
        return out
    for d in root.iterdir():
        meta_path = d / "kernel.json"
        if not (d / "vmlinux").is_file() or not meta_path.is_file():
            continue
        try:
            meta = json.loads(meta_path.read_text())
            out.append(CachedKernel(meta["uname"], meta["package"], meta["version"], d))
        except (OSError, ValueError, KeyError):
            continue
    return sorted(out, key=lambda k: (k.line, uname_key(k.uname), k.flavour != DEFAULT_FLAVOUR))


def resolve_cached(name: str, cache: Path | None = None) -> CachedKernel:
    """The cached kernel ``name`` designates: an exact ``uname -r``, or a line (``6.1``): its
    newest release, the default flavour first among equals."""
    kernels = cached_kernels(cache)
    name = name.removeprefix("linux-image-")
    exact = [k for k in kernels if k.uname == name]
    if exact:
        return exact[0]
    m = _LINE.fullmatch(name)
    if m is not None:
        line = (int(m.group(1)), int(m.group(2)))
        matching = [k for k in kernels if k.line == line]
        if matching:
            best = max(uname_key(k.uname) for k in matching)
            newest = [k for k in matching if uname_key(k.uname) == best]
            return next((k for k in newest if k.flavour == DEFAULT_FLAVOUR), newest[0])
    have = ", ".join(k.uname for k in kernels) or "none"
    raise KernelNotCached(f"no cached kernel {name} (cached: {have}); "
                          f"run: hugetlbsim kernels fetch {name}")


# ---- apt ------------------------------------------------------------------------------------

def _apt_names(prefix: str = "linux-image-") -> list[str]:
    proc = subprocess.run(["apt-cache", "pkgnames", prefix], capture_output=True, text=True,
                          check=False)
    return proc.stdout.split() if proc.returncode == 0 else []


def _apt_update(log: Callable[[str], None]) -> None:
    log("apt-get update")
    proc = subprocess.run(["apt-get", "update", "-q"], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise FetchError(f"apt-get update failed: {proc.stderr.strip()[-1000:]}")


def _image_packages(update: bool, log: Callable[[str], None]) -> list[str]:
    """Concrete kernel image packages apt knows (signed or plain, not -unsigned or -dbg)."""
    def concrete() -> list[str]:
        return sorted(p for p in _apt_names()
                      if _UNAME.fullmatch(p.removeprefix("linux-image-"))
                      and not p.endswith(("-unsigned", "-dbg")))
    names = concrete()
    if not names and update:
        _apt_update(log)
        names = concrete()
    return names


def available_kernels(cache: Path | None = None, flavour: str | None = None,
                      update: bool = False,
                      log: Callable[[str], None] = lambda s: None) -> list[AptKernel]:
    """Kernel packages apt can download (all flavours, or one), and whether each is cached."""
    cached = {k.uname for k in cached_kernels(cache)}
    out = []
    for p in _image_packages(update, log):
        uname = p.removeprefix("linux-image-")
        if flavour is None or uname.endswith("-" + flavour):
            out.append(AptKernel(p, uname, uname in cached))
    return sorted(out, key=lambda k: (kernel_line(k.uname), uname_key(k.uname), k.uname))


def resolve_package(name: str, flavour: str = DEFAULT_FLAVOUR, update: bool = True,
                    log: Callable[[str], None] = lambda s: None) -> str:
    """The package to fetch for a line (``6.1``: the newest of that line and flavour), a
    ``uname -r`` or a package name."""
    name = name.strip()
    m = _LINE.fullmatch(name)
    if m is None:
        uname = name.removeprefix("linux-image-")
        if not _UNAME.fullmatch(uname):
            raise FetchError(f"not a kernel line, release or package: {name!r} "
                             "(examples: 6.1, 6.12, 6.1.0-57-cloud-amd64)")
        return "linux-image-" + uname
    line = (int(m.group(1)), int(m.group(2)))
    candidates = [p.removeprefix("linux-image-") for p in _image_packages(update, log)]
    candidates = [u for u in candidates if u.endswith("-" + flavour)
                  and kernel_line(u) == line]
    if not candidates and update:
        _apt_update(log)
        candidates = [u for u in (p.removeprefix("linux-image-")
                                  for p in _image_packages(False, log))
                      if u.endswith("-" + flavour) and kernel_line(u) == line]
    if not candidates:
        raise FetchError(f"apt knows no linux-image-{name}.*-{flavour} package "
                         "(Debian bookworm and bookworm-security serve 6.1 and 6.12)")
    return "linux-image-" + max(candidates, key=uname_key)


def _boot_files(deb: Path) -> tuple[str, bytes, bytes | None]:
    """(uname, vmlinuz, config) out of a kernel package's data."""
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    vmlinuz: tuple[str, bytes] | None = None
    config: bytes | None = None
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if not member.isfile() or not name.startswith("boot/"):
                    continue
                f = tar.extractfile(member)
                if f is None:
                    continue
                base = name.removeprefix("boot/")
                if base.startswith("vmlinuz-"):
                    vmlinuz = (base.removeprefix("vmlinuz-"), f.read())
                elif base.startswith("config-"):
                    config = f.read()
    finally:
        proc.stdout.close()
        rc = proc.wait()
    if rc != 0:
        raise FetchError(f"dpkg-deb --fsys-tarfile {deb.name} failed ({rc})")
    if vmlinuz is None:
        raise FetchError(f"{deb.name} holds no boot/vmlinuz-*")
    return vmlinuz[0], vmlinuz[1], config


def fetch_one(name: str, cache: Path | None = None, force: bool = False,
              log: Callable[[str], None] = lambda s: None) -> CachedKernel:
    """Download, unpack and extract one kernel into the cache (nothing to do if cached)."""
    package = resolve_package(name, log=log)
    uname = package.removeprefix("linux-image-")
    root = _kernels_dir(cache)
    if not force:
        for k in cached_kernels(cache):
            if k.uname == uname:
                log(f"{uname}: already cached")
                return k
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=root) as tmp:
        log(f"apt-get download {package}")
        proc = subprocess.run(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root",
                               package], cwd=tmp, capture_output=True, text=True, check=False)
        debs = list(Path(tmp).glob("*.deb"))
        if proc.returncode != 0 or len(debs) != 1:
            raise FetchError(f"apt-get download {package} failed: "
                             f"{(proc.stderr or proc.stdout).strip()[-1000:]}")
        deb = debs[0]
        version = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True,
                                 text=True, check=True).stdout.strip()
        got_uname, vmlinuz, config = _boot_files(deb)
        if got_uname != uname:
            raise FetchError(f"{package} holds vmlinuz-{got_uname}, not vmlinuz-{uname}")
        log(f"{uname}: extracting the ELF image")
        try:
            image, info = extract_vmlinux(vmlinuz)
        except VmlinuxError as e:
            raise FetchError(f"{package}: {e}") from e
        if not info.pvh:
            raise FetchError(f"{package}: the kernel has no PVH entry note; qemu cannot boot "
                             "its uncompressed image")
        stage = Path(tmp) / "kernel"
        stage.mkdir()
        (stage / "vmlinux").write_bytes(image)
        if config is not None:
            (stage / "config").write_bytes(config)
        meta = {"uname": uname, "package": package, "version": version,
                "vmlinux_sha256": hashlib.sha256(image).hexdigest()}
        (stage / "kernel.json").write_text(json.dumps(meta, indent=1) + "\n")
        dest = root / uname
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(stage, dest)
    log(f"{uname}: cached in {dest}")
    return CachedKernel(uname, package, version, dest)


def fetch(names: Iterable[str], cache: Path | None = None, force: bool = False,
          log: Callable[[str], None] = lambda s: None) -> list[CachedKernel]:
    """`fetch_one` for each name, in order."""
    return [fetch_one(n, cache, force, log) for n in names]


# ---- host pieces ----------------------------------------------------------------------------

@dataclass(frozen=True)
class HostPiece:
    """One program the vm backend needs on the host, and the package that provides it."""

    name: str
    package: str
    present: bool
    needed_for: str


def _static_busybox() -> bool:
    for path in ("/bin/busybox", "/usr/bin/busybox"):
        if os.access(path, os.X_OK):
            proc = subprocess.run(["ldd", path], capture_output=True, text=True, check=False)
            if proc.returncode != 0:  # "not a dynamic executable"
                return True
    return False


def check_host() -> list[HostPiece]:
    """Every host piece, present or not."""
    python = os.environ.get("HUGETLBSIM_VM_PYTHON", "/usr/bin/python3.11")
    return [
        HostPiece("qemu-system-x86_64", "qemu-system-x86",
                  shutil.which("qemu-system-x86_64") is not None, "booting guests"),
        HostPiece("busybox (static)", "busybox-static", _static_busybox(), "the guest's /init"),
        HostPiece(python, "python3.11-minimal", os.access(python, os.X_OK),
                  "the guest's Python"),
        HostPiece("zstd", "zstd", shutil.which("zstd") is not None,
                  "extracting 6.12 kernel images"),
        HostPiece("apt-get", "apt", shutil.which("apt-get") is not None, "fetching kernels"),
        HostPiece("dpkg-deb", "dpkg", shutil.which("dpkg-deb") is not None,
                  "unpacking kernels"),
    ]


def missing_host_pieces() -> list[HostPiece]:
    """The host pieces that are missing."""
    return [p for p in check_host() if not p.present]


def install_command(pieces: Iterable[HostPiece] | None = None) -> str | None:
    """The one command that installs the missing pieces (None if nothing is missing)."""
    missing = list(missing_host_pieces() if pieces is None else pieces)
    if not missing:
        return None
    packages = " ".join(dict.fromkeys(p.package for p in missing))
    return f"apt-get update && apt-get install -y {packages}"
