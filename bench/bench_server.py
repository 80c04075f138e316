"""What the HTTP benchmarks share: the environment of the processes under test and a wrk run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def production_environment(*, database_url: str, work: Path) -> dict[str, str]:
    """Production settings (DEBUG off, no SSL redirect on loopback), PostgreSQL, the demo's keys."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "kameng.settings",
        "KAMENG_ENV_FILE": str(ROOT / ".env"),
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/14",
        "DEBUG": "false",
        "EMAIL_URL": "dummymail://",
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "STATIC_ROOT": str(work / "static"),
        "LOG_LEVEL": "WARNING",
        "CONN_MAX_AGE": "600",
    }


def gunicorn_start(*, env: dict[str, str], port: int, workers: int, ready_seconds: float = 60) -> subprocess.Popen:
    """gunicorn on 127.0.0.1:``port`` with ``workers`` sync workers, returned once /healthz
    answers (the caller terminates it)."""
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "kameng.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    deadline = time.monotonic() + ready_seconds
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
            return server
        except OSError:
            if time.monotonic() > deadline:
                server.terminate()
                raise
            time.sleep(0.1)


def wrk_run(
    url: str,
    seconds: int,
    connections: int,
    threads: int,
    script: list[str] | None = None,
    *,
    settle_seconds: float = 0,
) -> dict:
    """One wrk run: requests/s, requests, p50 and p99 (ms), non-2xx/3xx answers. ``script`` is a
    Lua file and its arguments. ``settle_seconds``: wait after the run, so requests still queued in
    gunicorn are not served during the next one."""
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script:
        command += ["-s", script[0], url, "--", *script[1:]]
    else:
        command.append(url)
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    if settle_seconds:
        time.sleep(settle_seconds)
    latency = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))

    def ms(text: str) -> float:
        value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
        return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "p50": ms(latency["50"]),
        "p99": ms(latency["99"]),
        "errors": int(errors.group(1)) if errors else 0,
    }
