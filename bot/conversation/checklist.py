"""After a photo: the questions a photo cannot answer, one a message, and what the answers change.

Which questions fit an answer and how the answers change the advice are knowledge/checklist.py's
written rules; this part asks them (inline buttons: Yes / No / Not sure / Skip, "skip" ending
the questions at any point), keeps the answers with the user's current result in the store (so
any replica can take the next answer, and /forget deletes them with the rest of the state), and
says in one line how the answers changed the advice. The rules fired are counted, anonymously,
in the result's analysis record for the admins' /stats.
"""

from __future__ import annotations

import logging

from bot.conversation.replies import Button, Reply
from bot.conversation.results import analysis_record
from bot.conversation.state import Action, ActionKind, LastResult
from bot.conversation.views import Speaker
from knowledge.checklist import (
    QUESTIONS,
    Advice,
    Answer,
    Case,
    baseline_advice,
    decide,
    group_for,
)
from knowledge.models import UserState
from knowledge.resilient import ResilientKnowledge
from knowledge.store import KnowledgeStore, StoreError

log = logging.getLogger(__name__)

SKIP = "skip"  # ends the questions; the answers given so far count
BUTTON_ANSWERS = ((Answer.YES, Answer.NO), (Answer.UNSURE, SKIP))  # two rows of two


class Checklist:
    def __init__(self, store: KnowledgeStore, knowledge: ResilientKnowledge, speaker: Speaker):
        self.store = store
        self.knowledge = knowledge
        self.say = speaker

    async def offer(self, state: UserState) -> list[Reply]:
        """The first question after a photo's answer, when any fit it (none otherwise)."""
        result = LastResult.from_dict(state.last_result)
        if result is None or result.checklist_group:
            return []
        top = [(item["label"], item["prob"]) for item in result.top]
        group = group_for(top, result.referral_tier)
        if group is None:
            return []
        result.checklist_group = group
        state.last_result = result.to_dict()
        return [await self._question(state, result, QUESTIONS[group][0])]

    async def answer(self, state: UserState, result: LastResult, action: Action) -> Reply:
        """One button press: the next question, or (after the last one or "skip") the outcome.
        A press on an old question (answered already, or a double tap) is a stale button."""
        parts = action.arg.split(":", 2)  # result id, question, answer
        question, answer = (parts[1], parts[2]) if len(parts) == 3 else ("", "")
        expected = _next_question(result)
        if expected is None or question != expected or answer not in (*Answer, SKIP):
            return self.say.reply("stale_button", state)
        if answer != SKIP:
            result.checklist[question] = answer
        following = _next_question(result)
        if answer != SKIP and following is not None:
            state.last_result = result.to_dict()
            return await self._question(state, result, following)
        return await self._outcome(state, result)

    async def _question(self, state: UserState, result: LastResult, question: str) -> Reply:
        questions = QUESTIONS[result.checklist_group]
        wording = await self.knowledge.questions()
        reply = self.say.reply(
            "checklist_question",
            state,
            group=result.checklist_group,
            first=question == questions[0],
            number=questions.index(question) + 1,
            total=len(questions),
            question=wording[question].get(state.language) or wording[question].get("en", ""),
        )
        reply.buttons = [
            [
                Button.of(
                    self.say.word(f"checklist_{answer}", state),
                    Action(ActionKind.CHECKLIST, f"{result.id}:{question}:{answer}"),
                )
                for answer in row
            ]
            for row in BUTTON_ANSWERS
        ]
        return reply

    async def _outcome(self, state: UserState, result: LastResult) -> Reply:
        before = baseline_advice(result.level, result.referral_tier)
        case = Case(result.checklist_group, before, result.referral_tier, _labels(result))
        decision = decide(case, result.checklist)
        await self._count(state, result, list(decision.fired))
        # The result now stands at the new advice, so that its care tips and clinic search
        # follow it: a referral the answers raised, or the cancer tier they lifted.
        if decision.cancer_tier == "likely" and result.referral_tier != "likely":
            result.urgent, result.cancer_tier, result.level = True, "likely", "urgent"
        elif decision.change == "lowered":
            result.urgent, result.cancer_tier = False, ""
        if decision.advice != Advice.SELF_CARE and result.level == "self_care":
            result.level = "see_doctor"  # never self-care alone after a raise or the lowering
        result.checklist_advice = str(decision.advice)
        state.last_result = result.to_dict()
        return self.say.reply(
            "checklist_outcome",
            state,
            change=decision.change,
            advice=str(decision.advice),
            fired=list(decision.fired),
            score=decision.score,
            group=result.checklist_group,
        )

    async def _count(self, state: UserState, result: LastResult, fired: list[str]) -> None:
        if not fired or not result.record_id:
            return
        try:
            await self.store.record_analysis(analysis_record(state, result, fired))
        except StoreError as exc:
            log.warning("checklist rules not recorded for the statistics: %s", exc)


def _labels(result: LastResult) -> tuple[str, ...]:
    return tuple(item["label"] for item in result.top)


def _next_question(result: LastResult) -> str | None:
    """The first question not answered yet; None when the questions are done (or never asked)."""
    if not result.checklist_group or result.checklist_advice:
        return None
    for question in QUESTIONS[result.checklist_group]:
        if question not in result.checklist:
            return question
    return None
