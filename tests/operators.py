"""What an operator does in the admin, over HTTP: import keys through the preview step."""

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
