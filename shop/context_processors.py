from django.utils import timezone

from shop.selectors import shop_settings


def shop(request):
    """``shop_settings`` for every template (the storefront's name, logo, contacts, notice), and
    ``shop_notice``, the notice's text while its schedule has it up (else empty)."""
    settings_row = shop_settings()
    return {
        "shop_settings": settings_row,
        "shop_notice": settings_row.notice if settings_row.notice_showing(now=timezone.now()) else "",
    }
