"""Seed the demo shop: 2 categories, 4 products, 50 keys each, and an admin account. Idempotent."""

from __future__ import annotations

import os
import secrets
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from cardpool.importing import cardkeys_import_text
from shop.models import Category, Product

DEMO = [
    (
        "game-cards",
        "游戏点卡 Game cards",
        [
            ("steam-50", "Steam 钱包充值卡 ¥50", Decimal("48.00"), "在 Steam 客户端 → 账户 → 充值钱包 中输入卡密。"),
            ("netease-100", "网易一卡通 100 点", Decimal("9.50"), "登录 pay.163.com，选择一卡通充值并输入卡号和密码。"),
        ],
    ),
    (
        "memberships",
        "会员卡 Memberships",
        [
            ("video-vip-month", "视频会员月卡", Decimal("15.00"), "打开 App → 我的 → 兑换码，粘贴卡密即可开通。"),
            ("music-vip-year", "音乐会员年卡", Decimal("88.00"), "在 App 设置中选择“兑换会员”，输入卡密。"),
        ],
    ),
]


class Command(BaseCommand):
    help = "Create the demo shop once (categories, products, keys, admin user)."

    def add_arguments(self, parser):
        parser.add_argument("--keys", type=int, default=50, help="keys per product")

    def handle(self, *args, keys: int, **options):
        with transaction.atomic():
            created = self._seed(keys)
        username = "admin"
        password = os.environ.get("DEMO_ADMIN_PASSWORD") or ""
        user_model = get_user_model()
        if not user_model.objects.filter(username=username).exists():
            password = password or secrets.token_urlsafe(9)
            user_model.objects.create_superuser(username=username, email="admin@localhost", password=password)
            self.stdout.write(f"created admin user {username!r}")
        self.stdout.write(self.style.SUCCESS("demo shop seeded" if created else "demo shop already seeded"))

    def _seed(self, keys: int) -> bool:
        if Category.objects.filter(slug=DEMO[0][0]).exists():
            return False
        for c_index, (c_slug, c_name, products) in enumerate(DEMO):
            category = Category.objects.create(slug=c_slug, name=c_name, sort_order=c_index)
            for p_index, (slug, name, price, instructions) in enumerate(products):
                product = Product.objects.create(
                    category=category,
                    slug=slug,
                    name=name,
                    price=price,
                    usage_instructions=instructions,
                    description="演示商品：付款后自动发卡。Demo product: the key arrives right after payment.",
                    sort_order=p_index,
                    max_quantity=5,
                    low_stock_threshold=5,
                )
                lines = "\n".join(f"{slug.upper()}-{secrets.token_hex(8).upper()}" for _ in range(keys))
                cardkeys_import_text(product=product, text=lines, source_name="demo seed")
        return True
