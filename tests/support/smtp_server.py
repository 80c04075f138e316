"""A real SMTP server on loopback (aiosmtpd) whose answers a test scripts."""

from __future__ import annotations

import socket

from aiosmtpd.controller import Controller


class ScriptedHandler:
    """Answers DATA with the queued replies ("451 …" refuses for now), then accepts; refuses
    every recipient in ``refuse_recipients`` with a permanent 550."""

    def __init__(self) -> None:
        self.data_replies: list[str] = []
        self.refuse_recipients: set[str] = set()
        self.received: list[dict] = []
        self.attempts = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse_recipients:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.attempts += 1
        if self.data_replies:
            return self.data_replies.pop(0)
        self.received.append({"to": list(envelope.rcpt_tos), "content": envelope.content.decode("utf-8", "replace")})
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def smtp_server_start() -> tuple[Controller, ScriptedHandler]:
    handler = ScriptedHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    return controller, handler


class BlockingHandler(ScriptedHandler):
    """Holds every RCPT until ``release`` is set: a send caught in the middle of the conversation."""

    def __init__(self) -> None:
        super().__init__()
        import threading

        self.release = threading.Event()
        self.waiting = threading.Event()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        import asyncio

        if not self.release.is_set():
            self.waiting.set()
            while not self.release.is_set():
                await asyncio.sleep(0.02)
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)
