from __future__ import annotations

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from cardpool.services import ImportRefused, text_decode
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
        widget=SecretTextarea(attrs={"rows": 12, "spellcheck": "false", "autocomplete": "off"}),
        help_text=_("One key per line. Blank lines and surrounding spaces are ignored."),
    )
    file = forms.FileField(label=_("Or upload a text file (UTF-8, UTF-16 or GBK)"), required=False)
    separator = forms.ChoiceField(
        label=_("Each line is"), required=False,
        choices=[("", _("one key")), ("----", _("card number----password")), ("space", _("card number and password, space")),
                 ("comma", _("card number,password")), ("tab", _("card number and password, tab"))],
    )
    supplier = forms.CharField(label=_("Supplier"), max_length=100, required=False)
    preview = forms.BooleanField(label=_("Preview only: count, write nothing"), required=False)

    def clean_file(self):
        upload = self.cleaned_data.get("file")
        if upload is None:
            return None
        if upload.size > settings.CARDPOOL_IMPORT_MAX_BYTES:
            raise ValidationError(_("The file is larger than the import limit."))
        try:
            return text_decode(upload.read())
        except ImportRefused as exc:
            raise ValidationError(str(exc)) from None

    def clean(self):
        cleaned = super().clean()
        if not cleaned.get("text", "").strip() and not cleaned.get("file"):
            if not self.errors:
                raise ValidationError(_("Paste keys or choose a file."))
        return cleaned

    def keys_text(self) -> str:
        return "\n".join(part for part in (self.cleaned_data.get("text") or "", self.cleaned_data.get("file") or "") if part)
