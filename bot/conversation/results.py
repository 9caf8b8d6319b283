"""Photos and what follows from their result: the answer, care tips, the heatmap, feedback.

A photo's way through, in order: analyse it (diagnosis/), look up the care content of the
conditions it may be (knowledge/), decide the answer (`LastResult`), record it, render it.
Several photos of one case (an album) are each analysed and checked, kept in the store until
the last has arrived, and answered once from the mean of their probabilities.
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
from diagnosis.serving.postprocess import combine_predictions
from knowledge.models import AlbumPhoto, AnalysisRecord, Feedback, Triage, UserState
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
        return await self._answer(state, analysis.prediction, [photo_ref])

    # ---- several photos of one case -------------------------------------------------------

    async def examine(
        self,
        state: UserState,
        album: str,
        data: bytes | None,
        photo_ref: str | None,
        photo_id: str,
        sequence: int = 0,
    ) -> AlbumPhoto:
        """What one photo of an album shows, or why it is left out (`data` None: too large)."""
        photo = AlbumPhoto(
            id=photo_id,
            user_key=state.user_key,
            album=album,
            at=now_iso(),
            photo_ref=photo_ref,
            sequence=sequence,
        )
        if data is None:
            photo.left_out = "file_too_large"
        elif self.predictor is not None:
            analysis = await analyse_photo(data, self.predictor, self.intake, self.quality)
            if analysis.rejected is not None:
                photo.left_out = str(analysis.rejected.reason)
            elif analysis.prediction is None:
                photo.left_out = "quality"
                photo.issues = [str(issue) for issue in analysis.quality.reasons]
            else:
                photo.probabilities = analysis.prediction.probabilities
        return photo

    async def keep_album_photo(self, state: UserState, photo: AlbumPhoto) -> Reply | None:
        """Keep an album's photo for the answer to come (in the store: the album's photos may
        reach different replicas). Without the store, this photo is answered on its own."""
        try:
            await self.store.add_album_photo(photo)
        except StoreError as exc:
            log.warning("album photo not kept, answered alone: %s", exc)
            return await self.answer_photos(state, [photo])
        return None

    async def answer_album(self, state: UserState, album: str, photo_id: str) -> list[Reply]:
        """The album's one answer, given for its last photo; nothing for the others."""
        try:
            photos = await self.store.album_photos(state.user_key, album)
        except StoreError as exc:
            log.warning("album photos unavailable: %s", exc)
            return [self.say.reply("store_down", state)]
        if not photos or photos[-1].id != photo_id:
            return []
        try:
            await self.store.delete_album(state.user_key, album)
        except StoreError as exc:  # harmless: a later photo of it would start a new answer
            log.warning("answered album not deleted: %s", exc)
        # Who answers went by arrival; the photos are numbered in the order they were sent.
        return [await self.answer_photos(state, sorted(photos, key=lambda p: p.sequence))]

    async def answer_photos(self, state: UserState, photos: list[AlbumPhoto]) -> Reply:
        """One answer for several photos of one case: the usable ones combined (the mean of
        their calibrated probabilities), the others named as left out and why."""
        if self.predictor is None:
            return self.say.reply("no_model", state)
        used = [photo for photo in photos if photo.probabilities]
        left_out = [
            {"number": number, "reason": photo.left_out, "issues": photo.issues}
            for number, photo in enumerate(photos, 1)
            if not photo.probabilities
        ]
        if not used:
            issues = sorted({issue for photo in photos for issue in photo.issues})
            if issues:
                return self.say.reply("retake", state, issues=issues)
            return self.rejected(state, photos[0].left_out)
        prediction = combine_predictions(
            [photo.probabilities for photo in used], self.predictor.card
        )
        refs = [photo.photo_ref for photo in used]
        return await self._answer(state, prediction, refs, photos=len(photos), left_out=left_out)

    def rejected(self, state: UserState, reason: str) -> Reply:
        return self.say.reply(
            "rejected",
            state,
            reason=reason,
            max_mb=self.intake.max_bytes // 2**20,
            min_side=self.intake.min_side,
        )

    async def _answer(
        self,
        state: UserState,
        prediction: Prediction,
        photo_refs: list[str | None],
        photos: int = 1,
        left_out: list[dict] | None = None,
    ) -> Reply:
        """`photo_refs`: the photos the prediction is from (several: an album), for their
        heatmaps; `photos` of them were sent, `left_out` say which were not used and why."""
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
            photo_ref=photo_refs[0],
            photo_refs=photo_refs if len(photo_refs) > 1 else [],
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
            photos=photos,
            used=len(photo_refs),
            left_out=left_out or [],
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
        look = [button("button_gradcam", ActionKind.HEATMAP)]
        if result.photo_refs:  # an album: where it looked in each photo
            numbered = self.say.word("button_gradcam_photo", state)
            look = [
                Button.of(f"{numbered} {index + 1}", Action.heatmap_of(result.id, index))
                for index in range(len(result.photo_refs))
            ]
        care = button("button_care", ActionKind.CARE)
        # "I can't tell" is about no one condition: nothing more to read about it.
        more = [] if result.abstain else [button("button_more", ActionKind.MORE)]
        feedback = [
            button("button_right", ActionKind.FEEDBACK_RIGHT),
            button("button_wrong", ActionKind.FEEDBACK_WRONG),
        ]
        if result.urgent or result.abstain:
            # Seeing a doctor is the advice, so finding one comes first.
            return [clinic, [*more, care], look, feedback]
        return [[care, *more], look, clinic, feedback]

    # ---- what the result's buttons do -----------------------------------------------------

    async def section(self, state: UserState, result: LastResult, template: str) -> Reply:
        """One of the result's long sections, which its first message leaves out: "care"
        (Care tips) or "result_more" (More)."""
        condition = await self.knowledge.condition(result.label)
        lang = state.language
        return self.say.reply(
            template,
            state,
            level=result.level,
            urgent=result.urgent and not result.cancer_possible_only,
            condition=condition_view(condition, lang),
            cancer=await self._cancer_view(result, lang),
        )

    async def heatmap(
        self,
        state: UserState,
        result: LastResult,
        load_photo: PhotoLoader | None,
        photo_index: int = 0,
    ) -> Reply:
        refs = result.photo_refs or [result.photo_ref]
        if photo_index >= len(refs):
            return self.say.reply("heatmap_unavailable", state)
        data = await load_photo(refs[photo_index]) if load_photo is not None else None
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
