"""WeChat Pay API v3 (微信支付) through wechatpayv3: Native (QR) on desktop, H5 on phones.

Configured entirely offline: either the WeChat Pay public key with its id (微信支付公钥), or
platform certificates from a directory. The shop never downloads certificates while serving a
request: before the SDK sees a notification, its ``Wechatpay-Serial`` must be one we hold — the
SDK would otherwise fetch certificates for an unknown serial and clear its cache on the way, so
one forged request could break every genuine one after it.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

from cryptography import x509
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from wechatpayv3 import WeChatPay, WeChatPayType

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
    unix_timestamp_check_fresh,
)
from payments.keys import private_key_load, private_key_pkcs8_pem, public_key_load, public_key_spki_pem

logger = logging.getLogger(__name__)

# Where an H5 payment's h5_url points (https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?…).
H5_ORIGIN = "https://wx.tenpay.com"
HEX_SERIAL = re.compile(r"^[0-9A-Fa-f]{1,64}$")
SETTING_NAMES = (
    "WECHATPAY_MCHID",
    "WECHATPAY_APPID",
    "WECHATPAY_APIV3_KEY",
    "WECHATPAY_PRIVATE_KEY",
    "WECHATPAY_CERT_SERIAL_NO",
    "WECHATPAY_PUBLIC_KEY",
    "WECHATPAY_PUBLIC_KEY_ID",
    "WECHATPAY_CERT_DIR",
    "WECHATPAY_API_URL",
    "WECHATPAY_NOTIFY_MAX_AGE_SECONDS",
)
HEADERS = (
    "Wechatpay-Signature",
    "Wechatpay-Timestamp",
    "Wechatpay-Nonce",
    "Wechatpay-Serial",
    "Wechatpay-Signature-Type",
)


@dataclass(frozen=True)
class WechatPaySettings:
    mchid: str
    appid: str
    apiv3_key: str
    private_key_pem: str
    cert_serial_no: str
    public_key_pem: str
    public_key_id: str
    cert_dir: str
    # Serials a notification may be signed with: the public key id, or the certificates' serials.
    known_serials: frozenset[str]
    api_url: str
    notify_max_age: int


def _certificate_serials(cert_dir: str) -> frozenset[str]:
    now = timezone.now()
    serials = set()
    for path in sorted(Path(cert_dir).glob("*.pem")):
        try:
            certificate = x509.load_pem_x509_certificate(path.read_bytes())
        except ValueError:
            raise ImproperlyConfigured(f"WECHATPAY_CERT_DIR: {path.name} is not a PEM certificate") from None
        if certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            serials.add(f"{certificate.serial_number:X}")
    if not serials:
        raise ImproperlyConfigured("WECHATPAY_CERT_DIR: no currently valid platform certificate (*.pem) in it")
    return frozenset(serials)


def wechatpay_settings_load() -> WechatPaySettings | None:
    """WeChat Pay's settings, or None when WECHATPAY_MCHID is unset. Raises ImproperlyConfigured
    naming the variable when the gateway is half-configured or a key is malformed."""
    if not settings.WECHATPAY_MCHID:
        return None
    for name in ("WECHATPAY_APPID", "WECHATPAY_APIV3_KEY", "WECHATPAY_PRIVATE_KEY", "WECHATPAY_CERT_SERIAL_NO"):
        if not getattr(settings, name):
            raise ImproperlyConfigured(f"{name} is required when WECHATPAY_MCHID is set")
    if len(settings.WECHATPAY_APIV3_KEY.encode()) != 32:
        raise ImproperlyConfigured("WECHATPAY_APIV3_KEY must be 32 characters")
    public_key_pem = ""
    if settings.WECHATPAY_PUBLIC_KEY or settings.WECHATPAY_PUBLIC_KEY_ID:
        if not (settings.WECHATPAY_PUBLIC_KEY and settings.WECHATPAY_PUBLIC_KEY_ID):
            raise ImproperlyConfigured("WECHATPAY_PUBLIC_KEY and WECHATPAY_PUBLIC_KEY_ID go together")
        public_key_pem = public_key_spki_pem(public_key_load(settings.WECHATPAY_PUBLIC_KEY, "WECHATPAY_PUBLIC_KEY"))
        known = frozenset({settings.WECHATPAY_PUBLIC_KEY_ID})
    elif settings.WECHATPAY_CERT_DIR:
        known = _certificate_serials(settings.WECHATPAY_CERT_DIR)
    else:
        raise ImproperlyConfigured(
            "set WECHATPAY_PUBLIC_KEY with WECHATPAY_PUBLIC_KEY_ID, or WECHATPAY_CERT_DIR, to verify WeChat Pay"
        )
    return WechatPaySettings(
        mchid=settings.WECHATPAY_MCHID,
        appid=settings.WECHATPAY_APPID,
        apiv3_key=settings.WECHATPAY_APIV3_KEY,
        private_key_pem=private_key_pkcs8_pem(
            private_key_load(settings.WECHATPAY_PRIVATE_KEY, "WECHATPAY_PRIVATE_KEY")
        ),
        cert_serial_no=settings.WECHATPAY_CERT_SERIAL_NO,
        public_key_pem=public_key_pem,
        public_key_id=settings.WECHATPAY_PUBLIC_KEY_ID if public_key_pem else "",
        cert_dir=settings.WECHATPAY_CERT_DIR if not public_key_pem else "",
        known_serials=known,
        api_url=settings.WECHATPAY_API_URL.rstrip("/"),
        notify_max_age=settings.WECHATPAY_NOTIFY_MAX_AGE_SECONDS,
    )


@lru_cache(maxsize=4)
def _settings_cached(*_key) -> WechatPaySettings | None:
    return wechatpay_settings_load()


@lru_cache(maxsize=2)
def _client(config: WechatPaySettings) -> WeChatPay:
    client = WeChatPay(
        wechatpay_type=WeChatPayType.NATIVE,
        mchid=config.mchid,
        private_key=config.private_key_pem,
        cert_serial_no=config.cert_serial_no,
        appid=config.appid,
        apiv3_key=config.apiv3_key,
        cert_dir=config.cert_dir or None,
        public_key=config.public_key_pem or None,
        public_key_id=config.public_key_id or None,
        timeout=(5, 10),
    )
    # The SDK has no option for its API host; WECHATPAY_API_URL lets it go through a proxy or
    # to the test suite's platform simulator.
    client._core._gate_way = config.api_url
    return client


def _fen(amount: Decimal) -> int:
    fen = amount * 100
    if fen != fen.to_integral_value():
        raise ValueError(f"{amount} has fractions of a fen")
    return int(fen)


class WechatPayGateway(PaymentGateway):
    identifier = "wechatpay"
    verbose_name = _("WeChat Pay")

    @staticmethod
    def config() -> WechatPaySettings | None:
        return _settings_cached(*(getattr(settings, name) for name in SETTING_NAMES))

    def is_enabled(self) -> bool:
        return self.config() is not None

    def _configured(self) -> WechatPaySettings:
        """The settings of an enabled gateway, the only kind the registry hands out. Raises
        GatewayError when it is not configured."""
        config = self.config()
        if config is None:
            raise GatewayError("wechatpay is not configured")
        return config

    def redirect_origins(self) -> tuple[str, ...]:
        # H5 pay (phones) sends the buyer to the h5_url the API returns, always on this host;
        # Native pay (desktop) shows a QR code here.
        return (H5_ORIGIN,) if self.is_enabled() else ()

    def create_payment(self, request: PaymentRequest) -> PaymentAction:
        client = _client(self._configured())
        amount = {"total": _fen(request.amount), "currency": "CNY"}
        if request.mobile:
            code, message = client.pay(
                description=request.subject[:127],
                out_trade_no=request.out_trade_no,
                amount=amount,
                notify_url=request.notify_url,
                pay_type=WeChatPayType.H5,
                scene_info={"payer_client_ip": request.client_ip or "127.0.0.1", "h5_info": {"type": "Wap"}},
            )
            reply = self._reply(code, message, "h5_url")
            return PaymentAction(redirect_url=reply["h5_url"])
        code, message = client.pay(
            description=request.subject[:127],
            out_trade_no=request.out_trade_no,
            amount=amount,
            notify_url=request.notify_url,
            pay_type=WeChatPayType.NATIVE,
        )
        return PaymentAction(qr_content=self._reply(code, message, "code_url")["code_url"])

    @staticmethod
    def _reply(code: int, message, field: str) -> dict:
        try:
            reply = json.loads(message)
        except (TypeError, ValueError):
            reply = {}
        if code not in range(200, 300) or field not in reply:
            raise GatewayError(f"wechatpay refused: {code} {reply.get('code', '')}")
        return reply

    def parse_notification(
        self, *, body: bytes, headers: Mapping[str, str], form: Mapping[str, str]
    ) -> VerifiedNotification:
        config = self._configured()
        values = {name: headers.get(name, "") for name in HEADERS}
        missing = [name for name in HEADERS if not values[name]]
        if missing:
            raise NotificationRejected(f"missing headers: {', '.join(missing)}")
        serial = values["Wechatpay-Serial"]
        if serial != config.public_key_id:
            if not HEX_SERIAL.match(serial):
                raise NotificationRejected("malformed Wechatpay-Serial")
            if serial.upper() not in config.known_serials:
                # Refuse before the SDK sees it: for an unknown serial it would download certificates.
                raise NotificationRejected("unknown Wechatpay-Serial")
        unix_timestamp_check_fresh(
            values["Wechatpay-Timestamp"], max_age_seconds=config.notify_max_age, field="Wechatpay-Timestamp"
        )
        try:
            text = body.decode("utf-8")
            json.loads(text)
        except (UnicodeDecodeError, ValueError):
            raise NotificationRejected("body is not JSON") from None
        try:
            # Verifies the signature over the body exactly as received, then decrypts the resource.
            result = _client(config).callback(headers=values, body=text)
        except Exception:  # noqa: BLE001 - the SDK raises bare Exceptions for bad input
            result = None
        if not result:
            raise NotificationRejected("bad signature or undecryptable resource")
        resource = result.get("resource") or {}
        return self._verified(resource, config)

    @staticmethod
    def _verified(resource: Mapping, config: WechatPaySettings) -> VerifiedNotification:
        if resource.get("mchid") != config.mchid:
            raise NotificationRejected("wrong mchid")
        if resource.get("appid") != config.appid:
            raise NotificationRejected("wrong appid")
        out_trade_no, transaction_id = resource.get("out_trade_no"), resource.get("transaction_id")
        if (
            not isinstance(out_trade_no, str)
            or not isinstance(transaction_id, str)
            or not out_trade_no
            or not transaction_id
        ):
            raise NotificationRejected("missing out_trade_no or transaction_id")
        if len(out_trade_no) > 64 or len(transaction_id) > 64:
            raise NotificationRejected("identifier too long")
        total = (resource.get("amount") or {}).get("total")
        if not isinstance(total, int) or isinstance(total, bool) or total <= 0:
            raise NotificationRejected("bad amount.total")
        return VerifiedNotification(
            out_trade_no=out_trade_no,
            transaction_id=transaction_id,
            amount=Decimal(total) / 100,
            paid=resource.get("trade_state") == "SUCCESS",
        )

    def notification_ack(self, *, accepted: bool, reason: str = "") -> GatewayAck:
        if accepted:
            return GatewayAck(status=204, body="")
        return GatewayAck(
            status=400,
            body=json.dumps({"code": "FAIL", "message": reason or "rejected"}),
            content_type="application/json",
        )

    def query(self, *, out_trade_no: str) -> PaymentStatus | None:
        config = self._configured()
        try:
            code, message = _client(config).query(out_trade_no=out_trade_no)
        except Exception as exc:  # network errors, bad reply signature
            raise GatewayError(f"wechatpay query failed: {type(exc).__name__}") from exc
        if code == 404:
            return None
        reply = self._reply(code, message, "trade_state")
        total = (reply.get("amount") or {}).get("total")
        return PaymentStatus(
            out_trade_no=out_trade_no,
            paid=reply["trade_state"] == "SUCCESS",
            amount=Decimal(total) / 100 if isinstance(total, int) else None,
            transaction_id=reply.get("transaction_id", ""),
        )

    def close(self, *, out_trade_no: str) -> None:
        try:
            code, message = _client(self._configured()).close(out_trade_no=out_trade_no)
        except Exception as exc:  # network errors, bad reply signature
            raise GatewayError(f"wechatpay close failed: {type(exc).__name__}") from exc
        if code not in (200, 204):
            raise GatewayError(f"wechatpay close refused: {code}")

    def refund(
        self, *, out_trade_no: str, out_refund_no: str, amount: Decimal, total: Decimal, reason: str = ""
    ) -> RefundResult:
        try:
            code, message = _client(self._configured()).refund(
                out_refund_no=out_refund_no,
                out_trade_no=out_trade_no,
                amount={"refund": _fen(amount), "total": _fen(total), "currency": "CNY"},
                reason=reason[:80] or None,
            )
        except Exception as exc:  # network errors, bad reply signature
            raise GatewayError(f"wechatpay refund failed: {type(exc).__name__}") from exc
        reply = self._reply(code, message, "refund_id")
        if reply.get("status") not in ("SUCCESS", "PROCESSING"):
            raise GatewayError(f"wechatpay refund status {reply.get('status')}")
        return RefundResult(refund_id=reply["refund_id"])
