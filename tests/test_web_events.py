"""``GET /events``: server-sent events of every finished reconcile, heartbeats, a bounded number of streams,
all ended when the server stops (against the real server in-process, read from a raw socket)."""

from __future__ import annotations

import json
import socket
import time

import pytest

from reconciler.web.events import EventHub
from tests.conftest import Workspace
from tests.webkit import Web, site


class Stream:
    """One event stream read from a socket, event by event."""

    def __init__(self, web: Web, host: str = "127.0.0.1"):
        self.sock = socket.create_connection(web.http.address, timeout=5)
        self.sock.sendall(f"GET /events HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode())
        self.buffer = b""
        head = self._until(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1])
        self.headers = head.decode("latin-1").lower()

    def _until(self, mark: bytes) -> bytes:
        while mark not in self.buffer:
            got = self.sock.recv(65536)
            if not got:
                raise EOFError(self.buffer)
            self.buffer += got
        head, self.buffer = self.buffer.split(mark, 1)
        return head

    def next(self) -> tuple[str, dict]:
        block = self._until(b"\n\n").decode()
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        return fields.get("event", ""), json.loads(fields.get("data", "null") or "null")

    def until(self, kind: str, limit: int = 50) -> dict:
        for _ in range(limit):
            got, data = self.next()
            if got == kind:
                return data
        raise AssertionError(f"no {kind} event")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def web(ws: Workspace):
    site(ws)
    w = Web(ws)
    yield w
    w.close()


def test_a_stream_says_hello_then_tells_of_every_finished_reconcile(web: Web) -> None:
    s = Stream(web)
    try:
        assert s.status == 200 and "content-type: text/event-stream" in s.headers
        assert s.buffer.startswith(b"retry: 1000\n") or s._until(b"retry: 1000\n") == b""
        kind, hello = s.next()
        assert kind == "hello" and hello == {"heartbeat": 0.2}
        web.reconcile("production")
        run = s.until("run")
        assert run["environment"] == "production" and run["result"] == "ok" and run["seq"] >= 1
    finally:
        s.close()


def test_a_quiet_stream_gets_heartbeats(web: Web) -> None:
    s = Stream(web)
    try:
        started = time.monotonic()
        s.until("heartbeat")
        assert time.monotonic() - started < 2
    finally:
        s.close()


def test_streams_are_bounded_and_a_stream_past_the_limit_gets_503(web: Web) -> None:
    web.http.web.events.max_streams = 2
    open_ = [Stream(web), Stream(web)]
    try:
        third = Stream(web)
        assert third.status == 503
        third.close()
        open_[0].close()
        deadline = time.monotonic() + 5
        while len(web.http.web.events) >= 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # the server notices the closed stream at its next write (a heartbeat)
        again = Stream(web)
        assert again.status == 200
        again.close()
    finally:
        for s in open_:
            s.close()


def test_stopping_the_server_ends_every_stream(ws: Workspace) -> None:
    site(ws)
    web = Web(ws)
    streams = [Stream(web) for _ in range(3)]
    web.close()
    for s in streams:
        with pytest.raises((EOFError, ConnectionError)):
            for _ in range(20):
                s.next()
        s.close()


def test_a_slow_stream_is_told_to_resync_and_never_blocks_a_publisher() -> None:
    hub = EventHub(heartbeat=10)
    sub = hub.subscribe()
    assert sub is not None
    started = time.monotonic()
    for i in range(1000):
        hub.on_run("production", "ok")
    assert time.monotonic() - started < 0.5
    chunks = hub.stream(sub)
    assert next(chunks).startswith(b"retry: 1000\nevent: hello")
    assert next(chunks).startswith(b"event: resync\n")  # once, for all it missed
    assert sub.queue.empty()
    hub.on_run("production", "ok")
    assert next(chunks).startswith(b"event: run\n")


def test_posting_to_the_event_stream_is_refused(web: Web) -> None:
    assert web.request("POST", "/events", b"").status == 405
