from django.contrib import admin

from kameng.admin_mixins import ReadOnlyAdminMixin
from payments.models import Payment, PaymentNotification, Refund


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["out_trade_no", "order", "gateway", "amount", "paid_amount", "state", "created_at", "confirmed_at"]
    list_filter = ["gateway", "state"]
    list_select_related = ["order"]
    search_fields = ["=out_trade_no", "=transaction_id", "=order__number"]


@admin.register(PaymentNotification)
class PaymentNotificationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["received_at", "gateway", "out_trade_no", "transaction_id", "verdict", "reason", "times_received"]
    list_filter = ["gateway", "verdict"]
    search_fields = ["=out_trade_no", "=transaction_id"]


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "out_refund_no",
        "payment",
        "amount",
        "state",
        "requested_by",
        "created_at",
        "completed_at",
        "error",
    ]
    list_filter = ["state"]
    list_select_related = ["payment"]
    search_fields = ["=out_refund_no", "=payment__out_trade_no", "=payment__order__number"]
