"""Delivery channels: classes with an ``identifier``, found through one registry of dotted paths.

Every channel raises ``ChannelError`` and says whether the failure is permanent (bad address,
number rejected: retrying cannot help) or transient (timeouts, 4xx/5xx from the provider,
temporary SMTP failures: retried with backoff).
"""

from __future__ import annotations

from functools import cache

from django.utils.module_loading import import_string

from delivery.channels.base import Channel, ChannelError, DeliveryContent

CHANNELS = {
    "email": "delivery.channels.email.EmailChannel",
    "sms": "delivery.channels.sms.SmsChannel",
}


@cache
def _channel_class(dotted_path: str) -> type[Channel]:
    return import_string(dotted_path)


def channel_get(identifier: str) -> Channel:
    """The channel for a DeliveryMessage.channel value. Raises KeyError for an unknown one."""
    return _channel_class(CHANNELS[identifier])()


__all__ = ["CHANNELS", "Channel", "ChannelError", "DeliveryContent", "channel_get"]
