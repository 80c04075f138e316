"""The secret in an order page's link (``/order/<token>/``), and the hash the database keeps of it.

The token is HMAC-SHA256 over the order number with ``ORDER_TOKEN_KEY`` (default: a key derived
from ``SECRET_KEY``), base64url without padding: 43 characters, 256 bits. It can be computed
again whenever a link is needed (the delivery email long after checkout, the payment's return
URL, a redirect), so it is never stored: the order table keeps only ``sha256(token)``, and a
dump or backup of the database opens no order page. A request is matched by the hash of the
token in its URL through a unique index: the work does not depend on how much of a token is
right, so timing tells nothing about a prefix.

Changing the key changes every order's token. Links already sent keep working only through the
hash stored for them; run ``manage.py order_tokens_rekey`` right after the change, which keeps
the previous link of every order working and stores the new one (README, "Configuration").
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac

from django.conf import settings
from django.utils.crypto import salted_hmac

_PURPOSE = b"kameng.order-access-token:"


@functools.lru_cache(maxsize=4)
def _key(configured: str, secret_key: str) -> bytes:
    if configured:
        return configured.encode()
    return salted_hmac("kameng.order-access-token", "key", secret=secret_key, algorithm="sha256").digest()


def order_access_token(*, number: str) -> str:
    """The token of the order numbered ``number`` under the current key."""
    key = _key(settings.ORDER_TOKEN_KEY, settings.SECRET_KEY)
    digest = hmac.new(key, _PURPOSE + number.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def access_token_hash(token: str) -> str:
    """What the database stores of a token and looks it up by: sha256, hex."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def order_access_token_hash(*, number: str) -> str:
    """The stored hash of the current token of the order numbered ``number``."""
    return access_token_hash(order_access_token(number=number))
