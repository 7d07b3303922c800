"""Reading an HTTP request under one deadline (the service's server uses it for every request)."""

from __future__ import annotations

import io
import socket
import time
from typing import Any

__all__ = ["DeadlineReader"]


class DeadlineReader(io.RawIOBase):
    """A socket reader that fails once the handler's deadline has passed, however the bytes trickle in
    (a socket timeout alone restarts with every byte: a client sending one byte a second never times out)."""

    def __init__(self, sock: socket.socket, handler: Any):
        self._sock, self._handler = sock, handler

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        remaining = self._handler.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request took longer than the deadline")
        self._sock.settimeout(remaining)
        n = self._sock.recv_into(buffer)
        self._handler.received += n
        return n
