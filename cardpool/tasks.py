"""Background phases of an admin key import. They take batch IDs and are safe to run twice."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from cardpool import importing
from kameng.celery import KamengTask


@shared_task(base=KamengTask, acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=8)
def import_batch_preview(batch_id: int) -> str:
    return importing.import_batch_preview(batch_id=batch_id)


@shared_task(base=KamengTask, acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=8)
def import_batch_commit(batch_id: int) -> str:
    return importing.import_batch_commit(batch_id=batch_id)


@shared_task(base=KamengTask)
def imports_resume() -> list[int]:
    return importing.imports_resume()
