"""The root application's keys, in a module of their own: the chat, the webhook and the admin
sub-app (which reads them through `request.config_dict`) import these, not each other."""

from __future__ import annotations

from aiohttp import web
from jinja2 import Environment

from bot.app import Assistant

ASSISTANT = web.AppKey("assistant", Assistant)
TEMPLATES = web.AppKey("templates", Environment)
TELEGRAM = web.AppKey("telegram", object)  # bot.telegram.TelegramTransport, when a token is set
