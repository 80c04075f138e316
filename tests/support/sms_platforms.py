"""Loopback stand-ins for the SMS providers' HTTP APIs: answer like Aliyun or Tencent Cloud, or
accept the connection and never answer (a provider that times out); ``use_provider`` points the
shop at one."""

from __future__ import annotations

import json
import secrets
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from delivery.channels.sms import _provider


class SmsProviderServer:
    def __init__(self, flavour: str) -> None:
        self.flavour = flavour  # "aliyun" or "tencent"
        self.sent: list[dict] = []
        self.reply_code = "OK" if flavour == "aliyun" else "Ok"
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.sent.append(outer._request(self.path, body))
                payload = json.dumps(outer._reply()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def _request(self, path: str, body: bytes) -> dict:
        if self.flavour == "aliyun":
            params = dict(parse_qsl(urlsplit(path).query))
            params.update(dict(parse_qsl(body.decode())))
            return {"phone": params.get("PhoneNumbers"), "params": json.loads(params.get("TemplateParam", "{}"))}
        data = json.loads(body or b"{}")
        return {"phone": data.get("PhoneNumberSet", [None])[0], "params": data.get("TemplateParamSet")}

    def _reply(self) -> dict:
        if self.flavour == "aliyun":
            return {
                "Code": self.reply_code,
                "Message": "OK" if self.reply_code == "OK" else "refused",
                "BizId": secrets.token_hex(8),
                "RequestId": secrets.token_hex(8),
            }
        return {
            "Response": {
                "RequestId": secrets.token_hex(8),
                "SendStatusSet": [
                    {
                        "SerialNo": "2433:" + secrets.token_hex(6),
                        "PhoneNumber": "+8613800138000",
                        "Fee": 1,
                        "Code": self.reply_code,
                        "Message": "send success" if self.reply_code == "Ok" else "refused",
                        "IsoCode": "CN",
                    }
                ],
            }
        }

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class SilentServer:
    """Accepts connections and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(50)
        self.endpoint = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


PROVIDER_SETTINGS = {
    "aliyun": {
        "ALIYUN_SMS_ACCESS_KEY_ID": "LTAI5tTest",
        "ALIYUN_SMS_ACCESS_KEY_SECRET": "secret",
        "ALIYUN_SMS_SIGN_NAME": "卡盟",
        "ALIYUN_SMS_TEMPLATE_CODE": "SMS_123456789",
    },
    "tencent": {
        "TENCENT_SMS_SECRET_ID": "AKIDtest",
        "TENCENT_SMS_SECRET_KEY": "secret",
        "TENCENT_SMS_SDK_APP_ID": "1400000000",
        "TENCENT_SMS_SIGN_NAME": "卡盟",
        "TENCENT_SMS_TEMPLATE_ID": "1234567",
    },
}


def use_provider(settings, flavour: str, endpoint: str) -> None:
    """Configure the shop to send SMS through ``flavour`` (aliyun or tencent) at ``endpoint``."""
    settings.SMS_PROVIDER = flavour
    for name, value in PROVIDER_SETTINGS[flavour].items():
        setattr(settings, name, value)
    setattr(settings, f"{flavour.upper()}_SMS_ENDPOINT", endpoint)
    settings.SMS_TIMEOUT_SECONDS = 1
    _provider.cache_clear()
