"""The sentence encoder's queue stays short: questions past MAX_QUEUED_QUESTIONS are answered by
their words at once instead of queueing behind work whose askers have stopped waiting."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future

from bot.conversation.answers import MAX_QUEUED_QUESTIONS, Answers
from bot.conversation.views import Speaker
from bot.texts import default_texts


class StalledIndex:
    """An FAQ index whose encoder never finishes (a worker far behind): counts what was queued."""

    def __init__(self):
        self.queued: list[str] = []

    def question_future(self, question: str) -> Future:
        self.queued.append(question)
        return Future()


async def test_a_full_encoder_queue_answers_by_words_without_queueing_more():
    answers = Answers(None, Speaker(default_texts()), encoder=None, encoding_wait_s=0.05)
    index = StalledIndex()
    questions = [f"question {n}" for n in range(MAX_QUEUED_QUESTIONS + 5)]
    waited = await asyncio.gather(*(answers._encoded(index, q) for q in questions))
    assert waited == [False] * len(questions)  # none encoded in time
    assert index.queued == questions[:MAX_QUEUED_QUESTIONS]  # the rest never queued
    # The same question asked again while queued shares its place, and a new one still waits.
    assert await answers._encoded(index, questions[0]) is False
    assert await answers._encoded(index, "one more") is False
    assert index.queued == questions[:MAX_QUEUED_QUESTIONS]
