"""The import_keys management command: encodings, separators, dry runs and refusals."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from cardpool.importing import cardkeys_import_text
from cardpool.models import CardKey, ImportBatch
from tests.support.factories import ProductFactory
from tests.support.platforms import sandbox_notification
from tests.support.storefront import checkout, post_notification, start_sandbox_payment

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "encoding",
    ["utf-8", "utf-8-sig", "gbk", "gb18030", "utf-16", "utf-16-le", "utf-16-be"],
)
def test_import_command_reads_every_encoding_suppliers_send(tmp_path, encoding):
    product = ProductFactory(slug="steam-50")
    path = tmp_path / "keys.txt"
    path.write_bytes("卡密-一\r\nKEY-TWO\n\n卡密-一\n".encode(encoding))
    out = io.StringIO()

    call_command("import_keys", str(path), "--product", "steam-50", "--supplier", "老王", stdout=out)

    assert "added 2, 1 duplicates in the file" in out.getvalue()
    batch = ImportBatch.objects.get()
    assert batch.supplier == "老王" and batch.added == 2
    assert CardKey.objects.filter(product=product).count() == 2


def test_import_command_with_a_separator_stores_card_number_and_password(tmp_path, client, on_commit):
    product = ProductFactory(slug="netease")
    path = tmp_path / "cards.csv"
    path.write_text("1000200030004000,pass-1\n1000200030004001 , pass-2\nno-password-here\n")
    out = io.StringIO()

    call_command("import_keys", str(path), "--product", "netease", "--separator", "comma", stdout=out)

    assert "added 2" in out.getvalue() and "line 3: expected a card number and a password" in out.getvalue()
    order = checkout(client, product)
    payment = start_sandbox_payment(client, order)
    with on_commit():
        post_notification(client, sandbox_notification(out_trade_no=payment.out_trade_no, amount=order.total))
    assert "1000200030004000----pass-1" in client.get(reverse("shop:order", args=[order.access_token])).content.decode()


def test_import_command_dry_run_writes_nothing(tmp_path):
    product = ProductFactory(slug="dry")
    cardkeys_import_text(product=product, text="OLD-1")
    path = tmp_path / "keys.txt"
    path.write_text("OLD-1\nNEW-1\nNEW-2\n")
    out = io.StringIO()

    call_command("import_keys", str(path), "--product", "dry", "--dry-run", stdout=out)

    assert "would add 2" in out.getvalue() and "1 already in the pool" in out.getvalue()
    assert CardKey.objects.count() == 1 and ImportBatch.objects.count() == 1


@pytest.mark.parametrize(
    "content, args, message",
    [
        (b"", [], "the input is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", [], "binary"),
        (b"KEY\n", ["--product", "nope"], "no product with slug 'nope'"),
        (b"a,b,c\n", ["--separator", "comma"], "no line is in the chosen layout"),
        (b"OK-1\n" + b"X" * 2000 + b"\n", [], "line 2 is longer than 1024 characters"),
    ],
    ids=["empty", "binary", "unknown-product", "wrong-separator", "overlong-line"],
)
def test_import_command_refuses_bad_input_and_imports_nothing(tmp_path, content, args, message):
    ProductFactory(slug="p")
    path = tmp_path / "keys.txt"
    path.write_bytes(content)
    out = io.StringIO()
    product_args = [] if "--product" in args else ["--product", "p"]

    try:
        call_command("import_keys", str(path), *product_args, *args, stdout=out)
    except CommandError as exc:
        assert message in str(exc)
    else:
        assert message in out.getvalue()
    assert not CardKey.objects.exists()


def test_import_command_refuses_a_file_over_the_size_limit(tmp_path, settings):
    settings.CARDPOOL_IMPORT_MAX_BYTES = 10
    ProductFactory(slug="p")
    path = tmp_path / "keys.txt"
    path.write_text("K" * 20)

    with pytest.raises(CommandError, match="larger than"):
        call_command("import_keys", str(path), "--product", "p")
