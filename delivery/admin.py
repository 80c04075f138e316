from django.contrib import admin

from delivery.models import DeliveryAttempt, DeliveryMessage, StockAlert
from kameng.admin_mixins import ReadOnlyAdminMixin


class DeliveryAttemptInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    fields = ["number", "state", "started_at", "finished_at", "provider_message_id", "permanent", "error"]
    readonly_fields = fields


@admin.register(DeliveryMessage)
class DeliveryMessageAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    inlines = [DeliveryAttemptInline]
    list_display = ["order", "channel", "recipient", "state", "tries", "next_try_at", "sent_at", "last_error"]
    list_filter = ["channel", "state"]
    list_select_related = ["order"]
    search_fields = ["=order__number", "recipient"]
    readonly_fields = [f.name for f in DeliveryMessage._meta.fields]


@admin.register(StockAlert)
class StockAlertAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["product", "available", "threshold", "created_at", "resolved_at"]
    list_filter = ["resolved_at"]
    list_select_related = ["product"]
    readonly_fields = ["product", "available", "threshold", "created_at", "resolved_at"]
