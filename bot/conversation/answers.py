"""Follow-up questions in text, answered from the FAQ (knowledge/retrieval.py)."""

from __future__ import annotations

import asyncio

from bot.conversation.replies import Reply
from bot.conversation.state import LastResult
from bot.conversation.views import Speaker, condition_name
from knowledge.embeddings import SentenceEncoder
from knowledge.models import FaqEntry, UserState
from knowledge.resilient import ResilientKnowledge
from knowledge.retrieval import FaqIndex, question_language

NO_MATCH_TOPICS = 6  # questions suggested when nothing matched
# How long an answer waits for its question to be encoded (~25 ms of CPU in the encoder process,
# which runs at low priority): past this the words alone answer, and the encoding, once done,
# serves the next time the question is asked. On a busy machine the first questions of a
# bench/load.py run waited up to 12 s for it.
ENCODING_WAIT_S = 1.0
# Questions waiting for the encoder at once. Past this a new question is answered by its words
# alone, without queueing: many different questions at once (a burst, a spammer) would otherwise
# queue ~25 ms each in the one worker, and every later question would wait the whole
# ENCODING_WAIT_S behind work nobody waits for any more.
MAX_QUEUED_QUESTIONS = 8


class Answers:
    def __init__(
        self,
        knowledge: ResilientKnowledge,
        speaker: Speaker,
        encoder: SentenceEncoder | None = None,
        encoding_wait_s: float = ENCODING_WAIT_S,
    ):
        """`encoder`: questions are also matched by meaning (knowledge/embeddings.py); None:
        by words only."""
        self.knowledge = knowledge
        self.encoder = encoder
        self.encoding_wait_s = encoding_wait_s
        self._embedding: asyncio.Task | None = None  # the phrasings being encoded
        self._encoding: dict[str, asyncio.Future] = {}  # questions being encoded, by text
        self.texts = speaker.texts
        self._index: FaqIndex | None = None
        self._index_key: tuple = ()
        self._index_entries: list[FaqEntry] | None = None  # the list the index was checked on
        self._index_lock = asyncio.Lock()  # one build at a time: concurrent questions share it

    async def answer(self, state: UserState, question: str) -> Reply:
        result = LastResult.from_dict(state.last_result)
        label = result.label_for_advice if result else None
        entries = await self.knowledge.faq(None)
        index = await self._faq_index(entries)
        # Answer in the language the question was asked in, not only the chat's setting.
        lang = question_language(question) if question.strip() else state.language
        if index.needs_vector(question, lang, label) and not await self._encoded(index, question):
            matches = index.search_by_words(question, lang, label)
        else:
            matches = index.search(question, lang, label)
        if not matches:
            topics = [
                entry.questions.get(lang, [""])[0]
                for entry in entries
                if entry.label in (label, None) and entry.questions.get(lang)
            ][:NO_MATCH_TOPICS]
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
                        condition_name(name, condition, lang)
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
                about=condition_name(entry.label, condition, lang) if entry.label else None,
                scoped=entry.label is not None and entry.label == label,
            )
        )

    async def _encoded(self, index: FaqIndex, question: str) -> bool:
        """Have `question` encoded in the encoder's process (once, however many chats ask it at
        the same time); False when that takes longer than `encoding_wait_s`."""
        pending = self._encoding.get(question)
        if pending is None:
            if len(self._encoding) >= MAX_QUEUED_QUESTIONS:
                return False
            pending = asyncio.wrap_future(index.question_future(question))
            self._encoding[question] = pending
            pending.add_done_callback(lambda _: self._encoding.pop(question, None))
        try:
            await asyncio.wait_for(asyncio.shield(pending), self.encoding_wait_s)
        except TimeoutError:
            return False
        return True

    async def warm(self) -> None:
        """Build the FAQ index and encode its phrasings now rather than on the first question;
        returns when questions are matched by meaning too."""
        index = await self._faq_index(await self.knowledge.faq(None))
        if self._embedding is not None and not index.embedded:
            await self._embedding
        if self.encoder is not None:
            # With the phrasings' vectors read from the cache file, nothing has started the
            # worker yet: the first questions would wait past ENCODING_WAIT_S for it and be
            # answered by their words alone ("아토피 보습제는 어떤 게 좋아요?" got no answer).
            await asyncio.wrap_future(self.encoder.start())

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
                index = await asyncio.to_thread(FaqIndex, entries, conditions, self.encoder)
                self._index, self._index_key = index, key
                # Encoding every phrasing takes seconds of CPU: the index answers by words
                # until it is done, then by meaning too.
                self._embedding = asyncio.create_task(asyncio.to_thread(index.embed))
        self._index_entries = entries
        return self._index
