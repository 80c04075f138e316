"""The scratch database each benchmark creates afresh on the local PostgreSQL."""

from __future__ import annotations


def database_recreate(server: str, name: str) -> str:
    """Drop and create database ``name`` on ``server`` (postgres://user@host:port); returns its URL."""
    import psycopg2

    admin = psycopg2.connect(f"{server}/postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cursor.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    return f"{server}/{name}"


# A shop's history, in SQL (generate_series): ``orders`` orders created over the last
# HISTORY_DAYS days, oldest first, with their payments, events, messages and sold keys. The mix
# is that of a busy shop: most orders delivered, many never paid (expired), a few cancelled,
# refunded or in the exception queue; the last quarter hour's unpaid orders still pending, the
# last minutes' orders of products that delay delivery still paid. Buyers: orders / 5 contacts
# (half email, half mobile) and orders / 10 IPs, plus one reseller contact placing 1 % of all
# orders and one carrier-NAT address 3 %, and 2 % of orders without an IP (API orders). Staff
# work the exception queue: it holds 1.5 % of the last HISTORY_QUEUE_DAYS days' orders (among
# them the duplicate payments still to refund); older ones were resolved.
HISTORY_DAYS = 30
HISTORY_QUEUE_DAYS = 3
HISTORY_PRODUCTS = 20
HISTORY_DELAYED_PRODUCTS = 2  # of those, deliver 10 minutes after payment
HISTORY_DELAY_MINUTES = 10

_HISTORY_ORDERS_SQL = """
INSERT INTO shop_order (number, access_token_hash, product_id, quantity, unit_price, total, contact, contact_kind,
                        query_password_hash, lookup_digest, client_ip, language, status, exception_reason,
                        exception_note, created_at, expires_at, paid_at, delivered_at, exception_at, staff_note,
                        is_test, updated_at)
SELECT 'H' || lpad(i::text, 19, '0'), md5('token' || i) || md5('hash' || i), product_id, 1, 9.90, 9.90,
       CASE WHEN i %% 100 = 7 THEN 'reseller@example.com'
            WHEN c %% 2 = 0 THEN 'buyer' || c || '@example.com' ELSE '139' || lpad(c::text, 8, '0') END,
       CASE WHEN i %% 100 = 7 OR c %% 2 = 0 THEN 'email' ELSE 'mobile' END,
       '-', md5('lookup' || i) || md5('digest' || i),
       CASE WHEN i %% 50 = 3 THEN NULL WHEN i %% 33 = 5 THEN '100.64.0.1'::inet
            ELSE '10.0.0.0'::inet + (i::bigint * 16807) %% %(ips)s END,
       'zh-hans', status, reason, '', created, created + interval '15 minutes',
       CASE WHEN status IN ('paid', 'delivered', 'refunded', 'exception') THEN paid END,
       CASE WHEN status = 'delivered' OR reason IN ('delivery_failed', 'duplicate_payment')
            THEN paid + interval '1 second' END,
       CASE WHEN status IN ('exception', 'refunded') THEN paid + interval '2 seconds' END,
       '', false,
       CASE WHEN status IN ('expired', 'cancelled') THEN created + interval '15 minutes'
            WHEN status = 'pending' THEN created ELSE paid + interval '2 seconds' END
  FROM (
    SELECT i, created, paid, product_id, c,
           CASE WHEN kind = 'unpaid' AND created > now() - interval '15 minutes' THEN 'pending'
                WHEN kind = 'unpaid' THEN 'expired'
                WHEN paid > now() THEN 'pending'
                WHEN kind = 'delivered' AND delayed AND paid > now() - %(delay)s * interval '1 minute' THEN 'paid'
                ELSE kind END AS status,
           CASE WHEN kind = 'exception' AND paid <= now()
                THEN (ARRAY['out_of_stock', 'amount_mismatch', 'delivery_failed',
                                                      'held_for_review', 'duplicate_payment'])[1 + i %% 5]
                ELSE '' END AS reason
      FROM (
        SELECT i, created, created + (20 + r %% 100) * interval '1 second' AS paid, c,
               %(first_product)s + i %% %(products)s AS product_id, i %% %(products)s < %(delayed)s AS delayed,
               CASE WHEN r < 790 THEN 'delivered' WHEN r < 940 THEN 'unpaid' WHEN r < 970 THEN 'cancelled'
                    WHEN r < 985 THEN 'refunded'
                    WHEN created < now() - %(queue_days)s * interval '1 day' THEN 'delivered'
                    ELSE 'exception' END AS kind
          FROM (
            SELECT i, now() - %(days)s * interval '1 day' * (1 - i::float8 / %(orders)s) AS created,
                   (i::bigint * 7919) %% 1000 AS r, (i::bigint * 48271) %% %(contacts)s AS c
              FROM generate_series(1, %(orders)s) AS i
          ) base
      ) kinds
  ) orders;
"""

# One payment per order (its state follows the order's), a second one for the duplicate-payment
# exceptions (duplicate) and for one delivered order in 500 (paid twice, refunded long ago).
_HISTORY_PAYMENTS_SQL = """
INSERT INTO payments_payment (order_id, gateway, out_trade_no, amount, paid_amount, state, transaction_id, qr_content,
                              mobile, created_at, confirmed_at)
SELECT o.id, (ARRAY['alipay', 'wechatpay', 'epay'])[1 + o.id %% 3], o.number || upper(substr(md5(o.number), 1, 8)),
       o.total, CASE WHEN o.paid_at IS NOT NULL THEN o.total END,
       CASE o.status WHEN 'pending' THEN 'created' WHEN 'cancelled' THEN 'closed' WHEN 'refunded' THEN 'refunded'
                     WHEN 'expired' THEN CASE WHEN o.id %% 20 = 0 THEN 'created' ELSE 'closed' END
                     ELSE CASE WHEN o.exception_reason = 'amount_mismatch' THEN 'mismatched' ELSE 'succeeded' END END,
       CASE WHEN o.paid_at IS NOT NULL THEN 'T' || o.number ELSE '' END, '', o.id %% 2 = 0,
       o.created_at + interval '3 seconds', o.paid_at
  FROM shop_order o WHERE o.number LIKE 'H%%';

INSERT INTO payments_payment (order_id, gateway, out_trade_no, amount, paid_amount, state, transaction_id, qr_content,
                              mobile, created_at, confirmed_at)
SELECT o.id, 'alipay', o.number || 'DUP00000', o.total, o.total,
       CASE WHEN o.status = 'exception' THEN 'duplicate' ELSE 'refunded' END, 'D' || o.number, '', false,
       o.created_at + interval '10 seconds', o.paid_at + interval '5 seconds'
  FROM shop_order o
 WHERE o.number LIKE 'H%%'
   AND (o.exception_reason = 'duplicate_payment' OR (o.status = 'delivered' AND o.id %% 500 = 0));
"""

# created, then paid and delivered (or queued), and a buyer's resend on one delivered order in 200;
# every one long since handed to its handlers (the outbox is empty).
_HISTORY_EVENTS_SQL = """
INSERT INTO shop_orderevent (order_id, type, message, actor, created_at, dispatched_at)
SELECT o.id, e.type, '', e.actor, e.at, e.at
  FROM shop_order o
 CROSS JOIN LATERAL (VALUES
       ('shop.order.created', 'buyer', o.created_at),
       ('shop.order.paid', 'system', o.paid_at),
       ('shop.order.delivered', 'system', o.delivered_at),
       ('shop.order.exception.' || o.exception_reason, 'system', o.exception_at),
       ('shop.order.' || o.status, 'system',
        CASE WHEN o.status IN ('expired', 'cancelled', 'refunded') THEN o.updated_at END),
       ('delivery.resend', 'buyer', CASE WHEN o.id %% 200 = 0 THEN o.delivered_at + interval '10 minutes' END)
 ) AS e(type, actor, at)
 WHERE o.number LIKE 'H%%' AND e.at IS NOT NULL;
"""

_HISTORY_MESSAGES_SQL = """
INSERT INTO delivery_deliverymessage (order_id, channel, recipient, notice, state, tries, next_try_at, last_error,
                                      created_at, updated_at, sent_at)
SELECT o.id, CASE o.contact_kind WHEN 'email' THEN 'email' ELSE 'sms' END, o.contact, '',
       CASE WHEN o.exception_reason = 'delivery_failed' THEN 'failed' ELSE 'sent' END,
       CASE WHEN o.exception_reason = 'delivery_failed' THEN 3 ELSE 1 END, NULL, '',
       o.delivered_at, o.delivered_at,
       CASE WHEN o.exception_reason = 'delivery_failed' THEN NULL ELSE o.delivered_at END
  FROM shop_order o WHERE o.number LIKE 'H%%' AND o.delivered_at IS NOT NULL;

INSERT INTO delivery_deliveryattempt (message_id, number, state, provider_message_id, error, permanent, started_at,
                                      finished_at)
SELECT m.id, 1, CASE m.state WHEN 'sent' THEN 'sent' ELSE 'failed' END, '', '', false, m.created_at, m.updated_at
  FROM delivery_deliverymessage m;
"""

_HISTORY_KEYS_SQL = """
INSERT INTO cardpool_cardkey (product_id, ciphertext, key_version, blind_index, index_version, mask, status, order_id,
                              expires_at, max_uses, uses, created_at, sold_at)
SELECT o.product_id, '\\x00'::bytea, 1, md5('sold' || o.id) || md5('key' || o.id), 1, 'HI****01', 'sold', o.id,
       NULL, 1, 1, o.created_at - interval '1 day', o.delivered_at
  FROM shop_order o WHERE o.number LIKE 'H%%' AND o.delivered_at IS NOT NULL;

INSERT INTO cardpool_cardkey (product_id, ciphertext, key_version, blind_index, index_version, mask, status, order_id,
                              expires_at, max_uses, uses, created_at, sold_at)
SELECT %(first_product)s + i %% %(products)s, '\\x00'::bytea, 1, md5('free' || i) || md5('key' || i), 1, 'HI****02',
       'available', NULL, NULL, 1, 0, now(), NULL
  FROM generate_series(1, %(products)s * 1000) AS i;
"""


def order_history_fill(*, orders: int) -> None:
    """Fill the current Django database with a shop's history of ``orders`` orders (see
    _HISTORY_ORDERS_SQL), in SQL, then VACUUM ANALYZE it. Seconds per 100,000 orders."""
    from decimal import Decimal

    from django.db import connection

    from shop.models import Category, Product

    if orders <= 0:
        return
    category, _ = Category.objects.get_or_create(slug="history", defaults={"name": "history"})
    products = Product.objects.bulk_create(
        [
            Product(
                category=category,
                slug=f"history-{n}",
                name=f"history {n}",
                price=Decimal("9.90"),
                delivery_delay_minutes=HISTORY_DELAY_MINUTES if n < HISTORY_DELAYED_PRODUCTS else 0,
            )
            for n in range(HISTORY_PRODUCTS)
        ]
    )
    params = {
        "orders": orders,
        "days": HISTORY_DAYS,
        "contacts": max(orders // 5, 1),
        "ips": max(orders // 10, 1),
        "first_product": products[0].pk,
        "products": HISTORY_PRODUCTS,
        "delayed": HISTORY_DELAYED_PRODUCTS,
        "delay": HISTORY_DELAY_MINUTES,
        "queue_days": HISTORY_QUEUE_DAYS,
    }
    with connection.cursor() as cursor:
        for sql in (
            _HISTORY_ORDERS_SQL,
            _HISTORY_PAYMENTS_SQL,
            _HISTORY_EVENTS_SQL,
            _HISTORY_MESSAGES_SQL,
            _HISTORY_KEYS_SQL,
        ):
            cursor.execute(sql, params)
    if not connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
