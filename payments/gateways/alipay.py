"""Alipay (支付宝) through the official alipay-sdk-python: page pay, wap pay, 当面付 QR.

Notifications are verified here, field by field, before anything changes: RSA2 signature over the
sorted fields (``sign`` and ``sign_type`` removed, empty values dropped), RSA2 only, ``app_id``,
``seller_id`` when configured, a well-formed amount and a known ``trade_status``. The payment
service then checks ``out_trade_no`` and the amount against our Payment row.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import logging
import types
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import alipay.aop.api.DefaultAlipayClient as sdk_client_module
from alipay.aop.api.AlipayClientConfig import AlipayClientConfig
from alipay.aop.api.DefaultAlipayClient import DefaultAlipayClient
from alipay.aop.api.domain.AlipayTradeCloseModel import AlipayTradeCloseModel
from alipay.aop.api.domain.AlipayTradePagePayModel import AlipayTradePagePayModel
from alipay.aop.api.domain.AlipayTradePrecreateModel import AlipayTradePrecreateModel
from alipay.aop.api.domain.AlipayTradeQueryModel import AlipayTradeQueryModel
from alipay.aop.api.domain.AlipayTradeRefundModel import AlipayTradeRefundModel
from alipay.aop.api.domain.AlipayTradeWapPayModel import AlipayTradeWapPayModel
from alipay.aop.api.request.AlipayTradeCloseRequest import AlipayTradeCloseRequest
from alipay.aop.api.request.AlipayTradePagePayRequest import AlipayTradePagePayRequest
from alipay.aop.api.request.AlipayTradePrecreateRequest import AlipayTradePrecreateRequest
from alipay.aop.api.request.AlipayTradeQueryRequest import AlipayTradeQueryRequest
from alipay.aop.api.request.AlipayTradeRefundRequest import AlipayTradeRefundRequest
from alipay.aop.api.request.AlipayTradeWapPayRequest import AlipayTradeWapPayRequest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

from payments.gateways.base import (
    GatewayAck,
    GatewayError,
    NotificationRejected,
    PaymentAction,
    PaymentGateway,
    PaymentRequest,
    PaymentStatus,
    RefundResult,
    VerifiedNotification,
    yuan_parse,
)
from payments.keys import private_key_load, private_key_pkcs1_body, public_key_load, public_key_spki_body

logger = logging.getLogger(__name__)

CHINA = ZoneInfo("Asia/Shanghai")
PAID_STATUSES = frozenset({"TRADE_SUCCESS", "TRADE_FINISHED"})
KNOWN_STATUSES = PAID_STATUSES | {"WAIT_BUYER_PAY", "TRADE_CLOSED"}


class _ChinaClock(dt.datetime):
    """``datetime.now()`` in China time: Alipay checks the request ``timestamp`` as Beijing time,
    and the SDK stamps it with the server's local clock, which may be UTC."""

    @classmethod
    def now(cls, tz=None):
        if tz is not None:
            return dt.datetime.now(tz)
        return dt.datetime.now(CHINA).replace(tzinfo=None)


# The SDK calls ``datetime.datetime.now()`` through its module's ``datetime`` name only.
sdk_client_module.datetime = types.SimpleNamespace(datetime=_ChinaClock)


@dataclass(frozen=True)
class AlipaySettings:
    app_id: str
    seller_id: str
    app_private_key_pkcs1: str
    alipay_public_key_spki: str
    server_url: str
    pay_mode: str
    notify_max_age: dt.timedelta


def alipay_settings_load() -> AlipaySettings | None:
    """Alipay's settings, or None when ALIPAY_APP_ID is unset. Raises ImproperlyConfigured
    naming the variable when the gateway is half-configured or a key is malformed."""
    if not settings.ALIPAY_APP_ID:
        return None
    for name in ("ALIPAY_APP_PRIVATE_KEY", "ALIPAY_PUBLIC_KEY"):
        if not getattr(settings, name):
            raise ImproperlyConfigured(f"{name} (or {name}_FILE) is required when ALIPAY_APP_ID is set")
    if settings.ALIPAY_PAY_MODE not in ("auto", "page", "qr"):
        raise ImproperlyConfigured("ALIPAY_PAY_MODE must be auto, page or qr")
    server = urlsplit(settings.ALIPAY_SERVER_URL)
    if server.scheme not in ("http", "https") or not server.hostname or server.port:
        # alipay-sdk-python connects to port 80/443 whatever the URL says.
        raise ImproperlyConfigured("ALIPAY_SERVER_URL must be an http(s) URL without a port")
    return AlipaySettings(
        app_id=settings.ALIPAY_APP_ID,
        seller_id=settings.ALIPAY_SELLER_ID,
        app_private_key_pkcs1=private_key_pkcs1_body(
            private_key_load(settings.ALIPAY_APP_PRIVATE_KEY, "ALIPAY_APP_PRIVATE_KEY")
        ),
        alipay_public_key_spki=public_key_spki_body(public_key_load(settings.ALIPAY_PUBLIC_KEY, "ALIPAY_PUBLIC_KEY")),
        server_url=settings.ALIPAY_SERVER_URL,
        pay_mode=settings.ALIPAY_PAY_MODE,
        notify_max_age=dt.timedelta(hours=settings.ALIPAY_NOTIFY_MAX_AGE_HOURS),
    )


@lru_cache(maxsize=2)
def _client(config: AlipaySettings) -> DefaultAlipayClient:
    sdk_config = AlipayClientConfig()
    sdk_config.server_url = config.server_url
    sdk_config.app_id = config.app_id
    sdk_config.app_private_key = config.app_private_key_pkcs1
    sdk_config.alipay_public_key = config.alipay_public_key_spki
    sdk_config.sign_type = "RSA2"
    sdk_config.timeout = 10
    # No logger: the SDK would log every request with its signed content.
    return DefaultAlipayClient(sdk_config)


@lru_cache(maxsize=4)
def _public_key(spki_body: str) -> rsa.RSAPublicKey:
    return public_key_load(spki_body, "ALIPAY_PUBLIC_KEY")


def _rsa2_verified(spki_body: str, message: bytes, signature: str) -> bool:
    """SHA256withRSA (Alipay's RSA2) with ``cryptography``, on a key parsed once per process.

    The SDK's own verify_with_rsa re-parses the PEM with pure-Python pyasn1 and rsa on every
    call, on every notification, and raises instead of returning False; this returns False for
    any bad input.
    """
    try:
        _public_key(spki_body).verify(
            base64.b64decode(signature, validate=True), message, padding.PKCS1v15(), hashes.SHA256()
        )
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def _yuan(amount: Decimal) -> str:
    return f"{amount:.2f}"


class AlipayGateway(PaymentGateway):
    identifier = "alipay"
    verbose_name = _("Alipay")

    @staticmethod
    def config() -> AlipaySettings | None:
        return _settings_cached(
            settings.ALIPAY_APP_ID,
            settings.ALIPAY_SELLER_ID,
            settings.ALIPAY_APP_PRIVATE_KEY,
            settings.ALIPAY_PUBLIC_KEY,
            settings.ALIPAY_SERVER_URL,
            settings.ALIPAY_PAY_MODE,
            settings.ALIPAY_NOTIFY_MAX_AGE_HOURS,
        )

    def is_enabled(self) -> bool:
        return self.config() is not None

    def _configured(self) -> AlipaySettings:
        """The settings of an enabled gateway, the only kind the registry hands out. Raises
        GatewayError when it is not configured."""
        config = self.config()
        if config is None:
            raise GatewayError("alipay is not configured")
        return config

    def redirect_origins(self) -> tuple[str, ...]:
        # Page and wap pay send the buyer to ALIPAY_SERVER_URL with the signed request; the
        # gateway answers with redirects to its cashier (excashier.alipay.com for page pay,
        # mclient.alipay.com for wap pay; the sandbox's on alipaydev.com). QR pay stays here.
        config = self.config()
        if config is None or config.pay_mode == "qr":
            return ()
        server = urlsplit(config.server_url)
        cashier = (
            "https://*.alipaydev.com" if (server.hostname or "").endswith("alipaydev.com") else "https://*.alipay.com"
        )
        return (f"{server.scheme}://{server.hostname}", cashier)

    def create_payment(self, request: PaymentRequest) -> PaymentAction:
        config = self._configured()
        client = _client(config)
        if config.pay_mode == "qr":
            model = AlipayTradePrecreateModel()
            model.out_trade_no, model.total_amount, model.subject = (
                request.out_trade_no,
                _yuan(request.amount),
                request.subject,
            )
            sdk_request = AlipayTradePrecreateRequest(biz_model=model)
            sdk_request.notify_url = request.notify_url
            reply = self._execute(client, sdk_request)
            if reply.get("code") != "10000" or not reply.get("qr_code"):
                raise GatewayError(f"alipay precreate refused: {reply.get('sub_code') or reply.get('code')}")
            return PaymentAction(qr_content=reply["qr_code"])
        if request.mobile and config.pay_mode == "auto":
            model = AlipayTradeWapPayModel()
            model.product_code = "QUICK_WAP_WAY"
            model.quit_url = request.return_url
            sdk_request_class = AlipayTradeWapPayRequest
        else:
            model = AlipayTradePagePayModel()
            model.product_code = "FAST_INSTANT_TRADE_PAY"
            sdk_request_class = AlipayTradePagePayRequest
        model.out_trade_no, model.total_amount, model.subject = (
            request.out_trade_no,
            _yuan(request.amount),
            request.subject,
        )
        sdk_request = sdk_request_class(biz_model=model)
        sdk_request.notify_url = request.notify_url
        sdk_request.return_url = request.return_url
        return PaymentAction(redirect_url=client.page_execute(sdk_request, http_method="GET"))

    def parse_notification(
        self, *, body: bytes, headers: Mapping[str, str], form: Mapping[str, str]
    ) -> VerifiedNotification:
        config = self._configured()
        fields = {name: str(form.get(name, "")) for name in form}
        sign = fields.pop("sign", "")
        sign_type = fields.pop("sign_type", "")
        if not sign:
            raise NotificationRejected("missing sign")
        if sign_type != "RSA2":
            raise NotificationRejected(f"sign_type {sign_type or '(none)'} refused: RSA2 only")
        content = "&".join(f"{name}={value}" for name, value in sorted(fields.items()) if value != "")
        if not _rsa2_verified(config.alipay_public_key_spki, content.encode("utf-8"), sign):
            raise NotificationRejected("bad signature")
        if fields.get("app_id") != config.app_id:
            raise NotificationRejected("wrong app_id")
        if config.seller_id and fields.get("seller_id") != config.seller_id:
            raise NotificationRejected("wrong seller_id")
        for name in ("out_trade_no", "trade_no", "trade_status", "total_amount"):
            if not fields.get(name):
                raise NotificationRejected(f"missing {name}")
            if len(fields[name]) > 64:
                raise NotificationRejected(f"{name} too long")
        if fields["trade_status"] not in KNOWN_STATUSES:
            raise NotificationRejected(f"unknown trade_status {fields['trade_status'][:32]}")
        self._check_fresh(fields.get("notify_time", ""), config)
        return VerifiedNotification(
            out_trade_no=fields["out_trade_no"],
            transaction_id=fields["trade_no"],
            amount=yuan_parse(fields["total_amount"], field="total_amount"),
            paid=fields["trade_status"] in PAID_STATUSES,
        )

    @staticmethod
    def _check_fresh(notify_time: str, config: AlipaySettings) -> None:
        # Alipay retries a notification for about 25 hours; anything much older is a replay.
        # "YYYY-MM-DD HH:MM:SS", China time. fromisoformat, held to exactly that shape, rather than
        # strptime, which is far dearer and would run on every notification.
        try:
            if len(notify_time) != 19 or notify_time[10] != " ":
                raise ValueError(notify_time)
            sent = dt.datetime.fromisoformat(notify_time).replace(tzinfo=CHINA)
        except ValueError:
            raise NotificationRejected("bad notify_time") from None
        now = dt.datetime.now(CHINA)
        if sent - now > dt.timedelta(minutes=5) or now - sent > config.notify_max_age:
            raise NotificationRejected("stale notification")

    def notification_ack(self, *, accepted: bool, reason: str = "") -> GatewayAck:
        # Alipay wants exactly "success"; anything else makes it retry.
        return GatewayAck(status=200, body="success") if accepted else GatewayAck(status=400, body="fail")

    def query(self, *, out_trade_no: str) -> PaymentStatus | None:
        model = AlipayTradeQueryModel()
        model.out_trade_no = out_trade_no
        reply = self._execute(_client(self._configured()), AlipayTradeQueryRequest(biz_model=model))
        if reply.get("code") != "10000":
            if reply.get("sub_code") == "ACQ.TRADE_NOT_EXIST":
                return None
            raise GatewayError(f"alipay query failed: {reply.get('sub_code') or reply.get('code')}")
        paid = reply.get("trade_status") in PAID_STATUSES
        return PaymentStatus(
            out_trade_no=out_trade_no,
            paid=paid,
            amount=Decimal(reply["total_amount"]) if reply.get("total_amount") else None,
            transaction_id=reply.get("trade_no", ""),
        )

    def close(self, *, out_trade_no: str) -> None:
        model = AlipayTradeCloseModel()
        model.out_trade_no = out_trade_no
        reply = self._execute(_client(self._configured()), AlipayTradeCloseRequest(biz_model=model))
        # A trade the buyer never opened does not exist at Alipay yet: nothing to close.
        if reply.get("code") != "10000" and reply.get("sub_code") != "ACQ.TRADE_NOT_EXIST":
            raise GatewayError(f"alipay close failed: {reply.get('sub_code') or reply.get('code')}")

    def refund(
        self, *, out_trade_no: str, out_refund_no: str, amount: Decimal, total: Decimal, reason: str = ""
    ) -> RefundResult:
        model = AlipayTradeRefundModel()
        model.out_trade_no = out_trade_no
        model.out_request_no = out_refund_no
        model.refund_amount = _yuan(amount)
        model.refund_reason = reason[:256] or None
        reply = self._execute(_client(self._configured()), AlipayTradeRefundRequest(biz_model=model))
        if reply.get("code") != "10000":
            raise GatewayError(f"alipay refund refused: {reply.get('sub_code') or reply.get('code')}")
        return RefundResult(refund_id=reply.get("trade_no", ""))

    @staticmethod
    def _execute(client: DefaultAlipayClient, sdk_request) -> dict:
        """Call the platform; the SDK verifies the reply's signature. Raises GatewayError."""
        try:
            return json.loads(client.execute(sdk_request))
        except Exception as exc:  # network, HTTP status, bad signature, bad JSON
            raise GatewayError(f"alipay request failed: {type(exc).__name__}") from exc


@lru_cache(maxsize=4)
def _settings_cached(*_key) -> AlipaySettings | None:
    return alipay_settings_load()
