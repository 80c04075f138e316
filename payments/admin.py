from django.contrib import admin

from kameng.admin_mixins import ReadOnlyAdminMixin

from payments.models import Payment, PaymentNotification


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
