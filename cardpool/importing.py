"""The key import pipeline: read a supplier's file, preview it, then add its keys in chunks.

One pipeline behind the admin (a Celery task per phase, progress in the ImportBatch row) and
``manage.py import_keys`` (the same functions, in-process):

1. ``rows_parse`` reads TXT (one key, or a card number and a password split by a separator), CSV
   or XLSX (columns mapped by header name or number) in UTF-8, UTF-8 with BOM, UTF-16 or GBK /
   GB18030, and yields numbered rows; whole-file problems raise ImportRefused.
2. ``import_preview`` counts new keys, duplicates within the file, duplicates of unsold keys,
   keys already sold and invalid lines (masked), writing nothing.
3. ``import_commit`` encrypts and inserts chunk by chunk; each chunk's transaction also saves
   the counters and ``rows_done``, so an interrupted import resumes where it stopped, and
   re-running a file adds no key twice (the pool's unique blind index decides).

CSV and XLSX are read with django-import-export's format classes (tablib, openpyxl), the same
the admin export uses.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from cardpool import tasks
from cardpool.crypto import NONCE_BYTES, keyring, secret_blind_index, secret_encrypt, secret_mask, secret_normalize
from cardpool.models import CardKey, CardKeyStatus, ImportBatch, ImportStatus, ImportUpload
from cardpool.signals import keys_added

logger = logging.getLogger(__name__)

IMPORT_CHUNK = 2000
UPLOAD_PIECE_BYTES = 1024 * 1024
PROBLEMS_KEPT = 200
FORMATS = ("text", "csv", "xlsx")
SEPARATORS = {"----": "----", "space": " ", "comma": ",", "tab": "\t"}
CANONICAL_SEPARATOR = "----"


class ImportRefused(ValueError):
    """The whole input is unusable (empty, binary, too large, wrong layout); nothing was imported."""


@dataclass(frozen=True)
class ImportLayout:
    """How to read a file. Columns are a header name or a 1-based number; blank means none."""

    format: str = "text"
    separator: str | None = None  # text: card number / password separator
    secret_column: str = "1"  # noqa: S105 - the column that holds the key, not a password
    password_column: str = ""
    expiry_column: str = ""
    header: bool = True  # csv / xlsx: the first row names the columns
    max_uses: int | None = 1  # 1: unique keys; N: reusable N times; None: reusable without cap
    expires_at: str = ""  # ISO datetime for keys without their own expiry

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ImportRefused(f"unknown format {self.format!r}: use one of {', '.join(FORMATS)}")
        if self.separator is not None and self.separator not in SEPARATORS:
            raise ImportRefused(f"unknown separator {self.separator!r}: use one of {', '.join(SEPARATORS)}")
        if self.max_uses is not None and self.max_uses < 1:
            raise ImportRefused("uses per key must be at least 1 (blank: no cap)")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImportLayout:
        return cls(**{key: value for key, value in data.items() if key in cls.__dataclass_fields__})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def layout_for_filename(name: str, **options) -> ImportLayout:
    """The layout for an uploaded file: its format from the extension (.csv, .xlsx, else text).
    A card number / password separator means lines of text, whatever the extension."""
    lowered = name.lower()
    fmt = "csv" if lowered.endswith(".csv") else "xlsx" if lowered.endswith(".xlsx") else "text"
    if options.get("separator"):
        fmt = "text"
    return ImportLayout(format=fmt, **options)


@dataclass(frozen=True)
class ParsedRow:
    line: int
    secret: str
    expires_at: datetime | None = None
    problem: str | None = None


@dataclass
class ImportReport:
    """What an import did (or would do). Holds no plaintext: problems are (line, reason, masked)."""

    batch_id: int | None = None
    lines_total: int = 0
    added: int = 0
    duplicates_in_file: int = 0
    duplicates_in_pool: int = 0
    duplicates_sold: int = 0
    invalid_count: int = 0
    problems: list[tuple[int, str, str]] = field(default_factory=list)

    def problem_add(self, row: ParsedRow) -> None:
        self.invalid_count += 1
        if len(self.problems) < PROBLEMS_KEPT:
            self.problems.append((row.line, row.problem or "", secret_mask(row.secret)))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- Reading ---------------------------------------------------------------------------------


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
        head = text[:4096]
        if "\x00" in text or sum(ord(ch) < 9 for ch in head) > len(head) / 10:
            raise ImportRefused("the file looks binary, not text")
        return text
    raise ImportRefused("the file is neither UTF-8, UTF-16 nor GB18030 text")


def secret_problem(secret: str) -> str | None:
    """Why a key cannot be stored as it is (too long, control characters), or None. Imports
    refuse a whole file over a long line first (_length_check); staff-typed keys get this reason."""
    if len(secret) > settings.CARDPOOL_IMPORT_MAX_LINE_LENGTH:
        return f"longer than {settings.CARDPOOL_IMPORT_MAX_LINE_LENGTH} characters"
    if any(ord(ch) < 32 and ch != "\t" for ch in secret):
        return "contains control characters"
    return None


def _length_check(line: int, secret: str) -> None:
    limit = settings.CARDPOOL_IMPORT_MAX_LINE_LENGTH
    if len(secret) > limit:
        raise ImportRefused(f"line {line} is longer than {limit} characters: is this the right file?")


def _raw_check(raw: bytes) -> None:
    """Refuse a file over the size limit or with nothing in it, before reading it."""
    if len(raw) > settings.CARDPOOL_IMPORT_MAX_BYTES:
        raise ImportRefused(f"the file is larger than the import limit ({settings.CARDPOOL_IMPORT_MAX_BYTES} bytes)")
    if not raw.strip():
        raise ImportRefused("no keys found: the input is empty")


def expiry_parse(value: Any) -> datetime | None:
    """An expiry cell: a datetime or date (XLSX), or text like 2027-12-31, 2027/12/31 23:59,
    2027年12月31日. A date alone means the end of that day in the shop's time zone. Raises
    ValueError for anything else."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, time(23, 59, 59))
    else:
        text = str(value).strip().replace("/", "-").replace(".", "-")
        text = text.replace("年", "-").replace("月", "-").replace("日", " ").strip()
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            parts = text.split("-")
            if len(parts) != 3:
                raise ValueError("expiry date not understood") from None
            try:
                moment = datetime(int(parts[0]), int(parts[1]), int(parts[2]), tzinfo=timezone.get_current_timezone())
            except ValueError:
                raise ValueError("expiry date not understood") from None
        if len(text) <= 10:
            moment = datetime.combine(moment.date(), time(23, 59, 59))
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return moment


def _default_expiry(layout: ImportLayout) -> datetime | None:
    return expiry_parse(layout.expires_at) if layout.expires_at else None


def _row_make(line: int, secret: str, expiry: Any, default_expiry: datetime | None, now: datetime) -> ParsedRow:
    _length_check(line, secret)
    problem = secret_problem(secret)
    try:
        expires_at = expiry_parse(expiry) or default_expiry
    except ValueError as exc:
        return ParsedRow(line, secret, None, str(exc))
    if expires_at is not None and expires_at <= now:
        problem = problem or "already expired"
    return ParsedRow(line, secret, expires_at, problem)


def _text_rows(text: str, layout: ImportLayout) -> Iterator[ParsedRow]:
    default_expiry, now = _default_expiry(layout), timezone.now()
    for number, raw_line in enumerate(io.StringIO(text), start=1):
        secret = secret_normalize(raw_line)
        if not secret:
            continue
        if layout.separator is None:
            yield _row_make(number, secret, None, default_expiry, now)
            continue
        _length_check(number, secret)
        parts = [part.strip() for part in secret.split(SEPARATORS[layout.separator]) if part.strip()]
        if len(parts) != 2:
            yield ParsedRow(
                number, secret, None, f"expected a card number and a password separated by {layout.separator!r}"
            )
            continue
        yield _row_make(number, CANONICAL_SEPARATOR.join(parts), None, default_expiry, now)


def _column_index(spec: str, headers: list[str], *, name: str) -> int | None:
    spec = spec.strip()
    if not spec:
        return None
    if spec.isdigit():
        if int(spec) < 1:
            raise ImportRefused(f"{name} column numbers start at 1")
        return int(spec) - 1
    normalized = [secret_normalize(str(h or "")) for h in headers]
    if secret_normalize(spec) in normalized:
        return normalized.index(secret_normalize(spec))
    shown = ", ".join(_header_shown(h) for h in normalized if h) or "none"
    raise ImportRefused(f"the file has no column {spec!r} for the {name}; its columns are: {shown}")


def _header_shown(header: str) -> str:
    """A header as error messages may show it: a long one may be a key (a file without a header
    row read as if it had one), so it is masked like one."""
    return header if len(header) <= 12 else secret_mask(header)


def _dataset_read(raw: bytes, layout: ImportLayout) -> tuple[list[str], Iterable[list[Any]], int]:
    """(headers, data rows, line number of the first data row) through django-import-export's
    format classes. Without a header row the first row is data and headers are empty."""
    from import_export.formats.base_formats import CSV, XLSX

    if layout.format == "xlsx":
        try:
            dataset = XLSX().create_dataset(raw)
        except Exception as exc:  # openpyxl raises many types for a broken or non-XLSX file
            raise ImportRefused("the file is not a readable .xlsx workbook") from exc
        headers = [("" if h is None else str(h)) for h in (dataset.headers or [])]
        rows: list[list[Any]] = [list(row) for row in dataset]
        if not layout.header:
            return [], [list(dataset.headers or []), *rows], 1
        return headers, rows, 2
    text = text_decode(raw)
    sample = text[:4096]
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=",\t;|").delimiter
    except csv.Error:
        delimiter = ","
    try:
        dataset = CSV().create_dataset(text, delimiter=delimiter, headers=layout.header)
    except Exception as exc:  # tablib: ragged rows and broken quoting
        # Not the parser's message: it may quote a row, and this text is stored and shown.
        raise ImportRefused("the CSV file could not be read (broken quoting or rows of different lengths)") from exc
    headers = [str(h or "") for h in (dataset.headers or [])] if layout.header else []
    return headers, [list(row) for row in dataset], 2 if layout.header else 1


def _cell(row: list[Any], index: int | None) -> Any:
    if index is None or index >= len(row):
        return None
    value = row[index]
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # Excel stores long card numbers as numbers
    return value


def _tabular_rows(raw: bytes, layout: ImportLayout) -> Iterator[ParsedRow]:
    headers, rows, first_line = _dataset_read(raw, layout)
    columns = {
        "key": _column_index(layout.secret_column or "1", headers, name="key"),
        "password": _column_index(layout.password_column, headers, name="password"),
        "expiry": _column_index(layout.expiry_column, headers, name="expiry"),
    }
    if headers:
        for name, index in columns.items():
            if index is not None and index >= len(headers):
                raise ImportRefused(f"the {name} column is number {index + 1}, but the file has {len(headers)} columns")
    default_expiry, now = _default_expiry(layout), timezone.now()
    for number, row in enumerate(rows, start=first_line):
        secret = secret_normalize(str(_cell(row, columns["key"]) or ""))
        password = (
            secret_normalize(str(_cell(row, columns["password"]) or "")) if columns["password"] is not None else ""
        )
        if not secret and not password:
            continue
        if columns["password"] is not None:
            if not secret or not password:
                yield ParsedRow(number, secret or password, None, "a card number or password cell is empty")
                continue
            secret = CANONICAL_SEPARATOR.join([secret, password])
        yield _row_make(number, secret, _cell(row, columns["expiry"]), default_expiry, now)


def rows_parse(raw: bytes, layout: ImportLayout) -> Iterator[ParsedRow]:
    """Numbered rows of a key file. Raises ImportRefused (before or while iterating) for an empty,
    binary or oversized file, a line over the length limit or a layout the file does not have."""
    _raw_check(raw)
    if layout.format == "text":
        text = text_decode(raw)
        del raw
        return _rows_checked(_text_rows(text, layout), layout)
    return _rows_checked(_tabular_rows(raw, layout), layout)


def _rows_checked(rows: Iterator[ParsedRow], layout: ImportLayout) -> Iterator[ParsedRow]:
    """Refuse a file with no row at all, or none in the chosen layout (the wrong file or the
    wrong separator / columns), once it is known."""
    seen = usable = 0
    for row in rows:
        seen += 1
        usable += row.problem is None
        yield row
    if not seen:
        raise ImportRefused("no keys found: the input is empty")
    if not usable and (layout.separator or layout.format != "text" and layout.password_column):
        raise ImportRefused("no line is in the chosen layout: check the separator or the columns")


# --- Dedupe ----------------------------------------------------------------------------------


def legacy_index_versions(product_id: int) -> list[int]:
    """Blind-index key versions other than the current one that keys of this product still carry
    (until rebuild_blind_index has run): new keys are checked against those indexes too."""
    ring = keyring()
    return [
        version
        for version in ring.index_keys
        if version != ring.index_version
        and CardKey.objects.filter(product_id=product_id, index_version=version).exists()
    ]


# One probe of the unique (product, blind_index) index per value. The LIMIT keeps PostgreSQL from
# flattening the subquery into a join it might plan as a scan of the whole product: during a big
# import the key table has no statistics yet and the planner guessed a bitmap scan of every key of
# the product per chunk (bench/import.py measures the import; docs/performance.md).
_PROBE_SQL = """
    SELECT v.idx, k.status, k.batch_id FROM unnest(%s::varchar[]) AS v(idx)
     CROSS JOIN LATERAL (SELECT status, batch_id FROM {table}
                          WHERE product_id = %s AND blind_index = v.idx {version} LIMIT 1) k
"""


def _index_probe(
    *, product_id: int, indexes: list[str], version: int | None = None
) -> list[tuple[str, str, int | None]]:
    """(blind index, status, batch id) of the pool's keys among ``indexes``."""
    if not indexes:
        return []
    return _pool_io().index_probe(product_id=product_id, indexes=indexes, version=version)


def _index_probe_portable(
    *, product_id: int, indexes: list[str], version: int | None
) -> list[tuple[str, str, int | None]]:
    rows = CardKey.objects.filter(product_id=product_id, blind_index__in=indexes)
    if version is not None:
        rows = rows.filter(index_version=version)
    return list(rows.values_list("blind_index", "status", "batch_id"))


def _index_probe_unnest(
    *, product_id: int, indexes: list[str], version: int | None
) -> list[tuple[str, str, int | None]]:
    sql = _PROBE_SQL.format(
        table=CardKey._meta.db_table, version="AND index_version = %s" if version is not None else ""
    )
    with connection.cursor() as cursor:
        params: list[Any] = [indexes, product_id] + ([version] if version is not None else [])
        cursor.execute(sql, params)
        return cursor.fetchall()


def pool_matches(*, product_id: int, secrets: dict[str, str], legacy: list[int]) -> dict[str, tuple[str, int | None]]:
    """{current blind index: (status, batch id)} of the keys among ``secrets`` (index → secret)
    that the pool already holds, under the current or a legacy index key."""
    found = {
        index: (status, batch_id)
        for index, status, batch_id in _index_probe(product_id=product_id, indexes=list(secrets))
    }
    for version in legacy:
        old = {secret_blind_index(secret=s, product_id=product_id, version=version): i for i, s in secrets.items()}
        for index, status, batch_id in _index_probe(product_id=product_id, indexes=list(old), version=version):
            found[old[index]] = (status, batch_id)
    return found


def _chunks(rows: Iterable[ParsedRow]) -> Iterator[list[ParsedRow]]:
    size = IMPORT_CHUNK
    chunk: list[ParsedRow] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _classify(report: ImportReport, status: str, batch_id: int | None, this_batch: int | None) -> None:
    if this_batch is not None and batch_id == this_batch:
        report.duplicates_in_file += 1  # an earlier chunk of this very file
    elif status == CardKeyStatus.AVAILABLE:
        report.duplicates_in_pool += 1
    else:
        report.duplicates_sold += 1


def import_preview(*, product, rows: Iterable[ParsedRow], progress=None) -> ImportReport:
    """Count what an import of ``rows`` would do, writing nothing; ``progress(lines)`` is called
    after each chunk. Raises ImportRefused."""
    report = ImportReport()
    seen: set[int] = set()  # 8 bytes of each blind index: a million keys in tens of MB
    legacy = legacy_index_versions(product.pk)
    for chunk in _chunks(rows):
        fresh: dict[str, str] = {}
        for row in chunk:
            report.lines_total += 1
            if row.problem:
                report.problem_add(row)
                continue
            index = secret_blind_index(secret=row.secret, product_id=product.pk)
            short = int(index[:16], 16)
            if short in seen:
                report.duplicates_in_file += 1
                continue
            seen.add(short)
            fresh[index] = row.secret
        matches = pool_matches(product_id=product.pk, secrets=fresh, legacy=legacy)
        for status, batch_id in matches.values():
            _classify(report, status, batch_id, None)
        report.added += len(fresh) - len(matches)
        if progress is not None:
            progress(report.lines_total)
    return report


# --- Writing ---------------------------------------------------------------------------------


def import_commit(*, batch: ImportBatch, rows: Iterable[ParsedRow], progress=None) -> ImportReport:
    """Add ``rows`` to ``batch.product``'s pool, chunk by chunk, resuming after ``batch.rows_done``.

    Each chunk is one transaction that inserts the new keys (skipping any the pool holds, sold
    ones included) and adds to the batch's counters and ``rows_done`` under the batch's row lock;
    a runner that finds ``rows_done`` moved by another runner stops. ``progress(rows_done)`` is
    called after each chunk. Returns the batch's totals.
    """
    product_id = batch.product_id
    layout = ImportLayout.from_dict(batch.layout)
    legacy = legacy_index_versions(product_id)
    insert_chunk = _pool_io().keys_insert
    done = batch.rows_done
    position = 0
    seen: set[int] = set()  # 8 bytes of each blind index seen in this file
    problems: list[tuple[int, str, str]] = []
    restock_sent = False
    for chunk in _chunks(rows):
        position += len(chunk)
        report = ImportReport()
        fresh: dict[str, ParsedRow] = {}
        for offset, row in enumerate(chunk):
            handled = position - len(chunk) + offset < done  # before an interruption
            if not handled:
                report.lines_total += 1
            if row.problem:
                if not handled:
                    report.problem_add(row)
                continue
            index = secret_blind_index(secret=row.secret, product_id=product_id)
            short = int(index[:16], 16)
            if short in seen:
                if not handled:
                    report.duplicates_in_file += 1
                continue
            seen.add(short)
            if not handled:
                fresh[index] = row
        if position <= done:
            continue
        with transaction.atomic():
            locked = ImportBatch.objects.select_for_update().get(pk=batch.pk)
            if locked.rows_done != done:
                logger.warning(
                    "import batch %s: another runner moved it to row %s; stopping", batch.pk, locked.rows_done
                )
                return _batch_report(locked, problems)
            if legacy:
                old = pool_matches(
                    product_id=product_id, secrets={i: r.secret for i, r in fresh.items()}, legacy=legacy
                )
                for index, (status, batch_id) in old.items():
                    _classify(report, status, batch_id, batch.pk)
                    del fresh[index]
            inserted = insert_chunk(product_id=product_id, batch_id=batch.pk, rows=fresh, max_uses=layout.max_uses)
            report.added = len(inserted)
            conflicts = [index for index in fresh if index not in inserted]
            for _index, status, batch_id in _index_probe(product_id=product_id, indexes=conflicts):
                _classify(report, status, batch_id, batch.pk)
            done = position
            _batch_add(locked, report, rows_done=done)
            problems.extend(report.problems[: PROBLEMS_KEPT - len(problems)])
            if inserted and not restock_sent:
                # Orders waiting in the exception queue for these keys get them, oldest first, as
                # soon as the first chunk is in (and again when the import finishes).
                keys_added.send(sender=ImportBatch, product_id=product_id, added=True, finished=False)
                restock_sent = True
        batch = locked
        if progress is not None:
            progress(done)
    return _batch_report(batch, problems)


def _batch_add(batch: ImportBatch, report: ImportReport, *, rows_done: int) -> None:
    batch.lines_total = max(batch.lines_total, rows_done)
    batch.added += report.added
    batch.duplicates_in_file += report.duplicates_in_file
    batch.duplicates_in_pool += report.duplicates_in_pool
    batch.duplicates_sold += report.duplicates_sold
    batch.invalid += report.invalid_count
    batch.rows_done = rows_done
    batch.save(
        update_fields=[
            "lines_total",
            "added",
            "duplicates_in_file",
            "duplicates_in_pool",
            "duplicates_sold",
            "invalid",
            "rows_done",
            "updated_at",
        ]
    )


def _batch_report(batch: ImportBatch, problems: list[tuple[int, str, str]]) -> ImportReport:
    return ImportReport(
        batch_id=batch.pk,
        lines_total=batch.lines_total,
        added=batch.added,
        duplicates_in_file=batch.duplicates_in_file,
        duplicates_in_pool=batch.duplicates_in_pool,
        duplicates_sold=batch.duplicates_sold,
        invalid_count=batch.invalid,
        problems=[tuple(p) for p in batch.preview.get("problems", [])] or problems,
    )


def _encrypted_rows(*, product_id: int, rows: dict[str, ParsedRow]):
    for index, row in rows.items():
        version, ciphertext = secret_encrypt(secret=row.secret, product_id=product_id)
        yield index, version, ciphertext, secret_mask(row.secret), row.expires_at


def _keys_bulk_create(*, product_id: int, batch_id: int, rows: dict[str, ParsedRow], max_uses: int | None) -> set[str]:
    """The blind indexes of the keys it added (not those the pool already held)."""
    existing = {index for index, _status, _batch in _index_probe(product_id=product_id, indexes=list(rows))}
    rows = {index: row for index, row in rows.items() if index not in existing}
    index_version = keyring().index_version
    keys = [
        CardKey(
            product_id=product_id,
            batch_id=batch_id,
            ciphertext=ciphertext,
            key_version=version,
            blind_index=index,
            index_version=index_version,
            mask=mask,
            expires_at=expires_at,
            max_uses=max_uses,
        )
        for index, version, ciphertext, mask, expires_at in _encrypted_rows(product_id=product_id, rows=rows)
    ]
    CardKey.objects.bulk_create(keys)  # SQLite: one writer at a time, nothing added since the probe
    return set(rows)


_COPY_STAGE_SQL = """
    CREATE TEMP TABLE IF NOT EXISTS cardkey_import_stage (
        blind_index varchar(64), key_version smallint, ciphertext bytea, mask varchar(32), expires_at timestamptz
    ) ON COMMIT DROP
"""
_COPY_INSERT_SQL = """
    INSERT INTO {table} (product_id, batch_id, ciphertext, key_version, blind_index, index_version, mask, status,
                         expires_at, max_uses, uses, created_at)
    SELECT %s, %s, ciphertext, key_version, blind_index, %s, mask, 'available', expires_at, %s, 0, now()
      FROM cardkey_import_stage
    ON CONFLICT (product_id, blind_index) DO NOTHING
    RETURNING blind_index
"""


def _copy_text(value: str) -> str:
    """Escape a value for COPY's text format."""
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _keys_copy(*, product_id: int, batch_id: int, rows: dict[str, ParsedRow], max_uses: int | None) -> set[str]:
    """PostgreSQL: COPY the encrypted chunk into a temporary table and insert it from there,
    skipping keys already in the pool (also those a concurrent import adds meanwhile). Returns
    the blind indexes it added. The ORM's bulk_create spent more time building SQL than
    encrypting (see bench/import.py)."""
    if not rows:
        return set()
    buffer = io.StringIO()
    for index, version, ciphertext, mask, expires_at in _encrypted_rows(product_id=product_id, rows=rows):
        expiry = expires_at.isoformat() if expires_at else "\\N"
        buffer.write(f"{index}\t{version}\t\\\\x{ciphertext.hex()}\t{_copy_text(mask)}\t{expiry}\n")
    buffer.seek(0)
    with connection.cursor() as cursor:
        cursor.execute(_COPY_STAGE_SQL)
        cursor.execute("TRUNCATE cardkey_import_stage")
        cursor.cursor.copy_expert(
            "COPY cardkey_import_stage (blind_index, key_version, ciphertext, mask, expires_at) FROM STDIN", buffer
        )
        cursor.execute(
            _COPY_INSERT_SQL.format(table=CardKey._meta.db_table),
            [product_id, batch_id, keyring().index_version, max_uses],
        )
        return {row[0] for row in cursor.fetchall()}


# --- The upload between preview and commit ---------------------------------------------------


def _piece_aad(batch_id: int, seq: int) -> bytes:
    return f"kameng:import:{batch_id}:{seq}".encode()


def import_upload_store(*, batch: ImportBatch, raw: bytes) -> None:
    """Keep an uploaded file for the batch's background phases, encrypted in 1 MB pieces."""
    ring = keyring()
    aead = AESGCM(ring.keys[ring.current_version])
    pieces = []
    for seq, start in enumerate(range(0, len(raw), UPLOAD_PIECE_BYTES)):
        nonce = os.urandom(NONCE_BYTES)
        sealed = aead.encrypt(nonce, raw[start : start + UPLOAD_PIECE_BYTES], _piece_aad(batch.pk, seq))
        pieces.append(ImportUpload(batch=batch, seq=seq, key_version=ring.current_version, data=nonce + sealed))
    ImportUpload.objects.bulk_create(pieces, batch_size=16)


def import_upload_load(*, batch: ImportBatch) -> bytes:
    ring = keyring()
    out = bytearray()
    for piece in ImportUpload.objects.filter(batch=batch).order_by("seq").iterator(chunk_size=4):
        data = bytes(piece.data)
        out += AESGCM(ring.keys[piece.key_version]).decrypt(
            data[:NONCE_BYTES], data[NONCE_BYTES:], _piece_aad(batch.pk, piece.seq)
        )
    return bytes(out)


# --- Batches ---------------------------------------------------------------------------------


def import_batch_create(
    *,
    product,
    raw: bytes,
    layout: ImportLayout,
    created_by=None,
    source_name: str = "",
    supplier: str = "",
    unit_cost=None,
    note: str = "",
) -> ImportBatch:
    """Start an admin import: the batch (checking the file) and its encrypted upload, with the
    preview task sent after commit. Raises ImportRefused for a file over the size limit or empty."""
    _raw_check(raw)
    with transaction.atomic():
        batch = ImportBatch.objects.create(
            product=product,
            created_by=created_by,
            source_name=source_name[:255],
            supplier=supplier[:100],
            unit_cost=unit_cost,
            note=note,
            status=ImportStatus.ANALYSING,
            layout=layout.as_dict(),
        )
        import_upload_store(batch=batch, raw=raw)
        tasks.import_batch_preview.delay_on_commit(batch.pk)
    return batch


def _batch_refuse(batch_id: int, reason: str) -> None:
    with transaction.atomic():
        ImportBatch.objects.filter(pk=batch_id).update(
            status=ImportStatus.REFUSED, error=reason[:2000], finished_at=timezone.now(), updated_at=timezone.now()
        )
        ImportUpload.objects.filter(batch_id=batch_id).delete()


def import_batch_preview(*, batch_id: int) -> str:
    """Background phase 1: count what the upload would add; the batch waits for confirmation."""
    batch = ImportBatch.objects.select_related("product").get(pk=batch_id)
    if batch.status != ImportStatus.ANALYSING:
        return batch.status
    try:
        raw = import_upload_load(batch=batch)
        report = import_preview(
            product=batch.product,
            rows=rows_parse(raw, ImportLayout.from_dict(batch.layout)),
            # Alive, for imports_resume: a preview of a huge file takes a while.
            progress=lambda lines: ImportBatch.objects.filter(pk=batch_id).update(updated_at=timezone.now()),
        )
    except ImportRefused as exc:
        _batch_refuse(batch_id, str(exc))
        return ImportStatus.REFUSED
    ImportBatch.objects.filter(pk=batch_id, status=ImportStatus.ANALYSING).update(
        status=ImportStatus.READY, preview=report.as_dict(), lines_total=report.lines_total, updated_at=timezone.now()
    )
    return ImportStatus.READY


def import_batch_confirm(*, batch_id: int) -> None:
    """The operator confirmed the preview: run the import in the background."""
    with transaction.atomic():
        if ImportBatch.objects.filter(pk=batch_id, status=ImportStatus.READY).update(
            status=ImportStatus.IMPORTING, updated_at=timezone.now()
        ):
            tasks.import_batch_commit.delay_on_commit(batch_id)


def import_batch_cancel(*, batch_id: int) -> bool:
    """Drop a previewed import that was not confirmed (and its upload)."""
    with transaction.atomic():
        cancelled = ImportBatch.objects.filter(
            pk=batch_id, status__in=[ImportStatus.READY, ImportStatus.ANALYSING]
        ).update(status=ImportStatus.CANCELLED, finished_at=timezone.now(), updated_at=timezone.now())
        if cancelled:
            ImportUpload.objects.filter(batch_id=batch_id).delete()
    return bool(cancelled)


def import_batch_commit(*, batch_id: int) -> str:
    """Background phase 2 (and resume): add the upload's keys chunk by chunk from ``rows_done``."""
    batch = ImportBatch.objects.select_related("product").get(pk=batch_id)
    if batch.status != ImportStatus.IMPORTING:
        return batch.status
    try:
        raw = import_upload_load(batch=batch)
        import_commit(batch=batch, rows=rows_parse(raw, ImportLayout.from_dict(batch.layout)))
    except ImportRefused as exc:
        _batch_refuse(batch_id, str(exc))
        return ImportStatus.REFUSED
    import_batch_finish(batch_id=batch_id)
    return ImportStatus.DONE


def import_batch_finish(*, batch_id: int) -> None:
    with transaction.atomic():
        batch = ImportBatch.objects.select_for_update().select_related("product").get(pk=batch_id)
        batch.status = ImportStatus.DONE
        batch.finished_at = timezone.now()
        batch.save(update_fields=["status", "finished_at", "updated_at"])
        ImportUpload.objects.filter(batch_id=batch_id).delete()
        keys_added.send(sender=ImportBatch, product_id=batch.product_id, added=bool(batch.added), finished=True)
    logger.info("import batch %s: added %d keys to product %s", batch.pk, batch.added, batch.product_id)


def imports_resume(*, stale_seconds: int = 120, batch_id: int | None = None) -> list[int]:
    """Re-send the task of every import that made no progress for ``stale_seconds`` (its worker
    died or its task was lost): the batch goes on from ``rows_done``. Run by beat; the admin's
    "resume" button passes one batch. A second runner of the same batch stops at its first chunk."""
    cutoff = timezone.now() - timedelta(seconds=stale_seconds)
    stale = ImportBatch.objects.filter(
        status__in=[ImportStatus.ANALYSING, ImportStatus.IMPORTING], updated_at__lte=cutoff
    )
    if batch_id is not None:
        stale = stale.filter(pk=batch_id)
    resumed = []
    for stale_id, status in stale.values_list("pk", "status"):
        ImportBatch.objects.filter(pk=stale_id).update(updated_at=timezone.now())
        task = tasks.import_batch_preview if status == ImportStatus.ANALYSING else tasks.import_batch_commit
        task.send_quietly(stale_id)
        resumed.append(stale_id)
    return resumed


def import_batch_progress(batch: ImportBatch, *, stale_seconds: int = 60) -> dict[str, Any]:
    """What the admin's progress bar shows, and whether the import looks stuck (resumable)."""
    total = batch.lines_total or batch.preview.get("lines_total") or 0
    running = batch.status in (ImportStatus.ANALYSING, ImportStatus.IMPORTING)
    return {
        "status": batch.status,
        "rows_done": batch.rows_done,
        "rows_total": total,
        "percent": 100 if batch.status == ImportStatus.DONE else (int(batch.rows_done * 100 / total) if total else 0),
        "added": batch.added,
        "stalled": running and batch.updated_at < timezone.now() - timedelta(seconds=stale_seconds),
    }


def cardkeys_import(
    *,
    product,
    raw: bytes,
    layout: ImportLayout,
    created_by=None,
    source_name: str = "",
    supplier: str = "",
    unit_cost=None,
    note: str = "",
    dry_run: bool = False,
    progress=None,
) -> ImportReport:
    """The whole pipeline in this process (the command, the demo seed, scripts): preview with
    ``dry_run``, else a batch committed chunk by chunk. Raises ImportRefused."""
    if dry_run:
        return import_preview(product=product, rows=rows_parse(raw, layout))
    for _row in rows_parse(raw, layout):
        pass  # refuse a bad file (an overlong line, the wrong layout) before writing anything
    rows = rows_parse(raw, layout)
    batch = ImportBatch.objects.create(
        product=product,
        created_by=created_by,
        source_name=source_name[:255],
        supplier=supplier[:100],
        unit_cost=unit_cost,
        note=note,
        status=ImportStatus.IMPORTING,
        layout=layout.as_dict(),
    )
    report = import_commit(batch=batch, rows=rows, progress=progress)
    if report.problems:
        ImportBatch.objects.filter(pk=batch.pk).update(preview={"problems": report.problems})
    import_batch_finish(batch_id=batch.pk)
    return report


def cardkeys_import_text(
    *,
    product,
    text: str,
    created_by=None,
    source_name: str = "",
    separator: str | None = None,
    supplier: str = "",
    dry_run: bool = False,
    max_uses: int | None = 1,
) -> ImportReport:
    """Import pasted text, one key (or card number + separator + password) per line."""
    if "\x00" in text:
        raise ImportRefused("the file looks binary, not text")
    layout = ImportLayout(format="text", separator=separator, max_uses=max_uses)
    return cardkeys_import(
        product=product,
        raw=text.encode("utf-8"),
        layout=layout,
        created_by=created_by,
        source_name=source_name,
        supplier=supplier,
        dry_run=dry_run,
    )


@dataclass(frozen=True)
class _PoolIO:
    """How a chunk's keys are probed and written: PostgreSQL probes an array of indexes in one
    statement and writes with COPY; elsewhere the ORM does both."""

    index_probe: Any
    keys_insert: Any


_POSTGRES_POOL_IO = _PoolIO(index_probe=_index_probe_unnest, keys_insert=_keys_copy)
_PORTABLE_POOL_IO = _PoolIO(index_probe=_index_probe_portable, keys_insert=_keys_bulk_create)


def _pool_io() -> _PoolIO:
    # The one place where an import differs between the databases.
    return _POSTGRES_POOL_IO if connection.vendor == "postgresql" else _PORTABLE_POOL_IO
