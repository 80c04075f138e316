"""Staff access to plaintext keys: reveal and export need a permission and a reason, and are logged."""

from __future__ import annotations

import pytest
from django.urls import reverse

from cardpool.importing import cardkeys_import_text
from cardpool.models import CardKey
from tests.support.factories import ProductFactory, stock_product

pytestmark = pytest.mark.django_db


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
    assert (log.username, log.kind, log.key_id, log.ip, log.reason) == (
        "cs-li",
        "reveal",
        key.pk,
        "10.1.2.3",
        "buyer says the key is rejected",
    )


def test_reveal_log_can_be_read_but_not_edited(admin_client, staff_client):
    from cardpool.models import RevealLog

    stock_product(ProductFactory(), 1)
    grant(staff_client.user, "reveal_cardkey")
    staff_client.post(reverse("admin:cardpool_cardkey_reveal", args=[CardKey.objects.get().pk]), {"reason": "audit"})
    log = RevealLog.objects.get()

    assert admin_client.get(reverse("admin:cardpool_reveallog_changelist")).status_code == 200
    admin_client.post(reverse("admin:cardpool_reveallog_change", args=[log.pk]), {"reason": "nothing happened"})
    assert (
        admin_client.post(reverse("admin:cardpool_reveallog_delete", args=[log.pk]), {"post": "yes"}).status_code == 403
    )
    assert RevealLog.objects.get().reason == "audit"


def test_export_of_unsold_keys_is_logged_and_formula_safe(staff_client):
    import csv as csv_module

    from cardpool.models import RevealLog

    product = ProductFactory()
    cardkeys_import_text(product=product, text='=HYPERLINK("http://evil")\n+SUM(A1)\n-1+1\n@cmd\nPLAIN-KEY\n')
    url = reverse("admin:cardpool_cardkey_export")
    assert staff_client.post(url, {"product": product.pk, "reason": "move stock"}).status_code == 403
    grant(staff_client.user, "export_cardkey")

    response = staff_client.post(url, {"product": product.pk, "reason": "moving stock to the new shop"})

    text = b"".join(response.streaming_content).decode("utf-8-sig")
    rows = list(csv_module.reader(text.splitlines()))
    assert rows[0] == ["id", "key", "batch", "added_at"]
    assert sorted(row[1] for row in rows[1:]) == sorted(
        ['\'=HYPERLINK("http://evil")', "'+SUM(A1)", "'-1+1", "'@cmd", "PLAIN-KEY"]
    )
    log = RevealLog.objects.get()
    assert (log.kind, log.key_count, log.product_id) == ("export", 5, product.pk)
