"""Answer a chat follow-up question from the FAQ, in Korean or English, with plain TF-IDF.

The FAQ is small (about 160 entries, a handful of phrasings each), so a lexical index built in
memory is enough and needs no model, service or dependency. Each entry is scored by cosine
similarity between the question and (a) its best-matching phrasing, (b) all its phrasings
together, so a paraphrase that borrows words from two phrasings still matches, and (c) its
answer, with a low weight because answers are long and wordy.

- English: lowercase words, a tiny suffix-stripping stemmer, stopwords dropped, and a short
  synonym table that maps everyday words onto the FAQ's words ("kid" -> "child").
- Korean: spacing and verb endings vary too much for words ("전염되나요", "전염돼요", "옮나요"),
  so each word loses its common ending or particle and is cut into character bigrams and
  trigrams; a stem of one syllable ("옮") is kept whole.

Scoping: the conversation knows the condition of the user's last result. Entries about it and
general entries are the candidates; a condition the question names outright joins them and is
preferred, since "is melanoma contagious?" after an acne result is about melanoma.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from knowledge.models import Condition, FaqEntry

# Below this score the best entry is not a confident match and `search` returns nothing. Chosen
# on the held-out questions in tests/knowledge/test_retrieval.py: paraphrases there score 0.3
# and more, while off-topic questions ("what's the weather tomorrow") score under 0.15.
MIN_SCORE = 0.22

# Weights of the three similarities (they add up to 1, so a score stays within 0..1).
WEIGHT_BEST_PHRASING = 0.55
WEIGHT_ALL_PHRASINGS = 0.3
WEIGHT_ANSWER = 0.15

# Entries of a condition the question does not name, when it names another one: a user who got
# "acne" and asks "is melanoma contagious?" means melanoma. General entries are not lowered.
UNNAMED_CONDITION_FACTOR = 0.7
# With no result and no condition named, condition-specific entries rank just below general
# entries that match as well ("general entries come first on ties").
NO_CONTEXT_FACTOR = 0.97

# Labels whose "name" is not something a user types ("Another skin condition").
_UNNAMEABLE_LABELS = frozenset({"other"})

# Everyday names for the conditions, on top of the names in the condition documents.
CONDITION_SYNONYMS: dict[str, dict[str, tuple[str, ...]]] = {
    "acne": {"en": ("pimple", "zit", "breakout", "blackhead"), "ko": ("여드름", "뾰루지")},
    "atopic_dermatitis": {"en": ("atopic eczema", "atopy"), "ko": ("아토피",)},
    "basal_cell_carcinoma": {"en": ("bcc", "skin cancer"), "ko": ("기저세포암", "피부암")},
    "benign_keratosis": {"en": ("sun spot", "age spot", "sunspot"), "ko": ("일광흑자",)},
    "eczema": {"en": ("eczema", "dermatitis"), "ko": ("습진",)},
    "fungal_infection": {
        "en": ("athlete's foot", "ringworm", "fungus", "fungal", "jock itch", "tinea"),
        "ko": ("무좀", "백선", "곰팡이", "완선", "어루러기", "진균"),
    },
    "melanocytic_nevus": {"en": ("mole", "nevus", "naevus"), "ko": ("점",)},
    "melanoma": {"en": ("melanoma", "skin cancer"), "ko": ("흑색종", "피부암")},
    "psoriasis_lichen_planus": {"en": ("psoriasis", "lichen planus"), "ko": ("건선", "편평태선")},
    "seborrheic_keratosis_benign_tumor": {
        "en": ("seborrheic keratosis", "seborrhoeic keratosis", "dermatofibroma"),
        "ko": ("검버섯", "지루각화증", "피부섬유종"),
    },
    "viral_infection": {
        "en": ("wart", "verruca", "cold sore", "herpes", "shingles", "molluscum"),
        "ko": ("사마귀", "물사마귀", "헤르페스", "대상포진", "수두"),
    },
}

_HANGUL = re.compile(r"[\uac00-\ud7a3]+")
_HANGUL_ANY = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")
_WORD = re.compile(r"[a-z0-9]+")

_EN_STOPWORDS = frozenset(
    """a about after all also am an and any anything are as at be been being but by can could
    did do does doing for from get got had has have having he her him his i i'm if in into is it
    its just me my myself of on or our she so some something than that the their them then there
    these they this those to too us very was we were what which who will with would you your
    yours please really much many""".split()
)

# Everyday English words mapped onto the words the FAQ uses (both sides are stemmed below).
_EN_SYNONYMS_RAW = {
    "kid": "child",
    "son": "child",
    "daughter": "child",
    "toddler": "child",
    "children": "child",
    "dermatologist": "doctor",
    "gp": "doctor",
    "physician": "doctor",
    "hospital": "doctor",
    "clinic": "doctor",
    "pregnancy": "pregnant",
    "expecting": "pregnant",
    "nursing": "breastfeeding",
    "contagious": "catch",
    "infectious": "catch",
    "moisturizer": "moisturiser",
    "ointment": "cream",
    "lotion": "cream",
    "photo": "picture",
    "pic": "picture",
    "image": "picture",
    "marks": "scar",
    "itchy": "itch",
    "scratch": "itch",
    "heal": "better",
    "clear": "better",
    "disappear": "away",
    "sunlight": "sun",
    "sunshine": "sun",
    "sunbathe": "sun",
    "tanning": "sun",
    "shower": "bath",
    "bathe": "bath",
    "cosmetics": "makeup",
    "foundation": "makeup",
    "concealer": "makeup",
    "eat": "food",
    "diet": "food",
    "deadly": "dangerous",
    "fatal": "dangerous",
    "die": "dangerous",
    "serious": "dangerous",
    "erase": "delete",
    "hereditary": "genetic",
    "inherit": "genetic",
}


def _stem_synonyms(raw: dict[str, str]) -> dict[str, str]:
    return {_stem(word): _stem(target) for word, target in raw.items()}


# Korean endings and particles, longest first: removing them lets "전염되나요" and "전염돼요"
# share the stem "전염". Only endings that are not also the end of a common noun are listed.
_KO_ENDINGS = tuple(
    sorted(
        """되나요 되나 됐어요 돼요 되요 될까요 되는지 됩니까 나요 인가요 일까요 할까요 을까요 까요
        해야 하나요 해요 했어요 하는데 하면 하고 하죠 할 해도 돼도 되도 되면 하는 한 했는데
        어요 아요 에요 예요 이에요 세요 주세요 줘요 줘 죠 요 습니까 니까 는데 은데 인데
        으면 면 어도 아도 도 에서 에게 한테 께 으로 로 랑 이랑 하고 처럼 까지 부터 만
        은 는 이 가 을 를 에 의 와 과""".split(),
        key=len,
        reverse=True,
    )
)

_KO_ENDINGS_SET = frozenset(_KO_ENDINGS) | {"하", "되", "해", "하나", "할까", "되어요"}

# One-syllable particles: "점이" may be the noun "점" plus "이".
_KO_PARTICLES = frozenset("은는이가을를에도의와과")

_KO_SYNONYMS = {
    # "옮다" and "전염" are the same question; so are "피부과" and "병원".
    "옮": "전염",
    "옮기": "전염",
    "옮아": "전염",
    "옮을": "전염",
    "피부과": "병원",
    "의사": "병원",
    "진료": "병원",
    "아기": "아이",
    "애기": "아이",
    "자녀": "아이",
    "아들": "아이",
    "딸": "아이",
    "어린이": "아이",
    "햇볕": "햇빛",
    "햇살": "햇빛",
    "자외선": "햇빛",
    "크림": "연고",
    "재발": "다시",
    "또": "다시",
    "자꾸": "다시",
}


@dataclass(frozen=True)
class FaqMatch:
    entry: FaqEntry
    score: float  # 0..1, cosine-based; at least MIN_SCORE


def question_language(text: str) -> str:
    """"ko" when the text has any Hangul, else "en"."""
    return "ko" if _HANGUL_ANY.search(text) else "en"


def _stem(word: str) -> str:
    """A deliberately tiny stemmer: enough for plurals, -ing/-ed and a few noun endings."""
    if len(word) <= 3:
        return word
    for suffix, replacement in (
        ("ies", "y"),
        ("ious", "i"),
        ("ing", ""),
        ("ed", ""),
        ("es", "e"),
        ("s", ""),
        ("ly", ""),
        ("y", ""),
    ):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)] + replacement
            break
    # "scarring" -> "scarr" -> "scar", "popping" -> "pop"
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "lsz":
        word = word[:-1]
    # "remove", "removed" and "removing" all become "remov"
    return word.removesuffix("e") if len(word) > 3 else word


def _english_words(text: str) -> list[str]:
    """Lowercase words, "athlete's" -> "athlete", "isn't" -> "is not"."""
    text = text.lower().replace("\u2019", "'")
    text = re.sub(r"'s\b", "", text).replace("n't", " not")
    return _WORD.findall(text)


_EN_SYNONYMS = _stem_synonyms(_EN_SYNONYMS_RAW)


def _english_terms(text: str) -> list[str]:
    stems = (_stem(word) for word in _english_words(text) if word not in _EN_STOPWORDS)
    return [_EN_SYNONYMS.get(stem, stem) for stem in stems]


def _korean_stem(word: str) -> str:
    """The word without its endings and particles; "" for a word that is all ending ("하나요")."""
    word = word.replace("돼", "되")  # "돼요" is "되어요" contracted
    if word in _KO_ENDINGS_SET:
        return ""
    # Strip endings repeatedly ("옮을까요" -> "옮을" -> "옮"), never the whole word.
    changed = True
    while changed:
        changed = False
        for ending in _KO_ENDINGS:
            if word.endswith(ending) and len(word) - len(ending) >= 1:
                # One-syllable endings only come off longer words: "아이" keeps its "이".
                if len(ending) == 1 and len(word) < 3:
                    continue
                word = word[: -len(ending)]
                changed = True
                break
    return word


def _korean_terms(text: str) -> list[str]:
    terms: list[str] = []
    for word in _HANGUL.findall(text):
        stem = _korean_stem(word)
        stem = _KO_SYNONYMS.get(stem, stem)
        if not stem:
            continue
        if len(stem) == 1:
            terms.append(stem)
            continue
        if len(stem) == 2 and stem[1] in _KO_PARTICLES:
            terms.append(stem[0])  # "점이" may be "점" + particle; "아이" costs a stray "아"
        for size in (2, 3):
            terms.extend(stem[i : i + size] for i in range(len(stem) - size + 1))
    # Latin words in a Korean question ("AI", "ABCDE", "119") count too.
    terms.extend(_english_terms(_HANGUL.sub(" ", text)))
    return terms


def terms(text: str, language: str) -> list[str]:
    """The index terms of `text` in `language` ("ko" or "en")."""
    return _korean_terms(text) if language == "ko" else _english_terms(text)


Vector = dict[str, float]


def _cosine(a: Vector, b: Vector) -> float:
    if len(a) > len(b):
        a, b = b, a
    return sum(weight * b.get(term, 0.0) for term, weight in a.items())


class _LanguageIndex:
    """TF-IDF vectors of every entry's phrasings, all phrasings together, and answer."""

    def __init__(self, entries: Sequence[FaqEntry], language: str):
        self.language = language
        phrasings = [
            [terms(text, language) for text in entry.questions.get(language) or []]
            for entry in entries
        ]
        answers = [terms(entry.answer.get(language) or "", language) for entry in entries]
        # IDF over phrasings and answers alike, so answer-only words still get a weight.
        documents = [doc for docs in phrasings for doc in docs] + answers
        frequency = Counter(term for doc in documents for term in set(doc))
        self.idf = {term: math.log(1 + len(documents) / n) for term, n in frequency.items()}
        self.max_idf = math.log(1 + len(documents))
        self.best = [[self._vector(doc) for doc in docs] for docs in phrasings]
        self.all = [self._vector([t for doc in docs for t in doc]) for docs in phrasings]
        self.answer = [self._vector(doc) for doc in answers]

    def _vector(self, doc: Iterable[str]) -> Vector:
        counts = Counter(doc)
        vector = {
            term: (1 + math.log(n)) * self.idf.get(term, self.max_idf) for term, n in counts.items()
        }
        norm = math.sqrt(sum(w * w for w in vector.values()))
        return {term: w / norm for term, w in vector.items()} if norm else {}

    def query(self, text: str) -> Vector:
        # Words the FAQ never uses carry no evidence for any entry, but they do show the
        # question is about something else: they stay in the norm with the highest weight.
        return self._vector(terms(text, self.language))

    def score(self, position: int, query: Vector) -> float:
        best = max((_cosine(query, v) for v in self.best[position]), default=0.0)
        return (
            WEIGHT_BEST_PHRASING * best
            + WEIGHT_ALL_PHRASINGS * _cosine(query, self.all[position])
            + WEIGHT_ANSWER * _cosine(query, self.answer[position])
        )


def _condition_names(
    conditions: Iterable[Condition],
) -> dict[str, dict[str, list[str]]]:
    """label -> language -> names, from the documents ("Fungal skin infection (ringworm, ...)"
    gives every part) plus `CONDITION_SYNONYMS`."""
    names: dict[str, dict[str, list[str]]] = {}
    for condition in conditions:
        if condition.label in _UNNAMEABLE_LABELS:
            continue
        for language in ("en", "ko"):
            text = condition.names.get(language) or ""
            parts = re.split(r"\(|\)|,|·| or | 또는 ", text)
            found = names.setdefault(condition.label, {}).setdefault(language, [])
            found.extend(p.strip() for p in parts if p.strip() and not p.strip().startswith("기타"))
    for label, by_language in CONDITION_SYNONYMS.items():
        for language, synonyms in by_language.items():
            names.setdefault(label, {}).setdefault(language, []).extend(synonyms)
    return names


class FaqIndex:
    """Finds the FAQ entries that answer a follow-up question."""

    def __init__(self, entries: list[FaqEntry], conditions: Sequence[Condition] = ()):
        self.entries = list(entries)
        self._indexes = {language: _LanguageIndex(self.entries, language) for language in ("en", "ko")}
        # English names as stemmed word sequences, Korean names without spaces, each with the
        # labels it names ("skin cancer": two); longest first, so "atopic eczema" is found
        # before "eczema" claims its last word.
        en_names: dict[tuple[str, ...], list[str]] = {}
        ko_names: dict[str, list[str]] = {}
        for label, by_language in _condition_names(conditions).items():
            for name in by_language.get("en", []):
                words = tuple(_stem(word) for word in _english_words(name))
                if words and label not in en_names.setdefault(words, []):
                    en_names[words].append(label)
            for name in by_language.get("ko", []):
                compact = "".join(name.split())
                if compact and label not in ko_names.setdefault(compact, []):
                    ko_names[compact].append(label)
        self._en_names = sorted(en_names.items(), key=lambda item: -len(item[0]))
        self._ko_names = sorted(ko_names.items(), key=lambda item: -len(item[0]))

    def mentioned_labels(self, question: str) -> list[str]:
        """Condition labels the question names, in the order it names them."""
        found: list[tuple[int, str]] = []
        words = [_stem(word) for word in _english_words(question)]
        taken = [False] * len(words)
        for name, labels in self._en_names:
            for start in range(len(words) - len(name) + 1):
                span = range(start, start + len(name))
                if tuple(words[start : start + len(name)]) == name and not any(
                    taken[i] for i in span
                ):
                    for i in span:
                        taken[i] = True
                    found.extend((start, label) for label in labels)
        # Korean after English: a question rarely mixes them, and the order in each is kept.
        found.extend((len(words) + at, label) for at, label in self._korean_mentions(question))
        mentioned: list[str] = []
        for _, label in sorted(found):
            if label not in mentioned:
                mentioned.append(label)
        return mentioned

    def _korean_mentions(self, question: str) -> list[tuple[int, str]]:
        text = "".join(question.split())
        taken = [False] * len(text)
        found: list[tuple[int, str]] = []
        words = _HANGUL.findall(question)
        for name, labels in self._ko_names:
            if len(name) == 1:
                # "점" (mole) is inside many words ("반점", "점점"): only the word itself, or
                # the word and a particle ("점이"), counts.
                if any(w == name or (w[:1] == name and w[1:] in _KO_ENDINGS_SET) for w in words):
                    found.extend((text.find(name), label) for label in labels)
                continue
            start = text.find(name)
            while start >= 0:
                span = range(start, start + len(name))
                if not any(taken[i] for i in span):
                    for i in span:
                        taken[i] = True
                    found.extend((start, label) for label in labels)
                start = text.find(name, start + 1)
        return found

    def search(
        self, question: str, language: str, label: str | None, limit: int = 3
    ) -> list[FaqMatch]:
        """The entries that best answer `question`, best first; [] when none is confident.

        `label` is the condition of the user's last result, or None when there is none.
        """
        index = self._indexes.get(language) or self._indexes[question_language(question)]
        query = index.query(question)
        if not query:
            return []
        named = set(self.mentioned_labels(question))
        scoped = {label} | named if label is not None else named
        matches: list[tuple[float, int, FaqMatch]] = []
        for position, entry in enumerate(self.entries):
            if entry.label is None:
                factor, tier = 1.0, 0
            elif scoped and entry.label in scoped:
                factor = 1.0 if not named or entry.label in named else UNNAMED_CONDITION_FACTOR
                tier = 1
            elif not scoped:
                # No result and no condition named: every condition's entries may answer, so
                # the caller can still see that "is it contagious?" needs a condition.
                factor, tier = NO_CONTEXT_FACTOR, 1
            else:
                continue
            score = factor * index.score(position, query)
            if score >= MIN_SCORE:
                matches.append((score, tier, FaqMatch(entry, round(min(score, 1.0), 4))))
        matches.sort(key=lambda item: (-item[0], item[1]))
        return [match for _, _, match in matches[:limit]]
