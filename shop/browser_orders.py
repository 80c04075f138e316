""" "Orders from this browser": the order ids a browser opened, in a signed cookie.

The cookie holds order ids only, signed with SECRET_KEY (django.core.signing), HttpOnly,
SameSite=Lax and Secure like the session cookie. A cookie from another browser is simply absent;
a tampered, expired or malformed one counts as empty. The newest ``BROWSER_ORDERS_MAX`` orders
are kept, for ``BROWSER_ORDERS_DAYS``.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from shop.models import Order

COOKIE_NAME = "kameng_orders"
COOKIE_SALT = "kameng.shop.browser-orders"


def browser_order_ids(request: HttpRequest) -> list[int]:
    """The ids this browser remembers, newest first; [] for a missing or untrustworthy cookie."""
    value = request.get_signed_cookie(
        COOKIE_NAME, default="", salt=COOKIE_SALT, max_age=settings.BROWSER_ORDERS_DAYS * 86400
    )
    ids = []
    for part in value.split(".") if value else ():
        if part.isdigit() and len(part) < 19 and int(part) not in ids:
            ids.append(int(part))
    return ids[: settings.BROWSER_ORDERS_MAX]


def browser_orders_remember(*, request: HttpRequest, response: HttpResponse, order: Order) -> None:
    """Put ``order`` first in the browser's list (set on ``response``), unless it already is."""
    ids = browser_order_ids(request)
    if ids[:1] == [order.pk]:
        return
    ids = [order.pk, *(pk for pk in ids if pk != order.pk)][: settings.BROWSER_ORDERS_MAX]
    response.set_signed_cookie(
        COOKIE_NAME,
        ".".join(str(pk) for pk in ids),
        salt=COOKIE_SALT,
        max_age=settings.BROWSER_ORDERS_DAYS * 86400,
        httponly=True,
        samesite="Lax",
        secure=settings.SESSION_COOKIE_SECURE,
    )
