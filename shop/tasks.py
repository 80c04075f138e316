"""Thin Celery wrappers around the outbox. They take IDs and are safe to run twice."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from kameng.celery import KamengTask
from shop import outbox


@shared_task(base=KamengTask, acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=8)
def order_events_dispatch(order_ids: list[int]) -> int:
    """Hand these orders' committed, undispatched events to their handlers."""
    return outbox.order_events_dispatch(order_ids=order_ids)


@shared_task(base=KamengTask)
def outbox_sweep() -> int:
    return outbox.outbox_sweep()
