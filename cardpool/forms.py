from __future__ import annotations

from decimal import Decimal

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from cardpool.importing import ImportLayout, ImportRefused, layout_for_filename
from shop.models import Product


class SecretTextarea(forms.Textarea):
    """A textarea that never renders its value back, so pasted keys do not reappear in the page."""

    def format_value(self, value):
        return None


class KeyImportForm(forms.Form):
    product = forms.ModelChoiceField(label=_("Product"), queryset=Product.objects.order_by("name"))
    text = forms.CharField(
        label=_("Paste keys"),
        required=False,
        widget=SecretTextarea(attrs={"rows": 10, "spellcheck": "false", "autocomplete": "off"}),
        help_text=_("One key per line. Blank lines and surrounding spaces are ignored."),
    )
    file = forms.FileField(
        label=_("Or upload a file"),
        required=False,
        help_text=_("TXT, CSV or XLSX; UTF-8, UTF-16 or GBK. The format follows the file name's extension."),
    )
    separator = forms.ChoiceField(
        label=_("Each TXT line is"),
        required=False,
        choices=[
            ("", _("one key")),
            ("----", _("card number----password")),
            ("space", _("card number and password, space")),
            ("comma", _("card number,password")),
            ("tab", _("card number and password, tab")),
        ],
    )
    secret_column = forms.CharField(
        label=_("CSV/XLSX key column"),
        max_length=100,
        initial="1",
        required=False,
        help_text=_("Header name (e.g. 卡号) or column number, 1 for the first."),
    )
    password_column = forms.CharField(label=_("CSV/XLSX password column"), max_length=100, required=False)
    expiry_column = forms.CharField(label=_("CSV/XLSX expiry date column"), max_length=100, required=False)
    header = forms.BooleanField(label=_("The first CSV/XLSX row holds column names"), required=False, initial=True)
    expires_at = forms.DateField(
        label=_("Keys expire on"),
        required=False,
        help_text=_("For keys without their own expiry date. Empty: never."),
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    max_uses = forms.IntegerField(
        label=_("Deliveries per key"),
        min_value=1,
        initial=1,
        required=False,
        help_text=_(
            "1: every key is sold once (default). More, or empty for no cap: a reusable key, such as a shared "
            "account or a generic code, delivered to that many orders."
        ),
    )
    supplier = forms.CharField(label=_("Supplier"), max_length=100, required=False)
    unit_cost = forms.DecimalField(
        label=_("Unit cost (yuan)"), max_digits=10, decimal_places=2, min_value=Decimal(0), required=False
    )
    note = forms.CharField(label=_("Note"), required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def clean_file(self):
        upload = self.cleaned_data.get("file")
        if upload is not None and upload.size > settings.CARDPOOL_IMPORT_MAX_BYTES:
            raise ValidationError(_("The file is larger than the import limit."))
        return upload

    def clean(self):
        cleaned = super().clean()
        if not (cleaned.get("text") or "").strip() and not cleaned.get("file") and not self.errors:
            raise ValidationError(_("Paste keys or choose a file."))
        return cleaned

    def source(self) -> tuple[str, bytes]:
        """(source name, raw bytes) of the upload, or of the pasted text."""
        upload = self.cleaned_data.get("file")
        if upload is not None:
            return upload.name, upload.read()
        return "pasted", self.cleaned_data["text"].encode("utf-8")

    def layout(self, source_name: str) -> ImportLayout:
        data = self.cleaned_data
        expires = data.get("expires_at")
        options = {
            "separator": data.get("separator") or None,
            "secret_column": data.get("secret_column") or "1",
            "password_column": data.get("password_column") or "",
            "expiry_column": data.get("expiry_column") or "",
            "header": bool(data.get("header")),
            "max_uses": data.get("max_uses"),
            "expires_at": expires.isoformat() if expires else "",
        }
        try:
            return layout_for_filename(source_name if source_name != "pasted" else "pasted.txt", **options)
        except ImportRefused as exc:
            raise ValidationError(str(exc)) from None
