"""The outbox's listener: one thread in one Celery worker turns NOTIFY announcements of
committed events (``shop.outbox``, listen mode) into dispatch tasks.

It holds an advisory lock while it listens, so one worker per database listens; a listener
that takes over (a worker started, or another one died) first dispatches every event left
undispatched, so a worker restart does not wait for the sweeper.
"""

from __future__ import annotations

import logging
import select
import threading

from celery import bootsteps
from django.conf import settings
from django.db import connections
from django.utils import timezone

from shop import tasks
from shop.outbox import EVENTS_CHANNEL, dispatch_listens, orders_with_undispatched_events

logger = logging.getLogger(__name__)

# pg_try_advisory_lock key: one listener per database, whichever worker holds it.
LISTENER_LOCK = 0x6B616D656E67  # "kameng"


MAX_BATCH = 25


def _batches(order_ids: list[int], *, parts: int) -> list[list[int]]:
    """Split announced orders into one batch per pool process (at most MAX_BATCH each), so every
    process of the worker has a share."""
    if not order_ids:
        return []
    size = min(max(-(-len(order_ids) // parts), 1), MAX_BATCH)
    return [order_ids[start : start + size] for start in range(0, len(order_ids), size)]


class OutboxListener(threading.Thread):
    """LISTENs for announced events on its own connection while it holds the listener lock, and
    sends their orders' dispatch tasks. Reconnects after a database error; gives the lock up when stopped."""

    def __init__(
        self,
        *,
        concurrency: int = 1,
        poll_seconds: float = 1.0,
        retry_seconds: float = 2.0,
        batch_window_seconds: float = 0.02,
    ) -> None:
        super().__init__(name="kameng-outbox-listener", daemon=True)
        self.concurrency = max(concurrency, 1)
        self.poll_seconds = poll_seconds
        self.retry_seconds = retry_seconds
        self.batch_window_seconds = batch_window_seconds
        self.stopping = threading.Event()
        self.leading = threading.Event()

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self._listen()
            except Exception:  # a database or broker error: the sweeper covers the gap
                logger.warning("outbox listener stopped; retrying", exc_info=True)
            finally:
                self.leading.clear()
                connections.close_all()
            self.stopping.wait(self.retry_seconds)

    def _listen(self) -> None:
        wrapper = connections.create_connection("default")
        raw = wrapper.get_new_connection(wrapper.get_connection_params())
        raw.autocommit = True
        try:
            with raw.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_lock(%s)", [LISTENER_LOCK])
                if not cursor.fetchone()[0]:
                    return  # another worker listens; try again later, it may go away
                cursor.execute(f"LISTEN {EVENTS_CHANNEL}")
            self.leading.set()
            waiting = orders_with_undispatched_events(cutoff=timezone.now())
            for batch in _batches(waiting, parts=self.concurrency):
                tasks.order_events_dispatch.send_quietly(batch)
            if waiting:
                logger.info("outbox listener: sent %d orders with undispatched events", len(waiting))

            while not self.stopping.is_set():
                if not select.select([raw], [], [], self.poll_seconds)[0]:
                    continue
                # Let the events of the next few milliseconds join this batch: one task for
                # several orders costs the broker and the pool once.
                self.stopping.wait(self.batch_window_seconds)
                raw.poll()
                order_ids = sorted({int(note.payload) for note in raw.notifies if note.payload.isdigit()})
                raw.notifies.clear()
                for batch in _batches(order_ids, parts=self.concurrency):
                    tasks.order_events_dispatch.send_quietly(batch)
        finally:
            raw.close()


class OutboxListenerStep(bootsteps.StartStopStep):
    """Runs the listener in the worker's main process when DELIVERY_DISPATCH is ``listen``."""

    requires = ("celery.worker.components:Pool",)

    def include_if(self, worker) -> bool:
        return dispatch_listens()

    def create(self, worker):
        self.listener = OutboxListener(
            concurrency=worker.concurrency or 1, batch_window_seconds=settings.DELIVERY_DISPATCH_BATCH_MS / 1000
        )
        return self

    def start(self, worker) -> None:
        self.listener.start()

    def stop(self, worker) -> None:
        self.listener.stop()
        self.listener.join(timeout=5)
