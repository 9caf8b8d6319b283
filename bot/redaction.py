"""Secrets never reach a log, at any level.

python-telegram-bot logs the Bot API URL at DEBUG ("Set Bot API URL: .../bot<TOKEN>"), and the
HTTP libraries' request lines and exceptions carry the same URL: whoever can read the logs could
then drive the bot. A handler filter would only cover the handlers we configure (not pytest's,
not an operator's own), so redaction happens where every record is made: a log record factory
that rewrites the message (and any traceback text) before any handler sees it.
"""

from __future__ import annotations

import logging
import threading

REDACTED = "[REDACTED]"
_secrets: set[str] = set()
_lock = threading.Lock()
_previous_factory = None


def redact_in_logs(*secrets: str | None) -> None:
    """From now on, every log record shows these strings as [REDACTED] (idempotent)."""
    global _previous_factory
    with _lock:
        for secret in secrets:
            if not secret or len(secret) < 8:  # a short value would blank out ordinary words
                continue
            _secrets.add(secret)
            # A bot token is "<bot id>:<secret>"; the id is public, the rest is not, and a URL
            # may carry the colon percent-encoded: redact the secret part on its own too.
            _, colon, rest = secret.partition(":")
            if colon and len(rest) >= 8:
                _secrets.add(rest)
        if _previous_factory is None:
            _previous_factory = logging.getLogRecordFactory()
            logging.setLogRecordFactory(_redacting_factory)


def redact(text: str) -> str:
    for secret in sorted(_secrets, key=len, reverse=True):  # the whole token before its part
        text = text.replace(secret, REDACTED)
    return text


def _redacting_factory(*args, **kwargs) -> logging.LogRecord:
    record = _previous_factory(*args, **kwargs)
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a malformed record: logging reports it on emit
        return record
    clean = redact(message)
    if clean != message:
        record.msg, record.args = clean, ()
    if record.exc_info and not record.exc_text:
        # Formatters reuse exc_text when it is set: the traceback is rendered here, redacted.
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    return record
