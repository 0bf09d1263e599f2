"""A local SMTP server that keeps and logs the email it receives instead of delivering it: `ruledesk serve --mail-sink` (demos, trials).

It is aiosmtpd (installed with ruledesk's test extra, ``pip install aiosmtpd`` otherwise) on a free
loopback port.  Each message is logged as one JSON line, ``{"msg": "mail received", "from", "to",
"subject", "message_id", "parts"}``, so the email the rules send is seen in the daemon's log.
"""

from __future__ import annotations

import email
import email.policy
import logging
import socket
import threading
from typing import Any

log = logging.getLogger("ruledesk.mailsink")


class MailSinkUnavailable(RuntimeError):
    """aiosmtpd is not installed."""


class MailSink:
    """``MailSink().start()``: an SMTP server on 127.0.0.1 keeping what it receives (``messages``)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port or _free_port(host)
        self.messages: list[email.message.EmailMessage] = []
        self._lock = threading.Lock()
        self._controller: Any = None

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def start(self) -> "MailSink":
        try:
            from aiosmtpd.controller import Controller  # noqa: PLC0415 -- only --mail-sink needs it
        except ImportError as exc:
            raise MailSinkUnavailable("--mail-sink needs aiosmtpd (pip install aiosmtpd)") from exc
        self._controller = Controller(self, hostname=self.host, port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """aiosmtpd's hook: keep the message and log what it is."""
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._lock:
            self.messages.append(message)
        parts = [part.get_content_type() for part in message.walk() if not part.is_multipart()]
        log.info({"msg": "mail received", "from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                  "subject": str(message.get("Subject", "")).strip(), "message_id": str(message.get("Message-ID", "")),
                  "parts": parts})
        return "250 OK"


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]
