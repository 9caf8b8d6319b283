"""FAQ retrieval on the held-out paraphrases: today's lexical search against the hybrid.

    python evaluation/faq_retrieval.py [--code DIR] [--lexical-only]

evaluation/faq/paraphrases.json holds follow-up questions in English and Korean, none a copy of
a FAQ phrasing, each with the last result's label and the entry that should answer it (or none).
Even positions are the tuning half (weights and threshold are chosen on it here), odd positions
the reporting half. Per language and half: accuracy (the right entry first, or no answer where
none should come) and the false-answer rate (an entry given, but not the right one).

--code DIR runs the retrieval of another checkout (e.g. the main branch, for "before").
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CASES = HERE / "faq" / "paraphrases.json"

# A wrong answer misleads; no answer only sends the user to the suggested questions.
FALSE_ANSWER_COST = 2.0
SURE_GRID = (0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 1.0)


def answer(index, case, blend, found, lexical_blend) -> str | None:
    """The entry id `index.search` would answer with, under `blend`, from precomputed
    similarities (the lexical answer when it is at least `blend.sure`)."""
    if found is None:
        return None
    question, label = case["question"], case["last_result"]
    matches = index.rank(question, found, label, lexical_blend)
    if not (matches and matches[0].score >= blend.sure):
        matches = index.rank(question, found, label, blend)
    return matches[0].entry.id if matches else None


def score(index, cases, blend, found, lexical_blend) -> tuple[float, float, float, float]:
    """(accuracy, false-answer rate, objective, share encoded) of `blend` on `cases`."""
    right = wrong = encoded = 0
    for case, similarities in zip(cases, found, strict=True):
        got = answer(index, case, blend, similarities, lexical_blend)
        right += got == case["expected"]
        wrong += got is not None and got != case["expected"]
        top = similarities and index.rank(
            case["question"], similarities, case["last_result"], lexical_blend
        )
        encoded += not (top and top[0].score >= blend.sure)
    n = len(cases)
    return right / n, wrong / n, right - FALSE_ANSWER_COST * wrong, encoded / n


def score_search(index, cases) -> tuple[float, float]:
    right = wrong = 0
    for case in cases:
        matches = index.search(case["question"], case["language"], case["last_result"])
        got = matches[0].entry.id if matches else None
        right += got == case["expected"]
        wrong += got is not None and got != case["expected"]
    return right / len(cases), wrong / len(cases)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--code", type=Path, default=HERE.parent)
    parser.add_argument("--lexical-only", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(args.code.resolve()))
    from knowledge.content import load_conditions
    from knowledge.faq import load_faq
    from knowledge.retrieval import FaqIndex

    data = json.loads(CASES.read_text(encoding="utf-8"))
    halves: dict[tuple[str, str], list[dict]] = {}
    for language in ("en", "ko"):
        for position, case in enumerate(data[language]):
            half = "tune" if position % 2 == 0 else "report"
            halves.setdefault((language, half), []).append({**case, "language": language})

    entries, conditions = load_faq(), load_conditions()
    lexical = FaqIndex(entries, conditions)
    print(f"retrieval code: {args.code.resolve()}")
    for (language, half), cases in halves.items():
        accuracy, false_rate = score_search(lexical, cases)
        print(
            f"lexical  {language} {half:6} n={len(cases):3}  accuracy {accuracy:.1%}  "
            f"false answers {false_rate:.1%}"
        )
    if args.lexical_only:
        return 0

    from knowledge.embeddings import shared_encoder
    from knowledge.retrieval import HYBRID, LEXICAL, Blend

    started = time.perf_counter()
    hybrid = FaqIndex(entries, conditions, shared_encoder())
    hybrid.embed()
    print(f"phrasings embedded in {time.perf_counter() - started:.1f} s (wall; encoder process)")
    found = {
        key: [
            hybrid.similarities(c["question"], c["language"], hybrid.encode_question(c["question"]))
            for c in cases
        ]
        for key, cases in halves.items()
    }

    # The grid, on the tuning halves of both languages together: first the blend with every
    # question encoded, then how sure a lexical score must be to skip encoding.
    def objective(blend: Blend) -> float:
        return sum(
            score(hybrid, halves[key], blend, found[key], LEXICAL)[2]
            for key in halves
            if key[1] == "tune"
        )

    blends = [
        Blend(semantic, topic, threshold)
        for semantic in [i / 10 for i in range(1, 11)]
        for topic in (0.0, 0.25, 0.5, 0.75, 1.0)
        for threshold in [i / 100 for i in range(10, 61, 2)]
    ]
    chosen = max(blends, key=objective)
    sures = [Blend(chosen.semantic, chosen.topic, chosen.min_score, s) for s in SURE_GRID]
    best = (None, max(sures, key=objective))
    print(f"best blend on the tuning half: {best[1]}   (in use: {HYBRID})")
    for name, blend in (("chosen", best[1]), ("in use", HYBRID)):
        for key, cases in halves.items():
            accuracy, false_rate, _, encoded = score(hybrid, cases, blend, found[key], LEXICAL)
            print(
                f"hybrid ({name}) {key[0]} {key[1]:6} n={len(cases):3}  accuracy {accuracy:.1%}"
                f"  false answers {false_rate:.1%}  questions encoded {encoded:.0%}"
            )
    # The same through FaqIndex.search, as the bot calls it.
    for key, cases in halves.items():
        accuracy, false_rate = score_search(hybrid, cases)
        print(f"search   {key[0]} {key[1]:6}  accuracy {accuracy:.1%}  false {false_rate:.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
