"""Importing keys in the admin: paste or file, the preview step, refusals, pages that do not exist."""

from __future__ import annotations

import io

import pytest
from django.urls import reverse

from cardpool.crypto import secret_decrypt
from cardpool.importing import cardkeys_import_text
from cardpool.models import CardKey, ImportUpload
from tests.support.factories import ProductFactory
from tests.support.operators import admin_import, import_confirm, import_upload

pytestmark = pytest.mark.django_db


def test_admin_import_by_paste_previews_then_imports(admin_client, on_commit):
    product = ProductFactory()

    page, batch = import_upload(admin_client, on_commit, {"product": product.pk, "text": "K-1\nK-2\nK-2\n"})

    assert "Import 2 keys" in page.content.decode() and not CardKey.objects.exists()
    page = import_confirm(admin_client, on_commit, batch)
    assert batch.status == "done" and batch.added == 2 and batch.duplicates_in_file == 1
    assert CardKey.objects.filter(product=product).count() == 2
    assert "Imported" in page.content.decode()


def test_admin_import_of_a_gbk_text_file(admin_client, on_commit):
    product = ProductFactory()
    upload = io.BytesIO("卡密一号\n卡密二号\n".encode("gbk"))
    upload.name = "keys.txt"

    admin_import(admin_client, on_commit, {"product": product.pk, "file": upload})

    assert CardKey.objects.filter(product=product).count() == 2
    assert CardKey.objects.order_by("id").first().mask == "****"


def test_admin_import_preview_lists_invalid_lines_masked(admin_client, on_commit):
    product = ProductFactory()

    page, _batch = import_upload(
        admin_client, on_commit, {"product": product.pk, "text": "GOOD-1\nBAD\x07SECRET-123\n"}
    )

    html = page.content.decode()
    assert "BAD\x07SECRET-123" not in html and "SECRET" not in html
    assert "contains control characters" in html and "BA**********23" in html
    assert not CardKey.objects.exists()


def test_admin_import_of_a_binary_file_is_refused(admin_client, on_commit):
    product = ProductFactory()
    upload = io.BytesIO(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    upload.name = "picture.txt"

    page, batch = import_upload(admin_client, on_commit, {"product": product.pk, "file": upload})

    assert "Nothing was imported: the file looks binary" in page.content.decode()
    assert batch.refresh_from_db() or batch.status == "refused"
    assert not CardKey.objects.exists() and not ImportUpload.objects.exists()


def test_admin_import_with_nothing_is_refused(admin_client):
    product = ProductFactory()

    response = admin_client.post(reverse("admin:cardpool_cardkey_import"), {"product": product.pk, "text": "  "})

    assert "errorlist" in response.content.decode()


def test_admin_import_preview_counts_and_writes_nothing(admin_client, on_commit):
    product = ProductFactory()
    cardkeys_import_text(product=product, text="OLD")

    page, batch = import_upload(admin_client, on_commit, {"product": product.pk, "text": "OLD\nNEW-1\nNEW-2\nNEW-2\n"})

    html = page.content.decode()
    assert "Preview: nothing has been written yet" in html and "Import 2 keys" in html and "NEW-1" not in html
    assert batch.preview["duplicates_in_pool"] == 1 and batch.preview["duplicates_in_file"] == 1
    assert CardKey.objects.count() == 1
    admin_client.post(reverse("admin:cardpool_cardkey_import_batch", args=[batch.pk]), {"action": "cancel"})
    batch.refresh_from_db()
    assert batch.status == "cancelled" and CardKey.objects.count() == 1 and not ImportUpload.objects.exists()


def test_admin_import_of_card_numbers_and_passwords_from_a_supplier(admin_client, on_commit):
    product = ProductFactory()

    batch = admin_import(
        admin_client,
        on_commit,
        {
            "product": product.pk,
            "text": "8888 0001\tpw1\n8888 0002\tpw2\n",
            "separator": "tab",
            "supplier": "盛大",
            "unit_cost": "9.50",
        },
    )

    assert batch.added == 2 and batch.supplier == "盛大" and str(batch.unit_cost) == "9.50"
    key = CardKey.objects.order_by("id").first()
    assert (
        secret_decrypt(ciphertext=key.ciphertext, key_version=key.key_version, product_id=product.pk)
        == "8888 0001----pw1"
    )


def test_reveal_and_import_pages_of_a_key_or_batch_that_does_not_exist_are_404(admin_client):
    for url in (
        reverse("admin:cardpool_cardkey_reveal", args=[999999]),
        reverse("admin:cardpool_cardkey_import_batch", args=[999999]),
        reverse("admin:cardpool_cardkey_import_status", args=[999999]),
    ):
        assert admin_client.get(url).status_code == 404, url
    assert (
        admin_client.post(reverse("admin:cardpool_cardkey_reveal", args=[999999]), {"reason": "x"}).status_code == 404
    )
    assert (
        admin_client.post(
            reverse("admin:cardpool_cardkey_import_batch", args=[999999]), {"action": "confirm"}
        ).status_code
        == 404
    )
