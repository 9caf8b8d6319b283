"""Secrets registered with bot.redaction never show in a log record: message, args, traceback."""

from __future__ import annotations

import logging

from bot.redaction import REDACTED, redact_in_logs

TOKEN = "987654321:AAFakeSecretPartThatIsLongEnough_x"


def test_messages_arguments_and_tracebacks_are_redacted(caplog):
    redact_in_logs(TOKEN)
    log = logging.getLogger("some.library")
    caplog.set_level(logging.DEBUG)
    log.debug("GET http://api/bot%s/getMe", TOKEN)
    log.debug("encoded: /bot987654321%%3A%s", TOKEN.split(":")[1])
    try:
        raise ConnectionError(f"cannot reach http://api/bot{TOKEN}/getUpdates")
    except ConnectionError:
        log.exception("request failed")
    secret = TOKEN.split(":")[1]
    assert secret not in caplog.text and REDACTED in caplog.text
    assert all(secret not in (r.exc_text or "") for r in caplog.records)
    assert "request failed" in caplog.text and "ConnectionError" in caplog.text
