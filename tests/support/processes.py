"""Real processes for tests: Celery workers and beat, gunicorn, on the test database and Redis."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from tests.support.environment import REDIS_URL, REQUIRE_SERVICES
from tests.support.platforms import SANDBOX_SECRET

BIN = Path(sys.executable).parent


def worker_database_url() -> str:
    """The test database, for the service processes a test starts: they share it, so it must be
    PostgreSQL (SQLite's test database lives in this process's memory)."""
    if connection.vendor != "postgresql":
        reason = "service processes share the test database: needs PostgreSQL"
        if REQUIRE_SERVICES:
            pytest.fail(f"KAMENG_REQUIRE_SERVICES=1: {reason}")
        pytest.skip(reason)
    db = connection.settings_dict
    user = db.get("USER") or "postgres"
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{user}@{host}:{port}/{db['NAME']}"


def database_connections_cut() -> int:
    """Terminate every connection to the test database but this test process's own, as a
    database restart or failover does to the services' persistent connections. Returns how many."""
    import psycopg2

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        mine = cursor.fetchone()[0]
    admin = psycopg2.connect(worker_database_url())
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
                " AND backend_type = 'client backend' AND pid NOT IN (pg_backend_pid(), %s)",
                [mine],
            )
            return cursor.rowcount
    finally:
        admin.close()


def service_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """The environment the compose services would get, pointed at the test database and Redis."""
    env = {
        **os.environ,
        "DATABASE_URL": worker_database_url(),
        "CELERY_BROKER_URL": REDIS_URL,
        "CACHE_URL": "locmemcache://",
        "PAYMENTS_SANDBOX_ENABLED": "true",
        "PAYMENTS_SANDBOX_SECRET": SANDBOX_SECRET,
        "EMAIL_URL": "dummymail://",
        "CONN_MAX_AGE": "0",
        "CELERY_BEAT_SCHEDULE_FILENAME": str(tmp_path / "celerybeat-schedule"),
        "KAMENG_BROKER_DIR": str(tmp_path / "broker"),
        # Uploads: tests write them into this folder (settings.MEDIA_ROOT) and gunicorn serves it.
        "MEDIA_ROOT": str(tmp_path / "media"),
        "MEDIA_SERVE": "true",
        "PYTHONUNBUFFERED": "1",
    }
    env.update(overrides)
    return env


class ServiceProcess:
    """A child process in its own process group, its output in a log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            args,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=Path(__file__).parent.parent.parent,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not log {text!r}:\n{self.log()[-4000:]}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the whole process group: no cleanup, no acknowledgements, as in a crash."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


def start_worker(
    env: dict[str, str], log_dir: Path, *, name: str = "worker", concurrency: int = 4, beat: bool = False
) -> ServiceProcess:
    args = [
        str(BIN / "celery"),
        "-A",
        "kameng",
        "worker",
        "--loglevel=INFO",
        f"--concurrency={concurrency}",
        "--without-mingle",
        "--without-gossip",
        "-n",
        f"{name}-{os.getpid()}@%h",
    ]
    if beat:
        args.append("--beat")
    worker = ServiceProcess(name, args, env, log_dir)
    worker.wait_for_log("ready.")
    return worker


def flush_test_broker() -> None:
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(url: str) -> bool:
    import requests

    try:
        return requests.get(f"{url}/healthz", timeout=2).ok
    except requests.ConnectionError:
        return False


class Shop:
    """The compose services' own commands (gunicorn, a Celery worker, optionally beat) serving the
    test database over real HTTP on loopback."""

    def __init__(
        self, *, url: str, env: dict[str, str], web: ServiceProcess, worker: ServiceProcess, beat: ServiceProcess | None
    ):
        self.url = url
        self.env = env
        self.web = web
        self.worker = worker
        self.beat = beat

    def stop(self) -> None:
        for process in (self.beat, self.worker, self.web):
            if process is not None:
                process.stop()


def shop_start(tmp_path: Path, *, beat: bool = True, web_workers: int = 2, **overrides: str) -> Shop:
    """Start gunicorn + worker (+ beat) on a free port with production settings (DEBUG off) and
    plain HTTP on loopback standing in for the TLS-terminating proxy. ``overrides`` are
    environment variables. Stop it with ``Shop.stop()``."""
    from django.conf import settings

    flush_test_broker()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = service_env(
        tmp_path,
        KAMENG_ENV_FILE="",
        DEBUG="false",
        SECRET_KEY=settings.SECRET_KEY,
        CARDPOOL_KEYS=settings.CARDPOOL_KEYS,
        CARDPOOL_INDEX_KEY=settings.CARDPOOL_INDEX_KEY,
        ALLOWED_HOSTS="127.0.0.1",
        SITE_URL=url,
        SECURE_SSL_REDIRECT="false",
        SESSION_COOKIE_SECURE="false",
        CSRF_COOKIE_SECURE="false",
        STATIC_ROOT=str(tmp_path / "static"),
        DELIVERY_SWEEP_INTERVAL_SECONDS="1",
        CATALOG_CACHE_SECONDS="0",  # tests that change stock between two catalog views see it at once
        CONN_MAX_AGE="60",  # persistent connections, as compose runs (the settings' default)
    )
    env.update(overrides)
    collect = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parent.parent.parent,
    )
    if collect.returncode != 0:
        raise RuntimeError(collect.stderr)
    web = ServiceProcess(
        "web",
        [
            str(BIN / "gunicorn"),
            "kameng.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(web_workers),
            "--access-logfile",
            "-",
            "--logger-class",
            "kameng.log_redaction.GunicornLogger",
        ],
        env,
        tmp_path,
    )
    started: list[ServiceProcess] = [web]
    try:
        worker = start_worker(env, tmp_path, concurrency=2)
        started.append(worker)
        beat_process = None
        if beat:
            beat_process = ServiceProcess(
                "beat", [str(BIN / "celery"), "-A", "kameng", "beat", "--loglevel=INFO"], env, tmp_path
            )
            started.append(beat_process)
        web.wait_for_log("Booting worker")
        deadline = time.monotonic() + 30
        while not _answers(url):
            if time.monotonic() > deadline:
                raise TimeoutError(f"gunicorn did not answer:\n{web.log()[-4000:]}")
            time.sleep(0.05)
    except BaseException:
        for process in reversed(started):
            process.stop()
        raise
    return Shop(url=url, env=env, web=web, worker=worker, beat=beat_process)
