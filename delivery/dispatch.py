"""How a paid order reaches a Celery worker.

``broker`` (SQLite, the embedded default): the payment's transaction sends the delivery task to
the broker when it commits.

``listen`` (PostgreSQL, the default there): the payment's transaction announces the order with
``NOTIFY kameng_paid`` (PostgreSQL delivers it only if the transaction commits), and one
listener thread in one Celery worker turns announcements into delivery tasks. The web request
no longer talks to the broker (a publish cost more CPU than the rest of the notification's own
work, bench/notify.py), and a payment does not depend on the broker being up at that moment.

Either way the database stays the record: an announcement or a task that is lost (no worker
listening, the broker down) leaves the order ``paid``, and the sweeper re-drives it. A listener
that takes over (a worker started, or another one died) first sends the tasks of every paid
order that is due, so a worker restart does not wait for the sweeper.
"""

from __future__ import annotations

import logging
import select
import threading

from celery import bootsteps
from django.conf import settings
from django.db import connection, connections
from django.utils import timezone

from kameng.sql import statements_run

logger = logging.getLogger(__name__)

PAID_CHANNEL = "kameng_paid"
# pg_try_advisory_lock key: one listener per database, whichever worker holds it.
LISTENER_LOCK = 0x6B616D656E67  # "kameng"


def dispatch_listens() -> bool:
    return settings.DELIVERY_DISPATCH == "listen" and connection.vendor == "postgresql"


_NOTIFY_SQL = "SELECT pg_notify(%s, %s)"


def paid_order_announce(*, order_id: int, statements: list[tuple[str, list]] | None = None) -> None:
    """Get a paid order delivered once the current transaction commits (never raises on broker
    errors; a lost announcement is re-driven by the sweeper). ``statements``: data-modifying
    statements of the caller's to run in the same round trip as the announcement."""
    statements = list(statements or [])
    if dispatch_listens():
        statements_run([*statements, (_NOTIFY_SQL, [PAID_CHANNEL, str(order_id)])])
        return
    if statements:
        statements_run(statements)
    from delivery import tasks

    tasks.order_deliver.delay_on_commit(order_id)


def paid_order_notify_sql(order_id: str) -> str:
    """In listen mode, the SQL expression that announces a paid order from inside the statement
    that pays it (its id in the SQL expression ``order_id``), so that the announcement commits
    with the payment; "" in broker mode, where the caller calls ``paid_order_announce`` after."""
    return f"pg_notify('{PAID_CHANNEL}', ({order_id})::text)" if dispatch_listens() else ""


def paid_orders_catch_up() -> int:
    """Send the delivery task of every paid order that is due now. Returns how many."""
    from delivery.services import paid_orders_send

    return len(paid_orders_send(cutoff=timezone.now()))


MAX_BATCH = 25


def _batches(order_ids: list[int], *, parts: int) -> list[list[int]]:
    """Split announced orders into one batch per pool process (at most MAX_BATCH each), so every
    process of the worker has a share."""
    if not order_ids:
        return []
    size = min(max(-(-len(order_ids) // parts), 1), MAX_BATCH)
    return [order_ids[start : start + size] for start in range(0, len(order_ids), size)]


class PaidOrderListener(threading.Thread):
    """LISTENs for paid orders on its own connection while it holds the listener lock, and sends
    their delivery tasks. Reconnects after a database error; gives the lock up when stopped."""

    def __init__(
        self, *, concurrency: int = 1, poll_seconds: float = 1.0, retry_seconds: float = 2.0, batch_window_seconds: float = 0.02
    ) -> None:
        super().__init__(name="kameng-paid-order-listener", daemon=True)
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
            except Exception:  # noqa: BLE001 - a database or broker error: the sweeper covers the gap
                logger.warning("paid-order listener stopped; retrying", exc_info=True)
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
                cursor.execute(f"LISTEN {PAID_CHANNEL}")
            self.leading.set()
            caught_up = paid_orders_catch_up()
            if caught_up:
                logger.info("paid-order listener: sent %d paid orders waiting for delivery", caught_up)
            from delivery import tasks

            while not self.stopping.is_set():
                if not select.select([raw], [], [], self.poll_seconds)[0]:
                    continue
                # Let the payments of the next few milliseconds join this batch: one task for
                # several orders costs the broker and the pool once.
                self.stopping.wait(self.batch_window_seconds)
                raw.poll()
                order_ids = sorted({int(note.payload) for note in raw.notifies if note.payload.isdigit()})
                raw.notifies.clear()
                for batch in _batches(order_ids, parts=self.concurrency):
                    tasks.orders_deliver.send_quietly(batch)
        finally:
            raw.close()


class PaidOrderListenerStep(bootsteps.StartStopStep):
    """Runs the listener in the worker's main process when DELIVERY_DISPATCH is ``listen``."""

    requires = {"celery.worker.components:Pool"}

    def include_if(self, worker) -> bool:
        return dispatch_listens()

    def create(self, worker):
        self.listener = PaidOrderListener(
            concurrency=worker.concurrency or 1, batch_window_seconds=settings.DELIVERY_DISPATCH_BATCH_MS / 1000
        )
        return self

    def start(self, worker) -> None:
        self.listener.start()

    def stop(self, worker) -> None:
        self.listener.stop()
        self.listener.join(timeout=5)
