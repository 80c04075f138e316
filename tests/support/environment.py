"""What the test run was given: the Redis it may use and whether a missing service fails or skips."""

from __future__ import annotations

import os

REQUIRE_SERVICES = os.environ.get("KAMENG_REQUIRE_SERVICES") == "1"
REDIS_URL = os.environ.get("KAMENG_TEST_REDIS_URL", "")
# The live shop's cache (shop settings among it), shared with a test through ``live_cache``.
LIVE_SHOP_CACHE_URL = REDIS_URL.replace("redis://", "rediscache://", 1)
