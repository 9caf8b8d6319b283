"""What the assistant knows: care content, FAQ, clinics, and what it keeps about users.

Plain dataclasses with no storage or torch in them; every user-facing text is a `Localized`
mapping with one entry per language ("en", "ko"). Documents carry a `version` that every save
increments, so a stale admin edit is refused instead of silently overwriting a newer one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from enum import StrEnum
from typing import Any

LANGUAGES = ("en", "ko")

Localized = dict[str, str]  # {"en": "...", "ko": "..."}
LocalizedList = dict[str, list[str]]  # {"en": ["...", ...], "ko": [...]}


class Triage(StrEnum):
    URGENT = "urgent"  # possible skin cancer: see a dermatologist soon, no self-care-only advice
    SEE_DOCTOR = "see_doctor"  # usually harmless or needs a doctor to treat; get it checked
    SELF_CARE = "self_care"  # first-line care at home is reasonable


@dataclass
class Source:
    name: str  # e.g. "NHS", "American Academy of Dermatology"
    url: str


@dataclass
class Ingredient:
    name: Localized  # e.g. benzoyl peroxide
    use: Localized  # what it is for
    cautions: Localized  # pregnancy, children, face, irritation...


@dataclass
class Condition:
    label: str  # the model's label, e.g. "acne"
    names: Localized
    summary: Localized
    triage: Triage
    care_steps: LocalizedList = field(default_factory=dict)  # first-line care (self-care ones)
    ingredients: list[Ingredient] = field(default_factory=list)  # over the counter
    red_flags: LocalizedList = field(default_factory=dict)
    see_doctor_when: LocalizedList = field(default_factory=dict)
    contagious: Localized = field(default_factory=dict)
    improvement_time: Localized = field(default_factory=dict)
    sources: list[Source] = field(default_factory=list)
    version: int = 0
    updated_by: str = ""
    updated_at: str = ""  # ISO 8601, UTC


@dataclass
class FaqEntry:
    id: str  # stable slug, e.g. "acne-steroid-cream"
    label: str | None  # the condition it is about; None for general questions
    topic: str  # e.g. "contagious", "duration", "steroid", "privacy"
    questions: LocalizedList  # phrasings and paraphrases, per language
    answer: Localized
    version: int = 0
    updated_by: str = ""
    updated_at: str = ""


@dataclass
class ChecklistQuestion:
    """The wording of one question a photo cannot answer (knowledge/checklist.py holds which
    questions there are and the rules; admins edit only the wording)."""

    id: str  # e.g. "size": one of knowledge.checklist.QUESTION_IDS
    text: Localized
    version: int = 0
    updated_by: str = ""
    updated_at: str = ""


@dataclass
class Clinic:
    id: str
    name: Localized
    address: Localized
    city: str  # e.g. "Seoul"
    district: str  # e.g. "Gangnam-gu"
    lat: float
    lon: float
    phone: str
    hours: Localized
    languages: list[str]  # e.g. ["ko", "en"]
    treats: list[str]  # condition labels and services, e.g. ["acne", "skin_cancer_surgery"]
    sample: bool = True  # sample data: not a real business
    geohash: str = ""  # filled by the store, for proximity queries
    version: int = 0
    updated_by: str = ""
    updated_at: str = ""


@dataclass
class Feedback:
    id: str
    user_key: str  # a keyed hash of the chat user id, never the id itself
    label: str  # what the model answered
    correct: bool | None  # the user's answer to "Was this right?"
    model_version: str
    created_at: str
    comment: str = ""


@dataclass
class AnalysisRecord:
    """One analysed photo, for admin statistics: what the model answered, never the photo and
    never who sent it (no user key), so it outlives /forget without identifying anyone."""

    id: str
    at: str  # ISO 8601, UTC
    label: str  # the model's best label
    abstain: bool  # the answer was "I can't tell"
    urgent: bool  # the answer was "see a dermatologist soon"
    model_version: str
    transport: str  # "tg" (Telegram), "web" (the web chat), ...
    # The checklist rules the user's answers fired (knowledge/checklist.py): the record is
    # written again, under the same id, when the questions are done.
    checklist_rules: list[str] = field(default_factory=list)


@dataclass
class AlbumPhoto:
    """One photo of an album (several photos of one case sent together), kept until the album
    is answered once. A row per photo, never one shared document: the photos of one album may
    reach different replicas at the same moment, and adding rows loses none of them.
    What the photo showed, never the photo."""

    id: str  # unique per photo; the album is answered by the replica holding the last one
    user_key: str
    album: str  # the transport's album id (Telegram's media_group_id)
    at: str  # ISO 8601, UTC: arrival, which decides the album's last photo (who answers)
    photo_ref: str | None = None  # the transport's handle to fetch it again (the heatmap)
    probabilities: dict[str, float] = field(default_factory=dict)  # empty: left out
    left_out: str = ""  # why it was not used: an intake refusal or "quality"
    issues: list[str] = field(default_factory=list)  # the quality problems, when "quality"
    # Its place in the album as sent (Telegram's message_id), which numbers the photos in the
    # answer: concurrent updates may reach the store in another order than they were sent.
    sequence: int = 0


@dataclass
class UserState:
    """Per-user state kept in the store so that several bot replicas can serve one user."""

    user_key: str
    language: str = "en"
    language_chosen: bool = False  # set with /language: then the platform's locale is ignored
    consent_store_photos: bool = False
    last_result: dict[str, Any] | None = None  # labels and probabilities, never the photo
    recent_messages: list[float] = field(default_factory=list)  # timestamps, for flood limits
    awaiting: str = ""  # what the next message is expected to be, e.g. "location"
    updated_at: str = ""


@dataclass
class AdminSessionRecord:
    """A signed-in admin, kept in the store so that every replica agrees when a session ends.

    Keyed by a hash of the session's random id (the id itself lives only in the admin's
    cookie), so reading the store does not give anyone a usable session. Times are Unix
    seconds, top-level fields so that stores can query them.
    """

    id_hash: str  # sha256 hex of the cookie's session id
    name: str  # who signed in
    created_ts: float
    expires_ts: float  # absolute end, however active the session is
    last_seen_ts: float  # an idle session ends sooner
    password_fingerprint: str  # of the password hash it was opened with: a new one ends it


@dataclass
class AuditEntry:
    id: str
    kind: str  # "condition", "faq", "clinic"
    key: str  # the document's id or label
    version: int  # the version this change created
    actor: str
    at: str
    action: str  # "create", "update", "delete", "rollback"
    before: dict[str, Any] | None
    after: dict[str, Any] | None


@dataclass
class QueuedReply:
    """One reply the bot could not deliver yet, waiting in the store's outbox (bot/outbox.py).

    The rendered message only (text, buttons, venue: `payload`, JSON), never a photo. Replies to
    one chat go out in `seq` order; `claimed_by` / `claimed_until` are the lease of the replica
    sending it, so two replicas never send the same reply at once.
    """

    id: str
    chat_id: int
    seq: float  # order within the chat: the enqueuing replica's clock, Unix seconds
    payload: str  # JSON of the rendered reply
    created: float  # Unix seconds: when the reply was first due (it is dropped when too old)
    next_attempt: float  # Unix seconds
    attempts: int = 0
    claimed_by: str = ""
    claimed_until: float = 0.0


def to_dict(document: Any) -> dict[str, Any]:
    """`dataclasses.asdict` without its deep copy of every value: new dicts and lists all the
    way down, the immutable leaves (str, numbers, enums) shared. asdict's copies made saving a
    user's state (its last result's probabilities, flood timestamps) a visible part of each
    message's CPU."""
    return {item.name: _plain(getattr(document, item.name)) for item in fields(document)}


def _plain(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool, type(None))):  # most values: answered first
        return value
    if is_dataclass(value) and not isinstance(value, type):
        return to_dict(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(item) for item in value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def condition_from_dict(data: dict[str, Any]) -> Condition:
    values = dict(data)
    values["triage"] = Triage(values["triage"])
    values["ingredients"] = [Ingredient(**item) for item in values.get("ingredients", [])]
    values["sources"] = [Source(**item) for item in values.get("sources", [])]
    return Condition(**values)


def faq_from_dict(data: dict[str, Any]) -> FaqEntry:
    return FaqEntry(**data)


def question_from_dict(data: dict[str, Any]) -> ChecklistQuestion:
    return ChecklistQuestion(**data)


def clinic_from_dict(data: dict[str, Any]) -> Clinic:
    values = dict(data)
    values["lat"], values["lon"] = float(values["lat"]), float(values["lon"])
    return Clinic(**values)
