"""Images uploaded in admin (shop.images): product pictures with their thumbnail, the shop's logo
and favicon; hostile files refused with a clear message, never a 500."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image

from shop.models import Product, ShopSettings
from tests.support.factories import CategoryFactory, ProductFactory, stock_product
from tests.support.images import SVG_WITH_SCRIPT, jpeg_upload, png_header_only, png_upload

pytestmark = pytest.mark.django_db


def product_form(product=None, **changes) -> dict:
    category = product.category if product else CategoryFactory()
    fields = {
        "category": category.pk,
        "name": product.name if product else "Steam 充值卡",
        "slug": product.slug if product else "steam",
        "price": "10.00",
        "sort_order": 0,
        "min_quantity": 1,
        "max_quantity": 10,
        "low_stock_threshold": 0,
        "delivery_delay_minutes": 0,
        "is_active": "on",
    }
    fields.update(changes)
    return fields


def truncated(data: bytes) -> bytes:
    return data[: len(data) * 2 // 3]  # the header reads, the pixels stop short


def stored(field) -> Image.Image:
    with field.storage.open(field.name, "rb") as f:
        image = Image.open(io.BytesIO(f.read()))
        image.load()
    return image


def test_product_image_upload_stores_an_upright_stripped_copy_and_a_card_thumbnail(admin_client):
    upload = jpeg_upload(size=(800, 400), orientation=6, gps=True)  # shows as 400 × 800, portrait

    response = admin_client.post(reverse("admin:shop_product_add"), product_form(image=upload))

    assert response.status_code == 302, response.content.decode()[:3000]
    product = Product.objects.get(slug="steam")
    large, thumb = stored(product.image), stored(product.image_thumbnail)
    assert large.format == "WEBP" and large.size == (400, 800)  # EXIF orientation applied
    assert thumb.format == "WEBP" and thumb.size == (600, 450)
    assert not large.getexif() and "exif" not in large.info and "icc_profile" not in large.info
    assert product.image.name.startswith("products/steam-") and product.image.name.endswith(".webp")
    # The upload's left (blue) half is now the top: the pixels were turned, not just a tag dropped.
    r, g, b = large.convert("RGB").getpixel((200, 100))
    assert b > 150 and r < 100


def test_product_page_and_catalog_show_the_image_or_a_placeholder(admin_client, client):
    with_image = ProductFactory(name="有图")
    stock_product(with_image, 1)
    without = ProductFactory(name="无图", category=with_image.category)
    admin_client.post(
        reverse("admin:shop_product_change", args=[with_image.pk]), product_form(with_image, image=jpeg_upload())
    )
    with_image.refresh_from_db()

    catalog = client.get("/").content.decode()
    page = client.get(reverse("shop:product", args=[with_image.slug])).content.decode()
    bare = client.get(reverse("shop:product", args=[without.slug])).content.decode()

    assert with_image.image_thumbnail.url in catalog and 'class="placeholder' in catalog
    assert with_image.image.url in page
    assert 'class="placeholder' in bare and '<img src="/media/' not in bare


def test_replacing_and_clearing_a_product_image_deletes_the_old_files(admin_client, django_capture_on_commit_callbacks):
    product = ProductFactory()
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            reverse("admin:shop_product_change", args=[product.pk]), product_form(product, image=jpeg_upload())
        )
    product.refresh_from_db()
    first = [Path(product.image.path), Path(product.image_thumbnail.path)]

    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            reverse("admin:shop_product_change", args=[product.pk]), product_form(product, image=png_upload())
        )
    product.refresh_from_db()
    second = [Path(product.image.path), Path(product.image_thumbnail.path)]
    assert all(p.exists() for p in second) and not any(p.exists() for p in first)

    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            reverse("admin:shop_product_change", args=[product.pk]), product_form(product, **{"image-clear": "on"})
        )
    product.refresh_from_db()
    assert not product.image and not product.image_thumbnail and not any(p.exists() for p in second)


@pytest.mark.parametrize(
    ("upload", "message"),
    [
        (
            lambda: SimpleUploadedFile("logo.svg", SVG_WITH_SCRIPT, content_type="image/svg+xml"),
            "SVG and HTML files are not accepted",
        ),
        (
            lambda: SimpleUploadedFile("evil.png", SVG_WITH_SCRIPT, content_type="image/png"),
            "SVG and HTML files are not accepted",
        ),
        (
            lambda: SimpleUploadedFile("page.jpg", b"<html><script>alert(1)</script></html>"),
            "SVG and HTML files are not accepted",
        ),
        (
            lambda: SimpleUploadedFile("notes.png", b"just some text, not an image at all"),
            "not an image that can be read",
        ),
        (lambda: SimpleUploadedFile("empty.png", b""), "The submitted file is empty"),
        (lambda: png_header_only(30000, 30000), "far too many pixels"),
        (lambda: png_header_only(10000, 5000), "10000 × 5000 pixels"),
        (lambda: SimpleUploadedFile("cut.jpg", truncated(jpeg_upload().read()), content_type="image/jpeg"), "damaged"),
        (lambda: SimpleUploadedFile("huge.jpg", b"\xff\xd8" + b"\0" * (9 * 1024 * 1024)), "images may be at most 8.0"),
    ],
    ids=[
        "svg-with-script",
        "svg-named-png",
        "html-named-jpg",
        "text",
        "empty",
        "decompression-bomb",
        "too-many-megapixels",
        "truncated",
        "too-many-bytes",
    ],
)
def test_hostile_or_broken_logo_is_refused_with_a_clear_message(admin_client, upload, message):
    url = reverse("admin:shop_shopsettings_change", args=[ShopSettings.SINGLETON_PK])

    response = admin_client.post(url, {"name": "My shop", "logo": upload()}, headers={"accept-language": "en"})

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not ShopSettings.objects.exists()


def test_hostile_product_image_is_refused_and_nothing_is_saved(admin_client):
    svg = SimpleUploadedFile("cover.svg", SVG_WITH_SCRIPT, content_type="image/svg+xml")

    response = admin_client.post(
        reverse("admin:shop_product_add"), product_form(image=svg), headers={"accept-language": "en"}
    )

    assert response.status_code == 200 and "SVG and HTML files are not accepted" in response.content.decode()
    assert not Product.objects.exists()


def test_logo_and_favicon_are_redrawn_as_small_images(admin_client):
    url = reverse("admin:shop_shopsettings_change", args=[ShopSettings.SINGLETON_PK])

    response = admin_client.post(
        url, {"name": "星河卡铺", "logo": png_upload(size=(1500, 500)), "favicon": jpeg_upload(size=(300, 200))}
    )

    assert response.status_code == 302
    row = ShopSettings.objects.get()
    logo, favicon = stored(row.logo), stored(row.favicon)
    assert logo.format == "WEBP" and logo.size == (480, 160)
    assert favicon.format == "PNG" and favicon.size == (180, 180)
    assert favicon.getpixel((90, 5))[3] == 0  # the wide picture is centred on a transparent square


def test_phone_photo_with_a_colour_profile_is_turned_upright_and_converted_to_srgb(admin_client):
    from PIL import ImageCms

    image = Image.new("RGB", (800, 400), (200, 30, 30))
    image.paste((30, 30, 200), (0, 0, 400, 400))
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    image.save(out, format="JPEG", exif=exif, icc_profile=profile)
    upload = SimpleUploadedFile("iphone.jpg", out.getvalue(), content_type="image/jpeg")

    response = admin_client.post(reverse("admin:shop_product_add"), product_form(image=upload))

    assert response.status_code == 302
    large = stored(Product.objects.get(slug="steam").image)
    assert large.size == (400, 800) and "icc_profile" not in large.info


def test_admin_product_list_shows_the_card_thumbnail(admin_client):
    product = ProductFactory()
    admin_client.post(
        reverse("admin:shop_product_change", args=[product.pk]), product_form(product, image=jpeg_upload())
    )
    product.refresh_from_db()

    page = admin_client.get(reverse("admin:shop_product_changelist")).content.decode()

    assert f'<img src="{product.image_thumbnail.url}" alt="" width="48" height="36">' in page
