"""Start several callables at the same instant in threads, each with its own DB connection."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from django.db import connections


def run_together(*functions):
    """Run ``functions`` in parallel threads released by one barrier; return their results."""
    barrier = threading.Barrier(len(functions))

    def run(function):
        barrier.wait(timeout=10)
        try:
            return function()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=len(functions)) as pool:
        futures = [pool.submit(run, function) for function in functions]
        return [future.result() for future in futures]
