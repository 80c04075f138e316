from __future__ import annotations

import secrets
from datetime import timedelta
from decimal import Decimal

import factory
from django.contrib.auth.hashers import make_password
from django.utils import timezone

from cardpool.importing import cardkeys_import_text
from shop.models import Category, Order, Product
from shop.order_tokens import order_access_token_hash
from shop.services import QUERY_PASSWORD_HASHER


class CategoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Category

    name = factory.Sequence(lambda n: f"分类 {n}")
    slug = factory.Sequence(lambda n: f"category-{n}")


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    category = factory.SubFactory(CategoryFactory)
    name = factory.Sequence(lambda n: f"点卡 {n}")
    slug = factory.Sequence(lambda n: f"product-{n}")
    price = Decimal("10.00")
    min_quantity = 1
    max_quantity = 10
    low_stock_threshold = 0
    usage_instructions = "在游戏内兑换"


class OrderFactory(factory.django.DjangoModelFactory):
    """A pending order as checkout creates it (use ``shop.services.order_create`` in HTTP tests)."""

    class Meta:
        model = Order

    number = factory.LazyFunction(lambda: "2026" + "".join(secrets.choice("0123456789") for _ in range(16)))
    access_token_hash = factory.LazyAttribute(lambda o: order_access_token_hash(number=o.number))
    product = factory.SubFactory(ProductFactory)
    quantity = 1
    unit_price = factory.LazyAttribute(lambda o: o.product.price)
    total = factory.LazyAttribute(lambda o: o.unit_price * o.quantity)
    contact = "buyer@example.com"
    contact_kind = "email"
    query_password_hash = factory.LazyFunction(lambda: make_password("secret-pw", hasher=QUERY_PASSWORD_HASHER))
    expires_at = factory.LazyFunction(lambda: timezone.now() + timedelta(minutes=15))


def stock_product(product: Product, count: int, prefix: str = "KEY") -> list[str]:
    """Import ``count`` fresh keys through the real import service; returns the plaintexts."""
    secrets_ = [f"{prefix}-{product.pk}-{i:05d}-{secrets.token_hex(4)}" for i in range(count)]
    if secrets_:
        cardkeys_import_text(product=product, text="\n".join(secrets_), source_name="test")
    return secrets_
