"""The payment-gateway interface. Services see only these dataclasses, never SDK objects.

Money is Decimal yuan here; yuan strings and fen integers exist only inside a gateway.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise


@dataclass(frozen=True)
class PaymentRequest:
    out_trade_no: str
    amount: Decimal
    subject: str
    notify_url: str
    return_url: str
    mobile: bool = False  # the buyer is on a phone browser (wap/H5 pay instead of page/QR)
    client_ip: str = ""


@dataclass(frozen=True)
class PaymentAction:
    """What the buyer's browser does next: go to ``redirect_url`` or show ``qr_content``."""

    redirect_url: str = ""
    qr_content: str = ""


@dataclass(frozen=True)
class VerifiedNotification:
    """A notification whose signature, merchant and freshness the gateway has checked."""

    out_trade_no: str
    transaction_id: str
    amount: Decimal
    paid: bool


@dataclass(frozen=True)
class GatewayAck:
    """The HTTP answer a gateway expects to a notification."""

    status: int
    body: str
    content_type: str = "text/plain"


@dataclass(frozen=True)
class PaymentStatus:
    out_trade_no: str
    paid: bool
    amount: Decimal | None = None
    transaction_id: str = ""


@dataclass(frozen=True)
class RefundResult:
    refund_id: str


class NotificationRejected(Exception):
    """The notification failed verification; nothing may change because of it."""


class GatewayError(Exception):
    """The platform could not be asked, or refused a request (transient unless it says so)."""


def unix_timestamp_check_fresh(text: str, *, max_age_seconds: int, field: str) -> None:
    """Refuse a notification whose Unix timestamp is further than ``max_age_seconds`` from now."""
    try:
        sent_at = int(text)
    except (TypeError, ValueError):
        raise NotificationRejected(f"bad {field}") from None
    if abs(time.time() - sent_at) > max_age_seconds:
        raise NotificationRejected("stale notification")


def yuan_parse(text: str, *, field: str) -> Decimal:
    """A platform's yuan string ("48.00") as a positive Decimal with at most 2 places."""
    try:
        amount = Decimal(text)
    except (InvalidOperation, TypeError):
        raise NotificationRejected(f"bad {field}") from None
    if not amount.is_finite() or amount <= 0 or amount != amount.quantize(Decimal("0.01")):
        raise NotificationRejected(f"bad {field}")
    return amount


class PaymentGateway:
    """Base class of payment gateways, found through ``settings.PAYMENT_GATEWAYS``."""

    identifier: str = ""
    verbose_name: StrOrPromise = ""

    def is_enabled(self) -> bool:
        raise NotImplementedError

    @staticmethod
    def config() -> object | None:
        """The gateway's parsed settings, or None when it is not configured. Raises
        ImproperlyConfigured naming the variable when it is half-configured or a key is bad."""
        return None

    def create_payment(self, request: PaymentRequest) -> PaymentAction:
        raise NotImplementedError

    def redirect_origins(self) -> tuple[str, ...]:
        """The origins (CSP source expressions) the buyer's browser passes through after the pay
        form's POST answers with a redirect to ``PaymentAction.redirect_url``, every hop of the
        platform's own redirects included. The storefront's CSP ``form-action`` allows exactly
        these for the enabled gateways (payments/csp.py); a hop missing here leaves the buyer on
        the pay page with a form-action violation. Same-origin pages need nothing."""
        return ()

    def parse_notification(
        self, *, body: bytes, headers: Mapping[str, str], form: Mapping[str, str]
    ) -> VerifiedNotification:
        """Verify a notification or raise NotificationRejected with a reason."""
        raise NotImplementedError

    def notification_ack(self, *, accepted: bool, reason: str = "") -> GatewayAck:
        raise NotImplementedError

    def query(self, *, out_trade_no: str) -> PaymentStatus | None:
        """Ask the platform about a payment; None when the platform does not know it."""
        raise NotImplementedError

    def close(self, *, out_trade_no: str) -> None:
        """Close an unpaid trade so it can no longer be paid. Raises GatewayError."""
        raise NotImplementedError

    def refund(
        self, *, out_trade_no: str, out_refund_no: str, amount: Decimal, total: Decimal, reason: str = ""
    ) -> RefundResult:
        """Refund ``amount`` of a paid trade; the same ``out_refund_no`` is the same refund at the
        platform. Raises GatewayError when the platform refuses or cannot be reached."""
        raise NotImplementedError
