"""What the checklist's answers would change on the saved test split (issue 17's closing figures).

Every test photo goes through the bot's own decision, as bot/conversation/results.py makes it
(the card's referral rule, a malignant top answer, the "likely" / "can't be ruled out" tiers, the
care content's triage), then through knowledge/checklist.py with a fixed set of answers:

- "no to everything": every question of the 7-point checklist, and bleeding, answered no;
- "yes: changed in size": size yes (2 points), every other question no.

It prints, per answer set, how many harmless (non-malignant) photos leave the cancer tiers, and
for melanoma + BCC whether any is referred less urgently than before (a lower advice rank) and how
many lose the cancer wording. The model runs once per photo through ONNX Runtime and is cached
(the same cache `python -m diagnosis screening` uses), so a rerun takes seconds.

    .venv/bin/python bench/checklist_triage.py --data ../shared/datasets/skin-photos [--split test]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from bot.conversation.results import referral_tier
from diagnosis.bundle import BUNDLED_MODEL_DIR, read_card
from diagnosis.serving.postprocess import prediction_from_probabilities
from diagnosis.training.screening import split_probabilities
from knowledge.checklist import (
    PIGMENTED,
    QUESTIONS,
    Advice,
    Case,
    baseline_advice,
    decide,
    group_for,
)
from knowledge.content import load_conditions
from knowledge.models import Triage

ANSWER_SETS = {
    "no to everything": {q: "no" for q in QUESTIONS[PIGMENTED]},
    "yes: changed in size": {q: "yes" if q == "size" else "no" for q in QUESTIONS[PIGMENTED]},
}


def bot_case(probs: np.ndarray, card, triage: dict[str, Triage]) -> tuple[Case | None, str]:
    """(the checklist case the bot would ask, its cancer tier), as results.py decides them."""
    prediction = prediction_from_probabilities(probs, card)
    best = prediction.best.label
    tier = referral_tier(prediction, triage.get(best))
    if prediction.abstain:
        level = "abstain"
    else:
        level = "urgent" if tier == "likely" else str(triage.get(best, Triage.SEE_DOCTOR))
    top = [(item.label, item.prob) for item in prediction.top]
    group = group_for(top, tier)
    if group is None:
        return None, tier
    labels = tuple(label for label, _ in top)
    return Case(group, baseline_advice(level, tier), tier, labels), tier


def measure(probs, targets, card, triage) -> dict[str, Counter]:
    malignant = {card.labels.index(label) for label in card.malignant_labels}
    counts = {name: Counter() for name in ANSWER_SETS}
    for row, target in zip(probs, targets, strict=True):
        kind = "cancer" if int(target) in malignant else "harmless"
        case, tier = bot_case(row, card, triage)
        for name, answers in ANSWER_SETS.items():
            count = counts[name]
            count[f"{kind} photos"] += 1
            count[f"{kind} in a cancer tier before"] += bool(tier)
            count[f"{kind} {tier or 'not referred'} before"] += 1
            if case is None:
                count[f"{kind} no questions"] += 1
                continue
            decision = decide(case, answers)
            count[f"{kind} in a cancer tier after"] += bool(decision.cancer_tier)
            count[f"{kind} left the cancer tiers"] += bool(tier) and not decision.cancer_tier
            count[f"{kind} raised"] += decision.change == "raised"
            count[f"{kind} advice lower than before"] += decision.advice.rank < case.advice.rank
            count[f"{kind} two-week referral after"] += decision.advice.rank >= (
                Advice.TWO_WEEKS.rank
            )
    return counts


def report(split: str, counts: dict[str, Counter]) -> str:
    lines = [f"split: {split}"]
    for name, count in counts.items():
        harmless, cancers = count["harmless photos"], count["cancer photos"]

        def share(key: str, total: int, count: Counter = count) -> str:
            return f"{count[key]} ({count[key] / total:.1%})" if total else "0"

        lines += [
            f'answers "{name}":',
            f"  harmless ({harmless}): in a cancer tier before "
            f"{share('harmless in a cancer tier before', harmless)} "
            f"[likely {count['harmless likely before']}, possible "
            f"{count['harmless possible before']}], after "
            f"{share('harmless in a cancer tier after', harmless)}; left the cancer tiers "
            f"{share('harmless left the cancer tiers', harmless)}",
            f"  melanoma + BCC ({cancers}): in a cancer tier before "
            f"{share('cancer in a cancer tier before', cancers)} [likely "
            f"{count['cancer likely before']}, possible {count['cancer possible before']}], "
            f"after {share('cancer in a cancer tier after', cancers)}; referred less urgently "
            f"than before: {count['cancer advice lower than before']}; lost the cancer wording "
            f"(still a routine check): {count['cancer left the cancer tiers']}",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the skin-photos dataset")
    parser.add_argument("--bundle", type=Path, default=BUNDLED_MODEL_DIR)
    parser.add_argument("--split", choices=["val", "test"], default="test")
    parser.add_argument(
        "--cache", type=Path, default=Path("/tmp/skincare-screening-logits.npz"), help="logits"
    )
    args = parser.parse_args(argv)
    card = read_card(args.bundle)
    triage = {condition.label: condition.triage for condition in load_conditions()}
    data = split_probabilities(args.bundle, args.data, card, args.cache, progress=False)[args.split]
    print(report(args.split, measure(data.probs, data.targets, card, triage)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
