"""Adding keys to the pool and taking them out of it."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.utils import timezone

from cardpool.crypto import secret_blind_index, secret_encrypt, secret_mask, secret_normalize
from cardpool.models import CardKey, CardKeyStatus, ImportBatch
from cardpool.selectors import product_has_stock

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


SEPARATORS = {"----": "----", "space": " ", "comma": ",", "tab": "\t"}
CANONICAL_SEPARATOR = "----"


def text_decode(raw: bytes) -> str:
    """Decode an uploaded key file: UTF-8 (with or without BOM), UTF-16 (BOM, or NUL-interleaved
    ASCII), else GBK/GB18030. Raises ImportRefused for anything that is not text."""
    sample = raw[:1024]
    pairs = max(len(sample) // 2, 1)
    # UTF-16 without a BOM: ASCII characters (digits, dashes, line ends) leave NULs on one side
    # of each byte pair only; binary files have them everywhere.
    odd_nuls, even_nuls = sample[1::2].count(0), sample[0::2].count(0)
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        candidates = ["utf-16"]
    elif odd_nuls > pairs * 0.2 and even_nuls * 4 < odd_nuls:
        candidates = ["utf-16-le"]
    elif even_nuls > pairs * 0.2 and odd_nuls * 4 < even_nuls:
        candidates = ["utf-16-be"]
    else:
        candidates = ["utf-8-sig", "gb18030"]
    for encoding in candidates:
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError:
            continue
        if "\x00" in text or any(ord(ch) < 9 for ch in text[:4096]):
            raise ImportRefused("the file looks binary, not text")
        return text
    raise ImportRefused("the file is neither UTF-8, UTF-16 nor GB18030 text")


def _line_secret(line: str, separator: str | None) -> tuple[str, str | None]:
    """(the key as stored, problem). With a separator the line must hold a card number and a
    password, stored as NUMBER----PASSWORD."""
    secret = secret_normalize(line)
    if not secret or separator is None:
        return secret, None
    parts = [part.strip() for part in secret.split(SEPARATORS[separator]) if part.strip()]
    if len(parts) != 2:
        return secret, f"expected a card number and a password separated by {separator!r}"
    return CANONICAL_SEPARATOR.join(parts), None


def cardkeys_import_text(
    *, product, text: str, created_by=None, source_name: str = "", separator: str | None = None,
    supplier: str = "", dry_run: bool = False,
) -> ImportReport:
    """Add one key per line of ``text`` to ``product``'s pool, encrypted; dedupe against the pool.

    Blank lines and surrounding whitespace are ignored. With ``separator`` each line is a card
    number and a password. Duplicates (within the text or of any key ever added to the product,
    sold ones included) are counted and skipped. ``dry_run`` reports without writing anything.
    Raises ImportRefused when there is nothing usable. Moves no money; adds available keys.
    """
    if "\x00" in text:
        raise ImportRefused("the file looks binary, not text")
    if separator is not None and separator not in SEPARATORS:
        raise ImportRefused(f"unknown separator {separator!r}: use one of {', '.join(SEPARATORS)}")
    report = ImportReport()
    seen: set[str] = set()
    candidates: list[tuple[str, str]] = []  # (blind index, normalized secret)
    for number, raw in enumerate(text.splitlines(), start=1):
        secret, problem = _line_secret(raw, separator)
        if not secret:
            continue
        report.lines_total += 1
        problem = problem or _line_problem(secret)
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
    if dry_run:
        for start in range(0, len(candidates), IMPORT_CHUNK):
            chunk = [index for index, _secret in candidates[start : start + IMPORT_CHUNK]]
            report.duplicates_in_pool += CardKey.objects.filter(product=product, blind_index__in=chunk).count()
        report.added = len(candidates) - report.duplicates_in_pool
        return report

    with transaction.atomic():
        batch = ImportBatch.objects.create(
            product=product, created_by=created_by, source_name=source_name[:255], supplier=supplier[:100]
        )
        insert_chunk = _keys_copy if connection.vendor == "postgresql" else _keys_bulk_create
        for start in range(0, len(candidates), IMPORT_CHUNK):
            insert_chunk(product_id=product.pk, batch_id=batch.pk, chunk=candidates[start : start + IMPORT_CHUNK])
        report.added = CardKey.objects.filter(batch=batch).count()
        report.duplicates_in_pool = len(candidates) - report.added
        batch.lines_total = report.lines_total
        batch.added = report.added
        batch.duplicates_in_file = report.duplicates_in_file
        batch.duplicates_in_pool = report.duplicates_in_pool
        batch.invalid = len(report.invalid)
        batch.save()
        report.batch_id = batch.pk
        from delivery.services import out_of_stock_orders_schedule, stock_alerts_resolve

        stock_alerts_resolve(product=product)
        if report.added:
            # Orders that waited in the exception queue for these keys get them, oldest first.
            out_of_stock_orders_schedule(product_id=product.pk)
    logger.info("imported %d keys into product %s (batch %s)", report.added, product.pk, batch.pk)
    return report


def _encrypted_rows(*, product_id: int, chunk: list[tuple[str, str]]):
    for index, secret in chunk:
        version, ciphertext = secret_encrypt(secret=secret, product_id=product_id)
        yield index, version, ciphertext, secret_mask(secret)


def _keys_bulk_create(*, product_id: int, batch_id: int, chunk: list[tuple[str, str]]) -> None:
    rows = [
        CardKey(product_id=product_id, batch_id=batch_id, ciphertext=ciphertext, key_version=version,
                blind_index=index, mask=mask)
        for index, version, ciphertext, mask in _encrypted_rows(product_id=product_id, chunk=chunk)
    ]
    # ignore_conflicts: keys already in the pool (or added by a concurrent import) are skipped.
    CardKey.objects.bulk_create(rows, ignore_conflicts=True)


_COPY_STAGE_SQL = """
    CREATE TEMP TABLE IF NOT EXISTS cardkey_import_stage (
        blind_index varchar(64), key_version smallint, ciphertext bytea, mask varchar(32)
    ) ON COMMIT DROP
"""
_COPY_INSERT_SQL = """
    INSERT INTO {table} (product_id, batch_id, ciphertext, key_version, blind_index, mask, status, created_at)
    SELECT %s, %s, ciphertext, key_version, blind_index, mask, 'available', now() FROM cardkey_import_stage
    ON CONFLICT (product_id, blind_index) DO NOTHING
"""


def _copy_text(value: str) -> str:
    """Escape a value for COPY's text format."""
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _keys_copy(*, product_id: int, batch_id: int, chunk: list[tuple[str, str]]) -> None:
    """PostgreSQL: COPY the encrypted chunk into a temporary table and insert it from there,
    skipping keys already in the pool. The ORM's bulk_create spent more time building SQL than
    encrypting (see bench/import.py)."""
    buffer = io.StringIO()
    for index, version, ciphertext, mask in _encrypted_rows(product_id=product_id, chunk=chunk):
        buffer.write(f"{index}\t{version}\t\\\\x{ciphertext.hex()}\t{_copy_text(mask)}\n")
    buffer.seek(0)
    with connection.cursor() as cursor:
        cursor.execute(_COPY_STAGE_SQL)
        cursor.execute("TRUNCATE cardkey_import_stage")
        cursor.cursor.copy_expert(
            "COPY cardkey_import_stage (blind_index, key_version, ciphertext, mask) FROM STDIN", buffer
        )
        cursor.execute(_COPY_INSERT_SQL.format(table=CardKey._meta.db_table), [product_id, batch_id])


class ReservationContended(Exception):
    """Enough keys exist but other transactions hold some of them right now. Transient: retry."""


class StockShortfall(Exception):
    """Fewer keys than the order's quantity could be taken. The caller's transaction must roll
    back: some keys may already be marked for the order inside it."""


_SELL_SQL = """
    UPDATE {table} SET status = %s, order_id = %s, sold_at = %s
     WHERE id IN (SELECT id FROM {table}
                   WHERE product_id = %s AND status = %s AND (expires_at IS NULL OR expires_at > %s)
                   ORDER BY expires_at ASC NULLS LAST, id ASC
                   LIMIT %s {lock})
"""


def cardkeys_sell_to_order(*, order, quantity: int | None = None) -> int:
    """Mark exactly ``quantity`` (default ``order.quantity``) sellable keys sold to ``order`` in
    the caller's transaction.

    One statement: UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED LIMIT n). SKIP LOCKED
    lets concurrent deliveries take different keys instead of queueing on the same rows; the
    partial index over available keys (product, expires_at, id) serves the ORDER BY … LIMIT n:
    soonest-expiring first, then oldest, never an expired key. Hand-written because it is the hottest statement of a flash
    sale. Raises StockShortfall.
    """
    wanted = order.quantity if quantity is None else quantity
    lock = "FOR UPDATE SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(
            _SELL_SQL.format(table=CardKey._meta.db_table, lock=lock),
            [CardKeyStatus.SOLD, order.pk, now, order.product_id, CardKeyStatus.AVAILABLE, now, wanted],
        )
        sold = cursor.rowcount
    if sold != wanted:
        raise StockShortfall(f"order {order.pk}: {sold} of {wanted} keys")
    return sold


def cardkeys_shortfall_is_contention(*, product_id: int, quantity: int) -> bool:
    """After a StockShortfall (and its rollback): True when the pool does hold ``quantity``
    sellable keys and the shortfall came from rows locked by concurrent deliveries, which may
    yet roll back. Then the delivery is retried instead of declared out of stock."""
    if not connection.features.has_select_for_update_skip_locked:
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
        problem = _line_problem(secret)
        if problem:
            raise ManualKeysRefused(problem)
    indexes = [secret_blind_index(secret=s, product_id=order.product_id) for s in normalized]
    if len(set(indexes)) != len(indexes):
        raise ManualKeysRefused("the same key twice")
    if CardKey.objects.filter(product_id=order.product_id, blind_index__in=indexes).exists():
        raise ManualKeysRefused("a key that is already in the pool")
    batch = ImportBatch.objects.create(
        product_id=order.product_id, created_by=created_by, source_name=batch_note[:255],
        lines_total=len(normalized), added=len(normalized),
    )
    now = timezone.now()
    rows = []
    for secret, index in zip(normalized, indexes):
        version, ciphertext = secret_encrypt(secret=secret, product_id=order.product_id)
        rows.append(CardKey(
            product_id=order.product_id, batch=batch, ciphertext=ciphertext, key_version=version, blind_index=index,
            mask=secret_mask(secret), status=CardKeyStatus.SOLD, order=order, sold_at=now,
        ))
    CardKey.objects.bulk_create(rows)
    return len(rows)


class RevealRefused(PermissionError):
    """The reveal or export is not allowed (no permission or no reason); nothing was shown."""


def cardkey_reveal(*, key_id: int, user, ip: str | None, reason: str) -> str:
    """Return one key's plaintext to a staff member with the reveal permission and a stated
    reason, writing the RevealLog row first in the same transaction. Raises RevealRefused."""
    from cardpool.crypto import secret_decrypt
    from cardpool.models import RevealKind, RevealLog

    if not user.has_perm("cardpool.reveal_cardkey"):
        raise RevealRefused("no permission to reveal keys")
    if not reason.strip():
        raise RevealRefused("a reason is required")
    with transaction.atomic():
        key = CardKey.objects.get(pk=key_id)
        RevealLog.objects.create(
            kind=RevealKind.REVEAL, user=user, username=user.get_username(), ip=ip, key=key,
            product_id=key.product_id, reason=reason.strip()[:2000],
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
    from cardpool.crypto import secret_decrypt
    from cardpool.models import RevealKind, RevealLog

    if not user.has_perm("cardpool.export_cardkey"):
        raise RevealRefused("no permission to export keys")
    if not reason.strip():
        raise RevealRefused("a reason is required")
    keys = CardKey.objects.filter(product_id=product_id, status=CardKeyStatus.AVAILABLE).order_by("id")
    if batch_id:
        keys = keys.filter(batch_id=batch_id)
    RevealLog.objects.create(
        kind=RevealKind.EXPORT, user=user, username=user.get_username(), ip=ip, product_id=product_id,
        key_count=keys.count(), reason=reason.strip()[:2000],
    )

    def rows():
        yield ["id", "key", "batch", "added_at"]
        for key in keys.iterator(chunk_size=2000):
            secret = secret_decrypt(ciphertext=key.ciphertext, key_version=key.key_version, product_id=key.product_id)
            yield [str(key.pk), spreadsheet_safe(secret), str(key.batch_id or ""), key.created_at.isoformat()]

    return rows()


ROTATE_CHUNK = 500


def cardkeys_rotate_chunk(*, after_id: int = 0) -> tuple[int, int]:
    """Re-encrypt up to ROTATE_CHUNK keys not yet under the current key version, in one short
    transaction, online. Returns (rows re-encrypted, last id seen; 0 when nothing was left).

    SKIP LOCKED: rows a delivery holds right now are left for a later pass, and deliveries skip
    the rows this holds, so sales go on. Only ciphertext and key_version change, guarded by the
    old version, so no key is ever lost or sold twice because of a rotation.
    """
    from cardpool.crypto import keyring, secret_decrypt

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
    from cardpool.crypto import keyring

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
    """Recompute every key's blind index with the current CARDPOOL_INDEX_KEY (after changing it).
    Run it with imports stopped: dedupe compares against the index being rebuilt. Returns how many."""
    from cardpool.crypto import secret_decrypt

    changed = 0
    last = 0
    while True:
        with transaction.atomic():
            rows = list(
                CardKey.objects.select_for_update().filter(pk__gt=last).order_by("pk")
                .only("pk", "product_id", "ciphertext", "key_version", "blind_index")[:ROTATE_CHUNK]
            )
            if not rows:
                return changed
            for row in rows:
                secret = secret_decrypt(ciphertext=row.ciphertext, key_version=row.key_version, product_id=row.product_id)
                row.blind_index = secret_blind_index(secret=secret, product_id=row.product_id)
            CardKey.objects.bulk_update(rows, ["blind_index"])
            changed += len(rows)
            last = rows[-1].pk


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
        ImportBatch.objects.filter(pk=batch_id).update(note=Concat(F("note"), Value(f"\nvoided {voided} unsold keys by {actor}")))
    logger.info("import batch %s: %d unsold keys voided by %s", batch_id, voided, actor)
    return voided
