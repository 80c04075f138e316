from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from shop.services import contact_classify, contact_normalise


class CheckoutForm(forms.Form):
    quantity = forms.IntegerField(label=_("Quantity"), min_value=1, initial=1)
    contact = forms.CharField(
        label=_("Email or mobile number"),
        max_length=254,
        help_text=_("Your keys are sent here."),
        widget=forms.TextInput(attrs={"autocomplete": "email", "inputmode": "email"}),
    )
    query_password = forms.CharField(
        label=_("Query password"),
        min_length=4,
        max_length=64,
        help_text=_("Needed to look the order up later."),
        # Kept after a form error (a mistyped contact), so the buyer does not type it twice.
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}, render_value=True),
    )

    def __init__(self, *args, product=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.product = product
        if product is not None:
            self.fields["quantity"].min_value = product.min_quantity
            self.fields["quantity"].max_value = product.max_quantity
            self.fields["quantity"].initial = product.min_quantity
            self.fields["quantity"].widget.attrs.update({"min": product.min_quantity, "max": product.max_quantity})

    def clean_contact(self) -> str:
        contact = self.cleaned_data["contact"].strip()
        contact_classify(contact)
        return contact

    def clean_quantity(self) -> int:
        quantity = self.cleaned_data["quantity"]
        if self.product is not None and not (self.product.min_quantity <= quantity <= self.product.max_quantity):
            raise ValidationError(
                _("Choose between %(min)d and %(max)d per order."),
                params={"min": self.product.min_quantity, "max": self.product.max_quantity},
            )
        return quantity


class OrderLookupForm(forms.Form):
    """An order number, or the email or mobile number an order was placed with, plus the query
    password. ``cleaned_data["by"]`` says which ("number" or "contact"); a contact is normalised
    as orders store it."""

    # Named "number" since links and scripts post it so; it takes a contact as well.
    number = forms.CharField(
        label=_("Order number, email or mobile number"),
        max_length=254,
        widget=forms.TextInput(
            attrs={"autocomplete": "email", "inputmode": "email", "autocapitalize": "off", "spellcheck": "false"}
        ),
    )
    query_password = forms.CharField(label=_("Query password"), max_length=64, widget=forms.PasswordInput)

    def clean_number(self) -> str:
        text = self.cleaned_data["number"].strip()
        # Order numbers are 20 digits (date + 12 random); a mainland mobile number has 11.
        if text.isdigit() and len(text) != 11:
            self.cleaned_data["by"] = "number"
            return text
        try:
            contact, _kind = contact_normalise(text)
        except ValidationError:
            raise ValidationError(
                _("Enter your order number, or the email or mobile number you ordered with."), code="reference"
            ) from None
        self.cleaned_data["by"] = "contact"
        return contact
