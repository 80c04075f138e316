"""Key pool admin: masked keys only, and the import form. No plaintext ever renders here."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext_lazy as _

from cardpool.forms import KeyImportForm
from cardpool.models import CardKey, ImportBatch
from cardpool.services import ImportRefused, cardkeys_import_text
from delivery.services import DeliveryRefused, cardkey_replace_defective
from kameng.admin_mixins import ReadOnlyAdminMixin


@admin.register(CardKey)
class CardKeyAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "product", "mask", "status", "order", "batch", "created_at", "sold_at"]
    list_filter = ["status", "product"]
    list_select_related = ["product", "order", "batch"]
    search_fields = ["=order__number"]
    fields = ["product", "mask", "key_version", "status", "order", "batch", "created_at", "sold_at"]
    readonly_fields = fields
    change_list_template = "admin/cardpool/cardkey/change_list.html"
    actions = ["replace_defective"]

    def has_replace_permission(self, request) -> bool:
        return request.user.has_perm("shop.change_order")

    @admin.action(description=_("Mark defective and send a replacement"), permissions=["replace"])
    def replace_defective(self, request, queryset):
        for key in queryset.filter(status="sold"):
            try:
                status = cardkey_replace_defective(key_id=key.pk, reason="reported defective", actor=request.user.get_username())
            except DeliveryRefused as exc:
                self.message_user(request, str(exc), messages.WARNING)
                continue
            level = messages.SUCCESS if status == "delivered" else messages.WARNING
            self.message_user(request, f"{key.mask} → {key.order}: {status}", level)

    def get_urls(self):
        return [
            path("import/", self.admin_site.admin_view(self.import_view), name="cardpool_cardkey_import"),
            *super().get_urls(),
        ]

    def import_view(self, request):
        if not request.user.has_perm("cardpool.add_cardkey"):
            raise PermissionDenied
        form = KeyImportForm(request.POST or None, request.FILES or None)
        report = None
        if request.method == "POST" and form.is_valid():
            upload = request.FILES.get("file")
            try:
                report = cardkeys_import_text(
                    product=form.cleaned_data["product"],
                    text=form.keys_text(),
                    created_by=request.user,
                    source_name=upload.name if upload else "pasted",
                )
            except ImportRefused as exc:
                messages.error(request, str(exc))
            else:
                messages.success(request, _("Imported %(added)d keys.") % {"added": report.added})
                if not report.invalid:
                    return redirect(reverse("admin:cardpool_importbatch_change", args=[report.batch_id]))
            # Never echo pasted keys back into the page.
            form = KeyImportForm(initial={"product": form.cleaned_data["product"]})
        context = {
            **self.admin_site.each_context(request),
            "title": _("Import card keys"),
            "form": form,
            "report": report,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/cardpool/cardkey/import.html", context)


@admin.register(ImportBatch)
class ImportBatchAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "product", "source_name", "added", "duplicates_in_file", "duplicates_in_pool", "invalid", "created_by", "created_at"]
    list_filter = ["product"]
    list_select_related = ["product", "created_by"]
    readonly_fields = [f.name for f in ImportBatch._meta.fields]
