"""Small presentation helpers for the storefront templates."""

from django import template
from django.templatetags.static import static

register = template.Library()

# Our own drawings (static/shop/pay-*.svg); a gateway without one gets the generic card.
GATEWAY_ICONS = {
    "alipay": "shop/pay-alipay.svg",
    "wechatpay": "shop/pay-wechatpay.svg",
    "sandbox": "shop/pay-sandbox.svg",
}
PLACEHOLDER_TONES = 6


@register.filter
def gateway_icon(identifier: str) -> str:
    return static(GATEWAY_ICONS.get(identifier, "shop/pay-card.svg"))


@register.filter
def placeholder_tone(product) -> int:
    """One of a few colours for a product without an image, the same one every time."""
    return (product.pk or 0) % PLACEHOLDER_TONES


@register.filter
def telegram_handle(value: str) -> str:
    """``@name``, ``t.me/name`` or ``https://t.me/name`` as ``name`` (for a t.me link)."""
    value = (value or "").strip()
    for prefix in ("https://", "http://", "t.me/", "telegram.me/", "@"):
        if value.lower().startswith(prefix):
            value = value[len(prefix) :]
    return value.strip("/")
