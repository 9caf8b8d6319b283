"""The typed values the dialogue remembers and passes around.

`Action` is what a button carries: it encodes itself into Telegram's callback data (at most
64 bytes) and parses it back, so the two ends cannot drift apart. `LastResult` is the answer to
the user's last photo (labels and probabilities, never the photo) and `Awaiting` what the next
message is expected to be; both are stored as plain values in `UserState` (knowledge/models.py),
so that any replica can read them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from knowledge.models import LANGUAGES


class Awaiting(StrEnum):
    NOTHING = ""
    LOCATION = "location"  # "Find a clinic" was pressed: a typed place name is expected


class ActionKind(StrEnum):
    LANGUAGE = "lang"  # /language's choice: arg is the language
    CLINIC = "clinic"  # "Find a clinic": arg is the result id, or empty (from /clinics)
    CARE = "care"  # "Care tips" of a result
    MORE = "more"  # "More" of a result: its long sections
    HEATMAP = "gradcam"  # "Where did it look?" of a result
    FEEDBACK_RIGHT = "feedback:yes"  # "Does it match what a doctor said?" answered yes / no
    FEEDBACK_WRONG = "feedback:no"
    CHECKLIST = "check"  # a checklist answer: arg is "<result id>:<question id>:<answer>"


# Kinds that act on one result: their arg is that result's id, and a press on an older
# result's button gets "that button belongs to an earlier answer".
RESULT_KINDS = frozenset(
    {
        ActionKind.CLINIC,
        ActionKind.CARE,
        ActionKind.MORE,
        ActionKind.HEATMAP,
        ActionKind.FEEDBACK_RIGHT,
        ActionKind.FEEDBACK_WRONG,
        ActionKind.CHECKLIST,
    }
)
TELEGRAM_CALLBACK_LIMIT = 64  # bytes of callback_data
# A heatmap button of an album names its photo after the result id: "gradcam:3f2a.1".
PHOTO_SEPARATOR = "."


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    arg: str = ""

    @classmethod
    def heatmap_of(cls, result_id: str, photo_index: int) -> Action:
        """The "Where did it look?" button of one photo of an album (0: the first)."""
        return cls(ActionKind.HEATMAP, f"{result_id}{PHOTO_SEPARATOR}{photo_index}")

    @property
    def result_id(self) -> str:
        """The result a result's button belongs to: its arg up to what some kinds carry after
        the id (an album photo's number after ".", a checklist answer after ":")."""
        return self.arg.partition(PHOTO_SEPARATOR)[0].partition(":")[0]

    @property
    def photo_index(self) -> int:
        index = self.arg.partition(PHOTO_SEPARATOR)[2]
        return int(index) if index else 0

    def encode(self) -> str:
        data = f"{self.kind}:{self.arg}" if self.arg else str(self.kind)
        if len(data.encode()) > TELEGRAM_CALLBACK_LIMIT:
            raise ValueError(f"button data over Telegram's {TELEGRAM_CALLBACK_LIMIT} bytes")
        return data

    @classmethod
    def parse(cls, data: str) -> Action | None:
        """The action a button's data encodes; None for anything a client made up."""
        # No kind's value is a prefix of another's followed by ":", so at most one matches.
        for kind in ActionKind:
            if data == kind.value:
                arg = ""
            elif data.startswith(f"{kind.value}:"):
                arg = data[len(kind.value) + 1 :]
            else:
                continue
            if kind == ActionKind.LANGUAGE and arg not in LANGUAGES:
                return None
            if kind in RESULT_KINDS and not arg and kind != ActionKind.CLINIC:
                return None
            _, separator, index = arg.partition(PHOTO_SEPARATOR)
            photo_number = index.isascii() and index.isdigit() and len(index) <= 2
            if separator and not (kind == ActionKind.HEATMAP and photo_number):
                return None
            return cls(kind, arg)
        return None


@dataclass
class LastResult:
    """The answer to the user's last photo, as `UserState.last_result` keeps it."""

    id: str  # ties the result's buttons to it
    label: str  # the top answer
    top: list[dict[str, Any]] = field(default_factory=list)  # [{"label", "prob"}], best first
    abstain: bool = False
    urgent: bool = False
    level: str = "see_doctor"  # "abstain", or the triage level the answer was given at
    model: str = ""
    photo_ref: str | None = None  # the transport's handle to fetch the photo again
    photo_refs: list[str | None] = field(default_factory=list)  # an album's photos, in order
    at: str = ""
    # The skin cancer an urgent answer was about (the most likely malignant label), even when
    # it was not the top answer, and how strongly: "likely" (see a dermatologist within 2 weeks,
    # no self-care) or "possible" (can't be ruled out: a routine check, self-care kept).
    cancer: str | None = None
    cancer_prob: float = 0.0
    cancer_tier: str = ""  # "" in results stored before the tiers: read as "likely"
    # "Was this right?" counts once per result: more presses would skew the feedback statistics.
    feedback_given: bool = False
    record_id: str = ""  # its anonymous AnalysisRecord's id (written again with the checklist)
    # The questions a photo cannot answer (bot/conversation/checklist.py): which set was
    # offered ("pigmented", "rash"), the answers by question id, and the advice they led to.
    checklist_group: str = ""
    checklist: dict[str, str] = field(default_factory=dict)
    checklist_advice: str = ""  # set when the questions are done (knowledge.checklist.Advice)

    @property
    def referral_tier(self) -> str:
        """The cancer tier of the answer: "" without a referral, "likely" or "possible"
        (results stored before the tiers have none: read as "likely")."""
        if not self.urgent:
            return ""
        return self.cancer_tier or "likely"

    @property
    def cancer_possible_only(self) -> bool:
        return self.urgent and self.cancer_tier == "possible"

    @property
    def label_for_advice(self) -> str | None:
        """The condition follow-up questions are about: the cancer after a "likely" answer,
        none after "I can't tell" (general answers), else the top answer."""
        if self.urgent and self.cancer and not self.cancer_possible_only:
            return self.cancer
        return None if self.abstain else self.label

    @property
    def label_for_clinics(self) -> str | None:
        """Whom a clinic search looks for: clinics that check the cancer after any referral,
        any dermatologist after "I can't tell", else clinics that treat the top answer."""
        if self.urgent and self.cancer:
            return self.cancer
        return None if self.abstain else self.label

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> LastResult | None:
        """The stored result; None when there is none, or it is not readable (an old format)."""
        if not data:
            return None
        names = cls.__dataclass_fields__
        try:
            return cls(**{name: value for name, value in data.items() if name in names})
        except TypeError:  # a required field missing
            return None
