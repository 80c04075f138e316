"""Offline simulators of Alipay and WeChat Pay API v3.

Each generates its own RSA keys during the test run and signs (and, for WeChat, encrypts) exactly
as the platform does: Alipay's RSA2 over the sorted ``k=v`` fields, WeChat's SHA256-RSA over
``timestamp\\nnonce\\nbody\\n`` with the resource sealed by AES-256-GCM under the APIv3 key. Each also
serves the platform's API on a loopback HTTP server, answering the SDKs' outbound calls (precreate,
query, Native/H5 order) with correctly signed replies and checking the shop's own request signature.
Nothing here imports the shop's verification code.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
import secrets
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode, urlsplit
from zoneinfo import ZoneInfo

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID

CHINA = ZoneInfo("Asia/Shanghai")


@functools.cache
def _new_key(role: str) -> rsa.RSAPrivateKey:
    """A fresh RSA key per role, generated once per test run (2048-bit generation is slow)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_private(key, fmt=serialization.PrivateFormat.PKCS8) -> str:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()


def _pem_public(key) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _bare(pem: str) -> str:
    return "".join(line for line in pem.splitlines() if not line.startswith("-----"))


def _rsa_sha256(key: rsa.RSAPrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def _rsa_sha256_ok(public_key, message: bytes, signature: str) -> bool:
    try:
        public_key.verify(base64.b64decode(signature), message, padding.PKCS1v15(), hashes.SHA256())
    except Exception:  # noqa: BLE001
        return False
    return True


class _Server:
    """A loopback HTTP server that hands each request to ``handle(method, path, query, body, headers)``."""

    def __init__(self, handle) -> None:

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                status, headers, payload = handle(method, parts.path, dict(parse_qsl(parts.query)), body, self.headers)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self):
                self._serve("GET")

            def do_POST(self):
                self._serve("POST")

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class AlipayPlatform:
    APP_ID = "2021000123456789"
    SELLER_ID = "2088000123456789"
    SERVER_URL = "https://openapi.alipay.test/gateway.do"

    def __init__(self) -> None:
        self.app_key = _new_key("alipay-app")  # the merchant's application key; the platform holds its public half
        self.platform_key = _new_key("alipay-platform")  # Alipay's key; the merchant holds its public half
        self.trades: dict[str, dict] = {}
        self.refunds: dict[str, dict] = {}  # out_request_no → refund: the platform's idempotency
        self.closed: set[str] = set()
        self.requests: list[dict] = []
        self.down = False

    def transport(self, url, query_string=None, headers=None, params=None, charset="utf-8", timeout=15):
        """Stands in for the SDK's HTTP POST (alipay-sdk-python's WebUtils.do_post), the outside edge.

        (A loopback server cannot be used: that SDK drops any port from the server URL.)
        """
        from alipay.aop.api.exception.Exception import RequestException

        if self.down:
            raise RequestException("post connect failed. [Errno 111] Connection refused")
        query = dict(parse_qsl(query_string or ""))
        _status, _headers, payload = self._handle(
            "POST", urlsplit(url).path, query, urlencode(params or {}).encode(), {}
        )
        return payload

    def apply(self, settings, **overrides) -> None:
        """Configure the shop as a merchant would, pasting keys in awkward shapes on purpose."""
        values = {
            "ALIPAY_APP_ID": self.APP_ID,
            "ALIPAY_SELLER_ID": self.SELLER_ID,
            # PKCS#8 with CRLF line ends; the SDK needs PKCS#1.
            "ALIPAY_APP_PRIVATE_KEY": _pem_private(self.app_key).replace("\n", "\r\n"),
            # The bare base64 body Alipay's console shows.
            "ALIPAY_PUBLIC_KEY": _bare(_pem_public(self.platform_key)),
            "ALIPAY_SERVER_URL": self.SERVER_URL,
            "ALIPAY_PAY_MODE": "auto",
        }
        values.update(overrides)
        for name, value in values.items():
            setattr(settings, name, value)

    def sign(self, fields: dict[str, str]) -> dict[str, str]:
        content = "&".join(f"{k}={v}" for k, v in sorted(fields.items()) if k not in ("sign", "sign_type") and v != "")
        return {**fields, "sign_type": "RSA2", "sign": _rsa_sha256(self.platform_key, content.encode())}

    def notification(
        self, *, out_trade_no: str, amount, trade_no: str | None = None, sign: bool = True, **overrides
    ) -> dict:
        now = dt.datetime.now(CHINA).strftime("%Y-%m-%d %H:%M:%S")
        fields = {
            "gmt_create": now,
            "gmt_payment": now,
            "notify_time": now,
            "notify_type": "trade_status_sync",
            "notify_id": secrets.token_hex(16),
            "charset": "utf-8",
            "version": "1.0",
            "app_id": self.APP_ID,
            "seller_id": self.SELLER_ID,
            "buyer_id": "2088102177846880",
            "out_trade_no": out_trade_no,
            "trade_no": trade_no or "2026112222001" + secrets.token_hex(8),
            "trade_status": "TRADE_SUCCESS",
            "total_amount": f"{Decimal(amount):.2f}",
            "receipt_amount": f"{Decimal(amount):.2f}",
            "subject": "卡密",
            "fund_bill_list": f'[{{"amount":"{Decimal(amount):.2f}","fundChannel":"ALIPAYACCOUNT"}}]',
        }
        fields.update({k: v for k, v in overrides.items() if v is not None})
        for name in [k for k, v in overrides.items() if v is None]:
            fields.pop(name, None)
        return self.sign(fields) if sign else fields

    # --- the API ------------------------------------------------------------------------------
    def _handle(self, method, path, query, body, headers):
        params = {**query, **dict(parse_qsl(body.decode()))}
        sign = params.pop("sign", "")
        content = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
        request = {
            "method": params.get("method"),
            "biz": json.loads(params.get("biz_content") or "{}"),
            "timestamp": params.get("timestamp"),
            "signature_ok": _rsa_sha256_ok(self.app_key.public_key(), content.encode(), sign),
        }
        self.requests.append(request)
        name = (params.get("method") or "").replace(".", "_") + "_response"
        if not request["signature_ok"]:
            reply = {"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-signature"}
        elif params.get("method") == "alipay.trade.precreate":
            reply = {
                "code": "10000",
                "msg": "Success",
                "out_trade_no": request["biz"]["out_trade_no"],
                "qr_code": "https://qr.alipay.com/bax0" + secrets.token_hex(8),
            }
        elif params.get("method") == "alipay.trade.query":
            trade = self.trades.get(request["biz"].get("out_trade_no"))
            if trade is None:
                reply = {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_NOT_EXIST"}
            else:
                reply = {"code": "10000", "msg": "Success", "out_trade_no": request["biz"]["out_trade_no"], **trade}
        elif params.get("method") == "alipay.trade.close":
            out_trade_no = request["biz"].get("out_trade_no")
            if out_trade_no in self.trades:
                self.closed.add(out_trade_no)
                reply = {"code": "10000", "msg": "Success", "out_trade_no": out_trade_no}
            else:
                reply = {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_NOT_EXIST"}
        elif params.get("method") == "alipay.trade.refund":
            biz = request["biz"]
            trade = self.trades.get(biz.get("out_trade_no"))
            if trade is None:
                reply = {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_NOT_EXIST"}
            else:
                self.refunds.setdefault(
                    biz["out_request_no"], {"out_trade_no": biz["out_trade_no"], "amount": biz["refund_amount"]}
                )
                reply = {
                    "code": "10000",
                    "msg": "Success",
                    "trade_no": trade.get("trade_no", ""),
                    "fund_change": "Y",
                    "refund_fee": biz["refund_amount"],
                    "out_trade_no": biz["out_trade_no"],
                }
        else:
            reply = {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.UNKNOWN_METHOD"}
        content_json = json.dumps(reply, ensure_ascii=False, separators=(",", ":"))
        signature = _rsa_sha256(self.platform_key, content_json.encode())
        payload = f'{{"{name}":{content_json},"sign":"{signature}"}}'.encode()
        return 200, {"Content-Type": "application/json;charset=utf-8"}, payload


class WechatPayPlatform:
    MCHID = "1900000109"
    APPID = "wxd678efh567hg6787"
    PUBLIC_KEY_ID = "PUB_KEY_ID_0119000001092026112200000000000001"

    def __init__(self) -> None:
        self.merchant_key = _new_key("wechat-merchant")
        self.merchant_serial = secrets.token_hex(20).upper()
        self.platform_key = _new_key("wechat-platform")
        self.apiv3_key = secrets.token_hex(16)  # 32 characters
        self.trades: dict[str, dict] = {}
        self.refunds: dict[str, dict] = {}
        self.closed: set[str] = set()
        self.requests: list[dict] = []
        self.server = _Server(self._handle)
        self.certificate_serial = None

    def apply(self, settings, *, cert_dir=None, **overrides) -> None:
        values = {
            "WECHATPAY_MCHID": self.MCHID,
            "WECHATPAY_APPID": self.APPID,
            "WECHATPAY_APIV3_KEY": self.apiv3_key,
            # PKCS#1 without header lines; wechatpayv3 needs PKCS#8 PEM.
            "WECHATPAY_PRIVATE_KEY": _bare(
                _pem_private(self.merchant_key, serialization.PrivateFormat.TraditionalOpenSSL)
            ),
            "WECHATPAY_CERT_SERIAL_NO": self.merchant_serial,
            "WECHATPAY_PUBLIC_KEY": _pem_public(self.platform_key),
            "WECHATPAY_PUBLIC_KEY_ID": self.PUBLIC_KEY_ID,
            "WECHATPAY_CERT_DIR": "",
            "WECHATPAY_API_URL": self.server.url,
        }
        if cert_dir is not None:
            values.update(
                {"WECHATPAY_PUBLIC_KEY": "", "WECHATPAY_PUBLIC_KEY_ID": "", "WECHATPAY_CERT_DIR": str(cert_dir)}
            )
            self._write_certificate(cert_dir)
        values.update(overrides)
        for name, value in values.items():
            setattr(settings, name, value)

    def _write_certificate(self, cert_dir) -> None:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com Root CA")])
        serial = x509.random_serial_number()
        now = dt.datetime.now(dt.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.platform_key.public_key())
            .serial_number(serial)
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=365))
            .sign(self.platform_key, hashes.SHA256())
        )
        self.certificate_serial = f"{serial:X}"
        (cert_dir / f"{self.certificate_serial}.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))

    @property
    def serial(self) -> str:
        return self.certificate_serial or self.PUBLIC_KEY_ID

    def signed_headers(self, body: str, *, timestamp: int | None = None, serial: str | None = None) -> dict[str, str]:
        timestamp = int(time.time()) if timestamp is None else timestamp
        nonce = secrets.token_hex(16)
        message = f"{timestamp}\n{nonce}\n{body}\n".encode()
        return {
            "Wechatpay-Timestamp": str(timestamp),
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Serial": serial or self.serial,
            "Wechatpay-Signature": _rsa_sha256(self.platform_key, message),
            "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
        }

    def notification(
        self,
        *,
        out_trade_no: str,
        amount,
        transaction_id: str | None = None,
        apiv3_key: str | None = None,
        timestamp: int | None = None,
        serial: str | None = None,
        **resource_overrides,
    ) -> tuple[dict, bytes]:
        fen = int(Decimal(amount) * 100)
        resource = {
            "mchid": self.MCHID,
            "appid": self.APPID,
            "out_trade_no": out_trade_no,
            "transaction_id": transaction_id or "4200002026112" + secrets.token_hex(8),
            "trade_type": "NATIVE",
            "trade_state": "SUCCESS",
            "trade_state_desc": "支付成功",
            "bank_type": "OTHERS",
            "success_time": dt.datetime.now(CHINA).isoformat(timespec="seconds"),
            "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
            "amount": {"total": fen, "payer_total": fen, "currency": "CNY", "payer_currency": "CNY"},
        }
        resource.update(resource_overrides)
        nonce = secrets.token_hex(6)  # 12 characters, used as the GCM nonce bytes
        sealed = AESGCM((apiv3_key or self.apiv3_key).encode()).encrypt(
            nonce.encode(), json.dumps(resource, ensure_ascii=False).encode(), b"transaction"
        )
        body = json.dumps(
            {
                "id": secrets.token_hex(18),
                "create_time": dt.datetime.now(CHINA).isoformat(timespec="seconds"),
                "resource_type": "encrypt-resource",
                "event_type": "TRANSACTION.SUCCESS",
                "summary": "支付成功",
                "resource": {
                    "original_type": "transaction",
                    "algorithm": "AEAD_AES_256_GCM",
                    "ciphertext": base64.b64encode(sealed).decode(),
                    "associated_data": "transaction",
                    "nonce": nonce,
                },
            },
            ensure_ascii=False,
        )
        return self.signed_headers(body, timestamp=timestamp, serial=serial), body.encode()

    # --- the API ------------------------------------------------------------------------------
    def _handle(self, method, path, query, body, headers):
        request = {
            "method": method,
            "path": path,
            "query": query,
            "json": json.loads(body or b"{}"),
            "authorization": headers.get("Authorization", ""),
        }
        self.requests.append(request)
        if path in ("/v3/pay/transactions/native", "/v3/pay/transactions/h5"):
            if path.endswith("native"):
                reply, status = {"code_url": "weixin://wxpay/bizpayurl?pr=" + secrets.token_hex(5)}, 200
            else:
                reply, status = (
                    {
                        "h5_url": "https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id=wx"
                        + secrets.token_hex(8)
                    },
                    200,
                )
        elif path.startswith("/v3/pay/transactions/out-trade-no/") and path.endswith("/close"):
            self.closed.add(path.split("/")[-2])
            reply, status = None, 204
        elif path == "/v3/refund/domestic/refunds":
            body_json = request["json"]
            refund = self.refunds.setdefault(
                body_json["out_refund_no"],
                {
                    "refund_id": "50300" + secrets.token_hex(8),
                    "out_trade_no": body_json.get("out_trade_no"),
                    "amount": body_json["amount"],
                },
            )
            reply, status = (
                {
                    "refund_id": refund["refund_id"],
                    "out_refund_no": body_json["out_refund_no"],
                    "status": "SUCCESS",
                    "amount": body_json["amount"],
                },
                200,
            )
        elif path.startswith("/v3/pay/transactions/out-trade-no/"):
            out_trade_no = path.rsplit("/", 1)[-1]
            trade = self.trades.get(out_trade_no)
            if trade is None:
                reply, status = {"code": "ORDER_NOT_EXIST", "message": "订单不存在"}, 404
            else:
                reply, status = {"mchid": self.MCHID, "appid": self.APPID, "out_trade_no": out_trade_no, **trade}, 200
        else:
            reply, status = {"code": "NOT_FOUND", "message": "unknown path"}, 404
        text = "" if reply is None else json.dumps(reply, ensure_ascii=False)
        response_headers = {"Content-Type": "application/json; charset=utf-8", **self.signed_headers(text)}
        return status, response_headers, text.encode()

    def close(self) -> None:
        self.server.close()
