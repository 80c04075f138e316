"""The scratch database each benchmark creates afresh on the local PostgreSQL."""

from __future__ import annotations


def database_recreate(server: str, name: str) -> str:
    """Drop and create database ``name`` on ``server`` (postgres://user@host:port); returns its URL."""
    import psycopg2

    admin = psycopg2.connect(f"{server}/postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cursor.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    return f"{server}/{name}"
