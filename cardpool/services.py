"""Adding keys to the pool and taking them out of it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from cardpool.crypto import secret_blind_index, secret_encrypt, secret_mask, secret_normalize
from cardpool.models import CardKey, CardKeyStatus, ImportBatch

logger = logging.getLogger(__name__)

IMPORT_CHUNK = 2000


@dataclass(frozen=True)
class InvalidLine:
    line_number: int
    reason: str


@dataclass
class ImportReport:
    """What an import did. Holds no plaintext: invalid lines are reported by number and reason."""

    batch_id: int | None = None
    lines_total: int = 0
    added: int = 0
    duplicates_in_file: int = 0
    duplicates_in_pool: int = 0
    invalid: list[InvalidLine] = field(default_factory=list)


class ImportRefused(ValueError):
    """The whole input is unusable (empty, binary, too large); nothing was imported."""


def _line_problem(secret: str) -> str | None:
    if len(secret) > settings.CARDPOOL_IMPORT_MAX_LINE_LENGTH:
        return f"longer than {settings.CARDPOOL_IMPORT_MAX_LINE_LENGTH} characters"
    if any(ord(ch) < 32 and ch != "\t" for ch in secret):
        return "contains control characters"
    return None


def cardkeys_import_text(*, product, text: str, created_by=None, source_name: str = "") -> ImportReport:
    """Add one key per line of ``text`` to ``product``'s pool, encrypted; dedupe against the pool.

    Blank lines and surrounding whitespace are ignored. Duplicates (within the text or of any
    key ever added to the product, sold ones included) are counted and skipped. Raises
    ImportRefused when there is nothing usable. Moves no money; adds available keys.
    """
    if "\x00" in text:
        raise ImportRefused("the file looks binary, not text")
    report = ImportReport()
    seen: set[str] = set()
    candidates: list[tuple[str, str]] = []  # (blind index, normalized secret)
    for number, raw in enumerate(text.splitlines(), start=1):
        secret = secret_normalize(raw)
        if not secret:
            continue
        report.lines_total += 1
        problem = _line_problem(secret)
        if problem:
            report.invalid.append(InvalidLine(number, problem))
            continue
        index = secret_blind_index(secret=secret, product_id=product.pk)
        if index in seen:
            report.duplicates_in_file += 1
            continue
        seen.add(index)
        candidates.append((index, secret))
    if report.lines_total == 0:
        raise ImportRefused("no keys found: the input is empty")

    with transaction.atomic():
        batch = ImportBatch.objects.create(product=product, created_by=created_by, source_name=source_name[:255])
        for start in range(0, len(candidates), IMPORT_CHUNK):
            chunk = candidates[start : start + IMPORT_CHUNK]
            existing = set(
                CardKey.objects.filter(product=product, blind_index__in=[i for i, _ in chunk]).values_list(
                    "blind_index", flat=True
                )
            )
            rows = []
            for index, secret in chunk:
                if index in existing:
                    report.duplicates_in_pool += 1
                    continue
                version, ciphertext = secret_encrypt(secret=secret, product_id=product.pk)
                rows.append(
                    CardKey(
                        product=product,
                        batch=batch,
                        ciphertext=ciphertext,
                        key_version=version,
                        blind_index=index,
                        mask=secret_mask(secret),
                    )
                )
            # ignore_conflicts: a concurrent import of the same keys must not fail this one.
            CardKey.objects.bulk_create(rows, ignore_conflicts=True)
        report.added = CardKey.objects.filter(batch=batch).count()
        report.duplicates_in_pool += len(candidates) - report.duplicates_in_pool - report.added
        batch.lines_total = report.lines_total
        batch.added = report.added
        batch.duplicates_in_file = report.duplicates_in_file
        batch.duplicates_in_pool = report.duplicates_in_pool
        batch.invalid = len(report.invalid)
        batch.save()
        report.batch_id = batch.pk
        from delivery.services import stock_alerts_resolve

        stock_alerts_resolve(product=product)
    logger.info("imported %d keys into product %s (batch %s)", report.added, product.pk, batch.pk)
    return report


# Soonest-expiring first, then oldest; the partial index cardkey_available_idx has this order.
RESERVATION_ORDER = (F("expires_at").asc(nulls_last=True), "id")


def sellable_keys(*, product_id: int, now) -> Q:
    return Q(product_id=product_id, status=CardKeyStatus.AVAILABLE) & (
        Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    )


class ReservationContended(Exception):
    """Enough keys exist but other transactions hold some of them right now. Transient: retry."""


def cardkeys_reserve_for_order(*, order) -> list[int] | None:
    """Sell exactly ``order.quantity`` available keys to ``order``, inside the caller's transaction.

    Returns the sold keys' ids, or None when the pool holds fewer than that (nothing is taken).
    Raises ReservationContended when the shortfall is only keys locked by concurrent
    transactions, which may yet roll back.
    """
    product_id, quantity = order.product_id, order.quantity
    # SKIP LOCKED: concurrent deliveries each take different keys instead of queueing on the
    # same rows. The partial index over available keys serves the ORDER BY id LIMIT n.
    now = timezone.now()
    picked = list(
        CardKey.objects.select_for_update(skip_locked=True)
        .filter(sellable_keys(product_id=product_id, now=now))
        .order_by(*RESERVATION_ORDER)
        .values_list("id", flat=True)[:quantity]
    )
    if len(picked) < quantity:
        if connection.features.has_select_for_update_skip_locked:
            # Rows skipped as locked still read as available here until their owners commit.
            visible = CardKey.objects.filter(sellable_keys(product_id=product_id, now=now)).order_by(*RESERVATION_ORDER)
            if visible[quantity - 1 : quantity].exists():
                raise ReservationContended(f"product {product_id}: keys are locked by concurrent deliveries")
        return None
    updated = CardKey.objects.filter(pk__in=picked, status=CardKeyStatus.AVAILABLE).update(
        status=CardKeyStatus.SOLD, order=order, sold_at=now
    )
    if updated != quantity:  # cannot happen under the row locks; never sell a partial set
        raise RuntimeError(f"order {order.pk}: reserved {updated} of {quantity} keys")
    return picked
