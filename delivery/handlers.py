"""What delivery does when something happens elsewhere: handlers of committed order events
(the ``shop.events`` outbox) and receivers of the key pool's signals. Registered in
``DeliveryConfig.ready``; shop, payments and cardpool never import delivery.

Each handler is idempotent: it may run again after a crash or a race, and changes nothing the
second time (a delivered order is not delivered again, a notice is recorded once).
"""

from __future__ import annotations

import logging

from django.conf import settings

from cardpool.services import ReservationContended
from delivery import tasks
from delivery.messages import NOTICE_EXCEPTION, NOTICE_REFUNDED, order_notice_record
from delivery.stock_alerts import stock_alerts_resolve
from shop.events import ORDER_PAID, ORDER_REFUNDED, DispatchedEvent, event_handler_register, order_exception_event
from shop.lock_objects import order_with_product
from shop.models import ExceptionReason, Product

logger = logging.getLogger(__name__)


def order_paid_deliver(event: DispatchedEvent) -> None:
    """A paid order: deliver it now and send its message from this process. Keys locked by
    concurrent deliveries: the delivery task retries it shortly (the order stays paid, and the
    delivery sweeper covers a retry that never comes)."""
    try:
        tasks.order_deliver_and_send(event.order_id)
    except ReservationContended:
        tasks.order_deliver.apply_async((event.order_id,), countdown=tasks.contention_backoff())


# The moves the buyer hears about, by event type, and the notice they get. A failed delivery
# message is not followed by another message down the same failing road: the order page tells it.
NOTICE_EVENTS: dict[str, str] = {
    **{
        order_exception_event(reason): f"{NOTICE_EXCEPTION}{reason}"
        for reason in ExceptionReason.values
        if reason != ExceptionReason.DELIVERY_FAILED
    },
    ORDER_REFUNDED: NOTICE_REFUNDED,
}


def order_notice_send(event: DispatchedEvent) -> None:
    """Tell the buyer what happened to their order (queued, refunded): the notice is recorded
    once per order and channel, then sent with retries."""
    order_notice_record(order=order_with_product(event.order_id), notice=NOTICE_EVENTS[event.type])


def delivery_failed_alert(event: DispatchedEvent) -> None:
    """A delivered order's message failed after every retry: tell ALERT_EMAILS. A broker that
    is down leaves the event undispatched, so the outbox sweeper sends the alert later."""
    if settings.ALERT_EMAILS:
        tasks.staff_alert_email.apply_async((event.order_id,))


def handlers_register() -> None:
    event_handler_register(event_type=ORDER_PAID, name="delivery.deliver", path="delivery.handlers.order_paid_deliver")
    for event_type in NOTICE_EVENTS:
        event_handler_register(
            event_type=event_type, name="delivery.notice", path="delivery.handlers.order_notice_send"
        )
    event_handler_register(
        event_type=order_exception_event(ExceptionReason.DELIVERY_FAILED),
        name="delivery.staff_alert",
        path="delivery.handlers.delivery_failed_alert",
    )


def keys_added_restock(sender, *, product_id: int, added: bool, finished: bool, **kwargs) -> None:
    """Keys reached a product's pool (an import's chunk, or its end): its out_of_stock orders
    are delivered after commit, oldest first; at the end of an import, a low-stock alert the
    new stock lifts is closed."""
    if finished:
        stock_alerts_resolve(product=Product.objects.get(pk=product_id))
    if added:
        tasks.out_of_stock_orders_deliver.delay_on_commit(product_id)
