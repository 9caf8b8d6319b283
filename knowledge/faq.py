"""The seed FAQ: one JSON file per model label (plus general.json), loaded and checked.

Each file in `FAQ_DIR` is a JSON list of `FaqEntry` objects. `load_faq` reads them all;
`validate_faq` lists what is wrong with a set of entries (from the files or from an admin edit)
as plain sentences, an empty list meaning the entries are fine to serve.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from knowledge.models import LANGUAGES, FaqEntry, faq_from_dict

FAQ_DIR = Path(__file__).resolve().parent / "content" / "faq"

MIN_PHRASINGS = 2
_HANGUL = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")


class FaqFileError(ValueError):
    """A FAQ file is not valid JSON or does not hold a list of FAQ entries."""


def load_faq(directory: Path | str = FAQ_DIR) -> list[FaqEntry]:
    """Every entry of every `*.json` file in `directory`, files in name order."""
    entries: list[FaqEntry] = []
    for path in sorted(Path(directory).glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise FaqFileError(f"{path.name}: cannot read FAQ file: {error}") from error
        if not isinstance(data, list):
            raise FaqFileError(f"{path.name}: expected a JSON list of FAQ entries")
        for index, item in enumerate(data):
            if not isinstance(item, dict):
                raise FaqFileError(f"{path.name}[{index}]: expected a JSON object")
            try:
                entries.append(faq_from_dict(item))
            except TypeError as error:
                raise FaqFileError(f"{path.name}[{index}]: {error}") from error
    return entries


def has_hangul(text: str) -> bool:
    return bool(_HANGUL.search(text))


def validate_faq(entries: Iterable[FaqEntry], labels: Iterable[str]) -> list[str]:
    """Problems with `entries`, one sentence each; `labels` are the model's labels."""
    entries = list(entries)
    known = set(labels)
    problems: list[str] = []

    counts = Counter(entry.id for entry in entries)
    for entry_id, count in sorted(counts.items()):
        if count > 1:
            problems.append(f"{entry_id}: duplicate id ({count} entries)")

    for entry in entries:
        name = entry.id or "<entry without id>"
        if not entry.id:
            problems.append(f"{name}: empty id")
        if entry.label is not None and entry.label not in known:
            problems.append(f"{name}: unknown label {entry.label!r}")
        questions = entry.questions if isinstance(entry.questions, dict) else {}
        answer = entry.answer if isinstance(entry.answer, dict) else {}
        for language in LANGUAGES:
            phrasings = [
                text
                for text in questions.get(language) or []
                if isinstance(text, str) and text.strip()
            ]
            if len(phrasings) < MIN_PHRASINGS:
                problems.append(
                    f"{name}: {len(phrasings)} {language!r} phrasing(s), "
                    f"need at least {MIN_PHRASINGS}"
                )
            text = answer.get(language)
            if not isinstance(text, str) or not text.strip():
                problems.append(f"{name}: empty {language!r} answer")
        for text in questions.get("ko") or []:
            if isinstance(text, str) and text.strip() and not has_hangul(text):
                problems.append(f"{name}: Korean phrasing without Hangul: {text!r}")
        ko_answer = answer.get("ko")
        if isinstance(ko_answer, str) and ko_answer.strip() and not has_hangul(ko_answer):
            problems.append(f"{name}: Korean answer without Hangul")
    return problems
