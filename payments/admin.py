from django.contrib import admin

from payments.models import Payment, PaymentNotification


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = ["out_trade_no", "order", "gateway", "amount", "paid_amount", "state", "created_at", "confirmed_at"]
    list_filter = ["gateway", "state"]
    list_select_related = ["order"]
    search_fields = ["=out_trade_no", "=transaction_id", "=order__number"]


@admin.register(PaymentNotification)
class PaymentNotificationAdmin(ReadOnlyAdmin):
    list_display = ["received_at", "gateway", "out_trade_no", "transaction_id", "verdict", "reason", "times_received"]
    list_filter = ["gateway", "verdict"]
    search_fields = ["=out_trade_no", "=transaction_id"]
