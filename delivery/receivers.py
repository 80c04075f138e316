"""Delivery reacting to shop's domain events (``shop.signals``), so shop and payments never
import delivery to have the buyer told what happened to their order."""

from __future__ import annotations

import logging

from delivery.services import NOTICE_EXCEPTION, NOTICE_REFUNDED, order_notice_record
from shop.models import ExceptionReason

logger = logging.getLogger(__name__)

# The moves the buyer hears about, by the OrderEvent type the move writes, and the notice they
# get. A failed delivery message is not followed by another message down the same failing
# road: the order page tells it.
NOTICE_EVENTS: dict[str, str] = {
    **{
        f"shop.order.exception.{reason}": f"{NOTICE_EXCEPTION}{reason}"
        for reason in ExceptionReason.values
        if reason != ExceptionReason.DELIVERY_FAILED
    },
    "shop.order.refunded": NOTICE_REFUNDED,
}


def order_moved_notice(sender, *, order, event_type: str, **kwargs) -> None:
    """Record the buyer's notice for a move that deserves one, in the move's transaction (it is
    sent after the commit, with retries). Never raises into the move: a notice is not worth a
    lost transition, so it is written at once in a savepoint of its own, not added to the
    move's batch of writes (``statements``), where a failure would take the move with it."""
    notice = NOTICE_EVENTS.get(event_type)
    if notice is None:
        return
    try:
        order_notice_record(order=order, notice=notice)
    except Exception:  # noqa: BLE001 - a bug here must not undo a payment or a refund
        logger.exception("could not record the %s notice of order %s", notice, order.number)
