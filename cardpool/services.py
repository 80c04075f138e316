"""Adding keys to the pool and taking them out of it."""

from __future__ import annotations

import logging
import secrets as token_source
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.utils import timezone

from cardpool.crypto import keyring, secret_blind_index, secret_decrypt, secret_encrypt, secret_mask, secret_normalize
from cardpool.importing import legacy_index_versions, pool_matches, secret_problem
from cardpool.models import CardKey, CardKeyStatus, ImportBatch, RevealKind, RevealLog
from cardpool.selectors import product_has_stock, sellable_keys_where, sellable_units_sql
from kameng.sql import Statement, lock_clause, row_locks, sql_literal, statements_run

logger = logging.getLogger(__name__)

ROTATE_CHUNK = 500


class ReservationContended(Exception):
    """Enough keys exist but other transactions hold some of them right now. Transient: retry."""


class StockShortfall(Exception):
    """Fewer keys than the order's quantity could be taken. The caller's transaction must roll
    back: some keys may already be marked for the order inside it."""


_SELLABLE = sellable_keys_where(product="= %s", now="%s")
_SELL_SQL = f"""
    UPDATE {{table}}
       SET status = {sql_literal(CardKeyStatus.SOLD)}, order_id = %(order_id)s, sold_at = %(now)s, uses = 1
     WHERE id IN (SELECT id FROM {{table}}
                   WHERE {sellable_keys_where(product="= %(product_id)s", now="%(now)s")}
                     AND max_uses = 1
                   ORDER BY expires_at ASC NULLS LAST, id ASC
                   LIMIT %(wanted)s {{lock}})
    RETURNING id
"""

# One use of a reusable key: the soonest-expiring one with uses left, locked (and waited for,
# not skipped: a shop may sell one generic code to everyone). It turns used_up with its last use.
_REUSE_SQL = f"""
    UPDATE {{table}} SET uses = uses + 1,
           status = CASE WHEN max_uses IS NOT NULL AND uses + 1 >= max_uses THEN %s ELSE status END
     WHERE id = (SELECT id FROM {{table}}
                  WHERE {_SELLABLE}
                    AND (max_uses IS NULL OR max_uses > 1)
                  ORDER BY expires_at ASC NULLS LAST, id ASC
                  LIMIT 1 {{lock}})
    RETURNING id
"""

# The low-stock probe after the sale, in the same batch: the units left among the keys the sale
# did not take (on PostgreSQL the batch's snapshot still shows them available).
_PROBE_AFTER_SALE_SQL = sellable_units_sql(
    product="= %(product_id)s", unlimited="%(probe)s", now="%(now)s", limit="%(probe)s", excluding="sold"
)


@dataclass(frozen=True)
class Sale:
    keys: int
    # Whether at least ``stock_probe`` units are left after the sale; None when not probed.
    stock_left: bool | None = None


def cardkeys_sell_to_order(*, order, quantity: int | None = None, stock_probe: int | None = None) -> Sale:
    """Mark exactly ``quantity`` (default ``order.quantity``) sellable keys sold to ``order`` in
    the caller's transaction.

    Unique keys: one statement, UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED LIMIT n).
    SKIP LOCKED lets concurrent deliveries take different keys instead of queueing on the same
    rows; the partial index over available keys (product, expires_at, id) serves the ORDER BY …
    LIMIT n: soonest-expiring first, then oldest, never an expired key. Hand-written because it
    is the hottest statement of a flash sale. When unique keys run short, reusable keys make up
    the rest, one use per unit, each use a sold row of its own (``reuse_of``) so an order's keys
    stay its own rows. ``stock_probe``: also tell whether that many units are left (the low-stock
    check), in the same batch. Raises StockShortfall.
    """
    wanted = order.quantity if quantity is None else quantity
    table = CardKey._meta.db_table
    now = timezone.now()
    sell = Statement(
        _SELL_SQL.format(table=table, lock=lock_clause(skip_locked=True)),
        {"order_id": order.pk, "now": now, "product_id": order.product_id, "wanted": wanted},
        name="sold",
    )
    if stock_probe is None:
        ((sold,),) = statements_run([sell, Statement("SELECT count(*) FROM sold")])
        stock_left = None
    else:
        probe = Statement(
            f"SELECT (SELECT count(*) FROM sold), ({_PROBE_AFTER_SALE_SQL.format(table=table)})", {"probe": stock_probe}
        )
        ((sold, units),) = statements_run([sell, probe])
        stock_left = units >= stock_probe
    if sold < wanted:
        stock_left = None  # reusable keys make up the rest: the probe no longer applies
    while sold < wanted and _reusable_key_use(order=order, now=connection.ops.adapt_datetimefield_value(now)):
        sold += 1
    if sold != wanted:
        raise StockShortfall(f"order {order.pk}: {sold} of {wanted} keys")
    return Sale(keys=sold, stock_left=stock_left)


def _reusable_key_use(*, order, now) -> bool:
    """Take one use of a reusable key for ``order``; False when none has uses left."""

    with connection.cursor() as cursor:
        cursor.execute(
            _REUSE_SQL.format(table=CardKey._meta.db_table, lock=lock_clause()),
            [CardKeyStatus.USED_UP, order.product_id, now],
        )
        row = cursor.fetchone()
    if row is None:
        return False
    shared = CardKey.objects.only("batch_id", "ciphertext", "key_version", "mask", "expires_at").get(pk=row[0])
    CardKey.objects.create(
        product_id=order.product_id,
        batch_id=shared.batch_id,
        ciphertext=shared.ciphertext,
        key_version=shared.key_version,
        # Not an HMAC of the secret (those are hex): unique per use, never matched by dedupe.
        blind_index="u" + token_source.token_hex(32)[:63],
        index_version=keyring().index_version,
        mask=shared.mask,
        status=CardKeyStatus.SOLD,
        order_id=order.pk,
        sold_at=timezone.now(),
        expires_at=shared.expires_at,
        max_uses=1,
        uses=1,
        reuse_of_id=shared.pk,
    )
    return True


def cardkeys_shortfall_is_contention(*, product_id: int, quantity: int) -> bool:
    """After a StockShortfall (and its rollback): True when the pool does hold ``quantity``
    sellable keys and the shortfall came from rows locked by concurrent deliveries, which may
    yet roll back. Then the delivery is retried instead of declared out of stock."""
    if not row_locks():
        return False  # no row locks to skip (SQLite): the shortfall was real
    # A plain read sees rows other transactions have locked but not yet sold.
    return product_has_stock(product_id=product_id, quantity=quantity)


class ManualKeysRefused(ValueError):
    """Keys typed by staff cannot be used as they are; the text says why. Nothing was stored."""


def cardkeys_add_sold_to_order(*, order, secrets: list[str], batch_note: str, created_by=None) -> int:
    """Store keys typed by staff, encrypted like any other, as sold to ``order`` (manual
    delivery), inside the caller's transaction. Raises ManualKeysRefused for an empty, too long
    or duplicate key (the pool's dedupe covers them too)."""
    normalized = [secret_normalize(s) for s in secrets if secret_normalize(s)]
    if not normalized:
        raise ManualKeysRefused("no key given")
    for secret in normalized:
        problem = secret_problem(secret)
        if problem:
            raise ManualKeysRefused(problem)
    indexes = [secret_blind_index(secret=s, product_id=order.product_id) for s in normalized]
    if len(set(indexes)) != len(indexes):
        raise ManualKeysRefused("the same key twice")
    legacy = legacy_index_versions(order.product_id)
    if pool_matches(product_id=order.product_id, secrets=dict(zip(indexes, normalized, strict=True)), legacy=legacy):
        raise ManualKeysRefused("a key that is already in the pool")
    batch = ImportBatch.objects.create(
        product_id=order.product_id,
        created_by=created_by,
        source_name=batch_note[:255],
        lines_total=len(normalized),
        added=len(normalized),
    )
    now = timezone.now()
    rows = []
    for secret, index in zip(normalized, indexes, strict=True):
        version, ciphertext = secret_encrypt(secret=secret, product_id=order.product_id)
        rows.append(
            CardKey(
                product_id=order.product_id,
                batch=batch,
                ciphertext=ciphertext,
                key_version=version,
                blind_index=index,
                index_version=keyring().index_version,
                uses=1,
                mask=secret_mask(secret),
                status=CardKeyStatus.SOLD,
                order=order,
                sold_at=now,
            )
        )
    CardKey.objects.bulk_create(rows)
    return len(rows)


class RevealRefused(PermissionError):
    """The reveal or export is not allowed (no permission or no reason); nothing was shown."""


def cardkey_reveal(*, key_id: int, user, ip: str | None, reason: str) -> str:
    """Return one key's plaintext to a staff member with the reveal permission and a stated
    reason, writing the RevealLog row first in the same transaction. Raises RevealRefused."""
    if not user.has_perm("cardpool.reveal_cardkey"):
        raise RevealRefused("no permission to reveal keys")
    if not reason.strip():
        raise RevealRefused("a reason is required")
    with transaction.atomic():
        key = CardKey.objects.get(pk=key_id)
        RevealLog.objects.create(
            kind=RevealKind.REVEAL,
            user=user,
            username=user.get_username(),
            ip=ip,
            key=key,
            product_id=key.product_id,
            reason=reason.strip()[:2000],
        )
        return secret_decrypt(ciphertext=key.ciphertext, key_version=key.key_version, product_id=key.product_id)


FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: str) -> str:
    """Neutralise spreadsheet formula injection: a cell starting with = + - @ (or tab/CR) is
    prefixed with a quote, so Excel/WPS show it as text instead of running it."""
    return "'" + value if value.startswith(FORMULA_PREFIXES) else value


def cardkeys_export_unsold(*, product_id: int, user, ip: str | None, reason: str, batch_id: int | None = None):
    """Yield CSV rows (id, key, batch, added) of a product's unsold keys for a staff member with
    the export permission and a reason; the RevealLog row is written before the first row.
    Raises RevealRefused."""
    if not user.has_perm("cardpool.export_cardkey"):
        raise RevealRefused("no permission to export keys")
    if not reason.strip():
        raise RevealRefused("a reason is required")
    keys = CardKey.objects.filter(product_id=product_id, status=CardKeyStatus.AVAILABLE).order_by("id")
    if batch_id:
        keys = keys.filter(batch_id=batch_id)
    RevealLog.objects.create(
        kind=RevealKind.EXPORT,
        user=user,
        username=user.get_username(),
        ip=ip,
        product_id=product_id,
        key_count=keys.count(),
        reason=reason.strip()[:2000],
    )

    def rows():
        yield ["id", "key", "batch", "added_at"]
        for key in keys.iterator(chunk_size=2000):
            secret = secret_decrypt(ciphertext=key.ciphertext, key_version=key.key_version, product_id=key.product_id)
            yield [str(key.pk), spreadsheet_safe(secret), str(key.batch_id or ""), key.created_at.isoformat()]

    return rows()


def cardkeys_rotate_chunk(*, after_id: int = 0) -> tuple[int, int]:
    """Re-encrypt up to ROTATE_CHUNK keys not yet under the current key version, in one short
    transaction, online. Returns (rows re-encrypted, last id seen; 0 when nothing was left).

    SKIP LOCKED: rows a delivery holds right now are left for a later pass, and deliveries skip
    the rows this holds, so sales go on. Only ciphertext and key_version change, guarded by the
    old version, so no key is ever lost or sold twice because of a rotation.
    """
    current = keyring().current_version
    with transaction.atomic():
        rows = list(
            CardKey.objects.select_for_update(skip_locked=True)
            .filter(pk__gt=after_id)
            .exclude(key_version=current)
            .order_by("pk")
            .only("pk", "product_id", "ciphertext", "key_version")[:ROTATE_CHUNK]
        )
        for row in rows:
            secret = secret_decrypt(ciphertext=row.ciphertext, key_version=row.key_version, product_id=row.product_id)
            row.key_version, row.ciphertext = secret_encrypt(secret=secret, product_id=row.product_id)
        CardKey.objects.bulk_update(rows, ["ciphertext", "key_version"])
    return len(rows), (rows[-1].pk if rows else 0)


def cardkeys_rotate() -> int:
    """Re-encrypt every key to the current CARDPOOL_KEYS version, chunk by chunk, until none is
    left on an old version (locked rows are retried on the next pass). Returns how many."""

    total = 0
    while True:
        after = 0
        while True:
            done, after = cardkeys_rotate_chunk(after_id=after)
            total += done
            if not after:
                break
        if not CardKey.objects.exclude(key_version=keyring().current_version).exists():
            return total


def cardkeys_rebuild_blind_index() -> int:
    """Recompute the blind index of every key still indexed under an older CARDPOOL_INDEX_KEY
    version, in short chunks, online: sales go on (rows a delivery holds are done on the next
    pass) and imports stay deduplicated meanwhile (they also check the older versions' indexes
    until none is left). Returns how many keys were re-indexed."""
    current = keyring().index_version
    changed = 0
    while CardKey.objects.exclude(index_version=current).exists():
        last = 0
        while True:
            with transaction.atomic():
                rows = list(
                    CardKey.objects.select_for_update(skip_locked=True)
                    .filter(pk__gt=last)
                    .exclude(index_version=current)
                    .order_by("pk")
                    .only("pk", "product_id", "ciphertext", "key_version", "blind_index")[:ROTATE_CHUNK]
                )
                if not rows:
                    break
                for row in rows:
                    row.index_version = current
                    if row.blind_index.startswith("u"):
                        continue  # one use of a reusable key: its index is a random token, not an HMAC
                    secret = secret_decrypt(
                        ciphertext=row.ciphertext, key_version=row.key_version, product_id=row.product_id
                    )
                    row.blind_index = secret_blind_index(secret=secret, product_id=row.product_id)
                CardKey.objects.bulk_update(rows, ["blind_index", "index_version"])
                changed += len(rows)
                last = rows[-1].pk
    return changed


def import_batch_void(*, batch_id: int, actor: str) -> int:
    """Void a batch's unsold keys (a supplier's bad batch); sold keys are untouched. Returns how
    many were voided. Keys a delivery holds right now are sold by it, not voided."""
    with transaction.atomic():
        ids = list(
            CardKey.objects.select_for_update(skip_locked=True)
            .filter(batch_id=batch_id, status=CardKeyStatus.AVAILABLE)
            .values_list("pk", flat=True)
        )
        voided = CardKey.objects.filter(pk__in=ids, status=CardKeyStatus.AVAILABLE).update(status=CardKeyStatus.VOID)
        ImportBatch.objects.filter(pk=batch_id).update(
            note=Concat(F("note"), Value(f"\nvoided {voided} unsold keys by {actor}"))
        )
    logger.info("import batch %s: %d unsold keys voided by %s", batch_id, voided, actor)
    return voided
