"""Photos and what follows from their result: the answer, care tips, the heatmap, feedback.

A photo's way through, in order: analyse it (diagnosis/), look up the care content of the
conditions it may be (knowledge/), decide the answer (`LastResult`), record it, render it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable

from bot.conversation.replies import Button, Reply, platform_of
from bot.conversation.state import Action, ActionKind, Awaiting, LastResult
from bot.conversation.views import (
    Speaker,
    condition_name,
    condition_view,
    percent,
    triage_level,
)
from diagnosis.analysis import analyse_photo, explain_photo
from diagnosis.intake import DecodeSlots, ImageRejected, IntakeLimits
from diagnosis.quality import QualityThresholds
from diagnosis.serving import Prediction, Predictor
from knowledge.models import AnalysisRecord, Feedback, Triage, UserState
from knowledge.resilient import ResilientKnowledge
from knowledge.store import KnowledgeStore, StoreError
from knowledge.store.rules import now_iso

log = logging.getLogger(__name__)

# The care content's condition for everything else; its red flags are the emergency signs.
CATCH_ALL_LABEL = "other"

# Loads a photo the user sent earlier, by the transport's reference to it (a Telegram file_id).
PhotoLoader = Callable[[str | None], Awaitable[bytes | None]]


class Results:
    def __init__(
        self,
        store: KnowledgeStore,
        knowledge: ResilientKnowledge,
        predictor: Predictor | None,
        speaker: Speaker,
        intake: IntakeLimits,
        quality: QualityThresholds,
        decode_slots: DecodeSlots,
    ):
        self.store = store
        self.knowledge = knowledge
        self.predictor = predictor
        self.say = speaker
        self.intake = intake
        self.quality = quality
        self.decode_slots = decode_slots

    async def photo(self, state: UserState, data: bytes, photo_ref: str | None) -> Reply:
        if self.predictor is None:
            return self.say.reply("no_model", state)
        analysis = await analyse_photo(
            data, self.predictor, self.intake, self.quality, slots=self.decode_slots
        )
        if analysis.rejected is not None:
            return self.rejected(state, str(analysis.rejected.reason))
        if analysis.prediction is None:
            issues = [str(issue) for issue in analysis.quality.reasons]
            return self.say.reply("retake", state, issues=issues)
        return await self._answer(state, analysis.prediction, photo_ref)

    def rejected(self, state: UserState, reason: str) -> Reply:
        return self.say.reply(
            "rejected",
            state,
            reason=reason,
            max_mb=self.intake.max_bytes // 2**20,
            min_side=self.intake.min_side,
        )

    async def _answer(
        self, state: UserState, prediction: Prediction, photo_ref: str | None
    ) -> Reply:
        lang = state.language
        # 1. The care content of every condition shown.
        conditions = {
            item.label: await self.knowledge.condition(item.label) for item in prediction.top
        }
        best = conditions.get(prediction.best.label)
        # 2. The decision: refer when the model's rule says so or the top answer is a cancer;
        # the strong wording only in the "likely" tier.
        tier = referral_tier(prediction, best.triage if best is not None else None)
        urgent, likely = bool(tier), tier == "likely"
        cancer = await self._likeliest_cancer(prediction) if urgent else None
        result = LastResult(
            id=uuid.uuid4().hex[:8],
            record_id=uuid.uuid4().hex,
            label=prediction.best.label,
            top=[{"label": item.label, "prob": round(item.prob, 4)} for item in prediction.top],
            abstain=prediction.abstain,
            urgent=urgent,
            level="abstain" if prediction.abstain else triage_level(best, likely),
            model=prediction.model_version,
            photo_ref=photo_ref,
            at=now_iso(),
            cancer=cancer[0] if cancer else None,
            cancer_prob=round(cancer[1], 4) if cancer else 0.0,
            cancer_tier=tier,
        )
        state.last_result = result.to_dict()
        state.awaiting = Awaiting.NOTHING
        # 3. The anonymous record for /stats.
        await self._record(state, result)
        # 4. The reply.
        ranked = [
            {
                "label": item.label,
                "name": condition_name(item.label, conditions.get(item.label), lang, item),
                "percent": percent(item.prob),
                "likelihood": self.say.likelihood(item.prob, state),
                "triage": triage_level(conditions.get(item.label), urgent=False),
            }
            for item in prediction.top
        ]
        text = self.say.texts.render(
            "result",
            lang,
            level=result.level,
            urgent=likely,
            ranked=ranked,
            condition=condition_view(best, lang),
            cancer=await self._cancer_view(result, lang),
            emergency_signs=await self._emergency_signs(result, lang),
        )
        return Reply(text=text, buttons=self._buttons(state, result))

    async def _likeliest_cancer(self, prediction: Prediction) -> tuple[str, float] | None:
        """The most likely of the conditions whose care content says "urgent" (the skin
        cancers), whether or not it made the top answers, with its probability."""
        cancers = [
            (prob, label)
            for label, prob in prediction.probabilities.items()
            if (condition := await self.knowledge.condition(label)) is not None
            and condition.triage == Triage.URGENT
        ]
        if not cancers:
            return None
        prob, label = max(cancers)
        return label, prob

    async def _cancer_view(self, result: LastResult, lang: str) -> dict | None:
        """What the templates say about the result's cancer: which one, how likely, its own
        warning signs, and the tier; None when the answer was no referral."""
        if not (result.urgent and result.cancer):
            return None
        condition = await self.knowledge.condition(result.cancer)
        return {
            "label": result.cancer,
            "name": condition_name(result.cancer, condition, lang),
            "percent": percent(result.cancer_prob),
            "tier": result.cancer_tier,
            "warning_signs": condition.red_flags.get(lang, []) if condition else [],
        }

    async def _emergency_signs(self, result: LastResult, lang: str) -> list[str]:
        """After "I can't tell" (which includes every `other` answer), the signs that need
        emergency or same-day care: the catch-all condition's red flags."""
        if not result.abstain:
            return []
        condition = await self.knowledge.condition(CATCH_ALL_LABEL)
        return condition.red_flags.get(lang, []) if condition else []

    async def _record(self, state: UserState, result: LastResult) -> None:
        """One anonymous record per answered photo, for /stats (retakes and refusals are not
        analyses: the model never answered)."""
        record = analysis_record(state, result)
        try:
            await self.store.record_analysis(record)
        except StoreError as exc:
            log.warning("analysis not recorded for the statistics: %s", exc)

    def _buttons(self, state: UserState, result: LastResult) -> list[list[Button]]:
        def button(word: str, kind: ActionKind) -> Button:
            return Button.of(self.say.word(word, state), Action(kind, result.id))

        clinic = [button("button_clinic", ActionKind.CLINIC)]
        look = button("button_gradcam", ActionKind.HEATMAP)
        care = button("button_care", ActionKind.CARE)
        feedback = [
            button("button_right", ActionKind.FEEDBACK_RIGHT),
            button("button_wrong", ActionKind.FEEDBACK_WRONG),
        ]
        if result.urgent or result.abstain:
            # Seeing a doctor is the advice, so finding one comes first.
            return [clinic, [look, care], feedback]
        return [[look, care], clinic, feedback]

    # ---- what the result's buttons do -----------------------------------------------------

    async def care(self, state: UserState, result: LastResult) -> Reply:
        condition = await self.knowledge.condition(result.label)
        lang = state.language
        return self.say.reply(
            "care",
            state,
            level=result.level,
            urgent=result.urgent and not result.cancer_possible_only,
            condition=condition_view(condition, lang),
            cancer=await self._cancer_view(result, lang),
        )

    async def heatmap(
        self, state: UserState, result: LastResult, load_photo: PhotoLoader | None
    ) -> Reply:
        data = await load_photo(result.photo_ref) if load_photo is not None else None
        if not data or self.predictor is None:
            return self.say.reply("heatmap_unavailable", state)
        try:
            png = await explain_photo(
                data, self.predictor, result.label, self.intake, self.decode_slots
            )
        except ImageRejected:
            return self.say.reply("heatmap_unavailable", state)
        condition = await self.knowledge.condition(result.label)
        reply = self.say.reply(
            "heatmap", state, name=condition_name(result.label, condition, state.language)
        )
        reply.photo = png
        return reply

    async def feedback(self, state: UserState, result: LastResult, correct: bool) -> Reply:
        if result.feedback_given:
            return self.say.reply("feedback_already", state)
        feedback = Feedback(
            # One id per result: two presses sent at once both load the state before either
            # saves `feedback_given`, so it is the store's write by id (a replace in both
            # adapters) that keeps them to one record, on any replica.
            id=f"{state.user_key}.{result.id}",
            user_key=state.user_key,
            label=result.label,
            correct=correct,
            model_version=result.model,
            created_at=now_iso(),
        )
        try:
            await self.store.add_feedback(feedback)
        except StoreError as exc:
            log.warning("feedback not stored: %s", exc)
            return self.say.reply("store_down", state)
        result.feedback_given = True
        state.last_result = result.to_dict()  # saved with the state after this turn
        return self.say.reply("feedback_thanks", state, correct=correct)


def referral_tier(prediction: Prediction, top_triage: Triage | None) -> str:
    """ "likely" (see a dermatologist within 2 weeks), "possible" ("a skin cancer can't be ruled
    out": a routine check) or "" (no referral): the card's referral rule, or a top answer whose
    care content is urgent (a skin cancer); the strong tier by the card's cancer_likely rule."""
    top_is_cancer = top_triage == Triage.URGENT
    if not (prediction.urgent or top_is_cancer):
        return ""
    return "likely" if prediction.cancer_likely or top_is_cancer else "possible"


def analysis_record(
    state: UserState, result: LastResult, checklist_rules: list[str] | None = None
) -> AnalysisRecord:
    """The anonymous record of an answered photo (no photo, no user key): as answered, and
    again under the same id with the checklist rules the user's answers fired."""
    return AnalysisRecord(
        id=result.record_id or uuid.uuid4().hex,
        at=result.at,
        label=result.label,
        abstain=result.abstain,
        urgent=result.urgent,
        model_version=result.model,
        transport=platform_of(state.user_key),
        checklist_rules=list(checklist_rules or []),
    )
