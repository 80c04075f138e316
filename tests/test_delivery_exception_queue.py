"""The exception queue: staff retry, work, resolve and deliver by hand; defective keys; restocks."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from cardpool.importing import cardkeys_import_text
from cardpool.models import CardKey, CardKeyStatus
from shop.models import ExceptionReason, Order, OrderStatus
from tests.support.email_backends import PERMANENT, fail_next
from tests.support.factories import ProductFactory, stock_product
from tests.support.operators import admin_import, retry_from_the_queue
from tests.support.platforms import sandbox_notification
from tests.support.storefront import checkout, order_page, pay, post_notification, start_sandbox_payment

pytestmark = pytest.mark.django_db


def paid_while_sold_out(client, on_commit):
    """An order paid after its product sold out (its only key voided between checkout and payment)."""
    product = ProductFactory()
    stock_product(product, 1)
    order = checkout(client, product)
    payment = start_sandbox_payment(client, order)
    CardKey.objects.filter(product=product).update(status=CardKeyStatus.VOID)
    with on_commit():
        post_notification(client, sandbox_notification(out_trade_no=payment.out_trade_no, amount=order.total))
    order.refresh_from_db()
    return product, order


def test_exception_queue_retry_after_restock_delivers(admin_client, client, on_commit):
    product, order = paid_while_sold_out(client, on_commit)
    queue = admin_client.get(reverse("admin:shop_exceptionorder_changelist")).content.decode()
    assert order.number in queue
    new_keys = stock_product(product, 1, prefix="RESTOCK")

    retry_from_the_queue(admin_client, on_commit, order)

    assert order.status == OrderStatus.DELIVERED
    assert new_keys[0] in order_page(client, order)
    assert order.events.filter(type="shop.order.delivered", actor="admin").exists()
    assert order.number not in admin_client.get(reverse("admin:shop_exceptionorder_changelist")).content.decode()


def test_exception_queue_retry_while_still_out_of_stock_keeps_the_order_queued(admin_client, client, on_commit):
    _product, order = paid_while_sold_out(client, on_commit)

    retry_from_the_queue(admin_client, on_commit, order)

    assert order.status == OrderStatus.EXCEPTION
    assert order.events.filter(type="delivery.retry.out_of_stock").exists()


def test_importing_keys_delivers_out_of_stock_orders_oldest_first(admin_client, client, on_commit):
    product = ProductFactory()
    stock_product(product, 3)
    orders = [checkout(client, product) for _ in range(3)]
    payments = [start_sandbox_payment(client, order) for order in orders]
    CardKey.objects.update(status=CardKeyStatus.VOID)  # sold out while the buyers were paying
    for order, payment in zip(orders, payments, strict=True):
        with on_commit():
            post_notification(client, sandbox_notification(out_trade_no=payment.out_trade_no, amount=order.total))
    assert set(Order.objects.values_list("exception_reason", flat=True)) == {ExceptionReason.OUT_OF_STOCK}

    admin_import(admin_client, on_commit, {"product": product.pk, "text": "NEW-A\nNEW-B\n"})

    statuses = [Order.objects.get(pk=o.pk).status for o in orders]
    assert statuses == [OrderStatus.DELIVERED, OrderStatus.DELIVERED, OrderStatus.EXCEPTION]
    assert (
        Order.objects.get(pk=orders[0].pk).events.filter(type="shop.order.delivered", actor="system:restock").exists()
    )


def test_staff_take_an_entry_keep_notes_and_see_its_age(admin_client, admin_user, client, on_commit, settings):
    settings.EXCEPTION_SLA_MINUTES = 30
    _product, order = paid_while_sold_out(client, on_commit)
    Order.objects.filter(pk=order.pk).update(exception_at=timezone.now() - timedelta(minutes=45))
    queue_url = reverse("admin:shop_exceptionorder_changelist")
    assert "kameng-overdue" in admin_client.get(queue_url).content.decode()

    admin_client.post(queue_url, {"action": "assign_to_me", "_selected_action": [order.pk]})
    saved = admin_client.post(
        reverse("admin:shop_exceptionorder_change", args=[order.pk]),
        {"assignee": admin_user.pk, "staff_note": "supplier restocks at 18:00"},
    )
    assert saved.status_code == 302, saved.context["adminform"].form.errors if saved.context else saved

    order.refresh_from_db()
    assert order.assignee == admin_user and order.staff_note == "supplier restocks at 18:00"
    assert order.status == OrderStatus.EXCEPTION
    assert list(order.events.filter(type="shop.order.exception.worked").values_list("message", flat=True)) == [
        "assigned to admin",
        "notes updated",
    ]


def test_resolve_only_takes_orders_that_hold_their_keys(admin_client, client, on_commit, scripted_smtp):
    fail_next(PERMANENT)
    product = ProductFactory()
    stock_product(product, 1)
    failed_email = pay(client, on_commit, product)
    _product, sold_out = paid_while_sold_out(client, on_commit)

    admin_client.post(
        reverse("admin:shop_exceptionorder_changelist"),
        {"action": "resolve", "_selected_action": [failed_email.pk, sold_out.pk]},
    )

    assert Order.objects.get(pk=failed_email.pk).status == OrderStatus.DELIVERED
    assert Order.objects.get(pk=sold_out.pk).status == OrderStatus.EXCEPTION


def test_staff_deliver_manually_with_typed_keys_stored_encrypted(admin_client, client, on_commit):
    _product, order = paid_while_sold_out(client, on_commit)
    url = reverse("admin:shop_exceptionorder_deliver_manually", args=[order.pk])
    assert admin_client.get(url).status_code == 200

    with on_commit():
        response = admin_client.post(url, {"keys": "  MANUAL-KEY-0001  \n"})

    assert response.status_code == 302
    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED
    key = CardKey.objects.get(order=order, status=CardKeyStatus.SOLD)
    assert b"MANUAL-KEY-0001" not in bytes(key.ciphertext) and key.mask == "MA***********01"
    assert "MANUAL-KEY-0001" in order_page(client, order) and "MANUAL-KEY-0001" in mail.outbox[-1].body
    assert order.events.filter(type="shop.order.delivered_manually", actor="admin").exists()


@pytest.mark.parametrize(
    "typed, problem",
    [("", "This field is required"), ("K-1\nK-2", "needs exactly 1 more"), ("KEY-IN-POOL", "already in the pool")],
    ids=["nothing", "too-many", "duplicate-of-pool"],
)
def test_manual_delivery_refuses_bad_keys_and_changes_nothing(admin_client, client, on_commit, typed, problem):
    product, order = paid_while_sold_out(client, on_commit)
    cardkeys_import_text(product=product, text="KEY-IN-POOL")
    CardKey.objects.filter(product=product, status=CardKeyStatus.AVAILABLE).update(status=CardKeyStatus.VOID)
    url = reverse("admin:shop_exceptionorder_deliver_manually", args=[order.pk])

    page = admin_client.post(url, {"keys": typed}, follow=True, headers={"accept-language": "en"}).content.decode()

    assert problem in page
    order.refresh_from_db()
    assert order.status == OrderStatus.EXCEPTION and not CardKey.objects.filter(order=order, status="sold").exists()


def test_staff_deliver_manually_page_of_an_order_that_does_not_exist_is_404(admin_client):
    url = reverse("admin:shop_exceptionorder_deliver_manually", args=[999999])

    assert admin_client.get(url).status_code == 404
    assert admin_client.post(url, {"keys": "MANUAL-KEY-0001"}).status_code == 404


def test_staff_deliver_manually_refuses_an_order_that_is_not_in_the_queue(admin_client, client, on_commit):
    product = ProductFactory()
    stock_product(product, 1)
    order = pay(client, on_commit, product)
    url = reverse("admin:shop_exceptionorder_deliver_manually", args=[order.pk])

    response = admin_client.post(url, {"keys": "MANUAL-KEY-0001"}, follow=True)

    assert response.status_code == 200
    assert not CardKey.objects.filter(order=order, mask__startswith="MA").exists()


def test_defective_key_is_replaced_from_the_pool_and_emailed(admin_client, client, on_commit):
    product = ProductFactory()
    keys = stock_product(product, 2)
    order = pay(client, on_commit, product)
    bad = CardKey.objects.get(order=order, status=CardKeyStatus.SOLD)

    with on_commit():
        admin_client.post(
            reverse("admin:cardpool_cardkey_changelist"), {"action": "replace_defective", "_selected_action": [bad.pk]}
        )

    page = order_page(client, order)
    sold = CardKey.objects.filter(order=order, status=CardKeyStatus.SOLD)
    assert sold.count() == 1 and sold.get().pk != bad.pk
    assert CardKey.objects.get(pk=bad.pk).status == CardKeyStatus.VOID
    assert sum(k in page for k in keys) == 1
    assert len(mail.outbox) == 2 and all(k not in mail.outbox[-1].body for k in keys if k not in page)
    assert list(order.events.filter(type__startswith="cardpool.key").values_list("type", flat=True)) == [
        "cardpool.key.defective",
        "cardpool.key.replaced",
    ]


def test_defective_key_with_nothing_in_stock_goes_to_the_queue_and_imports_fix_it(admin_client, client, on_commit):
    product = ProductFactory()
    stock_product(product, 1)
    order = pay(client, on_commit, product)
    bad = CardKey.objects.get(order=order)

    with on_commit():
        admin_client.post(
            reverse("admin:cardpool_cardkey_changelist"), {"action": "replace_defective", "_selected_action": [bad.pk]}
        )

    order.refresh_from_db()
    assert order.status == OrderStatus.EXCEPTION and order.exception_reason == ExceptionReason.DEFECTIVE_KEY
    assert not CardKey.objects.filter(order=order, status=CardKeyStatus.SOLD).exists()
