"""Who listens to which order event: the registry of the ``OrderEvent`` outbox's handlers.

Every order transition writes an ``OrderEvent`` in its own transaction (``shop.transitions``).
An event of a type that has handlers is the outbox: after it commits, ``shop.outbox`` hands it
to each handler registered here for its type, at least once, and records each run
(``EventReceipt``). Apps that react to orders (delivery now; staff alerts and webhooks later)
register their handlers in their ``AppConfig.ready``, so shop never imports them.

A handler is a function ``handler(event: DispatchedEvent) -> None`` named by its dotted path.
It must be idempotent (it may run twice: after a crash, or when two dispatchers race) and
should not raise for a rule it applies; an exception leaves the event for the outbox sweeper.
"""

from __future__ import annotations

from dataclasses import dataclass

ORDER_PAID = "shop.order.paid"
ORDER_DELIVERED = "shop.order.delivered"
ORDER_REFUNDED = "shop.order.refunded"
ORDER_EXCEPTION_PREFIX = "shop.order.exception."


def order_exception_event(reason: str) -> str:
    """The event type of an order entering the exception queue for ``reason``."""
    return f"{ORDER_EXCEPTION_PREFIX}{reason}"


@dataclass(frozen=True)
class DispatchedEvent:
    """An order event, as a handler receives it."""

    id: int
    order_id: int
    type: str


# event type → {handler name: dotted path}; filled by AppConfig.ready, read by the outbox.
_HANDLERS: dict[str, dict[str, str]] = {}


def event_handler_register(*, event_type: str, name: str, path: str) -> None:
    """Have ``path`` (``app.module.function``) run for every committed event of ``event_type``.
    ``name`` is what its runs are recorded under; registering the same name again replaces it."""
    _HANDLERS.setdefault(event_type, {})[name] = path


def event_handlers(event_type: str) -> dict[str, str]:
    """The handlers of ``event_type`` by name (empty when nobody listens)."""
    return _HANDLERS.get(event_type, {})


def event_has_handlers(event_type: str) -> bool:
    return bool(_HANDLERS.get(event_type))
