"""What the assistant says next, whatever the transport (Telegram, the web chat).

A transport turns an update into one call here (`start`, `command`, `photo`, `text`, `location`,
`button`) with a `Chatter`, and sends back the `Reply` list it gets. Everything a user reads is
rendered from templates (bot/texts.py); everything remembered about a user lives in the store
(`UserState`), never in this process, so any replica can answer any update.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from bot.admin_commands import ADMIN_COMMANDS, AdminCommands
from bot.texts import Texts, default_texts, language_for, split_message
from diagnosis.analysis import analyse_photo, check_photo
from diagnosis.intake import ImageRejected, IntakeLimits
from diagnosis.quality import QualityThresholds
from diagnosis.serving import Prediction, Predictor
from knowledge.models import (
    AnalysisRecord,
    Clinic,
    Condition,
    FaqEntry,
    Feedback,
    Triage,
    UserState,
)
from knowledge.places import find_place
from knowledge.resilient import ClinicSearchUnavailable, ResilientKnowledge
from knowledge.retrieval import FaqIndex, question_language
from knowledge.store import KnowledgeStore, StoreError
from knowledge.stores import now_iso

log = logging.getLogger(__name__)

CLINICS_LISTED = 5
VENUES_SENT = 3
CLINIC_RADIUS_KM = 50.0

# Loads a photo the user sent earlier, by the transport's reference to it (a Telegram file_id).
PhotoLoader = Callable[[str], Awaitable[bytes | None]]


@dataclass(frozen=True)
class Chatter:
    """Who sent an update: the store key (a keyed hash, never the raw id) and their locale."""

    key: str
    language_code: str | None = None


def user_key(secret: str, platform: str, user_id: int | str) -> str:
    """A stable pseudonym: the same user gets the same key on every replica sharing `secret`."""
    digest = hmac.new(secret.encode(), f"{platform}:{user_id}".encode(), hashlib.sha256)
    return f"{platform}-{digest.hexdigest()[:32]}"


def platform_of(key: str) -> str:
    """The platform a `user_key` was made for ("tg", "web"), without the pseudonym itself."""
    platform, separator, _ = key.partition("-")
    return platform if separator and platform else "chat"


@dataclass(frozen=True)
class Button:
    text: str
    action: str  # what a press does, e.g. "care:3f2a" (at most 64 bytes: Telegram's limit)


@dataclass(frozen=True)
class Venue:
    title: str
    address: str
    lat: float
    lon: float
    map_url: str


@dataclass
class Reply:
    text: str = ""  # Telegram-HTML; the caption when there is a photo
    buttons: list[list[Button]] = field(default_factory=list)
    photo: bytes | None = None  # PNG (the Grad-CAM heatmap)
    venue: Venue | None = None
    ask_location: bool = False  # offer a "send my location" keyboard
    location_button: str = ""  # that keyboard's label
    close_keyboard: bool = False  # remove that keyboard again

    def to_dict(self) -> dict[str, Any]:
        """For the web chat (JSON); the photo is sent separately as base64 by the caller."""
        return {
            "text": self.text,
            "buttons": [
                [{"text": b.text, "action": b.action} for b in row] for row in self.buttons
            ],
            "venue": None if self.venue is None else self.venue.__dict__,
            "ask_location": self.ask_location,
            "location_button": self.location_button,
        }


@dataclass(frozen=True)
class FloodLimit:
    max_messages: int = 20
    window_s: float = 60.0


class Conversation:
    def __init__(
        self,
        store: KnowledgeStore,
        knowledge: ResilientKnowledge,
        predictor: Predictor | None,
        intake: IntakeLimits = IntakeLimits(),
        quality: QualityThresholds = QualityThresholds(),
        flood: FloodLimit = FloodLimit(),
        texts: Texts | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.store = store
        self.knowledge = knowledge
        self.predictor = predictor
        self.intake = intake
        self.quality = quality
        self.flood = flood
        self.texts = texts or default_texts()
        self.clock = clock
        self.admin = AdminCommands(store, knowledge, self.texts, clock)
        self._index: FaqIndex | None = None
        self._index_key: tuple = ()
        self._index_entries: list[FaqEntry] | None = None  # the list the index was checked on
        self._index_lock = asyncio.Lock()  # one build at a time: concurrent questions share it

    # ---- user state ------------------------------------------------------------------------

    async def _load(self, chatter: Chatter) -> UserState:
        try:
            state = await self.store.get_user(chatter.key)
        except StoreError as exc:
            # The answer matters more than the memory: go on with a fresh state.
            log.warning("user state unavailable, answering without it: %s", exc)
            state = None
        if state is None:
            state = UserState(user_key=chatter.key, language=language_for(chatter.language_code))
        if not state.language_chosen:
            state.language = language_for(chatter.language_code or state.language)
        return state

    async def _save(self, state: UserState) -> None:
        state.updated_at = now_iso()
        try:
            await self.store.save_user(state)
        except StoreError as exc:
            log.warning("could not save user state: %s", exc)

    def _over_flood_limit(self, state: UserState) -> bool | None:
        """Count this update. None: within the limit; True: just crossed it (say "slow down");
        False: still over it (already told: stay quiet rather than answer spam with spam)."""
        now = self.clock()
        recent = [t for t in state.recent_messages if now - t < self.flood.window_s]
        recent.append(now)
        state.recent_messages = recent[-(self.flood.max_messages + 2) :]
        if len(recent) <= self.flood.max_messages:
            return None
        return len(recent) == self.flood.max_messages + 1

    async def _handle(
        self, chatter: Chatter, respond: Callable[[UserState], Awaitable[list[Reply]]]
    ) -> list[Reply]:
        state = await self._load(chatter)
        flooded = self._over_flood_limit(state)
        if flooded is not None:
            await self._save(state)
            if not flooded:
                return []
            return [self._reply("slow_down", state, window_s=int(self.flood.window_s))]
        replies = await respond(state)
        if state.user_key:  # empty after /forget: nothing may be written back
            await self._save(state)
        return [part for reply in replies for part in _split(reply)]

    def _reply(self, template: str, state: UserState, **context: Any) -> Reply:
        return Reply(text=self.texts.render(template, state.language, **context))

    def _word(self, name: str, state: UserState) -> str:
        return self.texts.word(name, state.language)

    # ---- commands ------------------------------------------------------------------------------

    async def start(self, chatter: Chatter) -> list[Reply]:
        return await self.command(chatter, "start")

    async def command(self, chatter: Chatter, name: str, *, is_admin: bool = False) -> list[Reply]:
        """`is_admin`: the transport vouches for this user; only then do /stats, /reload and
        /feedback answer (for anyone else they are unknown commands)."""
        name = name.lower().lstrip("/").split("@")[0]

        async def respond(state: UserState) -> list[Reply]:
            if is_admin and name in ADMIN_COMMANDS:
                return [Reply(text=await self.admin.run(name, state.language))]
            if name in ("start", "help", "privacy"):
                return [
                    self._reply(name, state, model_installed=self.predictor is not None),
                ]
            if name == "forget":
                return await self._forget(state)
            if name == "clinics":
                return [self._ask_location(state)]
            if name == "language":
                return [self._language_choice(state)]
            return [self._reply("unknown_command", state, command=name)]

        return await self._handle(chatter, respond)

    async def _forget(self, state: UserState) -> list[Reply]:
        try:
            await self.store.delete_user(state.user_key)
        except StoreError as exc:
            log.warning("forget failed: %s", exc)
            return [self._reply("store_down", state)]
        language = state.language
        state.user_key = ""  # tells `_handle` not to save this state again
        return [Reply(text=self.texts.render("forgotten", language), close_keyboard=True)]

    def _language_choice(self, state: UserState) -> Reply:
        reply = self._reply("language", state)
        reply.buttons = [[Button("English", "lang:en"), Button("한국어", "lang:ko")]]
        return reply

    # ---- photos ------------------------------------------------------------------------------

    async def photo(
        self, chatter: Chatter, data: bytes, photo_ref: str | None = None
    ) -> list[Reply]:
        """A photo (or an image file): check it, classify it, answer by triage level.

        `photo_ref` is the transport's handle to fetch the photo again for the heatmap (a
        Telegram file_id); the photo itself is never stored.
        """

        async def respond(state: UserState) -> list[Reply]:
            if self.predictor is None:
                return [self._reply("no_model", state)]
            analysis = await analyse_photo(data, self.predictor, self.intake, self.quality)
            if analysis.rejected is not None:
                return [self._rejected(state, str(analysis.rejected.reason))]
            if analysis.prediction is None:
                issues = [str(issue) for issue in analysis.quality.reasons]
                return [self._reply("retake", state, issues=issues)]
            return await self._result(state, analysis.prediction, photo_ref)

        return await self._handle(chatter, respond)

    async def refuse(self, chatter: Chatter, reason: str) -> list[Reply]:
        """A file the transport would not even fetch (e.g. over the size limit)."""

        async def respond(state: UserState) -> list[Reply]:
            return [self._rejected(state, reason)]

        return await self._handle(chatter, respond)

    def _rejected(self, state: UserState, reason: str) -> Reply:
        return self._reply(
            "rejected",
            state,
            reason=reason,
            max_mb=self.intake.max_bytes // 2**20,
            min_side=self.intake.min_side,
        )

    async def _result(
        self, state: UserState, prediction: Prediction, photo_ref: str | None
    ) -> list[Reply]:
        result_id = uuid.uuid4().hex[:8]
        ranked = []
        for item in prediction.top:
            condition = await self.knowledge.condition(item.label)
            ranked.append(
                {
                    "label": item.label,
                    "name": self._name(item.label, condition, state.language, item),
                    "percent": _percent(item.prob),
                    "likelihood": self._likelihood(item.prob, state),
                    "triage": str(condition.triage) if condition else "see_doctor",
                }
            )
        best = await self.knowledge.condition(prediction.best.label)
        urgent = prediction.urgent or any(item["triage"] == Triage.URGENT for item in ranked[:1])
        level = "abstain" if prediction.abstain else _triage_level(best, urgent)
        state.last_result = {
            "id": result_id,
            "label": prediction.best.label,
            "top": [{"label": r.label, "prob": round(r.prob, 4)} for r in prediction.top],
            "abstain": prediction.abstain,
            "urgent": urgent,
            "level": level,
            "model": prediction.model_version,
            "photo_ref": photo_ref,
            "at": now_iso(),
        }
        state.awaiting = ""
        await self._record_analysis(state, prediction, urgent)
        text = self.texts.render(
            "result",
            state.language,
            level=level,
            urgent=urgent,
            ranked=ranked,
            condition=_localised(best, state.language),
        )
        return [Reply(text=text, buttons=self._result_buttons(state, result_id, level, urgent))]

    async def _record_analysis(
        self, state: UserState, prediction: Prediction, urgent: bool
    ) -> None:
        """One anonymous record per answered photo, for /stats (retakes and refusals are not
        analyses: the model never answered)."""
        record = AnalysisRecord(
            id=uuid.uuid4().hex,
            at=now_iso(),
            label=prediction.best.label,
            abstain=prediction.abstain,
            urgent=urgent,
            model_version=prediction.model_version,
            transport=platform_of(state.user_key),
        )
        try:
            await self.store.record_analysis(record)
        except StoreError as exc:
            log.warning("analysis not recorded for the statistics: %s", exc)

    def _result_buttons(
        self, state: UserState, result_id: str, level: str, urgent: bool
    ) -> list[list[Button]]:
        clinic = [Button(self._word("button_clinic", state), f"clinic:{result_id}")]
        look = Button(self._word("button_gradcam", state), f"gradcam:{result_id}")
        care = Button(self._word("button_care", state), f"care:{result_id}")
        feedback = [
            Button(self._word("button_right", state), f"feedback:yes:{result_id}"),
            Button(self._word("button_wrong", state), f"feedback:no:{result_id}"),
        ]
        if urgent or level == "abstain":
            # Seeing a doctor is the advice, so finding one comes first.
            return [clinic, [look, care], feedback]
        return [[look, care], clinic, feedback]

    # ---- buttons -------------------------------------------------------------------------------

    async def button(
        self, chatter: Chatter, action: str, load_photo: PhotoLoader | None = None
    ) -> list[Reply]:
        kind, _, rest = action.partition(":")

        async def respond(state: UserState) -> list[Reply]:
            if kind == "lang" and rest in ("en", "ko"):
                state.language, state.language_chosen = rest, True
                return [self._reply("language_set", state)]
            if kind == "clinic" and not rest:
                return [self._ask_location(state)]
            result = state.last_result or {}
            result_id = rest.rsplit(":", 1)[-1]
            if not result or result.get("id") != result_id:
                return [self._reply("stale_button", state)]
            if kind == "care":
                return [await self._care(state, result)]
            if kind == "clinic":
                return [self._ask_location(state)]
            if kind == "gradcam":
                return [await self._heatmap(state, result, load_photo)]
            if kind == "feedback":
                return [await self._feedback(state, result, rest.startswith("yes"))]
            return [self._reply("stale_button", state)]

        return await self._handle(chatter, respond)

    async def _care(self, state: UserState, result: dict[str, Any]) -> Reply:
        condition = await self.knowledge.condition(result["label"])
        return self._reply(
            "care",
            state,
            level=result.get("level", "see_doctor"),
            urgent=bool(result.get("urgent")),
            condition=_localised(condition, state.language),
        )

    async def _heatmap(
        self, state: UserState, result: dict[str, Any], load_photo: PhotoLoader | None
    ) -> Reply:
        ref = result.get("photo_ref")
        data = await load_photo(ref) if load_photo is not None else None
        if not data or self.predictor is None:
            return self._reply("heatmap_unavailable", state)
        try:
            image, _ = await asyncio.to_thread(check_photo, data, self.intake, self.quality)
        except ImageRejected:
            return self._reply("heatmap_unavailable", state)
        png = await self.predictor.gradcam_png(image, result["label"])
        condition = await self.knowledge.condition(result["label"])
        reply = self._reply(
            "heatmap",
            state,
            name=self._name(result["label"], condition, state.language),
        )
        reply.photo = png
        return reply

    async def _feedback(self, state: UserState, result: dict[str, Any], correct: bool) -> Reply:
        feedback = Feedback(
            id=uuid.uuid4().hex,
            user_key=state.user_key,
            label=result["label"],
            correct=correct,
            model_version=result.get("model", ""),
            created_at=now_iso(),
        )
        try:
            await self.store.add_feedback(feedback)
        except StoreError as exc:
            log.warning("feedback not stored: %s", exc)
            return self._reply("store_down", state)
        return self._reply("feedback_thanks", state, correct=correct)

    # ---- clinics ----------------------------------------------------------------------------

    def _ask_location(self, state: UserState) -> Reply:
        state.awaiting = "location"
        reply = self._reply("ask_location", state)
        reply.ask_location = True
        reply.location_button = self._word("button_send_location", state)
        return reply

    async def location(self, chatter: Chatter, lat: float, lon: float) -> list[Reply]:
        async def respond(state: UserState) -> list[Reply]:
            return await self._clinics(state, lat, lon, place=None)

        return await self._handle(chatter, respond)

    async def _clinics(
        self, state: UserState, lat: float, lon: float, place: str | None
    ) -> list[Reply]:
        state.awaiting = ""
        result = state.last_result or {}
        label = result.get("label") if not result.get("abstain") else None
        try:
            found = await self.knowledge.nearest_clinics(
                lat, lon, CLINICS_LISTED, condition=label, max_km=CLINIC_RADIUS_KM
            )
            if not found and label is not None:  # nobody lists it: any dermatologist will do
                found = await self.knowledge.nearest_clinics(
                    lat, lon, CLINICS_LISTED, max_km=CLINIC_RADIUS_KM
                )
        except ClinicSearchUnavailable:
            return [
                Reply(text=self.texts.render("store_down", state.language), close_keyboard=True)
            ]
        lang = state.language
        if not found:
            return [
                Reply(
                    text=self.texts.render("no_clinics", lang, radius_km=int(CLINIC_RADIUS_KM)),
                    close_keyboard=True,
                )
            ]
        clinics = [
            {
                "name": clinic.name.get(lang) or clinic.name.get("en", ""),
                "address": clinic.address.get(lang) or clinic.address.get("en", ""),
                "phone": clinic.phone,
                "hours": clinic.hours.get(lang) or clinic.hours.get("en", ""),
                "distance_km": round(distance, 1),
                "map_url": _map_url(clinic.lat, clinic.lon, clinic.name.get(lang, "")),
                "sample": clinic.sample,
            }
            for clinic, distance in found
        ]
        condition = await self.knowledge.condition(label) if label else None
        listing = Reply(
            text=self.texts.render(
                "clinics",
                lang,
                clinics=clinics,
                place=place,
                condition_name=self._name(label, condition, lang) if label else None,
                any_sample=any(clinic["sample"] for clinic in clinics),
            ),
            close_keyboard=True,
        )
        venues = [
            Reply(venue=Venue(c["name"], c["address"], clinic.lat, clinic.lon, c["map_url"]))
            for c, (clinic, _) in zip(clinics[:VENUES_SENT], found, strict=False)
        ]
        return [listing, *venues]

    # ---- text --------------------------------------------------------------------------------

    async def text(self, chatter: Chatter, message: str) -> list[Reply]:
        """A typed message: a place (when asked for a location) or a follow-up question."""

        async def respond(state: UserState) -> list[Reply]:
            question = message.strip()
            if not question:
                return [self._reply("faq_no_match", state, topics=[])]
            if state.awaiting == "location":
                place = find_place(question, await self._clinic_list())
                if place is not None:
                    return await self._clinics(state, place.lat, place.lon, place=place.name)
            return [await self._answer(state, question)]

        return await self._handle(chatter, respond)

    async def _clinic_list(self) -> list[Clinic]:
        try:
            return await self.store.list_clinics()
        except StoreError:
            return []

    async def _answer(self, state: UserState, question: str) -> Reply:
        result = state.last_result or {}
        label = result.get("label")
        entries = await self.knowledge.faq(None)
        index = await self._faq_index(entries)
        # Answer in the language the question was asked in, not only the chat's setting.
        lang = question_language(question) if question.strip() else state.language
        matches = index.search(question, lang, label)
        if not matches:
            topics = [
                entry.questions.get(lang, [""])[0]
                for entry in entries
                if entry.label in (label, None) and entry.questions.get(lang)
            ][:6]
            return Reply(text=self.texts.render("faq_no_match", lang, topics=topics))
        entry = matches[0].entry
        if label is None and entry.label is not None and not index.mentioned_labels(question):
            # "Is it contagious?" with no photo yet: the answer depends on the condition
            # (eczema: no, ringworm: yes), so ask which one instead of picking one.
            names = []
            for match in matches:
                if match.entry.label and match.entry.label not in names:
                    names.append(match.entry.label)
            conditions = [await self.knowledge.condition(name) for name in names]
            return Reply(
                text=self.texts.render(
                    "faq_which_condition",
                    lang,
                    names=[
                        self._name(name, condition, lang)
                        for name, condition in zip(names, conditions, strict=True)
                    ],
                )
            )
        condition = await self.knowledge.condition(entry.label) if entry.label else None
        return Reply(
            text=self.texts.render(
                "faq_answer",
                lang,
                answer=entry.answer.get(lang) or entry.answer.get("en", ""),
                about=self._name(entry.label, condition, lang) if entry.label else None,
                scoped=entry.label is not None and entry.label == label,
            )
        )

    async def _faq_index(self, entries: list[FaqEntry]) -> FaqIndex:
        # Rebuilt only when an entry changed (an admin edit bumps its version). The knowledge
        # returns the very same list while it is fresh: no need to compare the entries.
        if self._index is not None and entries is self._index_entries:
            return self._index
        key = tuple((entry.id, entry.version) for entry in entries)
        async with self._index_lock:
            if self._index is None or key != self._index_key:
                self._index_entries = None
                conditions = [
                    condition
                    for label in {entry.label for entry in entries if entry.label}
                    if (condition := await self.knowledge.condition(label)) is not None
                ]
                # About half a second of CPU: off the event loop, so other chats go on.
                index = await asyncio.to_thread(FaqIndex, entries, conditions)
                self._index, self._index_key = index, key
        self._index_entries = entries
        return self._index

    # ---- anything else ------------------------------------------------------------------------

    async def other(self, chatter: Chatter, what: str = "message") -> list[Reply]:
        """A sticker, voice note, video...: say what the assistant can take."""

        async def respond(state: UserState) -> list[Reply]:
            return [self._reply("unsupported", state, what=what)]

        return await self._handle(chatter, respond)

    # ---- helpers ----------------------------------------------------------------------------

    def _likelihood(self, prob: float, state: UserState) -> str:
        for threshold, word in ((0.8, "very_likely"), (0.5, "likely"), (0.25, "possible")):
            if prob >= threshold:
                return self._word(word, state)
        return self._word("less_likely", state)

    @staticmethod
    def _name(label: str, condition: Condition | None, lang: str, ranked: Any = None) -> str:
        if condition is not None and condition.names.get(lang):
            return condition.names[lang]
        if ranked is not None:
            return getattr(ranked, f"name_{lang}", label)
        return label.replace("_", " ")


def _triage_level(condition: Condition | None, urgent: bool) -> str:
    if urgent:
        return str(Triage.URGENT)
    return str(condition.triage) if condition is not None else str(Triage.SEE_DOCTOR)


def _localised(condition: Condition | None, lang: str) -> dict[str, Any] | None:
    """The care content in one language, as plain values for a template."""
    if condition is None:
        return None

    def pick(values: dict) -> Any:
        return values.get(lang) or values.get("en") or ([] if isinstance(values, dict) else "")

    return {
        "label": condition.label,
        "name": pick(condition.names) or condition.label,
        "summary": pick(condition.summary) or "",
        "triage": str(condition.triage),
        "care_steps": condition.care_steps.get(lang) or [],
        "red_flags": condition.red_flags.get(lang) or [],
        "see_doctor_when": condition.see_doctor_when.get(lang) or [],
        "ingredients": [
            {
                "name": item.name.get(lang, ""),
                "use": item.use.get(lang, ""),
                "cautions": item.cautions.get(lang, ""),
            }
            for item in condition.ingredients
        ],
        "contagious": condition.contagious.get(lang, ""),
        "improvement_time": condition.improvement_time.get(lang, ""),
        "sources": [{"name": s.name, "url": s.url} for s in condition.sources],
    }


def _percent(prob: float) -> str:
    value = prob * 100
    return "<1%" if value < 1 else f"{value:.0f}%"


def _map_url(lat: float, lon: float, name: str) -> str:
    return f"https://map.kakao.com/link/map/{quote(name or 'clinic')},{lat:.6f},{lon:.6f}"


def _split(reply: Reply) -> list[Reply]:
    if reply.photo is not None or reply.venue is not None:
        return [reply]
    parts = split_message(reply.text)
    if len(parts) <= 1:
        return [reply]
    # Buttons and keyboards belong under the last part, where the user's eye ends.
    head = [Reply(text=part) for part in parts[:-1]]
    last = Reply(
        text=parts[-1],
        buttons=reply.buttons,
        ask_location=reply.ask_location,
        location_button=reply.location_button,
        close_keyboard=reply.close_keyboard,
    )
    return [*head, last]
