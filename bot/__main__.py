"""`python -m bot`: start the assistant (what `make run` runs)."""

from __future__ import annotations

import logging
import sys

from aiohttp import web

from bot.app import build_assistant
from bot.settings import Settings, SettingsError
from bot.web import build_web_app


def main() -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"Configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        assistant = build_assistant(settings)
    except SettingsError as exc:
        print(f"Configuration error: {exc}", file=sys.stderr)
        return 2
    if settings.telegram_token:
        logging.getLogger(__name__).warning(
            "TELEGRAM_BOT_TOKEN is set, but the Telegram transport is not built yet: "
            "serving the web chat only."
        )
    print(
        f"Skin-care assistant on http://{settings.web_host}:{settings.web_port}/ "
        f"(health: /healthz)",
        flush=True,
    )
    try:
        web.run_app(
            build_web_app(assistant),
            host=settings.web_host,
            port=settings.web_port,
            print=None,
        )
    except SettingsError as exc:  # raised while opening the store at start-up
        print(f"Configuration error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
