"""Key pool admin: masked keys, the import form, and audited plaintext access.

Plaintext renders only in the reveal view and the export, each after a stated reason and a
RevealLog row, for staff holding the reveal / export permission."""

from __future__ import annotations

import csv
from datetime import timedelta

import tablib
from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from import_export.formats.base_formats import XLSX

from cardpool.forms import KeyImportForm
from cardpool.importing import (
    ImportRefused,
    import_batch_cancel,
    import_batch_confirm,
    import_batch_create,
    import_batch_progress,
    imports_resume,
)
from cardpool.models import CardKey, ImportBatch, RevealLog
from cardpool.services import cardkey_reveal, cardkeys_export_unsold, import_batch_void
from delivery.services import DeliveryRefused, cardkey_replace_defective
from kameng.admin_mixins import ReadOnlyAdminMixin
from kameng.client_ip import request_client_ip
from shop.models import Product


class ExpiringFilter(admin.SimpleListFilter):
    """Unsold keys that expire soon: sell or replace them first."""

    title = _("expiry")
    parameter_name = "expiring"

    def lookups(self, request, model_admin):
        return [("7", _("within 7 days")), ("30", _("within 30 days")), ("expired", _("already expired"))]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "expired":
            return queryset.filter(expires_at__lte=now, status="available")
        if self.value() and self.value().isdigit():  # ?expiring=N: any number of days, the list offers 7 and 30
            days = min(int(self.value()), 3650)
            return queryset.filter(expires_at__gt=now, expires_at__lte=now + timedelta(days=days), status="available")
        return queryset


@admin.register(CardKey)
class CardKeyAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "product",
        "mask",
        "status",
        "uses_display",
        "order",
        "batch",
        "expires_at",
        "created_at",
        "sold_at",
    ]
    list_filter = ["status", ExpiringFilter, "product"]
    list_select_related = ["product", "order", "batch"]
    search_fields = ["=order__number"]
    fields = readonly_fields = (
        "product",
        "mask",
        "reveal_link",
        "key_version",
        "index_version",
        "status",
        "max_uses",
        "uses",
        "reuse_of",
        "order",
        "batch",
        "expires_at",
        "created_at",
        "sold_at",
    )
    change_list_template = "admin/cardpool/cardkey/change_list.html"

    class Media:
        css = {"all": ["shop/admin.css"]}

    actions = ["replace_defective"]

    def has_replace_permission(self, request) -> bool:
        return request.user.has_perm("shop.change_order")

    @admin.action(description=_("Mark defective and send a replacement"), permissions=["replace"])
    def replace_defective(self, request, queryset):
        for key in queryset.filter(status="sold"):
            try:
                status = cardkey_replace_defective(
                    key_id=key.pk, reason="reported defective", actor=request.user.get_username()
                )
            except DeliveryRefused as exc:
                self.message_user(request, str(exc), messages.WARNING)
                continue
            level = messages.SUCCESS if status == "delivered" else messages.WARNING
            self.message_user(request, f"{key.mask} → {key.order}: {status}", level)

    def get_urls(self):
        return [
            path("import/", self.admin_site.admin_view(self.import_view), name="cardpool_cardkey_import"),
            path(
                "import/<int:batch_id>/",
                self.admin_site.admin_view(self.import_batch_view),
                name="cardpool_cardkey_import_batch",
            ),
            path(
                "import/<int:batch_id>/status/",
                self.admin_site.admin_view(self.import_batch_status),
                name="cardpool_cardkey_import_status",
            ),
            path("export/", self.admin_site.admin_view(self.export_view), name="cardpool_cardkey_export"),
            path("<int:key_id>/reveal/", self.admin_site.admin_view(self.reveal_view), name="cardpool_cardkey_reveal"),
            *super().get_urls(),
        ]

    @admin.display(description=_("uses"))
    def uses_display(self, obj: CardKey) -> str:
        """Reusable keys: uses so far and the cap; unique keys show nothing."""
        if obj.max_uses == 1:
            return ""
        return f"{obj.uses} / {obj.max_uses if obj.max_uses is not None else '∞'}"

    @admin.display(description=_("plaintext"))
    def reveal_link(self, obj: CardKey) -> str:
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:cardpool_cardkey_reveal", args=[obj.pk]), _("Reveal (audited)")
        )

    def reveal_view(self, request, key_id: int):
        """Shows one key after the staff member states why; every reveal is logged."""
        if not request.user.has_perm("cardpool.reveal_cardkey"):
            raise PermissionDenied
        key = get_object_or_404(CardKey.objects.select_related("product", "order"), pk=key_id)
        form = ReasonForm(request.POST or None)
        secret = None
        if request.method == "POST" and form.is_valid():
            secret = cardkey_reveal(
                key_id=key.pk, user=request.user, ip=request_client_ip(request), reason=form.cleaned_data["reason"]
            )
        context = {
            **self.admin_site.each_context(request),
            "title": _("Reveal key %(mask)s") % {"mask": key.mask},
            "key": key,
            "form": form,
            "secret": secret,
            "opts": self.model._meta,
        }
        response = TemplateResponse(request, "admin/cardpool/cardkey/reveal.html", context)
        response["Cache-Control"] = "no-store"
        return response

    def export_view(self, request):
        """CSV of unsold keys after the staff member states why; logged, formula-safe."""
        if not request.user.has_perm("cardpool.export_cardkey"):
            raise PermissionDenied
        form = ExportForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            product = form.cleaned_data["product"]
            rows = cardkeys_export_unsold(
                product_id=product.pk,
                user=request.user,
                ip=request_client_ip(request),
                reason=form.cleaned_data["reason"],
                batch_id=form.cleaned_data["batch"] or None,
            )
            if form.cleaned_data["format"] == "xlsx":
                response = HttpResponse(spreadsheet_xlsx(rows), content_type=XLSX.CONTENT_TYPE)
                response["Content-Disposition"] = f'attachment; filename="keys-{product.slug}.xlsx"'
                response["Cache-Control"] = "no-store"
                return response
            writer = csv.writer(Echo())
            response = StreamingHttpResponse(
                ("\ufeff" if i == 0 else "") + writer.writerow(row) for i, row in enumerate(rows)
            )
            response["Content-Type"] = "text/csv; charset=utf-8"
            response["Content-Disposition"] = f'attachment; filename="keys-{product.slug}.csv"'
            response["Cache-Control"] = "no-store"
            return response
        context = {
            **self.admin_site.each_context(request),
            "title": _("Export unsold keys"),
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/cardpool/cardkey/export.html", context)

    def import_view(self, request):
        """Step 1: the file and how to read it. The file is kept encrypted for the background
        preview; nothing enters the pool before the operator confirms the preview."""
        if not request.user.has_perm("cardpool.add_cardkey"):
            raise PermissionDenied
        form = KeyImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            source_name, raw = form.source()
            try:
                batch = import_batch_create(
                    product=form.cleaned_data["product"],
                    raw=raw,
                    layout=form.layout(source_name),
                    created_by=request.user,
                    source_name=source_name,
                    supplier=form.cleaned_data["supplier"],
                    unit_cost=form.cleaned_data["unit_cost"],
                    note=form.cleaned_data["note"],
                )
            except (ImportRefused, forms.ValidationError) as exc:
                messages.error(request, exc.messages[0] if isinstance(exc, forms.ValidationError) else str(exc))
            else:
                return redirect(reverse("admin:cardpool_cardkey_import_batch", args=[batch.pk]))
            # Never echo pasted keys back into the page.
            form = KeyImportForm(initial={k: v for k, v in form.cleaned_data.items() if k not in ("text", "file")})
        context = {
            **self.admin_site.each_context(request),
            "title": _("Import card keys"),
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/cardpool/cardkey/import.html", context)

    def import_batch_view(self, request, batch_id: int):
        """Step 2: the preview (confirm or cancel), then the progress of the import. The state is
        in the batch row, so the page may be reloaded or left and come back to."""
        if not request.user.has_perm("cardpool.add_cardkey"):
            raise PermissionDenied
        batch = get_object_or_404(ImportBatch.objects.select_related("product", "created_by"), pk=batch_id)
        if request.method == "POST":
            action = request.POST.get("action")
            if action == "confirm":
                import_batch_confirm(batch_id=batch.pk)
            elif action == "cancel":
                import_batch_cancel(batch_id=batch.pk)
            elif action == "resume":
                imports_resume(stale_seconds=0, batch_id=batch.pk)
            return redirect(request.path)
        context = {
            **self.admin_site.each_context(request),
            "title": _("Import batch #%(id)s") % {"id": batch.pk},
            "batch": batch,
            "progress": import_batch_progress(batch),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/cardpool/cardkey/import_batch.html", context)

    def import_batch_status(self, request, batch_id: int):
        if not request.user.has_perm("cardpool.add_cardkey"):
            raise PermissionDenied
        return JsonResponse(import_batch_progress(get_object_or_404(ImportBatch, pk=batch_id)))


class Echo:
    """A file-like object whose write returns the line, for streaming csv.writer output."""

    def write(self, value: str) -> str:
        return value


class ReasonForm(forms.Form):
    reason = forms.CharField(
        label=_("Why do you need to see it?"), widget=forms.Textarea(attrs={"rows": 2}), max_length=2000
    )


class ExportForm(ReasonForm):
    product = forms.ModelChoiceField(label=_("Product"), queryset=Product.objects.order_by("name"))
    batch = forms.IntegerField(label=_("Only import batch (id)"), required=False)
    format = forms.ChoiceField(
        label=_("Format"), choices=[("csv", "CSV"), ("xlsx", "Excel (XLSX)")], initial="csv", required=False
    )

    field_order = ["product", "batch", "format", "reason"]


def spreadsheet_xlsx(rows) -> bytes:
    """An XLSX workbook of ``rows`` (the first is the header), written by django-import-export's
    XLSX format. The cells are already formula-safe (cardkeys_export_unsold)."""
    rows = iter(rows)
    dataset = tablib.Dataset(headers=next(rows))
    for row in rows:
        dataset.append(row)
    return XLSX().export_data(dataset)


@admin.register(RevealLog)
class RevealLogAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "username", "kind", "key", "product", "key_count", "ip", "reason"]
    list_filter = ["kind", "username"]
    list_select_related = ["key", "product"]
    search_fields = ["username", "reason"]


@admin.register(ImportBatch)
class ImportBatchAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    actions = ["void_unsold"]

    def has_void_permission(self, request) -> bool:
        return request.user.has_perm("cardpool.change_cardkey") or request.user.has_perm("cardpool.add_cardkey")

    @admin.action(description=_("Void the unsold keys of these batches"), permissions=["void"])
    def void_unsold(self, request, queryset):
        for batch in queryset:
            voided = import_batch_void(batch_id=batch.pk, actor=request.user.get_username())
            self.message_user(request, f"#{batch.pk}: {voided}", messages.SUCCESS)

    list_display = [
        "id",
        "product",
        "status_link",
        "source_name",
        "supplier",
        "unit_cost",
        "added",
        "duplicates_in_file",
        "duplicates_in_pool",
        "duplicates_sold",
        "invalid",
        "created_by",
        "created_at",
    ]
    list_filter = ["status", "product", "supplier"]
    exclude = ["layout", "preview"]

    @admin.display(description=_("status"), ordering="status")
    def status_link(self, obj: ImportBatch) -> str:
        url = reverse("admin:cardpool_cardkey_import_batch", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, obj.get_status_display())

    list_select_related = ["product", "created_by"]
    readonly_fields = [f.name for f in ImportBatch._meta.fields if f.name not in ("layout", "preview")]
