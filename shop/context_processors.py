from shop.selectors import shop_settings


def shop(request):
    """``shop_settings`` for every template (the storefront's name, logo, contacts, notice)."""
    return {"shop_settings": shop_settings()}
