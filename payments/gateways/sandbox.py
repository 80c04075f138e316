"""A sandbox gateway for the demo and tests: HMAC-SHA256-signed notifications, no real money.

Its pay page signs a notification with ``PAYMENTS_SANDBOX_SECRET`` and posts it to the same
notify endpoint the real gateways use. Refused unless ``PAYMENTS_SANDBOX_ENABLED`` is on.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from decimal import Decimal
from urllib.parse import urlencode

from django.conf import settings
from django.urls import reverse
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext_lazy as _

from payments.gateways.base import (
    GatewayAck,
    NotificationRejected,
    PaymentAction,
    PaymentGateway,
    PaymentRequest,
    PaymentStatus,
    RefundResult,
    VerifiedNotification,
    unix_timestamp_check_fresh,
    yuan_parse,
)

MERCHANT_ID = "kameng-sandbox"
SIGNED_FIELDS = ("merchant_id", "out_trade_no", "trade_no", "total_amount", "trade_status", "timestamp")


def sandbox_signature(fields: Mapping[str, str], secret: str) -> str:
    """HMAC-SHA256 over ``k=v`` pairs of the signed fields, sorted by name, joined with ``&``."""
    message = "&".join(f"{name}={fields.get(name, '')}" for name in sorted(SIGNED_FIELDS))
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def sandbox_pay_page_signature(*, out_trade_no: str, return_url: str) -> str:
    """HMAC-SHA256 binding the sandbox pay page of ``out_trade_no`` to its return URL."""
    message = f"sandbox-pay-page\n{out_trade_no}\n{return_url}"
    return hmac.new(sandbox_secret().encode(), message.encode(), hashlib.sha256).hexdigest()


def sandbox_secret() -> str:
    """PAYMENTS_SANDBOX_SECRET, or in staff test mode a key derived from SECRET_KEY."""
    return settings.PAYMENTS_SANDBOX_SECRET or salted_hmac("kameng.sandbox", "notify").hexdigest()


class SandboxGateway(PaymentGateway):
    identifier = "sandbox"
    verbose_name = _("Sandbox (test payments)")
    # Staff may pay with it in production to test a product; those orders are marked as tests.
    staff_test_mode = True

    def is_enabled(self) -> bool:
        return bool(settings.PAYMENTS_SANDBOX_ENABLED and settings.PAYMENTS_SANDBOX_SECRET)

    def create_payment(self, request: PaymentRequest) -> PaymentAction:
        # Like a platform's cashier URL, the pay page's is signed by the shop and carries the
        # return URL (the order page, whose access token it holds): without the signature the
        # page is a 404, so an out_trade_no alone opens nothing.
        query = urlencode(
            {
                "return_url": request.return_url,
                "sign": sandbox_pay_page_signature(out_trade_no=request.out_trade_no, return_url=request.return_url),
            }
        )
        return PaymentAction(redirect_url=f"{reverse('payments:sandbox-pay', args=[request.out_trade_no])}?{query}")

    def notification_fields(self, *, out_trade_no: str, amount: Decimal) -> dict[str, str]:
        """A signed "paid" notification, as the sandbox platform would send it."""
        fields = {
            "merchant_id": MERCHANT_ID,
            "out_trade_no": out_trade_no,
            "trade_no": "SBX" + secrets.token_hex(12),
            "total_amount": f"{amount:.2f}",
            "trade_status": "TRADE_SUCCESS",
            "timestamp": str(int(time.time())),
        }
        fields["sign"] = sandbox_signature(fields, sandbox_secret())
        return fields

    def parse_notification(
        self, *, body: bytes, headers: Mapping[str, str], form: Mapping[str, str]
    ) -> VerifiedNotification:
        missing = [name for name in (*SIGNED_FIELDS, "sign") if not form.get(name)]
        if missing:
            raise NotificationRejected(f"missing fields: {', '.join(missing)}")
        expected = sandbox_signature(form, sandbox_secret())
        # Bytes: compare_digest raises TypeError on a str with non-ASCII characters.
        if not hmac.compare_digest(expected.encode(), str(form["sign"]).encode()):
            raise NotificationRejected("bad signature")
        if len(form["out_trade_no"]) > 64 or len(form["trade_no"]) > 64:
            raise NotificationRejected("identifier too long")
        if form["merchant_id"] != MERCHANT_ID:
            raise NotificationRejected("wrong merchant")
        unix_timestamp_check_fresh(
            form["timestamp"], max_age_seconds=settings.PAYMENTS_NOTIFY_MAX_AGE_SECONDS, field="timestamp"
        )
        amount = yuan_parse(form["total_amount"], field="amount")
        return VerifiedNotification(
            out_trade_no=form["out_trade_no"],
            transaction_id=form["trade_no"],
            amount=amount,
            paid=form["trade_status"] in ("TRADE_SUCCESS", "TRADE_FINISHED"),
        )

    def notification_ack(self, *, accepted: bool, reason: str = "") -> GatewayAck:
        return GatewayAck(status=200, body="success") if accepted else GatewayAck(status=400, body="fail")

    def query(self, *, out_trade_no: str) -> PaymentStatus | None:
        # The sandbox keeps no state of its own: the notification is its only word.
        return None

    def close(self, *, out_trade_no: str) -> None:
        return None

    def refund(
        self, *, out_trade_no: str, out_refund_no: str, amount: Decimal, total: Decimal, reason: str = ""
    ) -> RefundResult:
        return RefundResult(refund_id=f"SBX-{out_refund_no}")
