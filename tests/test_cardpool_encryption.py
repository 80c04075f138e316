"""Keys at rest: encrypted and bound to their product, key rotation, blind-index versions, no plaintext anywhere."""

from __future__ import annotations

import base64
import io
import logging
import os

import pytest
from cryptography.exceptions import InvalidTag
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from cardpool.crypto import keyring_parse, secret_decrypt, secret_encrypt
from cardpool.importing import cardkeys_import_text
from cardpool.models import CardKey
from cardpool.services import cardkeys_rotate
from delivery.services import order_deliver
from shop.models import Order
from tests.support.factories import OrderFactory, ProductFactory, stock_product
from tests.support.platforms import sandbox_notification
from tests.support.races import run_together
from tests.support.storefront import checkout, post_notification, start_sandbox_payment

pytestmark = pytest.mark.django_db


def test_ciphertext_is_bound_to_its_product_and_tamper_evident():
    version, ciphertext = secret_encrypt(secret="SECRET-1", product_id=1)

    assert secret_decrypt(ciphertext=ciphertext, key_version=version, product_id=1) == "SECRET-1"
    with pytest.raises(InvalidTag):
        secret_decrypt(ciphertext=ciphertext, key_version=version, product_id=2)
    flipped = ciphertext[:-1] + bytes([ciphertext[-1] ^ 1])
    with pytest.raises(InvalidTag):
        secret_decrypt(ciphertext=flipped, key_version=version, product_id=1)


def test_old_key_versions_still_decrypt_after_a_new_key_is_added(settings):
    old_key = base64.b64encode(b"o" * 32).decode()
    new_key = base64.b64encode(b"n" * 32).decode()
    settings.CARDPOOL_KEYS = f"1:{old_key}"
    version, ciphertext = secret_encrypt(secret="OLD-SECRET", product_id=7)
    settings.CARDPOOL_KEYS = f"1:{old_key},2:{new_key}"

    assert version == 1
    assert secret_decrypt(ciphertext=ciphertext, key_version=1, product_id=7) == "OLD-SECRET"
    assert secret_encrypt(secret="NEW", product_id=7)[0] == 2


@pytest.mark.parametrize(
    "keys, index_key, variable",
    [
        ("", base64.b64encode(b"i" * 32).decode(), "CARDPOOL_KEYS"),
        ("1:notbase64!!", base64.b64encode(b"i" * 32).decode(), "CARDPOOL_KEYS"),
        ("1:" + base64.b64encode(b"short").decode(), base64.b64encode(b"i" * 32).decode(), "CARDPOOL_KEYS"),
        ("v1" + base64.b64encode(b"k" * 32).decode(), base64.b64encode(b"i" * 32).decode(), "CARDPOOL_KEYS"),
        ("1:" + base64.b64encode(b"k" * 32).decode(), "", "CARDPOOL_INDEX_KEY"),
    ],
    ids=["empty", "not-base64", "short", "no-version", "no-index-key"],
)
def test_malformed_key_settings_name_the_variable(keys, index_key, variable):
    with pytest.raises(ImproperlyConfigured, match=variable):
        keyring_parse(keys_setting=keys, index_key_setting=index_key)


def test_no_plaintext_key_in_the_database_dump_admin_or_logs(admin_client, client, on_commit, caplog):
    caplog.set_level(logging.DEBUG)
    product = ProductFactory()
    keys = stock_product(product, 3)
    order = checkout(client, product)
    payment = start_sandbox_payment(client, order)
    with on_commit():
        post_notification(client, sandbox_notification(out_trade_no=payment.out_trade_no, amount=order.total))

    dumped = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608 - our own tables
            for row in cursor.fetchall():
                dumped.append(repr(row))
                dumped.extend(bytes(v).decode("latin-1") for v in row if isinstance(v, (bytes, memoryview)))
    fixture = io.StringIO()
    call_command("dumpdata", stdout=fixture)
    admin_pages = [
        admin_client.get(reverse("admin:cardpool_cardkey_changelist")).content.decode(),
        admin_client.get(reverse("admin:cardpool_cardkey_change", args=[CardKey.objects.first().pk])).content.decode(),
        admin_client.get(reverse("admin:shop_order_change", args=[order.pk])).content.decode(),
    ]

    haystacks = ["\n".join(dumped), fixture.getvalue(), caplog.text, *admin_pages]
    for secret in keys:
        assert all(secret not in haystack for haystack in haystacks), secret
    assert CardKey.objects.first().mask in admin_pages[0]


def _two_keys(settings):
    old, new = base64.b64encode(os.urandom(32)).decode(), base64.b64encode(os.urandom(32)).decode()
    settings.CARDPOOL_KEYS = f"1:{old}"
    return old, new


def test_rotation_re_encrypts_every_key_to_the_new_version(settings, client, on_commit):
    old, new = _two_keys(settings)
    product = ProductFactory()
    keys = stock_product(product, 7)
    settings.CARDPOOL_KEYS = f"1:{old},2:{new}"
    out = io.StringIO()

    call_command("rotate_cardpool_keys", stdout=out)

    assert "re-encrypted 7 keys" in out.getvalue()
    assert set(CardKey.objects.values_list("key_version", flat=True)) == {2}
    settings.CARDPOOL_KEYS = f"2:{new}"  # the old key can now be retired
    order = checkout(client, product)
    payment = start_sandbox_payment(client, order)
    with on_commit():
        post_notification(client, sandbox_notification(out_trade_no=payment.out_trade_no, amount=order.total))
    assert keys[0] in client.get(reverse("shop:order", args=[order.access_token])).content.decode()


def test_a_new_blind_index_key_version_keeps_dedupe_working_before_and_after_the_rebuild(settings):
    product = ProductFactory()
    cardkeys_import_text(product=product, text="SAME-KEY\nOTHER-KEY")
    old = settings.CARDPOOL_INDEX_KEY
    settings.CARDPOOL_INDEX_KEY = f"1:{old},2:{base64.b64encode(os.urandom(32)).decode()}"

    # Before the rebuild the pool is indexed under version 1: imports still find its duplicates.
    assert cardkeys_import_text(product=product, text="SAME-KEY\nNEW-KEY").duplicates_in_pool == 1
    out = io.StringIO()
    call_command("rebuild_blind_index", stdout=out)

    assert "rebuilt the blind index of 2 keys" in out.getvalue()
    assert set(CardKey.objects.values_list("index_version", flat=True)) == {2}
    report = cardkeys_import_text(product=product, text="SAME-KEY\nOTHER-KEY\nNEW-KEY")
    assert report.added == 0 and report.duplicates_in_pool == 3


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_rotation_while_sales_go_on_sells_no_key_twice_and_loses_none(settings):
    old, new = _two_keys(settings)
    product = ProductFactory()
    secrets_ = stock_product(product, 1200)
    orders = [
        OrderFactory(product=product, contact="13800138000", contact_kind="mobile", status="paid") for _ in range(150)
    ]
    Order.objects.update(paid_at=timezone.now())
    settings.CARDPOOL_KEYS = f"1:{old},2:{new}"

    def sell():
        return sum(order_deliver(order_id=o.pk).status == "delivered" for o in orders)

    rotated, sold = run_together(cardkeys_rotate, sell)

    assert sold == 150 and rotated == 1200
    assert set(CardKey.objects.values_list("key_version", flat=True)) == {2}
    sold_to = list(CardKey.objects.filter(status="sold").values_list("order_id", flat=True))
    assert len(sold_to) == 150 and len(set(sold_to)) == 150
    settings.CARDPOOL_KEYS = f"2:{new}"
    plaintexts = {
        secret_decrypt(ciphertext=k.ciphertext, key_version=k.key_version, product_id=k.product_id)
        for k in CardKey.objects.all()
    }
    assert plaintexts == set(secrets_)
