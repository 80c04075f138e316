"""Keep order links out of the logs.

An order page's address carries its access token (``/order/<token>/…``) and an SMS's short link
its signature (``/s/<number>.<signature>/``): whoever reads the path opens the buyer's keys.
Django's own loggers write the path of every refused request (``django.request``: "Not Found:
/order/…", "Too Many Requests: …"; ``django.security.csrf``: "Forbidden (CSRF cookie not set.):
…"), so ``OrderTokenRedact`` is attached to those
loggers in ``settings.LOGGING`` and replaces the secret part with ``…``.
"""

from __future__ import annotations

import logging
import re

_ORDER_PATH = re.compile(r"/(order|s)/[^/\s\"'?]+")


def order_paths_redact(text: str) -> str:
    return _ORDER_PATH.sub(lambda m: f"/{m.group(1)}/…", text)


class OrderTokenRedact(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = order_paths_redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True
