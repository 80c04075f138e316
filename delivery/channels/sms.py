"""SMS through a provider chosen by SMS_PROVIDER: Aliyun SMS, Tencent Cloud SMS (their official
SDKs) or the console (development). SMS_CONTENT chooses whether the text carries the keys or a
short signed link to the order page.

The provider's template must take two variables: ``order`` (the order number) and ``content``
(the keys, or the link). Aliyun: ``${order}``/``${content}``; Tencent: ``{1}``/``{2}``.
"""

from __future__ import annotations

import json
import sys
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.module_loading import import_string

from delivery.channels.base import Channel, ChannelError, DeliveryContent

SMS_PROVIDERS = {
    "console": "delivery.channels.sms.ConsoleSmsProvider",
    "aliyun": "delivery.channels.sms.AliyunSmsProvider",
    "tencent": "delivery.channels.sms.TencentSmsProvider",
}


def sms_params(content: DeliveryContent) -> tuple[str, str]:
    """The provider template's two variables: the order number, and the keys or the short link;
    for a notice, one short sentence in the buyer's language and the short link (never a key)."""
    if content.notice:
        with translation.override(content.language or settings.LANGUAGE_CODE):
            text = " ".join(render_to_string("delivery/sms/notice.txt", {"content": content}).split())
        return content.order_number, text
    if settings.SMS_CONTENT == "key":
        return content.order_number, " ".join(content.secrets)
    return content.order_number, content.short_url


def sms_enabled() -> bool:
    return settings.SMS_PROVIDER != "none"


class SmsChannel(Channel):
    identifier = "sms"

    def send(self, *, recipient: str, content: DeliveryContent) -> str:
        order_number, text = sms_params(content)
        return sms_provider().send(phone=recipient, order=order_number, content=text)


@lru_cache(maxsize=4)
def _provider(name: str):
    if name not in SMS_PROVIDERS:
        raise ImproperlyConfigured(f"SMS_PROVIDER must be none or one of {', '.join(SMS_PROVIDERS)}")
    return import_string(SMS_PROVIDERS[name])()


def sms_provider():
    return _provider(settings.SMS_PROVIDER)


class ConsoleSmsProvider:
    """Development: writes the SMS to standard output, like Django's console email backend.

    The text carries keys or a link that opens them, and a worker's output ends up in its log,
    so outside DEBUG the text is withheld."""

    identifier = "console"

    def send(self, *, phone: str, order: str, content: str) -> str:
        shown = content if settings.DEBUG else "(text withheld outside DEBUG)"
        sys.stdout.write(f"SMS to {phone}: order {order}: {shown}\n")
        sys.stdout.flush()
        return f"console-{order}"


def _required(*names: str) -> dict[str, str]:
    missing = [name for name in names if not getattr(settings, name)]
    if missing:
        raise ImproperlyConfigured(f"{', '.join(missing)} required for SMS_PROVIDER={settings.SMS_PROVIDER}")
    return {name: getattr(settings, name) for name in names}


class AliyunSmsProvider:
    """Aliyun SMS (dysmsapi 2017-05-25) through alibabacloud-dysmsapi20170525."""

    identifier = "aliyun"
    # Codes that no retry can fix: a bad number, a blacklisted or unsubscribed one, a bad template.
    PERMANENT = (
        "isv.MOBILE_NUMBER_ILLEGAL",
        "isv.BLACK_KEY_CONTROL_LIMIT",
        "isv.MOBILE_COUNT_OVER_LIMIT",
        "isv.SMS_TEMPLATE_ILLEGAL",
        "isv.SMS_SIGNATURE_ILLEGAL",
        "isv.TEMPLATE_MISSING_PARAMETERS",
        "isv.PARAM_LENGTH_LIMIT",
        "isv.INVALID_PARAMETERS",
    )

    def __init__(self) -> None:
        from alibabacloud_dysmsapi20170525.client import Client
        from alibabacloud_tea_openapi.utils_models import Config

        values = _required(
            "ALIYUN_SMS_ACCESS_KEY_ID",
            "ALIYUN_SMS_ACCESS_KEY_SECRET",
            "ALIYUN_SMS_SIGN_NAME",
            "ALIYUN_SMS_TEMPLATE_CODE",
        )
        endpoint = settings.ALIYUN_SMS_ENDPOINT
        protocol = "http" if endpoint.startswith("http://") else "https"
        self.sign_name = values["ALIYUN_SMS_SIGN_NAME"]
        self.template_code = values["ALIYUN_SMS_TEMPLATE_CODE"]
        self.client = Client(
            Config(
                access_key_id=values["ALIYUN_SMS_ACCESS_KEY_ID"],
                access_key_secret=values["ALIYUN_SMS_ACCESS_KEY_SECRET"],
                endpoint=endpoint.split("://", 1)[-1],
                protocol=protocol,
                connect_timeout=settings.SMS_TIMEOUT_SECONDS * 1000,
                read_timeout=settings.SMS_TIMEOUT_SECONDS * 1000,
            )
        )

    def send(self, *, phone: str, order: str, content: str) -> str:
        from alibabacloud_dysmsapi20170525 import models

        request = models.SendSmsRequest(
            phone_numbers=phone,
            sign_name=self.sign_name,
            template_code=self.template_code,
            template_param=json.dumps({"order": order, "content": content}, ensure_ascii=False),
        )
        try:
            response = self.client.send_sms(request)
        except Exception as exc:  # network errors, timeouts, 4xx/5xx: all retried
            raise ChannelError(f"aliyun: {type(exc).__name__}", permanent=False) from exc
        body = response.body
        if body.code != "OK":
            raise ChannelError(f"aliyun {body.code}: {body.message}"[:300], permanent=body.code in self.PERMANENT)
        return body.biz_id or ""


class TencentSmsProvider:
    """Tencent Cloud SMS (2021-01-11) through tencentcloud-sdk-python-sms."""

    identifier = "tencent"
    PERMANENT_PREFIXES = (
        "FailedOperation.PhoneNumberInBlacklist",
        "InvalidParameterValue.IncorrectPhoneNumber",
        "FailedOperation.TemplateIncorrectOrUnapproved",
        "FailedOperation.SignatureIncorrectOrUnapproved",
        "InvalidParameterValue.TemplateParameterFormatError",
        "UnsupportedOperation",
    )

    def __init__(self) -> None:
        from tencentcloud.common import credential
        from tencentcloud.common.profile.client_profile import ClientProfile
        from tencentcloud.common.profile.http_profile import HttpProfile
        from tencentcloud.sms.v20210111 import sms_client

        values = _required(
            "TENCENT_SMS_SECRET_ID",
            "TENCENT_SMS_SECRET_KEY",
            "TENCENT_SMS_SDK_APP_ID",
            "TENCENT_SMS_SIGN_NAME",
            "TENCENT_SMS_TEMPLATE_ID",
        )
        endpoint = settings.TENCENT_SMS_ENDPOINT
        http = HttpProfile(
            protocol="http" if endpoint.startswith("http://") else "https",
            endpoint=endpoint.split("://", 1)[-1],
            reqTimeout=settings.SMS_TIMEOUT_SECONDS,
        )
        self.values = values
        self.client = sms_client.SmsClient(
            credential.Credential(values["TENCENT_SMS_SECRET_ID"], values["TENCENT_SMS_SECRET_KEY"]),
            settings.TENCENT_SMS_REGION,
            ClientProfile(httpProfile=http),
        )

    def send(self, *, phone: str, order: str, content: str) -> str:
        from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
        from tencentcloud.sms.v20210111 import models

        request = models.SendSmsRequest()
        request.PhoneNumberSet = [phone if phone.startswith("+") else f"+86{phone}"]
        request.SmsSdkAppId = self.values["TENCENT_SMS_SDK_APP_ID"]
        request.SignName = self.values["TENCENT_SMS_SIGN_NAME"]
        request.TemplateId = self.values["TENCENT_SMS_TEMPLATE_ID"]
        request.TemplateParamSet = [order, content]
        try:
            response = self.client.SendSms(request)
        except TencentCloudSDKException as exc:
            permanent = str(exc.code or "").startswith(self.PERMANENT_PREFIXES)
            raise ChannelError(f"tencent {exc.code}: {exc.message}"[:300], permanent=permanent) from exc
        except Exception as exc:  # network errors, timeouts, bad replies: all retried
            raise ChannelError(f"tencent: {type(exc).__name__}", permanent=False) from exc
        status = response.SendStatusSet[0]
        if status.Code != "Ok":
            raise ChannelError(
                f"tencent {status.Code}: {status.Message}"[:300],
                permanent=status.Code.startswith(self.PERMANENT_PREFIXES),
            )
        return status.SerialNo or ""
