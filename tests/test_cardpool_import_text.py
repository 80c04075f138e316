"""Importing keys as text: what is added, duplicates in the file and the pool, input refused."""

from __future__ import annotations

import pytest

from cardpool.crypto import secret_decrypt
from cardpool.importing import ImportRefused, cardkeys_import_text
from cardpool.models import CardKey, CardKeyStatus, ImportBatch
from tests.support.factories import ProductFactory, stock_product
from tests.support.platforms import sandbox_notification
from tests.support.storefront import checkout, post_notification, start_sandbox_payment

pytestmark = pytest.mark.django_db


def test_import_reports_added_duplicates_and_invalid_lines():
    product = ProductFactory()
    stock_product(product, 0)
    cardkeys_import_text(product=product, text="ALREADY-1\n")
    text = "\n".join(["  AAAA-1111  ", "", "BBBB-2222", "AAAA-1111", "ALREADY-1", "bad\x07line-42", "\t", "CCCC-3333"])

    report = cardkeys_import_text(product=product, text=text, source_name="supplier.txt")

    assert report.added == 3
    assert report.duplicates_in_file == 1
    assert report.duplicates_in_pool == 1
    assert report.problems == [(6, "contains control characters", "ba*******42")]
    batch = ImportBatch.objects.get(pk=report.batch_id)
    assert (batch.added, batch.duplicates_in_file, batch.duplicates_in_pool, batch.invalid) == (3, 1, 1, 1)
    assert batch.status == "done"
    assert CardKey.objects.filter(product=product, status=CardKeyStatus.AVAILABLE).count() == 4


def test_import_dedupes_against_sold_keys_too(client, on_commit):
    product = ProductFactory()
    keys = stock_product(product, 1)
    order = checkout(client, product)
    payment = start_sandbox_payment(client, order)
    with on_commit():
        post_notification(client, sandbox_notification(out_trade_no=payment.out_trade_no, amount=order.total))
    assert CardKey.objects.get().status == CardKeyStatus.SOLD

    report = cardkeys_import_text(product=product, text=keys[0])

    assert report.added == 0 and report.duplicates_sold == 1 and report.duplicates_in_pool == 0


def test_import_treats_full_width_and_padded_copies_as_duplicates():
    product = ProductFactory()

    report = cardkeys_import_text(product=product, text="ABC-123\nＡＢＣ－１２３\n  ABC-123\t")

    assert report.added == 1 and report.duplicates_in_file == 2


def test_same_key_may_exist_in_two_products():
    first, second = ProductFactory(), ProductFactory()
    cardkeys_import_text(product=first, text="SHARED-KEY")

    assert cardkeys_import_text(product=second, text="SHARED-KEY").added == 1


@pytest.mark.parametrize("text", ["", "\n\n   \n", "abc\x00def"], ids=["empty", "blank-lines", "binary"])
def test_import_of_unusable_input_is_refused_and_adds_nothing(text):
    product = ProductFactory()

    with pytest.raises(ImportRefused):
        cardkeys_import_text(product=product, text=text)

    assert not CardKey.objects.exists() and not ImportBatch.objects.exists()


def test_keys_with_tabs_and_backslashes_survive_the_import(client, on_commit):
    product = ProductFactory()
    secret = "A\tB\\C-123456"  # a tab and a backslash, which COPY's text format must escape

    report = cardkeys_import_text(product=product, text=secret + "\n")

    assert report.added == 1
    key = CardKey.objects.get()
    assert secret_decrypt(ciphertext=key.ciphertext, key_version=key.key_version, product_id=product.pk) == secret
    assert key.mask.startswith("A\t")
