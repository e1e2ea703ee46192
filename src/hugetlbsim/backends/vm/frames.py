"""The protocol between host and guest: scenarios as JSON, results as checksummed frames.

The host sends a batch of scenarios (`scenario_to_wire`) in a file of the initramfs; the guest
writes its answers to its second serial port, one frame per line::

    HSIM1 <kind> <length> <sha256 hex> <payload>\\n

where the payload is base64 of the zlib-compressed JSON object, ``length`` its length in bytes
and ``sha256`` its digest.  The host accepts a frame only if every part checks out
(`decode_frame`); anything else on the port, or bytes after the last complete line when the
guest has stopped, is a `FrameError`, never a trace.  This module runs in the guest too: it
imports nothing but the standard library and `hugetlbsim.format.scenario`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import hashlib
import json
import os
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hugetlbsim.format.scenario import Scenario, Step

__all__ = [
    "KINDS",
    "MAGIC",
    "Frame",
    "FrameError",
    "FrameParser",
    "FrameWriter",
    "decode_frame",
    "encode_frame",
    "scenario_from_wire",
    "scenario_to_wire",
]

MAGIC = b"HSIM1"
KINDS = frozenset({"hello", "begin", "trace", "error", "broken", "end"})
"""hello: the guest is up (uname, python, uptime); begin: scenario ``i`` starts; trace: its
steps; error: it could not run; broken: the pool is not idle after it (the guest stops); end:
the guest has finished its batch."""
MAX_LINE = 64 << 20


class FrameError(ValueError):
    """A record on the result port is truncated, garbled or not a frame at all."""


@dataclass(frozen=True)
class Frame:
    """One decoded record."""

    kind: str
    body: dict[str, Any]


def encode_frame(kind: str, body: Mapping[str, Any]) -> bytes:
    """One frame, newline included."""
    if kind not in KINDS:
        raise ValueError(f"unknown frame kind {kind!r}")
    raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    payload = base64.b64encode(zlib.compress(raw, 6))
    digest = hashlib.sha256(payload).hexdigest().encode()
    return b" ".join((MAGIC, kind.encode(), str(len(payload)).encode(), digest, payload)) + b"\n"


def decode_frame(line: bytes) -> Frame:
    """Check and decode one line (without its newline); raise `FrameError` on anything odd."""
    if line.endswith(b"\r"):  # a serial line discipline may turn \n into \r\n
        line = line[:-1]
    parts = line.split(b" ")
    if len(parts) != 5 or parts[0] != MAGIC:
        raise FrameError(f"not a frame: {line[:60]!r}")
    kind_b, length_b, digest_b, payload = parts[1:]
    kind = kind_b.decode("ascii", "replace")
    if kind not in KINDS:
        raise FrameError(f"unknown frame kind {kind!r}")
    if not length_b.isdigit() or int(length_b) != len(payload):
        raise FrameError(f"{kind} frame: length field {length_b[:20]!r}, payload has "
                         f"{len(payload)} bytes")
    if hashlib.sha256(payload).hexdigest().encode() != digest_b:
        raise FrameError(f"{kind} frame: sha256 mismatch")
    try:
        d = zlib.decompressobj()
        raw = d.decompress(base64.b64decode(payload, validate=True))
        if not d.eof or d.unused_data:
            raise FrameError(f"{kind} frame: incomplete or trailing compressed data")
        body = json.loads(raw)
    except (binascii.Error, zlib.error, UnicodeDecodeError, ValueError) as e:
        if isinstance(e, FrameError):
            raise
        raise FrameError(f"{kind} frame: undecodable payload ({e})") from e
    if not isinstance(body, dict):
        raise FrameError(f"{kind} frame: payload is not a JSON object")
    return Frame(kind, body)


class FrameParser:
    """Frames out of a byte stream that arrives in pieces (the guest's port, as a file)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._error: FrameError | None = None
        self.consumed = 0
        """Bytes of the stream taken as complete frames."""

    def feed(self, data: bytes) -> list[Frame]:
        """The frames completed by ``data``, up to the first bad line: that one raises
        `FrameError` here if no good frame precedes it, else at the next `feed` or `check`."""
        self.check()
        self._buf += data
        frames: list[Frame] = []
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                if len(self._buf) > MAX_LINE:
                    self._error = FrameError(f"a line of more than {MAX_LINE} bytes")
                break
            try:
                frames.append(decode_frame(bytes(self._buf[:nl])))
            except FrameError as e:
                self._error = FrameError(f"at byte {self.consumed}: {e}")
                break
            del self._buf[:nl + 1]
            self.consumed += nl + 1
        if not frames:
            self.check()
        return frames

    def check(self) -> None:
        """Raise the `FrameError` met by an earlier `feed`, if any."""
        if self._error is not None:
            raise self._error

    def finish(self) -> None:
        """The stream has ended: anything after the last newline is a truncated frame."""
        self.check()
        if self._buf:
            raise FrameError(f"truncated record: {len(self._buf)} bytes after byte "
                             f"{self.consumed} ({bytes(self._buf[:40])!r}...)")


class FrameWriter:
    """The guest's side: frames written to a serial port (raw mode) or a plain file."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_NOCTTY | os.O_APPEND | os.O_CREAT, 0o600)
        self._tty = os.isatty(self.fd)
        if self._tty:
            import termios

            attrs = termios.tcgetattr(self.fd)
            attrs[1] &= ~termios.OPOST  # no \n -> \r\n
            termios.tcsetattr(self.fd, termios.TCSANOW, attrs)

    def send(self, kind: str, body: Mapping[str, Any]) -> None:
        """Write one whole frame."""
        data = memoryview(encode_frame(kind, body))
        while data:
            n = os.write(self.fd, data)
            data = data[n:]

    def close(self) -> None:
        """Wait until the port has sent everything, then close it."""
        if self._tty:
            import termios

            termios.tcdrain(self.fd)
        else:
            with contextlib.suppress(OSError):
                os.fsync(self.fd)
        os.close(self.fd)


def scenario_to_wire(scenario: Scenario, index: int) -> dict[str, Any]:
    """A scenario as the guest receives it: every field but the expectations."""
    item: dict[str, Any] = {"i": index}
    for f in dataclasses.fields(Scenario):
        if f.name != "steps":
            item[f.name] = getattr(scenario, f.name)
    item["extra"] = json.loads(json.dumps(scenario.extra, default=str))
    item["steps"] = [[s.index, s.op, dict(s.args), s.line] for s in scenario.steps]
    return item


def scenario_from_wire(item: Mapping[str, Any]) -> Scenario:
    """The guest's `Scenario` (no expectations)."""
    known = {f.name for f in dataclasses.fields(Scenario)} - {"steps"}
    return Scenario(
        steps=tuple(Step(index=i, op=op, args=dict(args), line=line)
                    for i, op, args, line in item["steps"]),
        **{k: v for k, v in item.items() if k in known})
