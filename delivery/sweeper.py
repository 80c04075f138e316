"""The delivery sweeper: re-drive what the broker may have lost (beat runs it every
DELIVERY_SWEEP_INTERVAL_SECONDS). The database is the record: a paid order still undelivered
and a message still unsent are found there, however their task was lost."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from delivery import tasks
from delivery.models import AttemptState, DeliveryAttempt, DeliveryMessage, MessageState
from shop.selectors import orders_paid_due_ids

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepReport:
    orders: int
    messages: int


def paid_orders_send(*, cutoff) -> list[int]:
    """Send the delivery task of every paid order whose delivery was due before ``cutoff`` (the
    sweeper). Returns their ids."""
    order_ids = orders_paid_due_ids(cutoff=cutoff)
    for order_id in order_ids:
        tasks.order_deliver.send_quietly(order_id)
    return order_ids


def delivery_sweep() -> SweepReport:
    """Re-drive whatever the broker may have lost: paid orders still undelivered and messages
    not sent, both older than DELIVERY_SWEEP_AFTER_SECONDS. Safe to run any number of times."""
    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.DELIVERY_SWEEP_AFTER_SECONDS)
    order_ids = paid_orders_send(cutoff=cutoff)
    # A worker that died mid-send leaves its try in "sending"; give it back to the queue (the
    # retry is a new attempt; the dead one is closed as failed).
    stuck = list(
        DeliveryMessage.objects.filter(state=MessageState.SENDING, updated_at__lte=cutoff).values_list("pk", flat=True)
    )
    DeliveryAttempt.objects.filter(message_id__in=stuck, state=AttemptState.SENDING).update(
        state=AttemptState.FAILED, finished_at=now, error="the worker stopped during the send"
    )
    DeliveryMessage.objects.filter(pk__in=stuck, state=MessageState.SENDING).update(
        state=MessageState.PENDING, next_try_at=now
    )
    message_ids = list(
        DeliveryMessage.objects.filter(state=MessageState.PENDING)
        .filter(Q(next_try_at__isnull=True, updated_at__lte=cutoff) | Q(next_try_at__lte=cutoff) | Q(next_try_at=now))
        .values_list("pk", flat=True)[:1000]
    )
    for message_id in message_ids:
        tasks.message_send.send_quietly(message_id)
    if order_ids or message_ids:
        logger.info("sweeper re-drove %d orders and %d messages", len(order_ids), len(message_ids))
    return SweepReport(orders=len(order_ids), messages=len(message_ids))
