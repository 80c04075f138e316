"""Outages of real components: the paid orders are delivered when they come back."""

from __future__ import annotations

import shutil
import socket
import subprocess

import pytest
import requests
from aiosmtpd.controller import Controller
from django.test import Client

from cardpool.models import CardKey
from delivery.models import DeliveryMessage
from payments.models import Payment
from payments.registry import gateway_get
from payments.services import payment_start
from shop.models import Order, OrderStatus
from tests.support.factories import OrderFactory, ProductFactory, stock_product
from tests.support.platforms import sandbox_notification
from tests.support.processes import (
    BIN,
    ServiceProcess,
    database_connections_cut,
    flush_test_broker,
    service_env,
    start_worker,
)
from tests.support.smtp_server import BlockingHandler, free_port
from tests.support.storefront import post_notification
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A private redis-server on its own port, so the test can stop and start it at will."""

    def __init__(self, tmp_path, port: int) -> None:
        self.port, self.tmp_path, self.process = port, tmp_path, None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                shutil.which("redis-server"),
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.tmp_path),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self._answers, timeout=10, message="redis-server to start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path, _free_port())
    server.start()
    yield server
    if server.process.poll() is None:
        server.stop()


def test_orders_paid_while_redis_is_down_are_delivered_after_it_returns(redis_server, tmp_path):
    product = ProductFactory()
    stock_product(product, 10)
    payments = []
    for _ in range(5):
        order = OrderFactory(product=product, contact="13800138000", contact_kind="mobile")
        payments.append(payment_start(order=order, gateway=gateway_get("sandbox"))[0])
    port = _free_port()
    env = service_env(
        tmp_path,
        CELERY_BROKER_URL=f"redis://127.0.0.1:{redis_server.port}/0",
        ALLOWED_HOSTS="127.0.0.1",
        DELIVERY_SWEEP_AFTER_SECONDS="1",
        DELIVERY_SWEEP_INTERVAL_SECONDS="1",
    )
    web = ServiceProcess(
        "web",
        [str(BIN / "gunicorn"), "kameng.wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
        env,
        tmp_path,
    )
    worker = start_worker(env, tmp_path, concurrency=2, beat=True)
    try:
        web.wait_for_log("Booting worker")
        redis_server.stop()

        for payment in payments:
            fields = sandbox_notification(out_trade_no=payment.out_trade_no, amount=payment.amount)
            answer = requests.post(f"http://127.0.0.1:{port}/payments/sandbox/notify/", data=fields, timeout=30)
            assert answer.text == "success"  # the payment is recorded whether or not Redis is there
        assert set(Order.objects.values_list("status", flat=True)) == {OrderStatus.PAID}

        redis_server.start()

        wait_until(
            lambda: set(Order.objects.values_list("status", flat=True)) == {OrderStatus.DELIVERED},
            timeout=90,
            message="the sweeper to deliver every order paid during the outage",
        )
    finally:
        worker.stop()
        web.stop()

    assert CardKey.objects.filter(status="sold").count() == 5
    assert len(set(CardKey.objects.filter(status="sold").values_list("order_id", flat=True))) == 5
    assert Payment.objects.filter(state="succeeded").count() == 5


def test_worker_killed_mid_send_sends_the_email_once_after_restart(tmp_path):
    handler = BlockingHandler()
    smtp = Controller(handler, hostname="127.0.0.1", port=free_port())
    smtp.start()
    product = ProductFactory()
    keys = stock_product(product, 2)
    order = OrderFactory(product=product, contact="buyer@example.com", contact_kind="email")
    payment = payment_start(order=order, gateway=gateway_get("sandbox"))[0]
    flush_test_broker()
    env = service_env(tmp_path, EMAIL_URL=f"smtp://127.0.0.1:{smtp.port}")
    worker = start_worker(env, tmp_path, name="doomed-sender", concurrency=1)
    try:
        assert (
            post_notification(
                Client(), sandbox_notification(out_trade_no=payment.out_trade_no, amount=payment.amount)
            ).content
            == b"success"
        )
        assert handler.waiting.wait(timeout=60), "the worker never reached the SMTP server"
        worker.kill()  # in the middle of the SMTP conversation
        handler.release.set()

        assert Order.objects.get(pk=order.pk).status == OrderStatus.DELIVERED  # the keys were committed before the send
        assert DeliveryMessage.objects.get(order=order).state == "sending"

        restarted = {**env, "DELIVERY_SWEEP_AFTER_SECONDS": "1", "DELIVERY_SWEEP_INTERVAL_SECONDS": "1"}
        survivor = start_worker(restarted, tmp_path, name="survivor-sender", concurrency=1, beat=True)
        try:
            wait_until(
                lambda: DeliveryMessage.objects.get(order=order).state == "sent", timeout=60, message="the resend"
            )
        finally:
            survivor.stop()
    finally:
        worker.stop()
        smtp.stop()

    assert len(handler.received) == 1 and handler.received[0]["to"] == ["buyer@example.com"]
    message = DeliveryMessage.objects.get(order=order)
    assert list(message.attempts.values_list("state", flat=True)) == ["failed", "sent"]
    assert message.attempts.first().error == "the worker stopped during the send"
    assert CardKey.objects.filter(order=order).count() == 1 and len(keys) == 2


def test_a_worker_whose_database_connection_was_cut_delivers_the_next_order(tmp_path):
    product = ProductFactory()
    stock_product(product, 2)
    orders = [OrderFactory(product=product, contact="13800138000", contact_kind="mobile") for _ in range(2)]
    payments = [payment_start(order=o, gateway=gateway_get("sandbox"))[0] for o in orders]
    flush_test_broker()
    worker = start_worker(service_env(tmp_path), tmp_path, name="reconnecting", concurrency=1)
    try:
        post_notification(
            Client(), sandbox_notification(out_trade_no=payments[0].out_trade_no, amount=payments[0].amount)
        )
        wait_until(
            lambda: Order.objects.get(pk=orders[0].pk).status == OrderStatus.DELIVERED, timeout=60, message="order 1"
        )
        wait_until(
            lambda: DeliveryMessage.objects.filter(order=orders[0], state="sent").exists(),
            timeout=30,
            message="its SMS",
        )
        # The worker keeps its connection between tasks; cut it as a database restart would.
        assert database_connections_cut() >= 1

        post_notification(
            Client(), sandbox_notification(out_trade_no=payments[1].out_trade_no, amount=payments[1].amount)
        )
        wait_until(
            lambda: Order.objects.get(pk=orders[1].pk).status == OrderStatus.DELIVERED, timeout=60, message="order 2"
        )
    finally:
        worker.stop()
    assert CardKey.objects.filter(order=orders[1]).count() == 1
    # The dead connection was replaced before the task ran, not discovered by a failed first try.
    assert "Retry in" not in worker.log()
