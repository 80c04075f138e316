from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import models, transaction
from django.db.models import F
from django.shortcuts import get_object_or_404, redirect
from django.template import Engine, TemplateSyntaxError
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from cardpool.forms import SecretTextarea
from cardpool.services import ManualKeysRefused
from delivery.services import DeliveryRefused, order_deliver_manually, order_retry_delivery
from payments.services import order_refund, orders_query_platform
from shop.fulfilment import UNLIMITED_STOCK, fulfilment
from shop.images import (
    PRODUCT_IMAGE,
    PRODUCT_THUMBNAIL,
    SHOP_FAVICON,
    SHOP_LOGO,
    ImageShape,
    UploadedImageField,
    image_render,
)
from shop.models import Category, ExceptionOrder, Order, OrderEvent, OrderStatus, Product, ShopSettings
from shop.services import InvalidTransition, order_exception_assign, order_exception_resolve


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "sort_order", "is_active"]
    list_editable = ["sort_order", "is_active"]
    prepopulated_fields = {"slug": ["name"]}


# Every image upload in admin goes through shop.images: checked, then re-encoded.
IMAGE_UPLOAD_OVERRIDES: Mapping[type[models.Field], Mapping[str, Any]] = {
    models.ImageField: {"form_class": UploadedImageField}
}


class RenderedImagesForm(forms.ModelForm):
    """A model form whose image uploads are stored as ``shop.images`` draws them, never as sent.

    ``image_shapes`` maps an upload field to its own shape and to the other (non-editable) image
    fields drawn from the same upload, e.g. a thumbnail. Files a save replaces or clears are
    deleted from storage once the transaction commits."""

    image_shapes: dict[str, tuple[ImageShape, dict[str, ImageShape]]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._drawn: dict[str, object] = {}
        self._stored_before = {
            name: getattr(self.instance, name).name
            for field, (_shape, extra) in self.image_shapes.items()
            for name in (field, *extra)
        }

    def _image_stem(self, field: str) -> str:
        return field

    def clean(self):
        cleaned = super().clean()
        for field, (shape, extra) in self.image_shapes.items():
            upload = cleaned.get(field)
            if isinstance(upload, UploadedFile) and hasattr(upload, "image"):
                stem = self._image_stem(field)
                try:
                    cleaned[field] = image_render(upload.image, shape, name=stem)
                    for other, other_shape in extra.items():
                        self._drawn[other] = image_render(upload.image, other_shape, name=f"{stem}-{other}")
                except forms.ValidationError as exc:
                    self.add_error(field, exc)
            elif upload is False:  # "Clear" ticked
                self._drawn.update(dict.fromkeys(extra, ""))
        return cleaned

    def save(self, commit=True):
        instance = self.instance
        for name, drawn in self._drawn.items():
            setattr(instance, name, drawn)
        before = self._stored_before

        def delete_replaced() -> None:
            for name, old in before.items():
                if old and getattr(instance, name).name != old:
                    default_storage.delete(old)

        transaction.on_commit(delete_replaced)
        return super().save(commit)


class ProductForm(RenderedImagesForm):
    image_shapes = {"image": (PRODUCT_IMAGE, {"image_thumbnail": PRODUCT_THUMBNAIL})}

    def _image_stem(self, field: str) -> str:
        return self.cleaned_data.get("slug") or "product"

    class Meta:
        model = Product
        # What staff may write; ProductAdmin.fieldsets lays the same fields out.
        fields = [
            "category",
            "name",
            "slug",
            "price",
            "is_active",
            "sort_order",
            "image",
            "description",
            "usage_instructions",
            "min_quantity",
            "max_quantity",
            "low_stock_threshold",
            "delivery_delay_minutes",
            "delivery_max_tries",
            "delivery_retry_base_seconds",
            "email_subject",
            "email_text",
            "email_html",
        ]
        help_texts = {
            "description": _("Markdown: **bold**, lists, [links](https://…), tables. HTML and scripts are removed.")
        }

    def _template(self, name: str) -> str:
        source = self.cleaned_data.get(name, "")
        if source:
            try:
                Engine.get_default().from_string(source)
            except TemplateSyntaxError as exc:
                raise forms.ValidationError(_("Template error: %(error)s") % {"error": exc}) from exc
        return source

    def clean_email_subject(self) -> str:
        return self._template("email_subject")

    def clean_email_text(self) -> str:
        return self._template("email_text")

    def clean_email_html(self) -> str:
        return self._template("email_html")


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    form = ProductForm
    formfield_overrides = IMAGE_UPLOAD_OVERRIDES
    list_display = ["picture", "name", "category", "price", "stock", "low_stock_threshold", "is_active"]
    list_display_links = ["picture", "name"]
    list_filter = ["category", "is_active"]
    list_select_related = ["category"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "category",
                    "name",
                    "slug",
                    "price",
                    "is_active",
                    "sort_order",
                    "image",
                    "description",
                    "usage_instructions",
                ]
            },
        ),
        (_("Limits and stock"), {"fields": ["min_quantity", "max_quantity", "low_stock_threshold"]}),
        (_("Delivery"), {"fields": ["delivery_delay_minutes", "delivery_max_tries", "delivery_retry_base_seconds"]}),
        (
            _("Delivery email"),
            {
                "classes": ["collapse"],
                "description": _(
                    "Optional, in Django template syntax. Variables: content.order_number, content.product_name, "
                    "content.quantity, content.keys (each with .secret and .expires_at), content.usage_instructions, "
                    "content.order_url. Empty fields use the shop's default email."
                ),
                "fields": ["email_subject", "email_text", "email_html"],
            },
        ),
    ]

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        self._stock = fulfilment().units_counted(product_ids=[p.pk for p in changelist.result_list])
        return changelist

    @admin.display(description=_("image"))
    def picture(self, obj: Product) -> str:
        if not obj.image_thumbnail:
            return "—"
        return format_html('<img src="{}" alt="" width="48" height="36">', obj.image_thumbnail.url)

    @admin.display(description=_("available"))
    def stock(self, obj: Product) -> int | str:
        stock = getattr(self, "_stock", {}).get(obj.pk, 0)
        return "∞" if stock >= UNLIMITED_STOCK else stock


class ShopSettingsForm(RenderedImagesForm):
    image_shapes = {"logo": (SHOP_LOGO, {}), "favicon": (SHOP_FAVICON, {})}

    class Meta:
        model = ShopSettings
        # What staff may write; ShopSettingsAdmin.fieldsets lays the same fields out.
        fields = [
            "name",
            "logo",
            "favicon",
            "footer_text",
            "support_qq",
            "support_wechat",
            "support_telegram",
            "support_email",
            "notice",
            "notice_starts_at",
            "notice_ends_at",
            "order_note",
        ]
        help_texts = {
            "logo": _("PNG, JPEG or WebP; shown 32 pixels high beside the name (stored at most 480 × 160)."),
            "favicon": _("The browser tab's icon; a square picture works best (stored as a 180 × 180 PNG)."),
        }


@admin.register(ShopSettings)
class ShopSettingsAdmin(admin.ModelAdmin):
    """One row: the list goes straight to its form, which works before the row was ever saved."""

    form = ShopSettingsForm
    formfield_overrides = IMAGE_UPLOAD_OVERRIDES
    fieldsets = [
        (None, {"fields": ["name", "logo", "favicon", "footer_text"]}),
        (
            _("Support contacts"),
            {
                "description": _("Shown at the foot of every storefront page. Leave empty what you do not offer."),
                "fields": ["support_qq", "support_wechat", "support_telegram", "support_email"],
            },
        ),
        (
            _("Notice banner"),
            {
                "description": _(
                    "Markdown. Shown at the top of every storefront page between the two times (empty: no limit)."
                ),
                "fields": ["notice", "notice_starts_at", "notice_ends_at"],
            },
        ),
        (_("After purchase"), {"fields": ["order_note"]}),
    ]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def changelist_view(self, request, extra_context=None):
        return redirect("admin:shop_shopsettings_change", ShopSettings.SINGLETON_PK)

    def get_object(self, request, object_id, from_field=None):
        if str(object_id) != str(ShopSettings.SINGLETON_PK):
            return None
        return ShopSettings.objects.filter(pk=ShopSettings.SINGLETON_PK).first() or ShopSettings(
            pk=ShopSettings.SINGLETON_PK
        )

    def response_change(self, request, obj):
        if "_continue" not in request.POST:
            self.message_user(request, _("The shop settings were saved."), messages.SUCCESS)
            return redirect("admin:shop_shopsettings_change", ShopSettings.SINGLETON_PK)
        return super().response_change(request, obj)


class OrderEventInline(admin.TabularInline):
    model = OrderEvent
    extra = 0
    can_delete = False
    fields = readonly_fields = ("created_at", "type", "message", "actor")

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class ManualDeliveryForm(forms.Form):
    keys = forms.CharField(
        label=_("Keys, one per line"),
        widget=SecretTextarea(attrs={"rows": 6, "autocomplete": "off", "spellcheck": "false"}),
    )


ORDER_READONLY: tuple[str, ...] = (
    "number",
    "product",
    "quantity",
    "unit_price",
    "total",
    "contact",
    "contact_kind",
    "client_ip",
    "status",
    "exception_reason",
    "exception_note",
    "created_at",
    "expires_at",
    "paid_at",
    "delivered_at",
    "exception_at",
    "is_test",
)


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ["number", "product", "quantity", "total", "contact", "status", "exception_reason", "created_at"]
    list_filter = ["status", "exception_reason", "is_test", "product"]
    list_select_related = ["product"]
    search_fields = ["=number", "contact"]
    date_hierarchy: ClassVar[str | None] = "created_at"
    readonly_fields = ORDER_READONLY
    fields = ORDER_READONLY
    inlines = [OrderEventInline]
    actions = ["query_platform"]

    @admin.action(description=_("Query the payment platform now"), permissions=["change"])
    def query_platform(self, request, queryset):
        for order, outcome in orders_query_platform(
            order_ids=list(queryset.values_list("pk", flat=True)), actor=request.user.get_username()
        ):
            self.message_user(request, f"{order.number}: {outcome}", messages.INFO)

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ExceptionOrder)
class ExceptionQueueAdmin(OrderAdmin):
    list_display = [
        "number",
        "exception_reason",
        "age",
        "assignee",
        "product",
        "quantity",
        "total",
        "contact",
        "exception_note",
        "manual_delivery",
    ]
    list_filter = ["exception_reason", "assignee", "product"]
    list_select_related = ["product", "assignee"]
    date_hierarchy = None
    actions = ["retry_delivery", "refund", "assign_to_me", "resolve"]
    fields = ("assignee", "staff_note", *ORDER_READONLY, "history")
    # The history is shown read-only (below) so saving the staff fields needs no inline formset.
    inlines = []

    class Media:
        css = {"all": ["shop/admin.css"]}

    def get_readonly_fields(self, request, obj=None):
        return [*ORDER_READONLY, "history"]

    @admin.display(description=_("manual delivery"))
    def manual_delivery(self, obj: Order) -> str:
        url = reverse("admin:shop_exceptionorder_deliver_manually", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, _("Type the keys"))

    def get_urls(self):
        return [
            path(
                "<int:order_id>/deliver-manually/",
                self.admin_site.admin_view(self.deliver_manually_view),
                name="shop_exceptionorder_deliver_manually",
            ),
            *super().get_urls(),
        ]

    def deliver_manually_view(self, request, order_id: int):
        if not self.has_change_permission(request):
            raise PermissionDenied
        order = get_object_or_404(Order.objects.select_related("product"), pk=order_id)
        form = ManualDeliveryForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                order_deliver_manually(
                    order_id=order.pk,
                    secrets=form.cleaned_data["keys"].splitlines(),
                    actor=request.user.get_username(),
                    user=request.user,
                )
            except (DeliveryRefused, ManualKeysRefused) as exc:
                form = ManualDeliveryForm()
                self.message_user(request, str(exc), messages.ERROR)
            else:
                self.message_user(
                    request, _("Order %(number)s delivered.") % {"number": order.number}, messages.SUCCESS
                )
                return redirect("admin:shop_exceptionorder_changelist")
        context = {
            **self.admin_site.each_context(request),
            "title": _("Deliver %(number)s manually") % {"number": order.number},
            "form": form,
            "order": order,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/shop/exceptionorder/deliver_manually.html", context)

    @admin.display(description=_("history"))
    def history(self, obj: Order) -> str:
        return format_html_join(
            "",
            "<div>{} · {} · {} {}</div>",
            (
                (timezone.localtime(e.created_at).strftime("%Y-%m-%d %H:%M:%S"), e.type, e.actor, e.message)
                for e in obj.events.all()
            ),
        )

    @admin.display(description=_("waiting"), ordering="exception_at")
    def age(self, obj: Order) -> str:
        if obj.exception_at is None:
            return "-"
        minutes = int((timezone.now() - obj.exception_at).total_seconds() // 60)
        text = f"{minutes // 60}h {minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"
        overdue = minutes >= settings.EXCEPTION_SLA_MINUTES
        return format_html('<span class="{}">{}</span>', "kameng-overdue" if overdue else "kameng-age", text)

    def save_model(self, request, obj, form, change):
        # Only the staff fields are editable here, and they go through the service (logged).
        order_exception_assign(
            order_id=obj.pk,
            assignee=form.cleaned_data.get("assignee"),
            note=form.cleaned_data.get("staff_note", ""),
            actor=request.user.get_username(),
        )

    @admin.action(description=_("Assign to me"), permissions=["change"])
    def assign_to_me(self, request, queryset):
        for order in queryset:
            order_exception_assign(
                order_id=order.pk, assignee=request.user, note=order.staff_note, actor=request.user.get_username()
            )

    @admin.action(description=_("Resolve (keys already with the buyer)"), permissions=["change"])
    def resolve(self, request, queryset):
        for order in queryset:
            try:
                order_exception_resolve(order_id=order.pk, actor=request.user.get_username())
            except InvalidTransition as exc:
                self.message_user(request, str(exc), messages.WARNING)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .filter(status=OrderStatus.EXCEPTION)
            .order_by(F("exception_at").asc(nulls_first=True))
        )

    @admin.action(description=_("Retry delivery (deliver anyway)"), permissions=["change"])
    def retry_delivery(self, request, queryset):
        delivered = 0
        for order in queryset.order_by("exception_at"):
            try:
                status = order_retry_delivery(order_id=order.pk, actor=request.user.get_username())
            except DeliveryRefused as exc:
                self.message_user(request, str(exc), messages.WARNING)
                continue
            delivered += status == OrderStatus.DELIVERED
        left = queryset.count()
        self.message_user(
            request,
            _("%(delivered)d delivered; %(left)d still in the queue.") % {"delivered": delivered, "left": left},
            messages.SUCCESS if delivered else messages.WARNING,
        )

    @admin.action(description=_("Refund through the payment platform"), permissions=["change"])
    def refund(self, request, queryset):
        for order in queryset:
            try:
                refund = order_refund(
                    order_id=order.pk, actor=request.user.get_username(), reason=order.get_exception_reason_display()
                )
            except Exception as exc:  # noqa: BLE001 - RefundRefused, GatewayError: tell staff, change nothing
                self.message_user(request, f"{order.number}: {exc}", messages.ERROR)
            else:
                self.message_user(
                    request, f"{order.number}: {refund.get_state_display()} ({refund.out_refund_no})", messages.SUCCESS
                )

    def has_change_permission(self, request, obj=None) -> bool:
        return request.user.has_perm("shop.change_order")

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.has_perm("shop.view_order") or self.has_change_permission(request, obj)
