"""Outbox handlers for tests: they record each run and fail as a test scripts them."""

from __future__ import annotations

RUNS: list[tuple[str, int]] = []
FAILURES: dict[str, int] = {}  # handler name → how many of its next runs raise


def _run(name: str, event) -> None:
    RUNS.append((name, event.id))
    if FAILURES.get(name, 0) > 0:
        FAILURES[name] -= 1
        raise RuntimeError(f"{name} failed on purpose")


def first(event) -> None:
    _run("first", event)


def second(event) -> None:
    _run("second", event)
