"""What an operator does in the admin, over HTTP: import keys through the preview step, retry
queued orders."""

from __future__ import annotations

from django.urls import reverse

from cardpool.models import ImportBatch

IMPORT_DEFAULTS = {"secret_column": "1", "header": "on", "max_uses": "1"}


def import_upload(admin_client, on_commit, data: dict):
    """Submit the import form; the background preview runs when the request commits. Returns
    (the batch page response, the batch)."""
    with on_commit():
        response = admin_client.post(reverse("admin:cardpool_cardkey_import"), {**IMPORT_DEFAULTS, **data})
    assert response.status_code == 302, response.content.decode()[:2000]
    batch = ImportBatch.objects.latest("pk")
    return admin_client.get(response["Location"], headers={"accept-language": "en"}), batch


def import_confirm(admin_client, on_commit, batch):
    """Press "Import N keys" on the preview; the import runs when the request commits."""
    url = reverse("admin:cardpool_cardkey_import_batch", args=[batch.pk])
    with on_commit():
        admin_client.post(url, {"action": "confirm"})
    batch.refresh_from_db()
    return admin_client.get(url, headers={"accept-language": "en"})


def admin_import(admin_client, on_commit, data: dict):
    """Upload, preview and confirm; returns the finished batch."""
    _page, batch = import_upload(admin_client, on_commit, data)
    import_confirm(admin_client, on_commit, batch)
    return batch


def product_admin_fields(product, **changes) -> dict:
    """The product's change form as admin posts it, with ``changes``."""
    fields = {
        "category": product.category_id,
        "name": product.name,
        "slug": product.slug,
        "price": str(product.price),
        "sort_order": product.sort_order,
        "min_quantity": product.min_quantity,
        "max_quantity": product.max_quantity,
        "low_stock_threshold": product.low_stock_threshold,
        "delivery_delay_minutes": 0,
        "description": product.description,
        "usage_instructions": product.usage_instructions,
        "is_active": "on",
    }
    fields.update(changes)
    return fields


def product_image_upload(admin_client, product, upload) -> None:
    """Upload ``upload`` as the product's image in admin."""
    response = admin_client.post(
        reverse("admin:shop_product_change", args=[product.pk]), product_admin_fields(product, image=upload)
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    product.refresh_from_db()


def shop_settings_save(admin_client, **fields) -> None:
    """Save the shop settings form in admin."""
    response = admin_client.post(reverse("admin:shop_shopsettings_change", args=[1]), fields)
    assert response.status_code == 302, response.content.decode()[:3000]


def retry_from_the_queue(admin_client, on_commit, order):
    """Run the exception queue's "retry delivery" action on the order; the delivery runs on commit."""
    with on_commit():
        admin_client.post(
            reverse("admin:shop_exceptionorder_changelist"),
            {"action": "retry_delivery", "_selected_action": [order.pk]},
        )
    order.refresh_from_db()
