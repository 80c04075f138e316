"""kameng.client_ip: which address is the buyer's, directly and behind the reverse proxy."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import RequestFactory

from kameng.client_ip import client_ip_for_rate_limit, request_client_ip, trusted_proxies_parse


@pytest.fixture
def behind_proxy(settings):
    settings.TRUSTED_PROXIES = trusted_proxies_parse(["172.16.0.0/12", "::1/128"])


def _request(remote_addr: str | None, forwarded: str | None = None):
    meta = {} if forwarded is None else {"HTTP_X_FORWARDED_FOR": forwarded}
    request = RequestFactory().get("/", **meta)
    if remote_addr is None:
        del request.META["REMOTE_ADDR"]
    else:
        request.META["REMOTE_ADDR"] = remote_addr
    return request


def test_without_trusted_proxies_the_peer_is_the_client_and_the_header_is_ignored(settings):
    settings.TRUSTED_PROXIES = ()

    assert request_client_ip(_request("203.0.113.7", "198.51.100.1")) == "203.0.113.7"


def test_a_trusted_proxy_passes_the_client_it_saw(behind_proxy):
    assert request_client_ip(_request("172.18.0.5", "198.51.100.1")) == "198.51.100.1"


def test_behind_the_proxy_only_the_address_it_appended_counts(behind_proxy):
    # The buyer wrote "1.1.1.1" themselves; the proxy appended the address it saw.
    assert request_client_ip(_request("172.18.0.5", "1.1.1.1, 198.51.100.1")) == "198.51.100.1"


def test_a_spoofed_header_from_outside_the_proxy_network_is_ignored(behind_proxy):
    assert request_client_ip(_request("203.0.113.7", "172.18.0.5, 198.51.100.1")) == "203.0.113.7"


@pytest.mark.parametrize(
    "forwarded",
    ["", "   ", "garbage", "unknown", "999.1.1.1", "1.2.3.4.5, ,", "\x00\xff", "a" * 10000, "for=_hidden", ",,,,"],
    ids=["empty", "blank", "word", "unknown", "bad-octet", "junk-list", "binary", "huge", "forwarded-token", "commas"],
)
def test_a_garbage_header_from_the_proxy_falls_back_to_the_peer(behind_proxy, forwarded):
    assert request_client_ip(_request("172.18.0.5", forwarded)) == "172.18.0.5"


def test_no_header_through_the_proxy_gives_the_proxy_address(behind_proxy):
    assert request_client_ip(_request("172.18.0.5")) == "172.18.0.5"


def test_an_ipv6_proxy_and_client(behind_proxy):
    assert request_client_ip(_request("::1", "2001:db8::7")) == "2001:db8::7"


def test_an_unusable_peer_address_gives_none_and_one_shared_rate_key(settings):
    settings.TRUSTED_PROXIES = ()

    assert request_client_ip(_request("")) is None
    assert request_client_ip(_request(None)) is None
    assert client_ip_for_rate_limit(_request("")) == "0.0.0.0"  # noqa: S104 - the key of requests with no address


def test_an_ipv4_mapped_peer_is_its_ipv4_address(settings):
    settings.TRUSTED_PROXIES = ()

    assert request_client_ip(_request("::ffff:203.0.113.7")) == "203.0.113.7"


def test_trusted_proxies_that_do_not_parse_stop_start_up_naming_the_variable():
    with pytest.raises(ImproperlyConfigured, match="TRUSTED_PROXIES"):
        trusted_proxies_parse(["172.16.0.0/12", "not-a-network"])
