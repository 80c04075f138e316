from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from cardpool.crypto import keyring_parse


@checks.register(checks.Tags.security, deploy=False)
def cardpool_keys_check(app_configs, **kwargs):
    try:
        keyring_parse(keys_setting=settings.CARDPOOL_KEYS, index_key_setting=settings.CARDPOOL_INDEX_KEY)
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="cardpool.E001")]
    return []
