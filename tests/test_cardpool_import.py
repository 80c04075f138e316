"""The import pipeline at operator scale: CSV/XLSX column mapping, preview, background commit
with progress and resume, reusable keys, expiry, XLSX export."""

from __future__ import annotations

import io
from datetime import datetime, timedelta

import openpyxl
import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from cardpool import importing
from cardpool.crypto import secret_decrypt
from cardpool.importing import ImportLayout, cardkeys_import, cardkeys_import_text, rows_parse
from cardpool.models import CardKey, CardKeyStatus, ImportBatch, ImportStatus, ImportUpload
from tests.support.factories import ProductFactory
from tests.support.operators import admin_import, import_confirm, import_upload
from tests.support.platforms import sandbox_notification
from tests.support.storefront import checkout, post_notification, start_sandbox_payment

pytestmark = pytest.mark.django_db


def _xlsx(rows: list[list]) -> io.BytesIO:
    book = openpyxl.Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    out.seek(0)
    return out


def _secrets(product) -> list[str]:
    return [
        secret_decrypt(ciphertext=k.ciphertext, key_version=k.key_version, product_id=k.product_id)
        for k in CardKey.objects.filter(product=product).order_by("id")
    ]


def _buy(client, on_commit, product, quantity: int = 1) -> str:
    order = checkout(client, product, quantity=quantity)
    payment = start_sandbox_payment(client, order)
    with on_commit():
        post_notification(client, sandbox_notification(out_trade_no=payment.out_trade_no, amount=order.total))
    return client.get(reverse("shop:order", args=[order.access_token])).content.decode()


def test_supplier_csv_with_named_columns_and_expiry_dates_in_gbk(admin_client, on_commit):
    product = ProductFactory()
    csv_text = "卡号,密码,有效期\r\n1000 0001,pw-1,2030-06-30\r\n1000 0002,pw-2,2030/12/31\r\n1000 0003,,2030-01-01\r\n"
    upload = io.BytesIO(csv_text.encode("gbk"))
    upload.name = "supplier.csv"

    batch = admin_import(
        admin_client,
        on_commit,
        {
            "product": product.pk,
            "file": upload,
            "secret_column": "卡号",
            "password_column": "密码",
            "expiry_column": "有效期",
        },
    )

    assert (batch.added, batch.invalid) == (2, 1)
    assert batch.preview["problems"] == [
        [4, "a card number or password cell is empty", "1000 0003"[:2] + "*****" + "03"]
    ]
    assert _secrets(product) == ["1000 0001----pw-1", "1000 0002----pw-2"]
    expiry = CardKey.objects.order_by("id").first().expires_at
    assert timezone.localtime(expiry).date().isoformat() == "2030-06-30"


def test_xlsx_with_numeric_card_numbers_and_date_cells(admin_client, on_commit):
    product = ProductFactory()
    upload = _xlsx(
        [
            ["Card", "PIN", "Valid until"],
            [88880001, "0042", datetime(2031, 1, 31)],  # noqa: DTZ001 - a spreadsheet date cell has no zone
            [88880002, "0043", None],
        ]
    )
    upload.name = "cards.xlsx"

    batch = admin_import(
        admin_client,
        on_commit,
        {
            "product": product.pk,
            "file": upload,
            "secret_column": "1",
            "password_column": "2",
            "expiry_column": "Valid until",
        },
    )

    assert batch.added == 2
    assert _secrets(product) == ["88880001----0042", "88880002----0043"]
    first, second = CardKey.objects.order_by("id")
    assert first.expires_at is not None and second.expires_at is None


def test_xlsx_without_a_header_row(tmp_path):
    product = ProductFactory(slug="xlsx")
    path = tmp_path / "keys.xlsx"
    path.write_bytes(_xlsx([["KEY-A"], ["KEY-B"], ["KEY-A"]]).getvalue())
    out = io.StringIO()

    call_command("import_keys", str(path), "--product", "xlsx", "--no-header", stdout=out)

    assert "added 2, 1 duplicates in the file" in out.getvalue()
    assert _secrets(product) == ["KEY-A", "KEY-B"]


@pytest.mark.parametrize(
    "name, content, args, message",
    [
        (
            "keys.csv",
            "卡号,密码\nA,1\n".encode(),
            ["--key-column", "card"],
            "no column 'card' for the key; its columns are: 卡号, 密码",
        ),
        (
            "keys.csv",
            b"a,b\n1,2\n",
            ["--password-column", "5"],
            "the password column is number 5, but the file has 2 columns",
        ),
        ("keys.xlsx", b"PK\x03\x04 not really a workbook", [], "not a readable .xlsx workbook"),
        ("keys.csv", "卡号\n".encode(), [], "the input is empty"),
        ("keys.csv", b"key,expiry\nA,someday\n", ["--expiry-column", "expiry"], "no keys"),
    ],
    ids=["unknown-header", "column-out-of-range", "broken-xlsx", "header-only", "no-valid-row"],
)
def test_a_file_in_the_wrong_layout_is_refused_and_imports_nothing(tmp_path, name, content, args, message):
    ProductFactory(slug="p")
    path = tmp_path / name
    path.write_bytes(content)
    out = io.StringIO()

    try:
        call_command("import_keys", str(path), "--product", "p", *args, stdout=out)
    except CommandError as exc:
        assert message in str(exc)
    else:
        assert message in out.getvalue() or "added 0" in out.getvalue()
    assert not CardKey.objects.exists()


def test_preview_tells_new_keys_from_unsold_sold_and_in_file_duplicates(client, on_commit, admin_client):
    product = ProductFactory()
    cardkeys_import_text(product=product, text="SOLD-1\nUNSOLD-1\n")
    _buy(client, on_commit, product)  # sells SOLD-1, the oldest

    page, batch = import_upload(
        admin_client,
        on_commit,
        {
            "product": product.pk,
            "text": "SOLD-1\nUNSOLD-1\nNEW-1\nNEW-1\nNEW-2\nbad\x01key\n",
        },
    )

    assert batch.status == ImportStatus.READY
    p = batch.preview
    assert (p["added"], p["duplicates_in_file"], p["duplicates_in_pool"], p["duplicates_sold"], p["invalid_count"]) == (
        2,
        1,
        1,
        1,
        1,
    )
    html = page.content.decode()
    assert "Import 2 keys" in html and "NEW-1" not in html
    assert ImportUpload.objects.filter(batch=batch).exists()
    assert bytes(ImportUpload.objects.get(batch=batch).data).find(b"NEW-1") == -1  # the waiting upload is encrypted

    import_confirm(admin_client, on_commit, batch)

    assert (batch.added, batch.duplicates_sold, batch.duplicates_in_pool) == (2, 1, 1)
    assert not ImportUpload.objects.exists()


def test_progress_survives_a_reload_and_the_status_endpoint_reports_it(admin_client, on_commit):
    product = ProductFactory()
    _page, batch = import_upload(admin_client, on_commit, {"product": product.pk, "text": "K-1\nK-2\n"})
    url = reverse("admin:cardpool_cardkey_import_batch", args=[batch.pk])
    # Confirmed, but the worker has not picked it up yet (no commit callbacks run here).
    admin_client.post(url, {"action": "confirm"})

    page = admin_client.get(url, headers={"accept-language": "en"}).content.decode()
    status = admin_client.get(reverse("admin:cardpool_cardkey_import_status", args=[batch.pk])).json()

    assert "Importing…" in page and 'id="import-progress"' in page
    assert status == {
        "status": "importing",
        "rows_done": 0,
        "rows_total": 2,
        "percent": 0,
        "added": 0,
        "stalled": False,
    }


def test_an_interrupted_import_resumes_from_its_last_chunk_without_duplicates(monkeypatch, settings):
    monkeypatch.setattr(importing, "IMPORT_CHUNK", 10)
    product = ProductFactory()
    raw = "\n".join(f"KEY-{n:03d}" for n in range(35)).encode()
    layout = ImportLayout()
    batch = ImportBatch.objects.create(
        product=product, status=ImportStatus.IMPORTING, layout=layout.as_dict(), lines_total=35
    )
    importing.import_upload_store(batch=batch, raw=raw)

    class WorkerKilled(Exception):
        pass

    def die_after_two_chunks(done):
        if done == 20:
            raise WorkerKilled

    with pytest.raises(WorkerKilled):
        importing.import_commit(batch=batch, rows=rows_parse(raw, layout), progress=die_after_two_chunks)
    batch.refresh_from_db()
    assert (batch.rows_done, batch.added, batch.status) == (20, 20, ImportStatus.IMPORTING)

    # Beat's resume (here for a batch idle for any time at all) sends the commit task again.
    ImportBatch.objects.filter(pk=batch.pk).update(updated_at=timezone.now() - timedelta(minutes=5))
    assert importing.imports_resume() == [batch.pk]

    batch.refresh_from_db()
    assert (batch.status, batch.rows_done, batch.added, batch.duplicates_in_file) == (ImportStatus.DONE, 35, 35, 0)
    assert CardKey.objects.filter(product=product).count() == 35


def test_re_running_the_same_file_adds_nothing(tmp_path):
    ProductFactory(slug="again")
    path = tmp_path / "keys.txt"
    path.write_text("\n".join(f"K-{n}" for n in range(50)))

    call_command("import_keys", str(path), "--product", "again", stdout=io.StringIO())
    out = io.StringIO()
    call_command("import_keys", str(path), "--product", "again", stdout=out)

    assert "added 0, 0 duplicates in the file, 50 already in the pool" in out.getvalue()
    assert CardKey.objects.count() == 50


def test_a_reusable_key_goes_to_many_orders_up_to_its_cap(client, on_commit):
    product = ProductFactory()
    cardkeys_import_text(product=product, text="SHARED-ACCOUNT pw123", max_uses=3)

    pages = [_buy(client, on_commit, product) for _ in range(3)]
    sold_out = client.get(reverse("shop:product", args=[product.slug])).content.decode()

    assert all("SHARED-ACCOUNT pw123" in page for page in pages)
    shared = CardKey.objects.get(reuse_of__isnull=True)
    assert (shared.uses, shared.status) == (3, CardKeyStatus.USED_UP)
    assert CardKey.objects.filter(reuse_of=shared, status=CardKeyStatus.SOLD).values("order").distinct().count() == 3
    assert "Sold out" in sold_out or "售罄" in sold_out


def test_a_reusable_key_without_a_cap_never_runs_out(client, on_commit, tmp_path):
    product = ProductFactory(slug="generic")
    path = tmp_path / "code.txt"
    path.write_text("WELCOME-2027\n")
    call_command("import_keys", str(path), "--product", "generic", "--uses", "unlimited", stdout=io.StringIO())

    for _ in range(4):
        assert "WELCOME-2027" in _buy(client, on_commit, product, quantity=2)

    assert CardKey.objects.get(reuse_of__isnull=True).uses == 8
    assert CardKey.objects.filter(status=CardKeyStatus.SOLD).count() == 8
    page = client.get(reverse("shop:product", args=[product.slug]), headers={"accept-language": "en"}).content.decode()
    assert "In stock" in page
    # Importing the same code again is a duplicate, not a second pool.
    assert cardkeys_import_text(product=product, text="WELCOME-2027").duplicates_in_pool == 1


def test_unique_keys_are_sold_before_reusable_ones_and_never_more_than_paid_for(client, on_commit):
    product = ProductFactory()
    cardkeys_import_text(product=product, text="UNIQUE-1")
    cardkeys_import_text(product=product, text="SHARED-1", max_uses=5)

    page = _buy(client, on_commit, product, quantity=3)

    assert "UNIQUE-1" in page and "SHARED-1" in page
    sold = CardKey.objects.filter(status=CardKeyStatus.SOLD)
    assert sorted(
        secret_decrypt(ciphertext=k.ciphertext, key_version=k.key_version, product_id=k.product_id) for k in sold
    ) == [
        "SHARED-1",
        "SHARED-1",
        "UNIQUE-1",
    ]
    assert sold.values("order").distinct().count() == 1
    assert CardKey.objects.get(reuse_of__isnull=True, max_uses=5).uses == 2


def test_default_expiry_applies_to_keys_without_their_own_and_expired_rows_are_invalid(tmp_path):
    ProductFactory(slug="exp")
    path = tmp_path / "keys.csv"
    path.write_text("key,until\nA-1,\nA-2,2020-01-01\nA-3,2032年3月1日\n")
    out = io.StringIO()

    call_command(
        "import_keys", str(path), "--product", "exp", "--expiry-column", "until", "--expires", "2031-12-31", stdout=out
    )

    assert "added 2" in out.getvalue() and "line 3: already expired" in out.getvalue()
    dates = [timezone.localtime(k.expires_at).date().isoformat() for k in CardKey.objects.order_by("id")]
    assert dates == ["2031-12-31", "2032-03-01"]


def test_export_of_unsold_keys_as_xlsx_is_logged_and_formula_safe(admin_client):
    product = ProductFactory()
    cardkeys_import_text(product=product, text="=CMD()\nPLAIN-KEY\n")

    response = admin_client.post(
        reverse("admin:cardpool_cardkey_export"), {"product": product.pk, "format": "xlsx", "reason": "supplier audit"}
    )

    assert response["Content-Disposition"].endswith('.xlsx"')
    sheet = openpyxl.load_workbook(io.BytesIO(response.content)).active
    values = list(sheet.iter_rows(values_only=True))
    assert values[0] == ("id", "key", "batch", "added_at")
    assert sorted(row[1] for row in values[1:]) == ["'=CMD()", "PLAIN-KEY"]
    from cardpool.models import RevealLog

    assert RevealLog.objects.get().key_count == 2


def test_an_overlong_line_refuses_the_whole_file_in_the_admin_too(admin_client, on_commit, settings):
    settings.CARDPOOL_IMPORT_MAX_LINE_LENGTH = 20
    product = ProductFactory()

    page, _batch = import_upload(admin_client, on_commit, {"product": product.pk, "text": "OK-1\n" + "X" * 21 + "\n"})

    assert "Nothing was imported: line 2 is longer than 20 characters" in page.content.decode()
    assert not CardKey.objects.exists()


def test_import_batch_records_supplier_cost_and_who(admin_client, on_commit):
    product = ProductFactory()

    batch = admin_import(
        admin_client,
        on_commit,
        {
            "product": product.pk,
            "text": "C-1\nC-2\n",
            "supplier": "卡商甲",
            "unit_cost": "4.20",
            "note": "双十一备货",
        },
    )

    listing = admin_client.get(reverse("admin:cardpool_importbatch_changelist")).content.decode()
    assert batch.created_by.username == "admin" and batch.note == "双十一备货"
    assert "卡商甲" in listing and "4.20" in listing
    assert batch.finished_at is not None


def test_layout_refuses_nonsense_options():
    with pytest.raises(importing.ImportRefused):
        ImportLayout(format="pdf")
    with pytest.raises(importing.ImportRefused):
        ImportLayout(max_uses=0)
    with pytest.raises(importing.ImportRefused, match="the input is empty"):
        cardkeys_import(product=ProductFactory(), raw=b"   \n", layout=ImportLayout())


def test_admin_refuses_a_file_over_the_size_limit(admin_client, settings):
    settings.CARDPOOL_IMPORT_MAX_BYTES = 10
    product = ProductFactory()
    upload = io.BytesIO(b"KEY-1234567890\n")
    upload.name = "keys.txt"

    response = admin_client.post(
        reverse("admin:cardpool_cardkey_import"),
        {"product": product.pk, "file": upload, "max_uses": "1"},
        headers={"accept-language": "en"},
    )

    assert "larger than the import limit" in response.content.decode()
    assert not ImportBatch.objects.exists() and not CardKey.objects.exists()


def test_admin_key_list_shows_uses_of_reusable_keys(admin_client, client, on_commit):
    product = ProductFactory()
    cardkeys_import_text(product=product, text="SEAT-1", max_uses=4)
    _buy(client, on_commit, product)

    listing = admin_client.get(reverse("admin:cardpool_cardkey_changelist")).content.decode()

    assert "1 / 4" in listing and "SEAT-1" not in listing


def test_error_texts_never_carry_a_key_from_a_mis_read_file(admin_client, on_commit):
    product = ProductFactory()
    secret = "PLAINTEXT-KEY-0001"
    upload = io.BytesIO(f"{secret},2030-01-01\nPLAINTEXT-KEY-0002,2030-01-01\n".encode())
    upload.name = "no-header.csv"

    # Read as if the first row were a header, with a column name the file does not have.
    page, batch = import_upload(
        admin_client, on_commit, {"product": product.pk, "file": upload, "secret_column": "卡号"}
    )
    # The expiry column pointed at the keys themselves.
    upload = io.BytesIO(f"key,until\n{secret},{secret}\n".encode())
    upload.name = "swapped.csv"
    second_page, second = import_upload(
        admin_client,
        on_commit,
        {
            "product": product.pk,
            "file": upload,
            "secret_column": "key",
            "expiry_column": "until",
        },
    )

    batch.refresh_from_db()
    assert batch.status == "refused" and "PL**" in batch.error
    assert second.preview["problems"] == [[2, "expiry date not understood", "PL************01"]]
    for text in (page.content.decode(), second_page.content.decode(), batch.error, str(second.preview)):
        assert secret not in text
