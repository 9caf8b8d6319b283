"""What the assistant says next, whatever the transport (Telegram, the web chat).

A transport turns an update into one call here (`command`, `photo`, `refuse`, `text`,
`location`, `button`, `other`) with a `Chatter`, and sends back the `Reply` list it gets.
Which command or button does what is declared once, in `COMMANDS` and `BUTTONS` below; the
work itself is done by one part per concern (results.py, clinics.py, answers.py). Everything a
user reads is rendered from templates (bot/texts.py); everything remembered about a user lives
in the store (`UserState`), never in this process, so any replica can answer any update.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.admin_commands import ADMIN_COMMANDS, AdminCommands
from bot.conversation.answers import ENCODING_WAIT_S, Answers
from bot.conversation.checklist import Checklist
from bot.conversation.clinics import Clinics
from bot.conversation.replies import Button, Chatter, Reply
from bot.conversation.results import PhotoLoader, Results
from bot.conversation.state import RESULT_KINDS, Action, ActionKind, Awaiting, LastResult
from bot.conversation.views import Speaker
from bot.texts import Texts, default_texts, language_for
from diagnosis.intake import DecodeSlots, IntakeLimits
from diagnosis.quality import QualityThresholds
from diagnosis.serving import Predictor
from knowledge.embeddings import SentenceEncoder
from knowledge.models import LANGUAGES, UserState
from knowledge.resilient import ResilientKnowledge
from knowledge.store import KnowledgeStore, StoreError
from knowledge.store.rules import now_iso

log = logging.getLogger(__name__)

LANGUAGE_BUTTONS = {"en": "English", "ko": "한국어"}  # each in its own language


# How long after an album's photo the album is answered, unless another photo of it arrived
# meanwhile. Telegram delivers an album's photos within milliseconds of each other.
ALBUM_WAIT_S = 1.0


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
        decode_slots: DecodeSlots | None = None,
        encoder: SentenceEncoder | None = None,
        encoding_wait_s: float = ENCODING_WAIT_S,
        album_wait_s: float = ALBUM_WAIT_S,
    ):
        self.store = store
        self.album_wait_s = album_wait_s
        self.flood = flood
        self.texts = texts or default_texts()
        self.clock = clock
        self.say = Speaker(self.texts)
        self.results = Results(
            store,
            knowledge,
            predictor,
            self.say,
            intake,
            quality,
            decode_slots or DecodeSlots(intake),
        )
        self.clinics = Clinics(store, knowledge, self.say)
        self.checklist = Checklist(store, knowledge, self.say)
        self.answers = Answers(knowledge, self.say, encoder, encoding_wait_s)
        self.admin = AdminCommands(store, knowledge, self.texts, clock)

    @property
    def predictor(self) -> Predictor | None:
        """The model the photos go to (None: no trained model is installed)."""
        return self.results.predictor

    @predictor.setter
    def predictor(self, predictor: Predictor | None) -> None:
        self.results.predictor = predictor

    # ---- what a transport calls ---------------------------------------------------------------

    async def command(self, chatter: Chatter, name: str, *, is_admin: bool = False) -> list[Reply]:
        """`is_admin`: the transport vouches for this user; only then do /stats, /reload and
        /feedback answer (for anyone else they are unknown commands)."""
        name = name.lower().lstrip("/").split("@")[0]

        async def respond(state: UserState) -> list[Reply]:
            if is_admin and name in ADMIN_COMMANDS:
                return [Reply(text=await self.admin.run(name, state.language))]
            handler = COMMANDS.get(name)
            if handler is None:
                return [self.say.reply("unknown_command", state, command=name)]
            return await handler(self, state, name)

        return await self._handle(chatter, respond)

    async def start(self, chatter: Chatter) -> list[Reply]:
        return await self.command(chatter, "start")

    async def photo(
        self, chatter: Chatter, data: bytes, photo_ref: str | None = None
    ) -> list[Reply]:
        """A photo (or an image file): check it, classify it, answer by triage level.

        `photo_ref` is the transport's handle to fetch the photo again for the heatmap (a
        Telegram file_id); the photo itself is never stored.
        """

        async def respond(state: UserState) -> list[Reply]:
            previous = state.last_result
            answer = await self.results.photo(state, data, photo_ref)
            return await self._then_questions(state, previous, [answer])

        return await self._handle(chatter, respond)

    async def album_photo(
        self,
        chatter: Chatter,
        album: str,
        data: bytes | None,
        photo_ref: str | None = None,
        sequence: int = 0,
    ) -> tuple[str, list[Reply]]:
        """One photo of an album (Telegram's media_group_id; `data` None: too large to fetch):
        checked, analysed and kept in the store with the album's others, unanswered. Returns
        its id and what to say now (usually nothing); `album_wait_s` later the transport calls
        `answer_album` with that id, outside its per-chat lock so the next photos get in."""
        photo_id = uuid.uuid4().hex

        async def respond(state: UserState) -> list[Reply]:
            photo = await self.results.examine(state, album, data, photo_ref, photo_id, sequence)
            reply = await self.results.keep_album_photo(state, photo)
            return [reply] if reply is not None else []

        return photo_id, await self._handle(chatter, respond)

    async def answer_album(self, chatter: Chatter, album: str, photo_id: str) -> list[Reply]:
        """The album's one answer when `photo_id` is its last photo (whichever replica holds
        it); nothing otherwise. Not a message of its own: the flood limit counted the photos."""

        async def respond(state: UserState) -> list[Reply]:
            previous = state.last_result
            answers = await self.results.answer_album(state, album, photo_id)
            return await self._then_questions(state, previous, answers)

        return await self._handle(chatter, respond, counted=False)

    async def photos(self, chatter: Chatter, photos: list[bytes | None]) -> list[Reply]:
        """Several photos of one case at once (the web chat's upload): one answer."""

        async def respond(state: UserState) -> list[Reply]:
            album = uuid.uuid4().hex
            examined = [
                await self.results.examine(state, album, data, None, f"{album}-{number}")
                for number, data in enumerate(photos)
            ]
            previous = state.last_result
            answer = await self.results.answer_photos(state, examined)
            return await self._then_questions(state, previous, [answer])

        return await self._handle(chatter, respond)

    async def _then_questions(
        self, state: UserState, previous: object, replies: list[Reply]
    ) -> list[Reply]:
        """After a new result (one photo or an album), what a photo cannot show, when questions
        fit the answer (checklist.py); nothing more after a retake or a refused file."""
        if state.last_result is previous:
            return replies
        return [*replies, *await self.checklist.offer(state)]

    async def refuse(self, chatter: Chatter, reason: str) -> list[Reply]:
        """A file the transport would not even fetch (e.g. over the size limit)."""

        async def respond(state: UserState) -> list[Reply]:
            return [self.results.rejected(state, reason)]

        return await self._handle(chatter, respond)

    async def button(
        self, chatter: Chatter, data: str, load_photo: PhotoLoader | None = None
    ) -> list[Reply]:
        action = Action.parse(data)

        async def respond(state: UserState) -> list[Reply]:
            if action is None:
                return [self.say.reply("stale_button", state)]
            result = LastResult.from_dict(state.last_result)
            if action.kind in RESULT_KINDS and action.arg:
                # A button of an earlier answer (or someone else's) acts on nothing.
                if result is None or result.id != action.result_id:
                    return [self.say.reply("stale_button", state)]
            return [await BUTTONS[action.kind](self, state, action, result, load_photo)]

        return await self._handle(chatter, respond)

    async def location(self, chatter: Chatter, lat: float, lon: float) -> list[Reply]:
        async def respond(state: UserState) -> list[Reply]:
            return await self.clinics.near(state, lat, lon)

        return await self._handle(chatter, respond)

    async def text(self, chatter: Chatter, message: str) -> list[Reply]:
        """A typed message: a place to find clinics in (at any point: "Busan", "find a
        dermatologist in Gangnam"), or a follow-up question."""

        async def respond(state: UserState) -> list[Reply]:
            question = message.strip()
            if not question:
                return [self.say.reply("faq_no_match", state, topics=[])]
            asked = state.awaiting == Awaiting.LOCATION
            request = await self.clinics.place_request(question, asked)
            if request is not None:
                return await self.clinics.search(state, request)
            return [await self.answers.answer(state, question)]

        return await self._handle(chatter, respond)

    async def other(self, chatter: Chatter, what: str = "message") -> list[Reply]:
        """A sticker, voice note, video...: say what the assistant can take."""

        async def respond(state: UserState) -> list[Reply]:
            return [self.say.reply("unsupported", state, what=what)]

        return await self._handle(chatter, respond)

    # ---- commands ---------------------------------------------------------------------------

    async def _about(self, state: UserState, name: str) -> list[Reply]:
        """/start, /help, /privacy: a template of the same name."""
        return [self.say.reply(name, state, model_installed=self.predictor is not None)]

    async def _forget(self, state: UserState, _name: str) -> list[Reply]:
        try:
            await self.store.delete_user(state.user_key)
        except StoreError as exc:
            log.warning("forget failed: %s", exc)
            return [self.say.reply("store_down", state)]
        language = state.language
        state.user_key = ""  # tells `_handle` not to save this state again
        return [Reply(text=self.texts.render("forgotten", language), close_keyboard=True)]

    async def _find_clinic(self, state: UserState, _name: str) -> list[Reply]:
        return [self.clinics.ask_location(state)]

    async def _language_choice(self, state: UserState, _name: str) -> list[Reply]:
        reply = self.say.reply("language", state)
        reply.buttons = [
            [
                Button.of(LANGUAGE_BUTTONS[lang], Action(ActionKind.LANGUAGE, lang))
                for lang in LANGUAGES
            ]
        ]
        return [reply]

    # ---- buttons ----------------------------------------------------------------------------
    # Every button handler takes the same arguments (see ButtonHandler); a result's buttons get
    # the user's current result, already checked to be the one the button belongs to.

    async def _set_language(self, state: UserState, action: Action, *_unused: object) -> Reply:
        state.language, state.language_chosen = action.arg, True
        return self.say.reply("language_set", state)

    async def _clinic_button(self, state: UserState, *_unused: object) -> Reply:
        return self.clinics.ask_location(state)

    async def _care(
        self, state: UserState, action: Action, result: LastResult, *_unused: object
    ) -> Reply:
        return await self.results.section(state, result, "care")

    async def _more(
        self, state: UserState, action: Action, result: LastResult, *_unused: object
    ) -> Reply:
        return await self.results.section(state, result, "result_more")

    async def _heatmap(
        self, state: UserState, action: Action, result: LastResult, load_photo: PhotoLoader | None
    ) -> Reply:
        return await self.results.heatmap(state, result, load_photo, action.photo_index)

    async def _checklist_answer(
        self, state: UserState, action: Action, result: LastResult, *_unused: object
    ) -> Reply:
        return await self.checklist.answer(state, result, action)

    async def _feedback(
        self, state: UserState, action: Action, result: LastResult, *_unused: object
    ) -> Reply:
        correct = action.kind == ActionKind.FEEDBACK_RIGHT
        return await self.results.feedback(state, result, correct)

    # ---- every update ---------------------------------------------------------------------

    async def _handle(
        self,
        chatter: Chatter,
        respond: Callable[[UserState], Awaitable[list[Reply]]],
        counted: bool = True,
    ) -> list[Reply]:
        """`counted`: the update counts toward the flood limit (all but an album's answer)."""
        state = await self._load(chatter)
        flooded = self._over_flood_limit(state) if counted else None
        if flooded is not None:
            await self._save(state)
            if not flooded:
                return []
            return [self.say.reply("slow_down", state, window_s=int(self.flood.window_s))]
        replies = await respond(state)
        if state.user_key:  # empty after /forget: nothing may be written back
            await self._save(state)
        return [part for reply in replies for part in reply.split()]

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


CommandHandler = Callable[[Conversation, UserState, str], Awaitable[list[Reply]]]
ButtonHandler = Callable[
    [Conversation, UserState, Action, LastResult | None, PhotoLoader | None], Awaitable[Reply]
]

# The commands everyone may use (transports register these names; admins have ADMIN_COMMANDS
# too). Anything else gets "unknown command".
COMMANDS: dict[str, CommandHandler] = {
    "start": Conversation._about,
    "help": Conversation._about,
    "privacy": Conversation._about,
    "forget": Conversation._forget,
    "clinics": Conversation._find_clinic,
    "language": Conversation._language_choice,
}

# What each kind of button does. Buttons of a result reach their handler only when they belong
# to the user's current result (checked in `Conversation.button`).
BUTTONS: dict[ActionKind, ButtonHandler] = {
    ActionKind.LANGUAGE: Conversation._set_language,
    ActionKind.CLINIC: Conversation._clinic_button,
    ActionKind.CARE: Conversation._care,
    ActionKind.MORE: Conversation._more,
    ActionKind.HEATMAP: Conversation._heatmap,
    ActionKind.FEEDBACK_RIGHT: Conversation._feedback,
    ActionKind.FEEDBACK_WRONG: Conversation._feedback,
    ActionKind.CHECKLIST: Conversation._checklist_answer,
}
