from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings

from payments.models import Payment, PaymentState
from shop.models import OrderStatus


def payments_awaiting_notification(*, now: datetime, limit: int = 200) -> list[int]:
    """Unconfirmed payments of pending orders started at least PAYMENTS_RECONCILE_AFTER_SECONDS
    ago (and within the last day), oldest first: candidates for asking the platform."""
    return list(
        Payment.objects.filter(
            state=PaymentState.CREATED,
            order__status=OrderStatus.PENDING,
            created_at__lte=now - timedelta(seconds=settings.PAYMENTS_RECONCILE_AFTER_SECONDS),
            created_at__gte=now - timedelta(days=1),
        )
        .exclude(gateway="sandbox")
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )


def orders_with_duplicate_payment_ids() -> list[int]:
    """Delivered orders holding a payment in state duplicate (money to refund that arrived while
    the order was being delivered), each once. Beat asks every minute: served by the partial
    index over duplicate payments, it reads those few, not every payment."""
    return list(
        Payment.objects.filter(state=PaymentState.DUPLICATE, order__status=OrderStatus.DELIVERED)
        .order_by("order_id")
        .values_list("order_id", flat=True)
        .distinct()
    )
