"""Every sentence a user reads, rendered from the jinja2 templates in bot/templates/chat/<lang>/.

Templates are autoescaped HTML of the small subset that Telegram's HTML parse mode accepts
(<b>, <i>, <a href>), so the same text goes to Telegram and to the web chat, and content an
admin typed (care steps, FAQ answers) can never inject markup. Short strings (button labels,
confidence words) are `{% set %}` variables of `words.j2`, read through the template's module.
"""

from __future__ import annotations

import bisect
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


HANGUL_SYLLABLES = range(0xAC00, 0xD7A4)


def korean_particle(word: str, after_consonant: str, after_vowel: str) -> str:
    """The form of a Korean particle that follows `word`: "이라고" after a final consonant
    (batchim: 습진이라고, 건선이라고), "라고" after a vowel (사마귀라고). A name ending in a
    bracket is read to the last syllable inside it; one ending in Latin letters or digits gets
    the written both-ways form "(이)라고", as a person would write it."""
    for char in reversed(word):
        if ord(char) in HANGUL_SYLLABLES:
            has_batchim = (ord(char) - HANGUL_SYLLABLES.start) % 28 != 0
            return after_consonant if has_batchim else after_vowel
        if char.isalnum():
            break
    extra = after_consonant.removesuffix(after_vowel)
    return f"({extra}){after_vowel}" if extra != after_consonant else after_consonant


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
        self.environment.filters["particle"] = korean_particle

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


# Telegram's HTML parse mode (core.telegram.org/bots/api#html-style): these tags, properly nested;
# "<" and "&" only as part of a tag or of one of these entities. Anything else and Telegram refuses
# the whole message ("can't parse entities"), so the user gets nothing.
TELEGRAM_TAGS = frozenset(
    "b strong i em u ins s strike del span tg-spoiler a code pre blockquote tg-emoji".split()
)
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)((?:\s+[^<>]*)?)>")
_ENTITY = re.compile(r"&(?:lt|gt|amp|quot|#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6});")
_PLAIN_RUN = re.compile(r"[^<&]+")
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


class MessageSplitError(ValueError):
    """The text cannot be cut into valid messages (a single tag longer than the limit)."""


def _unescape(entity: str) -> str:
    name = entity[1:-1]
    if name[:2] in ("#x", "#X"):
        return chr(int(name[2:], 16))
    if name.startswith("#"):
        return chr(int(name[1:]))
    return _NAMED[name]


def _scan(text: str) -> tuple[list[str], str]:
    """Telegram's reading of `text` in HTML mode: (problems, the plain text a user sees)."""
    problems: list[str] = []
    plain: list[str] = []
    stack: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "<":
            tag = _TAG.match(text, i)
            if tag is None:
                problems.append(f"a bare '<' at character {i} (write &lt;)")
                plain.append(char)
                i += 1
                continue
            closing, name = tag.group(1) == "/", tag.group(2).lower()
            if name not in TELEGRAM_TAGS:
                problems.append(f"unsupported tag <{name}> at character {i}")
            elif closing:
                if not stack or stack[-1] != name:
                    expected = f"</{stack[-1]}>" if stack else "no end tag"
                    problems.append(f"</{name}> at character {i} where {expected} belongs")
                else:
                    stack.pop()
            else:
                stack.append(name)
            i = tag.end()
        elif char == "&":
            entity = _ENTITY.match(text, i)
            if entity is None:
                problems.append(f"a bare '&' at character {i} (write &amp;)")
                plain.append(char)
                i += 1
            else:
                plain.append(_unescape(entity.group(0)))
                i = entity.end()
        else:
            run = _PLAIN_RUN.match(text, i)  # skip to the next "<" or "&" in one step
            plain.append(run.group(0))
            i = run.end()
    if stack:
        problems.append(f"<{stack[-1]}> is never closed")
    return problems, "".join(plain)


def telegram_problems(text: str, limit: int = TELEGRAM_MESSAGE_LIMIT) -> list[str]:
    """Why Telegram would refuse `text` as one HTML message (empty list: it would accept it).

    Used before every send (the transport) and before an admin save (its preview), so that a
    reply Telegram would refuse is caught where it is made, not when a user is waiting for it."""
    problems, plain = _scan(text)
    if not plain.strip():
        problems.append("the message has no visible text")
    if len(plain) > limit:
        problems.append(f"{len(plain)} characters after formatting: over the limit of {limit}")
    return problems


def message_problems(text: str, limit: int = TELEGRAM_MESSAGE_LIMIT) -> list[str]:
    """`telegram_problems` of each message a long reply is split into (as the transport sends
    it), or why it cannot be split."""
    try:
        parts = split_message(text, limit)
    except MessageSplitError as error:
        return [str(error)]
    return [problem for part in parts for problem in telegram_problems(part, limit)]


def plain_text(text: str) -> str:
    """What a user would read: tags dropped, entities decoded (a fallback without formatting)."""
    return _scan(text)[1]


def split_message(text: str, limit: int = TELEGRAM_MESSAGE_LIMIT) -> list[str]:
    """Cut a long reply into messages of at most `limit` characters each, every one valid HTML.

    Cuts fall at a line break if one is in reach, else at a space, else anywhere in plain text:
    never inside a tag or an entity (Telegram would refuse the part). Tags open at a cut are
    closed at the end of one part and opened again (with their attributes) at the start of the
    next, so formatting and links carry over. MessageSplitError if the limit cannot hold even
    the tags that must be re-opened (a limit far below any real one, or a huge tag)."""
    if len(text) <= limit:
        return [text]
    n = len(text)
    # Every tag and entity as (start, end), and the opening tags in force after each one: a cut
    # at k is safe unless a token starts before k and ends after it; what is open at k is what
    # the last token ending at or before k left open. Looked up by bisection, so a long reply
    # costs one pass of the regex engine, not a Python loop over its characters.
    starts: list[int] = []
    ends: list[int] = []
    after: list[tuple[tuple[str, str], ...]] = []
    stack: tuple[tuple[str, str], ...] = ()
    for marker in re.finditer(r"[<&]", text):
        i = marker.start()
        if starts and i < ends[-1]:
            continue  # inside a tag already read (an "&" in an attribute)
        token = (_TAG if text[i] == "<" else _ENTITY).match(text, i)
        if token is None:
            continue
        if text[i] == "<":
            name = token.group(2).lower()
            if token.group(1):
                if stack and stack[-1][0] == name:
                    stack = stack[:-1]
            else:
                stack = (*stack, (name, token.group(0)))
        starts.append(i)
        ends.append(token.end())
        after.append(stack)

    def safe(k: int) -> bool:
        j = bisect.bisect_left(starts, k) - 1  # the last token starting before k
        return j < 0 or ends[j] <= k

    def opened(k: int) -> tuple[tuple[str, str], ...]:
        j = bisect.bisect_right(ends, k) - 1
        return after[j] if j >= 0 else ()

    def reopen(k: int) -> str:
        return "".join(tag for _, tag in opened(k))

    def close(k: int) -> str:
        return "".join(f"</{name}>" for name, _ in reversed(opened(k)))

    def fits(start: int, end: int) -> bool:
        return safe(end) and len(reopen(start)) + (end - start) + len(close(end)) <= limit

    parts: list[str] = []
    start = 0
    while start < n:
        if len(reopen(start)) + (n - start) <= limit:
            end = n
        else:
            end = _cut(text, start, min(n - 1, start + limit - len(reopen(start))), fits)
            if end is None:
                raise MessageSplitError(
                    f"cannot split at {limit} characters: the tags to carry over do not fit"
                )
        part = reopen(start) + text[start:end] + close(end)
        if plain_text(part).strip():
            parts.append(part.strip("\n"))
        start = end
        while start < n and text[start] == "\n":  # the line break the cut was made at
            start += 1
    return parts


def _cut(text: str, start: int, highest: int, fits) -> int | None:
    """The best place to end a part that starts at `start`: the last line break that fits, else
    the last space, else the last safe position; None when nothing after `start` fits."""
    for separator in ("\n", " "):
        end = text.rfind(separator, start + 1, highest + 1)
        while end > start:
            if fits(start, end):
                return end
            end = text.rfind(separator, start + 1, end)
    for end in range(highest, start, -1):
        if fits(start, end):
            return end
    return None
