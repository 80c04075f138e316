"""Email backends that stand in for an SMTP server (the outside edge) in tests."""

from __future__ import annotations

import smtplib

from django.core import mail
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend

FAILURES: list[Exception] = []


class ScriptedSMTPBackend(LocmemBackend):
    """Raises the queued SMTP errors one send at a time, then delivers to ``mail.outbox``."""

    def send_messages(self, messages):
        if FAILURES:
            raise FAILURES.pop(0)
        return super().send_messages(messages)


def fail_next(*errors: Exception) -> None:
    FAILURES.clear()
    FAILURES.extend(errors)


TEMPORARY = smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
PERMANENT = smtplib.SMTPRecipientsRefused({"buyer@example.com": (550, b"5.1.1 mailbox unavailable")})
__all__ = ["ScriptedSMTPBackend", "fail_next", "TEMPORARY", "PERMANENT", "mail"]
