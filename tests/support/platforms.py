"""Payment platform simulators: they sign notifications the way the platform does.

The sandbox signature is re-implemented here on purpose, so a change to the shop's verifier
that stops matching the platform's scheme breaks the tests.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from decimal import Decimal

SANDBOX_SECRET = "test-sandbox-secret"


def sandbox_notification(
    *,
    out_trade_no: str,
    amount: Decimal | str,
    trade_no: str | None = None,
    secret: str = SANDBOX_SECRET,
    timestamp: int | None = None,
    trade_status: str = "TRADE_SUCCESS",
    merchant_id: str = "kameng-sandbox",
) -> dict[str, str]:
    fields = {
        "merchant_id": merchant_id,
        "out_trade_no": out_trade_no,
        "trade_no": trade_no or "SBX" + secrets.token_hex(12),
        "total_amount": f"{Decimal(amount):.2f}",
        "trade_status": trade_status,
        "timestamp": str(int(time.time()) if timestamp is None else timestamp),
    }
    message = "&".join(f"{k}={fields[k]}" for k in sorted(fields))
    fields["sign"] = hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()
    return fields
