"""The OrderEvent outbox (shop/outbox.py): a committed event reaches each of its handlers at
least once, each run is recorded, and a handler that failed is run again by the sweeper."""

from __future__ import annotations

import pytest
from django.db import transaction
from django.utils import timezone

from shop import events
from shop.lock_objects import order_lock
from shop.models import EventReceipt, OrderEvent, OrderStatus
from shop.outbox import outbox_sweep
from shop.services import order_transition
from tests.support import outbox_handlers
from tests.support.factories import OrderFactory

pytestmark = pytest.mark.django_db

EVENT = "test.outbox.moved"


@pytest.fixture
def handlers(monkeypatch):
    monkeypatch.setitem(
        events._HANDLERS,
        EVENT,
        {"first": "tests.support.outbox_handlers.first", "second": "tests.support.outbox_handlers.second"},
    )
    outbox_handlers.RUNS.clear()
    outbox_handlers.FAILURES.clear()
    yield outbox_handlers
    outbox_handlers.FAILURES.clear()


def _move(on_commit) -> OrderEvent:
    order = OrderFactory()
    with on_commit(), transaction.atomic():
        order_transition(order=order_lock(order.pk), to=OrderStatus.CANCELLED, event_type=EVENT)
    return OrderEvent.objects.get(order=order, type=EVENT)


def test_committed_event_reaches_each_handler_once_and_is_recorded(handlers, on_commit):
    event = _move(on_commit)

    assert sorted(handlers.RUNS) == [("first", event.id), ("second", event.id)]
    assert set(EventReceipt.objects.filter(event=event).values_list("handler", flat=True)) == {"first", "second"}
    event.refresh_from_db()
    assert event.dispatched_at is not None
    assert outbox_sweep(cutoff=timezone.now()) == 0  # nothing left to do
    assert len(handlers.RUNS) == 2


def test_a_failed_handler_is_run_again_by_the_sweeper_and_the_other_is_not(handlers, on_commit):
    handlers.FAILURES["second"] = 1

    event = _move(on_commit)

    event.refresh_from_db()
    assert event.dispatched_at is None  # waits in the outbox
    assert list(EventReceipt.objects.filter(event=event).values_list("handler", flat=True)) == ["first"]
    assert outbox_sweep(cutoff=timezone.now()) == 1
    assert sorted(handlers.RUNS) == [("first", event.id), ("second", event.id), ("second", event.id)]
    event.refresh_from_db()
    assert event.dispatched_at is not None
    assert EventReceipt.objects.filter(event=event).count() == 2


def test_the_sweeper_leaves_young_events_to_the_listener(handlers, settings):
    order = OrderFactory()
    with transaction.atomic():  # never committed to the outbox's post-commit send
        order_transition(order=order_lock(order.pk), to=OrderStatus.CANCELLED, event_type=EVENT)
    settings.DELIVERY_SWEEP_AFTER_SECONDS = 60

    assert outbox_sweep() == 0
    assert handlers.RUNS == []
    assert outbox_sweep(cutoff=timezone.now()) == 1
    assert len(handlers.RUNS) == 2


def test_an_event_nobody_listens_to_is_written_dispatched(on_commit):
    order = OrderFactory()
    with on_commit(), transaction.atomic():
        order_transition(order=order_lock(order.pk), to=OrderStatus.CANCELLED, event_type="test.outbox.unheard")

    assert OrderEvent.objects.get(order=order).dispatched_at is not None
    assert not EventReceipt.objects.exists()
