"""Kameng settings: one module, every value read from the environment.

Every variable has a documented default (README, "Configuration") or stops start-up with
``ImproperlyConfigured`` naming the variable. Secrets may also come from ``<NAME>_FILE``.
A ``.env`` file in the project root (written by ``make run`` / ``make test``) is read first;
real environment variables win over it.
"""

from __future__ import annotations

import os
from pathlib import Path

import environ
from csp import constants as csp_constants
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.FileAwareEnv()
ENV_FILE = os.environ.get("KAMENG_ENV_FILE", str(BASE_DIR / ".env"))
if ENV_FILE and os.path.isfile(ENV_FILE):
    # read_env never overrides variables that are already set in the environment.
    environ.Env.read_env(ENV_FILE)

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if DEBUG else [])
if not ALLOWED_HOSTS:
    raise ImproperlyConfigured("Set the ALLOWED_HOSTS environment variable (comma-separated host names).")
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[SITE_URL])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "import_export",
    "django_ratelimit",
    "csp",
    "shop",
    "cardpool",
    "payments",
    "delivery",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "payments.csp.StorefrontCSPMiddleware",
    # Last, so its 404 passes back through every other middleware (CSP and security headers).
    "kameng.path_guard.NulBytePathMiddleware",
]

ROOT_URLCONF = "kameng.urls"
WSGI_APPLICATION = "kameng.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "delivery.context_processors.stock_alerts",
                "shop.context_processors.shop",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
# Default: a SQLite file in WAL mode with IMMEDIATE transactions, so the web process and the
# worker can write side by side (each write transaction takes the lock up front instead of
# failing half-way with "database is locked").
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://kameng")}

# --- Security --------------------------------------------------------------------------------
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
# same-origin: order pages carry their access token in the URL, so no Referer leaves the shop;
# same-origin form posts still send their real Origin, which CSRF checks (no-referrer makes
# Chromium send "Origin: null" and CSRF refuses the post).
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if env.bool("TRUST_X_FORWARDED_PROTO", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Content-Security-Policy of the storefront (django-csp 4): no inline or foreign scripts, so an
# escaping slip cannot run code next to a buyer's keys. form-action also admits the payment
# platforms of the enabled gateways, added per response (payments/csp.py). The admin keeps
# Django's own behaviour (it still has inline scripts in places).
CONTENT_SECURITY_POLICY = {
    "EXCLUDE_URL_PREFIXES": ["/admin/"],
    "DIRECTIVES": {
        "default-src": [csp_constants.SELF],
        "script-src": [csp_constants.SELF],
        "style-src": [csp_constants.SELF],
        "img-src": [csp_constants.SELF, "data:"],
        "connect-src": [csp_constants.SELF],
        "form-action": [csp_constants.SELF],
        "frame-ancestors": [csp_constants.NONE],
        "base-uri": [csp_constants.NONE],
        "object-src": [csp_constants.NONE],
    },
}
# Lets the health check of a TLS-redirecting production container reach /healthz over http.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]

PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "shop.hashers.QueryPasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

# --- Language and time -------------------------------------------------------------------------
LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", "简体中文"), ("zh-hant", "繁體中文"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env.str("TIME_ZONE", default="Asia/Shanghai")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))
STATICFILES_DIRS = [BASE_DIR / "static"]
# Uploads (product images, the shop's logo). Served by the reverse proxy in production
# (docker-compose), by Django itself under DEBUG.
MEDIA_URL = "media/"
MEDIA_ROOT = env.path("MEDIA_ROOT", default=str(BASE_DIR / "var" / "media"))
# Django serves MEDIA_URL itself: on with DEBUG (make run); in production leave it off and let the
# proxy serve MEDIA_ROOT from the shared volume.
MEDIA_SERVE = env.bool("MEDIA_SERVE", default=DEBUG)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- Email ---------------------------------------------------------------------------------
# The console backend prints every email, keys included, to the worker's output (its log), so it
# is only the default while DEBUG is on; a production shop must say where mail goes.
EMAIL_CONFIG = env.email("EMAIL_URL", default="consolemail://") if DEBUG else env.email("EMAIL_URL")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Kameng <noreply@localhost>")
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)

# --- Card key pool ---------------------------------------------------------------------------
# "VERSION:BASE64KEY,VERSION:BASE64KEY"; the highest version encrypts, every listed one decrypts.
CARDPOOL_KEYS = env.str("CARDPOOL_KEYS")
CARDPOOL_INDEX_KEY = env.str("CARDPOOL_INDEX_KEY")
CARDPOOL_IMPORT_MAX_LINE_LENGTH = env.int("CARDPOOL_IMPORT_MAX_LINE_LENGTH", default=1024)
CARDPOOL_IMPORT_MAX_BYTES = env.int("CARDPOOL_IMPORT_MAX_BYTES", default=100 * 1024 * 1024)

# --- Orders and payments -----------------------------------------------------------------------
ORDER_EXPIRE_MINUTES = env.int("ORDER_EXPIRE_MINUTES", default=15)
# The catalog's body is rendered at most once per this many seconds per language and category
# (0: every view); its stock may lag by that long, the product page's and checkout's never.
CATALOG_CACHE_SECONDS = env.int("CATALOG_CACHE_SECONDS", default=5)
ORDER_LOOKUP_RATE = env.str("ORDER_LOOKUP_RATE", default="10/10m")  # per client IP
# HMAC key of order page links (shop/order_tokens.py); empty: derived from SECRET_KEY. Changing
# it (or SECRET_KEY while it is empty) needs ``manage.py order_tokens_rekey``.
ORDER_TOKEN_KEY = env.str("ORDER_TOKEN_KEY", default="")
PAYMENTS_SANDBOX_ENABLED = env.bool("PAYMENTS_SANDBOX_ENABLED", default=False)
PAYMENTS_SANDBOX_SECRET = env.str("PAYMENTS_SANDBOX_SECRET", default="")
if PAYMENTS_SANDBOX_ENABLED and not PAYMENTS_SANDBOX_SECRET:
    raise ImproperlyConfigured("Set PAYMENTS_SANDBOX_SECRET when PAYMENTS_SANDBOX_ENABLED is on.")
PAYMENTS_NOTIFY_MAX_AGE_SECONDS = env.int("PAYMENTS_NOTIFY_MAX_AGE_SECONDS", default=300)
PAYMENTS_RECONCILE_AFTER_SECONDS = env.int("PAYMENTS_RECONCILE_AFTER_SECONDS", default=180)
ORDER_EXPIRE_GRACE_MINUTES = env.int("ORDER_EXPIRE_GRACE_MINUTES", default=60)
PAYMENT_GATEWAYS = {
    "alipay": "payments.gateways.alipay.AlipayGateway",
    "wechatpay": "payments.gateways.wechatpay.WechatPayGateway",
    "sandbox": "payments.gateways.sandbox.SandboxGateway",
}

# Alipay: enabled when ALIPAY_APP_ID is set. Keys: PEM with or without headers, PKCS#1 or #8.
ALIPAY_APP_ID = env.str("ALIPAY_APP_ID", default="")
ALIPAY_SELLER_ID = env.str("ALIPAY_SELLER_ID", default="")
ALIPAY_APP_PRIVATE_KEY = env.str("ALIPAY_APP_PRIVATE_KEY", default="")
ALIPAY_PUBLIC_KEY = env.str("ALIPAY_PUBLIC_KEY", default="")
ALIPAY_SERVER_URL = env.str("ALIPAY_SERVER_URL", default="https://openapi.alipay.com/gateway.do")
ALIPAY_PAY_MODE = env.str("ALIPAY_PAY_MODE", default="auto")
ALIPAY_NOTIFY_MAX_AGE_HOURS = env.int("ALIPAY_NOTIFY_MAX_AGE_HOURS", default=48)

# WeChat Pay API v3: enabled when WECHATPAY_MCHID is set.
WECHATPAY_MCHID = env.str("WECHATPAY_MCHID", default="")
WECHATPAY_APPID = env.str("WECHATPAY_APPID", default="")
WECHATPAY_APIV3_KEY = env.str("WECHATPAY_APIV3_KEY", default="")
WECHATPAY_PRIVATE_KEY = env.str("WECHATPAY_PRIVATE_KEY", default="")
WECHATPAY_CERT_SERIAL_NO = env.str("WECHATPAY_CERT_SERIAL_NO", default="")
WECHATPAY_PUBLIC_KEY = env.str("WECHATPAY_PUBLIC_KEY", default="")
WECHATPAY_PUBLIC_KEY_ID = env.str("WECHATPAY_PUBLIC_KEY_ID", default="")
WECHATPAY_CERT_DIR = env.str("WECHATPAY_CERT_DIR", default="")
WECHATPAY_NOTIFY_MAX_AGE_SECONDS = env.int("WECHATPAY_NOTIFY_MAX_AGE_SECONDS", default=300)
WECHATPAY_API_URL = env.str("WECHATPAY_API_URL", default="https://api.mch.weixin.qq.com")

# --- Delivery ------------------------------------------------------------------------------
# console (development; it prints the text, so only the default while DEBUG is on), aliyun,
# tencent, or none: buyers who give a mobile number find their keys on the order page only.
SMS_PROVIDER = env.str("SMS_PROVIDER", default="console" if DEBUG else "none")
SMS_CONTENT = env.str("SMS_CONTENT", default="link")  # "link": a short signed link; "key": the keys
if SMS_CONTENT not in ("link", "key"):
    raise ImproperlyConfigured("SMS_CONTENT must be link or key")
SMS_TIMEOUT_SECONDS = env.int("SMS_TIMEOUT_SECONDS", default=10)
ALIYUN_SMS_ACCESS_KEY_ID = env.str("ALIYUN_SMS_ACCESS_KEY_ID", default="")
ALIYUN_SMS_ACCESS_KEY_SECRET = env.str("ALIYUN_SMS_ACCESS_KEY_SECRET", default="")
ALIYUN_SMS_SIGN_NAME = env.str("ALIYUN_SMS_SIGN_NAME", default="")
ALIYUN_SMS_TEMPLATE_CODE = env.str("ALIYUN_SMS_TEMPLATE_CODE", default="")
ALIYUN_SMS_ENDPOINT = env.str("ALIYUN_SMS_ENDPOINT", default="dysmsapi.aliyuncs.com")
TENCENT_SMS_SECRET_ID = env.str("TENCENT_SMS_SECRET_ID", default="")
TENCENT_SMS_SECRET_KEY = env.str("TENCENT_SMS_SECRET_KEY", default="")
TENCENT_SMS_SDK_APP_ID = env.str("TENCENT_SMS_SDK_APP_ID", default="")
TENCENT_SMS_SIGN_NAME = env.str("TENCENT_SMS_SIGN_NAME", default="")
TENCENT_SMS_TEMPLATE_ID = env.str("TENCENT_SMS_TEMPLATE_ID", default="")
TENCENT_SMS_REGION = env.str("TENCENT_SMS_REGION", default="ap-guangzhou")
TENCENT_SMS_ENDPOINT = env.str("TENCENT_SMS_ENDPOINT", default="sms.tencentcloudapi.com")

# Exception-queue entries older than this are highlighted.
EXCEPTION_SLA_MINUTES = env.int("EXCEPTION_SLA_MINUTES", default=30)
# Who gets low-stock alerts (comma-separated addresses); the admin banner shows them either way.
ALERT_EMAILS = env.list("ALERT_EMAILS", default=[])
# Email/SMS retries: exponential backoff with jitter from the base (per product overridable).
DELIVERY_MAX_TRIES = env.int("DELIVERY_MAX_TRIES", default=3)
DELIVERY_RETRY_BASE_SECONDS = env.int("DELIVERY_RETRY_BASE_SECONDS", default=300)
# Waits up to this long ride on the broker (countdown); longer ones wait in the database for the
# sweeper, so no message sits in Redis past its visibility timeout and gets delivered twice.
DELIVERY_MAX_COUNTDOWN_SECONDS = env.int("DELIVERY_MAX_COUNTDOWN_SECONDS", default=600)
# How a committed order event (a paid order, say) reaches its handlers in a worker
# (shop/outbox.py): "listen" (PostgreSQL NOTIFY, one listener thread in the workers; the default
# on PostgreSQL) or "broker" (the request sends the task after commit; the only choice on SQLite).
DELIVERY_DISPATCH = env.str(
    "DELIVERY_DISPATCH",
    default="broker" if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3" else "listen",
)
if DELIVERY_DISPATCH not in ("listen", "broker"):
    raise ImproperlyConfigured("DELIVERY_DISPATCH: use listen or broker")
# listen: events announced within this many milliseconds go to the workers as one batch.
DELIVERY_DISPATCH_BATCH_MS = env.int("DELIVERY_DISPATCH_BATCH_MS", default=20)
DELIVERY_SWEEP_AFTER_SECONDS = env.int("DELIVERY_SWEEP_AFTER_SECONDS", default=60)
DELIVERY_SWEEP_INTERVAL_SECONDS = env.float("DELIVERY_SWEEP_INTERVAL_SECONDS", default=30.0)

# --- Celery --------------------------------------------------------------------------------
# Default: kombu's filesystem transport under var/broker, so a worker runs as its own process
# with no broker server installed.
BROKER_DIR = env.path("KAMENG_BROKER_DIR", default=str(BASE_DIR / "var" / "broker"))
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    for sub in ("queue", "processed", "control"):
        os.makedirs(os.path.join(BROKER_DIR, sub), exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": os.path.join(BROKER_DIR, "queue"),
        "data_folder_out": os.path.join(BROKER_DIR, "queue"),
        "processed_folder": os.path.join(BROKER_DIR, "processed"),
        "control_folder": os.path.join(BROKER_DIR, "control"),
        "store_processed": False,
    }
    CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # A killed worker's unacknowledged message comes back after this; the database
        # sweeper usually re-drives the order long before.
        "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600),
    }
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Publishing must not hang a request when the broker is down: the sweeper re-drives the work.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django fixup closes the database connection around every task unless this is set
# (celery/celery#9824): a new PostgreSQL connection per delivery cost more than the delivery
# itself (bench/deliver.py). Workers keep a connection for this many tasks; before each task it
# is checked like a web request's (close_old_connections, CONN_HEALTH_CHECKS), so one cut by a
# database restart is replaced, not reused. Tasks here run no time limits, whose SIGALRM could
# leave a connection broken mid-query, the case the fixup guards against.
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1000)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_EAGER_PROPAGATES = CELERY_TASK_ALWAYS_EAGER
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULE = {
    "orders-expire": {"task": "payments.tasks.orders_expire", "schedule": 60.0},
    "payments-reconcile": {"task": "payments.tasks.payments_reconcile", "schedule": 60.0},
    "delivery-sweep": {"task": "delivery.tasks.delivery_sweep", "schedule": DELIVERY_SWEEP_INTERVAL_SECONDS},
    "outbox-sweep": {"task": "shop.tasks.outbox_sweep", "schedule": DELIVERY_SWEEP_INTERVAL_SECONDS},
    "imports-resume": {"task": "cardpool.tasks.imports_resume", "schedule": 60.0},
}
CELERY_BEAT_SCHEDULE_FILENAME = env.str(
    "CELERY_BEAT_SCHEDULE_FILENAME", default=str(BASE_DIR / "var" / "celerybeat-schedule")
)

# --- Logging --------------------------------------------------------------------------------
# Every handler redacts order tokens from paths (kameng/log_redaction.py); gunicorn's own logs
# do the same through its --logger-class.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"secret_paths": {"()": "kameng.log_redaction.SecretPathFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "django.server": {
            "()": "django.utils.log.ServerFormatter",
            "format": "[{server_time}] {message}",
            "style": "{",
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["secret_paths"]},
        # runserver's request log, as Django's default but redacted.
        "django.server": {"class": "logging.StreamHandler", "formatter": "django.server", "filters": ["secret_paths"]},
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # Replaces Django's default handlers on "django": its DEBUG-only console copy of every
        # line, unredacted, and mail_admins, whose report carries the request's path and
        # Referer (and is idle here: ADMINS is empty). Its records go to the root handler.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.server": {"handlers": ["django.server"], "level": "INFO", "propagate": False},
    },
}

# --- Client IP and rate limits -----------------------------------------------------------------
# Networks of the reverse proxy in front of gunicorn (compose: its network). Only a request whose
# TCP peer is inside one of them has its X-Forwarded-For believed (kameng/client_ip.py); empty:
# the peer is the client and the header is ignored.
from kameng.client_ip import trusted_proxies_parse  # noqa: E402

TRUSTED_PROXIES = trusted_proxies_parse(env.list("TRUSTED_PROXIES", default=[]))
# Replaced by TRUSTED_PROXIES: naming a header to believe let any client that reached gunicorn
# directly choose its own address. Refused loudly rather than ignored, since ignoring it would put
# every buyer behind the proxy under one rate-limit key.
if env.str("CLIENT_IP_META_KEY", default="REMOTE_ADDR") != "REMOTE_ADDR":
    raise ImproperlyConfigured(
        "CLIENT_IP_META_KEY is no longer read: set TRUSTED_PROXIES to the reverse proxy's networks"
        " (e.g. 172.16.0.0/12) and it passes the client's address in X-Forwarded-For."
    )
# django-ratelimit's key="ip" asks kameng.client_ip too (IPv6 clients counted per /64).
RATELIMIT_IP_META_KEY = "kameng.client_ip.client_ip_for_rate_limit"
# Rates are "N/period" (s, m, h, d, or e.g. 10m), counted in the cache (CACHE_URL).
ORDER_LOOKUP_RATE_CONTACT = env.str("ORDER_LOOKUP_RATE_CONTACT", default="20/h")
ORDER_CREATE_RATE_IP = env.str("ORDER_CREATE_RATE_IP", default="30/10m")
ORDER_CREATE_RATE_CONTACT = env.str("ORDER_CREATE_RATE_CONTACT", default="10/10m")
PAYMENT_START_RATE_IP = env.str("PAYMENT_START_RATE_IP", default="30/10m")
PAYMENT_START_RATE_ORDER = env.str("PAYMENT_START_RATE_ORDER", default="10/10m")
# A click on "Pay" within this many seconds of the last one (same order, gateway and device kind)
# sends the buyer to that payment again instead of opening another trade at the platform.
PAYMENT_REUSE_SECONDS = env.int("PAYMENT_REUSE_SECONDS", default=240)
# "Send again" on the order page: per order, and per recipient across all their orders.
DELIVERY_RESEND_PER_ORDER_PER_HOUR = env.int("DELIVERY_RESEND_PER_ORDER_PER_HOUR", default=3)
DELIVERY_RESEND_PER_RECIPIENT_PER_HOUR = env.int("DELIVERY_RESEND_PER_RECIPIENT_PER_HOUR", default=6)
# "Orders from this browser": how many the signed cookie remembers, and for how long.
BROWSER_ORDERS_MAX = env.int("BROWSER_ORDERS_MAX", default=20)
BROWSER_ORDERS_DAYS = env.int("BROWSER_ORDERS_DAYS", default=365)
SILENCED_SYSTEM_CHECKS = [
    # Django's own RedisCache increments atomically; django-ratelimit simply does not list it.
    "django_ratelimit.W001",
]
if CACHES["default"]["BACKEND"].endswith("LocMemCache"):
    # The embedded default runs one web process, so a per-process cache is a correct limit.
    SILENCED_SYSTEM_CHECKS.append("django_ratelimit.E003")
