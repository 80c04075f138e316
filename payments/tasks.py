"""Periodic payment work, thin wrappers around payments.services."""

from __future__ import annotations

from celery import shared_task

from kameng.celery import KamengTask
from payments import services


@shared_task(base=KamengTask)
def orders_expire() -> int:
    """Expire unpaid orders whose time is up, after asking the platform about their payments."""
    return services.orders_expire_due()


@shared_task(base=KamengTask)
def payments_reconcile() -> dict:
    """补单: ask the platform about payments whose notification has not come; queue duplicates."""
    return {"paid": services.payments_reconcile_due(), "duplicates_queued": services.duplicate_payments_queue()}
