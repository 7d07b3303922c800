"""Server-sent events for the status page: a hub the service's run listener publishes to, and the stream
one ``GET /events`` connection is written from (one thread per stream, as the standard library's server
gives every connection).

Publishing never blocks a worker: each stream has a small bounded queue, and a stream too slow to take
an event is told to reload instead (``event: resync``). Every stream sends a heartbeat (an ``event:
heartbeat``, so the page can tell a dead connection from a quiet service) and a ``retry`` hint; the page
reconnects with a backoff of its own. :meth:`EventHub.close` ends every stream at shutdown.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import orjson

__all__ = ["EventHub", "Subscription", "MAX_STREAMS", "HEARTBEAT"]

MAX_STREAMS = 200  # open streams at most (each holds a thread); more get 503
HEARTBEAT = 15.0  # seconds between heartbeats
_QUEUE = 64
_CLOSED = object()


class Subscription:
    """One open stream's queue of pending events."""

    def __init__(self) -> None:
        self.queue: queue.Queue[object] = queue.Queue(_QUEUE)
        self.overflowed = False

    def offer(self, item: object) -> bool:
        """Queue ``item`` unless the queue is full (then the stream is marked to resync); never blocks."""
        try:
            self.queue.put_nowait(item)
            return True
        except queue.Full:
            self.overflowed = True
            return False


class EventHub:
    """Every open stream, and the events published to them."""

    def __init__(self, *, heartbeat: float = HEARTBEAT, max_streams: int = MAX_STREAMS):
        self.heartbeat, self.max_streams = heartbeat, max_streams
        self._lock = threading.Lock()
        self._subs: set[Subscription] = set()
        self._seq = 0
        self._closed = False

    def __len__(self) -> int:
        return len(self._subs)

    def subscribe(self) -> Subscription | None:
        """A new stream's subscription, or None when there are ``max_streams`` already (or the hub is closed)."""
        with self._lock:
            if self._closed or len(self._subs) >= self.max_streams:
                return None
            sub = Subscription()
            self._subs.add(sub)
            return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)

    def publish(self, kind: str, data: dict) -> None:
        """Queue an event for every stream (never blocks: a full queue marks its stream for a resync)."""
        with self._lock:
            self._seq += 1
            event = _event(kind, {**data, "seq": self._seq})
            subs = list(self._subs)
        for sub in subs:
            sub.offer(event)

    def on_run(self, env: str, result: str) -> None:
        """The service's run listener: a reconcile of ``env`` ended with ``result``."""
        self.publish("run", {"environment": env, "result": result})

    def close(self) -> None:
        """End every stream (shutdown)."""
        with self._lock:
            self._closed = True
            subs = list(self._subs)
        for sub in subs:
            if not sub.offer(_CLOSED):  # full: the end must still get through
                sub.queue.get_nowait()
                sub.queue.put_nowait(_CLOSED)

    def stream(self, sub: Subscription) -> Iterator[bytes]:
        """The bytes of one stream: the hello, then events and heartbeats, until the hub closes."""
        yield b"retry: 1000\n" + _event("hello", {"heartbeat": self.heartbeat})
        while not self._closed:
            try:
                item = sub.queue.get(timeout=self.heartbeat)
            except queue.Empty:
                yield _event("heartbeat", {})
                continue
            if sub.overflowed:  # events were dropped: what is queued is stale too; one resync says it all
                sub.overflowed = False
                while item is not _CLOSED and not sub.queue.empty():
                    item = sub.queue.get_nowait()
                if item is _CLOSED:
                    return
                yield _event("resync", {})
                continue
            if item is _CLOSED:
                return
            assert isinstance(item, bytes)
            yield item


def _event(kind: str, data: dict) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
