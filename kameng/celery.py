"""The Celery app. Tasks subclass ``KamengTask``: they take IDs and are sent after commit."""

from __future__ import annotations

import functools
import logging
import os

from celery import Celery
from celery.contrib.django.task import DjangoTask
from celery.signals import task_prerun
from django.db import close_old_connections, connections, transaction

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kameng.settings")

logger = logging.getLogger(__name__)


class KamengTask(DjangoTask):
    """A task sent only after the surrounding transaction commits.

    Sending never raises into the caller: if the broker is down the error is logged and the
    database sweeper re-drives the work later (the database, not the broker, is the record of
    what still has to happen).
    """

    # celery-types declares DjangoTask.delay_on_commit as returning an AsyncResult; Celery's own
    # returns None, as this one does (there is no result before the commit).
    def delay_on_commit(self, *args, **kwargs) -> None:  # type: ignore[override]
        transaction.on_commit(functools.partial(self.send_quietly, *args, **kwargs))

    def send_quietly(self, *args, **kwargs) -> bool:
        try:
            self.apply_async(args=args, kwargs=kwargs)
        except Exception:  # any broker failure; the sweeper covers it
            logger.warning("could not send task %s; the sweeper will re-drive it", self.name, exc_info=True)
            return False
        return True


app = Celery("kameng", task_cls=KamengTask)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# PostgreSQL: order events announced with NOTIFY become dispatch tasks here (shop/outbox.py).
app.steps["worker"].add("shop.outbox_listener:OutboxListenerStep")


@task_prerun.connect
def database_connections_check(sender=None, **kwargs) -> None:
    """Before each task in a worker, drop a database connection that is broken or past
    CONN_MAX_AGE, as Django does before each web request, and check a kept one now
    (CONN_HEALTH_CHECKS): a task's first act may be opening a transaction, which Django does not
    health-check. The next query opens a fresh connection."""
    if not getattr(sender.request, "is_eager", False):
        close_old_connections()
        for database in connections.all(initialized_only=True):
            database.close_if_health_check_failed()
