"""Every allowed move writes the same row and event on both databases (shop/transitions.py)."""

from __future__ import annotations

import pytest
from django.db import transaction

from shop.events import event_has_handlers
from shop.lock_objects import order_lock
from shop.models import Order, OrderEvent, OrderStatus
from shop.services import ORDER_TRANSITIONS, order_transition
from tests.support.factories import OrderFactory

pytestmark = pytest.mark.django_db

MOVES = [(start, to) for start, targets in ORDER_TRANSITIONS.items() for to in sorted(targets)]


@pytest.mark.parametrize("start, to", MOVES)
def test_every_allowed_move_writes_the_order_and_its_event(start, to):
    order = OrderFactory(status=start)
    event_type = "shop.order.exception.out_of_stock" if to == OrderStatus.EXCEPTION else f"test.moved.{to}"

    with transaction.atomic():
        moved = order_transition(
            order=order_lock(order.pk),
            to=to,
            event_type=event_type,
            message="why",
            actor="staff",
            reason="out_of_stock" if to == OrderStatus.EXCEPTION else "",
        )

    stored = Order.objects.get(pk=order.pk)
    assert (stored.status, moved.status) == (to, to)
    assert (stored.paid_at is not None) == (to == OrderStatus.PAID)
    if to == OrderStatus.EXCEPTION:
        assert (stored.exception_reason, stored.exception_note) == ("out_of_stock", "why")
        assert stored.exception_at is not None
    if to == OrderStatus.DELIVERED:
        assert stored.delivered_at is not None and stored.exception_reason == ""
    event = OrderEvent.objects.get(order=order)
    assert (event.type, event.message, event.actor) == (event_type, "why", "staff")
    # Written undispatched exactly when someone listens (the outbox).
    assert (event.dispatched_at is None) == event_has_handlers(event_type)
