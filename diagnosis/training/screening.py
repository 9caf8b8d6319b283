"""The screening point (urgent referral) and the abstention point, chosen on the val split.

`python -m diagnosis screening --data ../shared/datasets/skin-photos [--write]` computes the
bundle's val and test probabilities through the serving path (ONNX Runtime, the card's
temperature), compares referral rules and abstention thresholds on val, reports the chosen
ones once on test, draws the coverage curves and, with --write, stores the chosen thresholds
in the model card (weights, ONNX file and their checksums are left as they are).

Every threshold here is chosen on val only; test is looked at once, for the report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from diagnosis.bundle import ModelCard
from diagnosis.training.calibration import expected_calibration_error

# The rules compared for the urgent referral. Every one also refers a photo whose top answer is
# a malignant label (the bot does, through the condition's triage).
RULES = ("sum", "max", "per_class")
MIN_SENSITIVITY = 0.95
MAX_FLAGGED = 0.30  # issue 12's ceiling on non-malignant photos sent to urgent care
MAX_OTHER_ANSWERED = 0.15  # issue 12: `other` photos answered with a named condition
MAX_NAMED_ABSTAIN = 0.25  # issue 12: named photos answered "I can't tell"


# --- the referral rule ------------------------------------------------------------------------


def choose_screening_threshold(
    scores: np.ndarray, min_sensitivity: float = MIN_SENSITIVITY
) -> float:
    """The highest t such that at least `min_sensitivity` of `scores` are >= t.

    `scores` are the malignant photos' scores (a photo referred anyway, e.g. because its top
    answer is malignant, may be given +inf). Highest, because every step down sends more
    harmless photos to urgent care. Exact, not on a grid: the k-th largest score, where k is the
    fewest photos that make up `min_sensitivity`.
    """
    scores = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    if len(scores) == 0:
        raise ValueError("no malignant photos to choose a screening threshold on")
    if not 0.0 < min_sensitivity <= 1.0:
        raise ValueError(f"min_sensitivity must be in (0, 1], not {min_sensitivity}")
    needed = math.ceil(min_sensitivity * len(scores) - 1e-9)
    return float(min(scores[needed - 1], 1.0))


LIKELY_MIN_PRECISION = 0.5  # the strong tier: photos in it are malignant at least half the time


def tier_figures(val: SplitData, test: SplitData, malignant: list[int], floor: float) -> dict:
    """The two referral tiers with the "likely" threshold chosen on val: per split, the shares
    of non-malignant and malignant photos in each tier."""
    likely = choose_likely_threshold(val.probs, val.targets, malignant, floor)
    figures: dict[str, Any] = {"likely_threshold": likely, "floor": floor}
    for name, part in (("val", val), ("test", test)):
        is_malignant = np.isin(part.targets, malignant)
        top_malignant = np.isin(part.probs.argmax(axis=1), malignant)
        sums = part.probs[:, malignant].sum(axis=1)
        referred_ = top_malignant | (sums >= floor)
        strong = top_malignant | (sums >= likely)
        figures[name] = {
            group: {
                "likely": float(strong[mask].mean()),
                "possible": float((referred_ & ~strong)[mask].mean()),
                "not_referred": float((~referred_)[mask].mean()),
            }
            for group, mask in (("non_malignant", ~is_malignant), ("malignant", is_malignant))
        }
    return figures


def choose_likely_threshold(
    probs: np.ndarray,
    targets: np.ndarray,
    malignant: list[int],
    floor: float,
    min_precision: float = LIKELY_MIN_PRECISION,
) -> float:
    """The lowest malignant-sum threshold (>= `floor`, the referral threshold) at which the
    photos given the strong "a skin cancer is likely" wording (top answer malignant, or the sum
    at threshold) are truly malignant at least `min_precision` of the time; 1.0 if none is.

    Lowest, because every step up moves real cancers to the milder "can't be ruled out" tier
    (still referred, at a routine visit). Candidates are the observed sums, so it is exact.
    """
    is_malignant = np.isin(targets, malignant)
    top_malignant = np.isin(probs.argmax(axis=1), malignant)
    sums = probs[:, malignant].sum(axis=1)
    for threshold in np.unique(np.concatenate([[floor], sums[sums >= floor]])):
        strong = top_malignant | (sums >= threshold)
        if strong.any() and is_malignant[strong].mean() >= min_precision:
            return float(threshold)
    return 1.0


def malignant_scores(probs: np.ndarray, malignant: list[int], rule: str) -> np.ndarray:
    """The score the one-threshold rules compare with it: sum or max of the malignant labels."""
    part = probs[:, malignant]
    if rule == "sum":
        return part.sum(axis=1)
    if rule == "max":
        return part.max(axis=1)
    raise ValueError(f"no single score for rule {rule!r}")


def referred(
    probs: np.ndarray, malignant: list[int], rule: str, thresholds: dict[int, float] | float
) -> np.ndarray:
    """Which photos the rule refers: top answer malignant, or the rule's score at threshold."""
    top_malignant = np.isin(probs.argmax(axis=1), malignant)
    if rule == "per_class":
        by_class = np.zeros(len(probs), dtype=bool)
        for index, threshold in thresholds.items():
            by_class |= probs[:, index] >= threshold
        return top_malignant | by_class
    return top_malignant | (malignant_scores(probs, malignant, rule) >= thresholds)


def choose_rule_thresholds(
    probs: np.ndarray,
    targets: np.ndarray,
    malignant: list[int],
    rule: str,
    min_sensitivity: float = MIN_SENSITIVITY,
) -> dict[int, float] | float:
    """The thresholds of `rule` that refer `min_sensitivity` of malignant photos, fewest others.

    sum / max: one threshold (`choose_screening_threshold`). per_class: one threshold per
    malignant label; every candidate for the first label's threshold (its photos' probabilities)
    is paired with the highest second threshold that still reaches the sensitivity, and the pair
    that flags the fewest non-malignant photos wins.
    """
    is_malignant = np.isin(targets, malignant)
    top_malignant = np.isin(probs.argmax(axis=1), malignant)
    if rule in ("sum", "max"):
        scores = malignant_scores(probs[is_malignant], malignant, rule)
        scores = np.where(top_malignant[is_malignant], np.inf, scores)
        return choose_screening_threshold(scores, min_sensitivity)
    if rule != "per_class" or len(malignant) != 2:
        raise ValueError(f"unknown rule {rule!r} (per_class needs two malignant labels)")
    first, second = malignant
    mal_probs = probs[is_malignant]
    mal_top = top_malignant[is_malignant]
    benign = ~is_malignant
    best: tuple[float, float, float] | None = None
    candidates = np.unique(np.concatenate([mal_probs[:, first], [1.0]]))
    for t_first in candidates:
        caught = mal_top | (mal_probs[:, first] >= t_first)
        scores = np.where(caught, np.inf, mal_probs[:, second])
        t_second = choose_screening_threshold(scores, min_sensitivity)
        flagged = referred(probs[benign], malignant, rule, {first: t_first, second: t_second})
        rate = float(flagged.mean()) if benign.any() else 0.0
        if best is None or rate < best[0]:
            best = (rate, float(t_first), t_second)
    assert best is not None
    return {first: best[1], second: best[2]}


@dataclass
class ScreeningFigures:
    sensitivity: float
    flagged: float  # non-malignant photos (named and `other`) referred
    flagged_named: float
    flagged_other: float
    missed: int
    malignant: int


def screening_figures(
    probs, targets, malignant, other_index, rule, thresholds, mask=None
) -> ScreeningFigures:
    mask = np.ones(len(targets), dtype=bool) if mask is None else np.asarray(mask)
    probs, targets = probs[mask], targets[mask]
    flags = referred(probs, malignant, rule, thresholds)
    is_mal = np.isin(targets, malignant)
    benign = ~is_mal
    named_benign = benign & (targets != other_index)

    def share(selection):
        return float(flags[selection].mean()) if selection.any() else float("nan")

    return ScreeningFigures(
        sensitivity=share(is_mal),
        flagged=share(benign),
        flagged_named=share(named_benign),
        flagged_other=share(targets == other_index),
        missed=int((~flags & is_mal).sum()),
        malignant=int(is_mal.sum()),
    )


def cross_validated(
    probs, targets, malignant, other_index, rule, folds=5, repeats=20, seed=0
) -> tuple[float, float]:
    """Sensitivity and flagged share of `rule` with its thresholds chosen on the other folds.

    Repeated stratified k-fold on val: the val estimate of what a threshold chosen on ~93
    malignant photos does on photos it was not chosen on. Pooled over folds and repeats.
    """
    rng = np.random.default_rng(seed)
    caught = total_mal = flagged = total_benign = 0
    for _ in range(repeats):
        fold_of = np.empty(len(targets), dtype=int)
        for label in np.unique(targets):
            members = np.flatnonzero(targets == label)
            fold_of[rng.permutation(members)] = np.arange(len(members)) % folds
        for fold in range(folds):
            held = fold_of == fold
            thresholds = choose_rule_thresholds(probs[~held], targets[~held], malignant, rule)
            figures = screening_figures(
                probs, targets, malignant, other_index, rule, thresholds, held
            )
            caught += figures.malignant - figures.missed
            total_mal += figures.malignant
            benign = held & ~np.isin(targets, malignant)
            flagged += int(referred(probs[benign], malignant, rule, thresholds).sum())
            total_benign += int(benign.sum())
    return caught / total_mal, flagged / total_benign


def bootstrap_interval(values: np.ndarray, draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile interval of the mean of 0/1 `values`."""
    values = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = rng.choice(values, size=(draws, len(values)), replace=True).mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


# --- abstention -------------------------------------------------------------------------------


def abstains(probs: np.ndarray, other_index: int | None, threshold: float) -> np.ndarray:
    """The card's rule: "I can't tell" when the top answer is below threshold or is `other`."""
    abstain = probs.max(axis=1) < threshold
    if other_index is not None:
        abstain |= probs.argmax(axis=1) == other_index
    return abstain


def coverage_row(probs, targets, other_index, threshold) -> dict[str, float]:
    """Coverage (share answered), accuracy among answered, and the issue's two abstain figures."""
    abstain = abstains(probs, other_index, threshold)
    answered = ~abstain
    correct = probs.argmax(axis=1) == targets
    named = targets != other_index
    is_other = targets == other_index

    def share(values, selection):
        return float(values[selection].mean()) if selection.any() else float("nan")

    return {
        "threshold": float(threshold),
        "coverage": float(answered.mean()) if len(targets) else float("nan"),
        "accuracy_answered": share(correct, answered),
        "named_abstain": share(abstain, named),
        "other_answered": share(answered, is_other),
    }


def choose_abstain_point(
    probs,
    targets,
    other_index,
    max_other_answered=MAX_OTHER_ANSWERED,
    max_named_abstain=MAX_NAMED_ABSTAIN,
) -> float | None:
    """The lowest threshold (0.01 steps) at which at most `max_other_answered` of `other`
    photos get a named answer and at most `max_named_abstain` of named photos get "I can't
    tell"; None when no threshold does both (then the card's threshold stays)."""
    for threshold in np.round(np.arange(0.20, 0.96, 0.01), 2):
        row = coverage_row(probs, targets, other_index, threshold)
        if row["other_answered"] <= max_other_answered:
            return float(threshold) if row["named_abstain"] <= max_named_abstain else None
    return None


def other_gated_rows(probs, targets, other_index, threshold, other_max) -> dict[str, float]:
    """An alternative explored: also abstain when `other` is at least `other_max` likely."""
    gated = probs.copy()
    gated[probs[:, other_index] > other_max] = 0.0  # no top probability: always abstains
    row = coverage_row(gated, targets, other_index, threshold)
    answered = ~abstains(gated, other_index, threshold)
    correct = probs.argmax(axis=1) == targets
    row["accuracy_answered"] = float(correct[answered].mean()) if answered.any() else float("nan")
    row["other_max"] = float(other_max)
    return row


def choose_other_gate(probs, targets, other_index, max_other_answered=MAX_OTHER_ANSWERED):
    """(threshold, other_max) with the fewest named "I can't tell" and at most
    `max_other_answered` of `other` photos answered, on a coarse grid."""
    best = None
    for threshold in np.round(np.arange(0.10, 0.70, 0.02), 2):
        for other_max in (0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5):
            row = other_gated_rows(probs, targets, other_index, threshold, other_max)
            if row["other_answered"] <= max_other_answered and (
                best is None or row["named_abstain"] < best["named_abstain"]
            ):
                best = row
    return best


# --- the whole analysis -----------------------------------------------------------------------


@dataclass
class SplitData:
    probs: np.ndarray
    targets: np.ndarray
    sources: np.ndarray


def split_probabilities(
    bundle_dir: Path, data_dir: Path, card: ModelCard, cache: Path | None, progress: bool = True
) -> dict[str, SplitData]:
    """Val and test probabilities through the serving path (ONNX Runtime), cached in `cache`."""
    from PIL import Image
    from tqdm.auto import tqdm

    from diagnosis.serving.onnx_backend import OnnxBackend
    from diagnosis.serving.preprocess import preprocess_array
    from diagnosis.training.calibration import softmax
    from diagnosis.training.data import load_split, read_samples

    samples = {s.file: s for s in read_samples(data_dir)}
    split = load_split(Path(bundle_dir) / "split.json")
    key = f"{card.version}:{card.onnx_sha256}"
    stored = None
    if cache is not None and cache.is_file():
        stored = dict(np.load(cache, allow_pickle=False))
        if str(stored.get("key")) != key:
            stored = None
    if stored is None:
        backend = OnnxBackend(bundle_dir)
        stored = {"key": np.array(key)}
        for name in ("val", "test"):
            files = [s.file for s in split[name]]
            rows = []
            for start in tqdm(
                range(0, len(files), 16), desc=f"{name} photos", disable=not progress
            ):
                batch = []
                for file in files[start : start + 16]:
                    with Image.open(Path(data_dir) / file) as handle:
                        batch.append(preprocess_array(handle.convert("RGB"), card))
                rows.append(backend.forward(np.stack(batch)))
            stored[f"{name}_logits"] = np.concatenate(rows)
            stored[f"{name}_files"] = np.array(files)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache, **stored)
    index = {label: i for i, label in enumerate(card.labels)}
    result = {}
    for name in ("val", "test"):
        files = [str(f) for f in stored[f"{name}_files"]]
        targets = np.array([index.get(samples[f].label, -1) for f in files])
        known = targets >= 0
        result[name] = SplitData(
            probs=softmax(stored[f"{name}_logits"][known], card.temperature),
            targets=targets[known],
            sources=np.array([samples[f].source or "unknown" for f in files])[known],
        )
    return result


def analyse(card: ModelCard, data: dict[str, SplitData]) -> dict[str, Any]:
    """Every figure the report prints: rules compared on val, chosen ones, test once."""
    malignant = [card.labels.index(label) for label in card.malignant_labels]
    other = card.labels.index(card.other_label) if card.other_label else None
    val, test = data["val"], data["test"]
    out: dict[str, Any] = {
        "val_counts": {card.labels[i]: int((val.targets == i).sum()) for i in [*malignant, other]},
        "rules": [],
    }
    candidates = [("today", "sum", float(card.urgent_threshold))]
    for rule in RULES:
        thresholds = choose_rule_thresholds(val.probs, val.targets, malignant, rule)
        candidates.append((f"{rule}, chosen on val", rule, thresholds))
    for name, rule, thresholds in candidates:
        row = {"name": name, "rule": rule, "thresholds": _named(card, thresholds)}
        for split, part in (("val", val), ("test", test)):
            figures = screening_figures(
                part.probs, part.targets, malignant, other, rule, thresholds
            )
            row[split] = figures.__dict__
            for source in sorted(set(part.sources)):
                row[f"{split}_{source}"] = screening_figures(
                    part.probs,
                    part.targets,
                    malignant,
                    other,
                    rule,
                    thresholds,
                    part.sources == source,
                ).__dict__
        flags = referred(val.probs, malignant, rule, thresholds)
        is_mal = np.isin(val.targets, malignant)
        row["val_sensitivity_ci"] = bootstrap_interval(flags[is_mal])
        row["val_flagged_ci"] = bootstrap_interval(flags[~is_mal])
        if name != "today":
            row["val_cv"] = cross_validated(val.probs, val.targets, malignant, other, rule)
        out["rules"].append(row)
    out["screening_choice"] = _choose_screening(out["rules"])
    choice = out["screening_choice"]
    floor = card.urgent_threshold if choice["adopted"] == "today" else float(choice["thresholds"])
    out["tiers"] = tier_figures(val, test, malignant, floor)

    grid = np.round(np.arange(0.10, 0.91, 0.02), 2)
    out["coverage"] = {}
    for split, part in (("val", val), ("test", test)):
        for source in ["all", *sorted(set(part.sources))]:
            mask = np.ones(len(part.targets), bool) if source == "all" else part.sources == source
            out["coverage"][f"{split}/{source}"] = [
                coverage_row(part.probs[mask], part.targets[mask], other, t) for t in grid
            ]
    chosen = choose_abstain_point(val.probs, val.targets, other)
    out["abstain"] = {"today": float(card.abstain_threshold), "chosen": chosen}
    points = [("today", card.abstain_threshold)]
    if chosen is not None:
        points.append(("chosen", chosen))
    for target in (MAX_OTHER_ANSWERED, 0.20):  # the target and the training default
        for threshold in np.round(np.arange(0.20, 0.96, 0.01), 2):
            if coverage_row(val.probs, val.targets, other, threshold)["other_answered"] <= target:
                points.append((f"other <= {target:.0%} on val", float(threshold)))
                break
    for threshold in np.round(np.arange(0.95, 0.19, -0.01), 2):
        if coverage_row(val.probs, val.targets, other, threshold)["named_abstain"] <= 0.25:
            points.append(("named abstain <= 25% on val", float(threshold)))
            break
    kept = chosen if chosen is not None else card.abstain_threshold
    out["abstain"]["per_source"] = {
        f"{split}/{source}": coverage_row(
            part.probs[part.sources == source], part.targets[part.sources == source], other, kept
        )
        for split, part in (("val", val), ("test", test))
        for source in sorted(set(part.sources))
    }
    out["malignant_by_source"] = {
        f"{split}/{source}": int(
            (np.isin(part.targets, malignant) & (part.sources == source)).sum()
        )
        for split, part in (("val", val), ("test", test))
        for source in sorted(set(part.sources))
    }
    gate = choose_other_gate(val.probs, val.targets, other)
    out["abstain"]["points"] = []
    for name, threshold in points:
        row = {"name": name, "threshold": float(threshold)}
        for split, part in (("val", val), ("test", test)):
            row[split] = coverage_row(part.probs, part.targets, other, threshold)
            row[split]["ece"] = expected_calibration_error(part.probs, part.targets)
        out["abstain"]["points"].append(row)
    if gate is not None:
        row = {
            "name": "explored: also abstain when p(other) > " + f"{gate['other_max']:.2f}",
            "threshold": gate["threshold"],
        }
        for split, part in (("val", val), ("test", test)):
            row[split] = other_gated_rows(
                part.probs, part.targets, other, gate["threshold"], gate["other_max"]
            )
            row[split]["ece"] = expected_calibration_error(part.probs, part.targets)
        out["abstain"]["points"].append(row)
    return out


def _named(card: ModelCard, thresholds):
    if isinstance(thresholds, dict):
        return {card.labels[i]: round(float(t), 4) for i, t in thresholds.items()}
    return round(float(thresholds), 4)


def _choose_screening(rules: list[dict]) -> dict[str, Any]:
    """Adopt a val-chosen rule only if its cross-validated val figures meet both constraints
    (sensitivity >= 0.95 and at most 30 % flagged) and flag fewer than today's; else today's."""
    today = rules[0]
    best = None
    for row in rules[1:]:
        sensitivity, flagged = row["val_cv"]
        if sensitivity >= MIN_SENSITIVITY and flagged <= MAX_FLAGGED:
            if flagged < today["val"]["flagged"] and (best is None or flagged < best["val_cv"][1]):
                best = row
    if best is None:
        return {
            "adopted": "today",
            "why": "no rule chosen on val refers >= 95 % of malignant photos with <= 30 % of the "
            "others flagged, cross-validated on val",
        }
    return {"adopted": best["name"], "rule": best["rule"], "thresholds": best["thresholds"]}


# --- report, figures, card ---------------------------------------------------------------------


def _pct(value: float) -> str:
    return "n/a" if value is None or value != value else f"{value * 100:.1f}%"


def format_report(card: ModelCard, out: dict[str, Any]) -> str:
    counts = ", ".join(f"{label} {n}" for label, n in out["val_counts"].items())
    lines = [
        f"model {card.version}: screening point (val: {counts} photos)",
        "",
        "rule                     thresholds                       | val: sens. (CI 95%)   "
        "missed flagged (named/other)  CV sens./flagged | test: sens. missed flagged "
        "(named/other) | test sens. dermnet/isic",
    ]
    for row in out["rules"]:
        val, test = row["val"], row["test"]
        cv = row.get("val_cv")
        low, high = row["val_sensitivity_ci"]
        thresholds = (
            ", ".join(f"{k[:8]} {v}" for k, v in row["thresholds"].items())
            if isinstance(row["thresholds"], dict)
            else f"{row['thresholds']}"
        )
        lines.append(
            f"{row['name']:24s} {thresholds:32s} | {_pct(val['sensitivity'])} "
            f"({_pct(low)}-{_pct(high)}) {val['missed']:2d}/{val['malignant']} "
            f"{_pct(val['flagged'])} ({_pct(val['flagged_named'])}/{_pct(val['flagged_other'])}) "
            + (f" {_pct(cv[0])}/{_pct(cv[1])}" if cv else "  (fixed before)")
            + f" | {_pct(test['sensitivity'])} {test['missed']:2d}/{test['malignant']} "
            f"{_pct(test['flagged'])} ({_pct(test['flagged_named'])}/"
            f"{_pct(test['flagged_other'])}) | "
            + "/".join(
                _pct(row[key]["sensitivity"])
                for key in sorted(k for k in row if k.startswith("test_"))
            )
        )
    lines.append(
        "melanoma + BCC photos per source: "
        + ", ".join(f"{k} {v}" for k, v in out["malignant_by_source"].items())
    )
    choice = out["screening_choice"]
    lines.append(
        f"adopted: {choice['adopted']}" + (f" ({choice['why']})" if "why" in choice else "")
    )
    lines += ["", 'abstention ("I can\'t tell"): coverage / accuracy among answered photos']
    lines.append(
        f"{'point':44s} {'thr':>5s} | val: cover  acc   named-abst other-ans | "
        "test: cover  acc   named-abst other-ans  ECE"
    )
    for row in out["abstain"]["points"]:
        val, test = row["val"], row["test"]
        lines.append(
            f"{row['name']:44s} {row['threshold']:5.2f} | {_pct(val['coverage']):>6s} "
            f"{_pct(val['accuracy_answered']):>6s} {_pct(val['named_abstain']):>6s} "
            f"{_pct(val['other_answered']):>6s} | {_pct(test['coverage']):>6s} "
            f"{_pct(test['accuracy_answered']):>6s} {_pct(test['named_abstain']):>6s} "
            f"{_pct(test['other_answered']):>6s} {test['ece']:.3f}"
        )
    chosen = out["abstain"]["chosen"]
    lines.append(
        f"adopted abstain threshold: {chosen}"
        if chosen is not None
        else f"adopted abstain threshold: today's {out['abstain']['today']} (no threshold meets "
        'named "can\'t tell" <= 25 % and `other` answered <= 15 % together on val)'
    )
    lines.append("per source at that threshold:")
    for key, row in out["abstain"]["per_source"].items():
        lines.append(
            f"  {key:13s} coverage {_pct(row['coverage'])}, accuracy among answered "
            f'{_pct(row["accuracy_answered"])}, named "can\'t tell" {_pct(row["named_abstain"])}, '
            f"other answered {_pct(row['other_answered'])}"
        )
    lines += ["", "coverage curve per source (threshold: coverage / accuracy among answered)"]
    for key, rows in out["coverage"].items():
        picked = [
            r for r in rows if round(r["threshold"], 2) in (0.2, 0.3, 0.4, 0.44, 0.5, 0.6, 0.7)
        ]
        lines.append(
            f"  {key:13s} "
            + "  ".join(
                f"{r['threshold']:.2f}: {_pct(r['coverage'])}/{_pct(r['accuracy_answered'])}"
                for r in picked
            )
        )
    tiers = out["tiers"]
    lines += [
        "",
        f"referral tiers: likely at melanoma + BCC >= {tiers['likely_threshold']:.4f} "
        f"(chosen on val), possible from {tiers['floor']:.4f}",
    ]
    for split in ("val", "test"):
        for group in ("non_malignant", "malignant"):
            row = tiers[split][group]
            lines.append(
                f"  {split:4s} {group:13s} likely {_pct(row['likely'])}  possible "
                f"{_pct(row['possible'])}  not referred {_pct(row['not_referred'])}"
            )
    return "\n".join(lines)


def save_figures(card: ModelCard, data: dict[str, SplitData], out: dict[str, Any], folder: Path):
    """screening_curve.png (sensitivity vs harmless photos flagged) and coverage_accuracy.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    malignant = [card.labels.index(label) for label in card.malignant_labels]
    other = card.labels.index(card.other_label) if card.other_label else None
    paths = []

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.8), sharey=True)
    for ax, split in zip(axes, ("val", "test"), strict=True):
        part = data[split]
        is_mal = np.isin(part.targets, malignant)
        for rule, colour in (("sum", "C0"), ("max", "C1")):
            scores = malignant_scores(part.probs, malignant, rule)
            grid = np.unique(np.concatenate([scores, [0.0, 1.0]]))
            top = np.isin(part.probs.argmax(axis=1), malignant)
            sens = [((scores >= t) | top)[is_mal].mean() for t in grid]
            flag = [((scores >= t) | top)[~is_mal].mean() for t in grid]
            ax.step(flag, sens, where="post", color=colour, label=f"{rule} of p(mel), p(BCC)")
        for row, marker in zip(out["rules"], ("o", "s", "^", "D"), strict=False):
            ax.plot(
                row[split]["flagged"],
                row[split]["sensitivity"],
                marker,
                color="k",
                markerfacecolor="none",
                label=row["name"],
            )
        ax.axhline(MIN_SENSITIVITY, color="grey", ls="--", lw=0.8)
        ax.axvline(MAX_FLAGGED, color="grey", ls=":", lw=0.8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0.5, 1.01)
        ax.set_xlabel("non-malignant photos sent to urgent care")
        ax.set_title(f"{split}: {int(is_mal.sum())} melanoma + BCC photos")
    axes[0].set_ylabel("melanoma + BCC referred (sensitivity)")
    axes[1].legend(fontsize=7, loc="lower right")
    figure.suptitle(f"Screening point of {card.version} (dashed: 95 % target; dotted: 30 %)")
    figure.tight_layout()
    paths.append(folder / "screening_curve.png")
    figure.savefig(paths[-1], dpi=100)
    plt.close(figure)

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.8), sharey=True)
    for ax, split in zip(axes, ("val", "test"), strict=True):
        for source, style in (("all", "-"), ("dermnet", "--"), ("isic", ":")):
            rows = out["coverage"].get(f"{split}/{source}")
            if not rows:
                continue
            ax.plot(
                [r["coverage"] for r in rows],
                [r["accuracy_answered"] for r in rows],
                style,
                label=source,
            )
            for r in rows:
                if round(r["threshold"], 2) in (0.3, 0.44, 0.6):
                    ax.annotate(
                        f"{r['threshold']:.2f}", (r["coverage"], r["accuracy_answered"]), fontsize=7
                    )
        today = coverage_row(data[split].probs, data[split].targets, other, card.abstain_threshold)
        ax.plot(
            today["coverage"],
            today["accuracy_answered"],
            "ko",
            markerfacecolor="none",
            label=f"card's threshold {card.abstain_threshold}",
        )
        ax.set_xlim(0, 1)
        ax.set_ylim(0.3, 1.0)
        ax.set_xlabel('coverage (photos answered, not "I can\'t tell")')
        ax.set_title(split)
    axes[0].set_ylabel("accuracy among answered photos")
    axes[1].legend(fontsize=8)
    figure.suptitle("Coverage vs accuracy as the abstention threshold moves (labels: threshold)")
    figure.tight_layout()
    paths.append(folder / "coverage_accuracy.png")
    figure.savefig(paths[-1], dpi=100)
    plt.close(figure)
    return paths


def store_in_card(card: ModelCard, out: dict[str, Any]) -> None:
    """The chosen thresholds (today's where nothing better met the constraints) and the
    screening figures, into the card's fields; the caller writes it with `write_card`."""
    choice = out["screening_choice"]
    if choice["adopted"] != "today":
        if choice["rule"] != "sum":
            raise NotImplementedError(f"serving implements the sum rule only, not {choice['rule']}")
        card.urgent_threshold = float(choice["thresholds"])
    if out["abstain"]["chosen"] is not None:
        card.abstain_threshold = float(out["abstain"]["chosen"])
    card.cancer_likely_threshold = float(out["tiers"]["likely_threshold"])
    card.metrics["cancer_tiers"] = {
        "rule": "likely: a malignant top answer or melanoma + BCC >= cancer_likely_threshold "
        "(photos there are malignant at least half the time on val); possible: from "
        "urgent_threshold up to it",
        **{
            f"{split}_{group}_{tier}": out["tiers"][split][group][tier]
            for split in ("val", "test")
            for group in ("non_malignant", "malignant")
            for tier in ("likely", "possible", "not_referred")
        },
    }
    today = out["rules"][0]
    card.metrics["screening"] = {
        "rule": "melanoma + BCC probability >= urgent_threshold, or a malignant top answer",
        "val_sensitivity": today["val"]["sensitivity"],
        "val_flagged_non_malignant": today["val"]["flagged"],
        "test_sensitivity": today["test"]["sensitivity"],
        "test_flagged_non_malignant": today["test"]["flagged"],
        "decision": choice.get("why", choice["adopted"]),
        "command": "python -m diagnosis screening --data ../shared/datasets/skin-photos",
    }
    points = {row["name"]: row for row in out["abstain"]["points"]}
    kept = points["chosen" if out["abstain"]["chosen"] is not None else "today"]
    card.metrics["abstention"] = {
        "rule": '"I can\'t tell" when the top probability < abstain_threshold or the top is other',
        **{
            f"{split}_{key}": kept[split][key]
            for split in ("val", "test")
            for key in ("coverage", "accuracy_answered", "named_abstain", "other_answered")
        },
        "decision": "chosen on val"
        if out["abstain"]["chosen"] is not None
        else 'kept: no threshold meets named "can\'t tell" <= 25 % and other answered <= 15 % '
        "together on val",
    }
