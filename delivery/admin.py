from django.contrib import admin
from django.shortcuts import redirect

from delivery.models import DeliveryAttempt, DeliveryMessage, DeliveryRules, StockAlert
from delivery.services import delivery_rules_forget
from kameng.admin_mixins import ReadOnlyAdminMixin


class DeliveryAttemptInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    fields = readonly_fields = (
        "number",
        "state",
        "started_at",
        "finished_at",
        "provider_message_id",
        "permanent",
        "error",
    )


@admin.register(DeliveryMessage)
class DeliveryMessageAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    inlines = [DeliveryAttemptInline]
    list_display = ["order", "channel", "notice", "recipient", "state", "tries", "next_try_at", "sent_at", "last_error"]
    list_filter = ["channel", "notice", "state"]
    list_select_related = ["order"]
    search_fields = ["=order__number", "recipient"]
    readonly_fields = [f.name for f in DeliveryMessage._meta.fields]


@admin.register(StockAlert)
class StockAlertAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["product", "available", "threshold", "created_at", "resolved_at"]
    list_filter = ["resolved_at"]
    list_select_related = ["product"]
    readonly_fields = ["product", "available", "threshold", "created_at", "resolved_at"]


@admin.register(DeliveryRules)
class DeliveryRulesAdmin(admin.ModelAdmin):
    """One editable row; the list page opens it directly."""

    fields = ["auto_delivery", "review_amount", "review_orders_per_hour", "updated_at"]
    readonly_fields = ["updated_at"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def changelist_view(self, request, extra_context=None):
        DeliveryRules.objects.get_or_create(pk=1)
        return redirect("admin:delivery_deliveryrules_change", 1)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        delivery_rules_forget()
