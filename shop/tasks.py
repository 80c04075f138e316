from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from shop import selectors, services


@shared_task
def orders_expire() -> int:
    """Expire unpaid orders whose time is up (periodic)."""
    return sum(services.order_expire(order_id=pk) for pk in selectors.orders_expired_ids(now=timezone.now()))
