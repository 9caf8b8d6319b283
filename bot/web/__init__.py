"""The aiohttp server: the web chat, its JSON API, Telegram's webhook, /healthz and the admin panel.

- `app.py` builds the root application (`build_web_app`) and owns the Telegram transport's
  lifecycle, so one process serves the web chat and the bot together;
- `chat.py` the chat page and its API, `webhook.py` Telegram's webhook;
- `admin/` the admin panel: its own application, mounted at /admin, with its own middleware;
- `keys.py` the app keys they share.

Nothing is imported here: `bot.settings` imports `bot.web.admin.auth` (the password hash check),
and a factory in this file would make that import load the whole server, settings included.
"""
