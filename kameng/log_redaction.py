"""Secret path segments never reach a log: ``/order/<token>/…`` and ``/s/<token>/`` become
``/order/[redacted]/…`` in gunicorn's access and error logs and in Django's logs
(``django.server`` under runserver, ``django.request``'s "Not Found: …").

A token is the whole secret of an order page, so a log line, a log shipper or a support
screenshot holding one opens the page. The rule looks at every part of a line (request line,
path, Referer — the order page's own requests carry it — and any other header gunicorn logs),
also when the slash is percent-encoded or the letters change case, since both still reach the
view.

gunicorn: ``--logger-class kameng.log_redaction.GunicornLogger``. Django: the ``secret_paths``
filter on the handlers in ``kameng/settings.py`` LOGGING.
"""

from __future__ import annotations

import logging
import re

from gunicorn.glogging import Logger

REDACTED = "[redacted]"

# The URL prefixes whose next segment is a secret (shop/urls.py). The segment runs to the next
# slash (also %2F or a backslash), query, fragment, quote or line end, or to " HTTP/" in a
# request line; it may hold spaces, since Django logs decoded paths ("Not Found: /order/ x/").
SECRET_PATH_PREFIXES = ("order", "s")
_SLASH = r"(?:/|%2[fF]|\\)"
_SECRET_SEGMENT = re.compile(
    # Not after /shop: /admin/shop/order/<id>/ names no secret.
    rf"((?<!/shop){_SLASH}(?i:{'|'.join(SECRET_PATH_PREFIXES)}){_SLASH}+)"
    rf"([^\r\n]+?)(?={_SLASH}|[?#\"'<>\r\n]| HTTP/|$)",
    re.M,
)


def secret_paths_redact(text: str) -> str:
    """``text`` with the secret segment after each ``/order/`` and ``/s/`` replaced."""
    return _SECRET_SEGMENT.sub(lambda match: match.group(1) + REDACTED, text)


class SecretPathFilter(logging.Filter):
    """Rewrites a record's message, its arguments filled in, with secret segments redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record: leave it to the handler's own error path
            return True
        redacted = secret_paths_redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


class GunicornLogger(Logger):
    """gunicorn's logger with secret path segments redacted from the access and error logs
    (the error log names the URI of a request that failed: "Error handling request …")."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            if not any(isinstance(existing, SecretPathFilter) for existing in log.filters):
                log.addFilter(SecretPathFilter())
