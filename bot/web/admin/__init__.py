"""The admin panel at /admin: its own aiohttp application (`app.py`), mounted by the root app.

Nothing is imported here, so that `bot.settings` can import `auth` (stdlib only) without
loading the panel.
"""
