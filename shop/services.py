"""Order lifecycle: creation, expiry, cancellation, the exception queue.

Every status change is a move built by ``shop.transitions`` (the table of allowed moves is
there), run on a locked row with its ``OrderEvent`` in the same transaction. What a payment
does to an order is ``shop.transitions.order_payment``, run by ``payments.services``.
"""

from __future__ import annotations

import logging
import re
import secrets
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.hashers import check_password, make_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone, translation
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext as _

from kameng.sql import row_source, statements_run
from shop.events import ORDER_REFUNDED
from shop.fulfilment import fulfilment
from shop.lock_objects import order_lock
from shop.models import ContactKind, Order, OrderEvent, OrderStatus, Product
from shop.order_tokens import order_access_token_hash
from shop.outbox import order_events_announce
from shop.transitions import (  # noqa: F401 - ORDER_TRANSITIONS, InvalidTransition: part of this module's API
    ORDER_TRANSITIONS,
    InvalidTransition,
    OrderMove,
    order_duplicate_payment_move,
    order_exception_move,
    order_move,
)

logger = logging.getLogger(__name__)

S = OrderStatus
MOBILE_RE = re.compile(r"^1[3-9]\d{9}$")
QUERY_PASSWORD_HASHER = "pbkdf2_sha256_query"  # noqa: S105 - the name of a hasher, not a password


class OrderRejected(ValidationError):
    """Checkout refused: a clear, buyer-facing message."""


def order_transition(
    *, order: Order, to: str, event_type: str, message: str = "", actor: str = "system", reason: str = ""
) -> Order:
    """Move a locked order to ``to`` and write its event, in one round trip (every delivery
    passes here). ``reason``: for a move to the exception queue (``message`` is its note).
    Callers lock the row (``order_lock``) and re-check state first; the move itself
    (``shop.transitions.order_move``) enforces the table. Raises InvalidTransition."""
    at = timezone.now()
    return _order_move_run(
        order, order_move(order=order, to=to, event_type=event_type, message=message, actor=actor, reason=reason, at=at)
    )


def _order_move_run(order: Order, move: OrderMove) -> Order:
    statements_run([row_source("target", order_id=order.pk), *move.writes])
    return order_moves_applied(order=order, moves=[move])


def order_moves_applied(*, order: Order, moves: list[OrderMove] | tuple[OrderMove, ...]) -> Order:
    """After a batch holding ``moves`` of ``order`` ran: show them on the instance, and have
    their events dispatched after commit (``shop.outbox``)."""
    for move in moves:
        for name, value in move.changes.items():
            setattr(order, name, value)
    order_events_announce(order_id=order.pk, event_types=[move.event_type for move in moves])
    return order


def order_exception_enter(*, order: Order, reason: str, note: str = "", actor: str = "system") -> Order:
    """Put a locked order in the exception queue with a reason. Keys and money do not move."""
    return _order_move_run(
        order, order_exception_move(order=order, reason=reason, note=note, actor=actor, at=timezone.now())
    )


def contact_normalise(contact: str) -> tuple[str, str]:
    """A buyer's contact as orders store it (trimmed; an email lower-cased) and its ContactKind.
    Raises ValidationError."""
    contact = contact.strip()
    kind = contact_classify(contact)
    return (contact.lower() if kind == ContactKind.EMAIL else contact), kind


def contact_classify(contact: str) -> str:
    """Return the ContactKind of a buyer's contact, or raise ValidationError."""
    contact = contact.strip()
    if MOBILE_RE.match(contact):
        return ContactKind.MOBILE
    try:
        validate_email(contact)
    except ValidationError as exc:
        raise ValidationError(
            _("Enter an email address or an 11-digit mainland mobile number."), code="contact"
        ) from exc
    return ContactKind.EMAIL


def _order_number() -> str:
    # Date for support staff, then 12 random digits: not guessable, not enumerable.
    return timezone.localtime().strftime("%Y%m%d") + "".join(secrets.choice("0123456789") for _ in range(12))


def order_language(language: str | None = None) -> str:
    """One of settings.LANGUAGES for ``language`` (default: the active one, i.e. the request's),
    or "" when it is none of them."""
    language = (language or translation.get_language() or "").lower()
    return language if language in dict(settings.LANGUAGES) else ""


def order_create(
    *,
    product: Product,
    quantity: int,
    contact: str,
    query_password: str,
    client_ip: str | None,
    language: str | None = None,
) -> Order:
    """Create a pending order at the product's current price. Moves no keys and no money.
    ``language``: what the buyer's messages will speak (default: the request's active language).

    Raises OrderRejected when the product is inactive, the quantity is outside its limits or
    above the available stock.
    """
    if not product.is_active:
        raise OrderRejected(_("This product is not on sale."), code="inactive")
    if quantity < product.min_quantity or quantity > product.max_quantity:
        raise OrderRejected(
            _("Choose between %(min)d and %(max)d per order.")
            % {"min": product.min_quantity, "max": product.max_quantity},
            code="quantity",
        )
    if not fulfilment().units_available(product_id=product.pk, quantity=quantity):
        raise OrderRejected(_("Not enough stock for this quantity."), code="stock")
    contact, kind = contact_normalise(contact)
    unit_price: Decimal = product.price
    with transaction.atomic():
        number = _order_number()
        order = Order.objects.create(
            number=number,
            access_token_hash=order_access_token_hash(number=number),
            product=product,
            quantity=quantity,
            unit_price=unit_price,
            total=unit_price * quantity,
            contact=contact,
            contact_kind=kind,
            query_password_hash=make_password(query_password, hasher=QUERY_PASSWORD_HASHER),
            lookup_digest=order_lookup_digests(contact=contact, password=query_password)[0],
            client_ip=client_ip,
            language=order_language(language),
            expires_at=timezone.now() + timedelta(minutes=settings.ORDER_EXPIRE_MINUTES),
        )
        OrderEvent.objects.create(order=order, type="shop.order.created", actor="buyer")
    return order


def order_duplicate_payment_queue(*, order: Order, note: str) -> bool:
    """Queue a locked, delivered order that was paid twice, so staff refund the extra payment.

    An order still in flight (paid) or already in the queue is left alone; returns True if queued.
    """
    if order.status != S.DELIVERED:
        return False
    _order_move_run(order, order_duplicate_payment_move(order=order, note=note, at=timezone.now()))
    return True


def order_refunded(*, order_id: int, note: str, actor: str) -> Order:
    """After the platform confirmed a refund of the order's payment: exception → refunded."""
    order = order_lock(order_id)
    order_transition(order=order, to=S.REFUNDED, event_type=ORDER_REFUNDED, message=note, actor=actor)
    return order


def order_resolve(*, order_id: int, note: str, actor: str) -> Order:
    """Take a delivered order with keys back out of the exception queue (e.g. after its
    duplicate payment was refunded). Raises InvalidTransition from other states."""
    order = order_lock(order_id)
    if order.status != S.EXCEPTION:
        raise InvalidTransition(f"order {order.number} is not in the exception queue")
    return order_transition(order=order, to=S.DELIVERED, event_type="shop.order.resolved", message=note, actor=actor)


def order_expire(*, order_id: int) -> bool:
    """Expire an unpaid order whose time is up. Returns True if it expired it now."""
    with transaction.atomic(durable=True):
        order = order_lock(order_id)
        if order.status != S.PENDING or order.expires_at > timezone.now():
            return False
        order_transition(order=order, to=S.EXPIRED, event_type="shop.order.expired")
    return True


def order_mark_test(*, order: Order, gateway: str) -> None:
    """Staff test mode: the order is paid through a gateway closed to the public. It is marked so
    it stays out of sales figures; logged on the order."""
    Order.objects.filter(pk=order.pk).update(is_test=True)
    order.is_test = True
    OrderEvent.objects.create(order=order, type="shop.order.test_mode", message=gateway, actor="staff")


def order_cancel(*, order_id: int, actor: str = "buyer") -> bool:
    """The buyer gives up an unpaid order. Returns True if it was cancelled now. A payment that
    still arrives for it later lands in the exception queue (paid_after_expiry), never lost."""
    with transaction.atomic(durable=True):
        order = order_lock(order_id)
        if order.status != S.PENDING:
            return False
        order_transition(order=order, to=S.CANCELLED, event_type="shop.order.cancelled", actor=actor)
    return True


def order_check_query_password(*, order: Order, password: str) -> bool:
    return check_password(password, order.query_password_hash)


LOOKUP_DIGEST_SALT = "kameng.shop.order-lookup"


def order_lookup_digests(*, contact: str, password: str) -> tuple[str, ...]:
    """The keyed digests under which orders of a normalised ``contact`` with this query password
    are indexed: HMAC-SHA256 with a key derived from SECRET_KEY (the first, which new orders
    store), then from each of SECRET_KEY_FALLBACKS, so a rotated key still finds older orders.

    Keyed rather than a plain hash so a copy of the database alone cannot test guesses; fast
    rather than PBKDF2 because the per-IP and per-contact rate limits bound online guessing and
    the order's own PBKDF2 hash (``query_password_hash``) still guards lookups by number."""
    value = f"{contact}\x00{password}"
    secrets_ = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return tuple(
        salted_hmac(LOOKUP_DIGEST_SALT, value, secret=secret, algorithm="sha256").hexdigest() for secret in secrets_
    )


def order_lookup(*, number: str, password: str) -> Order | None:
    """Find an order by number and query password; None for either being wrong.

    Always hashes once, so an unknown number and a wrong password take the same time. An order
    from before contact lookup existed gets its lookup digest now (the password was just proven),
    so it can be found by contact from then on.
    """
    order = Order.objects.filter(number=number.strip()).first()
    if order is None:
        make_password(password, hasher=QUERY_PASSWORD_HASHER)
        return None
    if not order_check_query_password(order=order, password=password):
        return None
    if not order.lookup_digest:
        order.lookup_digest = order_lookup_digests(contact=order.contact, password=password)[0]
        Order.objects.filter(pk=order.pk, lookup_digest="").update(lookup_digest=order.lookup_digest)
    return order


def order_tokens_rekey(*, batch_size: int = 2000) -> int:
    """After ``ORDER_TOKEN_KEY`` (or ``SECRET_KEY`` while it is unset) changed: store the hash of
    every order's token under the new key, keeping the hash of its link under the old key in
    ``previous_token_hash`` (an order's older link, if it had one, stops working). Returns the
    number of orders changed; running it again changes none. Moves no keys and no money."""
    changed = 0
    batch: list[Order] = []
    rows = Order.objects.order_by("pk").values_list("pk", "number", "access_token_hash")
    for pk, number, stored in rows.iterator(chunk_size=batch_size):
        current = order_access_token_hash(number=number)
        if current != stored:
            batch.append(Order(pk=pk, access_token_hash=current, previous_token_hash=stored))
        if len(batch) == batch_size:
            changed += _order_token_hashes_write(batch)
            batch = []
    return changed + _order_token_hashes_write(batch)


def _order_token_hashes_write(batch: list[Order]) -> int:
    # Only the two hashes change, in one statement per batch: a request sees the old pair or the
    # new one, and the link it carries opens the page with either.
    if batch:
        Order.objects.bulk_update(batch, ["access_token_hash", "previous_token_hash"])
    return len(batch)


def order_exception_assign(*, order_id: int, assignee, note: str, actor: str) -> Order:
    """Staff take (or hand over) an exception-queue order and keep notes; logged on the order.

    Not durable: the admin's change form already runs inside a transaction."""
    with transaction.atomic():
        order = order_lock(order_id)
        changes = []
        if order.assignee_id != (assignee.pk if assignee else None):
            order.assignee = assignee
            changes.append(f"assigned to {assignee.get_username() if assignee else 'nobody'}")
        if note != order.staff_note:
            order.staff_note = note
            changes.append("notes updated")
        if changes:
            Order.objects.filter(pk=order.pk).update(assignee=assignee, staff_note=note)
            OrderEvent.objects.create(
                order=order, type="shop.order.exception.worked", message="; ".join(changes), actor=actor
            )
    return order


def order_exception_resolve(*, order_id: int, actor: str, note: str = "") -> Order:
    """Staff mark an exception-queue order as handled. Only an order that holds its keys can
    leave as delivered (keys are never taken back here); others need a delivery or a refund.
    Raises InvalidTransition."""
    with transaction.atomic(durable=True):
        order = order_lock(order_id)
        if order.status != S.EXCEPTION:
            raise InvalidTransition(f"order {order.number} is not in the exception queue")
        if not fulfilment().order_holds_goods(order_id=order.pk):
            raise InvalidTransition(f"order {order.number} has no keys: deliver or refund it instead")
        return order_transition(
            order=order,
            to=S.DELIVERED,
            event_type="shop.order.resolved",
            message=note or "resolved by staff",
            actor=actor,
        )
