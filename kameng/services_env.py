"""Print the environment ``make test`` runs under: PostgreSQL and Redis when they answer.

``python -m kameng.services_env`` prints ``NAME=value`` lines. Variables already set in the
environment are kept. With KAMENG_REQUIRE_SERVICES=1 a missing service is an error (exit 1),
so CI can never pass by skipping the PostgreSQL and Redis tests.
"""

from __future__ import annotations

import os
import socket
import sys

PG_URL = "postgres://postgres@127.0.0.1:5432/kameng"
REDIS_URL = "redis://127.0.0.1:6379/15"


def _postgres_answers(url: str) -> bool:
    try:
        import psycopg2

        conn = psycopg2.connect(url.rsplit("/", 1)[0] + "/postgres", connect_timeout=2)
    except Exception:  # noqa: BLE001 - any failure means "not reachable"
        return False
    conn.close()
    return True


def _redis_answers(host: str = "127.0.0.1", port: int = 6379) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def main() -> int:
    lines: list[str] = []
    missing: list[str] = []
    database_url = os.environ.get("DATABASE_URL", PG_URL)
    if database_url.startswith("postgres") and _postgres_answers(database_url):
        lines.append(f"DATABASE_URL={database_url}")
    else:
        missing.append("PostgreSQL")
    if _redis_answers():
        redis_url = os.environ.get("KAMENG_TEST_REDIS_URL", REDIS_URL)
        # The test process publishes to the same broker the worker processes consume.
        lines += [f"KAMENG_TEST_REDIS_URL={redis_url}", f"CELERY_BROKER_URL={redis_url}"]
    else:
        missing.append("Redis")
    require = os.environ.get("KAMENG_REQUIRE_SERVICES") == "1"
    lines.append(f"KAMENG_REQUIRE_SERVICES={'1' if require else '0'}")
    # Keep test messages out of the demo's embedded broker folder.
    lines.append("KAMENG_BROKER_DIR=var/test-broker")
    if missing:
        print(f"# not reachable: {', '.join(missing)}; their tests will be skipped", file=sys.stderr)
        if require:
            print(f"KAMENG_REQUIRE_SERVICES=1 but {', '.join(missing)} is not reachable", file=sys.stderr)
            return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
