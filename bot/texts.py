"""Every sentence a user reads, rendered from the jinja2 templates in bot/templates/chat/<lang>/.

Templates are autoescaped HTML of the small subset that Telegram's HTML parse mode accepts
(<b>, <i>, <a href>), so the same text goes to Telegram and to the web chat, and content an
admin typed (care steps, FAQ answers) can never inject markup. Short strings (button labels,
confidence words) are `{% set %}` variables of `words.j2`, read through the template's module.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from knowledge.models import LANGUAGES  # noqa: F401 (the one definition, re-exported)

# Inside the package, so that a plain (non-editable) install carries them.
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
CHAT_TEMPLATES = TEMPLATES_DIR / "chat"
TELEGRAM_MESSAGE_LIMIT = 4096
_BLANK_LINES = re.compile(r"\n{3,}")


def language_for(code: str | None) -> str:
    """Korean for a Korean locale ("ko", "ko-KR"), English for everything else."""
    return "ko" if (code or "").lower().startswith("ko") else "en"


class Texts:
    def __init__(self, directory: Path = CHAT_TEMPLATES):
        self.environment = Environment(
            loader=FileSystemLoader(directory),
            autoescape=select_autoescape(default=True, default_for_string=True),
            undefined=StrictUndefined,  # a missing variable is a bug, not an empty sentence
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,  # no stat() of the template file on every reply; restart to edit
        )

    def render(self, template: str, lang: str, /, **context: Any) -> str:
        text = self.environment.get_template(f"{lang}/{template}.j2").render(lang=lang, **context)
        return _BLANK_LINES.sub("\n\n", text).strip()

    def word(self, name: str, lang: str) -> str:
        """A short string from words.j2 (a button label, a confidence word)."""
        return str(getattr(self.environment.get_template(f"{lang}/words.j2").module, name))

    def template_names(self, lang: str) -> list[str]:
        prefix = f"{lang}/"
        return sorted(
            name[len(prefix) : -len(".j2")]
            for name in self.environment.list_templates(extensions=["j2"])
            if name.startswith(prefix)
        )


@cache
def default_texts() -> Texts:
    return Texts()


def split_message(text: str, limit: int = TELEGRAM_MESSAGE_LIMIT) -> list[str]:
    """Cut a long reply at paragraph (then line) boundaries so each part fits one message."""
    if len(text) <= limit:
        return [text]
    parts: list[str] = []
    current = ""
    for paragraph in text.split("\n"):
        while len(paragraph) > limit:  # one enormous line: cut it hard
            if current:
                parts.append(current)
                current = ""
            parts.append(paragraph[:limit])
            paragraph = paragraph[limit:]
        candidate = f"{current}\n{paragraph}" if current else paragraph
        if len(candidate) > limit:
            parts.append(current)
            current = paragraph
        else:
            current = candidate
    if current:
        parts.append(current)
    return [part.strip("\n") for part in parts if part.strip()]
