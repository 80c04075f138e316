#!/usr/bin/env python
"""What a notification costs the web process, in instructions: a figure that repeats.

bench/notify.py measures requests per second, and this VM's speed drifts from day to day and
within one run (docs/performance.md), by more than a small change to a notification's Python
saves, so such a change cannot be seen there. Valgrind's callgrind counts the instructions a
process executes, which are the same from run to run.

This runs Django's WSGI handler in one process under callgrind (production settings, PostgreSQL,
no gunicorn and no network) and counts its instructions per request for ``GET /healthz`` (the
bare one-query view of bench/notify.py) and for ``POST /payments/alipay/notify/`` (a genuinely
signed notification paying a pending order), each the difference between a run of --requests
and a run of --base requests after the same warm-up, so start-up cancels out. PostgreSQL's
work is in its own process and is not counted (bench/notify.py includes it).

    .venv/bin/python bench/notify_cost.py [--requests 240] [--base 40]

Needs valgrind (Debian: apt-get install valgrind) and PostgreSQL on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import io
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_database import database_recreate  # noqa: E402

WARM_UP = 30
NOTIFY_PATH = "/payments/alipay/notify/"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=240)
    parser.add_argument("--base", type=int, default=40)
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--database", default="kameng_bench_notify_cost")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "COUNT", "FILE"), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        kind, count, path = options.child
        return _requests_run(kind, int(count), Path(path))
    if not shutil.which("valgrind"):
        print("error: valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    if options.requests <= options.base:
        parser.error("--requests must be more than --base")

    from notify import bench_environment, django_setup, notifications_prepare

    from tests.support.payment_platforms import AlipayPlatform

    database_recreate(options.server, options.database)
    platform = AlipayPlatform()
    work = Path(tempfile.mkdtemp(prefix="kameng-bench-"))
    env = bench_environment(platform, database_url=f"{options.server}/{options.database}", work=work)
    django_setup(env)
    bodies = iter(notifications_prepare(2 * WARM_UP + options.base + options.requests, platform))
    from django.db import connections

    connections.close_all()

    runs = {}
    for count in (options.base, options.requests):
        path = work / f"notifications-{count}.txt"
        path.write_text("".join(next(bodies) + "\n" for _ in range(WARM_UP + count)))
        for kind in ("bare", "notify"):
            runs[kind, count] = path
    # Two at a time: one per core; each run is single-threaded.
    with ThreadPoolExecutor(max_workers=2) as pool:
        counted = dict(
            zip(runs, pool.map(lambda item: _instructions(env, *item[0], item[1]), runs.items()), strict=True)
        )
    per_request = {
        kind: (counted[kind, options.requests] - counted[kind, options.base]) / (options.requests - options.base)
        for kind in ("bare", "notify")
    }
    print(
        f"instructions of the web process per request (callgrind; Django's WSGI handler in-process; "
        f"{options.requests} - {options.base} requests after {WARM_UP} of warm-up; PostgreSQL not counted)"
    )
    print(f"bare one-query view GET /healthz      : {per_request['bare']:12,.0f}")
    print(f"Alipay notify (RSA2 verify + confirm) : {per_request['notify']:12,.0f}")
    print(f"notify / bare view                    : {per_request['notify'] / per_request['bare']:12.2f}")
    return 0


def _instructions(env: dict[str, str], kind: str, count: int, path: Path) -> int:
    """Instructions callgrind counts for one child run."""
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        "--cache-sim=no",
        sys.executable,
        __file__,
        "--child",
        kind,
        str(count),
        str(path),
    ]
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if run.returncode:
        raise SystemExit(f"{kind} run failed:\n{run.stderr[-2000:]}")
    return int(re.search(r"Collected : (\d+)", run.stderr).group(1))


def _requests_run(kind: str, count: int, path: Path) -> int:
    """The child: warm up, then ``count`` requests of ``kind`` through the WSGI handler."""
    from django.core.wsgi import get_wsgi_application

    application = get_wsgi_application()

    def call(method: str, path_info: str, body: bytes = b"") -> bytes:
        environ = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path_info,
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "HTTP_HOST": "127.0.0.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "CONTENT_LENGTH": str(len(body)),
            "CONTENT_TYPE": "application/x-www-form-urlencoded; charset=utf-8",
        }
        response = application(environ, lambda status, headers: None)
        content = b"".join(response)
        response.close()
        return content

    if kind == "bare":
        requests = [("GET", "/healthz", b"")] * (WARM_UP + count)
    else:
        requests = [("POST", NOTIFY_PATH, line.encode()) for line in path.read_text().splitlines()[: WARM_UP + count]]
    expected = b"ok" if kind == "bare" else b"success"
    for method, path_info, body in requests:
        content = call(method, path_info, body)
        if content != expected:
            print(f"error: {method} {path_info} answered {content[:200]!r}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
