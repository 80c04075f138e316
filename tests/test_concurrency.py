"""Concurrency, races and crashes on PostgreSQL, with a real Celery worker process on Redis."""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import psycopg2
import pytest
from django.db import connection, connections
from django.test import Client
from django.utils import timezone

from cardpool.models import CardKey, CardKeyStatus
from delivery.models import DeliveryMessage
from payments.models import Payment, PaymentNotification
from payments.registry import gateway_get
from payments.services import payment_start
from shop.models import ExceptionReason, Order, OrderStatus
from shop.services import order_expire
from tests.support.factories import OrderFactory, ProductFactory, stock_product
from tests.support.platforms import sandbox_notification
from tests.support.processes import flush_test_broker, service_env, start_worker, worker_database_url
from tests.support.races import run_together
from tests.support.storefront import post_notification
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True)]


def _pending_payment(product, *, quantity=1, contact="13800138000") -> Payment:
    order = OrderFactory(
        product=product, quantity=quantity, contact=contact, contact_kind="mobile" if contact[0].isdigit() else "email"
    )
    payment, _action = payment_start(order=order, gateway=gateway_get("sandbox"))
    return payment


def _post_from_threads(notifications: list[dict], clients: int) -> list[bytes]:
    barrier = threading.Barrier(min(clients, len(notifications)))

    def post(fields):
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=10)
        try:
            return post_notification(Client(), fields).content
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=clients) as pool:
        return list(pool.map(post, notifications))


@pytest.mark.postgres
def test_same_notification_ten_times_concurrently_confirms_and_delivers_once():
    product = ProductFactory()
    stock_product(product, 5)
    payment = _pending_payment(product, quantity=2)
    fields = sandbox_notification(out_trade_no=payment.out_trade_no, amount=payment.amount)

    answers = run_together(*[lambda: post_notification(Client(), fields).content] * 10)

    assert answers == [b"success"] * 10
    order = Order.objects.get(pk=payment.order_id)
    assert order.status == OrderStatus.DELIVERED
    assert CardKey.objects.filter(order=order).count() == 2
    assert CardKey.objects.filter(status=CardKeyStatus.SOLD).count() == 2
    assert PaymentNotification.objects.get().times_received == 10
    assert order.events.filter(type="shop.order.paid").count() == 1
    assert order.events.filter(type="shop.order.delivered").count() == 1


@pytest.mark.postgres
def test_expiry_racing_a_late_payment_ends_delivered_or_queued_never_both():
    product = ProductFactory()
    stock_product(product, 20)
    payments = [_pending_payment(product) for _ in range(20)]
    Order.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    def race(payment):
        fields = sandbox_notification(out_trade_no=payment.out_trade_no, amount=payment.amount)
        return run_together(
            lambda: order_expire(order_id=payment.order_id),
            lambda: post_notification(Client(), fields).content,
        )

    outcomes = [race(p) for p in payments]

    assert all(answer == b"success" for _expired, answer in outcomes)
    final = Counter()
    for payment in payments:
        order = Order.objects.get(pk=payment.order_id)
        keys = CardKey.objects.filter(order=order).count()
        if order.status == OrderStatus.DELIVERED:
            assert keys == 1
            final["delivered"] += 1
        else:
            assert order.status == OrderStatus.EXCEPTION
            assert order.exception_reason == ExceptionReason.PAID_AFTER_EXPIRY and keys == 0
            assert order.events.filter(type="shop.order.expired").count() == 1
            final["queued"] += 1
    assert sum(final.values()) == 20
    assert CardKey.objects.filter(status=CardKeyStatus.SOLD).count() == final["delivered"]


@pytest.fixture
def worker_env(tmp_path):
    flush_test_broker()
    return service_env(tmp_path)


@pytest.mark.redis
def test_two_hundred_orders_for_150_keys_from_8_clients_sell_each_key_once(worker_env, tmp_path):
    product = ProductFactory()
    stock_product(product, 150)
    payments = [_pending_payment(product) for _ in range(200)]
    worker = start_worker(worker_env, tmp_path, concurrency=4)
    try:
        answers = _post_from_threads(
            [sandbox_notification(out_trade_no=p.out_trade_no, amount=p.amount) for p in payments], clients=8
        )
        assert answers == [b"success"] * 200

        wait_until(
            lambda: not Order.objects.filter(status__in=[OrderStatus.PENDING, OrderStatus.PAID]).exists(),
            timeout=120,
            message="every paid order to be delivered or queued",
        )
    finally:
        worker.stop()

    statuses = Counter(Order.objects.values_list("status", "exception_reason"))
    assert statuses == {(OrderStatus.DELIVERED, ""): 150, (OrderStatus.EXCEPTION, ExceptionReason.OUT_OF_STOCK): 50}
    sold = list(CardKey.objects.filter(status=CardKeyStatus.SOLD).values_list("order_id", flat=True))
    assert len(sold) == 150 and len(set(sold)) == 150
    assert not CardKey.objects.filter(status=CardKeyStatus.AVAILABLE).exists()
    for order in Order.objects.filter(status=OrderStatus.EXCEPTION):
        assert not CardKey.objects.filter(order=order).exists()


@pytest.mark.redis
def test_worker_killed_mid_delivery_delivers_exactly_once_after_restart(worker_env, tmp_path):
    product = ProductFactory()
    stock_product(product, 5)
    payment = _pending_payment(product, quantity=2, contact="buyer@example.com")
    worker = start_worker(worker_env, tmp_path, name="doomed", concurrency=1)
    # Hold a lock the delivery transaction needs after it has reserved the keys and marked the
    # order delivered (creating the email row), so the worker is caught mid-transaction.
    blocker = psycopg2.connect(worker_database_url())
    blocker.cursor().execute("BEGIN; LOCK TABLE delivery_deliverymessage IN SHARE MODE")
    try:
        response = post_notification(
            Client(), sandbox_notification(out_trade_no=payment.out_trade_no, amount=payment.amount)
        )
        assert response.content == b"success"
        with blocker.cursor() as cursor:

            def worker_is_waiting():
                cursor.execute(
                    "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                    "WHERE NOT l.granted AND c.relname = 'delivery_deliverymessage'"
                )
                return cursor.fetchone()[0] == 1

            wait_until(worker_is_waiting, timeout=60, message="the worker to block mid-delivery")
        worker.kill()
    finally:
        blocker.rollback()
        blocker.close()

    order = Order.objects.get(pk=payment.order_id)
    assert order.status == OrderStatus.PAID  # the killed transaction left nothing behind
    assert not CardKey.objects.filter(order=order).exists()

    restarted_env = {**worker_env, "DELIVERY_SWEEP_AFTER_SECONDS": "1", "DELIVERY_SWEEP_INTERVAL_SECONDS": "1"}
    survivor = start_worker(restarted_env, tmp_path, name="survivor", concurrency=2, beat=True)
    try:
        wait_until(
            lambda: Order.objects.get(pk=order.pk).status == OrderStatus.DELIVERED,
            timeout=60,
            message="the sweeper to re-drive the order",
        )
        wait_until(
            lambda: DeliveryMessage.objects.filter(order=order, state="sent").exists(), timeout=30, message="the email"
        )
    finally:
        survivor.stop()

    assert CardKey.objects.filter(order=order).count() == 2
    assert CardKey.objects.filter(status=CardKeyStatus.SOLD).count() == 2
    assert DeliveryMessage.objects.filter(order=order).count() == 1
    assert Order.objects.get(pk=order.pk).events.filter(type="shop.order.delivered").count() == 1
    assert connection.vendor == "postgresql"


@pytest.mark.postgres
def test_forty_concurrent_orders_never_use_a_reusable_key_beyond_its_cap():
    from cardpool.importing import cardkeys_import_text

    product = ProductFactory()
    cardkeys_import_text(product=product, text="SHARED-SEAT", max_uses=25)
    stock_product(product, 5)
    payments = [_pending_payment(product) for _ in range(40)]

    answers = _post_from_threads(
        [sandbox_notification(out_trade_no=p.out_trade_no, amount=p.amount) for p in payments], clients=8
    )

    assert answers == [b"success"] * 40
    statuses = Counter(Order.objects.values_list("status", "exception_reason"))
    assert statuses == {(OrderStatus.DELIVERED, ""): 30, (OrderStatus.EXCEPTION, ExceptionReason.OUT_OF_STOCK): 10}
    shared = CardKey.objects.get(reuse_of__isnull=True, max_uses=25)
    assert (shared.uses, shared.status) == (25, CardKeyStatus.USED_UP)
    per_order = Counter(CardKey.objects.filter(status=CardKeyStatus.SOLD).values_list("order_id", flat=True))
    assert len(per_order) == 30 and set(per_order.values()) == {1}


@pytest.mark.redis
def test_import_worker_killed_mid_file_resumes_from_its_last_chunk_without_duplicates(worker_env, tmp_path, admin_user):
    from cardpool.crypto import secret_blind_index
    from cardpool.models import ImportBatch

    product = ProductFactory()
    lines = [f"BULK-{n:05d}" for n in range(5000)]
    admin = Client()
    admin.force_login(admin_user)
    worker = start_worker(worker_env, tmp_path, name="importer", concurrency=1)
    # An uncommitted key with the same blind index as line 3001 (in the second chunk of 2,000):
    # the worker's second chunk waits on it, so it is caught after committing the first chunk.
    blocker = psycopg2.connect(worker_database_url())
    blocker.cursor().execute(
        "BEGIN; INSERT INTO cardpool_cardkey"
        " (product_id, ciphertext, key_version, blind_index, index_version, mask, status, max_uses, uses, created_at)"
        " VALUES (%s, '\\x00', 1, %s, 1, 'x', 'void', 1, 0, now())",
        [product.pk, secret_blind_index(secret=lines[3000], product_id=product.pk)],
    )
    try:
        admin.post(
            "/admin/cardpool/cardkey/import/", {"product": product.pk, "text": "\n".join(lines), "max_uses": "1"}
        )
        batch = ImportBatch.objects.get(product=product)
        wait_until(lambda: ImportBatch.objects.get(pk=batch.pk).status == "ready", timeout=60, message="the preview")
        batch_url = f"/admin/cardpool/cardkey/import/{batch.pk}/"
        admin.post(batch_url, {"action": "confirm"})
        wait_until(
            lambda: ImportBatch.objects.get(pk=batch.pk).rows_done == 2000, timeout=60, message="the first chunk"
        )
        with blocker.cursor() as cursor:

            def worker_is_waiting():
                cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'transactionid'")
                return cursor.fetchone()[0] == 1

            wait_until(worker_is_waiting, timeout=60, message="the worker to block in the second chunk")
        worker.kill()
    finally:
        blocker.rollback()
        blocker.close()

    batch.refresh_from_db()
    assert (batch.status, batch.rows_done, batch.added) == ("importing", 2000, 2000)
    survivor = start_worker(worker_env, tmp_path, name="resumer", concurrency=1)
    try:
        ImportBatch.objects.filter(pk=batch.pk).update(updated_at=timezone.now() - timedelta(minutes=5))
        assert b"Resume" in admin.get(batch_url, headers={"accept-language": "en"}).content
        admin.post(batch_url, {"action": "resume"})
        wait_until(
            lambda: ImportBatch.objects.get(pk=batch.pk).status == "done", timeout=60, message="the resumed import"
        )
    finally:
        survivor.stop()

    batch.refresh_from_db()
    assert (batch.rows_done, batch.added, batch.duplicates_in_file, batch.duplicates_in_pool) == (5000, 5000, 0, 0)
    assert CardKey.objects.filter(product=product).count() == 5000
    assert CardKey.objects.filter(product=product).values("blind_index").distinct().count() == 5000


def _listener_count() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        return cursor.fetchone()[0]


@pytest.mark.redis
def test_an_order_paid_while_no_worker_runs_is_delivered_as_soon_as_one_starts(worker_env, tmp_path):
    product = ProductFactory()
    stock_product(product, 1)
    payment = _pending_payment(product)

    # Announced to nobody: no worker listens yet.
    assert (
        post_notification(
            Client(), sandbox_notification(out_trade_no=payment.out_trade_no, amount=payment.amount)
        ).content
        == b"success"
    )
    assert Order.objects.get(pk=payment.order_id).status == OrderStatus.PAID

    worker = start_worker(worker_env, tmp_path, name="late", concurrency=1)  # no beat, so no sweeper
    try:
        wait_until(
            lambda: Order.objects.get(pk=payment.order_id).status == OrderStatus.DELIVERED,
            timeout=30,
            message="delivery",
        )
    finally:
        worker.stop()


@pytest.mark.redis
def test_when_the_listening_worker_dies_another_worker_takes_over(worker_env, tmp_path):
    product = ProductFactory()
    stock_product(product, 2)
    first, second = _pending_payment(product), _pending_payment(product)
    leader = start_worker(worker_env, tmp_path, name="leader", concurrency=1)
    standby = None
    try:
        wait_until(lambda: _listener_count() == 1, timeout=30, message="the first worker to listen")
        standby = start_worker(worker_env, tmp_path, name="standby", concurrency=1)
        post_notification(Client(), sandbox_notification(out_trade_no=first.out_trade_no, amount=first.amount))
        wait_until(
            lambda: Order.objects.get(pk=first.order_id).status == OrderStatus.DELIVERED, timeout=30, message="order 1"
        )
        assert _listener_count() == 1  # one listener, however many workers

        leader.kill()
        post_notification(Client(), sandbox_notification(out_trade_no=second.out_trade_no, amount=second.amount))
        wait_until(
            lambda: Order.objects.get(pk=second.order_id).status == OrderStatus.DELIVERED, timeout=30, message="order 2"
        )
        assert _listener_count() == 1
    finally:
        leader.stop()
        if standby is not None:
            standby.stop()
    assert CardKey.objects.filter(status=CardKeyStatus.SOLD).count() == 2
