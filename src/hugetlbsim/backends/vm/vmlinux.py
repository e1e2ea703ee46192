"""The uncompressed ELF kernel out of a bzImage, so qemu boots it through its PVH entry.

Under TCG a guest decompressing its own kernel costs seconds; qemu's ``-kernel`` takes an ELF
``vmlinux`` directly when the image carries the Xen PVH entry note (Debian's kernels do).  A
bzImage's setup header says where its compressed payload lies (``payload_offset`` and
``payload_length``, boot protocol 2.08); the payload is gzip, xz, lzma, bzip2 or zstd, and
every format but gzip ends in the decompressed size (little-endian 32 bits, the build's
``size_append``), which is checked.  Debian's 6.1 kernels are lz4 (legacy frames), decoded
here in Python.  Without a usable header the payload is found by its
compression magic, as ``scripts/extract-vmlinux`` does.  zstd, which Python 3.11 lacks, is
decompressed by the ``zstd`` program.
"""

from __future__ import annotations

import bz2
import lzma
import shutil
import struct
import subprocess
import zlib
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "MAGICS", "ElfInfo", "VmlinuxError", "elf_info", "extract_vmlinux", "lz4_block",
]

ELF_MAGIC = b"\x7fELF"
EM_X86_64 = 62
PT_NOTE = 4
XEN_ELFNOTE_PHYS32_ENTRY = 18

MAGICS: dict[str, bytes] = {
    "gzip": b"\x1f\x8b\x08",
    "xz": b"\xfd7zXZ\x00",
    "zstd": b"\x28\xb5\x2f\xfd",
    "bzip2": b"BZh",
    "lz4": b"\x02\x21\x4c\x18",
    "lzma": b"\x5d\x00\x00",
}
"""Compression formats of the x86 kernel build (lz4 is the legacy frame format that the
kernel's ``lz4 -l`` writes; lzo is not supported)."""


class VmlinuxError(ValueError):
    """The image holds no extractable ELF kernel."""


@dataclass(frozen=True)
class ElfInfo:
    """What was checked of an extracted kernel."""

    machine: int
    pvh: bool
    """It has the PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY): qemu can boot it as ``-kernel``."""


def _gunzip(data: bytes) -> bytes:
    d = zlib.decompressobj(wbits=31)
    out = d.decompress(data)
    if not d.eof:
        raise VmlinuxError("gzip payload is truncated")
    return out


def _unxz(data: bytes) -> bytes:
    d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    out = d.decompress(data)
    if not d.eof:
        raise VmlinuxError("xz payload is truncated")
    return out


def _unlzma(data: bytes) -> bytes:
    d = lzma.LZMADecompressor(format=lzma.FORMAT_ALONE)
    return d.decompress(data)


def _bunzip2(data: bytes) -> bytes:
    d = bz2.BZ2Decompressor()
    out = d.decompress(data)
    if not d.eof:
        raise VmlinuxError("bzip2 payload is truncated")
    return out


def _unzstd(data: bytes) -> bytes:
    exe = shutil.which("zstd")
    if exe is None:
        raise VmlinuxError("the kernel image is zstd-compressed and the zstd program is "
                           "missing: apt-get install -y zstd")
    proc = subprocess.run([exe, "-d", "-c", "-q"], input=data, capture_output=True,
                          check=False)
    if proc.returncode != 0:
        raise VmlinuxError(f"zstd failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


LZ4_LEGACY_MAGIC = 0x184C2102


def lz4_block(src: bytes | memoryview, out: bytearray) -> None:
    """Append the decompression of one raw LZ4 block to ``out``."""
    pos, end = 0, len(src)
    while pos < end:
        token = src[pos]
        pos += 1
        lit = token >> 4
        if lit == 15:
            while True:
                b = src[pos]
                pos += 1
                lit += b
                if b != 255:
                    break
        if pos + lit > end:
            raise VmlinuxError("lz4 literals run past the end of the block")
        out += src[pos:pos + lit]
        pos += lit
        if pos >= end:
            break  # the last sequence has literals only
        offset = src[pos] | src[pos + 1] << 8
        pos += 2
        length = token & 15
        if length == 15:
            while True:
                b = src[pos]
                pos += 1
                length += b
                if b != 255:
                    break
        length += 4
        if offset == 0 or offset > len(out):
            raise VmlinuxError("lz4 match offset out of range")
        start = len(out) - offset
        if offset >= length:
            out += out[start:start + length]
        else:
            chunk = out[start:]
            reps, rest = divmod(length, offset)
            out += chunk * reps + chunk[:rest]


def _unlz4(data: bytes) -> bytes:
    """The legacy LZ4 frame: magic, then blocks each preceded by their 32-bit size (pure
    Python: about a second for a 50 MB kernel, whose blocks are 8 MB)."""
    if struct.unpack_from("<I", data, 0)[0] != LZ4_LEGACY_MAGIC:
        raise VmlinuxError("not an lz4 legacy frame")
    out = bytearray()
    view = memoryview(data)
    pos = 4
    while pos + 4 <= len(data):
        size = struct.unpack_from("<I", data, pos)[0]
        pos += 4
        if size == LZ4_LEGACY_MAGIC:
            continue
        if pos + size > len(data):
            raise VmlinuxError("lz4 block runs past the end of the payload")
        lz4_block(view[pos:pos + size], out)
        pos += size
    if pos != len(data):
        raise VmlinuxError("lz4 payload ends inside a block header")
    return bytes(out)


_DECOMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": _gunzip, "xz": _unxz, "zstd": _unzstd, "bzip2": _bunzip2, "lz4": _unlz4,
    "lzma": _unlzma,
}


def elf_info(image: bytes) -> ElfInfo:
    """Check an x86-64 ELF executable and look for the PVH entry note."""
    if image[:4] != ELF_MAGIC:
        raise VmlinuxError("not an ELF file")
    if image[4] != 2 or image[5] != 1:
        raise VmlinuxError("not a 64-bit little-endian ELF file")
    machine = struct.unpack_from("<H", image, 18)[0]
    if machine != EM_X86_64:
        raise VmlinuxError(f"ELF machine {machine} is not x86-64")
    phoff = struct.unpack_from("<Q", image, 32)[0]
    phentsize, phnum = struct.unpack_from("<HH", image, 54)
    pvh = False
    for i in range(phnum):
        base = phoff + i * phentsize
        if base + 56 > len(image):
            raise VmlinuxError("ELF program headers lie beyond the end of the file")
        p_type = struct.unpack_from("<I", image, base)[0]
        if p_type != PT_NOTE:
            continue
        offset, _, _, filesz = struct.unpack_from("<QQQQ", image, base + 8)
        pvh = pvh or _has_pvh_note(image[offset:offset + filesz])
    return ElfInfo(machine, pvh)


def _has_pvh_note(notes: bytes) -> bool:
    pos = 0
    while pos + 12 <= len(notes):
        namesz, descsz, ntype = struct.unpack_from("<III", notes, pos)
        name = notes[pos + 12:pos + 12 + namesz].rstrip(b"\0")
        if name == b"Xen" and ntype == XEN_ELFNOTE_PHYS32_ENTRY:
            return True
        pos += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return False


def _header_payload(image: bytes) -> tuple[int, int] | None:
    """(offset, length) of the compressed payload per the bzImage setup header, if any."""
    if len(image) < 0x250 or image[0x202:0x206] != b"HdrS":
        return None
    version = struct.unpack_from("<H", image, 0x206)[0]
    if version < 0x208:
        return None
    setup_sects = image[0x1F1] or 4
    offset, length = struct.unpack_from("<II", image, 0x248)
    start = (setup_sects + 1) * 512 + offset
    if length == 0 or start + length > len(image):
        return None
    return start, length


def _format_of(payload: bytes) -> str | None:
    for name, magic in MAGICS.items():
        if payload.startswith(magic):
            return name
    return None


def _decompress_checked(fmt: str, payload: bytes) -> bytes:
    if fmt == "gzip":
        out = _gunzip(payload)
        isize = struct.unpack_from("<I", payload, len(payload) - 4)[0]
        if isize != len(out) & 0xFFFFFFFF:
            raise VmlinuxError("gzip payload size does not match its trailer")
        return out
    # Every other format carries the decompressed size in its last four bytes.
    size = struct.unpack_from("<I", payload, len(payload) - 4)[0]
    out = _DECOMPRESS[fmt](payload[:-4])
    if len(out) != size:
        raise VmlinuxError(f"{fmt} payload decompressed to {len(out)} bytes, "
                           f"the image says {size}")
    return out


def extract_vmlinux(image: bytes) -> tuple[bytes, ElfInfo]:
    """The ELF kernel inside a bzImage (or an ELF given as is), checked; with its info."""
    if image[:4] == ELF_MAGIC:
        return image, elf_info(image)
    span = _header_payload(image)
    if span is not None:
        payload = image[span[0]:span[0] + span[1]]
        fmt = _format_of(payload)
        if fmt is None:
            raise VmlinuxError("the bzImage payload has no known compression magic "
                               f"({payload[:6].hex()})")
        out = _decompress_checked(fmt, payload)
        return out, elf_info(out)
    # No header: try every magic where it occurs, as scripts/extract-vmlinux does.
    errors: list[str] = []
    for fmt, magic in MAGICS.items():
        pos = image.find(magic)
        tries = 0
        while pos >= 0 and tries < 8:
            tries += 1
            try:
                out = _DECOMPRESS[fmt](image[pos:])
            except (VmlinuxError, OSError, EOFError, lzma.LZMAError, zlib.error) as e:
                errors.append(f"{fmt}@{pos}: {e}")
            else:
                if out[:4] == ELF_MAGIC:
                    return out, elf_info(out)
            pos = image.find(magic, pos + 1)
    raise VmlinuxError("no compressed ELF kernel found in the image"
                       + (f" ({'; '.join(errors[:3])})" if errors else ""))
