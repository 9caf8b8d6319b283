"""`python -m bot`: start the assistant (what `make run` runs)."""

from __future__ import annotations

import ctypes
import getpass
import logging
import sys

from aiohttp import web

from bot.app import build_assistant
from bot.settings import Settings, SettingsError
from bot.web.admin.auth import hash_password
from bot.web.app import build_web_app
from knowledge.embeddings import close_shared_encoder


def hash_password_command() -> int:
    """`python -m bot hash-password`: prints the value for SKINCARE_ADMIN_PASSWORD_HASH."""
    if sys.stdin.isatty():
        password = getpass.getpass("Admin password: ")
        if getpass.getpass("Again: ") != password:
            print("The passwords differ.", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\n")
    if len(password) < 10:
        print("Use at least 10 characters.", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


def return_large_frees_to_the_system() -> None:
    """Blocks of 4 MB and more (photo pixels, upload bodies) mapped from the OS and unmapped
    when freed. glibc otherwise raises its mmap threshold after the first such free (up to 32
    MB) and serves later blocks from per-thread heaps that seldom shrink: with photos decoded on
    several worker threads the process kept hundreds of MB it no longer used (bench/memory.py,
    a dozen 40 MP RGBA PNGs at once: peak RSS 1,166 MB, 715 MB with a fixed threshold)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return  # not glibc (musl, macOS): its allocator behaves otherwise
    m_mmap_threshold = -3  # from <malloc.h>
    libc.mallopt(m_mmap_threshold, 4 * 2**20)


def main() -> int:
    if sys.argv[1:] == ["hash-password"]:
        return hash_password_command()
    return_large_frees_to_the_system()
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"Configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # httpx logs every Bot API URL at INFO, and those URLs contain the bot token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        assistant = build_assistant(settings)
    except SettingsError as exc:
        print(f"Configuration error: {exc}", file=sys.stderr)
        return 2
    telegram = ""
    if settings.telegram_token:
        telegram = " and on Telegram (" + ("webhook" if settings.webhook_url else "polling") + ")"
    print(
        f"Skin-care assistant on http://{settings.web_host}:{settings.web_port}/{telegram} "
        f"(health: /healthz)",
        flush=True,
    )
    app = build_web_app(assistant)
    app.on_shutdown.append(stop_encoder)
    try:
        web.run_app(
            app,
            host=settings.web_host,
            port=settings.web_port,
            keepalive_timeout=settings.web_idle_timeout_s,
            print=None,
        )
    except SettingsError as exc:  # raised while opening the store at start-up
        print(f"Configuration error: {exc}", file=sys.stderr)
        return 2
    return 0


async def stop_encoder(_app: web.Application) -> None:
    # Here, not in the app's own clean-up: tests run many apps on one process-wide encoder.
    close_shared_encoder()


if __name__ == "__main__":
    raise SystemExit(main())
