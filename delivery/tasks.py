"""Thin Celery wrappers around delivery services. They take IDs and are safe to run twice."""

from __future__ import annotations

import random

from celery import shared_task
from django.db import OperationalError

from cardpool.services import ReservationContended
from delivery import services


def _deliver_and_send(order_id: int) -> str:
    """Deliver a paid order and send its message in this process right after the commit.
    Raises ReservationContended."""
    status = services.order_deliver(order_id=order_id)
    if status == "delivered":
        services.order_messages_send_now(order_id=order_id)
    return status


def _contention_backoff() -> float:
    return random.uniform(0.05, 0.5)


@shared_task(bind=True, acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=8)
def order_deliver(self, order_id: int) -> str:
    try:
        return _deliver_and_send(order_id)
    except ReservationContended as exc:
        # Transient: another delivery holds keys this one may need. Try again shortly; if the
        # retries run out the order is still "paid" and the sweeper picks it up.
        raise self.retry(exc=exc, countdown=_contention_backoff(), max_retries=100)


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=8)
def orders_deliver(order_ids: list[int]) -> int:
    """Several paid orders announced together (delivery/dispatch.py), each in its own
    transaction: one task's overhead for the lot. Returns how many were delivered."""
    delivered = 0
    for order_id in order_ids:
        try:
            delivered += _deliver_and_send(order_id) == "delivered"
        except ReservationContended:
            order_deliver.apply_async((order_id,), countdown=_contention_backoff())
    return delivered


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=8)
def message_send(message_id: int) -> str:
    return services.message_send(message_id=message_id)


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=8)
def order_notices_send(order_id: int) -> None:
    services.order_notices_send(order_id=order_id)


@shared_task
def delivery_sweep() -> dict:
    report = services.delivery_sweep()
    return {"orders": report.orders, "messages": report.messages}


@shared_task(acks_late=True)
def out_of_stock_orders_deliver(product_id: int) -> int:
    return services.out_of_stock_orders_deliver(product_id=product_id)


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def stock_alert_email(alert_id: int) -> None:
    services.stock_alert_email(alert_id=alert_id)


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def staff_alert_email(order_id: int) -> None:
    services.staff_alert_email(order_id=order_id)
