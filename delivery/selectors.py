"""Reads for staff: the admin home page's figures."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Count, Sum
from django.utils import timezone

from delivery.models import AttemptState, DeliveryAttempt
from shop.models import Order, OrderStatus


def sales_figures(*, now: datetime) -> dict:
    """Paid orders and revenue today and over 7 days (test orders left out), the exception
    queue's size by reason, and delivery failures over 7 days: the operator's dashboard."""
    start_of_day = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    real = Order.objects.filter(is_test=False, paid_at__isnull=False)

    def totals(since: datetime) -> dict:
        return real.filter(paid_at__gte=since).aggregate(orders=Count("id"), revenue=Sum("total"))

    return {
        "today": totals(start_of_day),
        "week": totals(now - timedelta(days=7)),
        "queue": list(
            Order.objects.filter(status=OrderStatus.EXCEPTION)
            .values("exception_reason")
            .annotate(n=Count("id"))
            .order_by("-n")
        ),
        "failed_sends_week": DeliveryAttempt.objects.filter(
            state=AttemptState.FAILED, started_at__gte=now - timedelta(days=7)
        ).count(),
    }
