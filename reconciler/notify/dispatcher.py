"""The service's :class:`~reconciler.events.Notifier`: events queued at once, delivered by one thread.

What it promises:

- :meth:`Dispatcher.publish` returns at once and never raises: it runs the
  sinks' filters, turns the event into deliveries and queues them; a reconcile
  never waits for a receiver, however slow or broken;
- **one thread** delivers, oldest first, through each sink's HTTP client (which
  retries quickly on its own); a delivery that fails with something transient
  is queued again after a delay (``retry_base``, doubling up to ``retry_max``,
  ``retries`` times), one that cannot land (a refused token, a 4xx) fails at once;
- the queue is **bounded** (``queue_size``): when full, the oldest delivery is
  dropped, logged and counted;
- a commit status that a newer one of the same context and commit has replaced
  on the forge is not sent again by a late retry;
- :meth:`Dispatcher.stop` flushes: no new events, what is queued gets one more
  try (retry delays skipped) until the deadline; what is left is dropped and counted.

Each delivery is counted once in ``reconciler_notifications_total{sink,result}``
(delivered, failed, dropped). Logs name the sink and what was sent, never a
credential.
"""

from __future__ import annotations

import bisect
import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from reconciler.events import Event

from reconciler.logsetup import get_logger
from .settings import DeliverySettings
from .sinks import Delivery, DeliveryFailed, Sink, build_sinks

if TYPE_CHECKING:
    from reconciler.config import Config
    from reconciler.metrics import Metrics
    from reconciler.redaction import Redactor

__all__ = ["Dispatcher"]

log = get_logger("reconciler.notify")


@dataclass(order=True)
class _Item:
    seq: int
    due: float = field(compare=False)
    attempt: int = field(compare=False)
    sink: Sink = field(compare=False)
    delivery: Delivery = field(compare=False)


class Dispatcher:
    """Delivers events to sinks in the background (the promises are in the module docstring)."""

    def __init__(self, sinks: Sequence[Sink], *, metrics: "Metrics | None" = None,
                 settings: DeliverySettings = DeliverySettings(), clock: Callable[[], float] = time.monotonic):
        self.sinks, self.metrics, self.settings, self.clock = tuple(sinks), metrics, settings, clock
        self._cond = threading.Condition()
        self._items: list[_Item] = []  # sorted by seq: the oldest first
        self._seq = itertools.count()
        self._landed: OrderedDict[tuple[str, Hashable], int] = OrderedDict()  # key -> seq of the newest delivered
        self._closed = False  # stop() was called: no new events
        self._deadline: float | None = None  # flushing until then
        self._thread: threading.Thread | None = None
        self._busy = False
        if metrics is not None:
            for sink in self.sinks:
                metrics.register_sink(sink.name)

    @classmethod
    def from_config(cls, config: "Config", *, metrics: "Metrics | None" = None, redactor: "Redactor | None" = None,
                    settings: DeliverySettings = DeliverySettings()) -> "Dispatcher":
        """The sinks of ``[[notify]]``; every credential they read is added to ``redactor``."""
        sinks = build_sinks(config.notify, settings, seen=redactor.add if redactor is not None else None)
        return cls(sinks, metrics=metrics, settings=settings)

    # -- the Notifier port -----------------------------------------------------------

    def publish(self, event: Event) -> None:
        try:
            with self._cond:
                if self._closed:
                    log.info("notification not sent: stopping", kind=event.kind, environment=event.environment)
                    return
                for sink in self.sinks:
                    if sink.settings.wants(event.kind, event.environment):
                        for delivery in sink.deliveries(event):
                            self._enqueue(sink, delivery)
                self._cond.notify_all()
        except Exception:  # noqa: BLE001 - a notification must never fail a reconcile
            log.exception("could not queue a notification", kind=event.kind, environment=event.environment)

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start the delivery thread (only when there is a sink to deliver to); say which sinks lack a credential."""
        for sink in self.sinks:
            problem = sink.problem()
            if problem is not None:
                log.warning("notifications will fail until this is fixed", sink=sink.name, problem=problem)
        if self.sinks and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="notify", daemon=True)
            self._thread.start()

    def stop(self, timeout: float) -> bool:
        """Take no more events, deliver what is queued within ``timeout`` seconds; True if everything was."""
        with self._cond:
            self._closed = True
            self._deadline = self.clock() + max(0.0, timeout)
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(max(0.0, timeout))
        with self._cond:
            left, self._items = self._items, []
            self._deadline = self.clock()  # a thread still in a request stops after it
            self._cond.notify_all()
        for item in left:
            self._count(item.sink.name, "dropped")
        if left:
            log.warning("notifications not delivered before the deadline, dropped", count=len(left),
                        sinks=sorted({i.sink.name for i in left}))
        busy = self._thread is not None and self._thread.is_alive()
        if not busy:
            for sink in self.sinks:
                sink.close()
        return not left and not busy

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing is queued or in flight, or ``timeout`` passed (tests; ``stop`` for shutdown)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._items or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    @property
    def queued(self) -> int:
        with self._cond:
            return len(self._items)

    # -- the queue ---------------------------------------------------------------------

    def _enqueue(self, sink: Sink, delivery: Delivery) -> None:
        """Called holding the lock."""
        while len(self._items) >= self.settings.queue_size:
            old = self._items.pop(0)
            self._count(old.sink.name, "dropped")
            log.warning("notification queue full, dropped the oldest", sink=old.sink.name, what=old.delivery.what,
                        queue_size=self.settings.queue_size)
        self._items.append(_Item(next(self._seq), 0.0, 0, sink, delivery))

    def _take(self) -> _Item | None:
        """The oldest delivery that is due, waiting for one; None when stopped (or flushed)."""
        with self._cond:
            self._busy = False
            self._cond.notify_all()
            while True:
                now = self.clock()
                flushing = self._deadline is not None
                if flushing and now >= self._deadline:
                    return None
                for i, item in enumerate(self._items):
                    if flushing or item.due <= now:
                        self._busy = True
                        return self._items.pop(i)
                if flushing:
                    return None  # everything was delivered
                wait = min((item.due for item in self._items), default=None)
                self._cond.wait(None if wait is None else max(0.0, wait - now))

    def _run(self) -> None:
        while (item := self._take()) is not None:
            try:
                self._deliver(item)
            except Exception:  # noqa: BLE001 - a bug in a sink must not end delivery for every sink
                self._count(item.sink.name, "failed")
                log.exception("notification crashed", sink=item.sink.name, what=item.delivery.what)

    def _deliver(self, item: _Item) -> None:
        from reconciler.worker import retry_delay  # the worker's backoff rule (worker imports config, which imports us)

        sink, delivery = item.sink, item.delivery
        key = (sink.name, delivery.key) if delivery.key is not None else None
        with self._cond:
            if key is not None and self._landed.get(key, -1) > item.seq:
                log.debug("notification replaced by a newer one", sink=sink.name, what=delivery.what)
                return
        try:
            sink.send(delivery)
        except DeliveryFailed as exc:
            with self._cond:
                again = exc.retry and item.attempt < self.settings.retries and self._deadline is None
                if again:
                    delay = retry_delay(item.attempt + 1, self.settings.retry_base, self.settings.retry_max)
                    item.attempt, item.due = item.attempt + 1, self.clock() + delay
                    bisect.insort(self._items, item)
            if again:
                log.warning("notification failed, will retry", sink=sink.name, what=delivery.what, error=exc.message,
                            attempt=item.attempt, retry_in=delay)
            else:
                self._count(sink.name, "failed")
                log.error("notification failed", sink=sink.name, what=delivery.what, error=exc.message,
                          attempts=item.attempt + 1)
            return
        with self._cond:
            if key is not None:
                self._landed[key] = max(item.seq, self._landed.get(key, -1))
                self._landed.move_to_end(key)
                while len(self._landed) > 4 * self.settings.queue_size:
                    self._landed.popitem(last=False)
        self._count(sink.name, "delivered")
        log.info("notification delivered", sink=sink.name, what=delivery.what, attempts=item.attempt + 1)

    def _count(self, sink: str, result: str) -> None:
        if self.metrics is not None:
            self.metrics.notified(sink, result)
