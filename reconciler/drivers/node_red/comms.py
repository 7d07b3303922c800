"""Node-RED's ``/comms`` websocket, as the health gate reads it (standard library only).

What the editor sees of the runtime: after ``{"auth": token}`` is answered
``{"auth": "ok"}`` (adminAuth; without adminAuth nothing is asked), every live
message (``debug``, ``status/<id>``, ``notification/...``) reaches the
connection, and a ``{"subscribe": topic}`` is answered with the retained
messages of that topic (``notification/runtime-state``, then always
``notification/runtime-deploy``). Each text frame is a JSON list of
``{"topic", "data"}``; the keep-alive ``hb`` messages are dropped here, pings
are answered.

Errors: a connection that cannot be made, or a handshake that is not a
websocket, is an :class:`OSError` (the caller makes it a ``RetryableError``
naming the URL); a token refused is a :class:`CommsRefused`. The token is
never part of a message.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import ssl
import struct
import time
import urllib.parse
from typing import Any

import orjson

__all__ = ["Comms", "CommsRefused"]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_FRAME = 16 * 1024 * 1024  # a /comms frame is a batch of small messages


class CommsRefused(Exception):
    """Node-RED refused the token on /comms."""


class Comms:
    """One authenticated /comms connection (``url``: the Admin API's base URL)."""

    def __init__(self, url: str, token: str | None, *, timeout: float):
        parts = urllib.parse.urlsplit(url)
        host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
        raw = socket.create_connection((host, port), timeout=timeout)
        if parts.scheme == "https":
            raw = ssl.create_default_context().wrap_socket(raw, server_hostname=host)
        self._sock = raw
        self._buf = b""
        try:
            self._handshake(f"{parts.path.rstrip('/')}/comms", f"{host}:{port}")
            if token is not None:
                self.send({"auth": token})
                answer = self._frame(time.monotonic() + timeout)
                if not (isinstance(answer, dict) and answer.get("auth") == "ok"):
                    raise CommsRefused("the token was refused on /comms")
        except BaseException:
            self.close()
            raise

    def _handshake(self, path: str, host: str) -> None:
        key = base64.b64encode(os.urandom(16))
        self._sock.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: " + host.encode() +
                           b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
                           b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
        while b"\r\n\r\n" not in self._buf:
            chunk = self._sock.recv(4096)
            if not chunk or len(self._buf) > 65536:
                raise OSError("the websocket handshake of /comms was cut off")
            self._buf += chunk
        head, self._buf = self._buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        if not lines[0].startswith(b"HTTP/1.1 101"):
            raise OSError(f"/comms is not a websocket here (answered {lines[0][:60].decode(errors='replace')!r})")
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        if not any(line.lower().startswith(b"sec-websocket-accept:") and line.split(b":", 1)[1].strip() == accept
                   for line in lines[1:]):
            raise OSError("/comms answered the websocket handshake with a wrong Sec-WebSocket-Accept")

    def send(self, obj: Any, opcode: int = 1) -> None:
        payload = orjson.dumps(obj) if opcode == 1 else obj
        mask, n = os.urandom(4), len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self._sock.sendall(head + mask + masked)

    def subscribe(self, topic: str) -> None:
        self.send({"subscribe": topic})

    def _read(self, n: int, deadline: float) -> bytes | None:
        while len(self._buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._sock.settimeout(left)
            try:
                chunk = self._sock.recv(65536)
            except (TimeoutError, socket.timeout):
                return None
            if not chunk:
                raise EOFError("Node-RED closed /comms")
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def _frame(self, deadline: float) -> Any:
        """The next text message (parsed JSON), or None at the deadline. A frame cut by the deadline is
        finished reading afterwards (a frame is small), so the stream never loses its place."""
        message = b""
        while True:
            head = self._read(2, deadline)
            if head is None:
                return None
            later = max(deadline, time.monotonic() + 5)
            b0, b1 = head
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._read(2, later) or b"\0\0")[0]
            elif n == 127:
                n = struct.unpack("!Q", self._read(8, later) or b"\0" * 8)[0]
            if n > _MAX_FRAME:
                raise OSError(f"/comms sent a frame of {n} bytes")
            payload = self._read(n, later) if n else b""
            if payload is None:
                raise OSError("/comms stopped in the middle of a frame")
            opcode = b0 & 0x0F
            if opcode == 8:
                raise EOFError("Node-RED closed /comms")
            if opcode == 9:
                self.send(payload, opcode=10)
                continue
            if opcode in (0, 1):
                message += payload
                if b0 & 0x80:  # the final fragment
                    try:
                        return orjson.loads(message)
                    except orjson.JSONDecodeError:
                        message = b""

    def messages(self, deadline: float) -> list[tuple[str, Any]] | None:
        """The (topic, data) of the next frame (heartbeats dropped), or None at the deadline."""
        while True:
            frame = self._frame(deadline)
            if frame is None:
                return None
            if isinstance(frame, list):
                return [(m.get("topic"), m.get("data")) for m in frame
                        if isinstance(m, dict) and m.get("topic") != "hb"]

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass
