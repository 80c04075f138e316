"""Catalog and orders. Order status changes only in ``shop.services``."""

from __future__ import annotations

from decimal import Decimal

from django.core.cache import cache
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from shop.events import event_has_handlers
from shop.order_tokens import order_access_token

# The cached shop settings row (shop.selectors.shop_settings); a save drops it.
SHOP_SETTINGS_CACHE_KEY = "shop:settings:v1"


class Category(models.Model):
    name = models.CharField(_("name"), max_length=100)
    slug = models.SlugField(_("slug"), unique=True)
    sort_order = models.PositiveIntegerField(_("sort order"), default=0)
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        ordering = ["sort_order", "id"]
        verbose_name = _("category")
        verbose_name_plural = _("categories")

    def __str__(self) -> str:
        return self.name


class Product(models.Model):
    # Set by the storefront's reads (shop.selectors), not stored: what the page shows of its stock.
    stock: int
    stock_unlimited: bool

    category = models.ForeignKey(
        Category, on_delete=models.PROTECT, related_name="products", verbose_name=_("category")
    )
    name = models.CharField(_("name"), max_length=200)
    slug = models.SlugField(_("slug"), unique=True)
    description = models.TextField(_("description"), blank=True)
    price = models.DecimalField(
        _("price"), max_digits=10, decimal_places=2, validators=[MinValueValidator(Decimal("0.01"))]
    )
    is_active = models.BooleanField(_("active"), default=True)
    min_quantity = models.PositiveIntegerField(_("minimum per order"), default=1, validators=[MinValueValidator(1)])
    max_quantity = models.PositiveIntegerField(_("maximum per order"), default=10, validators=[MinValueValidator(1)])
    low_stock_threshold = models.PositiveIntegerField(_("low-stock threshold"), default=5)
    usage_instructions = models.TextField(_("usage instructions"), blank=True, help_text=_("Shown with the keys."))
    # Optional per-product delivery email, in Django template syntax; empty fields use the default.
    # Variables: content.order_number, content.product_name, content.quantity, content.keys (each
    # with .secret and .expires_at), content.usage_instructions, content.order_url.
    email_subject = models.CharField(_("email subject template"), max_length=200, blank=True)
    email_text = models.TextField(_("email text template"), blank=True)
    email_html = models.TextField(_("email HTML template"), blank=True)
    delivery_delay_minutes = models.PositiveIntegerField(
        _("deliver after (minutes)"), default=0, help_text=_("Delay delivery this long after payment.")
    )
    delivery_max_tries = models.PositiveSmallIntegerField(
        _("delivery tries"),
        null=True,
        blank=True,
        help_text=_("Email/SMS tries before the exception queue; empty: the shop's default."),
    )
    delivery_retry_base_seconds = models.PositiveIntegerField(
        _("first retry after (seconds)"),
        null=True,
        blank=True,
        help_text=_("Doubles each try; empty: the shop's default."),
    )
    sort_order = models.PositiveIntegerField(_("sort order"), default=0)
    # Both drawn by shop.images from the operator's upload when the product is saved in admin
    # (re-encoded, metadata dropped): the product page's picture and the catalog card's 4:3 cut.
    image = models.ImageField(
        _("image"),
        upload_to="products/",
        blank=True,
        help_text=_("PNG, JPEG or WebP; shown on the catalog card and the product page."),
    )
    image_thumbnail = models.ImageField(upload_to="products/", blank=True, editable=False)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        ordering = ["sort_order", "id"]
        verbose_name = _("product")
        verbose_name_plural = _("products")
        constraints = [
            models.CheckConstraint(condition=models.Q(price__gt=0), name="product_price_positive"),
            models.CheckConstraint(
                condition=models.Q(max_quantity__gte=models.F("min_quantity")), name="product_quantity_range"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class OrderStatus(models.TextChoices):
    PENDING = "pending", _("Awaiting payment")
    PAID = "paid", _("Paid, delivering")
    DELIVERED = "delivered", _("Delivered")
    EXPIRED = "expired", _("Expired")
    CANCELLED = "cancelled", _("Cancelled")
    EXCEPTION = "exception", _("Needs attention")
    REFUNDED = "refunded", _("Refunded")


class ExceptionReason(models.TextChoices):
    OUT_OF_STOCK = "out_of_stock", _("Out of stock")
    AMOUNT_MISMATCH = "amount_mismatch", _("Amount mismatch")
    PAID_AFTER_EXPIRY = "paid_after_expiry", _("Paid after expiry")
    DELIVERY_FAILED = "delivery_failed", _("Delivery failed")
    DUPLICATE_PAYMENT = "duplicate_payment", _("Paid twice")
    DEFECTIVE_KEY = "defective_key", _("Defective key, no replacement in stock")
    HELD_FOR_REVIEW = "held_for_review", _("Held for review")


class ContactKind(models.TextChoices):
    EMAIL = "email", _("Email")
    MOBILE = "mobile", _("Mobile")


class Order(models.Model):
    # Unique through Meta.constraints, not unique=True: on PostgreSQL unique=True also builds a
    # varchar_pattern_ops index for LIKE 'prefix%' lookups, which nothing here makes, and every
    # index costs each order update (bench/notify.py, bench/deliver.py).
    number = models.CharField(_("order number"), max_length=32, editable=False)
    # The order page's link carries a secret token derived from the number (shop/order_tokens.py,
    # ``access_token`` below); only its sha256 is stored, so a dump of this table opens no page.
    access_token_hash = models.CharField(max_length=64, editable=False)
    # sha256 of an earlier link that still opens the page: the random token of an order made
    # before tokens were derived, or the token under the key before ``order_tokens_rekey``.
    # NULL, not "": the partial unique index covers only orders that have one.
    previous_token_hash = models.CharField(max_length=64, null=True, blank=True, editable=False)  # noqa: DJ001
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="orders", verbose_name=_("product"))
    quantity = models.PositiveIntegerField(_("quantity"), validators=[MinValueValidator(1)])
    unit_price = models.DecimalField(_("unit price"), max_digits=10, decimal_places=2)
    total = models.DecimalField(_("total"), max_digits=12, decimal_places=2)
    contact = models.CharField(_("contact"), max_length=254)
    contact_kind = models.CharField(_("contact kind"), max_length=10, choices=ContactKind.choices)
    query_password_hash = models.CharField(max_length=200, editable=False)
    # HMAC of the normalised contact and the query password (shop.services.order_lookup_digests):
    # a lookup by contact is one probe of this index, the same work for every miss. Empty on
    # orders created before it existed until they are once found by number.
    lookup_digest = models.CharField(max_length=64, blank=True, editable=False)
    client_ip = models.GenericIPAddressField(_("client IP"), null=True, blank=True)
    # The language the buyer ordered in: their delivery email, SMS and notices speak it.
    language = models.CharField(_("language"), max_length=16, blank=True)
    status = models.CharField(
        _("status"), max_length=16, choices=OrderStatus.choices, default=OrderStatus.PENDING
    )  # indexed only inside the partial indexes below
    exception_reason = models.CharField(
        _("exception reason"), max_length=32, choices=ExceptionReason.choices, blank=True
    )
    exception_note = models.TextField(_("exception note"), blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    expires_at = models.DateTimeField(_("expires at"))
    paid_at = models.DateTimeField(_("paid at"), null=True, blank=True)
    delivered_at = models.DateTimeField(_("delivered at"), null=True, blank=True)
    exception_at = models.DateTimeField(_("exception since"), null=True, blank=True)
    # Exception-queue work by staff.
    assignee = models.ForeignKey(
        "auth.User",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("assignee"),
        db_index=False,  # a partial index below: almost every order has none
    )
    staff_note = models.TextField(_("staff notes"), blank=True)
    # Bought by staff with the sandbox gateway to check a product end to end: no real money,
    # left out of sales figures.
    is_test = models.BooleanField(_("test order"), default=False)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("order")
        verbose_name_plural = _("orders")
        indexes = [
            # The work queues, each a partial index holding only the orders in its status: the
            # expiry task's pending orders, the sweeper's paid ones, the exception queue. An
            # order is in one of them at a time, so each write of an order adds an entry to at
            # most one, and they stay small however many orders were delivered.
            models.Index(fields=["expires_at"], condition=models.Q(status="pending"), name="order_pending_expires_at"),
            models.Index(fields=["paid_at"], condition=models.Q(status="paid"), name="order_paid_paid_at"),
            models.Index(fields=["exception_at"], condition=models.Q(status="exception"), name="order_exception_at"),
            models.Index(fields=["assignee"], condition=models.Q(assignee__isnull=False), name="order_assignee"),
            # A contact's orders (the resend limit per recipient), and with paid_at a contact's
            # orders paid since a time: the delivery hold rule counts those of the last hour
            # inside every delivery (delivery_hold_reason, shop.selectors.orders_paid_since_count).
            models.Index(fields=["contact", "paid_at"], name="order_contact_paid_at"),
            # The same rule's count by IP. Only paid orders with an IP: an unpaid order (most
            # are never paid) costs this index nothing when checkout creates it.
            models.Index(
                fields=["client_ip", "paid_at"],
                condition=models.Q(paid_at__isnull=False, client_ip__isnull=False),
                name="order_paid_client_ip_paid_at",
            ),
            models.Index(fields=["lookup_digest"], name="order_lookup_digest"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["number"], name="order_number_unique"),
            models.UniqueConstraint(fields=["access_token_hash"], name="order_access_token_hash_unique"),
            models.UniqueConstraint(
                fields=["previous_token_hash"],
                condition=models.Q(previous_token_hash__isnull=False),
                name="order_previous_token_hash_unique",
            ),
            models.CheckConstraint(condition=models.Q(quantity__gte=1), name="order_quantity_positive"),
        ]

    def __str__(self) -> str:
        return self.number

    @property
    def access_token(self) -> str:
        """The secret of this order's page link (``/order/<token>/``), computed, never stored."""
        return order_access_token(number=self.number)


class OrderEvent(models.Model):
    """One row per thing that happened to an order, written in the same transaction.

    The outbox, too: an event of a type with handlers (``shop.events``) is written with
    ``dispatched_at`` empty and handed to them after it commits (``shop.outbox``); every other
    event is written as dispatched."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="events")
    type = models.CharField(_("type"), max_length=64)
    message = models.TextField(_("message"), blank=True)
    actor = models.CharField(_("actor"), max_length=150, blank=True)
    created_at = models.DateTimeField(_("time"), auto_now_add=True)
    dispatched_at = models.DateTimeField(_("handled"), null=True, blank=True, default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name = _("order event")
        verbose_name_plural = _("order events")
        indexes = [
            # The outbox: the few events still waiting for their handlers, by order and by age.
            models.Index(
                fields=["order"], name="orderevent_undispatched", condition=models.Q(dispatched_at__isnull=True)
            ),
            models.Index(
                fields=["created_at"],
                name="orderevent_undispatched_age",
                condition=models.Q(dispatched_at__isnull=True),
            ),
            # The resend limit per recipient counts the last hour's resends of a contact's
            # orders: through this index it reads the shop's resends of that hour (few) instead
            # of every event of a buyer who placed thousands of orders. Other events skip it.
            models.Index(
                fields=["created_at"], condition=models.Q(type="delivery.resend"), name="orderevent_resend_created_at"
            ),
        ]

    def __str__(self) -> str:
        return self.type

    def save(self, *args, **kwargs) -> None:
        if self._state.adding and event_has_handlers(self.type):
            self.dispatched_at = None  # the outbox sweeper hands it to its handlers
        super().save(*args, **kwargs)


class EventReceipt(models.Model):
    """That a handler ran for an outbox event (``shop.outbox``): one row per event and handler,
    so a handler that already ran is not run again when its event is dispatched once more."""

    event = models.ForeignKey(OrderEvent, on_delete=models.CASCADE, related_name="receipts")
    handler = models.CharField(_("handler"), max_length=100)
    ran_at = models.DateTimeField(_("ran at"), default=timezone.now)

    class Meta:
        verbose_name = _("event receipt")
        verbose_name_plural = _("event receipts")
        constraints = [models.UniqueConstraint(fields=["event", "handler"], name="eventreceipt_once")]

    def __str__(self) -> str:
        return f"{self.handler} #{self.event_id}"


class ExceptionOrder(Order):
    """The exception queue: paid orders that need a person. Same rows as Order."""

    class Meta:
        proxy = True
        verbose_name = _("exception queue entry")
        verbose_name_plural = _("exception queue")


class ShopSettings(models.Model):
    """The shop's face, edited by the operator in admin: one row (pk 1), read through
    ``shop.selectors.shop_settings`` (cached; a save clears the cache)."""

    SINGLETON_PK = 1

    name = models.CharField(_("shop name"), max_length=60, blank=True, help_text=_("Empty: “Kameng card shop”."))
    logo = models.ImageField(_("logo"), upload_to="shop/", blank=True)
    favicon = models.ImageField(_("favicon"), upload_to="shop/", blank=True)
    footer_text = models.CharField(_("footer text"), max_length=300, blank=True)
    support_qq = models.CharField(_("support QQ"), max_length=20, blank=True)
    support_wechat = models.CharField(_("support WeChat"), max_length=40, blank=True)
    support_telegram = models.CharField(_("support Telegram"), max_length=40, blank=True)
    support_email = models.EmailField(_("support email"), blank=True)
    notice = models.TextField(
        _("notice banner (公告)"), blank=True, help_text=_("Markdown; shown on every storefront page.")
    )
    notice_starts_at = models.DateTimeField(_("notice from"), null=True, blank=True)
    notice_ends_at = models.DateTimeField(_("notice until"), null=True, blank=True)
    order_note = models.TextField(
        _("note after purchase"), blank=True, help_text=_("Markdown; shown on the order page with the keys.")
    )
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("shop settings")
        verbose_name_plural = _("shop settings")

    def __str__(self) -> str:
        return str(self.name or _("Shop settings"))

    def save(self, *args, **kwargs):
        self.pk = self.SINGLETON_PK
        super().save(*args, **kwargs)
        cache.delete(SHOP_SETTINGS_CACHE_KEY)

    def notice_showing(self, *, now) -> bool:
        """Whether the notice banner is up at ``now``: it has text and ``now`` is inside its
        schedule (an empty end means until further notice)."""
        return (
            bool(self.notice.strip())
            and (self.notice_starts_at is None or self.notice_starts_at <= now)
            and (self.notice_ends_at is None or now < self.notice_ends_at)
        )
