"""The encrypted key pool: import, dedupe, masking, and no plaintext at rest."""

from __future__ import annotations

import base64
import io
import logging
import os
from datetime import timedelta

import pytest
from cryptography.exceptions import InvalidTag
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from cardpool.crypto import keyring_parse, secret_blind_index, secret_decrypt, secret_encrypt
from cardpool.importing import ImportRefused, cardkeys_import_text
from cardpool.models import CardKey, CardKeyStatus, ImportBatch, ImportUpload
from cardpool.services import _SELL_SQL, cardkeys_rotate
from delivery.services import order_deliver
from shop.models import Order
from tests.support.factories import OrderFactory, ProductFactory, stock_product
from tests.support.operators import admin_import, import_confirm, import_upload
from tests.support.platforms import sandbox_notification
from tests.support.races import run_together
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
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
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

    page, _batch = import_upload(admin_client, on_commit, {"product": product.pk, "text": "GOOD-1\nBAD\x07SECRET-123\n"})

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


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_reservation_query_uses_the_partial_index_on_postgresql():
    from tests.support.factories import OrderFactory

    product = ProductFactory()
    stock_product(ProductFactory(), 2000)
    stock_product(product, 3000)
    # Most of the pool has been sold, as in a shop that has run for a while.
    sold_to = OrderFactory(product=product, status="delivered")
    cutoff = CardKey.objects.filter(product=product).order_by("id").values_list("id", flat=True)[2990]
    CardKey.objects.filter(product=product, id__lt=cutoff).update(status=CardKeyStatus.SOLD, order=sold_to)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE cardpool_cardkey")
    # The statement the delivery service sends (EXPLAIN without ANALYZE does not run it).
    sql = _SELL_SQL.format(table=CardKey._meta.db_table, lock="FOR UPDATE SKIP LOCKED")
    now = timezone.now()
    params = ["sold", sold_to.pk, now, product.pk, now, 1]

    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())

    assert "Index Scan using cardkey_available_idx" in plan, plan
    assert "Sort" not in plan, plan


@pytest.fixture
def staff_client(client, django_user_model):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user(username="cs-li", password=None, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_cardkey", "add_cardkey"]))
    client.force_login(user)
    client.user = user
    return client


def grant(user, codename):
    from django.contrib.auth.models import Permission

    user.user_permissions.add(Permission.objects.get(codename=codename))


def test_reveal_needs_the_permission_and_a_reason_and_is_logged(staff_client):
    from cardpool.models import RevealLog

    product = ProductFactory()
    keys = stock_product(product, 1)
    key = CardKey.objects.get()
    url = reverse("admin:cardpool_cardkey_reveal", args=[key.pk])
    assert staff_client.get(url).status_code == 403
    grant(staff_client.user, "reveal_cardkey")

    without_reason = staff_client.post(url, {"reason": "  "}).content.decode()
    assert keys[0] not in without_reason and not RevealLog.objects.exists()
    shown = staff_client.post(url, {"reason": "buyer says the key is rejected"}, REMOTE_ADDR="10.1.2.3")

    assert keys[0] in shown.content.decode() and "no-store" in shown["Cache-Control"]
    log = RevealLog.objects.get()
    assert (log.username, log.kind, log.key_id, log.ip, log.reason) == ("cs-li", "reveal", key.pk, "10.1.2.3", "buyer says the key is rejected")


def test_reveal_log_can_be_read_but_not_edited(admin_client, staff_client):
    from cardpool.models import RevealLog

    stock_product(ProductFactory(), 1)
    grant(staff_client.user, "reveal_cardkey")
    staff_client.post(reverse("admin:cardpool_cardkey_reveal", args=[CardKey.objects.get().pk]), {"reason": "audit"})
    log = RevealLog.objects.get()

    assert admin_client.get(reverse("admin:cardpool_reveallog_changelist")).status_code == 200
    admin_client.post(reverse("admin:cardpool_reveallog_change", args=[log.pk]), {"reason": "nothing happened"})
    assert admin_client.post(reverse("admin:cardpool_reveallog_delete", args=[log.pk]), {"post": "yes"}).status_code == 403
    assert RevealLog.objects.get().reason == "audit"


def test_export_of_unsold_keys_is_logged_and_formula_safe(staff_client):
    import csv as csv_module

    from cardpool.models import RevealLog

    product = ProductFactory()
    cardkeys_import_text(product=product, text="=HYPERLINK(\"http://evil\")\n+SUM(A1)\n-1+1\n@cmd\nPLAIN-KEY\n")
    url = reverse("admin:cardpool_cardkey_export")
    assert staff_client.post(url, {"product": product.pk, "reason": "move stock"}).status_code == 403
    grant(staff_client.user, "export_cardkey")

    response = staff_client.post(url, {"product": product.pk, "reason": "moving stock to the new shop"})

    text = b"".join(response.streaming_content).decode("utf-8-sig")
    rows = list(csv_module.reader(text.splitlines()))
    assert rows[0] == ["id", "key", "batch", "added_at"]
    assert sorted(row[1] for row in rows[1:]) == sorted(["'=HYPERLINK(\"http://evil\")", "'+SUM(A1)", "'-1+1", "'@cmd", "PLAIN-KEY"])
    log = RevealLog.objects.get()
    assert (log.kind, log.key_count, log.product_id) == ("export", 5, product.pk)


@pytest.mark.parametrize(
    "encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030", "utf-16", "utf-16-le", "utf-16-be"],
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
    orders = [OrderFactory(product=product, contact="13800138000", contact_kind="mobile", status="paid") for _ in range(150)]
    Order.objects.update(paid_at=timezone.now())
    settings.CARDPOOL_KEYS = f"1:{old},2:{new}"

    def sell():
        return sum(order_deliver(order_id=o.pk) == "delivered" for o in orders)

    rotated, sold = run_together(cardkeys_rotate, sell)

    assert sold == 150 and rotated == 1200
    assert set(CardKey.objects.values_list("key_version", flat=True)) == {2}
    sold_to = list(CardKey.objects.filter(status="sold").values_list("order_id", flat=True))
    assert len(sold_to) == 150 and len(set(sold_to)) == 150
    settings.CARDPOOL_KEYS = f"2:{new}"
    plaintexts = {secret_decrypt(ciphertext=k.ciphertext, key_version=k.key_version, product_id=k.product_id) for k in CardKey.objects.all()}
    assert plaintexts == set(secrets_)


def test_voiding_a_batch_voids_its_unsold_keys_only(admin_client, client, on_commit):
    product = ProductFactory()
    first = cardkeys_import_text(product=product, text="A-1\nA-2\nA-3\n")
    second = cardkeys_import_text(product=product, text="B-1\n")
    order = checkout(client, product)
    payment = start_sandbox_payment(client, order)
    with on_commit():
        post_notification(client, sandbox_notification(out_trade_no=payment.out_trade_no, amount=order.total))

    admin_client.post(reverse("admin:cardpool_importbatch_changelist"), {"action": "void_unsold", "_selected_action": [first.batch_id]})

    statuses = sorted(CardKey.objects.filter(batch_id=first.batch_id).values_list("status", flat=True))
    assert statuses == ["sold", "void", "void"]
    assert CardKey.objects.get(batch_id=second.batch_id).status == "available"
    assert "voided 2 unsold keys by admin" in ImportBatch.objects.get(pk=first.batch_id).note


def test_allocation_takes_the_soonest_expiring_key_and_never_an_expired_one(client, on_commit, admin_client):
    product = ProductFactory()
    cardkeys_import_text(product=product, text="EXPIRED\nLATER\nSOON\nNEVER\n")
    now = timezone.now()
    for secret, days in (("EXPIRED", -1), ("LATER", 60), ("SOON", 3)):
        CardKey.objects.filter(blind_index=secret_blind_index(secret=secret, product_id=product.pk)).update(
            expires_at=now + timedelta(days=days)
        )

    order = checkout(client, product)
    payment = start_sandbox_payment(client, order)
    with on_commit():
        post_notification(client, sandbox_notification(out_trade_no=payment.out_trade_no, amount=order.total))

    page = client.get(reverse("shop:order", args=[order.access_token])).content.decode()
    assert ">SOON<" in page and "EXPIRED" not in page
    listing = admin_client.get(reverse("admin:cardpool_cardkey_changelist") + "?expiring=expired")
    assert [k.mask for k in listing.context["cl"].result_list] == ["EX***ED"]
    within = admin_client.get(reverse("admin:cardpool_cardkey_changelist") + "?expiring=90")
    assert [k.mask for k in within.context["cl"].result_list] == ["*****"]  # LATER; SOON was sold


@pytest.mark.postgres
def test_key_table_has_its_own_autovacuum_settings():
    with connection.cursor() as cursor:
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = 'cardpool_cardkey'")
        options = cursor.fetchone()[0]

    assert "autovacuum_vacuum_scale_factor=0.01" in options and "autovacuum_analyze_scale_factor=0.02" in options


def test_keys_with_tabs_and_backslashes_survive_the_import(client, on_commit):
    product = ProductFactory()
    secret = "A\tB\\C-123456"  # a tab and a backslash, which COPY's text format must escape

    report = cardkeys_import_text(product=product, text=secret + "\n")

    assert report.added == 1
    key = CardKey.objects.get()
    assert secret_decrypt(ciphertext=key.ciphertext, key_version=key.key_version, product_id=product.pk) == secret
    assert key.mask.startswith("A\t")


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

    batch = admin_import(admin_client, on_commit, {
        "product": product.pk, "text": "8888 0001\tpw1\n8888 0002\tpw2\n", "separator": "tab", "supplier": "盛大",
        "unit_cost": "9.50",
    })

    assert batch.added == 2 and batch.supplier == "盛大" and str(batch.unit_cost) == "9.50"
    key = CardKey.objects.order_by("id").first()
    assert secret_decrypt(ciphertext=key.ciphertext, key_version=key.key_version, product_id=product.pk) == "8888 0001----pw1"


def test_reveal_and_import_pages_of_a_key_or_batch_that_does_not_exist_are_404(admin_client):
    for url in (
        reverse("admin:cardpool_cardkey_reveal", args=[999999]),
        reverse("admin:cardpool_cardkey_import_batch", args=[999999]),
        reverse("admin:cardpool_cardkey_import_status", args=[999999]),
    ):
        assert admin_client.get(url).status_code == 404, url
    assert admin_client.post(reverse("admin:cardpool_cardkey_reveal", args=[999999]), {"reason": "x"}).status_code == 404
    assert admin_client.post(reverse("admin:cardpool_cardkey_import_batch", args=[999999]), {"action": "confirm"}).status_code == 404
