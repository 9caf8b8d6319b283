"""Answer a chat follow-up question from the FAQ, in Korean or English, with plain TF-IDF.

The FAQ is small (about 160 entries, a handful of phrasings each), so a lexical index built in
memory is enough and needs no model, service or dependency.

- Condition names ("acne", "여드름", "athlete's foot") are found first: they decide which
  entries are candidates (below), then they are taken out of the text, so that what is left
  is the question itself ("is ... contagious?") and matches it under any condition.
- English: lowercase words, a tiny suffix-stripping stemmer, stopwords dropped, and a short
  synonym table that maps everyday words onto the FAQ's words ("kid" -> "child").
- Korean: spacing and verb endings vary too much for whole words ("전염되나요", "전염돼요",
  "옮나요"), so each word loses its endings and particles and is cut into character bigrams
  and trigrams plus a "loose stem" that survives conjugation (see `_korean_features`).
- An entry's score mixes TF-IDF cosines with its own phrasings, with its topic as every
  condition asks it (most of the weight: twelve conditions' "is it contagious?" phrasings are
  twelve times the paraphrases), and with its answer.

Scoping: the conversation knows the condition of the user's last result. Entries about it and
general entries are the candidates; a condition the question names outright joins them and is
preferred, since "is melanoma contagious?" after an acne result is about melanoma.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from knowledge.embeddings import SentenceEncoder
from knowledge.models import Condition, FaqEntry

# Below this score the best entry is not a confident match and `search` returns nothing. Chosen
# on a tuning set apart from the tests' held-out questions: off-topic questions ("what's the
# weather tomorrow", "지금 몇 시예요?") score under 0.19, except those that share the FAQ's one
# key word ("recommend a good movie": 0.23, general-medicines); most paraphrases score 0.25+.
MIN_SCORE = 0.2

# Weights of the four cosine similarities between the question and an entry (they add up to 1,
# so a score stays within 0..1): its best phrasing, the best phrasing of its topic under any
# condition, its topic's centroid, and its answer. Chosen by leaving each FAQ phrasing out in
# turn and asking it (the topic centroid carries most of the evidence; see `_LanguageIndex`).
WEIGHT_PHRASING = 0.1
WEIGHT_TOPIC_PHRASING = 0.1
WEIGHT_TOPIC = 0.6
WEIGHT_ANSWER = 0.2

# Entries of a condition the question does not name, when it names another one: a user who got
# "acne" and asks "is melanoma contagious?" means melanoma. General entries are not lowered.
UNNAMED_CONDITION_FACTOR = 0.7
# With no result and no condition named, a condition's entry answers for a condition the user
# may not have: it can still match ("is it contagious?" has no general answer), but a general
# entry that matches about as well comes first.
NO_CONTEXT_FACTOR = 0.8

# Treatments that point at one condition: "how long does benzoyl peroxide take to work?" is about
# acne. They count as naming it (they scope the search and are taken out of the topic text).
TREATMENT_HINTS: dict[str, dict[str, tuple[str, ...]]] = {
    "acne": {
        "en": ("benzoyl peroxide", "adapalene", "differin", "tretinoin", "isotretinoin"),
        "ko": ("벤조일퍼옥사이드", "과산화벤조일", "아다팔렌", "이소트레티노인"),
    },
    "fungal_infection": {
        "en": ("antifungal", "anti-fungal", "clotrimazole", "terbinafine", "ketoconazole"),
        "ko": ("항진균", "무좀약", "클로트리마졸", "테르비나핀", "케토코나졸"),
    },
    "viral_infection": {
        "en": ("acyclovir", "aciclovir", "valacyclovir", "antiviral"),
        "ko": ("아시클로버", "발라시클로버", "항바이러스"),
    },
}

# Labels whose "name" is not something a user types ("Another skin condition").
_UNNAMEABLE_LABELS = frozenset({"other"})

# Everyday names for the conditions, on top of the names in the condition documents.
CONDITION_SYNONYMS: dict[str, dict[str, tuple[str, ...]]] = {
    "acne": {"en": ("pimple", "zit", "breakout", "blackhead"), "ko": ("여드름", "뾰루지")},
    "atopic_dermatitis": {"en": ("atopic eczema", "atopy"), "ko": ("아토피",)},
    "basal_cell_carcinoma": {"en": ("bcc", "skin cancer"), "ko": ("기저세포암", "피부암")},
    "benign_keratosis": {"en": ("sun spot", "age spot", "sunspot"), "ko": ("일광 흑자",)},
    "eczema": {"en": ("eczema", "dermatitis"), "ko": ("습진",)},
    "fungal_infection": {
        "en": ("athlete's foot", "ringworm", "fungus", "fungal", "jock itch", "tinea"),
        "ko": ("무좀", "백선", "곰팡이", "완선", "어루러기", "진균"),
    },
    "melanocytic_nevus": {"en": ("mole", "nevus", "naevus"), "ko": ("점",)},
    "melanoma": {"en": ("melanoma", "skin cancer"), "ko": ("흑색종", "피부암")},
    "psoriasis_lichen_planus": {"en": ("psoriasis", "lichen planus"), "ko": ("건선", "편평태선")},
    "seborrheic_keratosis_benign_tumor": {
        "en": ("seborrhoeic keratosis", "benign growth", "benign tumour", "dermatofibroma"),
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
    "hydrocortisone": "steroid",
    "cortisone": "steroid",
    "lotion": "cream",
    "photo": "picture",
    "pic": "picture",
    "image": "picture",
    "marks": "scar",
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
    "operation": "surgery",
    "return": "recur",
    "inherit": "genetic",
}


# Phrases that mean one word the FAQ uses.
_EN_PHRASES = {
    "private parts": "genitals",
    "private part": "genitals",
    "private area": "genitals",
    "intimate area": "genitals",
    "come back": "recur",
    "comes back": "recur",
    "coming back": "recur",
    "came back": "recur",
}


def _stem_synonyms(raw: dict[str, str]) -> dict[str, str]:
    return {_stem(word): _stem(target) for word, target in raw.items()}


# Korean endings and particles, longest first: removing them lets "전염되나요" and "전염돼요"
# share the stem "전염". Only endings that are not also the end of a common noun are listed.
_KO_ENDINGS = tuple(
    sorted(
        """되나요 되나 되었어요 되요 될까요 되는지 됩니까 나요 인가요 일까요 할까요 을까요 까요
        해야 하나요 해요 했어요 하는데 하면 하고 하죠 해도 되도 되면 하는 했는데 했더니
        어요 아요 에요 예요 이에요 세요 주세요 줘요 줘 죠 요 습니까 니까 는데 은데 인데
        으면 면 어도 아도 도 에서 에게 한테 께 으로 로 랑 이랑 하고 처럼 까지 부터 만 마다
        어서 아서 해서 워서 지만 은 는 이 가 을 를 에 의 와 과 할 한""".split(),
        key=len,
        reverse=True,
    )
)
# Words that are all ending ("하나요", "돼요") say nothing about the topic.
_KO_ENDINGS_SET = frozenset(_KO_ENDINGS) | {"하", "되", "해", "하나", "할까", "되어요"}

# Words that wrap a question without telling its topic: "혹시 이거 ... 알려 주세요".
_KO_STOPWORDS = frozenset(
    """이거 이게 그거 그게 저거 혹시 좀 제가 저 제 내 나 저는 나는 알려 가르쳐 궁금 정말 진짜
    너무 그냥 수 있 거 것 게 건 때 더 안 못 잘""".split()
)

_KO_SYNONYMS = {
    # "옮다" and "전염" are the same question; so are "피부과" and "병원".
    "옮": "전염",
    "옮기": "전염",
    "옮겨": "전염",
    "옮아": "전염",
    "옮을": "전염",
    "피부과": "병원",
    "의사": "병원",
    "진료": "병원",
    "아기": "아이",
    "애기": "아이",
    "애": "아이",
    "애들": "아이",
    "아이들": "아이",
    "자녀": "아이",
    "아들": "아이",
    "딸": "아이",
    "어린이": "아이",
    "햇볕": "햇빛",
    "햇살": "햇빛",
    "자외선": "햇빛",
    "크림": "연고",
    "하이드로코르티손": "스테로이드",
    "하이드로코티손": "스테로이드",
    "의미": "뜻",
    "뭘": "뭐",
    "뭔": "뭐",
    "무엇": "뭐",
}

# The first consonant of each Hangul syllable, for the "loose stem" below.
_INITIALS = "ㄱㄲㄴㄷㄸㄹㅁㅂㅃㅅㅆㅇㅈㅉㅊㅋㅌㅍㅎ"


@dataclass(frozen=True)
class FaqMatch:
    entry: FaqEntry
    score: float  # 0..1, cosine-based; at least MIN_SCORE


def question_language(text: str) -> str:
    """ "ko" when the text has any Hangul, else "en"."""
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
    """Lowercase words, "athlete's" -> "athlete", "isn't" -> "is not"; no small numbers (a
    "2" in "after 2 weeks" says nothing about the topic, "119" does)."""
    text = text.lower().replace("\u2019", "'")
    text = re.sub(r"'s\b", "", text).replace("won't", "will not").replace("can't", "can not")
    text = text.replace("n't", " not")
    for phrase, word in _EN_PHRASES.items():
        text = text.replace(phrase, word)
    return [word for word in _WORD.findall(text) if not (word.isdigit() and len(word) < 3)]


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
            # One-syllable endings only come off longer words: "아이" keeps its "이".
            if word.endswith(ending) and len(word) - len(ending) >= (2 if len(ending) == 1 else 1):
                word = word[: -len(ending)]
                changed = True
                break
    return word


def _korean_features(stem: str) -> list[str]:
    """Character bigrams and trigrams of a stem, and its "loose stem"."""
    if len(stem) == 1:
        return [stem]
    if len(stem) == 2 and stem[1] in _KO_ENDINGS_SET:
        return [stem, stem[0]]  # "짜면", "점이": maybe "짜" / "점" and an ending
    features = [stem[i : i + size] for size in (2, 3) for i in range(len(stem) - size + 1)]
    # Conjugation changes the last syllable ("생기다": 생겨, 생길, 생겼; "가렵다": 가려워), rarely
    # its first consonant: all but the last syllable plus that consonant matches them all.
    last = ord(stem[-1]) - 0xAC00
    features.append(stem[:-1] + _INITIALS[last // 588])
    return features


def _korean_terms(text: str) -> dict[str, float]:
    # Each word counts once in all (unit norm over its features), so that a long word
    # ("스테로이드", 8 features) does not outweigh the short words that carry the question.
    weights: dict[str, float] = {}
    for word in _HANGUL.findall(text):
        stem = _korean_stem(word)
        stem = _KO_SYNONYMS.get(stem, stem)
        if not stem or stem in _KO_STOPWORDS:
            continue
        features = _korean_features(stem)
        for feature in features:
            weights[feature] = weights.get(feature, 0.0) + 1 / math.sqrt(len(features))
    # Latin words in a Korean question ("AI", "ABCDE", "119") count too.
    for term in _english_terms(_HANGUL.sub(" ", text)):
        weights[term] = weights.get(term, 0.0) + 1
    return weights


def terms(text: str, language: str) -> dict[str, float]:
    """The index terms of `text` in `language` ("ko" or "en"), with their weights."""
    if language == "ko":
        return _korean_terms(text)
    return dict(Counter(_english_terms(text)))


Vector = dict[str, float]


def _normalised(vector: dict[str, float]) -> Vector:
    norm = math.sqrt(sum(w * w for w in vector.values()))
    return {term: w / norm for term, w in vector.items()} if norm else {}


def _sum(vectors: Iterable[Vector]) -> dict[str, float]:
    total: dict[str, float] = {}
    for vector in vectors:
        for term, weight in vector.items():
            total[term] = total.get(term, 0.0) + weight
    return total


class _LanguageIndex:
    """TF-IDF vectors, in one language, of every entry's phrasings and answer, and of topics."""

    def __init__(self, entries: Sequence[FaqEntry], language: str, prepare: Callable[[str], str]):
        self.language = language
        self.prepare = prepare
        phrasings = [
            [self._terms(text) for text in entry.questions.get(language) or []] for entry in entries
        ]
        answers = [self._terms(entry.answer.get(language) or "") for entry in entries]
        # IDF over phrasings and answers alike, so answer-only words still get a weight.
        documents = [doc for docs in phrasings for doc in docs] + answers
        frequency = Counter(term for doc in documents for term in set(doc))
        self.idf = {term: math.log(1 + len(documents) / n) for term, n in frequency.items()}
        self.max_idf = math.log(1 + len(documents))
        self.best = [[self._vector(doc) for doc in docs] for docs in phrasings]
        self.answer = [self._vector(doc) for doc in answers]
        # Every condition asks the same questions ("is it contagious?"), and with the condition
        # names taken out their phrasings are interchangeable: an entry also matches what its
        # topic is asked under every other condition, which multiplies the paraphrases. The
        # topic's centroid rewards the words its phrasings share ("catch", "contagious") over
        # a word that one phrasing happens to use ("cat").
        self.topic = [entry.topic for entry in entries]
        topic_phrasings: dict[str, list[Vector]] = {}
        for entry, vectors in zip(entries, self.best, strict=True):
            topic_phrasings.setdefault(entry.topic, []).extend(vectors)
        self.topics = list(topic_phrasings)
        self.topic_centroid = {
            topic: _normalised(_sum(vectors)) for topic, vectors in topic_phrasings.items()
        }
        self._build_postings()

    def _build_postings(self) -> None:
        """An inverted index over every vector (phrasings, answers, topic centroids), so that a
        question's cosines with all of them come from its few terms' posting lists at once
        instead of one dictionary walk per vector (4.7x faster searches, the same rankings and
        scores on 9,534 test searches)."""
        rows: list[Vector] = []
        phrasing_entry: list[int] = []
        for position, vectors in enumerate(self.best):
            rows.extend(vectors)
            phrasing_entry.extend([position] * len(vectors))
        self._phrasing_entry = np.asarray(phrasing_entry, dtype=np.intp)
        self._answer_rows = slice(len(rows), len(rows) + len(self.answer))
        rows.extend(self.answer)
        self._centroid_rows = slice(len(rows), len(rows) + len(self.topics))
        rows.extend(self.topic_centroid[topic] for topic in self.topics)
        self._rows = len(rows)
        postings: dict[str, tuple[list[int], list[float]]] = {}
        for row, vector in enumerate(rows):
            for term, weight in vector.items():
                ids, weights = postings.setdefault(term, ([], []))
                ids.append(row)
                weights.append(weight)
        self._postings = {
            term: (np.asarray(ids, dtype=np.intp), np.asarray(weights, dtype=np.float64))
            for term, (ids, weights) in postings.items()
        }
        topic_number = {topic: number for number, topic in enumerate(self.topics)}
        self._entry_topic = np.asarray([topic_number[t] for t in self.topic], dtype=np.intp)

    def _vector(self, weights: dict[str, float]) -> Vector:
        # Sublinear term frequency: a word said three times is not three times the evidence.
        vector = {
            term: (1 + math.log(w) if w > 1 else w) * self.idf.get(term, self.max_idf)
            for term, w in weights.items()
        }
        return _normalised(vector)

    def query(self, text: str) -> Vector:
        # Words the FAQ never uses carry no evidence for any entry, but they do show the
        # question is about something else: they stay in the norm with the highest weight.
        return self._vector(self._terms(text))

    def _terms(self, text: str) -> dict[str, float]:
        return terms(self.prepare(text), self.language)

    def scores(self, query: Vector) -> np.ndarray:
        """Every entry's score for `query`: its best phrasing, the best phrasing of its topic
        (under any condition), its topic's centroid and its answer, weighted."""
        cosines = np.zeros(self._rows)
        for term, weight in query.items():
            posting = self._postings.get(term)
            if posting is not None:
                ids, weights = posting
                cosines[ids] += weight * weights
        entries = len(self.topic)
        best_phrasing = np.zeros(entries)
        np.maximum.at(best_phrasing, self._phrasing_entry, cosines[: len(self._phrasing_entry)])
        best_of_topic = np.zeros(len(self.topics))
        np.maximum.at(best_of_topic, self._entry_topic, best_phrasing)
        return (
            WEIGHT_PHRASING * best_phrasing
            + WEIGHT_TOPIC_PHRASING * best_of_topic[self._entry_topic]
            + WEIGHT_TOPIC * cosines[self._centroid_rows][self._entry_topic]
            + WEIGHT_ANSWER * cosines[self._answer_rows]
        )


def _condition_names(conditions: Iterable[Condition]) -> dict[tuple[str, str], set[str]]:
    """(language, name) -> labels, from the documents ("Fungal skin infection (ringworm, ...)"
    gives every part) plus `CONDITION_SYNONYMS`; "skin cancer" names two labels."""
    names: dict[tuple[str, str], set[str]] = {}
    for condition in conditions:
        if condition.label in _UNNAMEABLE_LABELS:
            continue
        for language in ("en", "ko"):
            for part in re.split(r"[(),·]| or | 또는 ", condition.names.get(language) or ""):
                part = part.strip().lower()
                if part and not part.startswith(("other ", "기타")):
                    names.setdefault((language, part), set()).add(condition.label)
    for table in (CONDITION_SYNONYMS, TREATMENT_HINTS):
        for label, by_language in table.items():
            for language, synonyms in by_language.items():
                for name in synonyms:
                    names.setdefault((language, name), set()).add(label)
    return names


def _name_pattern(language: str, name: str) -> re.Pattern[str]:
    if language == "en":
        # "wart" finds "warts", "athlete's foot" finds "athletes foot", "lichen-planus" too.
        words = [
            re.escape(
                word.removesuffix("'s").removesuffix("s")
                if len(word) > 3 and not word.endswith(("ss", "us", "is"))
                else word
            )
            for word in name.split()
        ]
        return re.compile(r"\b" + r"[\s-]+".join(w + r"(?:'?s|es)?" for w in words) + r"\b", re.I)
    if len(name) == 1:
        # "점" (mole) is inside many words ("반점", "점점"): only a word of its own, maybe with a
        # particle ("점이"), counts.
        return re.compile(
            rf"(?<![가-힣]){name}(?=(?:[은는이가을를에도의와과]|이나|이랑)?(?![가-힣]))"
        )
    # Korean spacing varies: "일광 흑자" and "일광흑자" are the same name.
    return re.compile(r"\s*".join(re.escape(char) for char in name.replace(" ", "")))


class _Names:
    """Finds condition names in a text: to tell which conditions a question is about, and to
    take them out before matching its topic (the scope already accounts for the condition)."""

    def __init__(self, conditions: Iterable[Condition]):
        names = _condition_names(conditions)
        # Longest first, so "atopic eczema" is found before "eczema" claims its last word.
        self.patterns = [
            (_name_pattern(language, name), sorted(labels))
            for (language, name), labels in sorted(names.items(), key=lambda i: -len(i[0][1]))
        ]
        self._last: tuple[str, list[tuple[int, int, list[str]]]] | None = None

    def find(self, text: str) -> list[tuple[int, int, list[str]]]:
        """(start, end, labels) of every name in `text`, in order, none overlapping."""
        # One question is searched for names two or three times (its scope, its topic without
        # the names, whether it named one): the last answer is kept.
        if self._last is not None and self._last[0] == text:
            return list(self._last[1])
        original = text
        text = text.replace("\u2019", "'")
        found: list[tuple[int, int, list[str]]] = []
        for pattern, labels in self.patterns:
            for match in pattern.finditer(text):
                start, end = match.span()
                if all(end <= s or start >= e for s, e, _ in found):
                    found.append((start, end, labels))
        found.sort()
        self._last = (original, found)
        return list(found)

    def without_names(self, text: str) -> str:
        for start, end, _ in reversed(self.find(text)):
            text = text[:start] + " " + text[end:]
        return text


@dataclass(frozen=True)
class Blend:
    """How lexical and embedding similarities are mixed into one score (see `FaqIndex`)."""

    semantic: float  # weight of the embedding similarity; the lexical score gets the rest
    topic: float  # share, within the embedding part, of the best phrasing of the entry's topic
    min_score: float  # below it no entry is a confident match
    # A lexical score this high is trusted as it is: the question is not encoded (~25 ms of CPU).
    sure: float = 1.0


# Without an encoder: today's lexical score alone, with its threshold.
LEXICAL = Blend(semantic=0.0, topic=0.0, min_score=MIN_SCORE)
# Chosen on the even half of evaluation/faq/paraphrases.json (python evaluation/faq_retrieval.py),
# reported on the odd half; the objective counts a wrong answer as worse than no answer.
HYBRID = Blend(semantic=0.5, topic=0.75, min_score=0.34, sure=0.3)


@dataclass(frozen=True)
class Similarities:
    """A question's similarity with every entry, before scoping: its lexical score, and the
    cosine of its embedding with the entry's best phrasing and its topic's best phrasing."""

    lexical: np.ndarray
    phrasing: np.ndarray | None = None
    topic: np.ndarray | None = None

    def blended(self, blend: Blend) -> np.ndarray:
        if self.phrasing is None or self.topic is None or not blend.semantic:
            return self.lexical
        semantic = (1 - blend.topic) * self.phrasing + blend.topic * self.topic
        return (1 - blend.semantic) * self.lexical + blend.semantic * semantic


class FaqIndex:
    """Finds the FAQ entries that answer a follow-up question.

    With an `encoder` (knowledge/embeddings.py) and once `embed` has run, an entry's score also
    takes the cosine of the question's embedding with the entry's phrasings (both languages: the
    encoder puts them in one space) and with its topic's phrasings under any condition, condition
    names taken out of both. The question is encoded (once) only when the lexical score is not
    sure (`Blend.sure`): encoding costs ~25 ms of CPU, a lexical search well under 1 ms.
    """

    def __init__(
        self,
        entries: list[FaqEntry],
        conditions: Sequence[Condition] = (),
        encoder: SentenceEncoder | None = None,
        blend: Blend = HYBRID,
    ):
        self.entries = list(entries)
        self.encoder = encoder
        self.blend = blend
        self._names = _Names(conditions)
        self._indexes = {
            language: _LanguageIndex(self.entries, language, self._names.without_names)
            for language in ("en", "ko")
        }
        self._phrasing_vectors: np.ndarray | None = None

    @property
    def embedded(self) -> bool:
        return self._phrasing_vectors is not None

    def embed(self) -> None:
        """Encode every phrasing (seconds of CPU: call it off the event loop); until it has run,
        searches are lexical."""
        if self.encoder is None:
            return
        texts: list[str] = []
        owners: list[int] = []
        for position, entry in enumerate(self.entries):
            for language in ("en", "ko"):
                for text in entry.questions.get(language) or []:
                    texts.append(text)
                    owners.append(position)
        topics = sorted({entry.topic for entry in self.entries})
        topic_number = {topic: number for number, topic in enumerate(topics)}
        self._entry_topic = np.asarray([topic_number[e.topic] for e in self.entries], np.intp)
        # Each entry's phrasings are one run of rows: its best is a reduceat over the runs
        # (ufunc.at took 0.2 ms a question). validate_faq makes every entry have phrasings.
        self._phrasing_starts = np.searchsorted(owners, np.arange(len(self.entries)))
        self._topic_count = len(topics)
        self._phrasing_vectors = self.encoder.encode(texts)

    def mentioned_labels(self, question: str) -> list[str]:
        """Condition labels the question names, in the order it names them."""
        mentioned: list[str] = []
        for _, _, labels in self._names.find(question):
            mentioned.extend(label for label in labels if label not in mentioned)
        return mentioned

    def similarities(
        self, question: str, language: str, vector: np.ndarray | None = None
    ) -> Similarities | None:
        """Every entry's similarities with `question` (None when it has no words to match);
        the embedding ones too when the question's `vector` is given."""
        index = self._indexes.get(language) or self._indexes[question_language(question)]
        query = index.query(question)
        lexical = index.scores(query) if query else np.zeros(len(self.entries))
        if vector is None or not self.embedded:
            return Similarities(lexical) if query else None
        # einsum, not `@`: a matrix-vector product this small costs 0.3 ms of CPU in one thread,
        # and 7.7 ms through the multi-threaded BLAS (its threads spin: measured here).
        cosines = np.einsum("ij,j->i", self._phrasing_vectors, vector)
        phrasing = np.maximum.reduceat(cosines, self._phrasing_starts).astype(np.float64)
        best_of_topic = np.full(self._topic_count, -1.0)
        np.maximum.at(best_of_topic, self._entry_topic, phrasing)
        return Similarities(lexical, phrasing, best_of_topic[self._entry_topic])

    def needs_vector(self, question: str, language: str, label: str | None) -> bool:
        """Whether `search` would encode the question: the phrasings are embedded, the lexical
        answer is unsure, the question has words and is not among those encoded lately."""
        if self.encoder is None or not self.embedded:
            return False
        if not _HANGUL.search(question) and not _WORD.search(question.lower()):
            return False  # "?!", "ㅋㅋㅋ": nothing to encode
        if self.encoder.knows_question(question.strip()):
            return False
        matches = self.search_by_words(question, language, label, 1)
        return not (matches and matches[0].score >= self.blend.sure)

    def encode_question(self, question: str) -> np.ndarray | None:
        """The question's vector (~25 ms of CPU when new, in the encoder's process)."""
        return self.encoder.encode_question(question.strip()) if self.encoder else None

    def question_future(self, question: str) -> Future:
        """As `encode_question`, without waiting (see `SentenceEncoder.question_future`)."""
        assert self.encoder is not None, "no encoder"
        return self.encoder.question_future(question.strip())

    def search_by_words(
        self, question: str, language: str, label: str | None, limit: int = 3
    ) -> list[FaqMatch]:
        """As `search`, by the lexical score alone."""
        lexical = self.similarities(question, language)
        return self.rank(question, lexical, label, LEXICAL, limit) if lexical else []

    def search(
        self, question: str, language: str, label: str | None, limit: int = 3
    ) -> list[FaqMatch]:
        """The entries that best answer `question`, best first; [] when none is confident.

        `language` is the question's (`question_language`); `label` is the condition of the
        user's last result, or None when there is none. The lexical answer stands when it is
        sure; otherwise the question is encoded (see `needs_vector`) and the blend decides.
        """
        matches = self.search_by_words(question, language, label, limit)
        if self.encoder is None or not self.embedded:
            return matches
        if matches and matches[0].score >= self.blend.sure:
            return matches
        if not _HANGUL.search(question) and not _WORD.search(question.lower()):
            return matches
        similarities = self.similarities(question, language, self.encode_question(question))
        if similarities is None:
            return []
        return self.rank(question, similarities, label, self.blend, limit)

    def rank(
        self,
        question: str,
        similarities: Similarities,
        label: str | None,
        blend: Blend,
        limit: int = 3,
    ) -> list[FaqMatch]:
        """The entries scoped to `label` and the conditions `question` names, by blended score."""
        named = set(self.mentioned_labels(question))
        scoped = {label} | named if label is not None else named
        matches: list[tuple[float, int, FaqMatch]] = []
        scores = similarities.blended(blend)
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
            score = factor * float(scores[position])
            if score >= blend.min_score:
                matches.append((score, tier, FaqMatch(entry, round(min(score, 1.0), 4))))
        matches.sort(key=lambda item: (-item[0], item[1]))
        return [match for _, _, match in matches[:limit]]
