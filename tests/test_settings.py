"""Start-up configuration: missing secrets stop the process by name; production passes --deploy."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def production_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEBUG", "SECRET_KEY", "CARDPOOL_", "PAYMENTS_"))}
    env.update(
        {
            "KAMENG_ENV_FILE": "",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "shop.example.com",
            "SITE_URL": "https://shop.example.com",
            "CARDPOOL_KEYS": "1:" + base64.b64encode(os.urandom(32)).decode(),
            "CARDPOOL_INDEX_KEY": base64.b64encode(os.urandom(32)).decode(),
            "DATABASE_URL": "sqlite:////tmp/kameng-settings-check.sqlite3",
            "EMAIL_URL": "smtp+tls://shop:secret@smtp.example.com:587",
        }
    )
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_production_settings_pass_check_deploy_without_warnings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env())

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_settings_with_redis_cache_pass_check_deploy():
    env = production_env(CACHE_URL="rediscache://127.0.0.1:6379/1")

    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "variable", ["SECRET_KEY", "CARDPOOL_KEYS", "CARDPOOL_INDEX_KEY", "ALLOWED_HOSTS", "EMAIL_URL"]
)
def test_missing_secret_stops_start_up_naming_the_variable(variable):
    env = production_env()
    env.pop(variable)

    result = manage("check", env=env)

    assert result.returncode != 0
    assert variable in result.stderr


def test_malformed_encryption_key_is_reported_by_check():
    result = manage("check", env=production_env(CARDPOOL_KEYS="1:too-short"))

    assert result.returncode != 0
    assert "CARDPOOL_KEYS" in result.stderr


def test_sandbox_needs_its_secret():
    result = manage("check", env=production_env(PAYMENTS_SANDBOX_ENABLED="true"))

    assert result.returncode != 0 and "PAYMENTS_SANDBOX_SECRET" in result.stderr


def test_secrets_may_come_from_files(tmp_path):
    secret_file = tmp_path / "secret_key"
    secret_file.write_text(secrets.token_urlsafe(50))
    env = production_env(SECRET_KEY=None, SECRET_KEY_FILE=str(secret_file))

    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)

    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "overrides, variable",
    [
        (
            {"ALIPAY_APP_ID": "2021000123456789", "ALIPAY_APP_PRIVATE_KEY": "not a key", "ALIPAY_PUBLIC_KEY": "MIIB"},
            "ALIPAY_APP_PRIVATE_KEY",
        ),
        ({"ALIPAY_APP_ID": "2021000123456789"}, "ALIPAY_APP_PRIVATE_KEY"),
        ({"WECHATPAY_MCHID": "1900000109"}, "WECHATPAY_APPID"),
    ],
    ids=["alipay-malformed-key", "alipay-half-configured", "wechat-half-configured"],
)
def test_payment_misconfiguration_stops_start_up_naming_the_variable(overrides, variable):
    result = manage("check", env=production_env(**overrides))

    assert result.returncode != 0
    assert variable in result.stderr


def test_the_replaced_client_ip_header_setting_stops_start_up_pointing_to_trusted_proxies():
    result = manage("check", env=production_env(CLIENT_IP_META_KEY="HTTP_X_REAL_IP"))

    assert result.returncode != 0
    assert "CLIENT_IP_META_KEY" in result.stderr and "TRUSTED_PROXIES" in result.stderr


def test_trusted_proxies_that_do_not_parse_stop_start_up():
    result = manage("check", env=production_env(TRUSTED_PROXIES="172.16.0.0/12,proxy.local"))

    assert result.returncode != 0 and "TRUSTED_PROXIES" in result.stderr


def test_production_settings_behind_a_proxy_pass_check_deploy():
    env = production_env(TRUSTED_PROXIES="172.16.0.0/12,fd00::/8", TRUST_X_FORWARDED_PROTO="true")

    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)

    assert result.returncode == 0, result.stdout + result.stderr
