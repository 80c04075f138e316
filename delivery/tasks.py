"""Thin Celery wrappers around delivery services. They take IDs and are safe to run twice."""

from __future__ import annotations

import random

from celery import shared_task
from django.db import OperationalError

from cardpool.services import ReservationContended
from delivery import messages, services, stock_alerts, sweeper
from kameng.celery import KamengTask


def order_deliver_and_send(order_id: int) -> str:
    """Deliver a paid order, then carry out the message tries the delivery claimed, in this
    process right after its commit. Raises ReservationContended."""
    delivery = services.order_deliver(order_id=order_id)
    messages.messages_send_claimed(sends=delivery.sends)
    return delivery.status


def contention_backoff() -> float:
    return random.uniform(0.05, 0.5)  # noqa: S311 - jitter, not a secret


@shared_task(
    base=KamengTask, bind=True, acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=8
)
def order_deliver(self, order_id: int) -> str:
    try:
        return order_deliver_and_send(order_id)
    except ReservationContended as exc:
        # Transient: another delivery holds keys this one may need. Try again shortly; if the
        # retries run out the order is still "paid" and the sweeper picks it up.
        raise self.retry(exc=exc, countdown=contention_backoff(), max_retries=100) from exc


@shared_task(base=KamengTask, acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=8)
def message_send(message_id: int) -> str:
    return messages.message_send(message_id=message_id)


@shared_task(base=KamengTask)
def delivery_sweep() -> dict:
    report = sweeper.delivery_sweep()
    return {"orders": report.orders, "messages": report.messages}


@shared_task(base=KamengTask, acks_late=True)
def out_of_stock_orders_deliver(product_id: int) -> int:
    return services.out_of_stock_orders_deliver(product_id=product_id)


@shared_task(base=KamengTask, autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def stock_alert_email(alert_id: int) -> None:
    stock_alerts.stock_alert_email(alert_id=alert_id)


@shared_task(base=KamengTask, autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def staff_alert_email(order_id: int) -> None:
    stock_alerts.staff_alert_email(order_id=order_id)
