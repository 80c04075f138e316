"""The ``OrderEvent`` outbox: committed events handed to their handlers (``shop.events``).

How an event reaches a worker (``DELIVERY_DISPATCH``):

``listen`` (PostgreSQL, the default there): the statement that writes the event announces its
order with ``NOTIFY kameng_events`` (delivered only if the transaction commits), and one
listener thread in one Celery worker (``shop.outbox_listener``) turns announcements into
dispatch tasks. The web request does not talk to the broker, and a payment does not depend on
the broker being up at that moment.

``broker`` (SQLite, the embedded default): the transition's service sends the dispatch task to
the broker when its transaction commits.

Either way the database stays the record: an event is written undispatched, and the outbox
sweeper (beat) hands every event still undispatched after DELIVERY_SWEEP_AFTER_SECONDS to its
handlers, as does a listener that takes over.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone
from django.utils.module_loading import import_string

from kameng.sql import Statement, sql_execute, sql_in, statements_run
from shop import tasks
from shop.events import DispatchedEvent, event_handlers
from shop.models import EventReceipt, OrderEvent

logger = logging.getLogger(__name__)

EVENTS_CHANNEL = "kameng_events"


def dispatch_listens() -> bool:
    """Whether committed events are announced by NOTIFY (else by a task sent after commit)."""
    return settings.DELIVERY_DISPATCH == "listen" and connection.vendor == "postgresql"


def announce_returning(handled: bool) -> str:
    """What an event INSERT adds to its RETURNING list: in listen mode, for an event with
    handlers, the NOTIFY of its order (run with the row, sent at commit); otherwise nothing."""
    return f", pg_notify('{EVENTS_CHANNEL}', order_id::text)" if handled and dispatch_listens() else ""


def order_events_announce(*, order_id: int, event_types: list[str] | tuple[str, ...]) -> None:
    """After a transition's statements ran: in broker mode, send the order's dispatch task once
    the transaction commits, if one of its events has handlers (listen mode announced them in
    the statements)."""
    if dispatch_listens() or not any(event_handlers(event_type) for event_type in event_types):
        return
    tasks.order_events_dispatch.delay_on_commit([order_id])


def order_events_dispatch(*, order_ids: list[int]) -> int:
    """Hand the undispatched events of these orders, oldest first, to each of their handlers
    that has not run for them yet; then record the runs and mark the events whose handlers all
    ran dispatched, in one transaction for the batch (a crash before it only means a handler
    runs again: handlers are idempotent). A handler that raises is logged and tried again by
    the sweeper. Returns how many events were completed."""
    if not order_ids:
        return 0
    ids, id_params = sql_in("orders", order_ids)
    with connection.cursor() as cursor:
        sql_execute(
            cursor,
            f"SELECT id, order_id, type FROM {OrderEvent._meta.db_table}"
            f" WHERE order_id {ids} AND dispatched_at IS NULL ORDER BY id",
            id_params,
        )
        events = cursor.fetchall()
    if not events:
        return 0
    # Receipts of an undispatched event exist only where one of several handlers failed (the
    # runs and the dispatch are recorded together): events with one handler need no lookup.
    shared = [pk for pk, _o, event_type in events if len(event_handlers(event_type)) > 1]
    ran = set(EventReceipt.objects.filter(event_id__in=shared).values_list("event_id", "handler")) if shared else set()
    receipts: list[tuple[int, str]] = []
    completed: list[int] = []
    for pk, order_id, event_type in events:
        event = DispatchedEvent(id=pk, order_id=order_id, type=event_type)
        all_ran = True
        for name, path in event_handlers(event_type).items():
            if (pk, name) in ran:
                continue
            try:
                import_string(path)(event)
            except Exception:  # one handler's failure must not stop the others
                logger.exception("outbox handler %s failed for event %s (%s)", name, pk, event_type)
                all_ran = False
                continue
            receipts.append((pk, name))
        if all_ran:
            completed.append(pk)
    _runs_record(receipts=receipts, completed=completed)
    return len(completed)


def _runs_record(*, receipts: list[tuple[int, str]], completed: list[int]) -> None:
    """The handlers' runs and the completed events, as one batch (one round trip)."""
    at = timezone.now()
    statements = []
    if receipts:
        rows = ", ".join(f"(%(event{n})s, %(handler{n})s, %(at)s)" for n in range(len(receipts)))
        params: dict[str, object] = {"at": at}
        for n, (event_id, handler) in enumerate(receipts):
            params[f"event{n}"], params[f"handler{n}"] = event_id, handler
        statements.append(
            Statement(
                f"INSERT INTO {EventReceipt._meta.db_table} (event_id, handler, ran_at) VALUES {rows}"
                " ON CONFLICT (event_id, handler) DO NOTHING",
                params,
            )
        )
    if completed:
        ids, id_params = sql_in("completed", completed)
        statements.append(
            Statement(
                f"UPDATE {OrderEvent._meta.db_table} SET dispatched_at = %(at)s"
                f" WHERE id {ids} AND dispatched_at IS NULL",
                {**id_params, "at": at},
            )
        )
    statements_run(statements)


def orders_with_undispatched_events(*, cutoff: datetime, limit: int = 1000) -> list[int]:
    """Orders whose events have waited for their handlers since before ``cutoff`` (the partial
    index over undispatched events serves it)."""
    rows = (
        OrderEvent.objects.filter(dispatched_at__isnull=True, created_at__lte=cutoff)
        .order_by("created_at")
        .values_list("order_id", flat=True)[:limit]
    )
    return list(dict.fromkeys(rows))


def outbox_sweep(*, cutoff: datetime | None = None) -> int:
    """Dispatch every event still undispatched since before ``cutoff`` (default:
    DELIVERY_SWEEP_AFTER_SECONDS ago), in this process. Returns how many were completed."""
    if cutoff is None:
        cutoff = timezone.now() - timedelta(seconds=settings.DELIVERY_SWEEP_AFTER_SECONDS)
    order_ids = orders_with_undispatched_events(cutoff=cutoff)
    if order_ids:
        logger.info("outbox sweeper: %d orders with undispatched events", len(order_ids))
    return order_events_dispatch(order_ids=order_ids) if order_ids else 0
